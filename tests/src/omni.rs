//! Loopback helpers for the Omni e2e tests: the Omni double as a process (its control API over
//! curl), its key, and polling.
#![allow(clippy::unwrap_used)]

use crate::{wait_tcp, workspace_bin, Procs};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub const PROVIDER: &str = "rack1";
pub const NS: &str = "infra-provider";
pub const JOIN_ARG: &str = "siderolink.api=grpc://omni.test:8090?jointoken=t0ken";
pub const JOIN_DOC: &str =
    "apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: grpc://omni.test:8090?jointoken=t0ken\n";

pub fn curl(args: &[&str]) -> (u16, String) {
    let o = Command::new("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

pub fn control(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let url = format!("http://127.0.0.1:{port}{path}");
    let b = body.map(|b| b.to_string());
    let mut args = vec![
        "-X",
        method,
        url.as_str(),
        "-H",
        "Content-Type: application/json",
    ];
    if let Some(b) = &b {
        args.extend(["-d", b.as_str()]);
    }
    let (code, text) = curl(&args);
    assert!(code == 200, "{method} {path}: {code} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

pub fn resource(port: u16, ty: &str, id: &str) -> Option<Value> {
    let url = format!("http://127.0.0.1:{port}/control/resources/{NS}/{ty}/{id}");
    let (code, text) = curl(&[url.as_str()]);
    (code == 200).then(|| serde_json::from_str(&text).unwrap())
}

pub fn wait_until(
    what: &str,
    timeout: Duration,
    logs: &dyn Fn() -> String,
    mut f: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out waiting for {what}\n{}", logs());
}

pub struct Omni {
    pub grpc: u16,
    pub control: u16,
}

pub fn start_double(p: &mut Procs, name: &str, o: &Omni, restore: bool) {
    let dir = p.dir.clone();
    let mut c = Command::new(workspace_bin("omni-double"));
    c.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{}", o.grpc),
        "--control",
        &format!("127.0.0.1:{}", o.control),
    ])
    .args(["--provider-id", PROVIDER, "--public-key"])
    .arg(dir.join("key.pub"))
    .arg("--state-file")
    .arg(dir.join("omni-state.json"));
    if restore {
        c.arg("--restore-on-start");
    }
    p.spawn(name, &mut c);
    assert!(
        wait_tcp(o.control, Duration::from_secs(20)),
        "omni-double did not start: {}",
        p.log(name)
    );
    assert!(wait_tcp(o.grpc, Duration::from_secs(20)));
}

/// `omni-double keygen` for PROVIDER into `<dir>/key.b64` (the service-account key) and
/// `<dir>/key.pub`.
pub fn keygen(dir: &Path) {
    let st = Command::new(workspace_bin("omni-double"))
        .args(["keygen", "--id", PROVIDER, "--out-key"])
        .arg(dir.join("key.b64"))
        .arg("--out-public")
        .arg(dir.join("key.pub"))
        .status()
        .unwrap();
    assert!(st.success());
}

pub fn p_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}
