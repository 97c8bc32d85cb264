#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn cfg() -> Config {
    Config {
        idle_power_off_after: 1_000,
        min_power_interval: 5_000,
        agent_timeout: 30_000,
        wipe_retries: 1,
        agent_reconnect_grace: 10_000,
    }
}

fn run(m: &Lifecycle, inputs: &[Input], now: u64) -> (Lifecycle, Vec<Action>) {
    let mut r = m.clone();
    let mut all = Vec::new();
    for i in inputs {
        let o = step(&r, i, now, &cfg());
        assert!(o.refused.is_none(), "{i:?} refused: {:?}", o.refused);
        r = o.record;
        all.extend(o.actions);
    }
    (r, all)
}

fn ops(actions: &[Action]) -> Vec<&Action> {
    actions
        .iter()
        .filter(|a| !matches!(a, Action::Event(_)))
        .collect()
}

#[test]
fn the_whole_standalone_life() {
    let mut m = Lifecycle::new(State::Registered);
    m.has_bmc = true;
    let (m, a) = run(
        &m,
        &[Input::PxeSeen, Input::AgentConnected, Input::AgentReport],
        0,
    );
    assert_eq!(m.state, State::Discovered);
    assert!(
        ops(&a).is_empty(),
        "nothing happens before acceptance: {a:?}"
    );
    assert!(m.inventoried);

    let (m, a) = run(&m, &[Input::Command(Command::Accept)], 10);
    assert_eq!(m.state, State::Wiping);
    assert_eq!(ops(&a), [&Action::AgentWipe { full: false }]);

    let (m, a) = run(
        &m,
        &[Input::WipeDone {
            ok: true,
            error: String::new(),
        }],
        20,
    );
    assert_eq!(m.state, State::Available);
    assert_eq!(
        ops(&a),
        [&Action::PowerOff],
        "never powered on by us: parked at once"
    );

    let (m, a) = run(
        &m,
        &[Input::Command(Command::Provision {
            profile: "demo".into(),
        })],
        30,
    );
    assert_eq!(m.state, State::Provisioning);
    assert_eq!(m.boot_mode(), BootMode::Profile("demo".into()));
    assert_eq!(ops(&a), [&Action::PxeOnce, &Action::PowerOn]);

    let (m, a) = run(&m, &[Input::PxeSeen, Input::ProfileServed, Input::Tick], 40);
    assert_eq!(m.state, State::Provisioned);
    assert_eq!(m.boot_mode(), BootMode::Disk);
    assert!(ops(&a).is_empty());

    let (m, a) = run(&m, &[Input::Command(Command::Release)], 10_000);
    assert_eq!(m.state, State::Releasing);
    assert_eq!(ops(&a), [&Action::PxeOnce, &Action::PowerCycle]);
    let (m, a) = run(&m, &[Input::AgentConnected], 10_200);
    assert_eq!(ops(&a), [&Action::AgentWipe { full: false }]);
    let (m, a) = run(
        &m,
        &[Input::WipeDone {
            ok: true,
            error: String::new(),
        }],
        10_500,
    );
    assert_eq!(m.state, State::Available);
    assert!(ops(&a).is_empty(), "still within the idle cool-down");
    let (m, a) = run(&m, &[Input::Tick], 11_000);
    assert_eq!(ops(&a), [&Action::PowerOff]);
    assert_eq!(m.power, Power::Off);
}

/// An agent that drops mid-wipe gets the reconnect grace: no network boot (which would cut
/// the wipe short) before it, one after it if the agent stays away; a reconnect in time just
/// gets the wipe again.
#[test]
fn a_dropped_agent_gets_time_to_reconnect_before_a_network_boot() {
    let mut m = Lifecycle::new(State::Discovered);
    m.has_bmc = true;
    m.power = Power::On;
    let (m, _) = run(&m, &[Input::AgentConnected], 0);
    let (m, a) = run(&m, &[Input::Command(Command::Accept)], 100_000);
    assert_eq!(ops(&a), [&Action::AgentWipe { full: false }]);
    assert_eq!(m.agent_requested_ms, None);

    let (m, a) = run(&m, &[Input::AgentDisconnected, Input::Tick], 200_000);
    assert!(ops(&a).is_empty(), "not at once: {a:?}");
    let (late, a) = run(&m, &[Input::Tick], 209_999);
    assert!(ops(&a).is_empty(), "not within the grace: {a:?}");
    // Back in time: the wipe is sent again, nothing else.
    let (_, a) = run(&m, &[Input::AgentConnected, Input::Tick], 205_000);
    assert_eq!(ops(&a), [&Action::AgentWipe { full: false }]);
    // Gone for good: booted into the agent again once the grace is over.
    let (m, a) = run(&late, &[Input::Tick], 210_000);
    assert_eq!(ops(&a), [&Action::PxeOnce, &Action::PowerCycle]);
    // And not again before the agent timeout.
    let (_, a) = run(&m, &[Input::AgentDisconnected, Input::Tick], 230_000);
    assert!(ops(&a).is_empty(), "{a:?}");
}

#[test]
fn refusals_say_why_and_change_nothing() {
    let m = Lifecycle::new(State::Discovered);
    for c in [
        Command::Provision {
            profile: "x".into(),
        },
        Command::Release,
        Command::Wipe { full: false },
        Command::Uncordon,
    ] {
        let o = step(&m, &Input::Command(c.clone()), 0, &cfg());
        assert!(o.refused.is_some(), "{c:?}");
        assert_eq!(o.record, m);
        assert!(o.actions.is_empty());
    }
    let mut p = Lifecycle::new(State::Provisioned);
    p.accepted = true;
    let o = step(&p, &Input::Command(Command::Wipe { full: true }), 0, &cfg());
    assert!(o.refused.unwrap().contains("release it first"));
}

#[test]
fn failed_wipes_retry_then_error() {
    let mut m = Lifecycle::new(State::Discovered);
    m.agent_connected = true;
    let (m, _) = run(&m, &[Input::Command(Command::Accept)], 0);
    let (m, a) = run(
        &m,
        &[Input::WipeDone {
            ok: false,
            error: "EIO".into(),
        }],
        1,
    );
    assert_eq!(m.state, State::Wiping);
    assert_eq!(ops(&a), [&Action::AgentWipe { full: false }], "retried");
    let (m, _) = run(
        &m,
        &[Input::WipeDone {
            ok: false,
            error: "EIO".into(),
        }],
        2,
    );
    assert_eq!(m.state, State::Error);
    assert!(m.reason.as_deref().unwrap().contains("EIO"));
    let (m, a) = run(&m, &[Input::Command(Command::Wipe { full: true })], 3);
    assert_eq!(m.state, State::Wiping);
    assert_eq!(ops(&a), [&Action::AgentWipe { full: true }]);
}

/// The case the property test found (CI, session 10): a release whose wipe fails into Error
/// comes back to Available only through the operator's wipe, and only once it succeeds.
#[test]
fn a_release_whose_wipe_failed_is_available_only_after_a_good_wipe() {
    let fail = || Input::WipeDone {
        ok: false,
        error: "EIO".into(),
    };
    let good = Input::WipeDone {
        ok: true,
        error: String::new(),
    };
    let mut m = Lifecycle::new(State::Registered);
    m.agent_connected = true;
    let (m, _) = run(&m, &[Input::Command(Command::Accept), good.clone()], 0);
    assert_eq!(m.state, State::Available);
    let provision = Input::Command(Command::Provision {
        profile: "p".into(),
    });
    let (m, _) = run(&m, &[provision, Input::Command(Command::Release)], 1);
    assert_eq!(m.state, State::Releasing);
    let (m, _) = run(&m, &[fail(), fail()], 2);
    assert_eq!(m.state, State::Error);
    let (m, _) = run(&m, &[Input::Command(Command::Wipe { full: false })], 3);
    assert_eq!(m.state, State::Wiping);
    let (m, _) = run(&m, &[fail()], 4);
    assert_eq!(
        m.state,
        State::Wiping,
        "one failure is retried, not released"
    );
    let (m, _) = run(&m, &[good], 5);
    assert_eq!(m.state, State::Available);
}

#[test]
fn without_a_bmc_the_operator_is_told_once() {
    let m = Lifecycle::new(State::Discovered);
    let (m, a) = run(
        &m,
        &[Input::Command(Command::Accept), Input::Tick, Input::Tick],
        0,
    );
    assert!(ops(&a).is_empty());
    assert_eq!(
        a.iter()
            .filter(|x| matches!(x, Action::Event(e) if e.contains("no BMC")))
            .count(),
        1
    );
    assert_eq!(m.state, State::Wiping);
}

#[test]
fn cordon_remembers_and_serves_nothing() {
    let m = Lifecycle::new(State::Available);
    let (m, _) = run(
        &m,
        &[Input::Command(Command::Cordon {
            reason: "bad DIMM".into(),
        })],
        0,
    );
    assert_eq!(
        (m.state, m.boot_mode()),
        (State::Cordoned, BootMode::Cordoned)
    );
    let (m, _) = run(&m, &[Input::Command(Command::Uncordon)], 1);
    assert_eq!(m.state, State::Available);
}

fn arb_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        Just(Input::Command(Command::Accept)),
        Just(Input::Command(Command::Reject)),
        Just(Input::Command(Command::Provision {
            profile: "p".into()
        })),
        Just(Input::Command(Command::Release)),
        any::<bool>().prop_map(|full| Input::Command(Command::Wipe { full })),
        Just(Input::Command(Command::Cordon { reason: "r".into() })),
        Just(Input::Command(Command::Uncordon)),
        Just(Input::PxeSeen),
        Just(Input::ProfileServed),
        Just(Input::AgentConnected),
        Just(Input::AgentDisconnected),
        Just(Input::AgentReport),
        any::<bool>().prop_map(|ok| Input::WipeDone {
            ok,
            error: "e".into()
        }),
        prop_oneof![Just(Power::On), Just(Power::Off), Just(Power::Unknown)]
            .prop_map(Input::PowerObserved),
        Just(Input::ActionFailed {
            action: Action::PowerOn,
            error: "timeout".into()
        }),
        Just(Input::Tick),
    ]
}

proptest! {
    #[test]
    fn invariants_hold_for_any_event_sequence(
        start in prop_oneof![Just(State::Registered), Just(State::Discovered)],
        has_bmc in any::<bool>(),
        events in proptest::collection::vec((arb_input(), 0u64..20_000), 0..80),
    ) {
        let c = cfg();
        let mut m = Lifecycle::new(start);
        m.has_bmc = has_bmc;
        let mut now = 0u64;
        let mut last_on: Option<u64> = None;
        let mut wiped_since_release = true;
        for (input, dt) in events {
            now += dt;
            let before = m.clone();
            let o = step(&m, &input, now, &c);
            for a in &o.actions {
                match a {
                    Action::PowerOn | Action::PowerCycle => {
                        prop_assert!(has_bmc, "power action without a BMC");
                        if let Some(t) = last_on { prop_assert!(now - t >= c.min_power_interval, "power-on twice within the interval"); }
                        last_on = Some(now);
                    }
                    Action::AgentWipe { .. } => {
                        prop_assert!(!matches!(o.record.state, State::Provisioning | State::Provisioned), "wiped an allocated machine");
                        prop_assert!(o.record.accepted, "wiped a machine nobody accepted");
                    }
                    _ => {}
                }
            }
            if before.state != State::Releasing && o.record.state == State::Releasing { wiped_since_release = false; }
            // A successful wipe clears the debt, whether it ran in Releasing or in a later
            // Wiping (e.g. an operator's wipe after the release's wipe failed into Error).
            let wiped_now = matches!(input, Input::WipeDone { ok: true, .. });
            if wiped_now && matches!(before.state, State::Wiping | State::Releasing) && o.record.state == State::Available {
                wiped_since_release = true;
            }
            if o.record.state == State::Available && before.state != State::Available && before.state != State::Cordoned {
                prop_assert!(wiped_since_release, "available after release without a wipe");
                prop_assert!(matches!(before.state, State::Wiping | State::Releasing), "available from {:?}", before.state);
            }
            m = o.record;
        }
        // Convergence: at a fixed time, ticks stop producing actions.
        let o1 = step(&m, &Input::Tick, now, &c);
        let o2 = step(&o1.record, &Input::Tick, now, &c);
        prop_assert!(o2.actions.is_empty(), "still acting after quiet ticks: {:?}", o2.actions);
    }
}
