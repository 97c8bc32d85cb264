//! The `rackboot` binary end to end on loopback: serve, the machines API through the CLI and
//! curl-like raw HTTP, restart persistence, secrets at rest, check-config exit codes.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rackboot");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path, port: u16) -> Server {
    serve_on(data, port, free_port(), &[])
}

/// `rackboot serve` with its admin API on `port` and boot HTTP on `boot`, once `/healthz` answers.
fn serve_on(data: &Path, port: u16, boot: u16, extra: &[&std::ffi::OsStr]) -> Server {
    let mut server = Server(
        Command::new(BIN)
            .args(["serve", "--dhcp-mode", "off", "--tftp-listen", "off"])
            .arg("--data-dir")
            .arg(data)
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--boot-http-listen")
            .arg(format!("127.0.0.1:{boot}"))
            .args(extra)
            .env_remove("RACKBOOT_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http(port, "GET", "/healthz", None, None).0 == 200 {
            return server;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("rackboot serve exited before answering: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not come up");
}

/// Minimal HTTP/1.1 client (no dependencies), returns (status, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn cli(port: u16, data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--server")
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data)
        .env_remove("RACKBOOT_TOKEN")
        .output()
        .unwrap()
}

fn grep_dir(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            hits.extend(grep_dir(&p, needle));
        } else if let Ok(b) = std::fs::read(&p) {
            if b.windows(needle.len()).any(|w| w == needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

#[test]
fn machines_api_auth_persistence_and_sealed_password() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let body = r#"{"name":"r1-u07","macs":["52:54:00:99:00:10"],"bmc":{"url":"ipmi://10.0.0.5:623","username":"admin","password":"Plain-Text-BMC-Secret"}}"#;
    {
        let _s = serve(&data, port);
        assert_eq!(
            http(port, "POST", "/api/v1/machines", None, Some(body)).0,
            401
        );
        let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
        let token = token.trim();
        let (status, resp) = http(port, "POST", "/api/v1/machines", Some(token), Some(body));
        assert_eq!(status, 201, "{resp}");
        assert!(!resp.contains("Plain-Text-BMC-Secret"));

        // The CLI finds the token in the data dir and adds a second machine with a password file.
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "Another-Secret\n").unwrap();
        let out = cli(
            port,
            &data,
            &[
                "machines",
                "add",
                "--name",
                "r1-u08",
                "--mac",
                "52:54:00:99:00:11",
                "--bmc-url",
                "redfish+http://127.0.0.1:8000",
                "--bmc-user",
                "root",
                "--bmc-password-file",
                pw.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = cli(port, &data, &["machines", "list"]);
        let table = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            table.contains("r1-u07") && table.contains("r1-u08") && table.contains("registered"),
            "{table}"
        );
        let out = cli(port, &data, &["machines", "show", "r1-u08", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["bmc"]["password_set"], true);
    }
    // Restart: both machines are still there; no secret is readable in the data dir.
    let _s = serve(&data, port);
    let (status, resp) = http(port, "GET", "/api/v1/machines/r1-u07", None, None);
    assert_eq!(status, 200, "{resp}");
    assert!(!resp.contains("Plain-Text-BMC-Secret"));
    assert!(resp.contains("\"password_set\":true"));
    assert_eq!(
        http(port, "GET", "/api/v1/machines/r1-u08", None, None).0,
        200
    );
    for secret in ["Plain-Text-BMC-Secret", "Another-Secret"] {
        assert_eq!(
            grep_dir(&data, secret.as_bytes()),
            Vec::<String>::new(),
            "{secret} readable at rest"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    for f in ["secret.key", "admin-token"] {
        let mode = std::fs::metadata(data.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    // Without a token the CLI cannot change state and says why.
    let out = Command::new(BIN)
        .args([
            "machines",
            "remove",
            "r1-u07",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--data-dir",
            "/nonexistent",
        ])
        .env_remove("RACKBOOT_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

#[test]
fn check_config_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(
        &f,
        "mode = \"standalone\"\nbogus = 1\n[admin]\nlisten = \"nope:80\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2: bogus:"), "{err}");
    assert!(err.contains(":4: admin.listen: bad address"), "{err}");
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/standalone.toml");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn flag_beats_env_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[admin]\nlisten = \"127.0.0.1:1\"\n").unwrap();
    let (p_env, p_flag) = (free_port(), free_port());
    let run = |with_flag: bool| {
        let mut c = Command::new(BIN);
        c.args([
            "serve",
            "--dhcp-mode",
            "off",
            "--tftp-listen",
            "off",
            "--boot-http-listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .env("RACKBOOT_ADMIN_LISTEN", format!("127.0.0.1:{p_env}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if with_flag {
            c.arg("--admin-listen").arg(format!("127.0.0.1:{p_flag}"));
        }
        Server(c.spawn().unwrap())
    };
    let wait = |port: u16| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http(port, "GET", "/healthz", None, None).0 == 200 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    {
        let _s = run(false);
        assert!(wait(p_env), "env should beat the file");
    }
    let _s = run(true);
    assert!(wait(p_flag), "flag should beat env");
}

#[test]
fn boot_modes_and_profiles_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let _s = serve(&data, port);
    let ok = |args: &[&str]| {
        let out = cli(port, &data, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&[
        "machines",
        "add",
        "--name",
        "r1-u09",
        "--mac",
        "52:54:00:99:00:19",
    ]);
    ok(&[
        "profiles",
        "set",
        "demo",
        "--kernel",
        "demo/vmlinuz",
        "--initrd",
        "demo/initrd.gz",
        "--cmdline",
        "console=ttyS0 id=${machine}",
    ]);
    assert!(ok(&["profiles", "list"]).contains("demo"));
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "machines",
        "boot",
        "r1-u09",
        "profile",
        "--profile",
        "demo",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(v["boot_mode"]["mode"], "profile");
    assert_eq!(v["boot_mode"]["profile"], "demo");
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "machines",
        "boot",
        "r1-u09",
        "disk",
        "--disk-method",
        "sanboot",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(v["boot_mode"]["method"], "sanboot");
    // Refusals say why and exit 1.
    let out = cli(
        port,
        &data,
        &["machines", "boot", "r1-u09", "profile", "--profile", "nope"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = cli(
        port,
        &data,
        &[
            "profiles",
            "set",
            "bad",
            "--kernel",
            "k",
            "--cmdline",
            "a ; shell",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&["profiles", "remove", "demo"]);
    assert!(!ok(&["profiles", "list"]).contains("demo"));
}

#[test]
fn yaml_output_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let _s = serve(&data, port);
    let out = cli(
        port,
        &data,
        &[
            "machines",
            "add",
            "--name",
            "y1",
            "--mac",
            "52:54:00:99:00:31",
            "-o",
            "yaml",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let y = String::from_utf8_lossy(&out.stdout);
    assert!(
        y.contains("name: \"y1\"") && y.contains("macs:\n  - \"52:54:00:99:00:31\""),
        "{y}"
    );
    let out = cli(port, &data, &["machines", "list", "-o", "yaml"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("- "),
        "a list is a YAML sequence"
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("machines"),
            "{shell}"
        );
    }
    // Helpful errors: an unreachable server and a missing machine.
    let out = Command::new(BIN)
        .args(["machines", "list", "--server", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the rackboot server"));
    let out = cli(port, &data, &["machines", "show", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}

/// Started with the soft open-file limit at 256 (as under busybox init or a systemd unit it would
/// be 1,024), `serve` raises it to the hard limit: a boot storm needs a descriptor per transfer.
#[test]
fn serve_raises_the_open_file_limit() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 256 && exec {BIN} serve --dhcp-mode off --tftp-listen off --data-dir {} \
             --admin-listen 127.0.0.1:{port} --boot-http-listen 127.0.0.1:{}",
            data.path().display(),
            free_port()
        ))
        .env_remove("RACKBOOT_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let limits = |pid: u32| -> (String, String) {
        let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        let f: Vec<&str> = line.split_whitespace().collect();
        (f[3].to_string(), f[4].to_string())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(port, "GET", "/healthz", None, None).0 != 200 {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("rackboot serve exited before answering: {status}");
        }
        assert!(Instant::now() < deadline, "server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (soft, hard) = limits(server.0.id());
    assert_eq!(
        soft, hard,
        "soft open-file limit {soft} not raised to {hard}"
    );
    assert_ne!(soft, "256");
}

/// Out of file descriptors in a storm: a download whose file cannot be opened yet (EMFILE) waits
/// for another transfer to finish and is then served, instead of failing with a 500.
#[test]
fn a_download_waits_for_a_free_file_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    // Larger than loopback's socket buffers: the first download holds its file open until read.
    let big = vec![7u8; 48 << 20];
    std::fs::write(assets.join("big.bin"), &big).unwrap();
    let (admin, boot) = (free_port(), free_port());
    let server = serve_on(
        &dir.path().join("data"),
        admin,
        boot,
        &["--assets-dir".as_ref(), assets.as_os_str()],
    );
    let get = move || {
        let mut s = TcpStream::connect(("127.0.0.1", boot)).unwrap();
        write!(
            s,
            "GET /assets/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        s
    };
    let read_all = |mut s: TcpStream| -> (u16, usize) {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        (status, len)
    };
    // The server closes its side of the last /healthz connection a moment after `serve_on`
    // returns: a number freed after A's descriptors would leave a second free number below the
    // limit (B's file would open at once, or, seen once, A's closing frees only numbers above
    // it). Wait until the descriptor count holds still.
    let pid = server.0.id();
    let fd_count = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let mut count = fd_count();
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(200));
        let now = fd_count();
        if now == count {
            break;
        }
        count = now;
    }
    // A: its download starts and stalls (nothing read), holding a connection and the file.
    let a = get();
    std::thread::sleep(Duration::from_millis(500));
    // The limit caps descriptor numbers: the next two free numbers are B's connection and file.
    let used: Vec<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let first_free = (0..).find(|n| !used.contains(n)).unwrap();
    let limit = first_free + 1;
    let set = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .unwrap();
    assert!(set.success(), "prlimit failed");
    // B: accepted, but its file cannot be opened while A holds the last descriptor.
    let b = std::thread::spawn(move || read_all(get()));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read_all(a), (200, big.len()));
    assert_eq!(b.join().unwrap(), (200, big.len()), "the waiting download");
    drop(server);
}

/// `inventory.discovery_burst` from the config file reaches the running server: of four
/// unknown machines fetching their boot script, two are recorded; a machine the operator added
/// is still recorded when it boots.
#[test]
fn the_discovery_limit_comes_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("rackboot.toml");
    std::fs::write(
        &config,
        "[inventory]\ndiscovery_burst = 2\ndiscovery_per_second = 0\n",
    )
    .unwrap();
    let (port, boot) = (free_port(), free_port());
    let _server = serve_on(
        &data,
        port,
        boot,
        &["--config".as_ref(), config.as_os_str()],
    );
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let token = token.trim();
    let body = r#"{"name":"known","macs":["52:54:00:aa:00:09"]}"#;
    assert_eq!(
        http(port, "POST", "/api/v1/machines", Some(token), Some(body)).0,
        201
    );
    for i in 1..=4 {
        let path = format!(
            "/ipxe/boot.ipxe?mac=52-54-00-aa-00-0{i}&uuid=00000000-0000-0000-0000-00000000000{i}"
        );
        assert_eq!(http(boot, "GET", &path, None, None).0, 200);
    }
    let path = "/ipxe/boot.ipxe?mac=52-54-00-aa-00-09&uuid=00000000-0000-0000-0000-000000000000";
    assert_eq!(http(boot, "GET", path, None, None).0, 200);
    // Sightings are recorded in the background: wait for the known machine's boot, then for
    // the discoveries; never more than the burst.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut discovered, mut booted) = (0, false);
    while Instant::now() < deadline {
        let (status, list) = http(port, "GET", "/api/v1/machines", Some(token), None);
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&list).unwrap();
        let machines = v.as_array().or(v["machines"].as_array()).unwrap();
        discovered = machines.iter().filter(|m| m["name"] != "known").count();
        booted = machines
            .iter()
            .any(|m| m["name"] == "known" && m["boot"]["via"] == "http");
        assert!(discovered <= 2, "{discovered} machines discovered: {list}");
        if discovered == 2 && booted {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(discovered, 2);
    assert!(booted, "the known machine's boot was not recorded");
}
