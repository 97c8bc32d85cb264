//! The records the inventory holds. These are also the JSON the admin API speaks, except that
//! [`BmcRecord::password_sealed`] never leaves the server (see `BmcView`).

use serde::{Deserialize, Serialize};

/// Lifecycle states (product.md "Machine lifecycle"). `Registered` is a machine the operator
/// added that has not network-booted yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineState {
    Registered,
    Discovered,
    Inspecting,
    Wiping,
    Available,
    Provisioning,
    Provisioned,
    Releasing,
    Cordoned,
    Rejected,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    #[default]
    Unknown,
    On,
    Off,
}

/// A BMC endpoint with its credentials. The password is stored sealed (AES-256-GCM, see
/// [`crate::Sealer`]); nothing outside the store and the BMC drivers ever sees it in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BmcRecord {
    pub url: String,
    pub username: String,
    /// Hex of nonce ‖ ciphertext ‖ tag; empty when no password is set.
    pub password_sealed: String,
    #[serde(default)]
    pub insecure_tls: bool,
    /// Outcome of the last call to this BMC (poll or action).
    #[serde(default)]
    pub health: Option<BmcHealth>,
}

/// Whether the BMC answered last time, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BmcHealth {
    pub reachable: bool,
    pub checked_ms: u64,
    /// Why the last call failed (never contains credentials).
    pub error: Option<String>,
}

/// What a network boot told us about the machine (ProxyDHCP, TFTP and HTTP requests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootSeen {
    /// Unix milliseconds.
    pub first_seen_ms: Option<u64>,
    pub last_seen_ms: Option<u64>,
    /// DHCP option 93 client architecture.
    pub arch: Option<u16>,
    pub vendor_class: Option<String>,
    /// Which service saw it last: `dhcp`, `tftp`, `http`.
    pub via: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// SMBIOS UUID when known at creation, else generated from the first MAC.
    pub id: String,
    pub name: Option<String>,
    pub uuid: Option<String>,
    /// Lower-case, colon-separated.
    pub macs: Vec<String>,
    pub bmc: Option<BmcRecord>,
    pub state: MachineState,
    #[serde(default)]
    pub state_reason: Option<String>,
    #[serde(default)]
    pub power: PowerState,
    /// What `boot.ipxe` serves this machine: written by the lifecycle on every transition, or
    /// set by the operator (`machines boot`) until the next one; `None` = agent.
    #[serde(default)]
    pub boot_mode: Option<BootModeSetting>,
    /// The lifecycle's bookkeeping (see `rackboot-lifecycle`).
    #[serde(default)]
    pub lifecycle: LifecycleData,
    /// Omni mode: what the appliance did for this machine's InfraMachine (so a restart of the
    /// appliance or of Omni repeats no completed wipe, reboot or power-off).
    #[serde(default)]
    pub omni: OmniBook,
    /// Facts the agent reported (free-form JSON until the agent protocol lands).
    #[serde(default)]
    pub hardware: Option<serde_json::Value>,
    #[serde(default)]
    pub boot: BootSeen,
    /// SHA-256 (hex) of the per-boot agent token rackboot last put into this machine's agent
    /// boot script (`rackboot.token=`); the agent link accepts only an agent presenting it.
    /// Never shown in the API.
    #[serde(default)]
    pub agent_token_sha256: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Bumped on every write; a write carrying an older generation is refused.
    pub generation: u64,
}

/// Persisted lifecycle bookkeeping: what the reconciler needs across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LifecycleData {
    pub accepted: bool,
    pub profile: Option<String>,
    pub full_wipe: bool,
    pub inventoried: bool,
    pub wipe_sent: bool,
    pub wipe_failures: u32,
    pub last_power_on_ms: Option<u64>,
    pub agent_requested_ms: Option<u64>,
    pub before_cordon: Option<MachineState>,
    #[serde(default)]
    pub stay_on: bool,
}

/// Omni-mode bookkeeping for one machine (see `rackboot-omni`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct OmniBook {
    /// InfraMachine `wipe_id` at the last completed wipe (`None`: never wiped for Omni).
    pub wiped_wipe_id: Option<String>,
    /// A wipe is running for this `wipe_id`.
    pub wipe_for: Option<String>,
    /// `install_event_id` when the last wipe completed: a greater one means installed since.
    pub install_event_id_at_wipe: u64,
    /// `node_unique_token` at the last completed wipe.
    pub wiped_node_unique_token: String,
    pub token_for: String,
    pub last_reboot_id: String,
    pub last_reboot_ms: Option<u64>,
    pub last_power_off_id: String,
    /// The machine is cordoned because Omni said so (uncordon when Omni does).
    pub cordoned_by_omni: bool,
}

/// How a machine boots from disk once provisioned (iPXE `exit` does not work everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DiskMethod {
    #[default]
    Exit,
    /// Answer `boot.ipxe` with HTTP 404 so the firmware moves on to the next boot device.
    Http404,
    /// `sanboot --no-describe --drive 0x80`.
    Sanboot,
}

/// The boot mode an operator (or later the lifecycle) set for a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum BootModeSetting {
    /// The agent image (inventory, wipe).
    Agent,
    /// A named boot profile from the store.
    Profile { profile: String },
    /// Chain to another iPXE URL (e.g. an Image Factory PXE URL).
    Chain { url: String },
    /// Boot from the local disk.
    Disk {
        #[serde(default)]
        method: DiskMethod,
    },
    /// Do not boot anything: `boot.ipxe` answers 404 with the reason.
    Cordoned {
        #[serde(default)]
        reason: String,
    },
}

/// A boot profile: kernel + initrds + command line, or a raw iPXE script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// An `http(s)://` URL or a path under the assets dir.
    #[serde(default)]
    pub kernel: Option<String>,
    #[serde(default)]
    pub initrds: Vec<String>,
    /// May use `${uuid}`, `${mac}`, `${appliance}`, `${machine}`.
    #[serde(default)]
    pub cmdline: String,
    /// A raw iPXE script instead of kernel/initrds.
    #[serde(default)]
    pub script: Option<String>,
    /// Expected SHA-256 (hex) of files named by URL: URL → hash. URL-named files are fetched
    /// once into the appliance's cache and served from there.
    #[serde(default)]
    pub sha256: std::collections::BTreeMap<String, String>,
}

/// One entry of a machine's append-only event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Global, strictly increasing.
    pub seq: u64,
    pub machine_id: String,
    pub at_ms: u64,
    /// Short machine-readable kind: `created`, `discovered`, `state`, `power`, `removed`, …
    pub kind: String,
    pub message: String,
}

/// Normalise a MAC address (`aa:bb:..`, `aa-bb-..`, `aabb..`, `aabb.ccdd.eeff`) to lower-case
/// colon form. Lenient on purpose: this reads what operators type (CLI, API, config).
/// `rackboot_ipxe::normalize_mac` is the strict form for what iPXE puts in a boot query (one
/// separator, never mixed); both give the same result on every input the strict one accepts.
pub fn normalize_mac(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let lower = hex.to_ascii_lowercase();
    let parts: Vec<&str> = (0..6).map(|i| &lower[i * 2..i * 2 + 2]).collect();
    Some(parts.join(":"))
}

/// Normalise an SMBIOS UUID to lower-case 8-4-4-4-12 form; dashes anywhere are ignored (lenient,
/// for operator input; see [`normalize_mac`] on the strict twin in `rackboot_ipxe`).
pub fn normalize_uuid(s: &str) -> Option<String> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// The id of a machine first known by its MAC.
pub fn id_from_mac(mac: &str) -> String {
    format!("m-{}", mac.replace(':', ""))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn macs_and_uuids_normalise() {
        assert_eq!(
            normalize_mac("52-54-00-99-00-1A").as_deref(),
            Some("52:54:00:99:00:1a")
        );
        assert_eq!(
            normalize_mac("525400990010").as_deref(),
            Some("52:54:00:99:00:10")
        );
        assert_eq!(normalize_mac("52:54:00:99:00"), None);
        assert_eq!(normalize_mac("52:54:00:99:00:zz"), None);
        assert_eq!(
            normalize_uuid("11111111222233334444555555555551").as_deref(),
            Some("11111111-2222-3333-4444-555555555551")
        );
        assert_eq!(normalize_uuid("1111-22"), None);
    }
}
