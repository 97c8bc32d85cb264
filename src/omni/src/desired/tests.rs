use super::*;
use rackboot_lifecycle::{step, Config, Input, Lifecycle};

/// A machine driven by the real lifecycle reconciler, with Omni's plan applied on top.
struct Sim {
    l: Lifecycle,
    book: OmniBook,
    now: u64,
    installs: Vec<Install>,
    reboots: Vec<(String, bool)>,
    power_offs: Vec<String>,
}

impl Sim {
    fn new() -> Self {
        let mut l = Lifecycle::new(State::Discovered);
        l.has_bmc = true;
        l.power = Power::Off;
        Self {
            l,
            book: OmniBook::default(),
            now: 1_000_000,
            installs: vec![],
            reboots: vec![],
            power_offs: vec![],
        }
    }
    fn local(&self) -> Local {
        Local {
            state: self.l.state,
            power: self.l.power,
            has_bmc: true,
            stay_on: self.l.stay_on,
            book: self.book.clone(),
        }
    }
    fn input(&mut self, i: Input) {
        self.now += 1000;
        let out = step(&self.l, &i, self.now, &Config::default());
        assert!(out.refused.is_none(), "{i:?} refused: {:?}", out.refused);
        self.l = out.record;
    }
    /// One pass of the Omni link: plan, store the book, execute.
    fn sync(&mut self, spec: &InfraMachineSpec) -> Vec<Todo> {
        let p = plan(spec, &self.local());
        self.book = p.book;
        for t in &p.todo {
            match t {
                Todo::Command(c) => self.input(Input::Command(c.clone())),
                Todo::Install(i) => {
                    self.installs.push(i.clone());
                    self.input(Input::Command(Command::Provision {
                        profile: "talos".into(),
                    }));
                }
                Todo::Reboot { id, pxe } => {
                    self.reboots.push((id.clone(), *pxe));
                    self.book.last_reboot_id.clone_from(id);
                    self.book.last_reboot_ms = Some(self.now);
                }
                Todo::PowerOff { id } => {
                    self.power_offs.push(id.clone());
                    self.book.last_power_off_id.clone_from(id);
                }
            }
        }
        p.todo
    }
    fn agent_wipes(&mut self) {
        self.input(Input::AgentConnected);
        self.input(Input::WipeDone {
            ok: true,
            error: String::new(),
        });
    }
}

fn accepted(wipe_id: &str) -> InfraMachineSpec {
    let mut s = InfraMachineSpec {
        wipe_id: wipe_id.into(),
        node_unique_token: "tok-1".into(),
        ..Default::default()
    };
    s.set_acceptance_status(AcceptanceStatus::Accepted);
    s
}

#[test]
fn pending_machine_is_left_alone() {
    let mut sim = Sim::new();
    let spec = InfraMachineSpec::default();
    assert!(sim.sync(&spec).is_empty());
    assert_eq!(sim.l.state, State::Discovered);
    let st = status(&spec, &sim.local());
    assert!(!st.ready_to_use && !st.installed);
}

#[test]
fn full_flow_accept_wipe_allocate_install_deallocate_rewipe() {
    let mut sim = Sim::new();
    let mut spec = accepted("w1");
    sim.sync(&spec);
    assert_eq!(sim.l.state, State::Wiping);
    assert!(
        !status(&spec, &sim.local()).ready_to_use,
        "not ready before the wipe"
    );
    // Repeated syncs while wiping change nothing.
    assert!(sim.sync(&spec).is_empty());
    sim.agent_wipes();
    assert_eq!(sim.l.state, State::Available);
    sim.sync(&spec);
    let st = status(&spec, &sim.local());
    assert!(st.ready_to_use);
    assert_eq!(st.wiped_node_unique_token, "tok-1");
    assert_eq!(sim.book.wiped_wipe_id.as_deref(), Some("w1"));

    // Allocate: install the cluster's Talos.
    spec.cluster_talos_version = "v1.9.0".into();
    spec.extensions = vec!["siderolabs/iscsi-tools".into()];
    spec.extra_kernel_args = "a=1  b=2".into();
    sim.sync(&spec);
    assert_eq!(sim.l.state, State::Provisioning);
    assert_eq!(sim.installs.len(), 1);
    assert_eq!(sim.installs[0].extra_kernel_args, vec!["a=1", "b=2"]);
    assert!(!status(&spec, &sim.local()).installed);
    sim.input(Input::ProfileServed);
    spec.install_event_id = 1;
    assert!(status(&spec, &sim.local()).installed);
    assert!(
        sim.sync(&spec).is_empty(),
        "an installed machine needs nothing"
    );

    // Deallocate with a new wipe id: release → wipe → available, not installed any more.
    spec.cluster_talos_version.clear();
    spec.wipe_id = "w2".into();
    sim.sync(&spec);
    assert_eq!(sim.l.state, State::Releasing);
    assert!(!status(&spec, &sim.local()).ready_to_use);
    sim.agent_wipes();
    sim.sync(&spec);
    let st = status(&spec, &sim.local());
    assert!(st.ready_to_use && !st.installed);
    assert_eq!(sim.book.wiped_wipe_id.as_deref(), Some("w2"));
    assert_eq!(sim.book.install_event_id_at_wipe, 1);
}

#[test]
fn new_wipe_id_on_an_available_machine_wipes_again_once() {
    let mut sim = Sim::new();
    let mut spec = accepted("w1");
    sim.sync(&spec);
    sim.agent_wipes();
    sim.sync(&spec);
    spec.wipe_id = "w2".into();
    sim.sync(&spec);
    assert_eq!(sim.l.state, State::Wiping);
    assert!(sim.sync(&spec).is_empty());
}

#[test]
fn reboot_and_power_off_requests_run_once_each() {
    let mut sim = Sim::new();
    let mut spec = accepted("w1");
    sim.sync(&spec);
    spec.requested_reboot_id = "r1".into();
    spec.power_off_request_id = "p1".into();
    sim.sync(&spec);
    assert_eq!(sim.reboots, vec![("r1".to_string(), true)]);
    assert_eq!(sim.power_offs, vec!["p1".to_string()]);
    sim.sync(&spec);
    sim.sync(&spec);
    assert_eq!(sim.reboots.len(), 1, "a completed reboot is not repeated");
    assert_eq!(sim.power_offs.len(), 1);
    let st = status(&spec, &sim.local());
    assert_eq!(st.last_reboot_id, "r1");
    assert!(st.last_reboot_timestamp.is_some());
    assert_eq!(st.last_power_off_id, "p1");
}

#[test]
fn rejected_and_cordoned() {
    let mut sim = Sim::new();
    let mut spec = InfraMachineSpec::default();
    spec.set_acceptance_status(AcceptanceStatus::Rejected);
    sim.sync(&spec);
    assert_eq!(sim.l.state, State::Rejected);

    let mut sim = Sim::new();
    let mut spec = accepted("w1");
    sim.sync(&spec);
    sim.agent_wipes();
    sim.sync(&spec);
    spec.cordoned = true;
    sim.sync(&spec);
    assert_eq!(sim.l.state, State::Cordoned);
    assert!(sim.sync(&spec).is_empty());
    spec.cordoned = false;
    sim.sync(&spec);
    assert_eq!(sim.l.state, State::Available);
}

#[test]
fn operator_cordon_is_not_lifted_by_omni() {
    let mut sim = Sim::new();
    let spec = accepted("w1");
    sim.input(Input::Command(Command::Cordon {
        reason: "bad fan".into(),
    }));
    assert!(sim.sync(&spec).is_empty());
    assert_eq!(sim.l.state, State::Cordoned);
}

#[test]
fn preferred_power_on_keeps_an_available_machine_on() {
    let mut sim = Sim::new();
    let mut spec = accepted("w1");
    spec.set_preferred_power_state(MachinePowerState::PowerStateOn);
    sim.sync(&spec);
    assert!(sim.l.stay_on);
    sim.agent_wipes();
    sim.sync(&spec);
    sim.l.power = Power::Off;
    sim.now += 3_600_000;
    let out = step(&sim.l, &Input::Tick, sim.now, &Config::default());
    assert!(
        out.actions.contains(&rackboot_lifecycle::Action::PowerOn),
        "{:?}",
        out.actions
    );
    spec.set_preferred_power_state(MachinePowerState::PowerStateOff);
    sim.sync(&spec);
    assert!(!sim.l.stay_on);
}

#[test]
fn power_state_is_reported() {
    let sim = Sim::new();
    let st = status(&accepted("w"), &sim.local());
    assert_eq!(st.power_state(), StatusPower::PowerStateOff);
}
