//! Inventory commands: the one place the admin API, the CLI (through the API) and the boot
//! services change machines. Front ends translate into these calls and back from their results.

use crate::api::{MachineView, NewBmc, NewMachine};
use rackboot_store::model::{id_from_mac, normalize_mac, normalize_uuid};
use rackboot_store::{BmcRecord, Machine, MachineState, Sealer, Store, StoreError};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("machine {0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("inventory failure")]
    Store(#[source] StoreError),
}

impl From<StoreError> for InventoryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists(_)
            | StoreError::MacTaken { .. }
            | StoreError::UuidTaken { .. } => Self::Conflict(e.to_string()),
            StoreError::Stale { .. } => Self::Conflict(e.to_string()),
            StoreError::NotFound(id) => Self::NotFound(id),
            other => Self::Store(other),
        }
    }
}

#[derive(Clone)]
pub struct Inventory {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
}

/// Accepted BMC URL schemes (product.md).
const BMC_SCHEMES: &[&str] = &["ipmi://", "redfish://", "redfish+http://"];

impl Inventory {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        Self { store, sealer }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn list(&self) -> Result<Vec<MachineView>, InventoryError> {
        let mut ms = self.store.list_machines()?;
        ms.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(ms.iter().map(MachineView::from).collect())
    }

    /// Find a machine by id, name, MAC or UUID.
    pub fn find(&self, key: &str) -> Result<Machine, InventoryError> {
        if let Some(m) = self.store.get_machine(key)? {
            return Ok(m);
        }
        if let Some(mac) = normalize_mac(key) {
            if let Some(m) = self.store.machine_by_mac(&mac)? {
                return Ok(m);
            }
        }
        if let Some(uuid) = normalize_uuid(key) {
            if let Some(m) = self.store.machine_by_uuid(&uuid)? {
                return Ok(m);
            }
        }
        self.store
            .list_machines()?
            .into_iter()
            .find(|m| m.name.as_deref() == Some(key))
            .ok_or_else(|| InventoryError::NotFound(key.to_string()))
    }

    pub fn add(&self, req: NewMachine) -> Result<MachineView, InventoryError> {
        let mut macs = Vec::new();
        for raw in &req.macs {
            let mac = normalize_mac(raw).ok_or_else(|| {
                InventoryError::Invalid(format!("macs: {raw:?} is not a MAC address"))
            })?;
            if !macs.contains(&mac) {
                macs.push(mac);
            }
        }
        let uuid = match &req.uuid {
            Some(u) => Some(
                normalize_uuid(u)
                    .ok_or_else(|| InventoryError::Invalid(format!("uuid: {u:?} is not a UUID")))?,
            ),
            None => None,
        };
        if let Some(name) = &req.name {
            if name.is_empty()
                || name.len() > 63
                || name.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(InventoryError::Invalid(format!(
                    "name: {name:?} must be 1-63 printable characters without spaces"
                )));
            }
            if self
                .store
                .list_machines()?
                .iter()
                .any(|m| m.name.as_deref() == Some(name))
            {
                return Err(InventoryError::Conflict(format!(
                    "a machine named {name:?} already exists"
                )));
            }
        }
        let id = match (&uuid, macs.first()) {
            (Some(u), _) => u.clone(),
            (None, Some(mac)) => id_from_mac(mac),
            (None, None) => {
                return Err(InventoryError::Invalid(
                    "a machine needs at least one MAC address or a UUID".into(),
                ))
            }
        };
        let bmc = req.bmc.map(|b| self.bmc_record(b)).transpose()?;
        let m = Machine {
            id,
            name: req.name,
            uuid,
            macs,
            bmc,
            state: MachineState::Registered,
            state_reason: None,
            power: Default::default(),
            profile: req.profile,
            hardware: None,
            boot: Default::default(),
            created_ms: 0,
            updated_ms: 0,
            generation: 0,
        };
        let m = self.store.create_machine(m)?;
        self.event(&m.id, "created", "registered through the admin API");
        Ok(MachineView::from(&m))
    }

    pub fn remove(&self, key: &str) -> Result<MachineView, InventoryError> {
        let m = self.find(key)?;
        let removed = self
            .store
            .remove_machine(&m.id)?
            .ok_or_else(|| InventoryError::NotFound(key.to_string()))?;
        self.event(&m.id, "removed", "removed through the admin API");
        Ok(MachineView::from(&removed))
    }

    /// Validate a BMC endpoint; credentials in the URL move to the record and the password is sealed.
    fn bmc_record(&self, b: NewBmc) -> Result<BmcRecord, InventoryError> {
        let scheme = BMC_SCHEMES
            .iter()
            .find(|s| b.url.starts_with(**s))
            .ok_or_else(|| {
                InventoryError::Invalid(format!(
                    "bmc.url must start with one of {}",
                    BMC_SCHEMES.join(", ")
                ))
            })?;
        let rest = &b.url[scheme.len()..];
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let host = hostport.split('/').next().unwrap_or("");
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InventoryError::Invalid("bmc.url has no host".into()));
        }
        let (url_user, url_pass) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
            Some((u, p)) => (
                Some(u.to_string()),
                Some(p.to_string()).filter(|p| !p.is_empty()),
            ),
            None => (None, None),
        };
        let username = b.username.or(url_user).unwrap_or_default();
        let password = b.password.or(url_pass).unwrap_or_default();
        let password_sealed = self
            .sealer
            .seal(&password)
            .map_err(|e| InventoryError::Store(StoreError::Seal(e)))?;
        Ok(BmcRecord {
            url: format!("{scheme}{host}"),
            username,
            password_sealed,
            insecure_tls: b.insecure_tls,
        })
    }

    /// Record an event; a failure is logged, never returned (events must not block actions).
    pub fn event(&self, machine_id: &str, kind: &str, message: &str) {
        if let Err(e) = self.store.append_event(machine_id, kind, message) {
            tracing::warn!(error = %e, machine = machine_id, kind, "could not record event");
        }
    }
}
