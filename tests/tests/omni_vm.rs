//! The Omni flow on a real machine: a QEMU server (SeaBIOS + iPXE ROM, 64 MiB disk) behind an
//! ipmi_sim BMC on the segment, rackboot in Omni mode in the appliance namespace, the strict
//! Omni double and an Image Factory double next to it. Omni accepts the machine → rackboot
//! PXE-boots it into the agent, which wipes the disk → ready_to_use, powered off; Omni allocates
//! it → rackboot registers the schematic and the machine boots the factory's PXE script (kernel
//! and initramfs from the factory, the schematic's kernel args on its command line) → Omni marks
//! it installed; Omni dies → the machine, reset, still gets its (disk) boot script; Omni comes
//! back empty, then restored → no completed power action repeated; Omni deallocates with a new
//! wipe id → wipe → ready_to_use, off. Needs root; QEMU TCG.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::bmc_sim::{markers, start_ipmi_sim, SimVm, VmGuard};
use rackboot_e2e::omni::{keygen, OmniSegment, NS, PROVIDER, SEG_FACTORY};
use rackboot_e2e::{factory, in_netns, qemu, scratch, sh};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const UUID: &str = "8d6f1f2e-5a4b-4c3d-9e8f-7a6b5c4d3e21";
const MAC: &str = "52:54:00:99:00:81";
const SIG: &[u8] = b"RACKBOOT-OMNI-SIGNATURE";
// Fixed ports: everything below lives in the test's private appliance namespace.
const JOIN_ARG: &str = "siderolink.api=grpc://omni.test:8090?jointoken=t0ken";
const JOIN_DOC: &str =
    "apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: grpc://omni.test:8090?jointoken=t0ken\n";

/// Power changes the BMC was asked for (`set power …` in the chassis log).
fn power_sets(bmc: &Path) -> Vec<String> {
    std::fs::read_to_string(bmc.join("chassis.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" set power "))
        .map(str::to_string)
        .collect()
}

/// `rackboot_boot_http_requests_total{kind="boot",detail="disk"}` from /metrics.
fn disk_boots(t: &OmniSegment) -> u64 {
    t.lab
        .admin_get(&t.appl, "/metrics")
        .lines()
        .filter(|l| l.starts_with("rackboot_boot_http_requests") && l.contains("\"boot\""))
        .filter(|l| l.contains("\"disk\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[test]
fn omni_drives_a_qemu_machine_through_its_whole_life() {
    let src = qemu::agent_assets();
    // The service-account key, as `omnictl infraprovider create rack1` hands it out.
    let keys = scratch("omnivm-keys");
    keygen(&keys);
    let config = OmniSegment::config(
        &keys,
        "[boot]\nagent_cmdline = \"console=ttyS0\"\n\
         [lifecycle]\nidle_power_off_secs = 0\nmin_power_interval_secs = 1\nagent_timeout_secs = 300\n\
         [bmc]\npoll_interval_secs = 5\nmin_interval_ms = 200\nverify_timeout_secs = 20\n",
    );
    let (lab, appl) = qemu::boot_segment(
        "omnivm",
        &config,
        &[
            ("tftp/undionly.kpxe", "tftp/undionly.kpxe"),
            ("agent/vmlinuz", "agent/vmlinuz"),
            ("agent/initramfs.cpio.gz", "agent/initramfs.cpio.gz"),
        ],
    );
    let mut t = OmniSegment {
        lab,
        appl,
        uuid: UUID.into(),
    };
    t.start_double("omni-1", &keys);
    t.control(
        "PUT",
        "/control/join-config",
        Some(json!({"kernel_args": [JOIN_ARG], "config": JOIN_DOC, "join_token": "t0ken"})),
    );
    // The Image Factory: the "Talos" it serves is the marker kernel + initramfs.
    // One listener on every address of the appliance namespace: rackboot registers schematics
    // over loopback, machines fetch from 10.99.0.2.
    let listener = in_netns(&t.appl.ns, || {
        std::net::TcpListener::bind(("0.0.0.0", SEG_FACTORY)).unwrap()
    });
    let kernel = std::fs::read(src.join("vmlinuz")).unwrap();
    let initramfs = std::fs::read(src.join("marker-initrd.gz")).unwrap();
    let public = format!("http://10.99.0.2:{SEG_FACTORY}");
    let fact = factory::serve(listener, &public, kernel, initramfs);

    // The BMC on the segment, driving the VM.
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
    let size: u64 = 64 * 1024 * 1024;
    let mut img = vec![0u8; size as usize];
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
            ..SimVm::default()
        },
    );
    let _vm = VmGuard(bmc.clone());

    // 1. Connected: provider status + heartbeat; the machine joins Omni (Omni's side of a
    // SideroLink join) and gets its BMC from Omni's BMCConfig.
    t.wait("provider status", Duration::from_secs(60), &bmc, |t| {
        t.resource(NS, "InfraProviderStatuses.omni.sidero.dev", PROVIDER)
            .is_some()
            && t.resource(
                "infra-provider-ephemeral",
                "InfraProviderHealthStatuses.omni.sidero.dev",
                PROVIDER,
            )
            .is_some()
    });
    // The operator lists the rack's machine (no BMC: Omni's BMCConfig brings it).
    let body = format!(r#"{{"name":"vm1","uuid":"{UUID}","macs":["{MAC}"]}}"#);
    let (code, out) = t.admin("POST", "/api/v1/machines", &body);
    assert_eq!(code, 201, "{out}");
    t.control("POST", "/control/machines", Some(json!({"uuid": UUID})));
    t.control(
        "PUT",
        &format!("/control/bmc-configs/{UUID}"),
        Some(json!({"ipmi": {"address": "10.99.0.9", "port": 623, "username": "admin", "password": "password"}})),
    );
    t.wait("finalizer + status", Duration::from_secs(60), &bmc, |t| {
        t.resource(NS, "InfraMachines.omni.sidero.dev", UUID)
            .is_some_and(|v| v.to_string().contains("rackboot.infraprovider.sidero.dev"))
            && !t.ims("power_state").is_null()
    });
    t.wait(
        "the BMC from Omni's BMCConfig",
        Duration::from_secs(60),
        &bmc,
        |t| {
            t.machine()["bmc"]["url"]
                .as_str()
                .is_some_and(|u| u.contains("10.99.0.9"))
        },
    );
    assert!(
        power_sets(&bmc).is_empty(),
        "a pending machine is not powered: {:?}",
        power_sets(&bmc)
    );

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

    // 2. Accept → agent boot through PXE-once + power on → disk wiped → ready_to_use, off.
    t.control("POST", &format!("/control/machines/{UUID}/accept"), None);
    t.wait("ready_to_use", Duration::from_secs(420), &bmc, |t| {
        t.ims("ready_to_use") == json!(true)
    });
    assert!(
        !qemu::signature_at(&disk, SIG, 0),
        "the agent did not wipe the disk\n{}",
        t.report(&bmc)
    );
    let im = t
        .resource(NS, "InfraMachines.omni.sidero.dev", UUID)
        .unwrap();
    assert_eq!(
        t.ims("wiped_node_unique_token"),
        im["spec"]["node_unique_token"]
    );
    let serial = std::fs::read_to_string(bmc.join("serial.log")).unwrap_or_default();
    let agent_line = serial
        .lines()
        .find(|l| l.contains("RACKBOOT-AGENT: cmdline:"))
        .unwrap_or_else(|| panic!("the agent never ran: {serial}"));
    assert!(
        agent_line.contains(JOIN_ARG) && agent_line.contains("rackboot.token="),
        "agent boot without the join args or its token: {agent_line}"
    );
    t.wait("parked off", Duration::from_secs(90), &bmc, |t| {
        t.ims("power_state") == json!("POWER_STATE_OFF") && !bmc.join("vm.pid").exists()
    });

    // 3. Allocate (Talos v1.9.0 + an extension; the cluster's extra kernel args) → the
    // schematic is registered → the machine PXE-boots the factory's script for it.
    t.control(
        "POST",
        &format!("/control/machines/{UUID}/extra-kernel-args"),
        Some(json!({"args": "rackboot.hold"})),
    );
    let before = markers(&bmc);
    t.control(
        "POST",
        &format!("/control/machines/{UUID}/allocate"),
        Some(json!({"talos_version": "v1.9.0", "extensions": ["siderolabs/iscsi-tools"]})),
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while markers(&bmc) <= before {
        assert!(
            Instant::now() < deadline,
            "Talos (the marker) never booted: {}\n{}",
            std::fs::read_to_string(bmc.join("serial.log")).unwrap_or_default(),
            t.events()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let serial = std::fs::read_to_string(bmc.join("serial.log")).unwrap();
    let cmdline = serial
        .lines()
        .rev()
        .find(|l| l.contains("RACKBOOT-CMDLINE:"))
        .unwrap_or("")
        .to_string();
    for arg in ["talos.platform=metal", JOIN_ARG, "rackboot.hold"] {
        assert!(
            cmdline.contains(arg),
            "{arg} missing on the Talos command line: {cmdline}"
        );
    }
    let bodies = fact.seen.lock().unwrap().schematics.clone();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("siderolabs/iscsi-tools") && b.contains("rackboot.hold")),
        "{bodies:?}"
    );
    let fetched = fact.seen.lock().unwrap().requests.clone();
    assert!(
        fetched
            .iter()
            .any(|r| r.starts_with("GET /pxe/") && r.contains("/v1.9.0/metal-amd64")),
        "the machine chained to the factory's PXE URL: {fetched:?}"
    );
    assert!(
        fetched
            .iter()
            .any(|r| r.starts_with("GET /image/") && r.contains("/kernel-amd64")),
        "the machine loaded the factory's kernel: {fetched:?}"
    );
    t.wait("provisioned", Duration::from_secs(60), &bmc, |t| {
        t.machine()["state"] == "provisioned"
    });
    t.control("POST", &format!("/control/machines/{UUID}/installed"), None);
    t.wait("installed", Duration::from_secs(60), &bmc, |t| {
        t.ims("installed") == json!(true)
    });

    // 4. Omni dies. The machine is reset at the console: it still gets a boot script (from
    // disk, it is installed) from the appliance's own store.
    std::thread::sleep(Duration::from_secs(8));
    let sets = power_sets(&bmc);
    t.lab.stop("omni-1", Duration::from_secs(5));
    let disk_before = disk_boots(&t);
    let (ok, out) = t.lab.exec(
        &t.lab.switch,
        &[
            "ipmitool",
            "-I",
            "lanplus",
            "-H",
            "10.99.0.9",
            "-U",
            "admin",
            "-P",
            "password",
            "chassis",
            "power",
            "reset",
        ],
    );
    assert!(ok, "ipmitool reset: {out}");
    t.wait(
        "a disk boot script while Omni is down",
        Duration::from_secs(180),
        &bmc,
        |t| disk_boots(t) > disk_before,
    );

    // 5. Omni comes back empty, then its state is restored: status written again, nothing
    // repeated.
    t.start_double("omni-2", &keys);
    t.wait(
        "provider status again",
        Duration::from_secs(90),
        &bmc,
        |t| {
            t.resource(NS, "InfraProviderStatuses.omni.sidero.dev", PROVIDER)
                .is_some()
        },
    );
    t.control("POST", "/control/restore", None);
    t.wait("status after restore", Duration::from_secs(90), &bmc, |t| {
        let s = t.status();
        s["installed"] == json!(true) && s["ready_to_use"] == json!(true)
    });
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        power_sets(&bmc),
        sets,
        "a completed power action was repeated after Omni came back"
    );
    assert_eq!(t.machine()["state"], "provisioned");

    // 6. Deallocate (new wipe id) → released, booted into the agent, wiped → ready, off.
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        std::io::Write::write_all(&mut f, SIG).unwrap();
    }
    let im = t.control(
        "POST",
        &format!("/control/machines/{UUID}/deallocate"),
        None,
    );
    let token = im["spec"]["node_unique_token"].clone();
    t.wait("wiped again", Duration::from_secs(420), &bmc, |t| {
        let s = t.status();
        s["ready_to_use"] == json!(true)
            && s["installed"] == json!(false)
            && s["wiped_node_unique_token"] == token
    });
    assert!(
        !qemu::signature_at(&disk, SIG, 0),
        "deallocation must wipe\n{}",
        t.report(&bmc)
    );
    t.wait("off again", Duration::from_secs(90), &bmc, |t| {
        t.ims("power_state") == json!("POWER_STATE_OFF") && !bmc.join("vm.pid").exists()
    });

    // Nothing secret in what rackboot logged or answers.
    let text = t.lab.log("rackboot") + &t.machine().to_string();
    let key = std::fs::read_to_string(keys.join("key.b64")).unwrap();
    assert!(!text.contains(&key.trim()[..40]), "Omni key leaked");
    assert!(!text.contains("\"password\""), "BMC password leaked");
    assert!(
        !text.contains("pgp::"),
        "the key parser's debug output (secret key packets) reached the log"
    );
    let _ = std::fs::remove_dir_all(&keys);
}
