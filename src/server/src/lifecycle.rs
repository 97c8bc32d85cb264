//! The lifecycle shell: runs the pure reconciler (`rackboot-lifecycle`) for one machine at a time,
//! stores the result (generation-checked), then executes the actions with the BMC (power) and
//! the agent link, feeding failures back in. Persist first, act second: after a crash the record
//! says what was already asked for (`agent_requested_ms`, `last_power_on_ms`, `wipe_sent`), so a
//! completed power action is not repeated within its interval.

use crate::inventory::{Inventory, InventoryError};
use crate::power::PowerService;
use rackboot_bmc::PowerAction;
use rackboot_lifecycle::{step, Action, BootMode, Command, Config, Input, Lifecycle, Power, State};
use rackboot_store::{
    BootModeSetting, DiskMethod, LifecycleData, Machine, MachineState, PowerState, StoreError,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A command for the agent of one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCommand {
    Wipe { full: bool },
}

/// Connected agents (the agent link service registers them). Each registration has a
/// connection number so a stale session ending late cannot remove a newer one.
#[derive(Default)]
pub struct AgentHub {
    links: Mutex<HashMap<String, (u64, mpsc::Sender<AgentCommand>)>>,
    next: std::sync::atomic::AtomicU64,
}

impl AgentHub {
    pub fn register(&self, machine: &str, tx: mpsc::Sender<AgentCommand>) -> u64 {
        let conn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(machine.to_string(), (conn, tx));
        conn
    }
    /// End registration `conn` (no-op if a newer session replaced it). Returns whether it was current.
    pub fn unregister(&self, machine: &str, conn: u64) -> bool {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if links.get(machine).is_some_and(|(c, _)| *c == conn) {
            links.remove(machine);
            return true;
        }
        false
    }
    /// Forget a machine's session: it was powered off or rebooted, so its agent is gone even if
    /// its TCP connection has not noticed yet.
    pub fn drop_link(&self, machine: &str) {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(machine);
    }
    pub fn connected(&self, machine: &str) -> bool {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(machine)
            .is_some_and(|(_, t)| !t.is_closed())
    }
    fn send(&self, machine: &str, c: AgentCommand) -> Result<(), String> {
        let tx = self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(machine)
            .map(|(_, t)| t.clone());
        match tx {
            Some(tx) => tx.try_send(c).map_err(|e| format!("agent link: {e}")),
            None => Err("the agent is not connected".into()),
        }
    }
}

/// Feeds inputs to the reconciler without waiting (boot HTTP, agent link).
#[derive(Clone)]
pub struct LifecycleHandle(mpsc::Sender<(String, Input)>);

impl LifecycleHandle {
    pub fn notify(&self, machine: &str, input: Input) {
        let _ = self.0.try_send((machine.to_string(), input));
    }
}

pub struct Reconciler {
    inventory: Inventory,
    power: Arc<PowerService>,
    pub agents: Arc<AgentHub>,
    cfg: Config,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    tx: mpsc::Sender<(String, Input)>,
    started: std::time::Instant,
}

pub(crate) fn to_state(s: MachineState) -> State {
    match s {
        MachineState::Registered => State::Registered,
        MachineState::Discovered | MachineState::Inspecting => State::Discovered,
        MachineState::Wiping => State::Wiping,
        MachineState::Available => State::Available,
        MachineState::Provisioning => State::Provisioning,
        MachineState::Provisioned => State::Provisioned,
        MachineState::Releasing => State::Releasing,
        MachineState::Cordoned => State::Cordoned,
        MachineState::Rejected => State::Rejected,
        MachineState::Error => State::Error,
    }
}

fn from_state(s: State) -> MachineState {
    match s {
        State::Registered => MachineState::Registered,
        State::Discovered => MachineState::Discovered,
        State::Wiping => MachineState::Wiping,
        State::Available => MachineState::Available,
        State::Provisioning => MachineState::Provisioning,
        State::Provisioned => MachineState::Provisioned,
        State::Releasing => MachineState::Releasing,
        State::Cordoned => MachineState::Cordoned,
        State::Rejected => MachineState::Rejected,
        State::Error => MachineState::Error,
    }
}

fn to_lifecycle(m: &Machine, agent_connected: bool) -> Lifecycle {
    let d = &m.lifecycle;
    let mut l = Lifecycle::new(to_state(m.state));
    l.reason.clone_from(&m.state_reason);
    l.accepted = d.accepted;
    l.profile.clone_from(&d.profile);
    l.full_wipe = d.full_wipe;
    l.inventoried = d.inventoried;
    l.agent_connected = agent_connected;
    l.wipe_sent = d.wipe_sent;
    l.wipe_failures = d.wipe_failures;
    l.has_bmc = m.bmc.is_some();
    l.power = match m.power {
        PowerState::On => Power::On,
        PowerState::Off => Power::Off,
        PowerState::Unknown => Power::Unknown,
    };
    l.last_power_on_ms = d.last_power_on_ms;
    l.agent_requested_ms = d.agent_requested_ms;
    l.before_cordon = d.before_cordon.map(to_state);
    l.stay_on = d.stay_on;
    l
}

fn write_back(m: &mut Machine, l: &Lifecycle) {
    let changed = from_state(l.state) != m.state;
    m.state = from_state(l.state);
    m.state_reason.clone_from(&l.reason);
    // The power the lifecycle's actions lead to, stored with them (persist first): a crash
    // right after a power-off must not leave "on" in the record, or the restarted process
    // powers the machine off again.
    m.power = match l.power {
        Power::On => PowerState::On,
        Power::Off => PowerState::Off,
        Power::Unknown => PowerState::Unknown,
    };
    m.lifecycle = LifecycleData {
        accepted: l.accepted,
        profile: l.profile.clone(),
        full_wipe: l.full_wipe,
        inventoried: l.inventoried,
        wipe_sent: l.wipe_sent,
        wipe_failures: l.wipe_failures,
        last_power_on_ms: l.last_power_on_ms,
        agent_requested_ms: l.agent_requested_ms,
        before_cordon: l.before_cordon.map(from_state),
        stay_on: l.stay_on,
    };
    // The lifecycle sets the boot mode on every transition; an operator's `machines boot`
    // override stands until the next one.
    if changed || m.boot_mode.is_none() {
        let keep_method = match &m.boot_mode {
            Some(BootModeSetting::Disk { method }) => *method,
            _ => DiskMethod::Exit,
        };
        m.boot_mode = Some(match l.boot_mode() {
            BootMode::Agent => BootModeSetting::Agent,
            BootMode::Profile(profile) => BootModeSetting::Profile { profile },
            BootMode::Disk => BootModeSetting::Disk {
                method: keep_method,
            },
            BootMode::Cordoned => BootModeSetting::Cordoned {
                reason: l.reason.clone().unwrap_or_default(),
            },
        });
    }
}

/// UEFI firmware (option 93 ≥ 6) wants the EFI bit in the PXE override.
pub(crate) fn is_efi(m: &Machine) -> bool {
    m.boot.arch.is_some_and(|a| a >= 6)
}

impl Reconciler {
    pub fn new(
        inventory: Inventory,
        power: Arc<PowerService>,
        cfg: Config,
    ) -> (Arc<Self>, mpsc::Receiver<(String, Input)>) {
        let (tx, rx) = mpsc::channel(4096);
        let r = Arc::new(Self {
            inventory,
            power,
            agents: Arc::default(),
            cfg,
            locks: Mutex::default(),
            tx,
            started: std::time::Instant::now(),
        });
        (r, rx)
    }

    /// After a start, machines waiting for their agent (wiping, releasing) give an agent that
    /// was connected to the previous process this long to reconnect before a tick may
    /// network-boot them again: a restart in the middle of a wipe must not power-cycle the
    /// machine and cut the wipe short (the core does the same after an agent disconnects).
    fn reconnect_grace(&self) -> Duration {
        Duration::from_millis(self.cfg.agent_reconnect_grace.min(self.cfg.agent_timeout))
    }

    pub fn handle(&self) -> LifecycleHandle {
        LifecycleHandle(self.tx.clone())
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// An operator command: `Err` with the reason when the state does not allow it.
    pub async fn command(
        self: &Arc<Self>,
        key: &str,
        c: Command,
    ) -> Result<Machine, InventoryError> {
        if let Command::Provision { profile } = &c {
            if self.inventory.store().get_profile(profile)?.is_none() {
                return Err(InventoryError::Invalid(format!(
                    "profile: {profile:?} does not exist"
                )));
            }
        }
        let id = self.inventory.find(key)?.id;
        self.apply(&id, Input::Command(c)).await
    }

    /// Apply one input to one machine, store the result, then start its actions.
    pub async fn apply(
        self: &Arc<Self>,
        id: &str,
        input: Input,
    ) -> Result<Machine, InventoryError> {
        let lock = self.lock_for(id);
        let _one = lock.lock().await;
        for _ in 0..5 {
            let Some(mut m) = self.inventory.store().get_machine(id)? else {
                return Err(InventoryError::NotFound(id.to_string()));
            };
            let before = to_lifecycle(&m, self.agents.connected(id));
            if input == Input::Tick
                && matches!(before.state, State::Wiping | State::Releasing)
                && !before.agent_connected
                && self.started.elapsed() < self.reconnect_grace()
            {
                return Ok(m);
            }
            let out = step(&before, &input, rackboot_store::now_ms(), &self.cfg);
            if let Some(why) = out.refused {
                return Err(InventoryError::Conflict(why));
            }
            if out.record == before && out.actions.is_empty() {
                return Ok(m);
            }
            write_back(&mut m, &out.record);
            // Taken before the record is stored: a power-state poll overlapping the store and
            // the action must not overwrite the intent with what the BMC said before it.
            let intent = out
                .actions
                .iter()
                .any(|a| {
                    matches!(
                        a,
                        Action::PxeOnce | Action::PowerOn | Action::PowerCycle | Action::PowerOff
                    )
                })
                .then(|| self.power.intent(id));
            match self.inventory.store().update_machine(m) {
                Ok(stored) => {
                    if !out.actions.is_empty() {
                        let me = self.clone();
                        let machine = stored.clone();
                        tokio::spawn(async move {
                            me.execute(&machine, out.actions).await;
                            drop(intent);
                        });
                    }
                    return Ok(stored);
                }
                Err(StoreError::Stale { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(InventoryError::Conflict(format!(
            "machine {id} kept changing"
        )))
    }

    async fn execute(self: Arc<Self>, m: &Machine, actions: Vec<Action>) {
        for a in actions {
            let result = match &a {
                Action::Event(msg) => {
                    self.inventory.event(&m.id, "lifecycle", msg);
                    Ok(())
                }
                Action::PxeOnce => self
                    .power
                    .pxe_once(&m.id, is_efi(m))
                    .await
                    .map_err(|e| e.to_string()),
                Action::PowerOn | Action::PowerCycle | Action::PowerOff => {
                    let p = match a {
                        Action::PowerOn => PowerAction::On,
                        Action::PowerCycle => PowerAction::Cycle,
                        _ => PowerAction::Off,
                    };
                    // Off or a reboot ends the agent's session, even if its TCP connection
                    // has not noticed yet.
                    if p != PowerAction::On {
                        self.agents.drop_link(&m.id);
                    }
                    self.power
                        .act(&m.id, Some(p))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                Action::AgentWipe { full } => {
                    let r = self.agents.send(&m.id, AgentCommand::Wipe { full: *full });
                    if r.is_ok() {
                        self.inventory.event(
                            &m.id,
                            "agent",
                            if *full {
                                "full wipe sent to the agent"
                            } else {
                                "wipe sent to the agent"
                            },
                        );
                    }
                    r
                }
            };
            if let Err(error) = result {
                tracing::info!(machine = %m.id, action = ?a, %error, "lifecycle action failed");
                let _ = self
                    .tx
                    .try_send((m.id.clone(), Input::ActionFailed { action: a, error }));
                // The rest of this batch depended on it (PXE-once before power-on).
                break;
            }
        }
    }

    /// Consume queued inputs and tick every machine that has something to converge to.
    pub async fn run(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<(String, Input)>,
        tick: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut timer = tokio::time::interval(tick);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some((id, input)) = rx.recv() => {
                    if let Err(e) = self.apply(&id, input).await {
                        tracing::debug!(machine = %id, error = %e, "lifecycle input not applied");
                    }
                }
                _ = timer.tick() => {
                    let machines = self.inventory.store().list_machines().unwrap_or_default();
                    for m in machines {
                        if matches!(m.state, MachineState::Wiping | MachineState::Releasing | MachineState::Provisioning | MachineState::Available) {
                            let me = self.clone();
                            tokio::spawn(async move {
                                if let Err(e) = me.apply(&m.id, Input::Tick).await {
                                    tracing::debug!(machine = %m.id, error = %e, "lifecycle tick");
                                }
                            });
                        }
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::NewMachine;
    use rackboot_store::Profile;

    fn setup() -> (tempfile::TempDir, Arc<Reconciler>, Inventory) {
        let dir = tempfile::tempdir().unwrap();
        let inv = crate::test_support::inventory(dir.path());
        let (r, _rx) = Reconciler::new(
            inv.clone(),
            crate::test_support::power(&inv),
            Config::default(),
        );
        (dir, r, inv)
    }

    /// Just after a start, a wiping machine whose agent has not reconnected yet is left alone
    /// by ticks (no network boot that would interrupt its wipe); commands still act.
    #[tokio::test]
    async fn ticks_wait_for_agents_to_reconnect_after_a_start() {
        let (_d, r, inv) = setup();
        let id = inv
            .add(NewMachine {
                macs: vec!["52:54:00:00:00:02".into()],
                ..Default::default()
            })
            .unwrap()
            .id;
        // As stored by the previous process: wiping, its agent had connected (so no pending
        // network-boot request), the wipe sent.
        inv.modify(&id, |m| {
            m.state = MachineState::Wiping;
            m.lifecycle.accepted = true;
            m.lifecycle.wipe_sent = true;
            m.lifecycle.agent_requested_ms = None;
            true
        })
        .unwrap();
        let m = r.apply(&id, Input::Tick).await.unwrap();
        assert_eq!(
            m.lifecycle.agent_requested_ms, None,
            "no network boot requested"
        );
        assert!(m.lifecycle.wipe_sent);
        // The agent reconnects: the wipe is sent again at once.
        let (tx, mut agent) = mpsc::channel(4);
        let _conn = r.agents.register(&id, tx);
        r.apply(&id, Input::AgentConnected).await.unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), agent.recv())
                .await
                .unwrap(),
            Some(AgentCommand::Wipe { full: false })
        );
    }

    /// The idle power-off is stored before it is sent: a crash right after it leaves "off" in
    /// the record, so the next process does not power the machine off again.
    #[tokio::test]
    async fn the_idle_power_off_is_stored_before_it_is_sent() {
        let (_d, r, inv) = setup();
        let id = inv
            .add(NewMachine {
                macs: vec!["52:54:00:00:00:03".into()],
                bmc: Some(crate::api::NewBmc {
                    url: "ipmi://127.0.0.1:9".into(),
                    username: Some("admin".into()),
                    password: Some("secret".into()),
                    insecure_tls: false,
                }),
                ..Default::default()
            })
            .unwrap()
            .id;
        inv.modify(&id, |m| {
            m.state = MachineState::Available;
            m.power = PowerState::On;
            m.lifecycle.accepted = true;
            m.lifecycle.last_power_on_ms = Some(1);
            true
        })
        .unwrap();
        let m = r.apply(&id, Input::Tick).await.unwrap();
        assert_eq!(m.power, PowerState::Off, "the decided power-off is stored");
        let stored = inv.store().get_machine(&id).unwrap().unwrap();
        assert_eq!(stored.power, PowerState::Off);
        // A second process over the same store decides nothing more.
        let power = crate::test_support::power(&inv);
        let (r2, _rx) = Reconciler::new(inv.clone(), power, Config::default());
        let again = r2.apply(&id, Input::Tick).await.unwrap();
        assert_eq!(again.power, PowerState::Off);
        assert_eq!(again.lifecycle, stored.lifecycle, "nothing more decided");
    }

    #[tokio::test]
    async fn standalone_life_through_the_shell() {
        let (_d, r, inv) = setup();
        let id = inv
            .add(NewMachine {
                macs: vec!["52:54:00:00:00:01".into()],
                ..Default::default()
            })
            .unwrap()
            .id;
        inv.store()
            .put_profile(&Profile {
                name: "demo".into(),
                kernel: Some("k".into()),
                initrds: vec![],
                cmdline: String::new(),
                script: None,
                sha256: Default::default(),
            })
            .unwrap();

        // Provisioning a machine nobody accepted is refused with the reason.
        let err = r
            .command(
                &id,
                Command::Provision {
                    profile: "demo".into(),
                },
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("only available machines"), "{err}");

        let (tx, mut agent) = mpsc::channel(4);
        let _conn = r.agents.register(&id, tx);
        let m = r.command(&id, Command::Accept).await.unwrap();
        assert_eq!(m.state, MachineState::Wiping);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), agent.recv())
                .await
                .unwrap(),
            Some(AgentCommand::Wipe { full: false })
        );
        assert!(m.lifecycle.wipe_sent && m.lifecycle.accepted);

        let m = r
            .apply(
                &id,
                Input::WipeDone {
                    ok: true,
                    error: String::new(),
                },
            )
            .await
            .unwrap();
        assert_eq!(m.state, MachineState::Available);
        assert_eq!(m.boot_mode, Some(BootModeSetting::Agent));

        let m = r
            .command(
                &id,
                Command::Provision {
                    profile: "demo".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(m.state, MachineState::Provisioning);
        assert_eq!(
            m.boot_mode,
            Some(BootModeSetting::Profile {
                profile: "demo".into()
            })
        );
        let m = r.apply(&id, Input::ProfileServed).await.unwrap();
        assert_eq!(m.state, MachineState::Provisioned);
        assert_eq!(
            m.boot_mode,
            Some(BootModeSetting::Disk {
                method: DiskMethod::Exit
            })
        );

        let m = r.command(&id, Command::Release).await.unwrap();
        assert_eq!(m.state, MachineState::Releasing);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), agent.recv())
                .await
                .unwrap(),
            Some(AgentCommand::Wipe { full: false })
        );

        // Restart-safety: a fresh reconciler over the same store resumes, resending the wipe to a
        // newly connected agent, never repeating anything else.
        let power = crate::test_support::power(&inv);
        let (r2, _rx) = Reconciler::new(inv.clone(), power, Config::default());
        let (tx, mut agent2) = mpsc::channel(4);
        let _conn = r2.agents.register(&id, tx);
        r2.apply(&id, Input::AgentConnected).await.unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), agent2.recv())
                .await
                .unwrap(),
            Some(AgentCommand::Wipe { full: false })
        );
        let m = r2
            .apply(
                &id,
                Input::WipeDone {
                    ok: true,
                    error: String::new(),
                },
            )
            .await
            .unwrap();
        assert_eq!(m.state, MachineState::Available);
        let events = inv.store().events(Some(&id), 0, 100).unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.message.contains("available → provisioning")),
            "{events:?}"
        );
    }
}
