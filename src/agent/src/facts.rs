//! Hardware facts from `/sys`, `/proc` and `/dev`, read relative to a root directory so tests
//! run against fake trees. Missing or unreadable entries become empty/zero values: a report
//! with holes beats no report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rackboot_proto::agent::v1::{BmcInfo, Cpu, Disk, HardwareReport, Nic, SystemInfo};

/// Block device name prefixes that are never real disks (and are never wiped).
const SKIP_BLOCK_PREFIXES: &[&str] = &["loop", "ram", "zram", "sr", "fd", "dm-", "md", "nbd"];

/// Reads a small sysfs/procfs file, trimmed; `None` if missing, unreadable or empty.
fn read_trim(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn read_or_empty(path: &Path) -> String {
    read_trim(path).unwrap_or_default()
}

/// Everything the agent reports, gathered under `root` (`/` on a real machine).
pub fn gather(root: &Path) -> HardwareReport {
    HardwareReport {
        system: Some(system_info(root)),
        cpus: cpus(root),
        memory_bytes: memory_bytes(root),
        disks: disks(root).into_iter().map(|d| d.disk).collect(),
        nics: nics(root),
        bmc: Some(bmc(root)),
    }
}

/// SMBIOS system identity from `sys/class/dmi/id`. The UUID is lower-cased.
pub fn system_info(root: &Path) -> SystemInfo {
    let dmi = root.join("sys/class/dmi/id");
    SystemInfo {
        uuid: read_or_empty(&dmi.join("product_uuid")).to_ascii_lowercase(),
        vendor: read_or_empty(&dmi.join("sys_vendor")),
        product: read_or_empty(&dmi.join("product_name")),
        serial: read_or_empty(&dmi.join("product_serial")),
    }
}

/// One entry per physical package from `proc/cpuinfo`.
pub fn cpus(root: &Path) -> Vec<Cpu> {
    let Some(text) = std::fs::read_to_string(root.join("proc/cpuinfo")).ok() else {
        return Vec::new();
    };
    parse_cpuinfo(&text)
}

/// Parses `/proc/cpuinfo`: processors grouped by `physical id`; `cores` from `cpu cores`
/// (or the number of distinct `core id`s), `threads` = processors in the package.
pub fn parse_cpuinfo(text: &str) -> Vec<Cpu> {
    #[derive(Default)]
    struct Pkg {
        model: String,
        cpu_cores: Option<u32>,
        core_ids: std::collections::BTreeSet<String>,
        threads: u32,
    }
    let mut pkgs: BTreeMap<u64, Pkg> = BTreeMap::new();
    for block in text.split("\n\n") {
        let mut fields = BTreeMap::new();
        for line in block.lines() {
            if let Some((k, v)) = line.split_once(':') {
                fields.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        if !fields.contains_key("processor") {
            continue;
        }
        let phys = fields
            .get("physical id")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let pkg = pkgs.entry(phys).or_default();
        pkg.threads += 1;
        if pkg.model.is_empty() {
            if let Some(m) = fields
                .get("model name")
                .or_else(|| fields.get("Processor"))
                .or_else(|| fields.get("cpu model"))
            {
                pkg.model = m.clone();
            }
        }
        if let Some(c) = fields.get("cpu cores").and_then(|v| v.parse().ok()) {
            pkg.cpu_cores = Some(c);
        }
        if let Some(id) = fields.get("core id") {
            pkg.core_ids.insert(id.clone());
        }
    }
    pkgs.into_values()
        .map(|p| {
            let cores = p
                .cpu_cores
                .or_else(|| u32::try_from(p.core_ids.len()).ok().filter(|n| *n > 0))
                .unwrap_or(p.threads);
            Cpu {
                model: p.model,
                cores,
                threads: p.threads,
            }
        })
        .collect()
}

/// `MemTotal` from `proc/meminfo`, in bytes.
pub fn memory_bytes(root: &Path) -> u64 {
    std::fs::read_to_string(root.join("proc/meminfo"))
        .map(|t| parse_meminfo(&t))
        .unwrap_or(0)
}

/// `MemTotal:  16384 kB` → bytes.
pub fn parse_meminfo(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |kib| kib.saturating_mul(1024))
}

/// A disk with the device node that a wipe writes to.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockDevice {
    /// What is reported.
    pub disk: Disk,
    /// `<root>/dev/<name>`.
    pub dev_path: PathBuf,
}

/// Disks from `sys/block/*`, sorted by name; loop/ram/zram/sr (and fd, dm-, md, nbd) skipped.
pub fn disks(root: &Path) -> Vec<BlockDevice> {
    let Ok(rd) = std::fs::read_dir(root.join("sys/block")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
        .into_iter()
        .filter(|n| !SKIP_BLOCK_PREFIXES.iter().any(|p| n.starts_with(p)))
        .map(|name| {
            let dir = root.join("sys/block").join(&name);
            let sectors: u64 = read_trim(&dir.join("size"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let serial = ["device/serial", "serial", "device/wwid", "wwid"]
                .iter()
                .find_map(|f| read_trim(&dir.join(f)))
                .unwrap_or_default();
            let disk = Disk {
                size_bytes: sectors.saturating_mul(512),
                model: read_or_empty(&dir.join("device/model")),
                serial,
                rotational: read_trim(&dir.join("queue/rotational")).as_deref() == Some("1"),
                name: name.clone(),
            };
            BlockDevice {
                disk,
                dev_path: root.join("dev").join(&name),
            }
        })
        .collect()
}

/// NICs from `sys/class/net/*`, sorted by name, `lo` skipped.
pub fn nics(root: &Path) -> Vec<Nic> {
    let base = root.join("sys/class/net");
    let Ok(rd) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
        .into_iter()
        .filter(|n| n != "lo")
        .map(|name| {
            let dir = base.join(&name);
            let driver = std::fs::read_link(dir.join("device/driver"))
                .ok()
                .and_then(|p| p.file_name().and_then(|f| f.to_str()).map(str::to_string))
                .unwrap_or_default();
            // `speed` is -1 or unreadable (EINVAL) while the link is down.
            let speed_mbps = read_trim(&dir.join("speed"))
                .and_then(|s| s.parse::<i64>().ok())
                .and_then(|s| u32::try_from(s).ok())
                .unwrap_or(0);
            Nic {
                mac: read_or_empty(&dir.join("address")).to_ascii_lowercase(),
                driver,
                speed_mbps,
                link_up: read_trim(&dir.join("operstate")).as_deref() == Some("up"),
                name,
            }
        })
        .collect()
}

/// The MAC the agent most likely came up on: the first NIC with link up and a real MAC,
/// else the first NIC with a real MAC.
pub fn boot_mac(nics: &[Nic]) -> String {
    let real = |n: &&Nic| !n.mac.is_empty() && n.mac != "00:00:00:00:00:00";
    nics.iter()
        .filter(real)
        .find(|n| n.link_up)
        .or_else(|| nics.iter().find(real))
        .map(|n| n.mac.clone())
        .unwrap_or_default()
}

/// The in-band IPMI device node, if any (`dev/ipmi0`, `dev/ipmi/0`, `dev/ipmidev/0`).
pub fn ipmi_device(root: &Path) -> Option<PathBuf> {
    ["dev/ipmi0", "dev/ipmi/0", "dev/ipmidev/0"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.exists())
}

/// BMC presence (`dev/ipmi0`). Address and MAC are filled by [`crate::bmc::lan_info`] when
/// `ipmitool` is available.
pub fn bmc(root: &Path) -> BmcInfo {
    BmcInfo {
        present: ipmi_device(root).is_some(),
        ip: String::new(),
        mac: String::new(),
    }
}

/// System uptime in whole seconds from `proc/uptime`.
pub fn uptime_secs(root: &Path) -> Option<u64> {
    let t = read_trim(&root.join("proc/uptime"))?;
    let first = t.split_whitespace().next()?;
    let secs: f64 = first.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs as u64)
}

/// Block devices keep appearing for a while after boot: NVMe namespaces and SATA/SAS disks
/// behind `sd_mod` are probed asynchronously once their driver is loaded, so a wipe right
/// after the agent starts could miss a disk. Disks are settled once the system has been up
/// [`SETTLE_UPTIME`] and the set has not changed for [`SETTLE_QUIET`]; a system up for
/// [`SETTLED_AFTER`] is settled at once, and nobody waits longer than [`SETTLE_MAX`].
pub const SETTLE_UPTIME: Duration = Duration::from_secs(10);
/// See [`SETTLE_UPTIME`].
pub const SETTLE_QUIET: Duration = Duration::from_secs(2);
/// See [`SETTLE_UPTIME`].
pub const SETTLED_AFTER: Duration = Duration::from_secs(60);
/// See [`SETTLE_UPTIME`].
pub const SETTLE_MAX: Duration = Duration::from_secs(30);

/// Are the disks settled? `uptime` of the system (`None`: unknown, e.g. not the agent image),
/// `quiet`: how long the set has been unchanged, `waited`: how long we have been waiting.
pub fn disks_settled(uptime: Option<Duration>, quiet: Duration, waited: Duration) -> bool {
    let Some(up) = uptime else { return true };
    waited >= SETTLE_MAX || up >= SETTLED_AFTER || (up >= SETTLE_UPTIME && quiet >= SETTLE_QUIET)
}

/// Wait (blocking) until the disks under `root` are settled (see [`disks_settled`]).
/// Returns how long it waited.
pub fn settle_disks(root: &Path) -> Duration {
    let names = || -> Vec<String> {
        disks(root)
            .into_iter()
            .filter(|d| d.disk.size_bytes > 0)
            .map(|d| d.disk.name)
            .collect()
    };
    let start = Instant::now();
    let mut last = names();
    let mut since = start;
    loop {
        let up = uptime_secs(root).map(Duration::from_secs);
        if disks_settled(up, since.elapsed(), start.elapsed()) {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(250));
        let now = names();
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}
