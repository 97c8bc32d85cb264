//! The zero-copy shell on a loopback socket: every file and boot-script answer compared, byte
//! for byte apart from `date`, with the axum handler's answer to the same request (reached
//! through a percent-encoded path or a `content-length: 0`, which the fast path leaves to axum); curl downloads with ranges; keep-
//! alive, pipelining and the hand-off to hyper mid-connection; HTTP/2 to hyper; 400s.
#![allow(clippy::unwrap_used)]

use super::tests::env;
use super::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

struct Server {
    port: u16,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(state: BootHttp) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(fast::serve(listener, router(state.clone()), state, rx));
    Server { port, stop, task }
}

/// One response read off `s`: (head without the `date` line, body).
fn read_response(s: &mut TcpStream, head_request: bool) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed in the head: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![
        0u8;
        if head_request || status == 304 {
            0
        } else {
            len
        }
    ];
    s.read_exact(&mut body).unwrap();
    let head = head
        .lines()
        .filter(|l| !l.starts_with("date: "))
        .collect::<Vec<_>>()
        .join("\n");
    (head, body)
}

fn exchange(port: u16, req: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    read_response(&mut s, req.starts_with("HEAD "))
}

/// Send `fast` (which the fast path must take) and `slow` (which it must leave to hyper), each
/// on its own connection; their answers.
async fn fast_and_slow(
    port: u16,
    fast: &str,
    slow: &str,
) -> ((String, Vec<u8>), (String, Vec<u8>)) {
    assert_eq!(
        head::classify(fast.as_bytes()).to_owned_kind(),
        "fast",
        "{fast:?}"
    );
    assert_eq!(head::classify(slow.as_bytes()), head::Head::Other);
    let (f, s) = (fast.to_string(), slow.to_string());
    tokio::task::spawn_blocking(move || (exchange(port, &f), exchange(port, &s)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_answers_equal_the_axum_handler() {
    let e = env();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let assets = e.state.assets.root().to_path_buf();
    std::fs::write(assets.join("big.bin"), &big).unwrap();
    let srv = start(e.state.clone()).await;
    let port = srv.port;
    let tag = exchange(port, "HEAD /assets/big.bin HTTP/1.1\r\n\r\n")
        .0
        .lines()
        .find_map(|l| l.strip_prefix("etag: ").map(str::to_string))
        .unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            "GET {} HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            "/assets/big.bin",
        ),
        ("HEAD {} HTTP/1.1\r\n\r\n".into(), "/assets/big.bin"),
        (
            "GET {} HTTP/1.1\r\nRange: bytes=100-2000099\r\n\r\n".into(),
            "/assets/big.bin",
        ),
        (
            "GET {} HTTP/1.1\r\nRange: bytes=-10\r\n\r\n".into(),
            "/assets/big.bin",
        ),
        (
            "GET {} HTTP/1.1\r\nRange: bytes=3000000-\r\n\r\n".into(),
            "/assets/big.bin",
        ),
        (
            "GET {} HTTP/1.1\r\nRange: bytes=0-1,5-6\r\n\r\n".into(),
            "/assets/big.bin",
        ),
        (
            format!("GET {{}} HTTP/1.1\r\nIf-None-Match: {tag}\r\n\r\n"),
            "/assets/big.bin",
        ),
        (
            format!("GET {{}} HTTP/1.1\r\nIf-Range: {tag}\r\nRange: bytes=5-9\r\n\r\n"),
            "/assets/big.bin",
        ),
        (
            "GET {} HTTP/1.1\r\nIf-Range: \"old\"\r\nRange: bytes=5-9\r\n\r\n".into(),
            "/assets/big.bin",
        ),
        (
            "GET {} HTTP/1.1\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n".into(),
            "/assets/big.bin",
        ),
        (
            "GET {} HTTP/1.0\r\nRange: bytes=0-9\r\n\r\n".into(),
            "/assets/big.bin",
        ),
        (
            "GET {} HTTP/1.0\r\nConnection: keep-alive\r\nRange: bytes=0-9\r\n\r\n".into(),
            "/assets/big.bin",
        ),
        ("GET {} HTTP/1.1\r\n\r\n".into(), "/assets/agent/vmlinuz"),
        ("GET {} HTTP/1.1\r\n\r\n".into(), "/tftp/x86_64/ipxe.efi"),
        (
            "GET {} HTTP/1.1\r\nRange: bytes=256-511\r\n\r\n".into(),
            "/tftp/ipxe.efi",
        ),
        ("GET {} HTTP/1.1\r\n\r\n".into(), "/assets/nothere"),
        ("HEAD {} HTTP/1.1\r\n\r\n".into(), "/assets/nothere"),
        ("GET {} HTTP/1.1\r\n\r\n".into(), "/assets/agent"),
    ];
    let before = e.state.metrics.render(0);
    for (template, path) in &cases {
        // The first letter percent-encoded: axum decodes it and serves the same file; the fast
        // path leaves such paths to axum.
        let at = path.find('/').and_then(|_| path[1..].find('/')).unwrap() + 2;
        let slow_path = format!(
            "{}%{:02X}{}",
            &path[..at],
            path.as_bytes()[at],
            &path[at + 1..]
        );
        assert_ne!(&slow_path, path);
        let fast = template.replace("{}", path);
        let slow = template.replace("{}", &slow_path);
        let (a, b) = fast_and_slow(port, &fast, &slow).await;
        assert_eq!(a.0, b.0, "{fast:?}");
        assert!(
            a.1 == b.1,
            "{fast:?}: bodies differ ({} / {} bytes)",
            a.1.len(),
            b.1.len()
        );
    }
    let (head, body) = exchange(port, "GET /assets/big.bin HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(body == big);
    let after = e.state.metrics.render(0);
    assert_ne!(before, after, "the file counters moved");
    let _ = srv.stop.send(true);
    srv.task.await.unwrap();
}

/// Boot scripts answered by the fast path equal axum's answer to the same request (reached with
/// a `content-length: 0` header, which the fast path leaves to hyper), for every kind of
/// answer: stored modes, the agent (its per-boot token aside), refusals; keep-alive, HEAD,
/// HTTP/1.0 and `connection: close` as hyper answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_script_answers_equal_the_axum_handler() {
    use rackboot_store::{BootModeSetting, DiskMethod};
    let e = env();
    let inv = &e.state.inventory;
    let modes = [
        (
            "52:54:00:99:01:01",
            BootModeSetting::Disk {
                method: DiskMethod::Sanboot,
            },
        ),
        (
            "52:54:00:99:01:02",
            BootModeSetting::Disk {
                method: DiskMethod::Http404,
            },
        ),
        (
            "52:54:00:99:01:03",
            BootModeSetting::Chain {
                url: "http://10.99.0.9/next.ipxe".into(),
            },
        ),
        (
            "52:54:00:99:01:04",
            BootModeSetting::Cordoned {
                reason: "rack maintenance".into(),
            },
        ),
        (
            "52:54:00:99:01:05",
            BootModeSetting::Profile {
                profile: "missing".into(),
            },
        ),
    ];
    for (mac, mode) in modes {
        inv.add(crate::api::NewMachine {
            macs: vec![mac.into()],
            boot_mode: Some(mode),
            ..Default::default()
        })
        .unwrap();
    }
    let srv = start(e.state.clone()).await;
    let port = srv.port;
    let zero = "uuid=00000000-0000-0000-0000-000000000000";
    let mut targets: Vec<String> = (1..=5)
        .map(|i| format!("/ipxe/boot.ipxe?{zero}&mac=52-54-00-99-01-0{i}&arch=x86_64"))
        .collect();
    targets.extend([
        // Unknown machines get the agent; percent-escapes are decoded alike.
        "/ipxe/boot.ipxe?uuid=11111111-2222-3333-4444-555555555551&mac=52-54-00-99-00-10".into(),
        "/ipxe/boot.ipxe?uuid=11111111%2D2222-3333-4444-555555555552&arch=arm64".into(),
        // The first script of every iPXE boot (a query is ignored, as axum's route does).
        "/ipxe/init.ipxe".into(),
        "/ipxe/init.ipxe?uuid=11111111-2222-3333-4444-555555555551".into(),
        // Refused queries.
        "/ipxe/boot.ipxe".into(),
        "/ipxe/boot.ipxe?".into(),
        "/ipxe/boot.ipxe?uuid=nope".into(),
        "/ipxe/boot.ipxe?uuid=11111111-2222-3333-4444-555555555551%0Ashell".into(),
        format!("/ipxe/boot.ipxe?{zero}&{zero}"),
    ]);
    let templates = [
        "GET {} HTTP/1.1\r\nHost: x\r\n",
        "HEAD {} HTTP/1.1\r\n",
        "GET {} HTTP/1.0\r\n",
        "GET {} HTTP/1.0\r\nConnection: keep-alive\r\n",
        "GET {} HTTP/1.1\r\nConnection: close\r\n",
    ];
    // The agent's per-boot token differs from one answer to the next.
    let mask = |body: Vec<u8>| -> String {
        String::from_utf8(body)
            .unwrap()
            .split(' ')
            .map(|w| match w.strip_prefix("rackboot.token=") {
                Some(t) if t.len() == 32 => "rackboot.token=<32 hex>",
                _ => w,
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let before = e.state.metrics.render(0);
    let mut statuses = std::collections::BTreeSet::new();
    for target in &targets {
        for template in templates {
            let fast = format!("{}\r\n", template.replace("{}", target));
            let slow = format!(
                "{}content-length: 0\r\n\r\n",
                template.replace("{}", target)
            );
            let (a, b) = fast_and_slow(port, &fast, &slow).await;
            assert_eq!(a.0, b.0, "{fast:?}");
            let (body_a, body_b) = (mask(a.1), mask(b.1));
            assert_eq!(body_a, body_b, "{fast:?}");
            statuses.insert(a.0[9..12].to_string());
            if target.contains("99-01-03") && !fast.starts_with("HEAD") {
                assert!(body_a.contains("chain --autofree http://10.99.0.9/next.ipxe"));
            }
        }
    }
    let seen: Vec<_> = statuses.iter().map(String::as_str).collect();
    assert_eq!(seen, ["200", "400", "404", "500"], "every kind of answer");
    assert_ne!(before, e.state.metrics.render(0), "the boot counters moved");

    // Keep-alive: scripts, a file, a hand-off to hyper (init.ipxe with a body length: not a
    // fast-path head) and a fast-path init.ipxe on one connection.
    let q = &targets[0];
    let pipelined = format!(
        "GET {q} HTTP/1.1\r\n\r\nGET {q} HTTP/1.1\r\n\r\nGET /tftp/ipxe.efi HTTP/1.1\r\n\r\nGET /ipxe/init.ipxe HTTP/1.1\r\ncontent-length: 0\r\n\r\nGET {q} HTTP/1.1\r\n\r\nGET /ipxe/init.ipxe HTTP/1.1\r\n\r\n"
    );
    let answers = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(pipelined.as_bytes()).unwrap();
        (0..6)
            .map(|_| read_response(&mut s, false))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (i, (head, body)) in answers.iter().enumerate() {
        assert!(head.starts_with("HTTP/1.1 200 OK"), "answer {i}: {head}");
        assert_eq!(i == 2, body.len() == 10_000, "answer {i}");
        let body = String::from_utf8_lossy(body);
        match i {
            2 => {}
            3 | 5 => assert!(body.contains("init"), "{body}"),
            _ => assert!(
                body.contains("sanboot --no-describe --drive 0x80"),
                "{body}"
            ),
        }
    }
    let _ = srv.stop.send(true);
    srv.task.await.unwrap();
}

impl head::Head {
    fn to_owned_kind(&self) -> &'static str {
        match self {
            head::Head::Fast(..) => "fast",
            head::Head::Other => "other",
            head::Head::Partial => "partial",
            head::Head::Malformed => "malformed",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_downloads_ranges_pipelining_and_hand_off() {
    let e = env();
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i * 13 % 253) as u8).collect();
    let dir = e.state.assets.root().to_path_buf();
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    let srv = start(e.state.clone()).await;
    let port = srv.port;
    let out = dir.join("curl.out");
    let big2 = big.clone();
    tokio::task::spawn_blocking(move || {
        let curl = |args: &[&str]| -> Vec<u8> {
            let o = std::process::Command::new("curl")
                .args(["-sS", "--fail", "-o"])
                .arg(&out)
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
            std::fs::read(&out).unwrap()
        };
        let url = format!("http://127.0.0.1:{port}/assets/big.bin");
        assert!(curl(&[&url]) == big2, "whole file");
        assert!(curl(&["-r", "1000-1999999", &url]) == big2[1000..2_000_000]);
        assert!(curl(&["-r", "-77", &url]) == big2[big2.len() - 77..]);
        assert!(curl(&["--http1.0", "-r", "4999990-", &url]) == big2[4_999_990..]);
        // Two files on one kept-alive connection, then a script (axum) on the same one.
        let script = format!("http://127.0.0.1:{port}/ipxe/init.ipxe");
        let o = std::process::Command::new("curl")
            .args(["-sS", "--fail", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects} "])
            .args([&url, &url])
            .output()
            .unwrap();
        assert!(o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stdout), "1 0 ", "one connection reused");
        // HTTP/2 prior knowledge (the agent link's transport) goes to hyper.
        let o = std::process::Command::new("curl")
            .args(["-sS", "--fail", "--http2-prior-knowledge", &script])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("#!ipxe"));
        // Pipelined: a file, a range, then a script request handed to hyper mid-connection.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            b"GET /assets/agent/vmlinuz HTTP/1.1\r\n\r\nGET /assets/big.bin HTTP/1.1\r\nRange: bytes=10-19\r\n\r\nGET /ipxe/init.ipxe HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET /assets/agent/vmlinuz HTTP/1.1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(read_response(&mut s, false).1, b"kernel");
        assert!(read_response(&mut s, false).1 == big2[10..20]);
        assert!(read_response(&mut s, false).1.starts_with(b"#!ipxe"));
        assert_eq!(read_response(&mut s, false).1, b"kernel");
        // Malformed heads: 400 and closed, as hyper answers.
        for bad in ["GARBAGE\r\n\r\n", "GET /assets/a HTTP/1.1\r\nBad Header\r\n\r\n"] {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(bad.as_bytes()).unwrap();
            let mut all = String::new();
            s.read_to_string(&mut all).unwrap();
            assert!(all.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{all}");
            assert!(all.contains("connection: close\r\n"), "{all}");
        }
    })
    .await
    .unwrap();
    let _ = srv.stop.send(true);
    srv.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_a_transfer_in_flight() {
    let e = env();
    let big: Vec<u8> = (0..8_000_000u32).map(|i| (i * 3 % 241) as u8).collect();
    std::fs::write(e.state.assets.root().join("big.bin"), &big).unwrap();
    let srv = start(e.state.clone()).await;
    let port = srv.port;
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let reader = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /assets/big.bin HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut signalled = false;
        loop {
            let n = s.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
            if !signalled && got.len() > 100_000 {
                started_tx.send(()).unwrap();
                signalled = true;
            }
            if !signalled || got.len() < 1_000_000 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        got
    });
    tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
        .await
        .unwrap();
    let _ = srv.stop.send(true);
    srv.task.await.unwrap();
    let got = reader.await.unwrap();
    let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(got[at..] == big, "the whole file, then closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_by_idle_or_half_sent_heads() {
    let e = env();
    let srv = start(e.state.clone()).await;
    let port = srv.port;
    let clients = tokio::task::spawn_blocking(move || {
        let idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut half = TcpStream::connect(("127.0.0.1", port)).unwrap();
        half.write_all(b"GET /assets/agent/vmlinuz HTTP/1.1\r\nHost: x")
            .unwrap();
        // A kept-alive connection after an answered request.
        let mut kept = TcpStream::connect(("127.0.0.1", port)).unwrap();
        kept.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        kept.write_all(b"GET /assets/agent/vmlinuz HTTP/1.1\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut kept, false).1, b"kernel");
        (idle, half, kept)
    })
    .await
    .unwrap();
    let _ = srv.stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), srv.task)
        .await
        .expect("the server stopped without waiting for the clients")
        .unwrap();
    drop(clients);
}
