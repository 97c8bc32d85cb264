//! TFTP against real clients on loopback: tftp-hpa (no options), atftp (blksize, windowsize,
//! tsize, and the non-numeric `tsize enable`), curl (tsize, blksize, timeout); WRQ and path
//! traversal refused with the right codes; a flood of garbage leaves the service answering; a
//! killed client ends its transfer at once.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

struct Env {
    dir: tempfile::TempDir,
    port: u16,
    server: Server,
}

/// Files: small, blksize-aligned, odd-sized, and one large enough to wrap the 16-bit block number
/// at blksize 512 (65536 × 512 = 32 MiB).
const FILES: &[(&str, usize)] = &[
    ("small.bin", 1000),
    ("aligned.bin", 512 * 64),
    ("ipxe.efi", 850_528),
    ("big.bin", 33 * 1024 * 1024 + 77),
];

fn env(extra: &[&str]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let tftp = dir.path().join("assets/tftp");
    std::fs::create_dir_all(tftp.join("sub")).unwrap();
    for (i, (name, len)) in FILES.iter().enumerate() {
        std::fs::write(tftp.join(name), pattern(*len, i as u64 + 7)).unwrap();
    }
    std::fs::write(tftp.join("sub/nested.cfg"), b"nested\n").unwrap();
    std::fs::write(dir.path().join("outside.txt"), b"secret").unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside.txt"), tftp.join("escape")).unwrap();
    let port = free_udp_port();
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{port}");
    let assets = dir.path().join("assets");
    let mut args = vec![
        "--dhcp-mode",
        "off",
        "--boot-http-listen",
        "127.0.0.1:0",
        "--tftp-listen",
        &listen,
        "--assets-dir",
        assets.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&data, &args);
    Env { dir, port, server }
}

impl Env {
    fn expect(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join("assets/tftp").join(name)).unwrap()
    }
    fn out(&self, tag: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("out-{tag}"))
    }
}

fn run(cmd: &mut Command) -> (bool, String) {
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn same(a: &Path, expected: &[u8], what: &str) {
    let got = std::fs::read(a).unwrap_or_default();
    assert!(
        got == expected,
        "{what}: {} bytes received, {} expected",
        got.len(),
        expected.len()
    );
}

#[test]
fn real_clients_fetch_every_file_intact() {
    require("tftp");
    require("atftp");
    require("curl");
    let e = env(&[]);
    let port = e.port.to_string();
    for (name, _) in FILES {
        let want = e.expect(name);
        if *name != "big.bin" {
            // tftp-hpa: bare RRQ, no options (lock-step, 512-byte blocks).
            let out = e.out(&format!("hpa-{name}"));
            let (ok, log) = run(Command::new("tftp")
                .args(["-m", "binary", "127.0.0.1", &port, "-c", "get", name])
                .arg(&out));
            assert!(ok, "tftp-hpa {name}: {log}");
            same(&out, &want, &format!("tftp-hpa {name}"));
        }
        // atftp: blksize 1468, windowsize 8, tsize.
        let out = e.out(&format!("atftp-{name}"));
        let (ok, log) = run(Command::new("atftp")
            .args(["-g", "-r", name, "-l"])
            .arg(&out)
            .args([
                "--option",
                "blksize 1468",
                "--option",
                "windowsize 8",
                "--option",
                "tsize 0",
                "127.0.0.1",
                &port,
            ]));
        assert!(ok, "atftp {name}: {log}");
        same(&out, &want, &format!("atftp windowsize 8 {name}"));
        // curl: tsize=0, blksize 1468.
        let out = e.out(&format!("curl-{name}"));
        let (ok, log) = run(Command::new("curl")
            .args(["-sS", "--tftp-blksize", "1468", "-o"])
            .arg(&out)
            .arg(format!("tftp://127.0.0.1:{port}/{name}")));
        assert!(ok, "curl {name}: {log}");
        same(&out, &want, &format!("curl {name}"));
    }
    // Block-number rollover with 512-byte blocks (curl's default options: tsize, blksize 512, timeout 6).
    let out = e.out("curl-big-512");
    let (ok, log) = run(Command::new("curl")
        .args(["-sS", "-o"])
        .arg(&out)
        .arg(format!("tftp://127.0.0.1:{port}/big.bin")));
    assert!(ok, "curl 512 rollover: {log}");
    same(
        &out,
        &e.expect("big.bin"),
        "curl blksize 512 past block 65535",
    );
    // atftp windowsize 16 and 64 on the mid-size file, plus the non-numeric `tsize enable`.
    for (opt, tag) in [
        ("windowsize 16", "w16"),
        ("windowsize 64", "w64"),
        ("tsize enable", "tsize-enable"),
    ] {
        let out = e.out(tag);
        let (ok, log) = run(Command::new("atftp")
            .args(["-g", "-r", "ipxe.efi", "-l"])
            .arg(&out)
            .args(["--option", opt, "127.0.0.1", &port]));
        assert!(ok, "atftp {opt}: {log}");
        same(&out, &e.expect("ipxe.efi"), &format!("atftp {opt}"));
    }
    // Windows-style and absolute names, and the x86_64/ virtual name.
    for (req, file) in [
        ("\\sub\\nested.cfg", "sub/nested.cfg"),
        ("/ipxe.efi", "ipxe.efi"),
        ("x86_64/ipxe.efi", "ipxe.efi"),
    ] {
        let out = e.out(&format!("name-{}", file.replace('/', "_")));
        let (ok, log) = run(Command::new("atftp")
            .args(["-g", "-r", req, "-l"])
            .arg(&out)
            .args(["127.0.0.1", &port]));
        assert!(ok, "atftp {req}: {log}");
        same(&out, &e.expect(file), req);
    }
    let m = e.server.get("/metrics");
    assert!(
        metric(&m, "rackboot_tftp_transfers_total{kind=\"completed\"") >= 15.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "rackboot_tftp_transfers_total{kind=\"option\",detail=\"windowsize\"}"
        ) >= 3.0,
        "{m}"
    );
}

/// Send one raw datagram to the server and return the reply (opcode, error code, message).
fn raw_exchange(port: u16, pkt: &[u8]) -> Option<(u16, u16, String)> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    s.send_to(pkt, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 1024];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    let b = &buf[..n];
    let op = u16::from_be_bytes([b[0], b[1]]);
    let code = u16::from_be_bytes([b[2], b[3]]);
    let msg = String::from_utf8_lossy(&b[4..n.saturating_sub(1)]).into_owned();
    Some((op, code, msg))
}

fn rrq(name: &[u8], opts: &[(&str, &str)]) -> Vec<u8> {
    let mut p = vec![0, 1];
    p.extend_from_slice(name);
    p.push(0);
    p.extend_from_slice(b"octet\0");
    for (k, v) in opts {
        p.extend_from_slice(k.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    }
    p
}

#[test]
fn writes_traversal_and_escapes_are_refused_and_garbage_is_survived() {
    require("tftp");
    let e = env(&[]);
    let port = e.port;
    // WRQ → ERROR 2 (access violation), by a real client and raw.
    let src = e.dir.path().join("upload.txt");
    std::fs::write(&src, b"x").unwrap();
    let (_, log) = run(Command::new("tftp")
        .args(["-m", "binary", "127.0.0.1", &port.to_string(), "-c", "put"])
        .arg(&src)
        .arg("up.txt"));
    assert!(
        log.to_lowercase().contains("access violation") || log.contains("Error code 2"),
        "tftp put: {log}"
    );
    let mut wrq = rrq(b"up.txt", &[]);
    wrq[1] = 2;
    assert_eq!(raw_exchange(port, &wrq).map(|r| (r.0, r.1)), Some((5, 2)));
    assert!(!e.dir.path().join("assets/tftp/up.txt").exists());
    // Traversal, absolute escape, symlink out of the root, control characters → ERROR 2.
    for name in [
        &b"../outside.txt"[..],
        b"/../outside.txt",
        b"sub/../../outside.txt",
        b"escape",
        b"bad\x01name",
    ] {
        let r = raw_exchange(port, &rrq(name, &[])).unwrap();
        assert_eq!(
            (r.0, r.1),
            (5, 2),
            "{}: {r:?}",
            String::from_utf8_lossy(name)
        );
    }
    // Missing file → ERROR 1.
    assert_eq!(
        raw_exchange(port, &rrq(b"nope.efi", &[])).map(|r| (r.0, r.1)),
        Some((5, 1))
    );
    // Flood of malformed packets, then a normal transfer still works.
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..2000u32 {
        let junk = pattern((i % 700) as usize + 1, u64::from(i));
        let _ = s.send_to(&junk, ("127.0.0.1", port));
    }
    let r = raw_exchange(port, &rrq(b"small.bin", &[])).unwrap();
    assert_eq!(r.0, 3, "DATA expected after the flood: {r:?}");
    let m = e.server.get("/metrics");
    assert!(
        metric(
            &m,
            "rackboot_tftp_transfers_total{kind=\"dropped\",detail=\"malformed\"}"
        ) >= 100.0,
        "{m}"
    );
}

#[test]
fn single_port_mode_serves_concurrent_clients() {
    require("curl");
    require("atftp");
    let e = env(&["--tftp-single-port", "true"]);
    let port = e.port.to_string();
    let children: Vec<_> = (0..8)
        .map(|i| {
            let out = e.out(&format!("sp-{i}"));
            let child = Command::new("curl")
                .args(["-sS", "--tftp-blksize", "1468", "-o"])
                .arg(&out)
                .arg(format!("tftp://127.0.0.1:{port}/ipxe.efi"))
                .spawn()
                .unwrap();
            (out, child)
        })
        .collect();
    let want = e.expect("ipxe.efi");
    for (out, mut child) in children {
        assert!(child.wait().unwrap().success());
        same(&out, &want, "single-port curl");
    }
    let out = e.out("sp-atftp");
    let (ok, log) = run(Command::new("atftp")
        .args(["-g", "-r", "ipxe.efi", "-l"])
        .arg(&out)
        .args(["--option", "windowsize 16", "127.0.0.1", &port]));
    assert!(ok, "{log}");
    same(&out, &want, "single-port atftp windowsize 16");
}

/// curl killed mid-download (33 MiB, lock-step, curl's negotiated 6 s timeout): its port is
/// gone, the server's next DATA is answered with an ICMP port unreachable and the transfer ends
/// there, as failed "client_gone", its slot free. Retrying into the closed port would hold it
/// for five 6 s timeouts and end as "timeout".
#[test]
fn a_killed_client_ends_its_transfer_at_once() {
    killed_client_ends_its_transfer(&[]);
}

/// The same in single-port mode, where the socket is shared and not connected: the refusal
/// comes through its error queue (IP_RECVERR).
#[test]
fn a_killed_client_ends_its_single_port_transfer_at_once() {
    killed_client_ends_its_transfer(&["--tftp-single-port", "true"]);
}

fn killed_client_ends_its_transfer(extra: &[&str]) {
    require("curl");
    let e = env(extra);
    let mut child = Command::new("curl")
        .args(["-sS", "-o", "/dev/null"])
        .arg(format!("tftp://127.0.0.1:{}/big.bin", e.port))
        .spawn()
        .unwrap();
    let active = "rackboot_tftp_active_transfers";
    let gone = "rackboot_tftp_transfers_total{kind=\"failed\",detail=\"client_gone\"}";
    // Kill it once its transfer is under way.
    let mut m = String::new();
    for _ in 0..200 {
        m = e.server.get("/metrics");
        if metric(&m, active) >= 1.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        metric(&m, active),
        1.0,
        "curl's transfer never started: {m}"
    );
    child.kill().unwrap();
    let _ = child.wait();
    for _ in 0..200 {
        m = e.server.get("/metrics");
        if metric(&m, gone) >= 1.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(metric(&m, gone), 1.0, "{m}");
    assert_eq!(metric(&m, active), 0.0, "the slot is free: {m}");
    assert_eq!(
        metric(
            &m,
            "rackboot_tftp_transfers_total{kind=\"failed\",detail=\"timeout\"}"
        ),
        0.0,
        "{m}"
    );
}
