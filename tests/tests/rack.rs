//! The e2e suite on a virtual rack of three servers (tests/src/rack.rs): r1-u01 SeaBIOS + iPXE
//! ROM behind ipmi_sim, r1-u02 OVMF native PXE behind ipmi_sim, r1-u03 SeaBIOS behind
//! sushy-emulator (Redfish). The whole standalone lifecycle runs on all three at once through
//! the scenario runner: accept (PXE into the agent, hardware report, wipe: signatures written
//! by the test at both ends of every disk are gone, parked powered off) → provision with the
//! demo profile (each console shows its own UUID substituted, and the firmware it booted
//! with) → release (wiped again, parked). On failure the consoles, the appliance log, the
//! segment capture, machines and events are kept in target/e2e-artifacts/rack/ (also on
//! success with RACKBOOT_E2E_KEEP=1). Needs root; QEMU TCG.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::qemu::Firmware;
use rackboot_e2e::rack::{artifacts_dir, BmcKind, Rack, RackSpec, Server};
use rackboot_e2e::scenario::{Runner, Scenario};
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Instant;

const SIG: &[u8] = b"RACKBOOT-TEST-SIGNATURE";

fn sign(s: &Server) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&s.disk)
        .unwrap();
    for off in [0, s.disk_bytes - 4096] {
        f.seek(SeekFrom::Start(off)).unwrap();
        f.write_all(SIG).unwrap();
    }
    f.sync_all().unwrap();
}

fn signed_at(s: &Server) -> Vec<u64> {
    let mut f = std::fs::File::open(&s.disk).unwrap();
    let mut found = vec![];
    for off in [0, s.disk_bytes - 4096] {
        let mut buf = vec![0u8; SIG.len()];
        f.seek(SeekFrom::Start(off)).unwrap();
        f.read_exact(&mut buf).unwrap();
        if buf == SIG {
            found.push(off);
        }
    }
    found
}

fn play(rack: &Rack, text: &str) {
    let scenario = Scenario::parse(text).unwrap();
    let never = || false;
    let t0 = Instant::now();
    let mut log = |m: &str| eprintln!("[{:>4} s] {m}", t0.elapsed().as_secs());
    Runner::new(rack, &never, &mut log)
        .run(&scenario)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn bios_uefi_and_redfish_servers_go_through_the_whole_lifecycle_at_once() {
    let t0 = Instant::now();
    let mut rack = Rack::start("rack", &RackSpec::default()).unwrap();
    let plan: Vec<(Firmware, BmcKind)> = rack.servers.iter().map(|s| (s.firmware, s.bmc)).collect();
    assert_eq!(
        plan,
        [
            (Firmware::BiosIpxeRom, BmcKind::Ipmi),
            (Firmware::UefiNativePxe, BmcKind::Ipmi),
            (Firmware::BiosIpxeRom, BmcKind::Redfish),
        ]
    );
    for s in &rack.servers {
        sign(s);
        assert_eq!(rack.machine(&s.name).unwrap()["state"], "registered");
    }

    // Accept: every machine PXE-boots into the agent, reports, is wiped and parked.
    play(&rack, "accept all\nwait all available/off 900\n");
    eprintln!("all available after {} s", t0.elapsed().as_secs());
    for s in &rack.servers {
        assert!(
            signed_at(s).is_empty(),
            "{}: the wipe missed {:?}",
            s.name,
            signed_at(s)
        );
        // The API shows the power the lifecycle decided as soon as it is stored; the BMC may
        // take a while to carry it out (sushy-emulator delays power changes by up to ~10 s).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while s.vm_running() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        assert!(
            !s.vm_running(),
            "{}: parked machines are powered off",
            s.name
        );
        let m = rack.machine(&s.name).unwrap();
        let hw = &m["hardware"];
        assert_eq!(hw["system"]["uuid"], s.uuid.as_str(), "{}: {hw}", s.name);
        assert!(
            hw["disks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["name"] == "vda" && d["size_bytes"] == s.disk_bytes),
            "{}: {hw}",
            s.name
        );
        assert!(
            hw["nics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["mac"] == s.mac.as_str()),
            "{}: {hw}",
            s.name
        );
        assert_eq!(m["bmc"]["health"]["reachable"], true, "{}: {m}", s.name);
        sign(s);
    }

    // Provision all three with the demo profile: each console shows its own UUID and firmware.
    play(
        &rack,
        "provision all demo\nwait all provisioned 600\n\
         console all demo.machine={uuid} within 600\n\
         console r1-u01 RACKBOOT-FIRMWARE: BIOS within 60\n\
         console r1-u02 RACKBOOT-FIRMWARE: UEFI within 60\n\
         console r1-u03 RACKBOOT-FIRMWARE: BIOS within 60\n",
    );
    eprintln!("all provisioned after {} s", t0.elapsed().as_secs());
    for s in &rack.servers {
        assert_eq!(
            signed_at(s).len(),
            2,
            "{}: provisioning must not wipe",
            s.name
        );
        assert!(s.vm_running(), "{}: a provisioned machine runs", s.name);
    }

    // Release: back into the agent, wiped, parked.
    play(&rack, "release all\nwait all available/off 900\n");
    eprintln!("all released after {} s", t0.elapsed().as_secs());
    for s in &rack.servers {
        assert!(signed_at(s).is_empty(), "{}: release must wipe", s.name);
        let events = rack.events(Some(&s.uuid)).unwrap().to_string();
        for needle in [
            "accepted; wiping before use",
            "disks wiped",
            "idle: powered off",
            "provisioning profile demo",
            "profile booted",
            "released; wiping",
            "power on: done",
        ] {
            assert!(
                events.contains(needle),
                "{}: no event {needle:?}: {events}",
                s.name
            );
        }
    }
    // The Redfish server was powered through sushy-emulator (its notifications drove the VM).
    let bridge = std::fs::read_to_string(rack.lab.dir.join("r1-u03-bridge.log")).unwrap();
    assert!(bridge.contains("power=On pending=None"), "{bridge}");
    let ipmi = std::fs::read_to_string(rack.servers[1].dir.join("chassis.log")).unwrap();
    assert!(
        ipmi.contains("set power 1") && ipmi.contains("set power 0"),
        "{ipmi}"
    );
    if std::env::var_os("RACKBOOT_E2E_KEEP").is_some() {
        rack.save_artifacts(&artifacts_dir("rack")).unwrap();
    }
    eprintln!("rack e2e: {} s", t0.elapsed().as_secs());
}
