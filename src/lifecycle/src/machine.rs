//! The lifecycle record of one machine.

/// Lifecycle states; the names match the inventory's `MachineState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Registered,
    Discovered,
    Wiping,
    Available,
    Provisioning,
    Provisioned,
    Releasing,
    Cordoned,
    Rejected,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Power {
    #[default]
    Unknown,
    On,
    Off,
}

/// What the machine's boot script serves in a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootMode {
    Agent,
    Profile(String),
    Disk,
    Cordoned,
}

/// Tunables (times in milliseconds).
#[derive(Debug, Clone)]
pub struct Config {
    /// An available machine is powered off this long after its last power-on.
    pub idle_power_off_after: u64,
    /// Least time between two power-on/cycle actions on one machine.
    pub min_power_interval: u64,
    /// How long to wait for the agent before power-cycling into it again.
    pub agent_timeout: u64,
    /// Automatic retries of a failed wipe before the machine goes to `error`.
    pub wipe_retries: u32,
    /// How long an agent that disconnected (a network blip, an appliance restart) has to
    /// reconnect before its machine is network-booted again (which would cut a wipe short).
    /// The agent retries with a backoff of at most 37.5 s.
    pub agent_reconnect_grace: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            idle_power_off_after: 10 * 60_000,
            min_power_interval: 60_000,
            agent_timeout: 10 * 60_000,
            wipe_retries: 2,
            agent_reconnect_grace: 45_000,
        }
    }
}

/// Everything the reconciler needs to know about one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    pub state: State,
    /// Why the machine is in `error` (or cordoned), for the operator.
    pub reason: Option<String>,
    pub accepted: bool,
    /// Profile to provision (set by `provision`, kept while provisioned).
    pub profile: Option<String>,
    /// Full (zero everything) rather than fast wipe for the pending wipe.
    pub full_wipe: bool,
    /// The agent has reported hardware at least once.
    pub inventoried: bool,
    pub agent_connected: bool,
    /// A wipe command is with the agent.
    pub wipe_sent: bool,
    pub wipe_failures: u32,
    pub has_bmc: bool,
    pub power: Power,
    pub last_power_on_ms: Option<u64>,
    /// When we last asked for the agent (PXE-once + power on/cycle), to retry after a timeout.
    pub agent_requested_ms: Option<u64>,
    /// The state to return to on uncordon.
    pub before_cordon: Option<State>,
    /// Keep an available machine powered on (Omni's preferred power state ON) instead of
    /// powering it off when idle.
    pub stay_on: bool,
}

impl Lifecycle {
    pub fn new(state: State) -> Self {
        Self {
            state,
            reason: None,
            accepted: false,
            profile: None,
            full_wipe: false,
            inventoried: false,
            agent_connected: false,
            wipe_sent: false,
            wipe_failures: 0,
            has_bmc: false,
            power: Power::Unknown,
            last_power_on_ms: None,
            agent_requested_ms: None,
            before_cordon: None,
            stay_on: false,
        }
    }

    /// What `boot.ipxe` serves now.
    pub fn boot_mode(&self) -> BootMode {
        match self.state {
            State::Registered
            | State::Discovered
            | State::Wiping
            | State::Available
            | State::Releasing
            | State::Error => BootMode::Agent,
            State::Provisioning => match &self.profile {
                Some(p) => BootMode::Profile(p.clone()),
                None => BootMode::Agent,
            },
            State::Provisioned | State::Rejected => BootMode::Disk,
            State::Cordoned => BootMode::Cordoned,
        }
    }
}
