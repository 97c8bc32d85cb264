//! The machine lifecycle as a pure function.
//!
//! [`step`] takes a machine's lifecycle record, one [`Input`] (an operator command, something
//! observed on the wire or from the agent or the BMC, or a timer tick) and `now`, and returns the
//! new record plus the [`Action`]s to carry out. No I/O, no clock, no randomness: the shell in
//! `rackboot-server` stores the record (with a generation number, so a stale result is refused),
//! executes the actions with the BMC and agent drivers and feeds their outcomes back as inputs.
//!
//! States (product.md): discovered → (accept) → wiping → available (powered off after a
//! cool-down) → (provision) → provisioning → provisioned (boots from disk) → (release) →
//! releasing → wiping → available. Side states: cordoned (remembers where it was), rejected,
//! error (with the reason; `wipe`/`release` retry). Invariants (property-tested):
//! - nothing is wiped unless the operator accepted the machine, and an allocated (provisioning
//!   or provisioned) machine is never wiped;
//! - release always passes through a wipe before the machine is available again;
//! - no power on/cycle is issued within `min_power_interval` of the previous one;
//! - once inputs stop, ticks converge: no actions after a bounded number of ticks.

mod machine;
mod step;

pub use machine::{BootMode, Config, Lifecycle, Power, State};
pub use step::{step, Action, Command, Input, Outcome};

#[cfg(test)]
mod tests;
