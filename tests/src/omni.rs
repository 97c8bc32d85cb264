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

/// curl arguments for a JSON call: method, URL, extra headers, optional JSON body.
pub fn json_call(method: &str, url: &str, headers: &[String], body: Option<&Value>) -> Vec<String> {
    let mut args = vec!["-X".to_string(), method.to_string(), url.to_string()];
    for h in headers
        .iter()
        .map(String::as_str)
        .chain(["Content-Type: application/json"])
    {
        args.extend(["-H".to_string(), h.to_string()]);
    }
    if let Some(b) = body {
        args.extend(["-d".to_string(), b.to_string()]);
    }
    args
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

pub fn control(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let url = format!("http://127.0.0.1:{port}{path}");
    let (code, text) = curl(&refs(&json_call(method, &url, &[], body.as_ref())));
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

/// A loopback admin API call with the admin token: (status, JSON body or Null).
pub fn admin_api(
    port: u16,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let auth = [format!("Authorization: Bearer {token}")];
    let (code, text) = curl(&refs(&json_call(method, &url, &auth, body.as_ref())));
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Fixed ports of the Omni double and the Image Factory double inside a test's private
/// appliance namespace.
pub const SEG_GRPC: u16 = 18091;
pub const SEG_CONTROL: u16 = 18092;
pub const SEG_FACTORY: u16 = 18093;

/// A provisioning segment (`qemu::boot_segment`) with rackboot in Omni mode and the Omni double
/// running in the appliance namespace; calls go through `ip netns exec … curl`.
pub struct OmniSegment {
    pub lab: crate::Lab,
    pub appl: crate::Host,
    /// The machine the test is about (diagnostics, `ims`, `machine`, `events`).
    pub uuid: String,
}

impl OmniSegment {
    /// The `[omni]` part of rackboot's config for this segment (`extra` appended).
    pub fn config(keys: &Path, extra: &str) -> String {
        format!(
            "mode = \"omni\"\n{extra}\n[omni]\nendpoint = \"http://127.0.0.1:{SEG_GRPC}\"\nprovider_id = \"{PROVIDER}\"\n\
             key_file = \"{}\"\nimage_factory_url = \"http://127.0.0.1:{SEG_FACTORY}\"\n\
             image_factory_pxe_url = \"http://10.99.0.2:{SEG_FACTORY}\"\n",
            keys.join("key.b64").display()
        )
    }

    pub fn curl(&self, args: &[&str]) -> (u16, String) {
        let mut all = vec!["curl", "-s", "-m", "10", "-w", "\n%{http_code}"];
        all.extend_from_slice(args);
        let (_, out) = self.lab.exec(&self.appl.ns, &all);
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    pub fn control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("http://127.0.0.1:{SEG_CONTROL}{path}");
        let args = json_call(method, &url, &[], body.as_ref());
        let (code, text) = self.curl(&refs(&args));
        assert!(code == 200, "{method} {path}: {code} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub fn resource(&self, ns: &str, ty: &str, id: &str) -> Option<Value> {
        let url = format!("http://127.0.0.1:{SEG_CONTROL}/control/resources/{ns}/{ty}/{id}");
        let (code, text) = self.curl(&[url.as_str()]);
        (code == 200).then(|| serde_json::from_str(&text).unwrap())
    }

    /// The machine's InfraMachineStatus spec, read once (Null when there is none). A check of
    /// several fields reads them from one snapshot: fields read one request apart can mix the
    /// status before and after an update.
    pub fn status(&self) -> Value {
        self.resource(NS, "InfraMachineStatuses.omni.sidero.dev", &self.uuid)
            .map(|v| v["spec"].clone())
            .unwrap_or(Value::Null)
    }

    /// One field of the machine's InfraMachineStatus (Null when there is none).
    pub fn ims(&self, field: &str) -> Value {
        self.status()[field].clone()
    }

    pub fn machine(&self) -> Value {
        let path = format!("/api/v1/machines/{}", self.uuid);
        serde_json::from_str(&self.lab.admin_get(&self.appl, &path)).unwrap_or(Value::Null)
    }

    pub fn events(&self) -> String {
        let path = format!("/api/v1/events?machine={}&limit=1000", self.uuid);
        self.lab.admin_get(&self.appl, &path)
    }

    /// An admin API call with the admin token; (status, body).
    pub fn admin(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.lab.admin_call(&self.appl, method, path, body)
    }

    /// Poll `f` every 500 ms; on timeout panic with the machine, its events, Omni's status
    /// and the VM console under `bmc`.
    pub fn wait(
        &self,
        what: &str,
        timeout: Duration,
        bmc: &Path,
        mut f: impl FnMut(&Self) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("timed out waiting for {what}\n{}", self.report(bmc));
    }

    /// The machine, its events, Omni's status, the BMC's chassis log and the VM console under
    /// `bmc`: what a failed check prints.
    pub fn report(&self, bmc: &Path) -> String {
        let tail = |name: &str, n: usize| {
            let text = std::fs::read_to_string(bmc.join(name)).unwrap_or_default();
            let mut cut = text.len().saturating_sub(n);
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text[cut..].to_string()
        };
        format!(
            "machine: {}\nevents: {}\nomni: {:?}\nchassis: {}\nconsole: {}\nlogs in {}",
            self.machine(),
            self.events(),
            self.resource(NS, "InfraMachineStatuses.omni.sidero.dev", &self.uuid),
            tail("chassis.log", 1500),
            tail("serial.log", 4000),
            self.lab.dir.display()
        )
    }

    /// Start the Omni double (`name`) in the appliance namespace with the keys in `keys`.
    pub fn start_double(&mut self, name: &str, keys: &Path) {
        let bin = workspace_bin("omni-double").display().to_string();
        let (grpc, control) = (
            format!("127.0.0.1:{SEG_GRPC}"),
            format!("127.0.0.1:{SEG_CONTROL}"),
        );
        let (public, state) = (
            keys.join("key.pub").display().to_string(),
            keys.join("omni-state.json").display().to_string(),
        );
        let ns = self.appl.ns.clone();
        let args = [
            bin.as_str(),
            "serve",
            "--listen",
            &grpc,
            "--control",
            &control,
            "--provider-id",
            PROVIDER,
            "--public-key",
            &public,
            "--state-file",
            &state,
        ];
        self.lab.spawn(name, &ns, &args);
        let deadline = Instant::now() + Duration::from_secs(20);
        let health = format!("http://127.0.0.1:{SEG_CONTROL}/healthz");
        while self.curl(&[&health]).0 != 200 {
            assert!(
                Instant::now() < deadline,
                "omni-double did not start: {}",
                self.lab.log(name)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
