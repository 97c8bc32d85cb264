//! Faults outside rackboot's control, on loopback with real peers: SIGTERM while a slow TFTP
//! client and a slow HTTP client are mid-download (both finish, byte for byte, then rackboot
//! exits 0); a BMC (OpenIPMI's ipmi_sim behind a UDP relay that can go silent or hold replies
//! back) that stops answering in the middle of an RMCP+ session, answers slowly, or refuses
//! power changes with a completion code; a Redfish BMC (sushy-emulator behind an HTTP relay)
//! answering 503, 500 with a Redfish error, slowly or too slowly (each: a clear error, no hang,
//! recovery after); the data
//! directory's filesystem (a small tmpfs) filling up (boots keep being served, the failure is
//! reported on /healthz, /metrics and in the log, nothing stored before is lost, and writes
//! resume by themselves when space returns, without a restart). Needs root (tmpfs).
#![allow(clippy::unwrap_used)]

use rackboot_e2e::bmc_sim::{start_file_ipmi_sim, FILE_CHASSIS};
use rackboot_e2e::{free_port, venv_tool, wait_tcp, workspace_bin, Procs};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `rackboot serve` on loopback, owned here (the tests signal it by PID); killed on drop.
struct Rackboot {
    child: Child,
    admin: u16,
    boot: u16,
    tftp: u16,
    token: String,
}

impl Rackboot {
    fn start(dir: &Path, assets: &Path) -> Rackboot {
        Rackboot::start_with(dir, &dir.join("data"), assets, "rackboot.log", &[])
    }

    fn start_with(
        dir: &Path,
        data: &Path,
        assets: &Path,
        log_name: &str,
        extra: &[&str],
    ) -> Rackboot {
        let (admin, boot, tftp) = (free_port(), free_port(), free_port());
        let log = std::fs::File::create(dir.join(log_name)).unwrap();
        let child = Command::new(workspace_bin("rackboot"))
            .args(["serve", "--dhcp-mode", "off", "--log-level", "debug"])
            .arg("--data-dir")
            .arg(data)
            .arg("--assets-dir")
            .arg(assets)
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(["--boot-http-listen", &format!("127.0.0.1:{boot}")])
            .args(["--tftp-listen", &format!("127.0.0.1:{tftp}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        assert!(
            wait_tcp(admin, Duration::from_secs(30)),
            "rackboot did not start"
        );
        let token = std::fs::read_to_string(data.join("admin-token"))
            .unwrap()
            .trim()
            .to_string();
        Rackboot {
            child,
            admin,
            boot,
            tftp,
            token,
        }
    }

    fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }

    /// `curl` on the admin API with the token: (status, body).
    fn api(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.admin);
        let bearer = format!("Authorization: Bearer {}", self.token);
        let mut args = vec![
            "-s",
            "--max-time",
            "180",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
            "-H",
            &bearer,
        ];
        if !body.is_empty() {
            args.extend(["-H", "Content-Type: application/json", "-d", body]);
        }
        args.push(&url);
        let out = Command::new("curl").args(&args).output().unwrap();
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for Rackboot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A deliberately slow TFTP client (RFC 1350, 512-byte blocks, one ACK every `pace`): reads
/// `name` from `server`, reporting the blocks received so far in `progress`.
fn slow_tftp_get(
    server: SocketAddr,
    name: &str,
    pace: Duration,
    progress: Arc<AtomicI64>,
) -> Result<Vec<u8>, String> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut rrq = vec![0, 1];
    rrq.extend_from_slice(name.as_bytes());
    rrq.extend_from_slice(b"\0octet\0");
    s.send_to(&rrq, server).unwrap();
    let mut data = Vec::new();
    let mut expect: u16 = 1;
    let mut peer: Option<SocketAddr> = None;
    let mut last_ack: Option<Vec<u8>> = None;
    let mut silent = 0;
    let mut buf = [0u8; 600];
    loop {
        let (n, from) = match s.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => {
                silent += 1;
                if silent > 15 {
                    return Err(format!("server silent after {} bytes", data.len()));
                }
                match (&last_ack, peer) {
                    (Some(a), Some(p)) => s.send_to(a, p).unwrap(),
                    _ => s.send_to(&rrq, server).unwrap(),
                };
                continue;
            }
        };
        silent = 0;
        let p = &buf[..n];
        match (p.first(), p.get(1)) {
            (Some(0), Some(3)) if n >= 4 => {
                peer.get_or_insert(from);
                let block = u16::from_be_bytes([p[2], p[3]]);
                if block == expect {
                    data.extend_from_slice(&p[4..]);
                    progress.store(i64::from(block), Ordering::Relaxed);
                    expect = expect.wrapping_add(1);
                }
                let ack = vec![0, 4, p[2], p[3]];
                std::thread::sleep(pace);
                s.send_to(&ack, from).unwrap();
                last_ack = Some(ack);
                if n - 4 < 512 && block == expect.wrapping_sub(1) {
                    return Ok(data);
                }
            }
            (Some(0), Some(5)) => {
                return Err(format!("TFTP error: {}", String::from_utf8_lossy(&p[4..])))
            }
            _ => {}
        }
    }
}

/// A deliberately slow HTTP/1.1 client: a 16 KiB receive buffer, 16 KiB read every `pace`, so
/// the server is still writing long after the first bytes; `progress` counts body bytes.
fn slow_http_get(port: u16, path: &str, pace: Duration, progress: Arc<AtomicI64>) -> Vec<u8> {
    use std::io::{Read, Write};
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    sock.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut s: std::net::TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                progress.store(raw.len() as i64, Ordering::Relaxed);
                std::thread::sleep(pace);
            }
            Err(e) => panic!("slow HTTP read after {} bytes: {e}", raw.len()),
        }
    }
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP reply");
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw[..head_end])
    );
    raw.split_off(head_end + 4)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn sigterm_lets_in_flight_tftp_and_http_transfers_finish() {
    // Both TFTP shells: a socket per transfer (default), and the single-port one.
    for (tag, extra) in [
        ("faults-sigterm", &[][..]),
        ("faults-sigterm-1port", &["--tftp-single-port", "true"][..]),
    ] {
        sigterm_drains(tag, extra);
    }
}

fn sigterm_drains(tag: &str, extra: &[&str]) {
    let p = Procs::new(tag);
    let assets = p.dir.join("assets");
    std::fs::create_dir_all(assets.join("tftp")).unwrap();
    let tftp_file = pseudo_random(1 << 20, 7);
    let http_file = pseudo_random(8 << 20, 11);
    std::fs::write(assets.join("tftp/big.bin"), &tftp_file).unwrap();
    std::fs::write(assets.join("big.bin"), &http_file).unwrap();
    let mut rb = Rackboot::start_with(&p.dir, &p.dir.join("data"), &assets, "rackboot.log", extra);

    // A TFTP client pacing its ACKs (2048 blocks, a few seconds) and a rate-limited curl.
    let progress = Arc::new(AtomicI64::new(0));
    let server = SocketAddr::from(([127, 0, 0, 1], rb.tftp));
    let prog = progress.clone();
    let tftp = std::thread::spawn(move || {
        slow_tftp_get(server, "big.bin", Duration::from_millis(3), prog)
    });
    let http_progress = Arc::new(AtomicI64::new(0));
    let (boot, hp) = (rb.boot, http_progress.clone());
    let http = std::thread::spawn(move || {
        slow_http_get(boot, "/assets/big.bin", Duration::from_millis(10), hp)
    });
    wait_until("both downloads under way", Duration::from_secs(30), || {
        progress.load(Ordering::Relaxed) >= 64 && http_progress.load(Ordering::Relaxed) > 64 * 1024
    });
    let (tftp_at, http_at) = (
        progress.load(Ordering::Relaxed),
        http_progress.load(Ordering::Relaxed),
    );
    assert!(
        tftp_at < 2048 && (http_at as usize) < http_file.len(),
        "the downloads finished before the signal ({tftp_at} blocks, {http_at} bytes): slow them down"
    );
    rb.sigterm();

    // New work is refused at once: the boot HTTP listener closes.
    wait_until(
        "the boot HTTP listener to close",
        Duration::from_secs(30),
        || std::net::TcpStream::connect(("127.0.0.1", rb.boot)).is_err(),
    );
    // What was in flight completes, byte for byte.
    let got = tftp.join().unwrap().expect("the TFTP download finished");
    assert!(
        got == tftp_file,
        "TFTP: {} of {} bytes",
        got.len(),
        tftp_file.len()
    );
    let got = http.join().unwrap();
    assert!(
        got == http_file,
        "HTTP: {} of {} bytes",
        got.len(),
        http_file.len()
    );
    // Then rackboot exits, cleanly.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = rb.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "rackboot did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(p.dir.join("rackboot.log")).unwrap();
    assert!(status.success(), "rackboot exit {status}: {log}");
    assert!(log.contains("finishing the transfers in flight"), "{log}");
    eprintln!(
        "{tag}: SIGTERM at TFTP block {tftp_at}/2048 and HTTP byte {http_at}: both completed"
    );
}

/// A UDP relay in front of a BMC: forwards everything to it, and delivers at most `allow`
/// of its replies (negative: all), then goes silent, as a BMC that hangs mid-session.
struct Relay {
    port: u16,
    allow: Arc<AtomicI64>,
    /// Milliseconds each reply is held back (a slow BMC); 0: none.
    delay_ms: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(bmc: SocketAddr) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(bmc).unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        back.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let port = front.local_addr().unwrap().port();
        let allow = Arc::new(AtomicI64::new(-1));
        let delay_ms = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, d, s) = (allow.clone(), delay_ms.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut client: Option<SocketAddr> = None;
            let mut held: Vec<(Instant, Vec<u8>, SocketAddr)> = Vec::new();
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = front.recv_from(&mut buf) {
                    client = Some(from);
                    let _ = back.send(&buf[..n]);
                }
                if let Ok(n) = back.recv(&mut buf) {
                    let left = a.load(Ordering::SeqCst);
                    if left != 0 {
                        if left > 0 {
                            a.fetch_sub(1, Ordering::SeqCst);
                        }
                        if let Some(c) = client {
                            let delay = u64::try_from(d.load(Ordering::SeqCst)).unwrap_or(0);
                            let due = Instant::now() + Duration::from_millis(delay);
                            held.push((due, buf[..n].to_vec(), c));
                        }
                    }
                }
                let now = Instant::now();
                held.retain(|(due, bytes, c)| {
                    if *due <= now {
                        let _ = front.send_to(bytes, c);
                        false
                    } else {
                        true
                    }
                });
            }
        });
        Relay {
            port,
            allow,
            delay_ms,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_bmc_that_stops_answering_mid_session_gives_a_clear_error_and_no_hang() {
    let mut p = Procs::new("faults-bmc");
    let sim_port = free_port();
    start_file_ipmi_sim(&mut p, "bmc", sim_port);
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], sim_port)));
    let assets = p.dir.join("assets");
    std::fs::create_dir_all(assets.join("tftp")).unwrap();
    let rb = Rackboot::start(&p.dir, &assets);
    let (status, body) = rb.api(
        "POST",
        "/api/v1/machines",
        &format!(
            r#"{{"name":"m1","macs":["52:54:00:99:00:b1"],"bmc":{{"url":"ipmi://127.0.0.1:{}","username":"admin","password":"password"}}}}"#,
            relay.port
        ),
    );
    assert_eq!(status, 201, "{body}");
    // ipmi_sim needs a moment to listen; the relay answers nothing until it does.
    let mut first = (0, String::new());
    for _ in 0..20 {
        first = rb.api("GET", "/api/v1/machines/m1/power", "");
        if first.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        first.0, 200,
        "the BMC answers through the relay: {}",
        first.1
    );

    // The BMC goes silent after 2 replies (channel auth caps, and its refusal of suite 17: in
    // the middle of the handshake), after 5 (RAKP done, before the privilege level is set) and
    // after 6 (the session is up: silent on the command itself).
    for allow in [2, 5, 6] {
        relay.allow.store(allow, Ordering::SeqCst);
        let (status, body) = rb.api("GET", "/api/v1/machines/m1/power", "");
        assert!(
            status >= 500,
            "silent BMC after {allow} replies: HTTP {status}: {body}"
        );
        let lower = body.to_lowercase();
        assert!(
            ["did not answer", "no reply", "timed out", "timeout"]
                .iter()
                .any(|w| lower.contains(w)),
            "a clear error after {allow} replies: {body}"
        );
        assert!(!body.contains("password"), "{body}");
        eprintln!("BMC silent after {allow} replies: HTTP {status}: {body}");
    }

    // The BMC answers again: so does rackboot.
    relay.allow.store(-1, Ordering::SeqCst);
    let (status, body) = rb.api("GET", "/api/v1/machines/m1/power", "");
    assert_eq!(status, 200, "after the BMC came back: {body}");
    assert!(body.contains("off") || body.contains("on"), "{body}");
}

/// Add the machine `m1` with the BMC at `url` and wait until it answers; returns its id.
fn add_bmc_machine(rb: &Rackboot, url: &str) -> String {
    let (status, body) = rb.api(
        "POST",
        "/api/v1/machines",
        &format!(
            r#"{{"name":"m1","macs":["52:54:00:99:00:b2"],"bmc":{{"url":"{url}","username":"admin","password":"password"}}}}"#
        ),
    );
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut first = (0, String::new());
    for _ in 0..40 {
        first = rb.api("GET", "/api/v1/machines/m1/power", "");
        if first.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(first.0, 200, "the BMC answers: {}", first.1);
    id
}

/// A power call that must end (curl gives up after 120 s: status 0) with an error whose text
/// has one of `words`, and no secret in it.
fn clear_error(rb: &Rackboot, method: &str, body: &str, words: &[&str], what: &str) -> String {
    let (status, reply) = rb.api(method, "/api/v1/machines/m1/power", body);
    assert!(status != 0, "{what}: no answer (hang)");
    assert!(status >= 500, "{what}: HTTP {status}: {reply}");
    let lower = reply.to_lowercase();
    assert!(
        words.iter().any(|w| lower.contains(w)),
        "{what}: a clear error ({words:?}): {reply}"
    );
    assert!(!reply.contains("\"password\""), "{reply}");
    eprintln!("{what}: HTTP {status}: {reply}");
    reply
}

#[test]
fn an_ipmi_bmc_that_answers_slowly_or_with_errors_gives_clear_errors_and_recovers() {
    let mut p = Procs::new("faults-bmc-slow");
    // The file-backed chassis, refusing power changes while `<bmc>/fail` exists (ipmi_sim then
    // answers the chassis control command with an error completion code).
    let script = FILE_CHASSIS.replacen(
        "#!/bin/sh\n",
        "#!/bin/sh\n[ -f \"$1/fail\" ] && [ \"$3\" = set ] && { echo 'injected failure' >&2; exit 1; }\n",
        1,
    );
    assert_ne!(script, FILE_CHASSIS);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(p.dir.join("chassis.sh"), script).unwrap();
        std::fs::set_permissions(
            p.dir.join("chassis.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let sim_port = free_port();
    let bmc = start_file_ipmi_sim(&mut p, "bmc", sim_port);
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], sim_port)));
    let assets = p.dir.join("assets");
    std::fs::create_dir_all(assets.join("tftp")).unwrap();
    let rb = Rackboot::start(&p.dir, &assets);
    let id = add_bmc_machine(&rb, &format!("ipmi://127.0.0.1:{}", relay.port));

    // Slow, but within the client's 1 s per reply: everything works, just later.
    relay.delay_ms.store(400, Ordering::SeqCst);
    let (status, body) = rb.api("GET", "/api/v1/machines/m1/power", "");
    assert_eq!(status, 200, "a BMC answering in 400 ms: {body}");
    let (status, body) = rb.api("POST", "/api/v1/machines/m1/power", r#"{"action":"on"}"#);
    assert_eq!(
        status, 200,
        "power on through a BMC answering in 400 ms: {body}"
    );
    assert!(body.contains("\"on\""), "{body}");

    // Slower than the client waits (every reply 5 s late): a clear error, not a hang.
    relay.delay_ms.store(5000, Ordering::SeqCst);
    clear_error(
        &rb,
        "GET",
        "",
        &["did not answer", "no reply", "timed out", "timeout"],
        "replies 5 s late",
    );

    // It speeds up again: so does rackboot (late replies still in flight are ignored).
    relay.delay_ms.store(0, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(6));
    let (status, body) = rb.api("GET", "/api/v1/machines/m1/power", "");
    assert_eq!(status, 200, "after the BMC sped up: {body}");

    // Errors: the BMC refuses power changes with a completion code.
    let actions_before = std::fs::read_to_string(bmc.join("actions")).unwrap_or_default();
    std::fs::write(bmc.join("fail"), b"").unwrap();
    clear_error(
        &rb,
        "POST",
        r#"{"action":"off"}"#,
        &["completion code"],
        "chassis control refused",
    );
    assert_eq!(
        std::fs::read_to_string(bmc.join("actions")).unwrap_or_default(),
        actions_before,
        "nothing changed"
    );
    // Reads still work meanwhile, and the failure is on record.
    let (status, body) = rb.api("GET", "/api/v1/machines/m1/power", "");
    assert_eq!(status, 200, "{body}");
    let (_, events) = rb.api("GET", &format!("/api/v1/events?machine={id}"), "");
    assert!(events.contains("power_error"), "{events}");

    // The BMC behaves again: the same call works.
    std::fs::remove_file(bmc.join("fail")).unwrap();
    let (status, body) = rb.api("POST", "/api/v1/machines/m1/power", r#"{"action":"off"}"#);
    assert_eq!(status, 200, "after the BMC recovered: {body}");
    assert!(body.contains("\"off\""), "{body}");
}

/// How the HTTP relay in front of a Redfish BMC behaves.
#[derive(Clone, Copy, PartialEq)]
enum HttpMode {
    Pass,
    /// Every request answered `503 Service Unavailable` by the BMC.
    Fail503,
    /// Every request answered `500 Internal Server Error` with a Redfish error body.
    Fail500,
    /// Every request forwarded after this many milliseconds.
    Slow(u64),
}

/// A request-level HTTP/1.1 relay in front of a Redfish BMC: each request (head and
/// Content-Length body) goes to the BMC on a new connection, or is answered with an error, or
/// is held back, as the current mode says.
struct HttpRelay {
    port: u16,
    mode: Arc<std::sync::Mutex<HttpMode>>,
    stop: Arc<AtomicBool>,
}

impl HttpRelay {
    fn start(upstream: u16) -> HttpRelay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(std::sync::Mutex::new(HttpMode::Pass));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (mode.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (m, s) = (m.clone(), s.clone());
                        std::thread::spawn(move || http_relay_conn(conn, upstream, &m, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HttpRelay { port, mode, stop }
    }

    fn set(&self, mode: HttpMode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl Drop for HttpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn http_relay_conn(
    mut conn: std::net::TcpStream,
    upstream: u16,
    mode: &std::sync::Mutex<HttpMode>,
    stop: &AtomicBool,
) {
    use std::io::{Read, Write};
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while !stop.load(Ordering::Relaxed) {
        // One request: the head, then Content-Length bytes of body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let request: Vec<u8> = buf.drain(..head_end + len).collect();
        let current = *mode.lock().unwrap();
        let reply = match current {
            HttpMode::Fail503 => {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n"
                    .to_vec()
            }
            HttpMode::Fail500 => {
                let body = r#"{"error":{"code":"Base.1.0.GeneralError","message":"The BMC firmware is busy"}}"#;
                format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
            HttpMode::Pass | HttpMode::Slow(_) => {
                if let HttpMode::Slow(ms) = current {
                    std::thread::sleep(Duration::from_millis(ms));
                }
                // Forward on a new connection that the BMC closes after its answer.
                let head_only = String::from_utf8_lossy(&request[..head_end]).into_owned();
                let mut fwd: String = head_only
                    .trim_end_matches("\r\n")
                    .lines()
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .map(|l| format!("{l}\r\n"))
                    .collect();
                fwd.push_str("Connection: close\r\n\r\n");
                let Ok(mut up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let _ = up.write_all(fwd.as_bytes());
                let _ = up.write_all(&request[head_end..]);
                let mut answer = Vec::new();
                let _ = up.read_to_end(&mut answer);
                answer
            }
        };
        if conn.write_all(&reply).is_err() {
            return;
        }
        // The forwarded answer may say "Connection: close" (and then the client closes).
    }
}

fn start_sushy(p: &mut Procs) -> u16 {
    let port = free_port();
    let conf = p.dir.join("emulator.conf");
    let state = p.dir.join("sushy-state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        &conf,
        format!(
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {port}\nSUSHY_EMULATOR_FAKE_DRIVER = True\n\
             SUSHY_EMULATOR_STATE_DIR = '{}'\nSUSHY_EMULATOR_FAKE_SYSTEMS = [{{'uuid': '27946b59-9e44-4fa7-8e91-f3527a1ef0b3', \
             'name': 'lab-vm', 'power_state': 'Off', 'nics': [{{'mac': '52:54:00:99:00:b3', 'ip': '10.99.0.116'}}]}}]\n",
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

#[test]
fn a_redfish_bmc_that_answers_slowly_or_with_5xx_gives_clear_errors_and_recovers() {
    let mut p = Procs::new("faults-redfish");
    let sushy = start_sushy(&mut p);
    let relay = HttpRelay::start(sushy);
    let assets = p.dir.join("assets");
    std::fs::create_dir_all(assets.join("tftp")).unwrap();
    let rb = Rackboot::start(&p.dir, &assets);
    let id = add_bmc_machine(&rb, &format!("redfish+http://127.0.0.1:{}", relay.port));

    // 503 (a BMC that is busy or restarting) and 500 with a Redfish error: clear errors,
    // nothing hangs, the BMC's own message is passed on.
    relay.set(HttpMode::Fail503);
    clear_error(&rb, "GET", "", &["503"], "Redfish 503 on a read");
    clear_error(
        &rb,
        "POST",
        r#"{"action":"on"}"#,
        &["503"],
        "Redfish 503 on power on",
    );
    relay.set(HttpMode::Fail500);
    clear_error(
        &rb,
        "POST",
        r#"{"action":"on"}"#,
        &["500"],
        "Redfish 500 on power on",
    );
    let reply = clear_error(&rb, "GET", "", &["500"], "Redfish 500 on a read");
    assert!(reply.contains("firmware is busy"), "{reply}");

    // Slow (3 s per request, within the 20 s Redfish timeout): works, later.
    relay.set(HttpMode::Slow(3000));
    let (status, body) = rb.api("GET", "/api/v1/machines/m1/power", "");
    assert_eq!(status, 200, "a BMC answering in 3 s: {body}");
    assert!(body.contains("\"off\""), "{body}");

    // Slower than the Redfish timeout (25 s): a clear timeout, no hang.
    relay.set(HttpMode::Slow(25_000));
    clear_error(
        &rb,
        "GET",
        "",
        &["did not answer", "timed out", "timeout"],
        "Redfish 25 s late",
    );

    // The BMC behaves again: power on goes through and is verified (sushy's fake driver
    // applies it 1–11 s later).
    relay.set(HttpMode::Pass);
    let (status, body) = rb.api("POST", "/api/v1/machines/m1/power", r#"{"action":"on"}"#);
    assert_eq!(status, 200, "after the BMC recovered: {body}");
    assert!(body.contains("\"on\""), "{body}");
    let (_, events) = rb.api("GET", &format!("/api/v1/events?machine={id}"), "");
    assert!(
        events.contains("power_error"),
        "the failures are on record: {events}"
    );
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs needs root (make test runs as root)");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fill the filesystem of `dir` with `dir/filler` until it is full.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn a_full_data_disk_is_reported_boots_continue_nothing_stored_is_lost_and_writes_recover() {
    let p = Procs::new("faults-disk");
    let assets = p.dir.join("assets");
    std::fs::create_dir_all(assets.join("tftp")).unwrap();
    let boot_file = pseudo_random(200_000, 3);
    std::fs::write(assets.join("tftp/undionly.kpxe"), &boot_file).unwrap();
    std::fs::create_dir_all(assets.join("agent")).unwrap();
    std::fs::write(assets.join("agent/vmlinuz"), b"kernel").unwrap();
    let disk = Tmpfs::mount(&p.dir.join("disk"), "32m");
    let data = disk.0.join("data");
    let mut rb = Rackboot::start_with(&p.dir, &data, &assets, "rackboot.log", &[]);
    let add = |rb: &Rackboot, name: &str, mac: &str| {
        rb.api(
            "POST",
            "/api/v1/machines",
            &format!(r#"{{"name":"{name}","macs":["{mac}"]}}"#),
        )
    };
    assert_eq!(add(&rb, "before", "52:54:00:99:00:c1").0, 201);

    fill(&disk.0);
    // Writes go on while sled has room in the space it already allocated, then fail and say
    // so. Every write answered 201 must survive; the first refused one is a 5xx with an error.
    let mut stored = vec![];
    let mut refused = None;
    for i in 0..2000 {
        let mac = format!("52:54:00:98:{:02x}:{:02x}", i / 256, i % 256);
        let (status, body) = add(&rb, &format!("during-{i}"), &mac);
        if status == 201 {
            stored.push(mac);
            continue;
        }
        assert!(
            status >= 500,
            "a write on a full disk: HTTP {status}: {body}"
        );
        assert!(body.contains("\"error\""), "{body}");
        refused = Some(mac);
        break;
    }
    let refused = refused.expect("a write failed once the disk was full");
    eprintln!(
        "disk full: {} more machines stored, then writes refused",
        stored.len()
    );
    // Everything a booting machine needs is still served.
    for i in 0..3 {
        let url = format!(
            "http://127.0.0.1:{}/ipxe/boot.ipxe?uuid=11111111-2222-3333-4444-55555555550{i}&mac=52-54-00-99-00-d{i}&arch=x86_64",
            rb.boot
        );
        let out = Command::new("curl").args(["-sf", &url]).output().unwrap();
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && script.contains("rackboot.token="),
            "boot.ipxe on a full disk: {script}"
        );
    }
    let got = slow_tftp_get(
        SocketAddr::from(([127, 0, 0, 1], rb.tftp)),
        "undionly.kpxe",
        Duration::ZERO,
        Arc::new(AtomicI64::new(0)),
    )
    .expect("TFTP on a full disk");
    assert!(got == boot_file, "TFTP: {} bytes", got.len());
    // The condition is reported: /healthz (still 200: boots are served), /metrics and the log;
    // further writes are refused with 503 and the cause, not attempted.
    let (status, health) = rb.api("GET", "/healthz", "");
    assert_eq!(status, 200);
    assert!(
        health.starts_with("degraded:") && health.contains("No space left on device"),
        "{health}"
    );
    let (_, metrics) = rb.api("GET", "/metrics", "");
    assert!(
        metrics.contains("\nrackboot_store_writable 0\n"),
        "{metrics}"
    );
    let (status, body) = add(&rb, "while-full", "52:54:00:99:00:c2");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("No space left on device"), "{body}");
    wait_until("the failure in the log", Duration::from_secs(10), || {
        std::fs::read_to_string(p.dir.join("rackboot.log"))
            .unwrap()
            .contains("No space left on device")
    });

    // Space returns: rackboot notices by itself (no restart) and writes work again.
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    wait_until("writes to resume", Duration::from_secs(30), || {
        rb.api("GET", "/healthz", "").1 == "ok\n"
    });
    let (_, metrics) = rb.api("GET", "/metrics", "");
    assert!(
        metrics.contains("\nrackboot_store_writable 1\n"),
        "{metrics}"
    );
    assert!(std::fs::read_to_string(p.dir.join("rackboot.log"))
        .unwrap()
        .contains("inventory writable again"));
    let (status, body) = add(&rb, "after", "52:54:00:99:00:c3");
    assert_eq!(status, 201, "a write after space returned: {body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let after_id = created["id"].as_str().unwrap().to_string();
    let (status, body) = rb.api(
        "POST",
        "/api/v1/machines/after/cordon",
        r#"{"reason":"disk test"}"#,
    );
    assert_eq!(
        status, 200,
        "a lifecycle change after space returned: {body}"
    );
    assert!(body.contains("\"cordoned\""), "{body}");
    let (status, events) = rb.api("GET", &format!("/api/v1/events?machine={after_id}"), "");
    assert_eq!(status, 200);
    let n_events = events.matches("\"seq\"").count();
    assert!(n_events >= 2, "events recorded after recovery: {events}");
    let (_, list) = rb.api("GET", "/api/v1/machines", "");
    assert!(
        !list.contains(&refused),
        "the refused write is not visible: {list}"
    );

    // A later restart: everything answered 2xx is on disk, the refused write is not.
    rb.sigterm();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rb.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "rackboot did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rb = Rackboot::start_with(&p.dir, &data, &assets, "rackboot-2.log", &[]);
    let (status, list) = rb.api("GET", "/api/v1/machines", "");
    assert_eq!(status, 200);
    assert!(
        list.contains("52:54:00:99:00:c1"),
        "the machine stored before: {list}"
    );
    for mac in &stored {
        assert!(
            list.contains(mac.as_str()),
            "{mac} was stored (201) on the full disk but is gone"
        );
    }
    assert!(
        !list.contains(&refused) && !list.contains("52:54:00:99:00:c2"),
        "the refused writes did not half-happen: {list}"
    );
    let (status, m) = rb.api("GET", "/api/v1/machines/after", "");
    assert_eq!(status, 200, "{m}");
    assert!(
        m.contains("\"cordoned\""),
        "the state change persisted: {m}"
    );
    let (_, events) = rb.api("GET", &format!("/api/v1/events?machine={after_id}"), "");
    assert_eq!(
        events.matches("\"seq\"").count(),
        n_events,
        "the events recorded after recovery: {events}"
    );
    assert_eq!(add(&rb, "later", "52:54:00:99:00:c4").0, 201);
    drop(rb);
    drop(disk);
}
