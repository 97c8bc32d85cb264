//! Inventory commands: the one place the admin API, the CLI (through the API) and the boot
//! services change machines. Front ends translate into these calls and back from their results.

use crate::api::{MachineView, NewBmc, NewMachine};
use rackboot_store::model::{id_from_mac, normalize_mac, normalize_uuid};
use rackboot_store::{
    BmcRecord, BootModeSetting, Machine, MachineState, Profile, Sealer, Store, StoreError,
};
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
    /// More new machines than the discovery burst (`inventory.discovery_burst`, refilled at
    /// `inventory.discovery_per_second`) showed up: a flood of made-up MACs/UUIDs from the
    /// segment must not fill the inventory.
    #[error("too many new machines at once: discovery paused")]
    DiscoveryLimited,
}

/// Token bucket for discoveries (new machines, from sightings of unknown MACs/UUIDs). The
/// default burst is a whole rack segment powering on together: with 200, a storm of 1,000
/// machines left 759 of them out of the inventory (their sightings are not repeated).
#[derive(Debug)]
struct Discovery {
    tokens: f64,
    at: std::time::Instant,
    burst: f64,
    per_sec: f64,
}

impl Discovery {
    fn new(burst: u32, per_sec: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            at: std::time::Instant::now(),
            burst: f64::from(burst),
            per_sec: f64::from(per_sec),
        }
    }

    fn take(&mut self, now: std::time::Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
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
    /// Every recorded event, for live views (SSE). Lagging receivers lose old events only.
    events_tx: tokio::sync::broadcast::Sender<rackboot_store::Event>,
    /// Per-boot agent tokens issued with agent boot scripts (see `agent_token`).
    agent_tokens: Arc<crate::agent_token::AgentTokens>,
    discovery: Arc<std::sync::Mutex<Discovery>>,
}

/// Accepted BMC URL schemes (product.md).
const BMC_SCHEMES: &[&str] = &["ipmi://", "redfish://", "redfish+http://"];

impl Inventory {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        let (events_tx, _) = tokio::sync::broadcast::channel(1024);
        Self {
            store,
            sealer,
            events_tx,
            agent_tokens: Arc::default(),
            discovery: Arc::new(std::sync::Mutex::new(Discovery::new(
                rackboot_config::DEFAULT_DISCOVERY_BURST,
                rackboot_config::DEFAULT_DISCOVERY_PER_SECOND,
            ))),
        }
    }

    /// Discover at most `burst` new machines at once, then `per_sec` a second (config
    /// `inventory.discovery_burst`, `inventory.discovery_per_second`); a burst of 0 records
    /// only machines added by the operator (or Omni).
    pub fn with_discovery_limit(self, burst: u32, per_sec: u32) -> Self {
        Self {
            discovery: Arc::new(std::sync::Mutex::new(Discovery::new(burst, per_sec))),
            ..self
        }
    }

    /// The per-boot agent tokens (issued by boot HTTP, checked by the agent link).
    pub fn agent_tokens(&self) -> &crate::agent_token::AgentTokens {
        &self.agent_tokens
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clear-text BMC password of a machine (for the BMC drivers only; never logged).
    pub fn bmc_password(&self, m: &Machine) -> Result<Option<String>, InventoryError> {
        match &m.bmc {
            Some(b) => Ok(Some(
                self.sealer
                    .open(&b.password_sealed)
                    .map_err(|e| InventoryError::Store(StoreError::Seal(e)))?,
            )),
            None => Ok(None),
        }
    }

    /// Read-modify-write one machine, retrying when another writer got there first (generation
    /// check). `change` returns false to leave the record as it is. Returns the stored record.
    pub fn modify(
        &self,
        key: &str,
        mut change: impl FnMut(&mut Machine) -> bool,
    ) -> Result<Machine, InventoryError> {
        for _ in 0..3 {
            let mut m = self.find(key)?;
            if !change(&mut m) {
                return Ok(m);
            }
            match self.store.update_machine(m) {
                Ok(m) => return Ok(m),
                Err(StoreError::Stale { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(InventoryError::Conflict(format!(
            "machine {key} kept changing"
        )))
    }

    /// Record whether the machine's BMC answered (written only when it changes, or hourly).
    pub fn set_bmc_health(
        &self,
        id: &str,
        reachable: bool,
        error: Option<String>,
    ) -> Result<(), InventoryError> {
        let now = rackboot_store::now_ms();
        self.modify(id, |m| {
            let Some(b) = m.bmc.as_mut() else {
                return false;
            };
            let fresh = b.health.as_ref().is_some_and(|h| {
                h.reachable == reachable
                    && h.error == error
                    && now.saturating_sub(h.checked_ms) < 3_600_000
            });
            if !fresh {
                b.health = Some(rackboot_store::BmcHealth {
                    reachable,
                    checked_ms: now,
                    error: error.clone(),
                });
            }
            !fresh
        })
        .map(|_| ())
    }

    /// Record a power state the BMC reported (no event: callers record what they did).
    /// `seen` is the record's power when the BMC was asked: if it changed since, a lifecycle
    /// step stored a newer intent (persist first, then act) and this observation is older than
    /// it, so it is dropped. Writing it would undo the intent, and after a crash before the
    /// action's own result is stored the lifecycle would repeat a completed power action.
    pub fn set_power(
        &self,
        id: &str,
        power: rackboot_store::PowerState,
        seen: rackboot_store::PowerState,
    ) -> Result<(), InventoryError> {
        self.modify(id, |m| {
            let changed = m.power != power && m.power == seen;
            if changed {
                m.power = power;
            }
            changed
        })
        .map(|_| ())
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
            boot_mode: req.boot_mode,
            lifecycle: Default::default(),
            omni: Default::default(),
            hardware: None,
            boot: Default::default(),
            agent_token_sha256: None,
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

    /// Set a machine's BMC from Omni's BMCConfig (IPMI). Returns false when nothing changed (or
    /// the machine is not in the inventory yet).
    pub fn set_bmc_from_omni(
        &self,
        uuid: &str,
        url: &str,
        username: &str,
        password: &str,
    ) -> Result<bool, InventoryError> {
        let Ok(m) = self.find(uuid) else {
            return Ok(false);
        };
        if let Some(b) = &m.bmc {
            let same_pw = self.bmc_password(&m)?.as_deref().unwrap_or("") == password;
            if b.url == url && b.username == username && same_pw {
                return Ok(false);
            }
        }
        let record = self.bmc_record(NewBmc {
            url: url.to_string(),
            username: Some(username.to_string()),
            password: Some(password.to_string()),
            insecure_tls: false,
        })?;
        self.modify(&m.id, |m| {
            m.bmc = Some(record.clone());
            true
        })?;
        Ok(true)
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
            health: None,
        })
    }

    /// Record an event; a failure is logged, never returned (events must not block actions).
    pub fn event(&self, machine_id: &str, kind: &str, message: &str) {
        match self.store.append_event(machine_id, kind, message) {
            Ok(ev) => {
                let _ = self.events_tx.send(ev);
            }
            Err(e) => {
                tracing::warn!(error = %e, machine = machine_id, kind, "could not record event")
            }
        }
    }

    /// Live events from now on (for Server-Sent Events).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<rackboot_store::Event> {
        self.events_tx.subscribe()
    }
}

/// A machine seen on the wire (DHCP, TFTP or HTTP boot request).
#[derive(Debug, Clone)]
pub struct Sighting {
    pub mac: [u8; 6],
    pub uuid: Option<[u8; 16]>,
    pub arch: Option<u16>,
    pub vendor_class: Option<String>,
    pub via: &'static str,
    /// Also record this as an event (e.g. which boot script was served).
    pub note: Option<String>,
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn fmt_uuid(u: &[u8; 16]) -> String {
    let h = hex::encode(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Inventory {
    /// Record a sighting: discover an unknown machine, refresh a known one's boot facts.
    pub fn record_sighting(&self, s: &Sighting) -> Result<Machine, InventoryError> {
        let mac = fmt_mac(&s.mac);
        let uuid = s.uuid.as_ref().map(fmt_uuid);
        let now = rackboot_store::now_ms();
        for _ in 0..3 {
            let existing = match self.store.machine_by_mac(&mac)? {
                Some(m) => Some(m),
                None => match &uuid {
                    Some(u) => self.store.machine_by_uuid(u)?,
                    None => None,
                },
            };
            let result = match existing {
                None => {
                    let allowed = self
                        .discovery
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take(std::time::Instant::now());
                    if !allowed {
                        return Err(InventoryError::DiscoveryLimited);
                    }
                    let id = uuid.clone().unwrap_or_else(|| id_from_mac(&mac));
                    let mut m = Machine {
                        id,
                        name: None,
                        uuid: uuid.clone(),
                        macs: vec![mac.clone()],
                        bmc: None,
                        state: MachineState::Discovered,
                        state_reason: None,
                        power: Default::default(),
                        boot_mode: None,
                        lifecycle: Default::default(),
                        omni: Default::default(),
                        hardware: None,
                        boot: Default::default(),
                        agent_token_sha256: None,
                        created_ms: 0,
                        updated_ms: 0,
                        generation: 0,
                    };
                    apply(&mut m, s, now);
                    self.store.create_machine(m).inspect(|m| {
                        let arch = s.arch.map(|a| format!(" arch {a}")).unwrap_or_default();
                        self.event(
                            &m.id,
                            "discovered",
                            &format!("first seen via {} from {mac}{arch}", s.via),
                        );
                    })
                }
                Some(mut m) => {
                    let was_registered = m.state == MachineState::Registered;
                    if !m.macs.contains(&mac) {
                        m.macs.push(mac.clone());
                    }
                    if m.uuid.is_none() {
                        m.uuid.clone_from(&uuid);
                    }
                    if was_registered {
                        m.state = MachineState::Discovered;
                    }
                    apply(&mut m, s, now);
                    self.store.update_machine(m).inspect(|m| {
                        if was_registered {
                            self.event(
                                &m.id,
                                "discovered",
                                &format!("first network boot seen via {} from {mac}", s.via),
                            );
                        }
                    })
                }
            };
            match result {
                Err(StoreError::Stale { .. }) | Err(StoreError::AlreadyExists(_)) => continue,
                other => return Ok(other?),
            }
        }
        Err(InventoryError::Conflict(format!(
            "machine with MAC {mac} kept changing"
        )))
    }
}

fn apply(m: &mut Machine, s: &Sighting, now: u64) {
    m.boot.first_seen_ms.get_or_insert(now);
    m.boot.last_seen_ms = Some(now);
    if s.arch.is_some() {
        m.boot.arch = s.arch;
    }
    if s.vendor_class.is_some() {
        m.boot.vendor_class.clone_from(&s.vendor_class);
    }
    m.boot.via = Some(s.via.to_string());
}

/// When a MAC was last written, and with which arch and UUID.
type LastWrite = (std::time::Instant, Option<u16>, Option<[u8; 16]>);

/// The last boot note recorded for a MAC: when, what, with which UUID.
type LastNote = (std::time::Instant, String, Option<[u8; 16]>);

/// Drains sightings on a blocking thread, writing at most one record per MAC every
/// `min_interval` unless something new (arch, UUID) was seen. The thread runs at a lower
/// priority (see [`lower_thread_priority`]).
pub fn spawn_recorder(
    inv: Inventory,
    min_interval: std::time::Duration,
) -> tokio::sync::mpsc::Sender<Sighting> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Sighting>(QUEUE);
    tokio::task::spawn_blocking(move || {
        let restore = lower_thread_priority(RECORDER_NICE);
        let mut last: std::collections::HashMap<[u8; 6], LastWrite> =
            std::collections::HashMap::new();
        // Sightings of new machines dropped by the discovery limit: logged at most once a
        // minute (a flood of made-up MACs must not flood the log either).
        let mut limited: u64 = 0;
        let mut limited_logged: Option<std::time::Instant> = None;
        let mut fail = |e: &InventoryError, s: &Sighting, what: &str| {
            if matches!(e, InventoryError::DiscoveryLimited) {
                limited += 1;
                if limited_logged.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60))
                {
                    tracing::warn!(dropped = limited, "new machines not recorded: {e}");
                    limited_logged = Some(std::time::Instant::now());
                    limited = 0;
                }
                return;
            }
            tracing::warn!(error = %e, source = ?std::error::Error::source(e), mac = %fmt_mac(&s.mac), "could not record a {what}");
        };
        // The last boot note per MAC: the same note again within `min_interval` (a client
        // re-fetching its script in a loop, or a benchmark) is not written again: each costs a
        // durable store write (record + event) and says nothing new.
        let mut last_note: std::collections::HashMap<[u8; 6], LastNote> =
            std::collections::HashMap::new();
        let mut one = |s: Sighting| {
            if let Some(note) = &s.note {
                let repeat = last_note.get(&s.mac).is_some_and(|(at, n, uuid)| {
                    n == note && *uuid == s.uuid && at.elapsed() < min_interval
                });
                if repeat {
                    return;
                }
                match inv.record_sighting(&s) {
                    Ok(m) => {
                        inv.event(&m.id, "boot", note);
                        // Remembered only once recorded: a note that could not be (discovery
                        // paused, writes refused) is tried again with the next request.
                        if last_note.len() > 100_000 {
                            last_note.clear();
                        }
                        last_note.insert(s.mac, (std::time::Instant::now(), note.clone(), s.uuid));
                    }
                    Err(e) => fail(&e, &s, "boot"),
                }
                last.insert(s.mac, (std::time::Instant::now(), s.arch, s.uuid));
                return;
            }
            let fresh = match last.get(&s.mac) {
                Some((at, arch, uuid)) => {
                    at.elapsed() >= min_interval || *arch != s.arch || *uuid != s.uuid
                }
                None => true,
            };
            if !fresh {
                return;
            }
            last.insert(s.mac, (std::time::Instant::now(), s.arch, s.uuid));
            if let Err(e) = inv.record_sighting(&s) {
                fail(&e, &s, "boot sighting");
            }
            if last.len() > 100_000 {
                last.clear();
            }
        };
        // Everything queued is written as one batch with one flush (fsync) at the end: in a
        // storm each sighting's own flush made discovering 1,000 machines cost ~3.5 CPU-seconds.
        // A batch lost to a power cut is seen again at the machines' next boot.
        let mut queued = Vec::with_capacity(BATCH);
        while let Some(first) = rx.blocking_recv() {
            queued.push(first);
            while queued.len() < BATCH {
                match rx.try_recv() {
                    Ok(s) => queued.push(s),
                    Err(_) => break,
                }
            }
            let mut record = || {
                for s in queued.drain(..) {
                    one(s);
                }
            };
            if let Err(e) = inv.store().batch(&mut record) {
                tracing::warn!(error = %e, "sightings recorded but not flushed");
            }
        }
        // The pool may run other blocking work on this thread later.
        if let Some(nice) = restore {
            let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice);
        }
    });
    tx
}

/// Sightings written per store batch (one flush each).
const BATCH: usize = 256;

/// Sightings queued for the recorder before new ones are dropped (and counted). A boot storm
/// sends about three per machine (PXE DHCP, iPXE DHCP, `boot.ipxe`) within seconds, while the
/// recorder, at its lower priority, may get little CPU until the storm is served.
const QUEUE: usize = 16_384;

/// How much nicer than the rest of rackboot the recorder runs. Writing the inventory costs
/// about a millisecond of CPU per new machine (store transactions and events); in a boot storm
/// that work waits for the boot path (DHCP answers, TFTP, HTTP) instead of competing with it.
const RECORDER_NICE: i32 = 10;

/// Lower the calling thread's scheduling priority by `by` nice steps (at most to 19). Linux
/// applies `setpriority(PRIO_PROCESS, tid)` to that one thread. Returns the previous nice
/// value to restore, or `None` if it could not be changed (the thread then keeps its priority).
pub fn lower_thread_priority(by: i32) -> Option<i32> {
    let tid = rustix::thread::gettid();
    let before = rustix::process::getpriority_process(Some(tid)).ok()?;
    let target = before.saturating_add(by).min(19);
    match rustix::process::setpriority_process(Some(tid), target) {
        Ok(()) => Some(before),
        Err(e) => {
            tracing::debug!(error = %e, "the inventory recorder keeps its priority");
            None
        }
    }
}

impl Inventory {
    /// Set what `boot.ipxe` serves a machine.
    pub fn set_boot_mode(
        &self,
        key: &str,
        mode: BootModeSetting,
    ) -> Result<MachineView, InventoryError> {
        let problem = match &mode {
            BootModeSetting::Profile { profile } if self.store.get_profile(profile)?.is_none() => {
                Some(format!("profile: {profile:?} does not exist"))
            }
            BootModeSetting::Chain { url }
                if !(url.starts_with("http://") || url.starts_with("https://"))
                    || url.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                Some("url: must be an http:// or https:// URL without spaces".to_string())
            }
            BootModeSetting::Cordoned { reason } if reason.chars().any(char::is_control) => {
                Some("reason: must be one line".to_string())
            }
            _ => None,
        };
        if let Some(p) = problem {
            return Err(InventoryError::Invalid(p));
        }
        let label = serde_json::to_string(&mode).unwrap_or_default();
        let m = self.modify(key, |m| {
            m.boot_mode = Some(mode.clone());
            true
        })?;
        self.event(&m.id, "boot_mode", &format!("boot mode set to {label}"));
        Ok(MachineView::from(&m))
    }

    pub fn profiles(&self) -> Result<Vec<Profile>, InventoryError> {
        Ok(self.store.list_profiles()?)
    }

    pub fn put_profile(&self, p: Profile) -> Result<Profile, InventoryError> {
        let name_ok = !p.name.is_empty()
            && p.name.len() <= 63
            && p.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(InventoryError::Invalid(
                "name: 1-63 characters of [A-Za-z0-9._-]".into(),
            ));
        }
        if p.cmdline.chars().any(char::is_control) {
            return Err(InventoryError::Invalid("cmdline: must be one line".into()));
        }
        // Check that it renders, with placeholder values, before storing it.
        let mode = match (&p.script, &p.kernel) {
            (Some(s), _) => rackboot_ipxe::BootMode::Script(s.clone()),
            (None, Some(k)) => rackboot_ipxe::BootMode::Profile {
                kernel: k.clone(),
                initrds: p.initrds.clone(),
                cmdline: p.cmdline.clone(),
            },
            (None, None) => {
                return Err(InventoryError::Invalid(
                    "a profile needs a kernel or a script".into(),
                ))
            }
        };
        let ctx = rackboot_ipxe::RenderCtx {
            appliance: "192.0.2.1:50042".into(),
            machine_id: "m-000000000000".into(),
            uuid: "00000000-0000-0000-0000-000000000000".into(),
            mac: Some("00:00:00:00:00:00".into()),
            arch: None,
        };
        rackboot_ipxe::render(&mode, &ctx)
            .map_err(|e| InventoryError::Invalid(format!("profile does not render: {e}")))?;
        self.store.put_profile(&p)?;
        Ok(p)
    }

    pub fn remove_profile(&self, name: &str) -> Result<(), InventoryError> {
        if self.store.remove_profile(name)? {
            Ok(())
        } else {
            Err(InventoryError::NotFound(format!("profile {name}")))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sighting(i: u32) -> Sighting {
        let b = i.to_be_bytes();
        Sighting {
            mac: [0x52, 0x54, b[0], b[1], b[2], b[3]],
            uuid: None,
            arch: Some(7),
            vendor_class: None,
            via: "dhcp",
            note: None,
        }
    }

    /// A power observation that started before a lifecycle step stored its intent does not
    /// overwrite it; one that started after does.
    #[test]
    fn a_stale_power_observation_does_not_undo_a_newer_intent() {
        use rackboot_store::PowerState;
        let dir = tempfile::tempdir().unwrap();
        let inv = crate::test_support::inventory(dir.path());
        let m = inv.record_sighting(&sighting(1)).unwrap();
        inv.set_power(&m.id, PowerState::On, PowerState::Unknown)
            .unwrap();
        assert_eq!(inv.find(&m.id).unwrap().power, PowerState::On);
        // A poll reads the BMC (on) while the lifecycle stores "off" and powers it off.
        let seen = inv.find(&m.id).unwrap().power;
        inv.modify(&m.id, |m| {
            m.power = PowerState::Off;
            true
        })
        .unwrap();
        inv.set_power(&m.id, PowerState::On, seen).unwrap();
        assert_eq!(inv.find(&m.id).unwrap().power, PowerState::Off);
        // The next poll, started after the intent, records what the BMC says.
        inv.set_power(&m.id, PowerState::On, PowerState::Off)
            .unwrap();
        assert_eq!(inv.find(&m.id).unwrap().power, PowerState::On);
    }

    /// A flood of made-up MACs from the segment (the hostile e2e test creates them by mutating
    /// DISCOVERs) discovers at most the burst plus the refill, and known machines are unaffected.
    #[test]
    fn discovery_of_new_machines_is_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let inv = crate::test_support::inventory(dir.path());
        let started = std::time::Instant::now();
        let (mut created, mut limited) = (0u32, 0u32);
        let (burst, per_sec) = (
            f64::from(rackboot_config::DEFAULT_DISCOVERY_BURST),
            f64::from(rackboot_config::DEFAULT_DISCOVERY_PER_SECOND),
        );
        for i in 0..(rackboot_config::DEFAULT_DISCOVERY_BURST + 200) {
            match inv.record_sighting(&sighting(i)) {
                Ok(_) => created += 1,
                Err(InventoryError::DiscoveryLimited) => limited += 1,
                Err(e) => panic!("{e}"),
            }
        }
        let bound = burst + per_sec * started.elapsed().as_secs_f64() + 1.0;
        assert!(
            f64::from(created) <= bound,
            "{created} created, bound {bound}"
        );
        assert!(f64::from(created) >= burst, "{created} created");
        assert!(limited > 0);
        assert_eq!(inv.list().unwrap().len() as u32, created);
        // A machine already known is still updated while discovery is paused.
        let m = inv.record_sighting(&sighting(0)).unwrap();
        assert_eq!(m.boot.arch, Some(7));
    }

    /// The operator's limit holds exactly (no refill: per second 0); a burst of 0 turns
    /// discovery off, and machines the operator added are still recorded when seen.
    #[test]
    fn discovery_limit_comes_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let inv = crate::test_support::inventory(dir.path()).with_discovery_limit(3, 0);
        let created = (0..10)
            .filter(|i| match inv.record_sighting(&sighting(*i)) {
                Ok(_) => true,
                Err(InventoryError::DiscoveryLimited) => false,
                Err(e) => panic!("{e}"),
            })
            .count();
        assert_eq!(created, 3);
        assert_eq!(inv.list().unwrap().len(), 3);

        let dir = tempfile::tempdir().unwrap();
        let inv = crate::test_support::inventory(dir.path()).with_discovery_limit(0, 0);
        assert!(matches!(
            inv.record_sighting(&sighting(1)),
            Err(InventoryError::DiscoveryLimited)
        ));
        assert!(inv.list().unwrap().is_empty());
        let mac = sighting(2).mac;
        let added = inv
            .add(NewMachine {
                name: Some("known".into()),
                macs: vec![fmt_mac(&mac)],
                ..Default::default()
            })
            .unwrap();
        let seen = inv.record_sighting(&sighting(2)).unwrap();
        assert_eq!(seen.id, added.id);
        assert_eq!(seen.boot.arch, Some(7));
    }

    /// A machine fetching the same boot script again and again (a boot loop, a benchmark) gets
    /// one "boot" event per interval; a different script is recorded at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn repeated_boot_notes_are_recorded_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let inv = crate::test_support::inventory(dir.path());
        let tx = spawn_recorder(inv.clone(), std::time::Duration::from_secs(60));
        let note = |n: &str| Sighting {
            via: "http",
            note: Some(n.to_string()),
            ..sighting(9)
        };
        for _ in 0..50 {
            tx.send(note("boot.ipxe served: agent")).await.unwrap();
        }
        tx.send(note("boot.ipxe served: disk")).await.unwrap();
        tx.send(note("boot.ipxe served: disk")).await.unwrap();
        let boots = |inv: &Inventory| {
            let id = inv.list().unwrap().first().map(|m| m.id.clone());
            id.map(|id| {
                inv.store()
                    .events(Some(&id), 0, 1000)
                    .unwrap()
                    .into_iter()
                    .filter(|e| e.kind == "boot")
                    .map(|e| e.message)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while boots(&inv).len() < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Let the recorder drain whatever is left, then count.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(
            boots(&inv),
            vec!["boot.ipxe served: agent", "boot.ipxe served: disk"]
        );
    }

    /// The recorder's thread gets nicer, only that thread, and can be restored.
    #[test]
    fn lower_thread_priority_changes_the_calling_thread_only() {
        let process = rustix::process::getpriority_process(None).unwrap();
        let (before, lowered, after) = std::thread::spawn(|| {
            let tid = Some(rustix::thread::gettid());
            let before = rustix::process::getpriority_process(tid).unwrap();
            let restore = super::lower_thread_priority(10);
            let lowered = rustix::process::getpriority_process(tid).unwrap();
            // Raising it back needs privilege (or RLIMIT_NICE); only check it when allowed.
            let after = restore
                .and_then(|n| rustix::process::setpriority_process(tid, n).ok())
                .map(|()| rustix::process::getpriority_process(tid).unwrap());
            (before, lowered, after)
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + 10).min(19));
        assert_eq!(
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap(),
            process,
            "the test's own thread is untouched"
        );
        if let Some(after) = after {
            assert_eq!(after, before);
        }
    }
}
