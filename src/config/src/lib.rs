//! rackboot configuration.
//!
//! Three layers feed one [`RawConfig`]: command-line flags, `RACKBOOT_*` environment variables
//! (both through clap, flag first) and the TOML file; [`raw::Layer::over`] merges them (flag >
//! env > file) and [`Config::try_from`] applies the defaults and validates. A problem is always
//! reported with the dotted key it concerns and, when it comes from a file, the line.
//!
//! [`check_source`] finds *every* problem in a file, not only the first: serde stops at the first
//! error, so after each one the offending lines are blanked out (keeping line numbers) and the
//! file is parsed again.

pub mod raw;
mod source;
mod validate;

pub use raw::{Layer, RawConfig};
pub use validate::{
    DEFAULT_ADMIN_LISTEN, DEFAULT_CONGESTION_CONTROL, DEFAULT_DATA_DIR, DEFAULT_DISCOVERY_BURST,
    DEFAULT_DISCOVERY_PER_SECOND, DEFAULT_HTTP_LISTEN, DEFAULT_TFTP_LISTEN,
};

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Standalone,
    Omni,
}

/// The agent machines boot in Omni mode (`omni.agent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OmniAgent {
    /// rackboot-agent from the assets dir.
    Rackboot,
    /// Talos in agent mode (Image Factory, metal-agent extension).
    Talos,
}

/// How Omni-allocated machines boot Talos (`omni.install_boot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallBoot {
    /// iPXE chains to the Image Factory's PXE script.
    Chain,
    /// The factory's kernel and initramfs, fetched once into the asset cache and served by the
    /// appliance.
    Cache,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpMode {
    Proxy,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// The address put in DHCP replies and boot URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvertiseAddr {
    /// Use the first IPv4 address of `interface` (or of the boot HTTP listen address).
    Auto,
    Fixed(Ipv4Addr),
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub mode: Mode,
    pub data_dir: PathBuf,
    pub assets_dir: PathBuf,
    pub interface: Option<String>,
    pub advertise_addr: AdvertiseAddr,
    pub log_format: LogFormat,
    pub log_level: String,
    pub admin_listen: SocketAddr,
    pub admin_token_file: Option<PathBuf>,
    pub http_listen: SocketAddr,
    /// TCP congestion control set on the boot HTTP listener (its connections inherit it);
    /// `None`: the host's default.
    pub http_tcp_congestion: Option<String>,
    /// `None` when TFTP is off.
    pub tftp_listen: Option<SocketAddr>,
    pub tftp_single_port: bool,
    pub tftp_max_blksize: u16,
    pub tftp_max_windowsize: u16,
    /// Retransmission timeout for clients without a negotiated `timeout` (the adaptive
    /// timeout's ceiling).
    pub tftp_timeout: Duration,
    /// Floor of the adaptive timeout (equal to `tftp_timeout`: fixed).
    pub tftp_min_timeout: Duration,
    pub tftp_max_retries: u32,
    pub tftp_tail_probe: bool,
    /// Send a window's DATA blocks in one UDP GSO send.
    pub tftp_gso: bool,
    pub tftp_max_transfers: u32,
    pub tftp_max_transfers_per_client: u32,
    pub dhcp_mode: DhcpMode,
    pub dhcp_port: u16,
    pub pxe_port: u16,
    pub dhcp_discovery_control: bool,
    pub dhcp_boot_files: BTreeMap<u16, String>,
    pub omni_endpoint: Option<String>,
    pub omni_key_file: Option<PathBuf>,
    pub provider_id: Option<String>,
    pub omni_ca_file: Option<PathBuf>,
    pub omni_insecure_skip_verify: bool,
    pub image_factory_url: String,
    pub image_factory_pxe_url: String,
    pub omni_heartbeat_secs: u64,
    pub omni_install_boot: InstallBoot,
    pub omni_agent: OmniAgent,
    pub omni_agent_talos_version: String,
    pub agent_kernel: String,
    pub agent_initrds: Vec<String>,
    pub agent_cmdline: String,
    pub init_rounds: u32,
    pub bmc_poll_interval_secs: u64,
    pub bmc_max_parallel: u32,
    pub bmc_min_interval_ms: u64,
    pub bmc_verify_timeout_secs: u64,
    pub idle_power_off_secs: u64,
    pub min_power_interval_secs: u64,
    pub agent_timeout_secs: u64,
    /// New machines discovered at once; 0: no automatic discovery.
    pub discovery_burst: u32,
    /// New machines discovered per second after the burst.
    pub discovery_per_second: u32,
}

impl TryFrom<&RawConfig> for Config {
    type Error = Vec<Problem>;
    fn try_from(raw: &RawConfig) -> Result<Self, Self::Error> {
        validate::validate(raw)
    }
}

/// One configuration problem: the key, the line when known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Loading a file failed: either it could not be read, or it has problems.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} has {} problem(s):\n{}", path.display(), problems.len(), list(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parse TOML text into a [`RawConfig`], collecting every syntax, unknown-key and type problem.
pub fn parse_source(text: &str) -> Result<RawConfig, Vec<Problem>> {
    match source::parse_all(text) {
        (Some(raw), problems) if problems.is_empty() => Ok(raw),
        (_, problems) => Err(problems),
    }
}

/// Every problem of a config file's text: parse problems, then validation problems, with lines.
pub fn check_source(text: &str) -> Vec<Problem> {
    let (raw, mut problems) = source::parse_all(text);
    if let Some(Err(more)) = raw.as_ref().map(Config::try_from) {
        problems.extend(more.into_iter().map(|mut p| {
            p.line = source::locate(text, &p.key);
            p
        }));
    }
    problems
}

/// Read and parse a config file (no validation: the caller layers flags on top first).
pub fn load_file(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_source(&text).map_err(|problems| ConfigError::Invalid {
        path: path.to_path_buf(),
        problems,
    })
}

/// Validate a merged raw configuration; `file` (when the raw came partly from one) supplies lines.
pub fn finish(raw: &RawConfig, file: Option<(&Path, &str)>) -> Result<Config, ConfigError> {
    Config::try_from(raw).map_err(|mut problems| {
        if let Some((_, text)) = file {
            for p in &mut problems {
                p.line = source::locate(text, &p.key);
            }
        }
        let path = file
            .map(|(p, _)| p.to_path_buf())
            .unwrap_or_else(|| PathBuf::from("<flags>"));
        ConfigError::Invalid { path, problems }
    })
}

#[cfg(test)]
mod tests;
