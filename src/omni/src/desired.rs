//! Sans-IO: an InfraMachine (Omni's desired state) + what the appliance knows of the machine →
//! the lifecycle commands and power requests to carry out, and the InfraMachineStatus to report
//! (omni-wire.md §6). The shell executes a [`Plan`] and stores its [`OmniBook`].

use rackboot_lifecycle::{Command, Power, State};
use rackboot_proto::omni::specs::infra_machine_spec::{AcceptanceStatus, MachinePowerState};
use rackboot_proto::omni::specs::infra_machine_status_spec::MachinePowerState as StatusPower;
use rackboot_proto::omni::specs::{InfraMachineSpec, InfraMachineStatusSpec};
use rackboot_store::OmniBook;

/// What the appliance knows of one machine.
#[derive(Debug, Clone)]
pub struct Local {
    pub state: State,
    pub power: Power,
    pub has_bmc: bool,
    pub stay_on: bool,
    pub book: OmniBook,
}

/// Talos to install: the cluster's version, extensions and extra kernel arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Install {
    pub talos_version: String,
    pub extensions: Vec<String>,
    pub extra_kernel_args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Todo {
    /// A lifecycle command (accept, wipe, release, cordon, …).
    Command(Command),
    /// Provision with the install profile for this Talos (the shell resolves the profile).
    Install(Install),
    /// Power-cycle for `requested_reboot_id` (PXE-once first when the machine must boot from
    /// the network); record it in the book when done.
    Reboot { id: String, pxe: bool },
    /// Power off for `power_off_request_id`; record it when done.
    PowerOff { id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub todo: Vec<Todo>,
    /// The book to store (before executing the todo list).
    pub book: OmniBook,
}

fn network_boot_state(s: State) -> bool {
    matches!(
        s,
        State::Registered
            | State::Discovered
            | State::Wiping
            | State::Releasing
            | State::Provisioning
            | State::Available
            | State::Error
    )
}

fn split_args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Decide what to do for one machine.
pub fn plan(spec: &InfraMachineSpec, m: &Local) -> Plan {
    let mut book = m.book.clone();
    let mut todo = Vec::new();
    let acceptance = spec.acceptance_status();
    let allocated = !spec.cluster_talos_version.is_empty();

    // A wipe that was running has finished once the lifecycle is back to available.
    if m.state == State::Available {
        if let Some(id) = book.wipe_for.take() {
            book.wiped_wipe_id = Some(id);
            book.install_event_id_at_wipe = spec.install_event_id;
            book.wiped_node_unique_token = std::mem::take(&mut book.token_for);
        }
    }

    // Cordon follows Omni (only an Omni cordon is lifted by Omni).
    if spec.cordoned && m.state != State::Cordoned {
        book.cordoned_by_omni = true;
        todo.push(Todo::Command(Command::Cordon {
            reason: "cordoned in Omni".into(),
        }));
    } else if !spec.cordoned && m.state == State::Cordoned && book.cordoned_by_omni {
        book.cordoned_by_omni = false;
        todo.push(Todo::Command(Command::Uncordon));
    }
    if spec.cordoned || m.state == State::Cordoned {
        return Plan { todo, book };
    }

    let want_on = spec.preferred_power_state() == MachinePowerState::PowerStateOn;
    match acceptance {
        AcceptanceStatus::Pending => {}
        AcceptanceStatus::Rejected => {
            if matches!(
                m.state,
                State::Registered | State::Discovered | State::Available | State::Error
            ) {
                todo.push(Todo::Command(Command::Reject));
            }
        }
        AcceptanceStatus::Accepted => {
            if want_on != m.stay_on {
                todo.push(Todo::Command(Command::StayOn(want_on)));
            }
            let wiped_current = book.wiped_wipe_id.as_deref() == Some(spec.wipe_id.as_str());
            match m.state {
                State::Registered | State::Discovered | State::Rejected => {
                    book.wipe_for = Some(spec.wipe_id.clone());
                    book.token_for.clone_from(&spec.node_unique_token);
                    todo.push(Todo::Command(Command::Accept));
                }
                State::Available if book.wipe_for.is_none() && !wiped_current => {
                    book.wipe_for = Some(spec.wipe_id.clone());
                    book.token_for.clone_from(&spec.node_unique_token);
                    todo.push(Todo::Command(Command::Wipe { full: false }));
                }
                State::Available if allocated && wiped_current => {
                    todo.push(Todo::Install(Install {
                        talos_version: spec.cluster_talos_version.clone(),
                        extensions: spec.extensions.clone(),
                        extra_kernel_args: split_args(&spec.extra_kernel_args),
                    }));
                }
                State::Provisioning | State::Provisioned if !allocated => {
                    book.wipe_for = Some(spec.wipe_id.clone());
                    book.token_for.clone_from(&spec.node_unique_token);
                    todo.push(Todo::Command(Command::Release));
                }
                _ => {}
            }
        }
    }

    if !spec.requested_reboot_id.is_empty() && spec.requested_reboot_id != book.last_reboot_id {
        todo.push(Todo::Reboot {
            id: spec.requested_reboot_id.clone(),
            pxe: network_boot_state(m.state),
        });
    }
    if !spec.power_off_request_id.is_empty() && spec.power_off_request_id != book.last_power_off_id
    {
        todo.push(Todo::PowerOff {
            id: spec.power_off_request_id.clone(),
        });
    }
    Plan { todo, book }
}

/// The InfraMachineStatus to report for a machine.
pub fn status(spec: &InfraMachineSpec, m: &Local) -> InfraMachineStatusSpec {
    let b = &m.book;
    let wiped_current =
        b.wipe_for.is_none() && b.wiped_wipe_id.as_deref() == Some(spec.wipe_id.as_str());
    let in_use = matches!(m.state, State::Provisioning | State::Provisioned);
    let mut st = InfraMachineStatusSpec {
        ready_to_use: spec.acceptance_status() == AcceptanceStatus::Accepted
            && wiped_current
            && matches!(
                m.state,
                State::Available | State::Provisioning | State::Provisioned
            ),
        last_reboot_id: b.last_reboot_id.clone(),
        last_reboot_timestamp: b.last_reboot_ms.map(|ms| prost_types::Timestamp {
            seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
            nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
        }),
        installed: in_use && spec.install_event_id > b.install_event_id_at_wipe,
        wiped_node_unique_token: b.wiped_node_unique_token.clone(),
        last_power_off_id: b.last_power_off_id.clone(),
        ..Default::default()
    };
    st.set_power_state(match m.power {
        Power::On => StatusPower::PowerStateOn,
        Power::Off => StatusPower::PowerStateOff,
        Power::Unknown => StatusPower::PowerStateUnknown,
    });
    st
}

#[cfg(test)]
mod tests;
