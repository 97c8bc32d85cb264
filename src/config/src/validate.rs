//! Raw → validated configuration. Every problem is collected (not just the first), each
//! named by its dotted key.

use crate::raw::RawConfig;
use crate::{AdvertiseAddr, Config, DhcpMode, InstallBoot, LogFormat, Mode, OmniAgent, Problem};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/rackboot";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:50042";
pub const DEFAULT_TFTP_LISTEN: &str = "0.0.0.0:69";
/// Boot HTTP's TCP congestion control (see `congestion_control`).
pub const DEFAULT_CONGESTION_CONTROL: &str = "cubic";
/// A whole segment powering on together is recorded (a /21 holds 2,046 hosts).
pub const DEFAULT_DISCOVERY_BURST: u32 = 2048;
pub const DEFAULT_DISCOVERY_PER_SECOND: u32 = 20;
/// Above this, the limit no longer guards the store against a flood of made-up MACs.
const MAX_DISCOVERY: u32 = 1_000_000;

struct Collector(Vec<Problem>);

impl Collector {
    fn push(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.to_string(),
            line: None,
            message: message.into(),
        });
    }

    fn socket_addr(&mut self, key: &str, value: Option<&str>, default: &str) -> SocketAddr {
        let text = value.unwrap_or(default);
        match text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.push(
                    key,
                    format!("bad address {text:?}: expected IP:PORT, e.g. {default}"),
                );
                default
                    .parse()
                    .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
            }
        }
    }

    fn existing_file(&mut self, key: &str, path: Option<&PathBuf>) {
        if let Some(p) = path {
            if !p.is_file() {
                self.push(
                    key,
                    format!(
                        "file {} does not exist or is not a regular file",
                        p.display()
                    ),
                );
            }
        }
    }

    fn one_of<T: Copy>(
        &mut self,
        key: &str,
        value: Option<&str>,
        choices: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(v) = value else { return default };
        match choices.iter().find(|(name, _)| *name == v) {
            Some((_, t)) => *t,
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.push(
                    key,
                    format!("unknown value {v:?}: expected one of {}", names.join(", ")),
                );
                default
            }
        }
    }
}

pub(crate) fn validate(raw: &RawConfig) -> Result<Config, Vec<Problem>> {
    let mut c = Collector(Vec::new());
    let mode = c.one_of(
        "mode",
        raw.mode.as_deref(),
        &[("standalone", Mode::Standalone), ("omni", Mode::Omni)],
        Mode::Standalone,
    );
    let data_dir = raw
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let assets_dir = raw
        .assets_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("assets"));
    if let Some(i) = &raw.interface {
        if i.is_empty() || i.len() > 15 || i.contains('/') || i.chars().any(char::is_whitespace) {
            c.push("interface", format!("{i:?} is not a valid interface name"));
        }
    }
    let advertise_addr = match raw.advertise_addr.as_deref() {
        None => AdvertiseAddr::Auto,
        Some(s) => match s.parse::<Ipv4Addr>() {
            Ok(ip) if !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast() => {
                AdvertiseAddr::Fixed(ip)
            }
            _ => {
                c.push(
                    "advertise_addr",
                    format!("bad address {s:?}: expected a unicast IPv4 address"),
                );
                AdvertiseAddr::Auto
            }
        },
    };
    let log_format = c.one_of(
        "log.format",
        raw.log.format.as_deref(),
        &[("human", LogFormat::Human), ("json", LogFormat::Json)],
        LogFormat::Human,
    );
    let admin_listen = c.socket_addr(
        "admin.listen",
        raw.admin.listen.as_deref(),
        DEFAULT_ADMIN_LISTEN,
    );
    c.existing_file("admin.token_file", raw.admin.token_file.as_ref());
    let http_listen = c.socket_addr(
        "http.listen",
        raw.http.listen.as_deref(),
        DEFAULT_HTTP_LISTEN,
    );
    let tftp_listen = match raw.tftp.listen.as_deref() {
        Some("off") => None,
        other => Some(c.socket_addr("tftp.listen", other, DEFAULT_TFTP_LISTEN)),
    };
    let max_blksize = raw.tftp.max_blksize.unwrap_or(65464);
    if !(8..=65464).contains(&max_blksize) {
        c.push(
            "tftp.max_blksize",
            format!("{max_blksize} is outside 8..=65464 (RFC 2348)"),
        );
    }
    let max_windowsize = raw.tftp.max_windowsize.unwrap_or(64);
    if max_windowsize == 0 {
        c.push("tftp.max_windowsize", "must be at least 1 (RFC 7440)");
    }
    // RFC 2349 lets a client ask for 1..=255 s; the server's own timeout stays in that range.
    let tftp_timeout_ms = raw.tftp.timeout_ms.unwrap_or(1000);
    if !(1..=255_000).contains(&tftp_timeout_ms) {
        c.push(
            "tftp.timeout_ms",
            format!("{tftp_timeout_ms} is outside 1..=255000 (RFC 2349 allows up to 255 s)"),
        );
    }
    let tftp_min_timeout_ms = raw.tftp.min_timeout_ms.unwrap_or(50.min(tftp_timeout_ms));
    if tftp_min_timeout_ms == 0 || tftp_min_timeout_ms > tftp_timeout_ms {
        c.push(
            "tftp.min_timeout_ms",
            format!(
                "{tftp_min_timeout_ms} must be in 1..=tftp.timeout_ms ({tftp_timeout_ms}); \
                 equal to it fixes the timeout"
            ),
        );
    }
    let tftp_max_retries = raw.tftp.max_retries.unwrap_or(5);
    if !(1..=100).contains(&tftp_max_retries) {
        c.push(
            "tftp.max_retries",
            format!("{tftp_max_retries} is outside 1..=100"),
        );
    }
    let dhcp_mode = c.one_of(
        "dhcp.mode",
        raw.dhcp.mode.as_deref(),
        &[("proxy", DhcpMode::Proxy), ("off", DhcpMode::Off)],
        DhcpMode::Proxy,
    );
    let mut boot_files = BTreeMap::new();
    for (arch, file) in raw.dhcp.boot_files.iter().flatten() {
        match arch.parse::<u16>() {
            Ok(a) if !file.is_empty() => {
                boot_files.insert(a, file.clone());
            }
            Ok(_) => c.push(&format!("dhcp.boot_files.{arch}"), "file name is empty"),
            Err(_) => c.push(
                &format!("dhcp.boot_files.{arch}"),
                "key must be a client architecture number (option 93), e.g. \"7\"",
            ),
        }
    }
    let omni_endpoint = raw.omni.endpoint.clone();
    if let Some(e) = &omni_endpoint {
        if !(e.starts_with("https://") || e.starts_with("http://")) {
            c.push(
                "omni.endpoint",
                format!("{e:?} must start with https:// or http://"),
            );
        }
    }
    c.existing_file("omni.key_file", raw.omni.key_file.as_ref());
    c.existing_file("omni.ca_file", raw.omni.ca_file.as_ref());
    for (key, url) in [
        ("omni.image_factory_url", &raw.omni.image_factory_url),
        (
            "omni.image_factory_pxe_url",
            &raw.omni.image_factory_pxe_url,
        ),
    ] {
        if let Some(u) = url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                c.push(key, format!("{u:?} must start with https:// or http://"));
            }
        }
    }
    let omni_install_boot = c.one_of(
        "omni.install_boot",
        raw.omni.install_boot.as_deref(),
        &[("chain", InstallBoot::Chain), ("cache", InstallBoot::Cache)],
        InstallBoot::Chain,
    );
    let omni_agent = c.one_of(
        "omni.agent",
        raw.omni.agent.as_deref(),
        &[
            ("rackboot", OmniAgent::Rackboot),
            ("talos", OmniAgent::Talos),
        ],
        OmniAgent::Rackboot,
    );
    if let Some(v) = &raw.omni.agent_talos_version {
        let ok = v.len() <= 32
            && v.trim_start_matches('v').split('.').count() >= 2
            && v.trim_start_matches('v')
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !ok {
            c.push(
                "omni.agent_talos_version",
                format!("{v:?} is not a Talos version like v1.9.1"),
            );
        }
    }
    if raw.omni.heartbeat_secs.is_some_and(|s| s == 0 || s > 30) {
        c.push(
            "omni.heartbeat_secs",
            "must be 1..=30 (Omni marks a provider disconnected after 31 s)",
        );
    }
    if let Some(id) = &raw.omni.provider_id {
        if !is_dns1123_label(id) {
            c.push(
                "omni.provider_id",
                format!("{id:?} is not a DNS-1123 label (a-z, 0-9, '-', ≤ 63)"),
            );
        }
    }
    if mode == Mode::Omni {
        if omni_endpoint.is_none() {
            c.push("omni.endpoint", "required when mode = \"omni\"");
        }
        if raw.omni.provider_id.is_none() {
            c.push("omni.provider_id", "required when mode = \"omni\"");
        }
    }
    let agent_kernel = raw
        .boot
        .agent_kernel
        .clone()
        .unwrap_or_else(|| "agent/vmlinuz".to_string());
    let agent_initrds = raw
        .boot
        .agent_initrds
        .clone()
        .unwrap_or_else(|| vec!["agent/initramfs.cpio.gz".to_string()]);
    for (key, path) in std::iter::once(("boot.agent_kernel", &agent_kernel))
        .chain(agent_initrds.iter().map(|p| ("boot.agent_initrds", p)))
    {
        if path.is_empty()
            || path.starts_with('/')
            || path.split('/').any(|c| c == "..")
            || path.chars().any(|ch| ch.is_control() || ch.is_whitespace())
        {
            c.push(
                key,
                format!("{path:?} must be a relative path under the assets dir"),
            );
        }
    }
    let agent_cmdline = raw
        .boot
        .agent_cmdline
        .clone()
        .unwrap_or_else(|| "console=ttyS0 console=tty0".to_string());
    if agent_cmdline.chars().any(char::is_control) {
        c.push(
            "boot.agent_cmdline",
            "must be one line without control characters",
        );
    }
    let init_rounds = raw.boot.init_rounds.unwrap_or(3);
    if !(1..=100).contains(&init_rounds) {
        c.push(
            "boot.init_rounds",
            format!("{init_rounds} is outside 1..=100"),
        );
    }
    let bmc_max_parallel = raw.bmc.max_parallel.unwrap_or(8);
    if bmc_max_parallel == 0 {
        c.push("bmc.max_parallel", "must be at least 1");
    }
    let discovery_burst = raw
        .inventory
        .discovery_burst
        .unwrap_or(DEFAULT_DISCOVERY_BURST);
    if discovery_burst > MAX_DISCOVERY {
        c.push(
            "inventory.discovery_burst",
            format!("{discovery_burst} is outside 0..={MAX_DISCOVERY}"),
        );
    }
    let discovery_per_second = raw
        .inventory
        .discovery_per_second
        .unwrap_or(DEFAULT_DISCOVERY_PER_SECOND);
    if discovery_per_second > MAX_DISCOVERY {
        c.push(
            "inventory.discovery_per_second",
            format!("{discovery_per_second} is outside 0..={MAX_DISCOVERY}"),
        );
    }
    let http_tcp_congestion = congestion_control(&mut c, raw.http.tcp_congestion.as_deref());
    if !c.0.is_empty() {
        return Err(c.0);
    }
    Ok(Config {
        mode,
        data_dir,
        assets_dir,
        interface: raw.interface.clone(),
        advertise_addr,
        log_format,
        log_level: raw.log.level.clone().unwrap_or_else(|| "info".to_string()),
        admin_listen,
        admin_token_file: raw.admin.token_file.clone(),
        http_listen,
        http_tcp_congestion,
        tftp_listen,
        tftp_single_port: raw.tftp.single_port.unwrap_or(false),
        tftp_max_blksize: max_blksize,
        tftp_max_windowsize: max_windowsize,
        tftp_timeout: Duration::from_millis(tftp_timeout_ms),
        tftp_min_timeout: Duration::from_millis(tftp_min_timeout_ms),
        tftp_max_retries,
        tftp_tail_probe: raw.tftp.tail_probe.unwrap_or(true),
        tftp_gso: raw.tftp.gso.unwrap_or(true),
        tftp_max_transfers: raw.tftp.max_transfers.unwrap_or(1024),
        tftp_max_transfers_per_client: raw.tftp.max_transfers_per_client.unwrap_or(8),
        dhcp_mode,
        dhcp_port: raw.dhcp.port.unwrap_or(67),
        pxe_port: raw.dhcp.pxe_port.unwrap_or(4011),
        dhcp_discovery_control: raw.dhcp.discovery_control.unwrap_or(false),
        dhcp_boot_files: boot_files,
        omni_endpoint,
        omni_key_file: raw.omni.key_file.clone(),
        provider_id: raw.omni.provider_id.clone(),
        omni_ca_file: raw.omni.ca_file.clone(),
        omni_insecure_skip_verify: raw.omni.insecure_skip_verify.unwrap_or(false),
        image_factory_url: raw
            .omni
            .image_factory_url
            .clone()
            .unwrap_or_else(|| "https://factory.talos.dev".into())
            .trim_end_matches('/')
            .to_string(),
        image_factory_pxe_url: raw
            .omni
            .image_factory_pxe_url
            .clone()
            .unwrap_or_else(|| "https://pxe.factory.talos.dev".into())
            .trim_end_matches('/')
            .to_string(),
        omni_heartbeat_secs: raw.omni.heartbeat_secs.unwrap_or(10),
        omni_install_boot,
        omni_agent,
        omni_agent_talos_version: raw
            .omni
            .agent_talos_version
            .clone()
            .unwrap_or_else(|| "v1.9.1".into()),
        agent_kernel,
        agent_initrds,
        agent_cmdline,
        init_rounds,
        bmc_poll_interval_secs: raw.bmc.poll_interval_secs.unwrap_or(60),
        bmc_max_parallel,
        bmc_min_interval_ms: raw.bmc.min_interval_ms.unwrap_or(500),
        bmc_verify_timeout_secs: raw.bmc.verify_timeout_secs.unwrap_or(60),
        idle_power_off_secs: raw.lifecycle.idle_power_off_secs.unwrap_or(600),
        min_power_interval_secs: raw.lifecycle.min_power_interval_secs.unwrap_or(60),
        agent_timeout_secs: raw.lifecycle.agent_timeout_secs.unwrap_or(600),
        discovery_burst,
        discovery_per_second,
    })
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Boot HTTP's TCP congestion control. Default `cubic`: the machines are on the appliance's own
/// segment, where a loss-based sender fills the link without pacing; a host default of `bbr`
/// paces each of a storm's connections at its share of the link, in packets of 2 or 3 segments
/// (bench/results, session 15). `system` keeps the host's default.
fn congestion_control(c: &mut Collector, raw: Option<&str>) -> Option<String> {
    let name = raw.unwrap_or(DEFAULT_CONGESTION_CONTROL);
    if name == "system" {
        return None;
    }
    // The kernel's names: at most 15 bytes (TCP_CA_NAME_MAX with its NUL), like `cubic`,
    // `bbr`, `reno`, `dctcp`, `westwood`.
    let valid = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid {
        c.push(
            "http.tcp_congestion",
            format!(
                "{name:?} is not a congestion control name (lower-case letters, digits, `_`, \
                 `-`, at most 15), or `system` for the host's default"
            ),
        );
        return None;
    }
    Some(name.to_string())
}
