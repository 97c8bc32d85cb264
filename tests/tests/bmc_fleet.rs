//! The server's fleet power poll (`POST /api/v1/power/poll`, the same pass as the background
//! poll) against three OpenIPMI ipmi_sim BMCs on loopback, plus a machine whose BMC password is
//! wrong and one without a BMC: the reply counts them, every machine's power and BMC health
//! are stored, and a power change made with ipmitool shows after the next poll. Each ipmi_sim's
//! chassis control is a small script keeping the power state in a file (no VM). Needs ipmi_sim
//! and ipmitool (make deps-test); loopback only.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::bmc_sim::start_file_ipmi_sim as start_sim;
use rackboot_e2e::{free_port, wait_tcp, workspace_bin, Procs};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn ipmitool(port: u16, args: &[&str]) -> (bool, String) {
    let o = Command::new("ipmitool")
        .args(["-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-U", "admin", "-P", "password"])
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn curl(port: u16, token: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut c = Command::new("curl");
    c.args(["-s", "-X", method, "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("http://127.0.0.1:{port}{path}"));
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "-d"])
            .arg(b.to_string());
    }
    let o = c.output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
}

fn require_tools() {
    for tool in ["ipmi_sim", "ipmitool", "curl"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| Path::new(&d).join(tool).is_file()))
            .unwrap_or(false);
        assert!(found, "{tool} is not installed: run `make deps-test`");
    }
}

#[test]
fn fleet_poll_reads_every_bmc_and_stores_power_and_health() {
    require_tools();
    let mut p = Procs::new("bmc-fleet");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    for (i, port) in ports.iter().enumerate() {
        start_sim(&mut p, &format!("bmc{i}"), *port);
    }
    for port in &ports {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ipmitool(*port, &["chassis", "power", "status"]).0 {
            assert!(
                Instant::now() < deadline,
                "ipmi_sim on {port} does not answer"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let data = p.dir.join("data");
    let admin = free_port();
    std::fs::write(
        p.dir.join("rackboot.toml"),
        "[bmc]\npoll_interval_secs = 0\nmax_parallel = 2\nmin_interval_ms = 300\n",
    )
    .unwrap();
    p.spawn(
        "rackboot",
        Command::new(workspace_bin("rackboot"))
            .arg("serve")
            .arg("--config")
            .arg(p.dir.join("rackboot.toml"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--dhcp-mode", "off", "--tftp-listen", "off"])
            .args(["--boot-http-listen", "127.0.0.1:0", "--admin-listen"])
            .arg(format!("127.0.0.1:{admin}")),
    );
    assert!(
        wait_tcp(admin, Duration::from_secs(30)),
        "rackboot did not start: {}",
        p.log("rackboot")
    );
    let token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let mut machines = vec![];
    for (i, port) in ports.iter().enumerate() {
        machines.push(json!({"name": format!("m{i}"), "macs": [format!("52:54:00:97:00:0{i}")],
            "bmc": {"url": format!("ipmi://127.0.0.1:{port}"), "username": "admin", "password": "password"}}));
    }
    machines.push(json!({"name": "wrongpw", "macs": ["52:54:00:97:00:10"],
        "bmc": {"url": format!("ipmi://127.0.0.1:{}", ports[0]), "username": "admin", "password": "nope"}}));
    machines.push(json!({"name": "nobmc", "macs": ["52:54:00:97:00:11"]}));
    for m in &machines {
        let r = curl(admin, &token, "POST", "/api/v1/machines", Some(m));
        assert!(r["id"].is_string(), "{r}");
    }

    let r = curl(admin, &token, "POST", "/api/v1/power/poll", None);
    assert_eq!(
        (&r["machines"], &r["ok"], &r["failed"]),
        (&json!(4), &json!(3), &json!(1)),
        "{r}"
    );
    assert!(r["duration_ms"].as_f64().unwrap() > 0.0, "{r}");
    for i in 0..3 {
        let m = curl(
            admin,
            &token,
            "GET",
            &format!("/api/v1/machines/m{i}"),
            None,
        );
        assert_eq!(m["power"], "off", "{m}");
        assert_eq!(m["bmc"]["health"]["reachable"], true, "{m}");
    }
    let m = curl(admin, &token, "GET", "/api/v1/machines/wrongpw", None);
    assert_eq!(m["bmc"]["health"]["reachable"], false, "{m}");
    assert!(
        m["bmc"]["health"]["error"]
            .as_str()
            .unwrap()
            .contains("wrong BMC username or password"),
        "{m}"
    );
    assert_eq!(
        curl(admin, &token, "GET", "/api/v1/machines/nobmc", None)["power"],
        "unknown"
    );

    // A change made behind rackboot's back (ipmitool) shows after the next poll.
    let (ok, out) = ipmitool(ports[1], &["chassis", "power", "on"]);
    assert!(ok, "{out}");
    assert!(ipmitool(ports[1], &["chassis", "power", "status"])
        .1
        .contains("is on"));
    let r = curl(admin, &token, "POST", "/api/v1/power/poll", None);
    assert_eq!(r["ok"], 3, "{r}");
    assert_eq!(
        curl(admin, &token, "GET", "/api/v1/machines/m1", None)["power"],
        "on"
    );
    assert_eq!(
        curl(admin, &token, "GET", "/api/v1/machines/m0", None)["power"],
        "off"
    );
}
