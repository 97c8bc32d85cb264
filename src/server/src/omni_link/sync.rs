//! The sync loop: for every InfraMachine whose machine the appliance knows, plan (sans-IO),
//! store the bookkeeping, carry out the plan, and report the InfraMachineStatus.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use rackboot_bmc::PowerAction;
use rackboot_lifecycle::{Command, Power};
use rackboot_omni::desired::{self, Install, Local, Todo};
use rackboot_omni::factory;
use rackboot_omni::state::{self, types};
use rackboot_store::{Machine, PowerState};

use super::Link;

/// Our finalizer on the InfraMachines we manage.
pub const FINALIZER: &str = "rackboot.infraprovider.sidero.dev";
/// A failed reboot/power-off for one request id is retried after this long.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Statuses are re-checked against Omni this often even when unchanged (Omni may have lost them).
const REFRESH: Duration = Duration::from_secs(60);

fn local_of(m: &Machine) -> Local {
    Local {
        state: crate::lifecycle::to_state(m.state),
        power: match m.power {
            PowerState::On => Power::On,
            PowerState::Off => Power::Off,
            PowerState::Unknown => Power::Unknown,
        },
        has_bmc: m.bmc.is_some(),
        stay_on: m.lifecycle.stay_on,
        book: m.omni.clone(),
    }
}

#[derive(Default)]
struct Memory {
    written: HashMap<String, Vec<u8>>,
    finalized: HashSet<String>,
    attempts: HashMap<String, Instant>,
    /// (schematic YAML, version, arch) → install profile name.
    profiles: HashMap<(String, String, &'static str), String>,
    refreshed: Option<Instant>,
}

impl Link {
    pub(super) async fn sync_loop(self: Arc<Self>) {
        let mut mem = Memory::default();
        let mut events = self.inventory.subscribe();
        loop {
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                _ = events.recv() => {}
                _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            }
            if mem.refreshed.is_none_or(|t| t.elapsed() > REFRESH) {
                mem.written.clear();
                mem.finalized.clear();
                mem.refreshed = Some(Instant::now());
            }
            let specs: Vec<_> = self
                .shared
                .specs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (uuid, (spec, tearing_down)) in specs {
                if tearing_down {
                    self.release(&uuid, &mut mem).await;
                } else {
                    self.sync_one(&uuid, &spec, &mut mem).await;
                }
            }
        }
    }

    async fn sync_one(
        &self,
        uuid: &str,
        spec: &rackboot_proto::omni::specs::InfraMachineSpec,
        mem: &mut Memory,
    ) {
        // A machine Omni knows but that never booted here yet: nothing to do until it does.
        if self.inventory.find(uuid).is_err() {
            return;
        }
        let pending = self
            .shared
            .pending_bmc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uuid);
        if let Some(bmc) = pending {
            self.apply_bmc(uuid, &bmc);
        }
        let Ok(m) = self.inventory.find(uuid) else {
            return;
        };
        let plan = desired::plan(spec, &local_of(&m));
        if plan.book != m.omni {
            let book = plan.book.clone();
            if let Err(e) = self.inventory.modify(&m.id, |x| {
                x.omni = book.clone();
                true
            }) {
                tracing::warn!(machine = %m.id, error = %e, "omni bookkeeping not stored; retrying later");
                return;
            }
        }
        for t in plan.todo {
            self.execute(&m, t, mem).await;
        }
        let Ok(m) = self.inventory.find(uuid) else {
            return;
        };
        let status = desired::status(spec, &local_of(&m));
        let bytes = status.encode_to_vec();
        let mut c = self.client.clone();
        if mem.written.get(uuid) != Some(&bytes) {
            match c
                .put(state::NS, types::INFRA_MACHINE_STATUS, uuid, &status, &[])
                .await
            {
                Ok(_) => {
                    mem.written.insert(uuid.to_string(), bytes);
                }
                Err(e) => self.note_error("machine status", &e),
            }
        }
        if !mem.finalized.contains(uuid) {
            match c
                .set_finalizer(state::NS, types::INFRA_MACHINE, uuid, FINALIZER, true)
                .await
            {
                Ok(()) => {
                    mem.finalized.insert(uuid.to_string());
                }
                Err(e) => self.note_error("finalizer", &e),
            }
        }
    }

    /// Omni is removing the InfraMachine: drop our status and our finalizer so it can go. The
    /// machine stays in the local inventory as it is (an operator decides what happens next).
    async fn release(&self, uuid: &str, mem: &mut Memory) {
        let mut c = self.client.clone();
        if let Err(e) = c
            .destroy(state::NS, types::INFRA_MACHINE_STATUS, uuid)
            .await
        {
            self.note_error("machine status removal", &e);
            return;
        }
        match c
            .set_finalizer(state::NS, types::INFRA_MACHINE, uuid, FINALIZER, false)
            .await
        {
            Ok(()) => {
                mem.written.remove(uuid);
                mem.finalized.remove(uuid);
            }
            Err(e) => self.note_error("finalizer removal", &e),
        }
    }

    async fn execute(&self, m: &Machine, t: Todo, mem: &mut Memory) {
        match t {
            Todo::Command(c) => {
                if let Err(e) = self.reconciler.command(&m.id, c.clone()).await {
                    tracing::debug!(machine = %m.id, command = ?c, error = %e, "omni-driven command not applied");
                }
            }
            Todo::Install(i) => match self.install_profile(m, &i, mem).await {
                Ok(profile) => {
                    if let Err(e) = self
                        .reconciler
                        .command(&m.id, Command::Provision { profile })
                        .await
                    {
                        tracing::debug!(machine = %m.id, error = %e, "omni install not started");
                    }
                }
                Err(e) => {
                    tracing::warn!(machine = %m.id, error = %e, "omni install: no profile");
                    self.inventory
                        .event(&m.id, "omni_error", &format!("install: {e}"));
                }
            },
            Todo::Reboot { id, pxe } => {
                let key = format!("{}/reboot/{id}", m.id);
                if mem
                    .attempts
                    .get(&key)
                    .is_some_and(|t| t.elapsed() < RETRY_AFTER)
                {
                    return;
                }
                mem.attempts.insert(key.clone(), Instant::now());
                if pxe {
                    if let Err(e) = self
                        .power
                        .pxe_once(&m.id, crate::lifecycle::is_efi(m))
                        .await
                    {
                        tracing::info!(machine = %m.id, error = %e, "omni reboot: PXE-once failed");
                        return;
                    }
                }
                self.reconciler.agents.drop_link(&m.id);
                let action = if m.power == PowerState::Off {
                    PowerAction::On
                } else {
                    PowerAction::Cycle
                };
                match self.power.act(&m.id, Some(action)).await {
                    Ok(_) => {
                        mem.attempts.remove(&key);
                        let now = rackboot_store::now_ms();
                        let _ = self.inventory.modify(&m.id, |x| {
                            x.omni.last_reboot_id.clone_from(&id);
                            x.omni.last_reboot_ms = Some(now);
                            true
                        });
                        self.inventory.event(
                            &m.id,
                            "omni",
                            &format!("rebooted for Omni request {id}"),
                        );
                    }
                    Err(e) => tracing::info!(machine = %m.id, error = %e, "omni reboot failed"),
                }
            }
            Todo::PowerOff { id } => {
                let key = format!("{}/off/{id}", m.id);
                if mem
                    .attempts
                    .get(&key)
                    .is_some_and(|t| t.elapsed() < RETRY_AFTER)
                {
                    return;
                }
                mem.attempts.insert(key.clone(), Instant::now());
                self.reconciler.agents.drop_link(&m.id);
                match self.power.act(&m.id, Some(PowerAction::Off)).await {
                    Ok(_) => {
                        mem.attempts.remove(&key);
                        let _ = self.inventory.modify(&m.id, |x| {
                            x.omni.last_power_off_id.clone_from(&id);
                            true
                        });
                        self.inventory.event(
                            &m.id,
                            "omni",
                            &format!("powered off for Omni request {id}"),
                        );
                    }
                    Err(e) => tracing::info!(machine = %m.id, error = %e, "omni power-off failed"),
                }
            }
        }
    }

    /// The install profile for `i` on `m`'s architecture: register the schematic with the Image
    /// Factory (once per distinct schematic), store a profile chaining to its PXE endpoint.
    async fn install_profile(
        &self,
        m: &Machine,
        i: &Install,
        mem: &mut Memory,
    ) -> Result<String, String> {
        let version = factory::talos_version(&i.talos_version).map_err(|e| e.to_string())?;
        let arch = factory::arch_for(m.boot.arch);
        let yaml = factory::schematic_yaml(i, &self.shared.join_kernel_args());
        let key = (yaml.clone(), version.clone(), arch);
        if let Some(p) = mem.profiles.get(&key) {
            return Ok(p.clone());
        }
        let url = format!("{}/schematics", self.factory_url);
        let body = yaml.clone();
        let answer = blocking_http(&url, Some(body)).await?;
        let schematic = factory::parse_schematic_id(&answer).map_err(|e| e.to_string())?;
        let (name, script) =
            factory::install_profile(&self.factory_pxe_url, &schematic, &version, arch);
        let mut profile = serde_json::json!({ "name": name, "script": script });
        if self.install_boot == rackboot_config::InstallBoot::Cache {
            // Serve the factory's kernel and initramfs from the asset cache (fetched once for
            // the whole rack); a script we cannot read as a plain kernel boot is chained to.
            let url = factory::pxe_script_url(&self.factory_pxe_url, &schematic, &version, arch);
            let boot = blocking_http(&url, None).await.and_then(|b| {
                factory::parse_pxe_script(&String::from_utf8_lossy(&b))
                    .map_err(|e| format!("{url}: {e}"))
            });
            match boot {
                Ok(k) => {
                    profile = serde_json::json!({
                        "name": format!("{name}-cached"),
                        "kernel": k.kernel,
                        "initrds": k.initrds,
                        "cmdline": k.cmdline,
                    });
                }
                Err(e) => {
                    tracing::warn!(machine = %m.id, error = %e, "install boot chains to the factory");
                    self.inventory.event(
                        &m.id,
                        "omni",
                        &format!("factory PXE script not cacheable, chaining to it: {e}"),
                    );
                }
            }
        }
        let name = profile["name"].as_str().unwrap_or_default().to_string();
        let profile: rackboot_store::Profile =
            serde_json::from_value(profile).map_err(|e| e.to_string())?;
        self.inventory
            .put_profile(profile)
            .map_err(|e| e.to_string())?;
        mem.profiles.insert(key, name.clone());
        Ok(name)
    }
}

use std::io::Read as _;

/// POST `body` (YAML) to `url`, or GET it; the answer's first 64 KiB.
pub(super) async fn blocking_http(url: &str, body: Option<String>) -> Result<Vec<u8>, String> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        let resp = match body {
            Some(b) => agent
                .post(&url)
                .set("Content-Type", "application/yaml")
                .send_string(&b),
            None => agent.get(&url).call(),
        }
        .map_err(|e| format!("{url}: {e}"))?;
        let mut buf = Vec::new();
        resp.into_reader()
            .take(64 * 1024)
            .read_to_end(&mut buf)
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(buf)
    })
    .await
    .map_err(|e| e.to_string())?
}
