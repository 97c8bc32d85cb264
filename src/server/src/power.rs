//! Power through each machine's stored BMC: on-demand actions (API, CLI) and a background poll
//! of every BMC's power state at a configurable interval with jitter, never more than
//! `max_parallel` BMCs at once. Each BMC gets one [`Paced`] (one command in flight, minimum
//! interval, verification), rebuilt when its record changes. Every action is an event.

use crate::inventory::{Inventory, InventoryError};
use rackboot_bmc::{
    BmcError, BmcUrl, Credentials, Paced, PacingConfig, PowerAction, PowerState, PxeBoot,
    RedfishOptions,
};
use rackboot_store::Machine;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("machine {0} has no BMC configured")]
    NoBmc(String),
    #[error("BMC of machine {id}: {source}")]
    Bmc {
        id: String,
        #[source]
        source: BmcError,
    },
}

#[derive(Clone, Debug)]
pub struct PowerConfig {
    pub pacing: PacingConfig,
    pub poll_interval: Duration,
    pub max_parallel: usize,
}

/// Power actions per machine that are decided (stored by the lifecycle, persist first) or in
/// flight: (how many, a counter bumped at every start and end). A power-state read that
/// overlapped one may have seen the machine before the action, so it is not stored over the
/// intent (after a crash, a stale "on" would make the lifecycle power it off again).
#[derive(Default)]
struct Intents(Mutex<HashMap<String, (u32, u64)>>);

impl Intents {
    fn get(&self, id: &str) -> (u32, u64) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
            .unwrap_or((0, 0))
    }

    fn change(&self, id: &str, begin: bool) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.entry(id.to_string()).or_insert((0, 0));
        e.0 = if begin {
            e.0 + 1
        } else {
            e.0.saturating_sub(1)
        };
        e.1 = e.1.wrapping_add(1);
    }
}

/// Did a power action (decided or in flight) overlap a read that started at `before` and
/// ended at `now` (both [`Intents::get`])?
fn overlapped(before: (u32, u64), now: (u32, u64)) -> bool {
    before.0 > 0 || now != before
}

/// A power action decided or in flight on one machine, until dropped
/// ([`PowerService::intent`]).
pub struct PowerIntent {
    intents: Arc<Intents>,
    id: String,
}

impl Drop for PowerIntent {
    fn drop(&mut self) {
        self.intents.change(&self.id, false);
    }
}

pub struct PowerService {
    intents: Arc<Intents>,
    inventory: Inventory,
    cfg: PowerConfig,
    bmcs: Mutex<HashMap<String, (String, Arc<Paced>)>>,
    parallel: Semaphore,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// One pass over every machine with a BMC ([`PowerService::poll_all`]).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PollReport {
    /// Machines with a BMC that were polled.
    pub machines: usize,
    pub ok: usize,
    pub failed: usize,
    /// Wall time of the whole pass.
    pub duration_ms: f64,
}

/// What the API answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PowerReply {
    pub machine: String,
    pub action: String,
    pub power: PowerState,
}

fn to_store(s: PowerState) -> rackboot_store::PowerState {
    match s {
        PowerState::On => rackboot_store::PowerState::On,
        PowerState::Off => rackboot_store::PowerState::Off,
    }
}

impl PowerService {
    pub fn new(inventory: Inventory, cfg: PowerConfig) -> Self {
        let parallel = Semaphore::new(cfg.max_parallel.max(1));
        Self {
            intents: Arc::default(),
            inventory,
            cfg,
            bmcs: Mutex::new(HashMap::new()),
            parallel,
            metrics: None,
        }
    }

    /// Record BMC call latency and failures in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn observe(&self, m: &Machine, started: std::time::Instant, ok: bool) {
        let Some(metrics) = &self.metrics else { return };
        let driver = m
            .bmc
            .as_ref()
            .and_then(|b| b.url.split("://").next())
            .unwrap_or("none")
            .to_string();
        let labels = crate::metrics::KindLabels {
            kind: driver.into(),
            detail: if ok { "ok" } else { "error" }.into(),
        };
        metrics
            .bmc_call_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if !ok {
            metrics
                .bmc_failures
                .get_or_create(&crate::metrics::ReasonLabels {
                    reason: m.id.clone(),
                })
                .inc();
        }
    }

    fn bmc_for(&self, m: &Machine) -> Result<Arc<Paced>, PowerError> {
        let rec = m
            .bmc
            .as_ref()
            .ok_or_else(|| PowerError::NoBmc(m.id.clone()))?;
        // The record (incl. the sealed password) identifies the driver to reuse.
        let fingerprint = format!(
            "{}|{}|{}|{}",
            rec.url, rec.username, rec.password_sealed, rec.insecure_tls
        );
        let mut map = self.bmcs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((fp, b)) = map.get(&m.id) {
            if *fp == fingerprint {
                return Ok(b.clone());
            }
        }
        let bmc_err = |source| PowerError::Bmc {
            id: m.id.clone(),
            source,
        };
        let url = BmcUrl::parse(&rec.url).map_err(|e| bmc_err(BmcError::Url(e)))?;
        let password = self.inventory.bmc_password(m)?.unwrap_or_default();
        let creds = Credentials {
            username: rec.username.clone(),
            password,
        };
        let opts = RedfishOptions {
            verify_tls: !rec.insecure_tls,
            ..Default::default()
        };
        let driver = rackboot_bmc::connect(&url, Some(creds), opts).map_err(bmc_err)?;
        let paced = Arc::new(Paced::new(driver, self.cfg.pacing.clone()));
        map.insert(m.id.clone(), (fingerprint, paced.clone()));
        Ok(paced)
    }

    /// Mark a power action on machine `id` as decided, until the returned guard is dropped:
    /// power-state reads overlapping it are not stored. The lifecycle takes one before it
    /// stores a record whose actions include power, and drops it once they ran.
    pub fn intent(&self, id: &str) -> PowerIntent {
        self.intents.change(id, true);
        PowerIntent {
            intents: self.intents.clone(),
            id: id.to_string(),
        }
    }

    /// `None` = read the power state.
    pub async fn act(
        &self,
        key: &str,
        action: Option<PowerAction>,
    ) -> Result<PowerReply, PowerError> {
        let m = self.inventory.find(key)?;
        let intents_before = self.intents.get(&m.id);
        let _intent = action.map(|_| self.intent(&m.id));
        let bmc = self.bmc_for(&m)?;
        let label = action.map_or("status".to_string(), |a| format!("{a:?}").to_lowercase());
        let _permit = self.parallel.acquire().await.ok();
        let started = std::time::Instant::now();
        let result = match action {
            None => bmc.power_state().await,
            Some(a) => bmc.power(a).await,
        };
        self.observe(&m, started, result.is_ok());
        let err = result.as_ref().err().map(|e| e.to_string());
        if let Err(e) = self.inventory.set_bmc_health(&m.id, result.is_ok(), err) {
            tracing::debug!(error = %e, machine = %m.id, "could not record BMC health");
        }
        match result {
            Ok(state) => {
                // A read is stored only if no power action was decided or ran meanwhile.
                let stale = action.is_none() && overlapped(intents_before, self.intents.get(&m.id));
                if stale {
                    tracing::debug!(machine = %m.id, "power state read overlapped a power action: not stored");
                } else if let Err(e) = self.inventory.set_power(&m.id, to_store(state), m.power) {
                    tracing::warn!(error = %e, machine = %m.id, "could not record the power state");
                }
                if action.is_some() {
                    self.inventory.event(
                        &m.id,
                        "power",
                        &format!("power {label}: done, power is {state:?}"),
                    );
                }
                Ok(PowerReply {
                    machine: m.id,
                    action: label,
                    power: state,
                })
            }
            Err(e) => {
                self.inventory
                    .event(&m.id, "power_error", &format!("power {label} failed: {e}"));
                Err(PowerError::Bmc {
                    id: m.id,
                    source: e,
                })
            }
        }
    }

    /// Set PXE as the next boot device (right before power-on: some BMCs forget it).
    pub async fn pxe_once(&self, key: &str, efi: bool) -> Result<(), PowerError> {
        let m = self.inventory.find(key)?;
        let bmc = self.bmc_for(&m)?;
        let _permit = self.parallel.acquire().await.ok();
        bmc.set_pxe_boot(PxeBoot {
            efi,
            persistent: false,
        })
        .await
        .map_err(|source| PowerError::Bmc {
            id: m.id.clone(),
            source,
        })?;
        self.inventory.event(
            &m.id,
            "bootdev",
            &format!("next boot: PXE{}", if efi { " (UEFI)" } else { "" }),
        );
        Ok(())
    }

    /// Read every BMC's power state once (at most `max_parallel` at a time, each through its
    /// [`Paced`], so no BMC gets two commands at once or two closer than the minimum interval),
    /// recording the results; returns when all are done. The background poll and
    /// `POST /api/v1/power/poll` both run this.
    pub async fn poll_all(self: &Arc<Self>) -> PollReport {
        let started = std::time::Instant::now();
        let machines = self.inventory.store().list_machines().unwrap_or_default();
        let mut tasks = tokio::task::JoinSet::new();
        for m in machines.into_iter().filter(|m| m.bmc.is_some()) {
            let me = self.clone();
            tasks.spawn(async move {
                let r = me.act(&m.id, None).await;
                if let Err(e) = &r {
                    tracing::debug!(error = %e, machine = %m.id, "power poll failed");
                }
                r.is_ok()
            });
        }
        let mut report = PollReport::default();
        while let Some(done) = tasks.join_next().await {
            report.machines += 1;
            if done.unwrap_or(false) {
                report.ok += 1;
            } else {
                report.failed += 1;
            }
        }
        report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        report
    }

    /// Poll every BMC's power state until `shutdown`.
    pub async fn poll_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.poll_all().await;
            // ±10 % jitter so a rack's BMCs are not polled in lockstep.
            let jitter = (rand_fraction() - 0.5) * 0.2;
            let wait = self.cfg.poll_interval.mul_f64(1.0 + jitter);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

fn rand_fraction() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A power-state read is stored only when no power action was decided or ran on that
    /// machine at any time during the read.
    #[test]
    fn reads_overlapping_a_power_action_are_not_stored() {
        let intents = Arc::new(Intents::default());
        let guard = |id: &str| {
            intents.change(id, true);
            PowerIntent {
                intents: intents.clone(),
                id: id.to_string(),
            }
        };
        let quiet = intents.get("m");
        assert!(!overlapped(quiet, intents.get("m")));
        // Begun during the read (still pending at its end).
        let g = guard("m");
        assert!(overlapped(quiet, intents.get("m")));
        // Pending when the read started.
        let during = intents.get("m");
        drop(g);
        assert!(overlapped(during, intents.get("m")));
        // Begun and finished during the read.
        let before = intents.get("m");
        drop(guard("m"));
        assert!(overlapped(before, intents.get("m")));
        // Another machine's actions do not matter; a later read is stored.
        let before = intents.get("m");
        drop(guard("other"));
        assert!(!overlapped(before, intents.get("m")));
    }
}
