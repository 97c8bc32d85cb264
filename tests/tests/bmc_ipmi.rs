//! `rackboot bmc` against OpenIPMI's ipmi_sim in LAN mode, its chassis control wired to a real
//! QEMU VM on the lab segment: bootdev pxe + power on make the VM PXE-boot through rackboot to
//! the marker; status, reset, cycle and off behave; ipmitool agrees; a wrong password fails
//! cleanly. ipmi_sim refuses cipher suite 17, so the 17 → 3 fallback runs every time. Needs root.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::{qemu, workspace_bin, Host, Lab};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const UUID: &str = "11111111-2222-3333-4444-555555555561";
const MAC: &str = "52:54:00:99:00:61";
const PORT: u16 = 16230;

/// Kills the VM the chassis-control script started (by the PID it wrote).
struct VmGuard(PathBuf);
impl Drop for VmGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.0.join("vm.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn setup() -> (Lab, Host, PathBuf) {
    let mut lab = Lab::new("ipmi");
    let site = lab.host("site", Ipv4Addr::new(10, 99, 0, 1), Some("fd99::1/64"));
    let appl = lab.host("appl", Ipv4Addr::new(10, 99, 0, 2), None);
    lab.site_dhcp(&site);
    let src = qemu::assets();
    let assets = lab.dir.join("assets");
    std::fs::create_dir_all(assets.join("agent")).unwrap();
    std::fs::create_dir_all(assets.join("tftp")).unwrap();
    std::fs::copy(
        src.join("tftp/undionly.kpxe"),
        assets.join("tftp/undionly.kpxe"),
    )
    .unwrap();
    std::fs::copy(src.join("vmlinuz"), assets.join("agent/vmlinuz")).unwrap();
    std::fs::copy(
        src.join("marker-initrd.gz"),
        assets.join("agent/initramfs.cpio.gz"),
    )
    .unwrap();
    let cfg = lab.write(
        "rackboot.toml",
        "[boot]\nagent_cmdline = \"console=ttyS0 rackboot.hold\"\n",
    );
    lab.rackboot(&appl, &assets, &["--config", cfg.to_str().unwrap()]);

    // The BMC: ipmi_sim in the switch namespace (where the VM's tap is), on its loopback.
    let bmc = lab.dir.join("bmc");
    std::fs::create_dir_all(bmc.join("state")).unwrap();
    let tap = lab.tap();
    std::fs::write(
        bmc.join("vm.env"),
        format!("TAP={tap}\nMAC={MAC}\nUUID={UUID}\n"),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bmc/chassis-control.sh");
    let lan = format!(
        "name \"rbbmc\"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {PORT}\n    priv_limit admin\n\
         allowed_auths_callback none md2 md5 straight\n    allowed_auths_user none md2 md5 straight\n\
         allowed_auths_operator none md2 md5 straight\n    allowed_auths_admin none md2 md5 straight\n\
         guid a123456789abcdefa123456789abcdef\n  endlan\n  chassis_control \"{} {} 0x20\"\n\
         user 2 true \"admin\" \"password\" admin 10 none md2 md5 straight\n",
        script.display(),
        bmc.display()
    );
    std::fs::write(bmc.join("lan.conf"), lan).unwrap();
    std::fs::write(bmc.join("bmc.emu"), "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n").unwrap();
    let sw = lab.switch.clone();
    let (lan_p, emu_p, st) = (bmc.join("lan.conf"), bmc.join("bmc.emu"), bmc.join("state"));
    lab.spawn(
        "ipmi_sim",
        &sw,
        &[
            "ipmi_sim",
            "-c",
            lan_p.to_str().unwrap(),
            "-f",
            emu_p.to_str().unwrap(),
            "-n",
            "-s",
            st.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        lab.alive("ipmi_sim"),
        "ipmi_sim died: {}",
        lab.log("ipmi_sim")
    );
    (lab, appl, bmc)
}

fn rackboot_bmc(lab: &Lab, url: &str, args: &[&str]) -> (bool, String) {
    let bin = workspace_bin("rackboot");
    let mut full = vec![
        bin.to_str().unwrap(),
        "bmc",
        "--url",
        url,
        "--verify-timeout",
        "20",
    ];
    full.extend_from_slice(args);
    lab.exec(&lab.switch, &full)
}

fn ipmitool(lab: &Lab, args: &[&str]) -> String {
    let port = PORT.to_string();
    let mut full = vec![
        "ipmitool",
        "-I",
        "lanplus",
        "-C",
        "3",
        "-H",
        "127.0.0.1",
        "-p",
        &port,
        "-U",
        "admin",
        "-P",
        "password",
    ];
    full.extend_from_slice(args);
    lab.exec(&lab.switch, &full).1
}

fn markers(bmc: &Path) -> usize {
    std::fs::read_to_string(bmc.join("serial.log"))
        .unwrap_or_default()
        .matches("RACKBOOT-MARKER-END")
        .count()
}

fn wait_markers(bmc: &Path, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while markers(bmc) < n {
        assert!(
            Instant::now() < deadline,
            "marker #{n} not seen; serial:\n{}",
            std::fs::read_to_string(bmc.join("serial.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn ipmi_sim_drives_a_real_vm_through_pxe() {
    let (lab, appl, bmc) = setup();
    let _vm = VmGuard(bmc.clone());
    let url = format!("ipmi://admin:password@127.0.0.1:{PORT}");

    let (ok, out) = rackboot_bmc(&lab, &url, &["power", "status"]);
    assert!(ok && out.contains("power: off"), "{out}");
    let (ok, out) = rackboot_bmc(&lab, &url, &["bootdev", "pxe"]);
    assert!(ok, "{out}");
    assert!(ipmitool(&lab, &["chassis", "bootparam", "get", "5"]).contains("Force PXE"));

    let (ok, out) = rackboot_bmc(&lab, &url, &["power", "on"]);
    assert!(ok && out.contains("power is on"), "{out}");
    assert!(ipmitool(&lab, &["chassis", "power", "status"]).contains("Chassis Power is on"));
    wait_markers(&bmc, 1, Duration::from_secs(120));
    let serial = std::fs::read_to_string(bmc.join("serial.log")).unwrap();
    assert!(
        serial.contains(&format!("rackboot.machine={UUID}")),
        "booted through rackboot"
    );
    assert!(lab
        .admin_get(&appl, &format!("/api/v1/machines/{UUID}"))
        .contains(MAC));

    // Hard reset: the VM reboots and PXE-boots again.
    let (ok, out) = rackboot_bmc(&lab, &url, &["power", "reset"]);
    assert!(ok, "{out}");
    wait_markers(&bmc, 2, Duration::from_secs(120));

    // Power off, then cycle from off is refused or powers on depending on the BMC; use on.
    let (ok, out) = rackboot_bmc(&lab, &url, &["power", "off"]);
    assert!(ok && out.contains("power is off"), "{out}");
    assert!(ipmitool(&lab, &["chassis", "power", "status"]).contains("Chassis Power is off"));
    let (ok, out) = rackboot_bmc(&lab, &url, &["power", "status"]);
    assert!(ok && out.contains("power: off"), "{out}");

    // Wrong password: a clear error, non-zero exit, quickly.
    let started = Instant::now();
    let (ok, out) = rackboot_bmc(
        &lab,
        &format!("ipmi://admin:wrong@127.0.0.1:{PORT}"),
        &["power", "status"],
    );
    assert!(
        !ok && out.contains("wrong BMC username or password"),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // No BMC listening: a timeout, not a hang.
    let (ok, out) = rackboot_bmc(
        &lab,
        "ipmi://admin:password@127.0.0.1:16299",
        &["power", "status"],
    );
    assert!(!ok && out.contains("did not answer"), "{out}");
}
