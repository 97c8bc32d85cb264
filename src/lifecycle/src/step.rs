//! One reconciliation step: apply an input, then bring the machine towards its state's goal.

use crate::machine::{Config, Lifecycle, Power, State};

/// Operator commands (standalone mode; Omni mode maps its InfraMachine onto the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Accept,
    Reject,
    Provision {
        profile: String,
    },
    Release,
    Wipe {
        full: bool,
    },
    Cordon {
        reason: String,
    },
    Uncordon,
    /// Keep an available machine on (`true`) or let it power off when idle (`false`).
    StayOn(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Command(Command),
    /// A boot request (DHCP/HTTP) from the machine.
    PxeSeen,
    /// `boot.ipxe` served the machine its provisioning profile.
    ProfileServed,
    AgentConnected,
    AgentDisconnected,
    AgentReport,
    WipeDone {
        ok: bool,
        error: String,
    },
    /// The BMC's view of the power state (poll or after an action).
    PowerObserved(Power),
    /// An action this machine's shell executed failed.
    ActionFailed {
        action: Action,
        error: String,
    },
    Tick,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Next boot from the network (set right before powering on: some BMCs forget it).
    PxeOnce,
    PowerOn,
    PowerCycle,
    PowerOff,
    AgentWipe {
        full: bool,
    },
    /// Record an event with this message.
    Event(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub record: Lifecycle,
    pub actions: Vec<Action>,
    /// Set when a command is not allowed in the current state (the record is unchanged).
    pub refused: Option<String>,
}

fn refuse(m: &Lifecycle, why: String) -> Outcome {
    Outcome {
        record: m.clone(),
        actions: Vec::new(),
        refused: Some(why),
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Registered => "registered",
        State::Discovered => "discovered",
        State::Wiping => "wiping",
        State::Available => "available",
        State::Provisioning => "provisioning",
        State::Provisioned => "provisioned",
        State::Releasing => "releasing",
        State::Cordoned => "cordoned",
        State::Rejected => "rejected",
        State::Error => "error",
    }
}

fn go(m: &mut Lifecycle, to: State, actions: &mut Vec<Action>, why: &str) {
    if m.state != to {
        actions.push(Action::Event(format!(
            "{} → {}: {why}",
            state_name(m.state),
            state_name(to)
        )));
        m.state = to;
    }
}

/// Apply `input` at `now` (ms) and return the new record and the actions to execute.
pub fn step(m: &Lifecycle, input: &Input, now: u64, cfg: &Config) -> Outcome {
    let mut r = m.clone();
    let mut actions = Vec::new();
    match input {
        Input::Command(c) => {
            if let Err(why) = command(&mut r, c, &mut actions) {
                return refuse(m, why);
            }
        }
        Input::PxeSeen => {
            if r.state == State::Registered {
                go(
                    &mut r,
                    State::Discovered,
                    &mut actions,
                    "first network boot",
                );
            }
        }
        Input::ProfileServed => {
            if r.state == State::Provisioning {
                r.agent_requested_ms = None;
                go(
                    &mut r,
                    State::Provisioned,
                    &mut actions,
                    "profile booted; next boots are from disk",
                );
            }
        }
        Input::AgentConnected => {
            r.agent_connected = true;
            r.agent_requested_ms = None;
            // A new session has nothing in flight (also after an appliance restart).
            r.wipe_sent = false;
        }
        Input::AgentDisconnected => {
            r.agent_connected = false;
            // A wipe in flight is re-sent on reconnect (wiping is idempotent).
            r.wipe_sent = false;
            // Let the agent reconnect before booting the machine into it again: the network
            // boot becomes due `agent_reconnect_grace` from now (unless one is already pending,
            // e.g. the power cycle that ended this session).
            if r.agent_requested_ms.is_none() {
                let grace = cfg.agent_reconnect_grace.min(cfg.agent_timeout);
                r.agent_requested_ms =
                    Some(now.saturating_add(grace).saturating_sub(cfg.agent_timeout));
            }
        }
        Input::AgentReport => r.inventoried = true,
        Input::WipeDone { ok, error } => {
            if matches!(r.state, State::Wiping | State::Releasing) && r.wipe_sent {
                r.wipe_sent = false;
                if *ok {
                    r.wipe_failures = 0;
                    r.full_wipe = false;
                    go(&mut r, State::Available, &mut actions, "disks wiped");
                } else {
                    r.wipe_failures += 1;
                    actions.push(Action::Event(format!(
                        "wipe failed ({} of {}): {error}",
                        r.wipe_failures,
                        cfg.wipe_retries + 1
                    )));
                    if r.wipe_failures > cfg.wipe_retries {
                        r.reason = Some(format!("wipe failed: {error}"));
                        go(&mut r, State::Error, &mut actions, "wipe kept failing");
                    }
                }
            }
        }
        Input::PowerObserved(p) => {
            if *p == Power::On && r.power == Power::Off && r.last_power_on_ms.is_none() {
                r.last_power_on_ms = Some(now);
            }
            r.power = *p;
        }
        Input::ActionFailed { action, error } => {
            actions.push(Action::Event(format!("{action:?} failed: {error}")));
            if matches!(
                action,
                Action::PowerOn | Action::PowerCycle | Action::PxeOnce
            ) {
                // Let the next tick retry once the power interval allows it.
                r.agent_requested_ms = r
                    .agent_requested_ms
                    .map(|_| now.saturating_sub(cfg.agent_timeout));
            }
        }
        Input::Tick => {}
    }
    converge(&mut r, now, cfg, &mut actions);
    Outcome {
        record: r,
        actions,
        refused: None,
    }
}

fn command(r: &mut Lifecycle, c: &Command, actions: &mut Vec<Action>) -> Result<(), String> {
    let here = state_name(r.state);
    match c {
        Command::Accept => match r.state {
            State::Registered | State::Discovered | State::Rejected => {
                r.accepted = true;
                r.reason = None;
                go(r, State::Wiping, actions, "accepted; wiping before use");
            }
            _ => return Err(format!("a {here} machine cannot be accepted (only registered, discovered or rejected ones)")),
        },
        Command::Reject => match r.state {
            State::Registered | State::Discovered | State::Available | State::Error => {
                r.accepted = false;
                go(r, State::Rejected, actions, "rejected by the operator");
            }
            _ => return Err(format!("a {here} machine cannot be rejected (release it first)")),
        },
        Command::Provision { profile } => match r.state {
            State::Available => {
                r.profile = Some(profile.clone());
                r.agent_requested_ms = None;
                go(r, State::Provisioning, actions, &format!("provisioning profile {profile}"));
            }
            _ => return Err(format!("only available machines can be provisioned (this one is {here})")),
        },
        Command::Release => match r.state {
            State::Provisioning | State::Provisioned => {
                r.agent_requested_ms = None;
                go(r, State::Releasing, actions, "released; wiping");
            }
            _ => return Err(format!("only provisioning or provisioned machines can be released (this one is {here})")),
        },
        Command::Wipe { full } => match r.state {
            State::Available | State::Error | State::Wiping if r.accepted => {
                r.full_wipe = *full;
                r.wipe_failures = 0;
                r.wipe_sent = false;
                r.reason = None;
                r.agent_requested_ms = None;
                go(r, State::Wiping, actions, if *full { "full wipe requested" } else { "wipe requested" });
            }
            State::Provisioning | State::Provisioned => return Err(format!("a {here} machine is in use: release it first")),
            _ => return Err(format!("a {here} machine cannot be wiped (accept it first)")),
        },
        Command::Cordon { reason } => {
            if r.state == State::Cordoned {
                return Err("already cordoned".into());
            }
            r.before_cordon = Some(r.state);
            r.reason = Some(reason.clone());
            go(r, State::Cordoned, actions, if reason.is_empty() { "cordoned" } else { reason });
        }
        Command::StayOn(on) => r.stay_on = *on,
        Command::Uncordon => {
            if r.state != State::Cordoned {
                return Err(format!("a {here} machine is not cordoned"));
            }
            let back = r.before_cordon.take().unwrap_or(State::Discovered);
            r.reason = None;
            go(r, back, actions, "uncordoned");
        }
    }
    Ok(())
}

/// May a power on/cycle be issued now?
fn power_allowed(r: &Lifecycle, now: u64, cfg: &Config) -> bool {
    r.last_power_on_ms
        .is_none_or(|t| now >= t.saturating_add(cfg.min_power_interval))
}

/// Boot the machine from the network: PXE-once, then on (if off) or cycle (if on), at most once
/// per `agent_timeout`, never within the minimum power interval.
fn request_network_boot(
    r: &mut Lifecycle,
    now: u64,
    cfg: &Config,
    actions: &mut Vec<Action>,
    what: &str,
) {
    let due = r
        .agent_requested_ms
        .is_none_or(|t| now >= t.saturating_add(cfg.agent_timeout));
    if !due {
        return;
    }
    if !r.has_bmc {
        if r.agent_requested_ms.is_none() {
            actions.push(Action::Event(format!(
                "no BMC: network-boot the machine by hand to {what}"
            )));
            r.agent_requested_ms = Some(now);
        }
        return;
    }
    if !power_allowed(r, now, cfg) {
        return;
    }
    actions.push(Action::PxeOnce);
    actions.push(if r.power == Power::On {
        Action::PowerCycle
    } else {
        Action::PowerOn
    });
    r.power = Power::On;
    r.last_power_on_ms = Some(now);
    r.agent_requested_ms = Some(now);
}

fn converge(r: &mut Lifecycle, now: u64, cfg: &Config, actions: &mut Vec<Action>) {
    match r.state {
        State::Wiping | State::Releasing => {
            if r.agent_connected {
                if !r.wipe_sent {
                    actions.push(Action::AgentWipe { full: r.full_wipe });
                    r.wipe_sent = true;
                }
            } else {
                request_network_boot(r, now, cfg, actions, "the agent");
            }
        }
        State::Provisioning => request_network_boot(r, now, cfg, actions, "its profile"),
        State::Available => {
            let idle = r
                .last_power_on_ms
                .is_none_or(|t| now >= t.saturating_add(cfg.idle_power_off_after));
            if r.stay_on {
                if r.has_bmc && r.power == Power::Off && power_allowed(r, now, cfg) {
                    actions.push(Action::PowerOn);
                    actions.push(Action::Event("kept on (preferred power state on)".into()));
                    r.power = Power::On;
                    r.last_power_on_ms = Some(now);
                }
            } else if r.has_bmc && r.power != Power::Off && idle {
                actions.push(Action::PowerOff);
                actions.push(Action::Event("idle: powered off".into()));
                r.power = Power::Off;
                r.agent_connected = false;
            }
        }
        _ => {}
    }
}
