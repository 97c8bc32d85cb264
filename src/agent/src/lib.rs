//! `rackboot-agent`: runs in the agent boot image, finds the appliance on the kernel command
//! line, keeps one `rackboot.agent.v1.AgentLink/Connect` stream open to it, reports hardware,
//! heartbeats and executes the appliance's commands (wipe, reboot, power off, BMC user).
#![forbid(unsafe_code)]

/// Logs one line to stderr (the console in the image), prefixed with `rackboot-agent:`.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("rackboot-agent: {}", format_args!($($arg)*))
    };
}

pub mod bmc;
pub mod cmdline;
pub mod facts;
pub mod link;
pub mod metal;
pub mod wipe;

/// The agent's version, sent in `Hello`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
