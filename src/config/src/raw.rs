//! The raw configuration as it appears in a TOML file (and as flags and env vars fill it in).
//!
//! Every field is optional: a missing key takes its default during validation
//! (see [`crate::Config`]). Unknown keys are refused (`deny_unknown_fields`).
//! Addresses are kept as strings here so that validation can name the key of a bad one.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Top level of `rackboot.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `standalone` or `omni` (flag `--mode`).
    pub mode: Option<String>,
    /// State directory (flag `--data-dir`).
    pub data_dir: Option<PathBuf>,
    /// Provisioning NIC (flag `--interface`).
    pub interface: Option<String>,
    /// Address the segment reaches us at (flag `--advertise-addr`).
    pub advertise_addr: Option<String>,
    /// Boot assets (flag `--assets-dir`), default `<data_dir>/assets`.
    pub assets_dir: Option<PathBuf>,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub tftp: RawTftp,
    #[serde(default)]
    pub dhcp: RawDhcp,
    #[serde(default)]
    pub omni: RawOmni,
    #[serde(default)]
    pub boot: RawBoot,
    #[serde(default)]
    pub bmc: RawBmc,
    #[serde(default)]
    pub lifecycle: RawLifecycle,
    #[serde(default)]
    pub inventory: RawInventory,
}

/// Automatic discovery: machines the boot services see that the inventory does not hold yet.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    /// New machines recorded at once (a whole segment powering on); 0 turns discovery off.
    pub discovery_burst: Option<u32>,
    /// New machines recorded per second once the burst is used up.
    pub discovery_per_second: Option<u32>,
}

/// Machine lifecycle timing.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLifecycle {
    /// An available machine is powered off this long after its last power-on.
    pub idle_power_off_secs: Option<u64>,
    /// Least time between two power-on/cycle actions on one machine.
    pub min_power_interval_secs: Option<u64>,
    /// How long to wait for the agent (or the profile) before network-booting the machine again.
    pub agent_timeout_secs: Option<u64>,
}

/// BMC pacing and polling.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawBmc {
    /// Seconds between power-state polls of each BMC (0 disables polling).
    pub poll_interval_secs: Option<u64>,
    /// BMCs talked to at once.
    pub max_parallel: Option<u32>,
    /// Least milliseconds between two commands to one BMC.
    pub min_interval_ms: Option<u64>,
    /// Seconds power on/off may take to show before it is reported as not applied.
    pub verify_timeout_secs: Option<u64>,
}

/// What `boot.ipxe` serves in agent mode (paths under the assets dir).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawBoot {
    pub agent_kernel: Option<String>,
    pub agent_initrds: Option<Vec<String>>,
    pub agent_cmdline: Option<String>,
    /// Rounds over all NICs the init script makes before rebooting.
    pub init_rounds: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `human` or `json` (flag `--log-format`).
    pub format: Option<String>,
    /// A tracing filter such as `info` or `rackboot=debug` (flag `--log-level`).
    pub level: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Flag `--admin-listen`.
    pub listen: Option<String>,
    /// Flag `--admin-token-file`.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Flag `--boot-http-listen`.
    pub listen: Option<String>,
    /// TCP congestion control of boot HTTP connections (`system`: the host's default).
    pub tcp_congestion: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawTftp {
    /// Flag `--tftp-listen`; `off` disables TFTP.
    pub listen: Option<String>,
    /// Flag `--tftp-single-port`: serve transfers from the listening port.
    pub single_port: Option<bool>,
    pub max_blksize: Option<u16>,
    pub max_windowsize: Option<u16>,
    /// Concurrent transfers, all clients together.
    pub max_transfers: Option<u32>,
    /// Concurrent transfers from one client address.
    pub max_transfers_per_client: Option<u32>,
    /// Retransmission timeout (ms) for clients that did not negotiate `timeout`; with
    /// `min_timeout_ms` below it, the ceiling of the adaptive timeout.
    pub timeout_ms: Option<u64>,
    /// Floor (ms) of the timeout that follows the measured round trip; at `timeout_ms` the
    /// timeout is fixed, as in tftpd-hpa.
    pub min_timeout_ms: Option<u64>,
    /// Retransmissions of one window at the full timeout before the transfer is given up.
    pub max_retries: Option<u32>,
    /// Send a window's last block again after twice the round trip when no ACK came.
    pub tail_probe: Option<bool>,
    /// Send a window's blocks in one UDP GSO send (the kernel or NIC cuts them apart).
    pub gso: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawDhcp {
    /// `proxy` or `off` (flag `--dhcp-mode`).
    pub mode: Option<String>,
    /// Flag `--dhcp-port`.
    pub port: Option<u16>,
    /// Flag `--pxe-port`.
    pub pxe_port: Option<u16>,
    /// Option 43 discovery control 8 ("boot from file"), default off.
    pub discovery_control: Option<bool>,
    /// Per-architecture boot file overrides: option 93 value (decimal, as a string key) → file.
    pub boot_files: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawOmni {
    /// Flag `--omni-endpoint`.
    pub endpoint: Option<String>,
    /// Flag `--omni-key-file`.
    pub key_file: Option<PathBuf>,
    /// Flag `--provider-id`.
    pub provider_id: Option<String>,
    /// PEM file of extra CA certificates for a private Omni CA (flag `--omni-ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Accept any Omni TLS certificate (lab only; flag `--omni-insecure-skip-verify`).
    pub insecure_skip_verify: Option<bool>,
    /// Image Factory base URL (schematics), default `https://factory.talos.dev`.
    pub image_factory_url: Option<String>,
    /// Image Factory PXE base URL, default `https://pxe.factory.talos.dev`.
    pub image_factory_pxe_url: Option<String>,
    /// Heartbeat interval in seconds (default 10; Omni shows a provider disconnected after 31 s).
    pub heartbeat_secs: Option<u64>,
    /// How machines boot Talos: `chain` (default: iPXE chains to the factory's PXE script, as
    /// Omni's own provider does) or `cache` (rackboot reads that script and serves its kernel
    /// and initramfs from the appliance's asset cache; flag `--omni-install-boot`).
    pub install_boot: Option<String>,
    /// What machines boot for discovery and wiping: `rackboot` (default: rackboot-agent) or
    /// `talos` (Talos in agent mode from the Image Factory with the metal-agent extension, as
    /// Omni's own provider does: it joins Omni over SideroLink and opens the metal agent's
    /// reverse tunnel to rackboot; flag `--omni-agent`).
    pub agent: Option<String>,
    /// Talos version of the agent-mode boot (default v1.9.1; flag `--omni-agent-talos-version`).
    pub agent_talos_version: Option<String>,
}

/// `Option::or` for every field: values in `self` win over `lower`.
pub trait Layer {
    fn over(self, lower: Self) -> Self;
}

macro_rules! layer_struct {
    ($t:ty { $($f:ident),* } nested { $($n:ident),* }) => {
        impl Layer for $t {
            fn over(self, lower: Self) -> Self {
                Self {
                    $($f: self.$f.or(lower.$f),)*
                    $($n: self.$n.over(lower.$n),)*
                }
            }
        }
    };
}

layer_struct!(RawConfig { mode, data_dir, interface, advertise_addr, assets_dir }
    nested { log, admin, http, tftp, dhcp, omni, boot, bmc, lifecycle, inventory });
layer_struct!(RawInventory { discovery_burst, discovery_per_second } nested {});
layer_struct!(RawLog { format, level } nested {});
layer_struct!(RawAdmin { listen, token_file } nested {});
layer_struct!(RawHttp { listen, tcp_congestion } nested {});
layer_struct!(RawTftp { listen, single_port, max_blksize, max_windowsize, max_transfers,
    max_transfers_per_client, timeout_ms, min_timeout_ms, max_retries, tail_probe, gso } nested {});
layer_struct!(RawDhcp { mode, port, pxe_port, discovery_control, boot_files } nested {});
layer_struct!(RawOmni { endpoint, key_file, provider_id, ca_file, insecure_skip_verify, image_factory_url, image_factory_pxe_url, heartbeat_secs, install_boot, agent, agent_talos_version } nested {});
layer_struct!(RawLifecycle { idle_power_off_secs, min_power_interval_secs, agent_timeout_secs } nested {});
layer_struct!(RawBmc { poll_interval_secs, max_parallel, min_interval_ms, verify_timeout_secs } nested {});
layer_struct!(RawBoot { agent_kernel, agent_initrds, agent_cmdline, init_rounds } nested {});
