//! Omni mode with `omni.agent = "talos"`, on loopback: agent boots are Talos in agent mode from
//! the Image Factory (a schematic with the metal-agent extension whose kernel args point Talos
//! at rackboot's `/config` and the metal agent at rackboot), and the machine's agent speaks
//! the Talos metal agent's protocol — a reverse grpctunnel answering
//! `management.AgentService` — played here by `rackboot-agent`, which picks that protocol
//! from the `metal.provider.address=` the factory's script puts on its command line. Omni
//! accepts the machine → rackboot sends `WipeDisks` through the tunnel → the disk is wiped →
//! ready_to_use. A tunnel claiming a machine that was never served an agent boot is refused.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::bmc_sim::start_file_ipmi_sim;
use rackboot_e2e::omni::{
    admin_api, control, curl, keygen, p_log, resource, start_double, wait_until, Omni, JOIN_DOC,
    NS, PROVIDER,
};
use rackboot_e2e::{factory, free_port, wait_tcp, workspace_bin, Procs};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

const UUID: &str = "5a3e2b1c-0d4f-4e6a-8b7c-9d0e1f2a3b4c";
const MAC: &str = "52:54:00:aa:00:21";
const OTHER: &str = "6b4f3c2d-1e5a-4f7b-9c8d-0e1f2a3b4c5d";

#[test]
fn talos_agent_mode_boot_and_a_wipe_through_the_metal_agent_tunnel() {
    let mut p = Procs::new("metal");
    let dir = p.dir.clone();
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
        Some(json!({"kernel_args": [], "config": JOIN_DOC, "join_token": "t0ken"})),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let fport = listener.local_addr().unwrap().port();
    let fact = factory::serve(
        listener,
        &format!("http://127.0.0.1:{fport}"),
        b"talos kernel".to_vec(),
        b"talos initramfs".to_vec(),
    );
    let bmc_port = free_port();
    let _bmc = start_file_ipmi_sim(&mut p, "bmc", bmc_port);

    let data = dir.join("data");
    let (admin, boot) = (free_port(), free_port());
    p.spawn(
        "rackboot",
        Command::new(workspace_bin("rackboot"))
            .args(["serve", "--mode", "omni", "--data-dir"])
            .arg(&data)
            .args(["--dhcp-mode", "off", "--tftp-listen", "off"])
            .args(["--boot-http-listen", &format!("127.0.0.1:{boot}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args([
                "--omni-endpoint",
                &format!("http://127.0.0.1:{}", omni.grpc),
            ])
            .args(["--provider-id", PROVIDER, "--omni-key-file"])
            .arg(dir.join("key.b64"))
            .args(["--image-factory-url", &format!("http://127.0.0.1:{fport}")])
            .args([
                "--image-factory-pxe-url",
                &format!("http://127.0.0.1:{fport}"),
            ])
            .args(["--omni-agent", "talos"])
            .env("RACKBOOT_LOG_LEVEL", "debug"),
    );
    let logs = || {
        format!(
            "--- rackboot\n{}\n--- agent\n{}\n--- omni\n{}",
            p_log(&dir, "rackboot"),
            p_log(&dir, "agent"),
            p_log(&dir, "omni-1")
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
    for (uuid, mac) in [(UUID, MAC), (OTHER, "52:54:00:aa:00:22")] {
        let (code, m) = api(
            "POST",
            "/api/v1/machines",
            Some(json!({"uuid": uuid, "macs": [mac],
                        "bmc": {"url": format!("ipmi://127.0.0.1:{bmc_port}"), "username": "admin", "password": "password"}})),
        );
        assert_eq!(code, 201, "{m}");
    }

    // A storm of first agent boots registers the agent-mode schematic once.
    let storm: Vec<_> = (0..8)
        .map(|_| {
            // A machine nobody registered (discovery boots it into agent mode too).
            let url = format!(
                "http://127.0.0.1:{boot}/ipxe/boot.ipxe?uuid=7c5e4d3b-2a1f-4e0d-8c9b-aa0011223344&arch=x86_64"
            );
            std::thread::spawn(move || curl(&[&url]).0)
        })
        .collect();
    for t in storm {
        assert_eq!(t.join().unwrap(), 200);
    }
    let posts = fact.seen.lock().unwrap().schematics.len();
    assert_eq!(
        posts, 1,
        "one factory registration for concurrent first boots"
    );

    // The agent boot: a chain to the factory's agent-mode schematic.
    let (code, script) = curl(&[&format!(
        "http://127.0.0.1:{boot}/ipxe/boot.ipxe?uuid={UUID}&mac={MAC}&arch=x86_64"
    )]);
    assert_eq!(code, 200, "{script}\n{}", logs());
    let chain = script
        .lines()
        .find(|l| l.starts_with("chain "))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("not a chain to the factory:\n{script}"))
        .to_string();
    assert!(
        chain.starts_with(&format!("http://127.0.0.1:{fport}/pxe/"))
            && chain.ends_with("/v1.9.1/metal-amd64"),
        "{chain}"
    );
    let schematic = fact.seen.lock().unwrap().schematics.clone().join("\n");
    for want in [
        "siderolabs/metal-agent",
        &format!("talos.config=http://127.0.0.1:{boot}/config?u=${{uuid}}"),
        &format!("metal.provider.address=127.0.0.1:{boot}"),
        "console=ttyS0",
    ] {
        assert!(schematic.contains(want), "{want} missing: {schematic}");
    }
    // What Talos would run: the factory's kernel line (iPXE would expand ${uuid}).
    let (_, pxe) = curl(&[&chain]);
    let kernel_line = pxe
        .lines()
        .find(|l| l.starts_with("kernel "))
        .unwrap_or_else(|| panic!("{pxe}"));
    let cmdline = kernel_line.replace("${uuid}", UUID);
    std::fs::write(dir.join("cmdline"), format!("{cmdline}\n")).unwrap();
    // Talos reads its config from rackboot's /config: Omni's join documents.
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{boot}/config?u={UUID}")]).1,
        JOIN_DOC
    );

    // 1. An impostor claiming a machine that was never served an agent boot: refused.
    let st = Command::new(workspace_bin("rackboot-agent"))
        .arg("--cmdline")
        .arg(dir.join("cmdline"))
        .args(["--machine", OTHER, "--once", "--dry-run-power"])
        .output()
        .unwrap();
    let out =
        String::from_utf8_lossy(&st.stderr).into_owned() + &String::from_utf8_lossy(&st.stdout);
    assert!(!st.status.success(), "{out}");
    assert!(
        out.contains("PermissionDenied") || out.contains("no agent boot"),
        "{out}"
    );

    // 2. The machine's agent (metal protocol from its command line) connects; Omni accepts the
    // machine; the wipe goes through the tunnel.
    let disk = dir.join("disk.img");
    std::fs::write(&disk, vec![0x5au8; 2 << 20]).unwrap();
    p.spawn(
        "agent",
        Command::new(workspace_bin("rackboot-agent"))
            .arg("--cmdline")
            .arg(dir.join("cmdline"))
            .args(["--machine", UUID, "--dry-run-power", "--disk"])
            .arg(&disk),
    );
    let events = || {
        api(
            "GET",
            &format!("/api/v1/events?machine={UUID}&limit=1000"),
            None,
        )
        .1
        .to_string()
    };
    wait_until("tunnel up", Duration::from_secs(30), &logs, || {
        events().contains("metal agent connected (reverse tunnel)")
    });
    control(
        omni.control,
        "POST",
        "/control/machines",
        Some(json!({"uuid": UUID})),
    );
    control(
        omni.control,
        "POST",
        &format!("/control/machines/{UUID}/accept"),
        None,
    );
    let ims = |field: &str| -> Value {
        resource(omni.control, "InfraMachineStatuses.omni.sidero.dev", UUID)
            .map(|v| v["spec"][field].clone())
            .unwrap_or(Value::Null)
    };
    wait_until("ready_to_use", Duration::from_secs(60), &logs, || {
        ims("ready_to_use") == json!(true)
    });
    assert!(
        std::fs::read(&disk).unwrap()[..1 << 20]
            .iter()
            .all(|b| *b == 0),
        "the metal agent wiped its disk"
    );
    let ev = events();
    assert!(ev.contains("wipe sent to the metal agent (fast)"), "{ev}");
    assert!(ev.contains("wipe done (metal agent)"), "{ev}");
    assert!(
        p_log(&dir, "agent").contains("metal tunnel open"),
        "{}",
        logs()
    );
    let _ = NS;
}
