//! TFTP on a lossy segment: nftables on the client's host drops every 97th DATA datagram from
//! rackboot's transfer ports. atftp (windowsize 8) and tftp-hpa's client (lock-step), neither
//! setting a `timeout`, must still get the exact file, and rackboot must resend little more than
//! what was lost: no window cascade where every window goes out twice. Real peers in network
//! namespaces; needs root.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::{metric_sum, qemu};
use std::net::Ipv4Addr;

#[test]
fn windowed_and_lockstep_fetches_survive_loss_without_resending_everything() {
    let (mut lab, appl) = qemu::boot_segment("tftploss", "", &[("tftp/ipxe.efi", "tftp/ipxe.efi")]);
    let cli = lab.host("cli", Ipv4Addr::new(10, 99, 0, 50), None);
    // DATA from rackboot's per-transfer ports (not 67/69); a prime period, so the losses fall
    // on every position of a window over the run. `counter` tells how many were dropped.
    let rules = lab.write(
        "loss.nft",
        "table inet loss {\n  chain input {\n    type filter hook input priority 0;\n    \
         ip saddr 10.99.0.2 udp sport >= 1024 udp length > 500 numgen inc mod 97 == 0 counter drop\n  }\n}\n",
    );
    let (ok, out) = lab.exec(&cli.ns, &["nft", "-f", &rules.display().to_string()]);
    assert!(ok, "nft: {out}");
    let want = std::fs::read(lab.dir.join("assets/tftp/ipxe.efi")).unwrap();
    let out = |name: &str| lab.dir.join(name).display().to_string();
    let fetches: [(&str, Vec<String>, String); 2] = [
        (
            "atftp windowsize 8",
            [
                "timeout",
                "120",
                "atftp",
                "--option",
                "blksize 1468",
                "--option",
                "windowsize 8",
                "-g",
                "-r",
                "ipxe.efi",
                "-l",
                &out("atftp.efi"),
                "10.99.0.2",
            ]
            .map(String::from)
            .to_vec(),
            out("atftp.efi"),
        ),
        (
            "tftp-hpa lock-step",
            [
                "timeout",
                "120",
                "tftp",
                "-m",
                "binary",
                "10.99.0.2",
                "-c",
                "get",
                "ipxe.efi",
                &out("hpa.efi"),
            ]
            .map(String::from)
            .to_vec(),
            out("hpa.efi"),
        ),
    ];
    let before = lab.admin_get(&appl, "/metrics");
    for (what, args, file) in &fetches {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, log) = lab.exec(&cli.ns, &args);
        let got = std::fs::read(file).unwrap_or_default();
        assert!(
            ok && got == want,
            "{what}: exit ok {ok}, {} of {} bytes, identical {}\n{log}",
            got.len(),
            want.len(),
            got == want
        );
    }
    let (_, ruleset) = lab.exec(&cli.ns, &["nft", "list", "ruleset"]);
    let dropped: f64 = ruleset
        .split("counter packets ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in:\n{ruleset}"));
    let after = lab.admin_get(&appl, "/metrics");
    let rose = |prefix: &str| metric_sum(&after, prefix) - metric_sum(&before, prefix);
    let resent = rose("rackboot_tftp_retransmitted_datagrams_total");
    let probes = rose("rackboot_tftp_tail_probes_total");
    eprintln!("{resent} datagrams resent ({probes} tail probes) for {dropped} lost");
    let completed = rose("rackboot_tftp_transfers_total{kind=\"completed\"");
    assert_eq!(completed, 2.0, "metrics:\n{after}");
    // ~580 blocks of 1468 and ~1660 of 512: over 20 losses.
    assert!(dropped >= 10.0, "only {dropped} datagrams dropped");
    // About a window (8) per loss at most, twice for slack (a spurious timeout on a loaded
    // machine resends a window too). Resending whole runs of the file would exceed it.
    assert!(
        resent >= 1.0 && resent <= 16.0 * dropped + 16.0,
        "{resent} datagrams resent for {dropped} lost"
    );
}
