//! The standalone lifecycle end to end: a QEMU server with a virtual disk behind an ipmi_sim BMC
//! on the segment. Accept → rackboot PXE-boots it into the agent (PXE-once + power on through
//! IPMI), the agent reports its hardware and wipes the disk (a signature written by the test is
//! gone), the machine is parked powered off; provision → it boots the profile (marker), and the
//! next boot is from disk; release → agent again, wiped, parked. Needs root; QEMU TCG.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::bmc_sim::{markers, start_ipmi_sim, SimVm, VmGuard};
use rackboot_e2e::{qemu, sh, Host, Lab};
use std::time::{Duration, Instant};

const UUID: &str = "11111111-2222-3333-4444-555555555571";
const MAC: &str = "52:54:00:99:00:71";
const SIG: &[u8] = b"RACKBOOT-TEST-SIGNATURE";

fn api(lab: &Lab, appl: &Host, method: &str, path: &str, body: &str) -> String {
    let (status, out) = lab.admin_call(appl, method, path, body);
    assert!(status != 0, "{method} {path}: no answer");
    out
}

fn machine(lab: &Lab, appl: &Host) -> serde_json::Value {
    serde_json::from_str(&lab.admin_get(appl, &format!("/api/v1/machines/{UUID}"))).unwrap()
}

fn wait_state(
    lab: &mut Lab,
    appl: &Host,
    state: &str,
    power: Option<&str>,
    timeout: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let m = machine(lab, appl);
        if m["state"] == state && power.is_none_or(|p| m["power"] == p) {
            return m;
        }
        if Instant::now() > deadline {
            let events = lab.admin_get(appl, &format!("/api/v1/events?machine={UUID}"));
            panic!(
                "machine not {state}/{power:?} in time: {m}\nevents: {events}\nlogs: {}",
                lab.dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn accept_wipe_park_provision_release() {
    qemu::agent_assets();
    let (mut lab, appl) = qemu::boot_segment(
        "lifecycle",
        "[boot]\nagent_cmdline = \"console=ttyS0\"\n[lifecycle]\nidle_power_off_secs = 0\nmin_power_interval_secs = 1\nagent_timeout_secs = 240\n\
         [bmc]\npoll_interval_secs = 5\nmin_interval_ms = 200\nverify_timeout_secs = 20\n",
        &[
            ("tftp/undionly.kpxe", "tftp/undionly.kpxe"),
            ("agent/vmlinuz", "agent/vmlinuz"),
            ("agent/initramfs.cpio.gz", "agent/initramfs.cpio.gz"),
            ("vmlinuz", "demo/vmlinuz"),
            ("marker-initrd.gz", "demo/initrd.gz"),
        ],
    );
    // The BMC lives on the segment: give the switch's bridge an address for ipmi_sim.
    sh(&[
        "ip",
        "-n",
        &lab.switch,
        "addr",
        "add",
        "10.99.0.9/24",
        "dev",
        "br0",
    ]);

    // A 64 MiB disk with a signature at the start and at the end.
    let disk = lab.dir.join("vm-disk.img");
    let size: u64 = 64 * 1024 * 1024;
    let mut img = vec![0u8; size as usize];
    img[..SIG.len()].copy_from_slice(SIG);
    let end = (size - 4096) as usize;
    img[end..end + SIG.len()].copy_from_slice(SIG);
    std::fs::write(&disk, img).unwrap();
    let bmc = start_ipmi_sim(
        &mut lab,
        "bmc",
        "10.99.0.9",
        623,
        &SimVm {
            mac: MAC,
            uuid: UUID,
            disk: Some(&disk),
            ..SimVm::default()
        },
    );
    let _vm = VmGuard(bmc.clone());

    // Register the machine with its BMC, as an operator (or `make run`) does.
    let m = api(
        &lab,
        &appl,
        "POST",
        "/api/v1/machines",
        &format!(
            r#"{{"name":"vm1","uuid":"{UUID}","macs":["{MAC}"],"bmc":{{"url":"ipmi://10.99.0.9:623","username":"admin","password":"password"}}}}"#
        ),
    );
    assert!(m.contains("\"state\":\"registered\""), "{m}");

    // Accept: PXE-once + power on via IPMI → agent → report → wipe → available, powered off.
    let m = api(
        &lab,
        &appl,
        "POST",
        &format!("/api/v1/machines/{UUID}/accept"),
        "{}",
    );
    assert!(m.contains("\"state\":\"wiping\""), "{m}");
    let m = wait_state(
        &mut lab,
        &appl,
        "available",
        Some("off"),
        Duration::from_secs(240),
    );
    assert!(
        !qemu::signature_at(&disk, SIG, 0),
        "signature at the start survived the wipe"
    );
    assert!(
        !qemu::signature_at(&disk, SIG, size - 4096),
        "signature at the end survived the wipe"
    );
    let hw = &m["hardware"];
    assert_eq!(hw["system"]["uuid"], UUID, "{hw}");
    assert!(
        hw["disks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "vda" && d["size_bytes"] == size),
        "{hw}"
    );
    assert!(
        hw["nics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["mac"] == MAC),
        "{hw}"
    );
    // Off as the BMC reports it: QEMU has exited. The chassis script removes its PID file a
    // moment later (seen once: the state was "off" while vm.pid still existed).
    let qemu_alive = || rackboot_e2e::rack::vm_running_in(&bmc);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while qemu_alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !qemu_alive(),
        "parked machines are powered off through the BMC"
    );

    // Provision with a profile: it boots the profile (marker), then boots from disk.
    api(
        &lab,
        &appl,
        "PUT",
        "/api/v1/profiles/demo",
        r#"{"name":"demo","kernel":"demo/vmlinuz","initrds":["demo/initrd.gz"],"cmdline":"console=ttyS0 demo.machine=${machine} rackboot.hold"}"#,
    );
    let before = markers(&bmc);
    let m = api(
        &lab,
        &appl,
        "POST",
        &format!("/api/v1/machines/{UUID}/provision"),
        r#"{"profile":"demo"}"#,
    );
    assert!(m.contains("\"state\":\"provisioning\""), "{m}");
    let deadline = Instant::now() + Duration::from_secs(180);
    while markers(&bmc) <= before {
        assert!(
            Instant::now() < deadline,
            "profile never booted: {}",
            std::fs::read_to_string(bmc.join("serial.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let serial = std::fs::read_to_string(bmc.join("serial.log")).unwrap();
    assert!(
        serial.contains(&format!("demo.machine={UUID}")),
        "profile cmdline substitution"
    );
    wait_state(
        &mut lab,
        &appl,
        "provisioned",
        None,
        Duration::from_secs(30),
    );
    let q = format!("uuid={UUID}&mac={}&arch=x86_64", MAC.replace(':', "-"));
    let (_, script) = lab.exec(
        &appl.ns,
        &[
            "curl",
            "-s",
            &format!("http://10.99.0.2:50042/ipxe/boot.ipxe?{q}"),
        ],
    );
    assert!(
        script.contains("boot from disk"),
        "next boot must be from disk: {script}"
    );

    // Release: back into the agent (power cycle), wiped again, parked off.
    // A new signature at the start (the file keeps its size).
    let mut f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    std::io::Write::write_all(&mut f, SIG).unwrap();
    f.set_len(size).unwrap();
    drop(f);
    let m = api(
        &lab,
        &appl,
        "POST",
        &format!("/api/v1/machines/{UUID}/release"),
        "{}",
    );
    assert!(m.contains("\"state\":\"releasing\""), "{m}");
    wait_state(
        &mut lab,
        &appl,
        "available",
        Some("off"),
        Duration::from_secs(240),
    );
    assert!(!qemu::signature_at(&disk, SIG, 0), "release must wipe");
    let events = lab.admin_get(&appl, &format!("/api/v1/events?machine={UUID}&limit=1000"));
    for needle in [
        "accepted; wiping before use",
        "disks wiped",
        "idle: powered off",
        "provisioning profile demo",
        "profile booted",
        "released; wiping",
    ] {
        assert!(
            events.contains(needle),
            "missing event {needle:?}: {events}"
        );
    }
}
