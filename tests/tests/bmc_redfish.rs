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

/// The server path: a machine registered with a Redfish BMC, powered through the admin API and
/// `rackboot power`, each action an event, the state polled.
#[test]
fn server_powers_a_registered_machine_through_its_bmc() {
    let mut p = Procs::new("redfish-server");
    let port = sushy(&mut p);
    let data = p.dir.join("data");
    let admin = free_port();
    let server = format!("http://127.0.0.1:{admin}");
    p.spawn(
        "rackboot",
        Command::new(rackboot_e2e::workspace_bin("rackboot"))
            .args([
                "serve",
                "--dhcp-mode",
                "off",
                "--tftp-listen",
                "off",
                "--boot-http-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(&data)
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .env("RACKBOOT_LOG_LEVEL", "debug"),
    );
    assert!(
        wait_tcp(admin, Duration::from_secs(30)),
        "{}",
        p.log("rackboot")
    );
    let pw = p.dir.join("bmc-pw");
    std::fs::write(&pw, "password\n").unwrap();
    let d = data.to_str().unwrap();
    let cli = |args: &[&str]| {
        let mut full = args.to_vec();
        full.extend_from_slice(&["--server", &server, "--data-dir", d]);
        rackboot_cli(&full)
    };
    let bmc_url = format!("redfish+http://127.0.0.1:{port}");
    let (code, _, err) = cli(&[
        "machines",
        "add",
        "--name",
        "rf1",
        "--mac",
        "52:54:00:99:00:10",
        "--bmc-url",
        &bmc_url,
        "--bmc-user",
        "admin",
        "--bmc-password-file",
        pw.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(&["power", "status", "rf1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("power is off"), "{out}");
    let (code, out, err) = cli(&["power", "on", "rf1", "--pxe", "--efi"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("power is on"), "{out}");
    assert_eq!(system(port)["Boot"]["BootSourceOverrideTarget"], "Pxe");
    let (code, out, _) = cli(&["machines", "show", "rf1", "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["power"], "on");
    assert_eq!(v["bmc"]["health"]["reachable"], true, "{v}");
    let (code, out, err) = cli(&["power", "off", "rf1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("power is off"), "{out}");
    // A machine without a BMC: refused with the reason.
    cli(&[
        "machines",
        "add",
        "--name",
        "nobmc",
        "--mac",
        "52:54:00:99:00:11",
    ]);
    let (code, _, err) = cli(&["power", "on", "nobmc"]);
    assert_eq!(code, 1);
    assert!(err.contains("no BMC"), "{err}");
    let events = Command::new("curl")
        .args([
            "-s",
            &format!("{server}/api/v1/events?machine=m-525400990010"),
        ])
        .output()
        .unwrap();
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(
        events.contains("power on: done")
            && events.contains("next boot: PXE (UEFI)")
            && events.contains("power off: done"),
        "{events}"
    );
    assert!(!p.log("rackboot").contains("password\n"));
}
