//! SIGKILL during lifecycle actions, on loopback with real peers: rackboot drives a machine whose
//! BMC is an ipmi_sim with a file-backed chassis (every power change appended to
//! `<bmc>/actions`) and whose "firmware" is a small double in this test: when the chassis powers
//! on it waits a moment (POST), fetches `boot.ipxe` from rackboot like iPXE (retrying while
//! rackboot is down) and, for an agent boot, starts a real `rackboot-agent` with the kernel
//! command line it was served (per-boot token included) and a scratch file as its disk; power
//! off kills the agent.
//!
//! The machine goes accept → wipe → available (idle power-off) → provision → provisioned →
//! release → wipe → available, and rackboot is killed with SIGKILL right after the power-on of
//! the accept, right after the agent's hardware report, right after the idle power-off, right
//! after the provisioning power-on and right after the release's power cycle — each time started
//! again on the same data dir. The flow completes; the chassis saw exactly the power actions the
//! lifecycle needs (none repeated); every event the API returned before a kill is still there
//! after it.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::bmc_sim::start_file_ipmi_sim;
use rackboot_e2e::{free_port, wait_tcp, workspace_bin, Procs};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const UUID: &str = "11111111-2222-3333-4444-5555555555a9";
const MAC: &str = "52:54:00:99:00:a9";

/// rackboot on fixed loopback ports (the agent and the firmware double find it again after a
/// restart), killed with SIGKILL on demand and on drop.
struct Rackboot {
    child: Option<Child>,
    dir: PathBuf,
    admin: u16,
    boot: u16,
    starts: usize,
}

impl Rackboot {
    fn new(dir: &Path) -> Rackboot {
        let assets = dir.join("assets");
        std::fs::create_dir_all(assets.join("tftp")).unwrap();
        std::fs::create_dir_all(assets.join("agent")).unwrap();
        std::fs::write(assets.join("agent/vmlinuz"), b"kernel").unwrap();
        std::fs::write(
            dir.join("rackboot.toml"),
            "[lifecycle]\nidle_power_off_secs = 3\nmin_power_interval_secs = 1\n\
             agent_timeout_secs = 600\n[bmc]\npoll_interval_secs = 2\nmin_interval_ms = 100\n",
        )
        .unwrap();
        let mut rb = Rackboot {
            child: None,
            dir: dir.to_path_buf(),
            admin: free_port(),
            boot: free_port(),
            starts: 0,
        };
        rb.start();
        rb
    }

    fn start(&mut self) {
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.join(format!("rackboot-{}.log", self.starts))).unwrap();
        let child = Command::new(workspace_bin("rackboot"))
            .arg("serve")
            .arg("--config")
            .arg(self.dir.join("rackboot.toml"))
            .args(["--dhcp-mode", "off", "--tftp-listen", "off"])
            .args([
                "--log-level",
                "info,rackboot_server=debug,rackboot_bmc=debug",
            ])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--assets-dir")
            .arg(self.dir.join("assets"))
            .args(["--admin-listen", &format!("127.0.0.1:{}", self.admin)])
            .args(["--boot-http-listen", &format!("127.0.0.1:{}", self.boot)])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        assert!(
            wait_tcp(self.admin, Duration::from_secs(30)),
            "rackboot did not start"
        );
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn api(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let token = std::fs::read_to_string(self.dir.join("data/admin-token")).unwrap();
        let url = format!("http://127.0.0.1:{}{path}", self.admin);
        let bearer = format!("Authorization: Bearer {}", token.trim());
        let mut args = vec!["-s", "-m", "30", "-w", "\n%{http_code}", "-X", method];
        args.extend(["-H", &bearer]);
        if !body.is_empty() {
            args.extend(["-H", "Content-Type: application/json", "-d", body]);
        }
        args.push(&url);
        let out = Command::new("curl").args(&args).output().unwrap();
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn machine(&self) -> Value {
        let (status, body) = self.api("GET", &format!("/api/v1/machines/{UUID}"), "");
        if status != 200 {
            return Value::Null;
        }
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// (seq, kind, message) of every event of the machine, as the API returns them now.
    fn events(&self, id: &str) -> Vec<(u64, String, String)> {
        let (status, body) = self.api(
            "GET",
            &format!("/api/v1/events?machine={id}&limit=1000"),
            "",
        );
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["seq"].as_u64().unwrap(),
                    e["kind"].as_str().unwrap_or_default().to_string(),
                    e["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Rackboot {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The power changes the chassis applied, in order ("power 1", "power 0").
fn actions(bmc: &Path) -> Vec<String> {
    std::fs::read_to_string(bmc.join("actions"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The machine's firmware and OS, as far as rackboot can see them: on every power-on, after a
/// POST delay, fetch `boot.ipxe` (retrying while rackboot is down); an agent script starts the
/// agent with the served command line; power-off (or the next power-on) stops it.
struct Firmware {
    stop: Arc<AtomicBool>,
    /// Every script served to a boot, in order.
    scripts: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Firmware {
    fn start(dir: &Path, bmc: &Path, boot_port: u16, machine_id: &str, disk: &Path) -> Firmware {
        let stop = Arc::new(AtomicBool::new(false));
        let scripts = Arc::new(Mutex::new(Vec::new()));
        let (s, sc) = (stop.clone(), scripts.clone());
        let (dir, bmc, id, disk) = (
            dir.to_path_buf(),
            bmc.to_path_buf(),
            machine_id.to_string(),
            disk.to_path_buf(),
        );
        let thread = std::thread::spawn(move || {
            let mut seen = 0;
            let mut agent: Option<Child> = None;
            let stop_agent = |agent: &mut Option<Child>| {
                if let Some(mut c) = agent.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            };
            // A power change supersedes whatever the machine was doing (a boot in progress
            // included): only the latest state counts.
            let changed = |seen: usize| actions(&bmc).len() != seen;
            while !s.load(Ordering::Relaxed) {
                let all = actions(&bmc);
                if all.len() == seen {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                eprintln!(
                    "{:?} chassis: {:?}",
                    std::time::SystemTime::now(),
                    &all[seen..]
                );
                seen = all.len();
                stop_agent(&mut agent);
                if all.last().map(|a| a.trim()) != Some("power 1") {
                    continue;
                }
                // POST.
                let post = Instant::now() + Duration::from_millis(1500);
                while Instant::now() < post && !changed(seen) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if changed(seen) {
                    continue;
                }
                let url = format!(
                    "http://127.0.0.1:{boot_port}/ipxe/boot.ipxe?uuid={UUID}&mac={}&arch=x86_64",
                    MAC.replace(':', "-")
                );
                let deadline = Instant::now() + Duration::from_secs(60);
                let script = loop {
                    let out = Command::new("curl")
                        .args(["-sf", "-m", "10", &url])
                        .output()
                        .unwrap();
                    if out.status.success() {
                        break Some(String::from_utf8_lossy(&out.stdout).into_owned());
                    }
                    if Instant::now() > deadline || s.load(Ordering::Relaxed) || changed(seen) {
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                };
                let Some(script) = script else { continue };
                let n = {
                    let mut all = sc.lock().unwrap();
                    all.push(script.clone());
                    all.len()
                };
                if let Some(kernel) = script
                    .lines()
                    .find(|l| l.starts_with("kernel ") && l.contains("rackboot.token="))
                {
                    let cmdline = dir.join(format!("agent-cmdline-{n}"));
                    std::fs::write(&cmdline, format!("{kernel}\n")).unwrap();
                    let log = std::fs::File::create(dir.join(format!("agent-{n}.log"))).unwrap();
                    agent = Some(
                        Command::new(workspace_bin("rackboot-agent"))
                            .arg("--appliance")
                            .arg(format!("127.0.0.1:{boot_port}"))
                            .args(["--machine", &id, "--dry-run-power", "--heartbeat", "1"])
                            .arg("--cmdline")
                            .arg(&cmdline)
                            .arg("--disk")
                            .arg(&disk)
                            .stdin(Stdio::null())
                            .stdout(log.try_clone().unwrap())
                            .stderr(log)
                            .spawn()
                            .unwrap(),
                    );
                }
            }
            stop_agent(&mut agent);
        });
        Firmware {
            stop,
            scripts,
            thread: Some(thread),
        }
    }
}

impl Drop for Firmware {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn wait_for(what: &str, rb: &Rackboot, bmc: &Path, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; machine: {}\nactions: {:?}\nlogs in {}",
                rb.machine(),
                actions(bmc),
                rb.dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kill rackboot with SIGKILL and start it again on the same data dir; every event the API
/// returned just before the kill must still be there, unchanged.
fn kill_and_restart(rb: &mut Rackboot, id: &str, at: &str) {
    let before = rb.events(id);
    rb.kill9();
    rb.start();
    let after = rb.events(id);
    for e in &before {
        assert!(
            after.contains(e),
            "event lost by the kill {at}: {e:?}\nafter: {after:?}"
        );
    }
    eprintln!(
        "killed {at}: {} events before, all there after ({} now)",
        before.len(),
        after.len()
    );
}

#[test]
fn sigkill_during_lifecycle_actions_repeats_no_power_action_and_loses_no_event() {
    let mut p = Procs::new("kill9");
    let sim_port = free_port();
    let bmc = start_file_ipmi_sim(&mut p, "bmc", sim_port);
    let disk = p.dir.join("disk.img");
    let mut rb = Rackboot::new(&p.dir);

    let (status, body) = rb.api(
        "POST",
        "/api/v1/machines",
        &format!(
            r#"{{"name":"m1","uuid":"{UUID}","macs":["{MAC}"],"bmc":{{"url":"ipmi://127.0.0.1:{sim_port}","username":"admin","password":"password"}}}}"#
        ),
    );
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = rb.api(
        "PUT",
        "/api/v1/profiles/demo",
        r##"{"name":"demo","script":"#!ipxe\necho demo-profile\n"}"##,
    );
    assert!(status == 200 || status == 201, "{body}");
    // ipmi_sim needs a moment to listen.
    wait_for(
        "the BMC to answer",
        &rb,
        &bmc,
        Duration::from_secs(30),
        || rb.api("GET", &format!("/api/v1/machines/{id}/power"), "").0 == 200,
    );
    std::fs::write(&disk, vec![0xa5u8; 1 << 20]).unwrap();
    let fw = Firmware::start(&p.dir, &bmc, rb.boot, &id, &disk);
    let state = |rb: &Rackboot| rb.machine()["state"].as_str().unwrap_or("").to_string();
    let bmc_dir = bmc.clone();
    let n_actions = move |n: usize| {
        let b = bmc_dir.clone();
        move || actions(&b).len() >= n
    };

    // 1. Accept: PXE-once + power on. Killed as soon as the chassis is on.
    let (status, body) = rb.api("POST", &format!("/api/v1/machines/{id}/accept"), "");
    assert_eq!(status, 200, "{body}");
    wait_for(
        "the accept's power-on",
        &rb,
        &bmc,
        Duration::from_secs(60),
        n_actions(1),
    );
    kill_and_restart(&mut rb, &id, "right after the accept's power-on");

    // 2. The agent boots, connects and reports its hardware: killed right after the report.
    wait_for(
        "the agent's hardware report",
        &rb,
        &bmc,
        Duration::from_secs(60),
        || !rb.machine()["hardware"].is_null(),
    );
    kill_and_restart(&mut rb, &id, "right after the agent's report");

    // 3. The wipe completes (the agent reconnects to the new process), the machine is available
    // and powered off when idle: killed right after the power-off.
    wait_for("available", &rb, &bmc, Duration::from_secs(90), || {
        state(&rb) == "available"
    });
    assert!(
        std::fs::read(&disk).unwrap().iter().all(|b| *b == 0),
        "the agent wiped its disk"
    );
    wait_for(
        "the idle power-off",
        &rb,
        &bmc,
        Duration::from_secs(60),
        n_actions(2),
    );
    kill_and_restart(&mut rb, &id, "right after the idle power-off");

    // 4. Provision: power on into the profile; killed right after the power-on. The firmware
    // fetches its script from the restarted process: the profile, then it is provisioned.
    let (status, body) = rb.api(
        "POST",
        &format!("/api/v1/machines/{id}/provision"),
        r#"{"profile":"demo"}"#,
    );
    assert_eq!(status, 200, "{body}");
    wait_for(
        "the provisioning power-on",
        &rb,
        &bmc,
        Duration::from_secs(60),
        n_actions(3),
    );
    kill_and_restart(&mut rb, &id, "right after the provisioning power-on");
    wait_for("provisioned", &rb, &bmc, Duration::from_secs(60), || {
        state(&rb) == "provisioned"
    });

    // 5. Release: PXE-once + power cycle into the agent, which wipes again; killed right after
    // the cycle reached the chassis.
    std::fs::write(&disk, vec![0x5au8; 1 << 20]).unwrap();
    let before_release = actions(&bmc).len();
    let (status, body) = rb.api("POST", &format!("/api/v1/machines/{id}/release"), "");
    assert_eq!(status, 200, "{body}");
    wait_for(
        "the release's power cycle",
        &rb,
        &bmc,
        Duration::from_secs(60),
        || {
            actions(&bmc)[before_release..]
                .iter()
                .any(|a| a == "power 1")
        },
    );
    kill_and_restart(&mut rb, &id, "right after the release's power cycle");
    wait_for(
        "available again",
        &rb,
        &bmc,
        Duration::from_secs(90),
        || state(&rb) == "available",
    );
    assert!(
        std::fs::read(&disk).unwrap().iter().all(|b| *b == 0),
        "the agent wiped its disk again"
    );
    let cycle: Vec<String> = actions(&bmc)[before_release..].to_vec();
    wait_for(
        "the final idle power-off",
        &rb,
        &bmc,
        Duration::from_secs(60),
        || actions(&bmc).len() > before_release + cycle.len(),
    );
    // Quiet for a while: nothing more happens to the machine.
    std::thread::sleep(Duration::from_secs(8));

    // Exactly what the lifecycle needs, nothing repeated: on (accept), off (idle), on
    // (provision), the cycle (release), off (idle).
    let mut want: Vec<String> = ["power 1", "power 0", "power 1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    want.extend(cycle.iter().cloned());
    want.push("power 0".into());
    assert_eq!(
        actions(&bmc),
        want,
        "power actions (the release's cycle showed as {cycle:?}); events: {:#?}",
        rb.events(&id)
    );
    assert!(
        cycle == ["power 0", "power 1"] || cycle == ["power 1"],
        "one power cycle: {cycle:?}"
    );
    assert_eq!(state(&rb), "available");
    assert_eq!(rb.machine()["power"], "off");
    // Three boots: the agent, the profile, the agent.
    let scripts = fw.scripts.lock().unwrap().clone();
    assert_eq!(scripts.len(), 3, "{scripts:#?}");
    assert!(scripts[0].contains("rackboot.token="), "{}", scripts[0]);
    assert!(scripts[1].contains("echo demo-profile"), "{}", scripts[1]);
    assert!(scripts[2].contains("rackboot.token="), "{}", scripts[2]);
    eprintln!("power actions: {:?}", actions(&bmc));
    drop(fw);
    drop(rb);
}
