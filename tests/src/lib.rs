//! Test harness: an isolated provisioning segment made of network namespaces (a bridge "switch",
//! hosts attached by veth pairs, taps for QEMU), real peers started inside them, and cleanup of
//! everything it started (processes by PID, namespaces by name) on drop.
//!
//! Needs root (`ip netns`). Names carry a per-lab prefix so labs can run side by side.
#![allow(clippy::unwrap_used)]

pub mod admin;
pub mod bmc_sim;
pub mod dhcp_client;
pub mod factory;
pub mod forward;
pub mod image;
pub mod omni;
pub mod qemu;
pub mod rack;
pub mod scenario;

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

/// Run a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "network-namespace tests need root (make test runs them as root in CI)"
    );
}

/// Sum of the samples of a Prometheus counter (rackboot's `/metrics`) whose line starts with
/// `prefix`.
pub fn metric_sum(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Path of a workspace binary built next to this test executable.
pub fn workspace_bin(name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(format!(
        "RACKBOOT_E2E_{}",
        name.to_uppercase().replace('-', "_")
    )) {
        return PathBuf::from(p);
    }
    // Test executables live in target/<profile>/deps, binaries of this crate in target/<profile>.
    let exe = std::env::current_exe().unwrap();
    let dirs = [exe.parent(), exe.parent().and_then(Path::parent)];
    for dir in dirs.into_iter().flatten() {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} not built next to {}: run `cargo build --workspace` first",
        exe.display()
    );
}

/// The scratch dir of a lab (kept on failure for the logs).
pub fn scratch(tag: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e");
    let d = root.join(format!("{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

pub struct Lab {
    pub prefix: String,
    pub dir: PathBuf,
    pub switch: String,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    taps: u32,
    /// Start children in their own process group, so a Ctrl-C at the terminal reaches only the
    /// program that owns the lab (which then tears it down in order).
    pub detach_children: bool,
    /// Delete `dir` on drop unless the thread is panicking (scratch labs: a passing test leaves
    /// nothing behind; a failing one keeps its logs).
    remove_dir: bool,
}

/// One host on the segment: its namespace and address; its NIC is `eth0`.
#[derive(Clone, Debug)]
pub struct Host {
    pub ns: String,
    pub ip: Ipv4Addr,
}

impl Lab {
    /// A new segment: namespace `<prefix>sw` with bridge `br0`.
    pub fn new(tag: &str) -> Lab {
        let n = LAB_SEQ.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("rb{}{}", std::process::id() % 100_000, n);
        let mut lab = Lab::at(&prefix, scratch(tag));
        lab.remove_dir = true;
        lab
    }

    /// A new segment with fixed names (`<prefix>sw`, `<prefix><host>`; a namespace left over
    /// from an earlier run with the same name is deleted first) and scratch dir `dir`.
    pub fn at(prefix: &str, dir: PathBuf) -> Lab {
        require_root();
        let prefix = prefix.to_string();
        let switch = format!("{prefix}sw");
        let mut lab = Lab {
            prefix,
            dir,
            switch: switch.clone(),
            namespaces: vec![],
            children: vec![],
            taps: 0,
            detach_children: false,
            remove_dir: false,
        };
        lab.netns(&switch);
        sh(&[
            "ip",
            "-n",
            &switch,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ]);
        sh(&["ip", "-n", &switch, "link", "set", "br0", "up"]);
        // The switch itself should stay quiet on IPv6.
        sh(&[
            "ip",
            "netns",
            "exec",
            &switch,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
        ]);
        lab
    }

    fn netns(&mut self, name: &str) {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        sh(&["ip", "netns", "add", name]);
        sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
        self.namespaces.push(name.to_string());
    }

    /// Attach a host namespace `<prefix><name>` with `eth0` = `ip/24` (and an optional IPv6).
    pub fn host(&mut self, name: &str, ip: Ipv4Addr, ipv6: Option<&str>) -> Host {
        let ns = format!("{}{}", self.prefix, name);
        self.netns(&ns);
        let (a, b) = (
            format!("{}{}a", self.prefix, name),
            format!("{}{}b", self.prefix, name),
        );
        sh(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        sh(&["ip", "link", "set", &a, "netns", &ns]);
        sh(&["ip", "link", "set", &b, "netns", &self.switch]);
        sh(&["ip", "-n", &ns, "link", "set", &a, "name", "eth0"]);
        sh(&[
            "ip",
            "-n",
            &self.switch,
            "link",
            "set",
            &b,
            "master",
            "br0",
            "up",
        ]);
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ]);
        if let Some(v6) = ipv6 {
            sh(&["ip", "-n", &ns, "addr", "add", v6, "dev", "eth0", "nodad"]);
        }
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        Host { ns, ip }
    }

    /// A tap on the bridge for a VM (QEMU must run inside the switch namespace).
    pub fn tap(&mut self) -> String {
        let tap = format!("tap{}", self.taps);
        self.taps += 1;
        sh(&[
            "ip",
            "-n",
            &self.switch,
            "tuntap",
            "add",
            "dev",
            &tap,
            "mode",
            "tap",
        ]);
        sh(&[
            "ip",
            "-n",
            &self.switch,
            "link",
            "set",
            &tap,
            "master",
            "br0",
            "up",
        ]);
        tap
    }

    /// Start a process inside `ns`, logging to `<dir>/<name>.log`; killed (by PID) on drop.
    pub fn spawn(&mut self, name: &str, ns: &str, args: &[&str]) -> u32 {
        let log = fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if self.detach_children {
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
        let pid = child.id();
        self.children.push((name.to_string(), child));
        pid
    }

    /// Run a command inside `ns` and return (success, stdout+stderr).
    pub fn exec(&self, ns: &str, args: &[&str]) -> (bool, String) {
        let o = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The PIDs of the children started so far, with their names.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.children
            .iter()
            .map(|(n, c)| (n.clone(), c.id()))
            .collect()
    }

    /// Stop the named child politely (SIGTERM, then SIGKILL after `grace`), e.g. so tcpdump
    /// finishes its capture file.
    pub fn stop(&mut self, name: &str, grace: Duration) {
        for (n, c) in self.children.iter_mut() {
            if n != name {
                continue;
            }
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let deadline = Instant::now() + grace;
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Capture every frame crossing the segment's bridge (a promiscuous bridge hands forwarded
    /// frames to its own interface too) into `<dir>/<name>.pcap`. Large HTTP payload segments
    /// from the boot server are left out so a capture with kernels in it stays small.
    pub fn capture(&mut self, name: &str) -> PathBuf {
        let pcap = self.dir.join(format!("{name}.pcap"));
        let sw = self.switch.clone();
        let file = pcap.display().to_string();
        self.spawn(
            name,
            &sw,
            &[
                "tcpdump",
                "-i",
                "br0",
                "-U",
                "-n",
                "-s",
                "1600",
                "-w",
                &file,
                "not (tcp src port 50042 and greater 600)",
            ],
        );
        // tcpdump prints "listening on br0" once its filter is attached.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log(name).contains("listening on") && Instant::now() < deadline {
            assert!(self.alive(name), "tcpdump died: {}", self.log(name));
            std::thread::sleep(Duration::from_millis(50));
        }
        pcap
    }

    /// Is the named child still running?
    pub fn alive(&mut self, name: &str) -> bool {
        self.children
            .iter_mut()
            .any(|(n, c)| n == name && matches!(c.try_wait(), Ok(None)))
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        fs::File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        p
    }

    /// dnsmasq as the site DHCP server: addresses only (no boot options), with IPv6 RAs so iPXE
    /// does not wait for them. It never answers PXE boot questions; rackboot does.
    pub fn site_dhcp(&mut self, site: &Host) {
        let leases = self.dir.join("site.leases");
        let conf = format!(
            "port=0\ninterface=eth0\nbind-interfaces\nexcept-interface=lo\n\
             dhcp-range=10.99.0.100,10.99.0.199,255.255.255.0,10m\ndhcp-leasefile={}\n\
             dhcp-authoritative\nlog-dhcp\nno-ping\nenable-ra\ndhcp-range=::,constructor:eth0,ra-only,64,10m\n",
            leases.display()
        );
        let path = self.write("site-dnsmasq.conf", &conf);
        let pid_file = self.dir.join("site-dnsmasq.pid");
        let ns = site.ns.clone();
        self.spawn(
            "site-dnsmasq",
            &ns,
            &[
                "dnsmasq",
                "--keep-in-foreground",
                &format!("--conf-file={}", path.display()),
                &format!("--pid-file={}", pid_file.display()),
                "--log-facility=-",
                "--user=root",
                "--group=root",
            ],
        );
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            self.alive("site-dnsmasq"),
            "site dnsmasq died: {}",
            self.log("site-dnsmasq")
        );
    }

    /// `rackboot serve` on `host` in proxy mode; returns the admin port (loopback in that netns).
    pub fn rackboot(&mut self, host: &Host, assets: &Path, extra: &[&str]) -> u16 {
        let bin = workspace_bin("rackboot");
        let data = self.dir.join("rackboot-data");
        let ip = host.ip.to_string();
        let mut args: Vec<String> = vec![
            bin.display().to_string(),
            "serve".into(),
            "--interface".into(),
            "eth0".into(),
            "--advertise-addr".into(),
            ip.clone(),
            "--data-dir".into(),
            data.display().to_string(),
            "--assets-dir".into(),
            assets.display().to_string(),
            "--admin-listen".into(),
            "127.0.0.1:8080".into(),
            "--boot-http-listen".into(),
            format!("{ip}:50042"),
            "--tftp-listen".into(),
            format!("{ip}:69"),
            "--log-level".into(),
            "debug".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let ns = host.ns.clone();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn("rackboot", &ns, &refs);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self
                .exec(&ns, &["curl", "-sf", "http://127.0.0.1:8080/healthz"])
                .0
            {
                return 8080;
            }
            assert!(
                self.alive("rackboot"),
                "rackboot exited: {}",
                self.log("rackboot")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("rackboot did not come up: {}", self.log("rackboot"));
    }

    /// GET on rackboot's admin API from inside its namespace.
    pub fn admin_get(&self, host: &Host, path: &str) -> String {
        self.exec(
            &host.ns,
            &["curl", "-s", &format!("http://127.0.0.1:8080{path}")],
        )
        .1
    }

    /// curl `url` from namespace `ns` (10 s limit): `-X method`, each of `headers` as `-H`, and
    /// `body` as JSON when given. Returns (HTTP status, body); status 0 when nothing answered.
    pub fn curl_call(
        &self,
        ns: &str,
        method: &str,
        url: &str,
        headers: &[String],
        body: Option<&str>,
    ) -> (u16, String) {
        let mut args = vec![
            "curl",
            "-s",
            "-m",
            "10",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
        ];
        for h in headers {
            args.extend(["-H", h.as_str()]);
        }
        if let Some(b) = body {
            args.extend(["-H", "Content-Type: application/json", "-d", b]);
        }
        args.push(url);
        let (_, out) = self.exec(ns, &args);
        let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// A JSON call to `host`'s admin API on 127.0.0.1:8080 with the admin token from the lab's
    /// data directory, passed as a curl header file so it never appears in a command line;
    /// (HTTP status, body), status 0 when curl got no answer.
    pub fn admin_call(&self, host: &Host, method: &str, path: &str, body: &str) -> (u16, String) {
        let token = std::fs::read_to_string(self.dir.join("rackboot-data/admin-token")).unwrap();
        let header = self.dir.join("admin-auth.header");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&header)
                .unwrap();
            writeln!(f, "Authorization: Bearer {}", token.trim()).unwrap();
        }
        let url = format!("http://127.0.0.1:8080{path}");
        let auth = format!("@{}", header.display());
        self.curl_call(&host.ns, method, &url, &[auth], Some(body))
    }

    /// Wait until `f` holds, or panic with `what` after `timeout`.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, mut f: impl FnMut(&mut Lab) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "timed out waiting for {what}; logs in {}",
            self.dir.display()
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in self.children.iter_mut().rev() {
            // `ip netns exec` execs the command, so this PID is the process itself.
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        if self.remove_dir && !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Run `f` on a thread that has entered namespace `ns` (sockets it makes stay there).
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = fs::File::open(&path).unwrap();
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// A tool from the test venv (`make deps-test` creates `var/venv` with sushy-tools and pyghmi).
pub fn venv_tool(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../var/venv/bin")
        .join(name);
    assert!(p.is_file(), "{} missing: run `make deps-test`", p.display());
    p
}

/// Run the `rackboot` CLI; returns (exit code, stdout, stderr).
pub fn rackboot_cli(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(workspace_bin("rackboot"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A free UDP/TCP port on loopback (racy by nature; fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Processes started outside a lab (loopback peers), killed by PID on drop.
#[derive(Default)]
pub struct Procs {
    children: Vec<(String, Child)>,
    pub dir: PathBuf,
}

impl Procs {
    pub fn new(tag: &str) -> Self {
        Self {
            children: vec![],
            dir: scratch(tag),
        }
    }

    pub fn spawn(&mut self, name: &str, cmd: &mut Command) {
        let log = fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        self.children.push((name.to_string(), child));
    }

    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Kill (SIGKILL) and reap the processes started under `name`.
    pub fn stop_named(&mut self, name: &str) {
        for (n, c) in self.children.iter_mut() {
            if n == name {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.children.retain(|(n, _)| n != name);
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A passing test leaves nothing behind; a failing one keeps its logs.
        if !self.dir.as_os_str().is_empty() && !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Wait until a TCP port on loopback accepts connections.
pub fn wait_tcp(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
