//! rackboot as a static infrastructure provider against the strict Omni test double
//! (`omni-double`, a separate process speaking signed COSI over gRPC), on loopback: a machine
//! with an ipmi_sim BMC (chassis state in a file) and a real `rackboot-agent` wiping a scratch
//! file. Omni joins, accepts, allocates (Talos install via a chain to an Image Factory double),
//! marks installed, requests a reboot; the double is killed, restarted empty, restored — the
//! provider resynchronises without repeating a completed power action; while Omni is down the
//! machine still gets its boot script; deallocation with a new wipe id wipes it again.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::bmc_sim::start_file_ipmi_sim;
use rackboot_e2e::omni::{
    admin_api, control, curl, keygen, p_log, resource, start_double, wait_until, Omni, JOIN_ARG,
    JOIN_DOC, PROVIDER,
};
use rackboot_e2e::{factory, free_port, wait_tcp, workspace_bin, Procs};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const UUID: &str = "4c4c4544-0042-3510-8052-b4c04f4e3232";
const MAC: &str = "52:54:00:aa:00:01";
fn actions(bmc: &Path) -> Vec<String> {
    std::fs::read_to_string(bmc.join("actions"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn omni_drives_the_machine_and_survives_an_omni_restart() {
    for tool in ["ipmi_sim", "curl", "gpg"] {
        assert!(
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {tool} >/dev/null"))
                .status()
                .unwrap()
                .success(),
            "{tool} missing: run make deps-test"
        );
    }
    let mut p = Procs::new("omni");
    let dir = p.dir.clone();

    // Omni double; it starts with the InfraProvider an admin created (`omnictl infraprovider
    // create rack1`).
    keygen(&dir);
    let omni = Omni {
        grpc: free_port(),
        control: free_port(),
    };
    start_double(&mut p, "omni-1", &omni, false);
    control(
        omni.control,
        "PUT",
        "/control/join-config",
        Some(json!({"kernel_args": [JOIN_ARG], "config": JOIN_DOC, "join_token": "t0ken"})),
    );

    let bmc_port = free_port();
    let bmc = start_file_ipmi_sim(&mut p, "bmc", bmc_port);
    // The Image Factory; its "Talos" images are made-up bytes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let factory_port = listener.local_addr().unwrap().port();
    let talos_kernel: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let talos_initramfs: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    let fact = factory::serve(
        listener,
        &format!("http://127.0.0.1:{factory_port}"),
        talos_kernel.clone(),
        talos_initramfs.clone(),
    );

    // rackboot in Omni mode.
    let data = dir.join("data");
    let admin = free_port();
    let boot = free_port();
    p.spawn(
        "rackboot",
        Command::new(workspace_bin("rackboot"))
            .args(["serve", "--mode", "omni", "--data-dir"])
            .arg(&data)
            .args(["--dhcp-mode", "off", "--tftp-listen", "off"])
            .args([
                "--boot-http-listen",
                &format!("127.0.0.1:{boot}"),
                "--admin-listen",
                &format!("127.0.0.1:{admin}"),
            ])
            .args([
                "--omni-endpoint",
                &format!("http://127.0.0.1:{}", omni.grpc),
                "--provider-id",
                PROVIDER,
            ])
            .arg("--omni-key-file")
            .arg(dir.join("key.b64"))
            .args([
                "--image-factory-url",
                &format!("http://127.0.0.1:{factory_port}"),
            ])
            .args([
                "--image-factory-pxe-url",
                &format!("http://127.0.0.1:{factory_port}"),
                "--omni-install-boot",
                "cache",
            ])
            .env("RACKBOOT_LOG_LEVEL", "info,rackboot_server=debug"),
    );
    let logs = || {
        format!(
            "--- rackboot\n{}\n--- omni\n{}{}",
            p_log(&dir, "rackboot"),
            p_log(&dir, "omni-1"),
            p_log(&dir, "omni-2")
        )
    };
    assert!(wait_tcp(admin, Duration::from_secs(30)), "{}", logs());
    let token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let api = |method: &str, path: &str, body: Option<Value>| {
        admin_api(admin, &token, method, path, body)
    };
    let (code, m) = api(
        "POST",
        "/api/v1/machines",
        Some(json!({"name": "m1", "uuid": UUID, "macs": [MAC],
                    "bmc": {"url": format!("ipmi://127.0.0.1:{bmc_port}"), "username": "admin", "password": "password"}})),
    );
    assert_eq!(code, 201, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    let state = || {
        api("GET", &format!("/api/v1/machines/{id}"), None).1["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    // 1. Provider status (static label) and heartbeat; join config served and on agent boots.
    wait_until(
        "provider status and heartbeat",
        Duration::from_secs(30),
        &logs,
        || {
            resource(omni.control, "InfraProviderStatuses.omni.sidero.dev", PROVIDER).is_some()
            && curl(&[&format!("http://127.0.0.1:{}/control/resources/infra-provider-ephemeral/InfraProviderHealthStatuses.omni.sidero.dev/{PROVIDER}", omni.control)]).0 == 200
        },
    );
    let status = resource(
        omni.control,
        "InfraProviderStatuses.omni.sidero.dev",
        PROVIDER,
    )
    .unwrap();
    assert!(
        status.to_string().contains("is-static-infra-provider"),
        "{status}"
    );
    wait_until(
        "join config at /config",
        Duration::from_secs(40),
        &logs,
        || curl(&[&format!("http://127.0.0.1:{boot}/config?u={UUID}")]).1 == JOIN_DOC,
    );
    let (_, script) = curl(&[&format!(
        "http://127.0.0.1:{boot}/ipxe/boot.ipxe?uuid={UUID}&mac={MAC}"
    )]);
    assert!(
        script.contains(JOIN_ARG),
        "agent boot without the join args:\n{script}"
    );
    let (_, link) = api("GET", "/api/v1/omni", None);
    assert_eq!(link["connected"], json!(true), "{link}");
    assert_eq!(link["provider_id"], json!(PROVIDER));
    let (_, metrics) = curl(&[&format!("http://127.0.0.1:{admin}/metrics")]);
    assert!(
        metrics.contains("rackboot_omni_heartbeat_age_seconds"),
        "{metrics}"
    );

    // 2. The machine joins Omni; the provider puts its finalizer and a status on it.
    control(
        omni.control,
        "POST",
        "/control/machines",
        Some(json!({"uuid": UUID})),
    );
    wait_until(
        "finalizer + InfraMachineStatus",
        Duration::from_secs(30),
        &logs,
        || {
            let im = resource(omni.control, "InfraMachines.omni.sidero.dev", UUID);
            im.is_some_and(|v| v.to_string().contains("rackboot.infraprovider.sidero.dev"))
                && resource(omni.control, "InfraMachineStatuses.omni.sidero.dev", UUID).is_some()
        },
    );
    assert_eq!(
        state(),
        "discovered",
        "pending: nothing happens (the boot.ipxe fetch above made it discovered)"
    );

    // 3. Accept → wipe (PXE-once + power on through the BMC, the agent wipes) → ready_to_use.
    control(
        omni.control,
        "POST",
        &format!("/control/machines/{UUID}/accept"),
        None,
    );
    wait_until("wiping", Duration::from_secs(30), &logs, || {
        state() == "wiping"
    });
    wait_until(
        "power on through the BMC",
        Duration::from_secs(30),
        &logs,
        || !actions(&bmc).is_empty(),
    );
    let disk = dir.join("agent-disk.img");
    std::fs::write(&disk, vec![0xa5u8; 1 << 20]).unwrap();
    // The agent gets the command line its boot script gave it (with the per-boot token).
    let (_, script) = curl(&[&format!(
        "http://127.0.0.1:{boot}/ipxe/boot.ipxe?uuid={UUID}&mac={MAC}"
    )]);
    let kernel_line = script
        .lines()
        .find(|l| l.starts_with("kernel "))
        .unwrap_or_else(|| panic!("agent boot script without a kernel line:\n{script}"));
    assert!(kernel_line.contains(JOIN_ARG), "{kernel_line}");
    std::fs::write(dir.join("agent-cmdline"), format!("{kernel_line}\n")).unwrap();
    p.spawn(
        "agent",
        Command::new(workspace_bin("rackboot-agent"))
            .arg("--appliance")
            .arg(format!("127.0.0.1:{boot}"))
            .args([
                "--machine",
                &id,
                "--dry-run-power",
                "--heartbeat",
                "1",
                "--cmdline",
            ])
            .arg(dir.join("agent-cmdline"))
            .arg("--disk")
            .arg(&disk),
    );
    // One read per check: fields read one request apart can mix two versions of the status.
    let status = || -> Value {
        resource(omni.control, "InfraMachineStatuses.omni.sidero.dev", UUID)
            .map(|v| v["spec"].clone())
            .unwrap_or(Value::Null)
    };
    let ims = |field: &str| -> Value { status()[field].clone() };
    wait_until("ready_to_use", Duration::from_secs(60), &logs, || {
        ims("ready_to_use") == json!(true)
    });
    let im = resource(omni.control, "InfraMachines.omni.sidero.dev", UUID).unwrap();
    assert_eq!(
        ims("wiped_node_unique_token"),
        im["spec"]["node_unique_token"],
        "{im}"
    );
    assert!(
        std::fs::read(&disk).unwrap().iter().all(|b| *b == 0),
        "the agent wiped its disk"
    );

    // 4. Allocate → schematic registered with the Image Factory → install boot.
    control(
        omni.control,
        "POST",
        &format!("/control/machines/{UUID}/allocate"),
        Some(json!({"talos_version": "v1.9.0", "extensions": ["siderolabs/iscsi-tools"]})),
    );
    wait_until("provisioning", Duration::from_secs(30), &logs, || {
        state() == "provisioning"
    });
    let bodies = fact.seen.lock().unwrap().schematics.clone();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("siderolabs/iscsi-tools") && b.contains(JOIN_ARG)),
        "{bodies:?}"
    );
    // Cached install boot: the factory's kernel and initramfs come from the appliance, with
    // the factory's kernel arguments (the schematic's join args among them).
    let (code, script) = curl(&[&format!(
        "http://127.0.0.1:{boot}/ipxe/boot.ipxe?uuid={UUID}&mac={MAC}"
    )]);
    assert_eq!(code, 200);
    let kernel_line = script
        .lines()
        .find(|l| l.starts_with("kernel "))
        .unwrap_or_else(|| panic!("install boot without a kernel line:\n{script}"));
    assert!(
        kernel_line.contains("talos.platform=metal") && kernel_line.contains(JOIN_ARG),
        "{kernel_line}"
    );
    let urls: Vec<String> = script
        .lines()
        .filter(|l| l.starts_with("kernel ") || l.starts_with("initrd "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .collect();
    assert_eq!(urls.len(), 2, "{script}");
    for (url, want) in urls.iter().zip([&talos_kernel, &talos_initramfs]) {
        assert!(
            url.starts_with(&format!("http://127.0.0.1:{boot}/cache/")),
            "not served from the appliance's cache: {url}"
        );
        for _ in 0..2 {
            let got = Command::new("curl")
                .args(["-sf", "-m", "30", url.as_str()])
                .output()
                .unwrap();
            assert!(got.status.success(), "GET {url}");
            assert!(&got.stdout == want, "{url}: not the factory's bytes");
        }
    }
    let fetched = fact.seen.lock().unwrap().requests.clone();
    let kernel_gets = fetched
        .iter()
        .filter(|r| r.starts_with("GET /image/") && r.contains("kernel-amd64"))
        .count();
    assert_eq!(
        kernel_gets, 1,
        "the factory's kernel is fetched once: {fetched:?}"
    );
    wait_until(
        "provisioned after the install boot",
        Duration::from_secs(20),
        &logs,
        || state() == "provisioned",
    );
    control(
        omni.control,
        "POST",
        &format!("/control/machines/{UUID}/installed"),
        None,
    );
    wait_until("installed", Duration::from_secs(30), &logs, || {
        ims("installed") == json!(true)
    });

    // 5. A reboot request: exactly one power action, reported.
    let before = actions(&bmc).len();
    let im = control(
        omni.control,
        "POST",
        &format!("/control/machines/{UUID}/reboot"),
        None,
    );
    let reboot_id = im["spec"]["requested_reboot_id"].clone();
    assert!(reboot_id.as_str().is_some_and(|s| !s.is_empty()), "{im}");
    wait_until("last_reboot_id", Duration::from_secs(30), &logs, || {
        ims("last_reboot_id") == reboot_id
    });
    // A power cycle shows as off then on in the chassis log; let it finish.
    let mut after_reboot = actions(&bmc).len();
    loop {
        std::thread::sleep(Duration::from_secs(3));
        let n = actions(&bmc).len();
        if n == after_reboot {
            break;
        }
        after_reboot = n;
    }
    assert!(
        after_reboot > before,
        "the reboot reached the BMC: {:?}",
        actions(&bmc)
    );

    // 6. Omni dies: boot scripts still come from the local store.
    p.stop_named("omni-1");
    let (code, script) = curl(&[&format!(
        "http://127.0.0.1:{boot}/ipxe/boot.ipxe?uuid={UUID}&mac={MAC}"
    )]);
    assert_eq!(code, 200, "{script}");
    assert!(
        script.contains("exit") || script.contains("sanboot"),
        "disk boot while Omni is down:\n{script}"
    );

    // 7. Omni comes back empty, then its state is restored: the provider re-creates its status,
    // re-reads everything, and repeats no completed power action.
    start_double(&mut p, "omni-2", &omni, false);
    wait_until(
        "provider status written again",
        Duration::from_secs(60),
        &logs,
        || {
            resource(
                omni.control,
                "InfraProviderStatuses.omni.sidero.dev",
                PROVIDER,
            )
            .is_some()
        },
    );
    control(omni.control, "POST", "/control/restore", None);
    wait_until(
        "machine status after restore",
        Duration::from_secs(60),
        &logs,
        || {
            let s = status();
            s["installed"] == json!(true) && s["last_reboot_id"] == reboot_id
        },
    );
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        actions(&bmc).len(),
        after_reboot,
        "a completed power action was repeated: {:?}",
        actions(&bmc)
    );
    assert_eq!(state(), "provisioned");

    // 8. Deallocate with a new wipe id: release → wipe → ready again, not installed.
    let im = control(
        omni.control,
        "POST",
        &format!("/control/machines/{UUID}/deallocate"),
        None,
    );
    let token = im["spec"]["node_unique_token"].clone();
    wait_until("released and wiped", Duration::from_secs(90), &logs, || {
        let s = status();
        s["ready_to_use"] == json!(true) && s["installed"] == json!(false) && state() == "available"
    });
    assert_eq!(ims("wiped_node_unique_token"), token);

    // 9. Omni removes the machine: the provider lets go (its status and finalizer).
    let first = control(
        omni.control,
        "POST",
        &format!("/control/machines/{UUID}/teardown"),
        None,
    );
    assert_eq!(
        first["destroy_ready"],
        json!(false),
        "our finalizer must hold the teardown"
    );
    wait_until("finalizer released", Duration::from_secs(30), &logs, || {
        control(
            omni.control,
            "POST",
            &format!("/control/machines/{UUID}/teardown"),
            None,
        )["destroy_ready"]
            == json!(true)
    });
    assert!(resource(omni.control, "InfraMachineStatuses.omni.sidero.dev", UUID).is_none());

    let (_, m) = api("GET", &format!("/api/v1/machines/{id}"), None);
    let text = m.to_string() + &p_log(&dir, "rackboot");
    assert!(!text.contains("password\""), "BMC password leaked");
    assert!(
        !text.contains(&std::fs::read_to_string(dir.join("key.b64")).unwrap()[..40]),
        "Omni key leaked"
    );
}
