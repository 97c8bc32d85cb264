//! `rackboot bmc` against a real Redfish implementation: sushy-emulator (OpenStack sushy-tools)
//! with its fake driver, whose power changes land after a random 1–11 s delay (so the
//! verify-after-power step is exercised for real). Loopback only.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::{free_port, rackboot_cli, venv_tool, wait_tcp, Procs};
use std::process::Command;
use std::time::Duration;

const SYSTEM: &str = "27946b59-9e44-4fa7-8e91-f3527a1ef094";

fn sushy(p: &mut Procs) -> u16 {
    let port = free_port();
    let conf = p.dir.join("emulator.conf");
    let state = p.dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        &conf,
        format!(
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {port}\nSUSHY_EMULATOR_FAKE_DRIVER = True\n\
             SUSHY_EMULATOR_STATE_DIR = '{}'\nSUSHY_EMULATOR_FAKE_SYSTEMS = [{{'uuid': '{SYSTEM}', 'name': 'lab-vm', \
             'power_state': 'Off', 'nics': [{{'mac': '52:54:00:99:00:10', 'ip': '10.99.0.115'}}]}}]\n",
            state.display()
        ),
    )
    .unwrap();
    p.spawn(
        "sushy",
        Command::new(venv_tool("sushy-emulator"))
            .arg("--config")
            .arg(&conf),
    );
    assert!(
        wait_tcp(port, Duration::from_secs(30)),
        "sushy-emulator did not start: {}",
        p.log("sushy")
    );
    port
}

fn system(port: u16) -> serde_json::Value {
    let out = Command::new("curl")
        .args([
            "-sf",
            &format!("http://127.0.0.1:{port}/redfish/v1/Systems/{SYSTEM}"),
        ])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn power_and_pxe_once_through_sushy_emulator() {
    let mut p = Procs::new("redfish");
    let port = sushy(&mut p);
    let url = format!("redfish+http://admin:password@127.0.0.1:{port}");
    let bmc = |args: &[&str]| {
        let mut full = vec!["bmc", "--url", &url, "--verify-timeout", "40"];
        full.extend_from_slice(args);
        rackboot_cli(&full)
    };
    let (code, out, err) = bmc(&["power", "status"]);
    assert_eq!((code, out.trim()), (0, "power: off"), "{err}");

    let (code, out, err) = bmc(&["bootdev", "pxe", "--efi"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pxe (UEFI)"), "{out}");
    let sys = system(port);
    assert_eq!(sys["Boot"]["BootSourceOverrideTarget"], "Pxe");
    assert_eq!(sys["Boot"]["BootSourceOverrideMode"], "UEFI");

    // The fake driver applies the change 1–11 s later: rackboot waits and verifies.
    let (code, out, err) = bmc(&["power", "on"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("power is on"), "{out}");
    assert_eq!(system(port)["PowerState"], "On");

    let (code, out, err) = bmc(&["power", "reset"]);
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = bmc(&["power", "off"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("power is off"), "{out}");

    // Unreachable BMC and unsupported scheme fail cleanly with a message.
    let dead = format!("redfish+http://127.0.0.1:{}", free_port());
    let (code, _, err) = rackboot_cli(&["bmc", "--url", &dead, "power", "status"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the BMC"), "{err}");
    let (code, _, err) = rackboot_cli(&["bmc", "--url", "telnet://x", "power", "status"]);
    assert_eq!(code, 1);
    assert!(err.contains("scheme"), "{err}");
}
