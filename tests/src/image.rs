//! The appliance disk image (`image/build.sh`) booted in QEMU (TCG, OVMF) on the lab segment.
//!
//! The appliance VM has two NICs, like the rack host it stands for: `eth0` (management) is QEMU
//! user-mode networking with `restrict=on` (nothing leaves the machine) and the admin port
//! forwarded to `127.0.0.1:<port>` inside the lab's switch namespace; `eth1` (provisioning) is a
//! tap on the lab bridge, where the site DHCP server hands it an address.

use crate::{sh, Lab};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Byte offset of the ESP inside the disk (partition 1 starts at sector 2048).
pub const ESP_OFFSET: &str = "1M";

pub struct Built {
    pub dir: PathBuf,
    pub disk: PathBuf,
    pub seconds: f64,
}

/// Run `image/build.sh OUT --overlay OVERLAY` with the workspace's rackboot binary.
pub fn build(out: &Path, overlay: &str) -> Built {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../image/build.sh");
    let t = Instant::now();
    let o = Command::new(&script)
        .arg(out)
        .args(["--overlay", overlay])
        .env("RACKBOOT_BIN", crate::workspace_bin("rackboot"))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let seconds = t.elapsed().as_secs_f64();
    assert!(
        o.status.success(),
        "image/build.sh failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let disk = out.join("rackboot.img");
    assert!(disk.is_file() && out.join("rackboot.qcow2").is_file());
    Built {
        dir: out.to_path_buf(),
        disk,
        seconds,
    }
}

/// Copy a host file onto the image's ESP (`dest` like `/rackboot/admin-token`), as an operator
/// does from a laptop.
pub fn esp_put(disk: &Path, src: &Path, dest: &str) {
    let img = format!("{}@@{ESP_OFFSET}", disk.display());
    sh(&[
        "mcopy",
        "-o",
        "-i",
        &img,
        src.to_str().unwrap(),
        &format!("::{dest}"),
    ]);
}

/// Names in an ESP directory (`mdir -b`), e.g. `/rackboot`.
pub fn esp_ls(disk: &Path, dir: &str) -> Vec<String> {
    let img = format!("{}@@{ESP_OFFSET}", disk.display());
    sh(&["mdir", "-b", "-i", &img, &format!("::{dir}")])
        .lines()
        .filter_map(|l| l.rsplit('/').next().map(str::to_string))
        .collect()
}

pub struct Appliance {
    /// Child name in the lab (its console log is `<dir>/<name>.log`).
    pub name: String,
    pub pid: u32,
    pub started: Instant,
    /// The admin port forwarded to 127.0.0.1 in the lab's switch namespace.
    pub admin_port: u16,
    pub monitor: PathBuf,
}

/// Boot `disk` under OVMF: eth0 = user-mode management NIC (admin `guest_admin` → 127.0.0.1:
/// `admin_port`), eth1 = a tap on the lab bridge. `-no-reboot`: a guest reboot ends QEMU.
pub fn boot(
    lab: &mut Lab,
    name: &str,
    disk: &Path,
    admin_port: u16,
    guest_admin: u16,
    prov_mac: &str,
) -> Appliance {
    let tap = lab.tap();
    let vars = lab.dir.join(format!("{name}-vars.fd"));
    if !vars.exists() {
        std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
    }
    let monitor = lab.dir.join(format!("{name}.monitor"));
    let _ = std::fs::remove_file(&monitor);
    let args: Vec<String> = vec![
        "qemu-system-x86_64".into(),
        "-accel".into(),
        "tcg".into(),
        "-machine".into(),
        "q35".into(),
        "-m".into(),
        "1024".into(),
        "-nographic".into(),
        "-nodefaults".into(),
        "-no-reboot".into(),
        "-serial".into(),
        "stdio".into(),
        "-monitor".into(),
        format!("unix:{},server=on,wait=off", monitor.display()),
        "-drive".into(),
        "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        "-drive".into(),
        format!("file={},format=raw,if=virtio", disk.display()),
        "-netdev".into(),
        format!("user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{admin_port}-:{guest_admin}"),
        "-device".into(),
        "virtio-net-pci,netdev=mgmt,mac=52:54:00:aa:00:01".into(),
        "-netdev".into(),
        format!("tap,id=prov,ifname={tap},script=no,downscript=no"),
        "-device".into(),
        format!("virtio-net-pci,netdev=prov,mac={prov_mac}"),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let switch = lab.switch.clone();
    let started = Instant::now();
    let pid = lab.spawn(name, &switch, &refs);
    Appliance {
        name: name.to_string(),
        pid,
        started,
        admin_port,
        monitor,
    }
}

impl Appliance {
    pub fn console(&self, lab: &Lab) -> String {
        lab.log(&self.name).replace('\r', "")
    }

    /// Wait until the console shows `needle` (panics with the console tail otherwise).
    pub fn wait_console(&self, lab: &mut Lab, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.console(lab);
            if log.contains(needle) {
                return log;
            }
            assert!(
                lab.alive(&self.name),
                "{}: QEMU exited before {needle:?}; console:\n{}",
                self.name,
                tail(&log, 4000)
            );
            assert!(
                Instant::now() < deadline,
                "{}: {needle:?} not seen within {timeout:?}; console:\n{}",
                self.name,
                tail(&log, 4000)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// curl the admin API through the forwarded port; `auth` is a curl header file
    /// (`-H @file`) so the token never appears in a command line. Returns (HTTP status, body).
    pub fn admin(
        &self,
        lab: &Lab,
        method: &str,
        path: &str,
        auth: Option<&Path>,
        body: Option<&str>,
    ) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.admin_port);
        let headers: Vec<String> = auth
            .map(|a| format!("@{}", a.display()))
            .into_iter()
            .collect();
        lab.curl_call(&lab.switch, method, &url, &headers, body)
    }

    /// Poll `GET /healthz` until it answers `ok`; returns the time since QEMU started.
    pub fn wait_healthy(&self, lab: &mut Lab, timeout: Duration) -> Duration {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, body) = self.admin(lab, "GET", "/healthz", None, None);
            if code == 200 && body.trim() == "ok" {
                return self.started.elapsed();
            }
            assert!(
                lab.alive(&self.name),
                "{}: QEMU exited; console:\n{}",
                self.name,
                tail(&self.console(lab), 4000)
            );
            assert!(
                Instant::now() < deadline,
                "{}: /healthz not ok within {timeout:?} (last: {code} {body:?}); console:\n{}",
                self.name,
                tail(&self.console(lab), 4000)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// One command on the QEMU monitor (e.g. `sendkey ctrl-alt-delete`).
    pub fn monitor(&self, cmd: &str) {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(&self.monitor).unwrap();
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Pull the plug: SIGKILL QEMU and wait until it is gone.
    pub fn power_cut(&self, lab: &mut Lab) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        self.wait_exit(lab, Duration::from_secs(10));
    }

    /// Wait until QEMU has exited (panics after `timeout`).
    pub fn wait_exit(&self, lab: &mut Lab, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while lab.alive(&self.name) {
            assert!(
                Instant::now() < deadline,
                "{}: QEMU still running after {timeout:?}; console:\n{}",
                self.name,
                tail(&self.console(lab), 3000)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}
