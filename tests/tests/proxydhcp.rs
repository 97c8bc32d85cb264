//! ProxyDHCP on a real segment: dnsmasq hands out addresses, rackboot answers boot questions.
//! Clients: a PXE/HTTP-boot/iPXE DHCP client made here (independent of rackboot's code) and
//! perfdhcp (Kea) as a relay. Needs root.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::dhcp_client::{client_socket, exchange, packet, ClientSpec, ReplyView};
use rackboot_e2e::{in_netns, Host, Lab};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

const SITE: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const APPL: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const CLI: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 50);

fn assets(lab: &Lab) -> std::path::PathBuf {
    let a = lab.dir.join("assets");
    std::fs::create_dir_all(a.join("tftp")).unwrap();
    for f in ["undionly.kpxe", "ipxe.efi"] {
        std::fs::write(a.join("tftp").join(f), f.as_bytes()).unwrap();
    }
    a
}

fn spec(mac_last: u8, arch: u16, vendor: &str, ipxe: bool) -> ClientSpec {
    ClientSpec {
        mac: [0x52, 0x54, 0x00, 0x99, 0x01, mac_last],
        xid: 0x1000_0000 + u32::from(mac_last),
        arch,
        vendor_class: vendor.into(),
        ipxe,
        uuid: Some([
            0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, 0x55, 0x55, 0x55, 0x55,
            0x55, mac_last,
        ]),
        giaddr: Ipv4Addr::UNSPECIFIED,
    }
}

fn broadcast_discover(cli: &Host, c: ClientSpec) -> Vec<ReplyView> {
    in_netns(&cli.ns, move || {
        let s = client_socket(68);
        exchange(
            &s,
            &packet(&c, 1, None),
            SocketAddr::from(([255, 255, 255, 255], 67)),
            c.xid,
            Duration::from_millis(2500),
        )
    })
}

fn ours(replies: &[ReplyView]) -> Option<&ReplyView> {
    replies.iter().find(|r| r.server_id() == Some(APPL))
}

fn check_proxy_reply(r: &ReplyView, msg_type: u8) {
    assert_eq!(r.msg_type(), Some(msg_type));
    assert_eq!(
        r.yiaddr,
        Ipv4Addr::UNSPECIFIED,
        "ProxyDHCP must never hand out an address"
    );
    assert_eq!(r.siaddr, APPL);
}

#[test]
fn boot_clients_get_the_right_file_beside_the_site_dhcp_server() {
    let mut lab = Lab::new("proxydhcp");
    let site = lab.host("site", SITE, Some("fd99::1/64"));
    let appl = lab.host("appl", APPL, None);
    let cli = lab.host("cli", CLI, None);
    lab.site_dhcp(&site);
    let assets = assets(&lab);
    lab.rackboot(&appl, &assets, &[]);

    // UEFI HTTP boot (arch 16): the HTTP URL of ipxe.efi, with HTTPClient.
    let replies = broadcast_discover(
        &cli,
        spec(0x16, 16, "HTTPClient:Arch:00016:UNDI:003000", false),
    );
    let r = ours(&replies)
        .unwrap_or_else(|| panic!("no ProxyDHCP offer: {replies:?}\n{}", lab.log("rackboot")));
    check_proxy_reply(r, 2);
    assert_eq!(r.opt_str(60).as_deref(), Some("HTTPClient"));
    assert_eq!(
        r.opt_str(67).as_deref(),
        Some("http://10.99.0.2:50042/tftp/x86_64/ipxe.efi")
    );
    assert_eq!(r.file, "http://10.99.0.2:50042/tftp/x86_64/ipxe.efi");
    let site_offer = replies
        .iter()
        .find(|r| r.server_id() == Some(SITE))
        .expect("the site DHCP server offers an address");
    assert_ne!(site_offer.yiaddr, Ipv4Addr::UNSPECIFIED);

    // Legacy BIOS PXE ROM (arch 0): undionly.kpxe over TFTP, file in option 67, header, sname/66.
    let bios = spec(0x00, 0, "PXEClient:Arch:00000:UNDI:002001", false);
    let replies = broadcast_discover(&cli, bios.clone());
    let r = ours(&replies).expect("BIOS offer");
    check_proxy_reply(r, 2);
    assert_eq!(r.opt_str(60).as_deref(), Some("PXEClient"));
    assert_eq!(r.opt_str(67).as_deref(), Some("undionly.kpxe"));
    assert_eq!(r.file, "undionly.kpxe");
    assert_eq!(r.sname, "10.99.0.2");
    assert_eq!(r.opt_str(66).as_deref(), Some("10.99.0.2"));
    assert_eq!(
        r.options.get(&97).map(Vec::len),
        Some(17),
        "option 97 echoed"
    );

    // Phase two: REQUEST to 4011 → ACK unicast back to the client.
    let ack = in_netns(&cli.ns, move || {
        let s = client_socket(68);
        exchange(
            &s,
            &packet(&bios, 3, Some(APPL)),
            SocketAddr::from((APPL, 4011)),
            bios.xid,
            Duration::from_millis(1500),
        )
    });
    let r = ack
        .iter()
        .find(|r| r.from == SocketAddr::from((APPL, 4011)))
        .expect("ACK from port 4011");
    check_proxy_reply(r, 5);
    assert_eq!(r.file, "undionly.kpxe");

    // UEFI x86-64 PXE (arch 7) → ipxe.efi; a client already in iPXE → the init script URL.
    let r = broadcast_discover(
        &cli,
        spec(0x07, 7, "PXEClient:Arch:00007:UNDI:003000", false),
    );
    assert_eq!(ours(&r).expect("UEFI offer").file, "ipxe.efi");
    let r = broadcast_discover(
        &cli,
        spec(0x77, 7, "PXEClient:Arch:00007:UNDI:003010", true),
    );
    assert_eq!(
        ours(&r).expect("iPXE offer").file,
        "http://10.99.0.2:50042/ipxe/init.ipxe"
    );

    // Not network-booting: no answer from rackboot (the site server still answers).
    let replies = broadcast_discover(&cli, spec(0x42, 0, "MSFT 5.0", false));
    assert!(
        ours(&replies).is_none(),
        "rackboot answered a non-PXE client"
    );
    assert!(replies.iter().any(|r| r.server_id() == Some(SITE)));

    // A burst of malformed packets: counted, and the service keeps answering.
    in_netns(&cli.ns, || {
        let s = client_socket(0);
        for i in 0..500u32 {
            let mut junk = packet(&spec(0x01, 0, "PXEClient", false), 1, None);
            let cut = 236 + (i as usize % 40);
            junk.truncate(cut);
            junk.extend_from_slice(&[93, 200, 0]); // option length runs past the end
            let _ = s.send_to(&junk, SocketAddr::from((APPL, 67)));
        }
    });
    let r = broadcast_discover(
        &cli,
        spec(0x08, 7, "PXEClient:Arch:00007:UNDI:003000", false),
    );
    assert!(ours(&r).is_some(), "no answer after the malformed burst");
    let metrics = lab.admin_get(&appl, "/metrics");
    let malformed: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("rackboot_dhcp_packets_total{kind=\"malformed\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    // A burst can overflow the socket buffer (kernel rmem limit): most, not all, arrive.
    assert!(
        malformed >= 100.0,
        "malformed counter: {malformed}\n{metrics}"
    );

    // Every boot client was recorded in the inventory (discovery).
    lab.wait_for("discovered machines", Duration::from_secs(10), |lab| {
        let list = lab.admin_get(&appl, "/api/v1/machines");
        [
            "52:54:00:99:01:16",
            "52:54:00:99:01:00",
            "52:54:00:99:01:07",
            "52:54:00:99:01:77",
        ]
        .iter()
        .all(|m| list.contains(m))
            && list.contains("\"state\":\"discovered\"")
            && !list.contains("52:54:00:99:01:42")
    });
}

#[test]
fn relayed_requests_get_unicast_replies_to_the_relay() {
    let mut lab = Lab::new("relay");
    let appl = lab.host("appl", APPL, None);
    let cli = lab.host("cli", CLI, None);
    let assets = assets(&lab);
    lab.rackboot(&appl, &assets, &[]);
    let vc: String = "PXEClient:Arch:00007:UNDI:003000"
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (_, out) = lab.exec(
        &cli.ns,
        &[
            "perfdhcp",
            "-4",
            "-l",
            "eth0",
            "-r",
            "10",
            "-n",
            "10",
            "-p",
            "5",
            "-R",
            "10",
            "-o",
            "93,0007",
            "-o",
            &format!("60,{vc}"),
            "-o",
            "94,010300",
            "10.99.0.2",
        ],
    );
    // perfdhcp (a relay: giaddr = its address, source port 67) must see our OFFERs and ACKs.
    let received = |section: &str| -> u64 {
        let s = out.split(section).nth(1).unwrap_or("");
        s.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("received packets: ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    assert!(
        received("DISCOVER-OFFER") >= 5,
        "perfdhcp saw too few OFFERs:\n{out}\n{}",
        lab.log("rackboot")
    );
    assert!(received("REQUEST-ACK") >= 1, "perfdhcp saw no ACK:\n{out}");
}

/// `rackboot-dhcp-load` (the benchmark's generator: a relay sending DISCOVERs in `sendmmsg`
/// batches, reading OFFERs in `recvmmsg` batches) against the real service: every DISCOVER of a
/// modest rate is answered, each OFFER is matched to its DISCOVER by xid, and nothing is counted
/// twice. This is what `make bench` trusts to find the ceiling.
#[test]
fn the_load_generator_counts_every_offer_once() {
    let mut lab = Lab::new("dload");
    let appl = lab.host("appl", APPL, None);
    let cli = lab.host("cli", CLI, None);
    let assets = assets(&lab);
    lab.rackboot(&appl, &assets, &[]);
    let load = rackboot_e2e::workspace_bin("rackboot-dhcp-load")
        .display()
        .to_string();
    let (ok, out) = lab.exec(
        &cli.ns,
        &[
            &load,
            "--server",
            "10.99.0.2",
            "--relay",
            "10.99.0.50",
            "--rate",
            "2000",
            "--seconds",
            "1",
            "--clients",
            "300",
        ],
    );
    assert!(ok, "rackboot-dhcp-load failed:\n{out}");
    let value = |key: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}="))?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key}= in:\n{out}"))
    };
    assert_eq!(value("sent"), 2000, "{out}");
    assert_eq!(value("send_errors"), 0, "{out}");
    assert_eq!(
        value("offers"),
        2000,
        "every DISCOVER answered once:\n{out}"
    );
    assert_eq!(value("lost"), 0, "{out}");
    assert_eq!(value("other_replies"), 0, "{out}");
    assert_eq!(value("unmatched_offers"), 0, "{out}");
    let served = rackboot_e2e::metric_sum(
        &lab.admin_get(&appl, "/metrics"),
        "rackboot_dhcp_packets_total{kind=\"offered\"",
    );
    assert!(served >= 2000.0, "rackboot counted {served} offers:\n{out}");
}
