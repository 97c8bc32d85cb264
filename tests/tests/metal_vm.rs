//! Omni's static-provider flow with the Talos metal agent protocol on a real machine: a QEMU
//! server whose BMC (ipmi_sim) it can also reach in-band (a KCS interface wired to the same
//! ipmi_sim), rackboot in Omni mode with `omni.agent = "talos"`. The operator powers the new
//! machine on; it PXE-boots, rackboot chains it to the agent-mode schematic of the Image Factory
//! double — which serves rackboot-agent in place of Talos — and the agent dials back over the
//! reverse tunnel. rackboot knows no BMC for the machine, so it asks the agent for it
//! (GetPowerManagement: the BMC's LAN address read in-band) and has it create the `talos-agent`
//! user in-band (SetPowerManagement); from then on rackboot drives the BMC over the LAN with that
//! user. Omni accepts the machine → WipeDisks through the tunnel → the disk is wiped →
//! ready_to_use → rackboot powers it off through the BMC. Needs root; QEMU TCG.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::bmc_sim::{start_ipmi_sim, SimVm, VmGuard};
use rackboot_e2e::omni::{keygen, OmniSegment, SEG_FACTORY};
use rackboot_e2e::{factory, in_netns, qemu, scratch, sh};
use serde_json::json;
use std::time::Duration;

const UUID: &str = "3f2e1d0c-9b8a-4765-8432-10fedcba9876";
const MAC: &str = "52:54:00:99:00:91";
const SIG: &[u8] = b"RACKBOOT-METAL-SIGNATURE";
const INBAND: u16 = 9002;
const JOIN_DOC: &str =
    "apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: grpc://omni.test:8090?jointoken=t0ken\n";

/// ipmitool over the LAN as the site's admin (from the switch namespace).
fn ipmitool(t: &OmniSegment, args: &[&str]) -> String {
    let mut all = vec![
        "ipmitool",
        "-I",
        "lanplus",
        "-H",
        "10.99.0.9",
        "-U",
        "admin",
        "-P",
        "password",
    ];
    all.extend_from_slice(args);
    let (ok, out) = t.lab.exec(&t.lab.switch, &all);
    assert!(ok, "ipmitool {args:?}: {out}");
    out
}

#[test]
fn talos_mode_in_band_bmc_setup_and_wipe_on_a_qemu_machine() {
    let src = qemu::agent_assets();
    let keys = scratch("metalvm-keys");
    keygen(&keys);
    let config = OmniSegment::config(
        &keys,
        "[lifecycle]\nidle_power_off_secs = 0\nmin_power_interval_secs = 1\nagent_timeout_secs = 300\n\
         [bmc]\npoll_interval_secs = 5\nmin_interval_ms = 200\nverify_timeout_secs = 20\n",
    ) + "agent = \"talos\"\n"; // [omni] is the config's last table
    let (lab, appl) = qemu::boot_segment(
        "metalvm",
        &config,
        &[("tftp/undionly.kpxe", "tftp/undionly.kpxe")],
    );
    let mut t = OmniSegment {
        lab,
        appl,
        uuid: UUID.into(),
    };

    // Omni (double) with its join documents; the Image Factory (double) whose "Talos" is the
    // rackboot agent image.
    t.start_double("omni", &keys);
    t.control(
        "PUT",
        "/control/join-config",
        Some(json!({"kernel_args": [], "config": JOIN_DOC, "join_token": "t0ken"})),
    );
    let listener = in_netns(&t.appl.ns, || {
        std::net::TcpListener::bind(("0.0.0.0", SEG_FACTORY)).unwrap()
    });
    let fact = factory::serve(
        listener,
        &format!("http://10.99.0.2:{SEG_FACTORY}"),
        std::fs::read(src.join("agent/vmlinuz")).unwrap(),
        std::fs::read(src.join("agent/initramfs.cpio.gz")).unwrap(),
    );

    // The BMC (LAN on the segment, in-band to the guest) and the machine.
    sh(&[
        "ip",
        "-n",
        &t.lab.switch,
        "addr",
        "add",
        "10.99.0.9/24",
        "dev",
        "br0",
    ]);
    let disk = t.lab.dir.join("vm-disk.img");
    let mut img = vec![0u8; 64 << 20];
    img[..SIG.len()].copy_from_slice(SIG);
    std::fs::write(&disk, img).unwrap();
    let bmc = start_ipmi_sim(
        &mut t.lab,
        "bmc",
        "10.99.0.9",
        623,
        &SimVm {
            mac: MAC,
            uuid: UUID,
            disk: Some(&disk),
            inband_port: Some(INBAND),
            ..SimVm::default()
        },
    );
    let _vm = VmGuard(bmc.clone());
    // The site configured the BMC's LAN address (what the agent reads in-band).
    ipmitool(&t, &["lan", "set", "1", "ipaddr", "10.99.0.9"]);

    // The operator lists the machine — no BMC known — and powers it on for discovery.
    let body = format!(r#"{{"name":"vm1","uuid":"{UUID}","macs":["{MAC}"]}}"#);
    let (code, out) = t.admin("POST", "/api/v1/machines", &body);
    assert_eq!(code, 201, "{out}");
    t.wait(
        "join config at /config",
        Duration::from_secs(60),
        &bmc,
        |t| {
            t.curl(&[&format!("http://10.99.0.2:50042/config?u={UUID}")])
                .1
                == JOIN_DOC
        },
    );
    ipmitool(&t, &["chassis", "bootdev", "pxe"]);
    ipmitool(&t, &["chassis", "power", "on"]);

    // Agent mode → tunnel → the BMC user set up in-band → rackboot uses it over the LAN.
    t.wait(
        "the metal agent's tunnel",
        Duration::from_secs(240),
        &bmc,
        |t| {
            t.events()
                .contains("metal agent connected (reverse tunnel)")
        },
    );
    let requests = fact.seen.lock().unwrap().requests.clone();
    assert!(
        requests.iter().any(|r| r.starts_with("GET /pxe/")),
        "the machine chained to the factory: {requests:?}"
    );
    t.wait("BMC set up in-band", Duration::from_secs(120), &bmc, |t| {
        t.events().contains("BMC user talos-agent set up in-band")
    });
    let m = t.machine();
    assert_eq!(m["bmc"]["username"], "talos-agent", "{m}");
    assert!(
        m["bmc"]["url"]
            .as_str()
            .is_some_and(|u| u.contains("10.99.0.9")),
        "{m}"
    );
    let users = ipmitool(&t, &["user", "list", "1"]);
    assert!(
        users
            .lines()
            .any(|l| l.contains("talos-agent") && l.contains("ADMINISTRATOR")),
        "the BMC has the user: {users}"
    );
    t.wait(
        "rackboot reaches the BMC as talos-agent",
        Duration::from_secs(60),
        &bmc,
        |t| {
            let m = t.machine();
            m["bmc"]["health"]["reachable"] == json!(true)
                && m["bmc"]["username"] == "talos-agent"
                && m["power"] == "on"
        },
    );

    // Omni: the machine joined (SideroLink, done by Talos in real life) and is accepted → wipe
    // through the tunnel → ready, powered off through the BMC with the new user.
    t.control("POST", "/control/machines", Some(json!({"uuid": UUID})));
    t.control("POST", &format!("/control/machines/{UUID}/accept"), None);
    t.wait("ready_to_use", Duration::from_secs(240), &bmc, |t| {
        t.ims("ready_to_use") == json!(true)
    });
    assert!(
        !qemu::signature_at(&disk, SIG, 0),
        "the wipe did not reach the disk"
    );
    assert!(t.events().contains("wipe done (metal agent)"));
    t.wait("powered off", Duration::from_secs(120), &bmc, |t| {
        t.ims("power_state") == json!("POWER_STATE_OFF") && !bmc.join("vm.pid").exists()
    });
    let serial = std::fs::read_to_string(bmc.join("serial.log")).unwrap_or_default();
    assert!(serial.contains("metal tunnel open"), "agent console");
    assert!(
        !t.lab.log("rackboot").contains("pgp::"),
        "key parser debug output in the log"
    );
    let _ = std::fs::remove_dir_all(&keys);
}
