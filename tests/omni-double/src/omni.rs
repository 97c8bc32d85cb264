//! Omni's side of the conversation, driven by tests: what Omni's controllers and users do to
//! the resources a provider reads. Every method is one atomic read-modify-write on the store
//! with the owner Omni's controller uses, so the provider sees exactly the events a real Omni
//! would emit.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use prost::Message as _;
use rackboot_proto::cosi::resource::{Metadata, Resource};
use rackboot_proto::omni::specs::{
    bmc_config_spec,
    infra_machine_spec::{AcceptanceStatus, MachinePowerState},
    provider_join_config_spec, BmcConfigSpec, InfraMachineSpec, ProviderJoinConfigSpec,
};
use rand::Rng as _;

use crate::auth::{KeyRing, RegisteredKey};
use crate::names::*;
use crate::persist::{self, PersistError};
use crate::server::spec_of;
use crate::shared::{persistent, Shared};
use crate::store::StoreError;

/// Why an Omni-side action failed.
#[derive(Debug, thiserror::Error)]
pub enum OmniError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("no state file configured")]
    NoStateFile,
    #[error("spec of {0} does not decode")]
    BadSpec(String),
    #[error("provider id {0:?} is not a DNS-1123 label")]
    BadProviderId(String),
}

/// Cluster allocation of a machine.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct Allocation {
    pub talos_version: String,
    #[serde(default)]
    pub extensions: Vec<String>,
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub machine_set: Option<String>,
    /// `controlplane` or `worker` (the role label).
    #[serde(default)]
    pub role: Option<String>,
    /// Also bump `install_event_id` (Omni does it once Talos reports the install).
    #[serde(default)]
    pub installed: bool,
}

/// BMC settings Omni hands the provider.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct BmcSettings {
    pub ipmi: Option<IpmiSettings>,
    pub api: Option<ApiSettings>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct IpmiSettings {
    pub address: String,
    #[serde(default)]
    pub port: u32,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ApiSettings {
    pub address: String,
}

/// Join configuration Omni generates for the provider.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct JoinSettings {
    #[serde(default)]
    pub kernel_args: Vec<String>,
    #[serde(default)]
    pub config: String,
    #[serde(default)]
    pub join_token: String,
}

/// Handle on a running double's state, for tests and the control API.
#[derive(Debug, Clone)]
pub struct OmniHandle {
    shared: Arc<Shared>,
    keys: Arc<RwLock<KeyRing>>,
    provider_id: String,
}

/// A random UUID (v4) string.
pub fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::thread_rng().gen();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn new_resource(
    ns: &str,
    ty: &str,
    id: &str,
    labels: HashMap<String, String>,
    spec: rackboot_proto::cosi::resource::Spec,
) -> Resource {
    Resource {
        metadata: Some(Metadata {
            namespace: ns.into(),
            r#type: ty.into(),
            id: id.into(),
            version: "undefined".into(),
            phase: PHASE_RUNNING.into(),
            labels,
            ..Default::default()
        }),
        spec: Some(spec),
    }
}

fn labels(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl OmniHandle {
    pub(crate) fn new(
        shared: Arc<Shared>,
        keys: Arc<RwLock<KeyRing>>,
        provider_id: String,
    ) -> Self {
        OmniHandle {
            shared,
            keys,
            provider_id,
        }
    }

    /// The provider id the double was configured with.
    pub fn provider_id(&self) -> &str {
        &self.provider_id
    }

    /// Registers another service-account public key.
    pub fn add_key(&self, key: RegisteredKey) {
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(key);
    }

    /// Fingerprints of the registered keys.
    pub fn key_fingerprints(&self) -> Vec<String> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.keys().map(|k| k.fingerprint.clone()).collect()
    }

    /// `omnictl infraprovider create <id>`: the InfraProvider resource.
    pub fn create_infra_provider(&self, id: &str) -> Result<Resource, OmniError> {
        if !is_dns_label(id) {
            return Err(OmniError::BadProviderId(id.into()));
        }
        let r = new_resource(
            NS_INFRA_PROVIDER,
            TYPE_INFRA_PROVIDER,
            id,
            HashMap::new(),
            Default::default(),
        );
        Ok(self
            .shared
            .write(|s| s.create(r, OWNER_USER, SystemTime::now()))?)
    }

    /// `omnictl infraprovider delete <id>`: every call of that provider is then refused.
    pub fn delete_infra_provider(&self, id: &str) -> Result<(), OmniError> {
        Ok(self
            .shared
            .write(|s| s.destroy(NS_INFRA_PROVIDER, TYPE_INFRA_PROVIDER, id, OWNER_USER))?)
    }

    /// Serves a ResourceDefinition for every type the double knows (idempotent).
    pub fn ensure_resource_definitions(&self) -> Result<(), OmniError> {
        for ty in KNOWN_TYPES {
            let id = ty.to_lowercase();
            let exists = self
                .shared
                .read(|s| s.get(NS_META, TYPE_RESOURCE_DEFINITION, &id).is_ok());
            if exists {
                continue;
            }
            let plural = ty.split('.').next().unwrap_or(ty);
            let ns = if *ty == TYPE_PROVIDER_HEALTH {
                NS_INFRA_PROVIDER_EPHEMERAL
            } else {
                NS_INFRA_PROVIDER
            };
            let spec = rackboot_proto::cosi::resource::Spec {
                proto_spec: Vec::new(),
                yaml_spec: format!("type: {ty}\ndisplayType: {plural}\ndefaultNamespace: {ns}\n"),
            };
            let r = new_resource(NS_META, TYPE_RESOURCE_DEFINITION, &id, HashMap::new(), spec);
            self.shared
                .write(|s| s.create(r, OWNER_USER, SystemTime::now()))?;
        }
        Ok(())
    }

    /// A machine booted in agent mode and joined Omni: a PENDING InfraMachine (random UUID
    /// unless given), with the accept-pending and provider labels. Returns its id.
    pub fn machine_joins(&self, uuid: Option<&str>) -> Result<String, OmniError> {
        self.machine_joins_for(&self.provider_id.clone(), uuid)
    }

    /// Like [`Self::machine_joins`] for a machine of another provider (`provider_id`).
    pub fn machine_joins_for(
        &self,
        provider_id: &str,
        uuid: Option<&str>,
    ) -> Result<String, OmniError> {
        let id = uuid.map_or_else(random_uuid, str::to_string);
        let spec = InfraMachineSpec {
            acceptance_status: AcceptanceStatus::Pending as i32,
            preferred_power_state: MachinePowerState::PowerStateOff as i32,
            node_unique_token: random_uuid(),
            ..Default::default()
        };
        let l = labels(&[(LABEL_PROVIDER_ID, provider_id), (LABEL_ACCEPT_PENDING, "")]);
        let r = new_resource(
            NS_INFRA_PROVIDER,
            TYPE_INFRA_MACHINE,
            &id,
            l,
            spec_of(&spec),
        );
        self.shared
            .write(|s| s.create(r, OWNER_INFRA_MACHINE, SystemTime::now()))?;
        Ok(id)
    }

    /// Read-modify-write of an InfraMachine as Omni's controller.
    pub fn modify_machine(
        &self,
        uuid: &str,
        f: impl FnOnce(&mut InfraMachineSpec, &mut HashMap<String, String>),
    ) -> Result<Resource, OmniError> {
        self.shared.write(|s| {
            let mut r = s.get(NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, uuid)?;
            let bytes = r
                .spec
                .as_ref()
                .map(|x| x.proto_spec.clone())
                .unwrap_or_default();
            let mut spec = InfraMachineSpec::decode(bytes.as_slice())
                .map_err(|_| OmniError::BadSpec(uuid.to_string()))?;
            let md = r.metadata.get_or_insert_with(Default::default);
            f(&mut spec, &mut md.labels);
            let owner = md.owner.clone();
            r.spec = Some(spec_of(&spec));
            Ok(s.update(r, &owner, None, SystemTime::now())?)
        })
    }

    /// Accepts the machine.
    pub fn accept(&self, uuid: &str) -> Result<Resource, OmniError> {
        self.modify_machine(uuid, |s, l| {
            s.acceptance_status = AcceptanceStatus::Accepted as i32;
            l.remove(LABEL_ACCEPT_PENDING);
        })
    }

    /// Rejects the machine.
    pub fn reject(&self, uuid: &str) -> Result<Resource, OmniError> {
        self.modify_machine(uuid, |s, l| {
            s.acceptance_status = AcceptanceStatus::Rejected as i32;
            l.remove(LABEL_ACCEPT_PENDING);
        })
    }

    /// Adds the machine to a cluster.
    pub fn allocate(&self, uuid: &str, a: &Allocation) -> Result<Resource, OmniError> {
        self.modify_machine(uuid, |s, l| {
            s.cluster_talos_version = a.talos_version.clone();
            s.extensions = a.extensions.clone();
            if a.installed {
                s.install_event_id += 1;
            }
            if let Some(c) = &a.cluster {
                l.insert(LABEL_CLUSTER.into(), c.clone());
            }
            if let Some(m) = &a.machine_set {
                l.insert(LABEL_MACHINE_SET.into(), m.clone());
            }
            match a.role.as_deref() {
                Some("controlplane") => l.insert(LABEL_ROLE_CONTROLPLANE.into(), String::new()),
                Some(_) => l.insert(LABEL_ROLE_WORKER.into(), String::new()),
                None => None,
            };
        })
    }

    /// Talos reported the installation: `install_event_id` + 1.
    pub fn mark_installed(&self, uuid: &str) -> Result<Resource, OmniError> {
        self.modify_machine(uuid, |s, _| s.install_event_id += 1)
    }

    /// Removes the machine from its cluster: allocation cleared, a new `wipe_id`.
    pub fn deallocate(&self, uuid: &str) -> Result<Resource, OmniError> {
        self.modify_machine(uuid, |s, l| {
            s.cluster_talos_version.clear();
            s.extensions.clear();
            s.wipe_id = random_uuid();
            for k in [
                LABEL_CLUSTER,
                LABEL_MACHINE_SET,
                LABEL_ROLE_CONTROLPLANE,
                LABEL_ROLE_WORKER,
            ] {
                l.remove(k);
            }
        })
    }

    /// Asks for a reboot: a new `requested_reboot_id`.
    pub fn request_reboot(&self, uuid: &str) -> Result<Resource, OmniError> {
        self.modify_machine(uuid, |s, _| s.requested_reboot_id = random_uuid())
    }

    /// Asks for power off: a new `power_off_request_id`.
    pub fn request_power_off(&self, uuid: &str) -> Result<Resource, OmniError> {
        self.modify_machine(uuid, |s, _| s.power_off_request_id = random_uuid())
    }

    /// Sets the preferred power state.
    pub fn set_preferred_power(&self, uuid: &str, on: bool) -> Result<Resource, OmniError> {
        self.modify_machine(uuid, |s, _| {
            s.preferred_power_state = if on {
                MachinePowerState::PowerStateOn as i32
            } else {
                MachinePowerState::PowerStateOff as i32
            }
        })
    }

    /// Cordons or uncordons.
    pub fn set_cordoned(&self, uuid: &str, cordoned: bool) -> Result<Resource, OmniError> {
        self.modify_machine(uuid, |s, _| s.cordoned = cordoned)
    }

    /// Sets extra kernel args.
    pub fn set_extra_kernel_args(&self, uuid: &str, args: &str) -> Result<Resource, OmniError> {
        self.modify_machine(uuid, |s, _| s.extra_kernel_args = args.to_string())
    }

    /// Starts removing the machine (phase tearingDown); the provider then drops its finalizer.
    pub fn teardown_machine(&self, uuid: &str) -> Result<bool, OmniError> {
        Ok(self.shared.write(|s| {
            s.teardown(
                NS_INFRA_PROVIDER,
                TYPE_INFRA_MACHINE,
                uuid,
                OWNER_INFRA_MACHINE,
                SystemTime::now(),
            )
        })?)
    }

    /// Destroys a resource as its owner would (refused while finalizers are pending).
    pub fn destroy(&self, ns: &str, ty: &str, id: &str) -> Result<(), OmniError> {
        Ok(self.shared.write(|s| {
            let owner = s.get(ns, ty, id)?.metadata.unwrap_or_default().owner;
            s.destroy(ns, ty, id, &owner)
        })?)
    }

    /// Creates or replaces the machine's BMCConfig.
    pub fn set_bmc_config(&self, uuid: &str, b: &BmcSettings) -> Result<Resource, OmniError> {
        let spec = BmcConfigSpec {
            config: Some(bmc_config_spec::Config {
                ipmi: b.ipmi.as_ref().map(|i| bmc_config_spec::Ipmi {
                    address: i.address.clone(),
                    port: i.port,
                    username: i.username.clone(),
                    password: i.password.clone(),
                }),
                api: b.api.as_ref().map(|a| bmc_config_spec::Api {
                    address: a.address.clone(),
                }),
            }),
        };
        self.upsert(TYPE_BMC_CONFIG, uuid, OWNER_USER, spec_of(&spec))
    }

    /// Creates or replaces the provider's ProviderJoinConfig.
    pub fn set_join_config(&self, j: &JoinSettings) -> Result<Resource, OmniError> {
        let spec = ProviderJoinConfigSpec {
            config: Some(provider_join_config_spec::JoinConfig {
                kernel_args: j.kernel_args.clone(),
                config: j.config.clone(),
            }),
            join_token: j.join_token.clone(),
        };
        let id = self.provider_id.clone();
        self.upsert(TYPE_JOIN_CONFIG, &id, OWNER_JOIN_CONFIG, spec_of(&spec))
    }

    fn upsert(
        &self,
        ty: &str,
        id: &str,
        owner: &str,
        spec: rackboot_proto::cosi::resource::Spec,
    ) -> Result<Resource, OmniError> {
        let pid = self.provider_id.clone();
        Ok(self
            .shared
            .write(|s| match s.get(NS_INFRA_PROVIDER, ty, id) {
                Ok(mut cur) => {
                    cur.spec = Some(spec);
                    s.update(cur, owner, None, SystemTime::now())
                }
                Err(_) => {
                    let l = labels(&[(LABEL_PROVIDER_ID, &pid)]);
                    s.create(
                        new_resource(NS_INFRA_PROVIDER, ty, id, l, spec),
                        owner,
                        SystemTime::now(),
                    )
                }
            })?)
    }

    /// One resource.
    pub fn get(&self, ns: &str, ty: &str, id: &str) -> Result<Resource, OmniError> {
        Ok(self.shared.read(|s| s.get(ns, ty, id))?)
    }

    /// All resources of a kind.
    pub fn list(&self, ns: &str, ty: &str) -> Vec<Resource> {
        self.shared.read(|s| s.list(ns, ty, &Default::default()))
    }

    /// Decoded InfraMachine spec.
    pub fn machine(&self, uuid: &str) -> Result<InfraMachineSpec, OmniError> {
        let r = self.get(NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, uuid)?;
        let b = r.spec.map(|s| s.proto_spec).unwrap_or_default();
        InfraMachineSpec::decode(b.as_slice()).map_err(|_| OmniError::BadSpec(uuid.into()))
    }

    /// Omni loses its data: everything but the resource definitions and InfraProviders is
    /// gone (watchers see DESTROYED), and the state file is left alone until [`Self::restore`].
    pub fn wipe(&self) {
        self.shared.set_persisting(false);
        self.shared.write(|s| {
            s.remove_where(|m| m.namespace != NS_META && m.r#type != TYPE_INFRA_PROVIDER)
        });
    }

    /// Makes the persistent namespaces equal to the state file's snapshot (watchers see the
    /// differences as events), then resumes writing the file.
    pub fn restore(&self) -> Result<usize, OmniError> {
        let file = self.shared.state_file().ok_or(OmniError::NoStateFile)?;
        let snap = persist::load(&file)?;
        let keep: std::collections::HashSet<(String, String, String)> = snap
            .iter()
            .filter_map(|r| r.metadata.as_ref())
            .map(|m| (m.namespace.clone(), m.r#type.clone(), m.id.clone()))
            .collect();
        let n = snap.len();
        self.shared.write(|s| -> Result<(), StoreError> {
            s.remove_where(|m| {
                persistent(&m.namespace)
                    && !keep.contains(&(m.namespace.clone(), m.r#type.clone(), m.id.clone()))
            });
            for r in snap {
                s.put_raw(r)?;
            }
            Ok(())
        })?;
        self.shared.set_persisting(true);
        self.save_now()?;
        Ok(n)
    }

    /// Writes the state file now (if one is configured and persistence is on).
    pub fn save_now(&self) -> Result<(), OmniError> {
        if let (Some(file), true) = (self.shared.state_file(), self.shared.persisting()) {
            let snap = self.shared.read(|s| s.snapshot(persistent));
            persist::save(&file, &snap)?;
        }
        Ok(())
    }

    /// Whether the state file is being written.
    pub fn persisting(&self) -> bool {
        self.shared.persisting()
    }
}
