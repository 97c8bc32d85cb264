//! The Omni link shell (omni-wire.md §5): provider status, heartbeat, join config, watches of
//! InfraMachines and BMCConfigs, and the sync loop that turns them into lifecycle commands and
//! InfraMachineStatuses. The decisions are `rackboot_omni::desired` (sans-IO); this module only
//! moves data. Machines keep booting from the local store whatever happens to the link.

mod sync;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rackboot_config::Config;
use rackboot_omni::auth::ServiceAccountKey;
use rackboot_omni::state::{self, types, OmniClient, LABEL_STATIC_PROVIDER};
use rackboot_proto::omni::specs::{
    InfraMachineSpec, InfraProviderHealthStatusSpec, InfraProviderStatusSpec,
    ProviderJoinConfigSpec,
};
use serde::Serialize;
use tokio::sync::{watch as tokio_watch, Notify};

use crate::inventory::Inventory;
use crate::lifecycle::Reconciler;
use crate::power::PowerService;
use crate::ServeError;

/// What the page, the API and /metrics show about the link.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LinkStatus {
    pub enabled: bool,
    pub endpoint: String,
    pub provider_id: String,
    /// The last heartbeat was accepted by Omni.
    pub connected: bool,
    pub last_heartbeat_ms: Option<u64>,
    pub last_error: Option<String>,
    /// InfraMachines Omni has for this provider (last watch state).
    pub infra_machines: usize,
}

/// Omni's join configuration: kernel arguments for agent and install boots, and the documents
/// served at `/config`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinConfig {
    pub kernel_args: Vec<String>,
    pub config: String,
}

/// State shared between the link tasks, the boot server and the admin side.
#[derive(Debug, Default)]
pub struct OmniShared {
    pub status: RwLock<LinkStatus>,
    pub join: RwLock<Option<JoinConfig>>,
    /// InfraMachine specs by machine UUID, as last seen on the watch, with whether Omni is
    /// tearing the InfraMachine down (phase `tearingDown`).
    specs: Mutex<HashMap<String, (InfraMachineSpec, bool)>>,
    /// BMCConfigs Omni holds for machines that have not booted here yet, applied by the sync
    /// loop once the machine is in the inventory.
    pending_bmc: Mutex<HashMap<String, OmniBmc>>,
    /// Set when machines boot Talos in agent mode (`omni.agent = "talos"`).
    talos_agent: RwLock<Option<TalosAgent>>,
    /// Agent-mode schematic ids by (appliance address, arch).
    agent_schematics: Mutex<HashMap<AgentKey, String>>,
    /// Held while an agent-mode schematic is registered, so a storm of first agent boots makes
    /// one factory call, not one each.
    agent_registering: tokio::sync::Mutex<()>,
    /// The last failed registration per key, answered for [`FACTORY_RETRY_AFTER`] without
    /// another call: with the factory down, a storm of agent boots must not queue one 30 s
    /// timeout each behind `agent_registering`.
    agent_failed: Mutex<HashMap<AgentKey, (std::time::Instant, String)>>,
    wake: Notify,
}

/// An agent-mode schematic's key: the appliance address its kernel arguments name, the arch.
type AgentKey = (String, &'static str);

/// How long a failed Image Factory registration is answered from memory.
const FACTORY_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the Talos agent-mode boot comes from.
#[derive(Debug, Clone)]
struct TalosAgent {
    factory_url: String,
    pxe_url: String,
    version: String,
}

/// The extensions of the agent-mode schematic (Omni's provider uses the same set): firmware
/// for common server NICs and GPUs, CPU microcode, and the metal agent.
const AGENT_EXTENSIONS: &[&str] = &[
    "siderolabs/amd-ucode",
    "siderolabs/amdgpu-firmware",
    "siderolabs/bnx2-bnx2x",
    "siderolabs/chelsio-firmware",
    "siderolabs/i915-ucode",
    "siderolabs/intel-ice-firmware",
    "siderolabs/intel-ucode",
    "siderolabs/qlogic-firmware",
    "siderolabs/realtek-firmware",
    "siderolabs/metal-agent",
];

/// A BMC endpoint from Omni's BMCConfig. Debug never shows the password.
#[derive(Clone, PartialEq, Eq)]
struct OmniBmc {
    url: String,
    username: String,
    password: String,
}

impl std::fmt::Debug for OmniBmc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OmniBmc")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl OmniShared {
    pub fn status(&self) -> LinkStatus {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    fn set_status(&self, f: impl FnOnce(&mut LinkStatus)) {
        f(&mut self.status.write().unwrap_or_else(|p| p.into_inner()));
    }
    /// Kernel arguments Omni wants on every boot it may join from (empty when none).
    pub fn join_kernel_args(&self) -> Vec<String> {
        self.join
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|j| j.kernel_args.clone())
            .unwrap_or_default()
    }
    /// Whether agent boots are Talos agent mode.
    pub fn talos_agent_mode(&self) -> bool {
        self.talos_agent
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The kernel arguments of the agent-mode boot for a machine booting from `appliance`
    /// (`host:port` of the boot HTTP server): Talos fetches its config (Omni's join documents)
    /// from `/config`, the metal agent dials back to the same port.
    pub fn agent_kernel_args(appliance: &str, arch: &str) -> Vec<String> {
        let console = if arch == "arm64" { "ttyAMA0" } else { "ttyS0" };
        vec![
            format!("talos.config=http://{appliance}/config?u=${{uuid}}"),
            format!("metal.provider.address={appliance}"),
            "console=tty0".into(),
            format!("console={console}"),
        ]
    }

    /// The iPXE chain URL of the Talos agent-mode boot for `arch`, registering its schematic
    /// with the Image Factory the first time. None when agent boots are rackboot-agent.
    pub async fn talos_agent_chain(
        &self,
        appliance: &str,
        arch: &'static str,
    ) -> Option<Result<String, String>> {
        let t = self
            .talos_agent
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let key = (appliance.to_string(), arch);
        let known = |me: &Self| {
            me.agent_schematics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned()
        };
        let failed = |me: &Self| {
            me.agent_failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .filter(|(at, _)| at.elapsed() < FACTORY_RETRY_AFTER)
                .map(|(_, e)| e.clone())
        };
        // Fast path without the registration lock; then check again under it (another boot
        // may have registered the schematic, or failed to, while this one waited).
        let mut found = known(self);
        let _one = match found {
            Some(_) => None,
            None => {
                if let Some(e) = failed(self) {
                    return Some(Err(e));
                }
                let guard = self.agent_registering.lock().await;
                found = known(self);
                if found.is_none() {
                    if let Some(e) = failed(self) {
                        return Some(Err(e));
                    }
                }
                Some(guard)
            }
        };
        let fail = |e: String| {
            self.agent_failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), (std::time::Instant::now(), e.clone()));
            Some(Err(e))
        };
        let schematic = match found {
            Some(s) => s,
            None => {
                let install = rackboot_omni::desired::Install {
                    talos_version: t.version.clone(),
                    extensions: AGENT_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
                    extra_kernel_args: Self::agent_kernel_args(appliance, arch),
                };
                let yaml = rackboot_omni::factory::schematic_yaml(&install, &[]);
                let url = format!("{}/schematics", t.factory_url);
                let answer = match sync::blocking_http(&url, Some(yaml)).await {
                    Ok(a) => a,
                    Err(e) => return fail(e),
                };
                match rackboot_omni::factory::parse_schematic_id(&answer) {
                    Ok(id) => {
                        self.agent_schematics
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(key.clone(), id.clone());
                        id
                    }
                    Err(e) => return fail(format!("{url}: {e}")),
                }
            }
        };
        Some(
            rackboot_omni::factory::talos_version(&t.version)
                .map(|v| rackboot_omni::factory::pxe_script_url(&t.pxe_url, &schematic, &v, arch))
                .map_err(|e| e.to_string()),
        )
    }

    pub fn join_config(&self) -> Option<String> {
        self.join
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|j| j.config.clone())
    }
}

pub struct Link {
    pub shared: Arc<OmniShared>,
    pub inventory: Inventory,
    pub reconciler: Arc<Reconciler>,
    pub power: Arc<PowerService>,
    pub client: OmniClient,
    pub provider_id: String,
    pub factory_url: String,
    pub factory_pxe_url: String,
    pub install_boot: rackboot_config::InstallBoot,
    pub heartbeat: Duration,
}

/// Load the service account key: `omni.key_file`, else `OMNI_SERVICE_ACCOUNT_KEY`. Refuses a
/// key that is missing, malformed, expired, cannot sign or belongs to another provider.
pub fn load_key(cfg: &Config) -> Result<ServiceAccountKey, ServeError> {
    let text = match &cfg.omni_key_file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            ServeError::Config(format!("omni.key_file {}: {e}", path.display()))
        })?,
        None => std::env::var("OMNI_SERVICE_ACCOUNT_KEY").map_err(|_| {
            ServeError::Config(
                "omni mode needs a service account key: omni.key_file (--omni-key-file) or OMNI_SERVICE_ACCOUNT_KEY"
                    .into(),
            )
        })?,
    };
    let key = ServiceAccountKey::from_base64(&text, SystemTime::now())
        .map_err(|e| ServeError::Config(e.to_string()))?;
    if let Some(id) = &cfg.provider_id {
        key.check_provider(id)
            .map_err(|e| ServeError::Config(e.to_string()))?;
    }
    Ok(key)
}

/// Build the link from the config (refusing a bad key or endpoint before anything starts).
pub fn link(
    cfg: &Config,
    shared: Arc<OmniShared>,
    inventory: Inventory,
    reconciler: Arc<Reconciler>,
    power: Arc<PowerService>,
) -> Result<Link, ServeError> {
    let key = Arc::new(load_key(cfg)?);
    let endpoint = cfg
        .omni_endpoint
        .clone()
        .ok_or_else(|| ServeError::Config("omni.endpoint: required when mode = \"omni\"".into()))?;
    let provider_id = cfg
        .provider_id
        .clone()
        .unwrap_or_else(|| key.provider_id().to_string());
    let channel = rackboot_omni::transport::channel(&rackboot_omni::transport::TransportConfig {
        endpoint: endpoint.clone(),
        ca_file: cfg.omni_ca_file.clone(),
        insecure_skip_verify: cfg.omni_insecure_skip_verify,
    })
    .map_err(|e| ServeError::Config(e.to_string()))?;
    if cfg.omni_agent == rackboot_config::OmniAgent::Talos {
        *shared
            .talos_agent
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(TalosAgent {
            factory_url: cfg.image_factory_url.clone(),
            pxe_url: cfg.image_factory_pxe_url.clone(),
            version: cfg.omni_agent_talos_version.clone(),
        });
    }
    shared.set_status(|s| {
        s.enabled = true;
        s.endpoint = endpoint;
        s.provider_id = provider_id.clone();
    });
    tracing::info!(provider = %provider_id, key = %key.name(), fingerprint = %key.fingerprint(), "omni link configured");
    Ok(Link {
        shared,
        inventory,
        reconciler,
        power,
        client: OmniClient::new(channel, key),
        provider_id,
        factory_url: cfg.image_factory_url.clone(),
        factory_pxe_url: cfg.image_factory_pxe_url.clone(),
        install_boot: cfg.omni_install_boot,
        heartbeat: Duration::from_secs(cfg.omni_heartbeat_secs.max(1)),
    })
}

impl Link {
    /// Run every link task until `stop`.
    pub fn spawn(self, set: &mut tokio::task::JoinSet<()>, stop: &tokio_watch::Receiver<bool>) {
        let me = Arc::new(self);
        set.spawn(stoppable(stop.clone(), me.clone().heartbeat_loop()));
        set.spawn(stoppable(stop.clone(), me.clone().join_config_loop()));
        set.spawn(stoppable(stop.clone(), me.clone().machines_watch()));
        set.spawn(stoppable(stop.clone(), me.clone().bmc_watch()));
        set.spawn(stoppable(stop.clone(), me.sync_loop()));
    }

    fn note_error(&self, what: &str, e: &rackboot_proto::tonic::Status) {
        // Status messages come from Omni; they never contain our key.
        let msg = format!("{what}: {:?}: {}", e.code(), e.message());
        tracing::warn!(error = %msg, "omni link");
        self.shared.set_status(|s| {
            s.connected = false;
            s.last_error = Some(msg);
        });
    }

    /// Every beat: make sure the provider status is there (a Get; Omni may have lost it in a
    /// restart), then write the health heartbeat.
    async fn heartbeat_loop(self: Arc<Self>) {
        let mut backoff = Backoff::default();
        let status = InfraProviderStatusSpec {
            schema: String::new(),
            name: "rackboot".into(),
            description: "rackboot: network-boot appliance for bare metal (static provider)".into(),
            icon: String::new(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        loop {
            let mut c = self.client.clone();
            if let Err(e) = c
                .put(
                    state::NS,
                    types::PROVIDER_STATUS,
                    &self.provider_id,
                    &status,
                    &[(LABEL_STATIC_PROVIDER, "")],
                )
                .await
            {
                self.note_error("provider status", &e);
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
            let spec = InfraProviderHealthStatusSpec {
                last_heartbeat_timestamp: Some(prost_types::Timestamp::from(SystemTime::now())),
                error: String::new(),
            };
            match c
                .put(
                    state::NS_EPHEMERAL,
                    types::PROVIDER_HEALTH,
                    &self.provider_id,
                    &spec,
                    &[],
                )
                .await
            {
                Ok(_) => {
                    backoff = Backoff::default();
                    self.shared.set_status(|s| {
                        s.connected = true;
                        s.last_heartbeat_ms = Some(rackboot_store::now_ms());
                        s.last_error = None;
                    });
                    tokio::time::sleep(self.heartbeat).await;
                }
                Err(e) => {
                    self.note_error("heartbeat", &e);
                    tokio::time::sleep(backoff.next()).await;
                }
            }
        }
    }

    /// ProviderJoinConfigs: read at start and every 30 s (a watch is not worth it for this).
    async fn join_config_loop(self: Arc<Self>) {
        loop {
            let mut c = self.client.clone();
            match c
                .get(state::NS, types::JOIN_CONFIG, &self.provider_id)
                .await
            {
                Ok(Some(r)) => match state::spec_of::<ProviderJoinConfigSpec>(&r) {
                    Ok(spec) => {
                        let j = spec.config.unwrap_or_default();
                        let new = JoinConfig {
                            kernel_args: j.kernel_args,
                            config: j.config,
                        };
                        let mut cur = self.shared.join.write().unwrap_or_else(|p| p.into_inner());
                        if cur.as_ref() != Some(&new) {
                            tracing::info!(
                                kernel_args = new.kernel_args.len(),
                                "omni join config updated"
                            );
                            *cur = Some(new);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "omni join config: undecodable spec"),
                },
                Ok(None) => {}
                Err(e) => self.note_error("join config", &e),
            }
            // Polled at the heartbeat's pace: a machine booting right after the admin changed
            // the join configuration gets the new one.
            tokio::time::sleep(self.heartbeat).await;
        }
    }
}

async fn stoppable(
    mut stop: tokio_watch::Receiver<bool>,
    f: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        _ = f => {}
        _ = stop.changed() => {}
    }
}

/// Exponential backoff 1 s → 30 s.
#[derive(Debug, Default)]
struct Backoff(u32);

impl Backoff {
    fn next(&mut self) -> Duration {
        let secs = (1u64 << self.0.min(5)).min(30);
        self.0 = self.0.saturating_add(1);
        Duration::from_secs(secs)
    }
}

#[cfg(test)]
mod agent_chain_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[tokio::test]
    async fn a_failed_registration_is_not_retried_by_every_boot() {
        let (factory_url, calls) =
            crate::test_support::http_server("500 Internal Server Error", b"down", Duration::ZERO);
        let shared = OmniShared::default();
        *shared.talos_agent.write().unwrap() = Some(TalosAgent {
            factory_url,
            pxe_url: "https://pxe.factory.example".into(),
            version: "v1.9.0".into(),
        });
        let first = shared.talos_agent_chain("10.0.0.2:50042", "amd64").await;
        assert!(
            matches!(first, Some(Err(ref e)) if e.contains("500")),
            "{first:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A storm of boots right after: answered at once from the failure, no factory call.
        for _ in 0..20 {
            let again = shared.talos_agent_chain("10.0.0.2:50042", "amd64").await;
            assert_eq!(again, first);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Another arch is another registration.
        let arm = shared.talos_agent_chain("10.0.0.2:50042", "arm64").await;
        assert!(matches!(arm, Some(Err(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Once the back-off is over, the next boot asks the factory again.
        shared
            .agent_failed
            .lock()
            .unwrap()
            .values_mut()
            .for_each(|(at, _)| *at = at.checked_sub(FACTORY_RETRY_AFTER).unwrap());
        let later = shared.talos_agent_chain("10.0.0.2:50042", "amd64").await;
        assert!(matches!(later, Some(Err(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
