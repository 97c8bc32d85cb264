//! The boot HTTP port on the wire, seen by tcpdump on a real segment: how responses end.
//! A boot storm's downloads ask `Connection: close` (as iPXE does); the last data segment of
//! such a response must carry the FIN, as nginx (`sendfile` + `tcp_nopush`) sends it — not a
//! bare FIN after it, which costs a segment and a second tail for every client to acknowledge.
//! Needs root.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::{Host, Lab};
use std::net::Ipv4Addr;
use std::time::Duration;

const APPL: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const CLI: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 50);

/// One TCP segment from the boot server, as `tcpdump -nn -r` prints it.
#[derive(Debug)]
struct Segment {
    /// Client address.port: one connection per client port.
    to: String,
    flags: String,
    len: usize,
}

fn server_segments(lab: &Lab, pcap: &std::path::Path) -> Vec<Segment> {
    let out = std::process::Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(pcap)
        .arg("tcp src port 50042")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.is_empty(), "nothing captured: {}", lab.log("wire"));
    text.lines()
        .filter_map(|l| {
            // 12:00:00.000000 IP 10.99.0.2.50042 > 10.99.0.50.41234: Flags [FP.], seq …, length 5190
            let to = l.split(" > ").nth(1)?.split(':').next()?.to_string();
            let flags = l.split("Flags [").nth(1)?.split(']').next()?.to_string();
            let len = l.rsplit("length ").next()?.trim().parse().ok()?;
            Some(Segment { to, flags, len })
        })
        .collect()
}

fn assets(lab: &Lab) -> std::path::PathBuf {
    let a = lab.dir.join("assets");
    std::fs::create_dir_all(a.join("tftp")).unwrap();
    // Smaller than the initial congestion window (all of it leaves at once, so nothing but the
    // kernel holds the partial last segment), and several windows long.
    for (name, len) in [("small.bin", 5_000usize), ("large.bin", 300_007)] {
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(a.join(name), body).unwrap();
    }
    a
}

fn curl(lab: &Lab, cli: &Host, args: &[&str]) -> String {
    let mut all = vec!["curl", "-sS", "--max-time", "20"];
    for a in args {
        if a.starts_with("http://") {
            all.extend(["-o", "/dev/null"]);
        }
        all.push(a);
    }
    all.extend(["-w", "%{http_code} %{size_download} %{num_connects}\n"]);
    let (ok, out) = lab.exec(&cli.ns, &all);
    assert!(ok, "curl {args:?}: {out}\n{}", lab.log("rackboot"));
    out
}

#[test]
fn a_closing_response_ends_with_its_fin_on_the_last_data_segment() {
    let mut lab = Lab::new("bhwire");
    let appl = lab.host("appl", APPL, None);
    let cli = lab.host("cli", CLI, None);
    let assets = assets(&lab);
    lab.rackboot(&appl, &assets, &[]);
    let pcap = lab.dir.join("wire.pcap");
    let file = pcap.display().to_string();
    let ns = appl.ns.clone();
    lab.spawn(
        "wire",
        &ns,
        &[
            "tcpdump",
            "-i",
            "eth0",
            // Each packet handed over at once: the capture stops right after the last answer.
            "--immediate-mode",
            "-U",
            "-nn",
            "-s",
            "128",
            "-w",
            &file,
            "tcp port 50042",
        ],
    );
    lab.wait_for("tcpdump", Duration::from_secs(10), |l| {
        l.log("wire").contains("listening on")
    });

    let base = "http://10.99.0.2:50042";
    let close = ["-H", "Connection: close"];
    // A sendfile answer that fits the first window, one that does not, and the two scripts.
    let small = format!("{base}/assets/small.bin");
    let large = format!("{base}/assets/large.bin");
    let script = format!(
        "{base}/ipxe/boot.ipxe?uuid=11111111-2222-3333-4444-555555555555&mac=52-54-00-99-00-01"
    );
    assert_eq!(
        curl(&lab, &cli, &[&close[..], &[&small]].concat()),
        "200 5000 1\n"
    );
    assert_eq!(
        curl(&lab, &cli, &[&close[..], &[&large]].concat()),
        "200 300007 1\n"
    );
    let s = curl(&lab, &cli, &[&close[..], &[&script]].concat());
    assert!(s.starts_with("200 ") && s.ends_with(" 1\n"), "{s}");
    let init = format!("{base}/ipxe/init.ipxe");
    let s = curl(&lab, &cli, &[&close[..], &[&init]].concat());
    assert!(s.starts_with("200 ") && s.ends_with(" 1\n"), "{s}");
    // Kept alive: two files over one connection, both whole (the connection is uncorked after
    // each answer, so the second request is not held up by a partial segment of the first).
    assert_eq!(
        curl(&lab, &cli, &[&small, &large]),
        "200 5000 1\n200 300007 0\n"
    );
    std::thread::sleep(Duration::from_millis(300));
    lab.stop("wire", Duration::from_secs(5));

    let segs = server_segments(&lab, &pcap);
    let mut conns: Vec<&str> = Vec::new();
    for s in &segs {
        if !conns.contains(&s.to.as_str()) {
            conns.push(&s.to);
        }
    }
    assert_eq!(conns.len(), 5, "one connection per curl: {segs:#?}");
    // The four `Connection: close` answers (the kept-alive connection is closed by curl first,
    // so the server's FIN there has no data to ride on).
    for c in &conns[..4] {
        let mine: Vec<&Segment> = segs.iter().filter(|s| s.to == *c).collect();
        let fins: Vec<&&Segment> = mine.iter().filter(|s| s.flags.contains('F')).collect();
        assert_eq!(fins.len(), 1, "one FIN on {c}: {mine:#?}");
        assert!(
            fins[0].len > 0,
            "a bare FIN after the data on {c} (the last segment went out alone): {mine:#?}"
        );
        let last_data = mine.iter().rev().find(|s| s.len > 0).unwrap();
        assert!(
            last_data.flags.contains('F'),
            "the FIN is not on the last data segment on {c}: {mine:#?}"
        );
    }
}
