//! A virtual rack: one provisioning segment (bridge namespace), a "site" host running dnsmasq as
//! the site DHCP server (addresses only, with IPv6 RAs so iPXE does not wait for them), the
//! appliance host running `rackboot serve` in proxy mode, and N QEMU servers (TCG), each with a
//! small virtual disk and its own BMC on the segment: ipmi_sim for most, sushy-emulator (Redfish)
//! for one, so both BMC drivers are used. The BMCs are registered with rackboot and a `demo`
//! profile is stored; the admin API and page are forwarded to a TCP address of the caller's
//! namespace. `make run` (tests/src/bin/virtual-rack.rs) and the e2e suite (tests/tests/rack.rs)
//! both use it. Dropping the rack stops everything it started (VMs and peers by PID) and deletes
//! its namespaces.
//!
//! Layout of the segment (10.99.0.0/24, fd99::/64): site 10.99.0.1, appliance 10.99.0.2, BMCs
//! 10.99.0.11+i on the bridge (IPMI port 623, Redfish port 8000), DHCP pool 10.99.0.100-199.

use crate::admin::{Admin, AdminError};
use crate::bmc_sim::{start_ipmi_sim, start_redfish, SimVm, VmGuard};
use crate::forward::Forwarder;
use crate::qemu::{self, Firmware};
use crate::{sh, Host, Lab};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to build.
#[derive(Clone, Debug)]
pub struct RackSpec {
    /// Number of virtual servers (1..=50).
    pub servers: usize,
    /// Where the admin API/page is forwarded to (port 0: any free port).
    pub admin_listen: SocketAddr,
    /// Guest RAM per VM, MiB.
    pub vm_mem_mb: u32,
    /// Virtual disk per VM, MiB (a sparse raw file).
    pub disk_mb: u64,
    /// Capture the segment (tcpdump on the bridge) into `segment.pcap`.
    pub pcap: bool,
    /// Children in their own process group (a launcher that handles Ctrl-C itself).
    pub detach_children: bool,
    /// Extra rackboot configuration (TOML) appended to the rack's defaults.
    pub extra_config: String,
}

impl Default for RackSpec {
    fn default() -> Self {
        Self {
            servers: 3,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            vm_mem_mb: 384,
            disk_mb: 64,
            pcap: true,
            detach_children: false,
            extra_config: String::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BmcKind {
    Ipmi,
    Redfish,
}

/// One virtual server and its BMC.
#[derive(Clone, Debug)]
pub struct Server {
    pub name: String,
    pub mac: String,
    pub uuid: String,
    pub firmware: Firmware,
    pub bmc: BmcKind,
    pub bmc_url: String,
    /// The BMC's directory: `serial.log` (the VM's console), `chassis.log`, `qemu.log`, `vm.pid`.
    pub dir: PathBuf,
    pub disk: PathBuf,
    pub disk_bytes: u64,
}

impl Server {
    /// The serial console so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.join("serial.log")).unwrap_or_default()
    }
    /// Is the VM running (the chassis-control script's PID file names a live process)?
    pub fn vm_running(&self) -> bool {
        vm_running_in(&self.dir)
    }
}

/// Is the VM of the BMC directory `dir` running (its `vm.pid` names a live process)? This is
/// what the simulated BMC reports as power on.
pub fn vm_running_in(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("vm.pid"))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .is_some_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}

/// The firmware and BMC of server `i` of `n`: BIOS and UEFI alternate; the third server (or
/// the last one of a smaller rack of ≥ 3) is the Redfish one.
pub fn server_plan(i: usize, n: usize) -> (Firmware, BmcKind) {
    let fw = if i % 2 == 1 {
        Firmware::UefiNativePxe
    } else {
        Firmware::BiosIpxeRom
    };
    let bmc = if n >= 3 && i == 2 {
        BmcKind::Redfish
    } else {
        BmcKind::Ipmi
    };
    (fw, bmc)
}

pub struct Rack {
    // Field order is drop order: VMs first, then the forwarder, then the lab (peers, namespaces).
    _vms: Vec<VmGuard>,
    forward: Forwarder,
    pub servers: Vec<Server>,
    pub admin: Admin,
    pub site: Host,
    pub appl: Host,
    pub token_file: PathBuf,
    pub tag: String,
    pub lab: Lab,
}

#[derive(Debug, thiserror::Error)]
pub enum RackError {
    #[error("{0}")]
    Missing(String),
    #[error("forwarding the admin API to {addr}: {source}")]
    Forward {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("setting up the rack: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// The programs a rack needs, each with the package that provides it.
const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("dnsmasq", "dnsmasq-base"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("ipmi_sim", "openipmi"),
    ("tcpdump", "tcpdump"),
    ("curl", "curl"),
];

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

/// Everything a rack needs that is not there, as one message (`make deps-test test-assets`).
pub fn preflight() -> Result<(), RackError> {
    let mut missing: Vec<String> = TOOLS
        .iter()
        .filter(|(t, _)| !on_path(t))
        .map(|(t, p)| format!("{t} (Debian package {p})"))
        .collect();
    for f in [
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/lib/ipxe/qemu/efi-virtio.rom",
    ] {
        if !Path::new(f).is_file() {
            missing.push(f.to_string());
        }
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../var/venv/bin/sushy-emulator");
    if !venv.is_file() {
        missing.push(format!("{} (make deps-test)", venv.display()));
    }
    let assets = assets_dir();
    for f in [
        "vmlinuz",
        "marker-initrd.gz",
        "tftp/undionly.kpxe",
        "tftp/ipxe.efi",
        "agent/vmlinuz",
        "agent/initramfs.cpio.gz",
    ] {
        if !assets.join(f).is_file() {
            missing.push(format!("{} (make test-assets)", assets.join(f).display()));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(RackError::Missing(format!(
            "missing: {}",
            missing.join(", ")
        )))
    }
}

fn assets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-assets")
}

/// Link (or copy) the boot assets the rack serves: iPXE, the agent image, the demo profile.
fn stage_assets(dst: &Path) -> Result<(), RackError> {
    let src = qemu::assets();
    for (from, to) in [
        ("tftp/undionly.kpxe", "tftp/undionly.kpxe"),
        ("tftp/ipxe.efi", "tftp/ipxe.efi"),
        ("tftp/snponly.efi", "tftp/snponly.efi"),
        ("agent/vmlinuz", "agent/vmlinuz"),
        ("agent/initramfs.cpio.gz", "agent/initramfs.cpio.gz"),
        ("vmlinuz", "demo/vmlinuz"),
        ("marker-initrd.gz", "demo/initrd.gz"),
    ] {
        let (from, to) = (src.join(from), dst.join(to));
        if !from.is_file() {
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let _ = std::fs::remove_file(&to);
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// rackboot's configuration for the rack: parked machines power off at once, power actions may
/// follow each other after a second, BMCs are polled every 5 s (sushy's fake driver applies a
/// power change only when it is read).
const CONFIG: &str = "[boot]\nagent_cmdline = \"console=ttyS0\"\n\
[lifecycle]\nidle_power_off_secs = 0\nmin_power_interval_secs = 1\nagent_timeout_secs = 420\n\
[bmc]\npoll_interval_secs = 5\nmin_interval_ms = 200\nverify_timeout_secs = 40\n";

/// The demo profile: the test kernel with the marker initramfs, which prints its command line
/// (with the machine's UUID substituted) and stays up.
pub fn demo_profile() -> Value {
    json!({
        "name": "demo",
        "kernel": "demo/vmlinuz",
        "initrds": ["demo/initrd.gz"],
        "cmdline": "console=ttyS0 demo.machine=${machine} rackboot.hold",
    })
}

impl Rack {
    /// Build a rack in a fresh scratch dir (`target/e2e/<tag>-<pid>`), namespaces named per lab.
    pub fn start(tag: &str, spec: &RackSpec) -> Result<Rack, RackError> {
        preflight()?;
        Self::build(Lab::new(tag), tag, spec)
    }

    /// Build a rack with fixed names: namespaces `<prefix>*`, everything under `dir` (wiped).
    /// A run that was SIGKILLed leaves its processes behind (they are in their own process
    /// groups); they are found by the PIDs it recorded and stopped before the dir is wiped.
    pub fn start_at(prefix: &str, dir: &Path, spec: &RackSpec) -> Result<Rack, RackError> {
        preflight()?;
        reap_leftovers(dir);
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let rack = Self::build(Lab::at(prefix, dir.to_path_buf()), prefix, spec)?;
        let pids: String = rack
            .lab
            .pids()
            .iter()
            .map(|(name, pid)| {
                format!(
                    "{pid} {}\n",
                    process_name(*pid).unwrap_or_else(|| name.clone())
                )
            })
            .collect();
        std::fs::write(dir.join("pids"), pids)?;
        Ok(rack)
    }

    fn build(mut lab: Lab, tag: &str, spec: &RackSpec) -> Result<Rack, RackError> {
        lab.detach_children = spec.detach_children;
        let n = spec.servers.clamp(1, 50);
        let site = lab.host("site", Ipv4Addr::new(10, 99, 0, 1), Some("fd99::1/64"));
        let appl = lab.host("appl", Ipv4Addr::new(10, 99, 0, 2), None);
        if spec.pcap {
            lab.capture("segment");
        }
        lab.site_dhcp(&site);
        let assets = lab.dir.join("assets");
        stage_assets(&assets)?;
        let cfg = lab.write("rackboot.toml", &format!("{CONFIG}{}", spec.extra_config));
        let cfg = cfg.display().to_string();
        lab.rackboot(&appl, &assets, &["--config", &cfg]);

        let mut vms = Vec::new();
        let mut servers = Vec::new();
        for i in 0..n {
            let (firmware, bmc) = server_plan(i, n);
            let name = format!("r1-u{:02}", i + 1);
            let mac = format!("52:54:00:99:10:{:02x}", i + 1);
            let uuid = format!("11111111-2222-3333-4444-5555555510{:02x}", i + 1);
            let ip = format!("10.99.0.{}", 11 + i);
            let sw = lab.switch.clone();
            sh(&[
                "ip",
                "-n",
                &sw,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "br0",
            ]);
            let disk = lab.dir.join(format!("{name}-disk.img"));
            let disk_bytes = spec.disk_mb.max(8) * 1024 * 1024;
            std::fs::File::create(&disk)?.set_len(disk_bytes)?;
            let vm = SimVm {
                mac: &mac,
                uuid: &uuid,
                disk: Some(&disk),
                firmware,
                mem_mb: spec.vm_mem_mb,
                inband_port: None,
            };
            let (dir, bmc_url) = match bmc {
                BmcKind::Ipmi => (
                    start_ipmi_sim(&mut lab, &name, &ip, 623, &vm),
                    format!("ipmi://{ip}:623"),
                ),
                BmcKind::Redfish => {
                    let bridge_port = 19000 + u16::try_from(i).unwrap_or(0);
                    (
                        start_redfish(&mut lab, &name, &ip, 8000, bridge_port, &vm),
                        format!("redfish+http://{ip}:8000"),
                    )
                }
            };
            vms.push(VmGuard(dir.clone()));
            servers.push(Server {
                name,
                mac,
                uuid,
                firmware,
                bmc,
                bmc_url,
                dir,
                disk,
                disk_bytes,
            });
        }

        let forward = Forwarder::start(
            spec.admin_listen,
            &appl.ns,
            SocketAddr::from(([127, 0, 0, 1], 8080)),
        )
        .map_err(|source| RackError::Forward {
            addr: spec.admin_listen,
            source,
        })?;
        let token_file = lab.dir.join("rackboot-data/admin-token");
        let token = std::fs::read_to_string(&token_file)?;
        let admin = Admin::new(forward.local, &token);
        let rack = Rack {
            _vms: vms,
            forward,
            servers,
            admin,
            site,
            appl,
            token_file,
            tag: tag.to_string(),
            lab,
        };
        for s in &rack.servers {
            rack.admin.post(
                "/api/v1/machines",
                &json!({
                    "name": s.name,
                    "uuid": s.uuid,
                    "macs": [s.mac],
                    "bmc": {"url": s.bmc_url, "username": "admin", "password": "password"},
                }),
            )?;
        }
        rack.admin.put("/api/v1/profiles/demo", &demo_profile())?;
        Ok(rack)
    }

    /// Where the admin page is reachable from this namespace.
    pub fn admin_url(&self) -> String {
        format!("http://{}/", self.forward.local)
    }

    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The machine record as the API shows it.
    pub fn machine(&self, name: &str) -> Result<Value, AdminError> {
        self.admin.get(&format!("/api/v1/machines/{name}"))
    }

    /// The events of one machine (oldest first), or of all machines.
    pub fn events(&self, machine: Option<&str>) -> Result<Value, AdminError> {
        match machine {
            Some(m) => self
                .admin
                .get(&format!("/api/v1/events?machine={m}&limit=1000")),
            None => self.admin.get("/api/v1/events?limit=1000"),
        }
    }

    /// Copy the diagnostics into `dest`: the appliance log, the site DHCP log, the segment
    /// capture, every VM's serial console, chassis and QEMU log, every BMC's log, and the
    /// machines and events as the API shows them (if it still answers).
    pub fn save_artifacts(&mut self, dest: &Path) -> std::io::Result<()> {
        if self.lab.alive("segment") {
            self.lab.stop("segment", Duration::from_secs(2));
        }
        let _ = std::fs::remove_dir_all(dest);
        std::fs::create_dir_all(dest)?;
        let dir = self.lab.dir.clone();
        let mut copies: Vec<(PathBuf, String)> = vec![
            (dir.join("rackboot.log"), "appliance.log".into()),
            (dir.join("rackboot.toml"), "rackboot.toml".into()),
            (dir.join("site-dnsmasq.log"), "site-dnsmasq.log".into()),
            (dir.join("segment.pcap"), "segment.pcap".into()),
        ];
        for s in &self.servers {
            let n = &s.name;
            copies.push((s.dir.join("serial.log"), format!("{n}-serial.log")));
            copies.push((s.dir.join("chassis.log"), format!("{n}-chassis.log")));
            copies.push((s.dir.join("qemu.log"), format!("{n}-qemu.log")));
            copies.push((dir.join(format!("{n}.log")), format!("{n}-bmc.log")));
            copies.push((
                dir.join(format!("{n}-bridge.log")),
                format!("{n}-bridge.log"),
            ));
        }
        for (from, to) in copies {
            if from.is_file() {
                std::fs::copy(&from, dest.join(to))?;
            }
        }
        if let Ok(v) = self.admin.get("/api/v1/machines") {
            std::fs::write(dest.join("machines.json"), format!("{v:#}"))?;
        }
        if let Ok(v) = self.events(None) {
            std::fs::write(dest.join("events.json"), format!("{v:#}"))?;
        }
        Ok(())
    }
}

/// The executable name of a live process (`/proc/<pid>/comm`).
fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn kill_if(pid: u32, comm: &str) {
    if process_name(pid).as_deref() == Some(comm) {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Stop what an earlier run in `dir` left running: the VMs (by their `vm.pid`) and the peers
/// (by `<dir>/pids`), each only if the PID still names the same program.
fn reap_leftovers(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let pid = std::fs::read_to_string(e.path().join("vm.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            if let Some(pid) = pid {
                kill_if(pid, "qemu-system-x86");
            }
        }
    }
    let recorded = std::fs::read_to_string(dir.join("pids")).unwrap_or_default();
    for line in recorded.lines() {
        if let Some((pid, comm)) = line.split_once(' ') {
            if let Ok(pid) = pid.parse::<u32>() {
                kill_if(pid, comm);
            }
        }
    }
}

/// `target/e2e-artifacts/<name>` of this workspace.
pub fn artifacts_dir(name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .unwrap_or(manifest)
        .join("target/e2e-artifacts")
        .join(name)
}

impl Drop for Rack {
    fn drop(&mut self) {
        // A failing test unwinds through here: keep what explains the failure.
        if std::thread::panicking() {
            let dest = artifacts_dir(&self.tag);
            match self.save_artifacts(&dest) {
                Ok(()) => eprintln!("rack diagnostics in {}", dest.display()),
                Err(e) => eprintln!("saving rack diagnostics to {}: {e}", dest.display()),
            }
        }
        if self.lab.alive("segment") {
            self.lab.stop("segment", Duration::from_secs(2));
        }
        for s in &self.servers {
            let _ = std::fs::remove_file(&s.disk);
        }
    }
}
