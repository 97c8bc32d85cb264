#![allow(clippy::unwrap_used)]
use super::*;

const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 7];
const SITE: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 1);
const APPL: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 2);
const SITE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const APPL_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn id(ipxe: bool) -> Identity {
    Identity {
        mac: MAC,
        uuid: [7; 16],
        arch: 7,
        vendor_class: "PXEClient:Arch:00007:UNDI:003016".into(),
        undi: (3, 16),
        ipxe,
    }
}

fn how(proxy_request: bool) -> Behaviour {
    Behaviour {
        proxy_request,
        proxy_src_port: PXE_PORT,
        proxy_wait: Duration::from_secs(3),
        need_boot: false,
    }
}

/// Options of a client packet, read independently of `Reply::parse`.
fn client_opts(p: &[u8]) -> Vec<(u8, Vec<u8>)> {
    assert_eq!(&p[236..240], &MAGIC);
    let mut out = vec![];
    let mut i = 240;
    while p[i] != 255 {
        let (c, l) = (p[i], p[i + 1] as usize);
        out.push((c, p[i + 2..i + 2 + l].to_vec()));
        i += 2 + l;
    }
    out
}

fn opt(p: &[u8], code: u8) -> Option<Vec<u8>> {
    client_opts(p)
        .into_iter()
        .find(|(c, _)| *c == code)
        .map(|(_, v)| v)
}

/// A server reply as a real server would send it.
fn reply(
    msg: u8,
    xid: u32,
    yiaddr: Ipv4Addr,
    server: Ipv4Addr,
    vc: Option<&str>,
    file: Option<&str>,
) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 2;
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[16..20].copy_from_slice(&yiaddr.octets());
    p[20..24].copy_from_slice(&server.octets());
    p[28..34].copy_from_slice(&MAC);
    if let Some(f) = file {
        p[108..108 + f.len()].copy_from_slice(f.as_bytes());
    }
    p.extend_from_slice(&MAGIC);
    p.extend_from_slice(&[53, 1, msg, 54, 4]);
    p.extend_from_slice(&server.octets());
    if !yiaddr.is_unspecified() {
        p.extend_from_slice(&[1, 4, 255, 255, 248, 0, 3, 4, 10, 97, 0, 1]);
    }
    if let Some(v) = vc {
        p.push(60);
        p.push(v.len() as u8);
        p.extend_from_slice(v.as_bytes());
    }
    p.push(255);
    p
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn drain(x: &mut Exchange) -> Vec<Datagram> {
    std::iter::from_fn(|| x.poll_transmit()).collect()
}

fn xid_of(d: &Datagram) -> u32 {
    u32::from_be_bytes(d.payload[4..8].try_into().unwrap())
}

#[test]
fn discover_carries_the_pxe_options_and_ipxe_marks() {
    let p = client_packet(&id(false), 0x1234, 0, DISCOVER, Fields::default());
    assert_eq!(p[0], 1);
    assert_eq!(&p[28..34], &MAC);
    assert_eq!(p[10], 0x80, "broadcast flag before we have an address");
    assert_eq!(opt(&p, 53).unwrap(), vec![DISCOVER]);
    assert_eq!(opt(&p, 93).unwrap(), vec![0, 7]);
    assert_eq!(
        opt(&p, 60).unwrap(),
        b"PXEClient:Arch:00007:UNDI:003016".to_vec()
    );
    assert_eq!(opt(&p, 94).unwrap(), vec![1, 3, 16]);
    assert_eq!(opt(&p, 97).unwrap().len(), 17);
    assert!(opt(&p, 77).is_none() && opt(&p, 175).is_none());
    let p = client_packet(&id(true), 1, 0, DISCOVER, Fields::default());
    assert_eq!(opt(&p, 77).unwrap(), b"iPXE".to_vec());
    assert!(opt(&p, 175).is_some());
}

#[test]
fn address_and_proxy_offer_then_request_then_4011() {
    let mut x = Exchange::new(id(false), 99, how(true), secs(0));
    let d = drain(&mut x);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].dst, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67));
    assert_eq!(xid_of(&d[0]), 99);

    // The proxy offer alone is not enough to go on.
    let proxy = Reply::parse(&reply(
        OFFER,
        99,
        Ipv4Addr::UNSPECIFIED,
        APPL,
        Some("PXEClient"),
        Some("ipxe.efi"),
    ))
    .unwrap();
    assert!(proxy.is_proxy());
    x.handle_reply(secs(0), proxy, APPL_MAC);
    assert!(drain(&mut x).is_empty());
    // An offer for another transaction is ignored.
    let other = Reply::parse(&reply(
        OFFER,
        98,
        Ipv4Addr::new(10, 97, 1, 9),
        SITE,
        None,
        None,
    ))
    .unwrap();
    x.handle_reply(secs(0), other, SITE_MAC);
    assert!(drain(&mut x).is_empty());

    let addr = Reply::parse(&reply(
        OFFER,
        99,
        Ipv4Addr::new(10, 97, 1, 5),
        SITE,
        None,
        None,
    ))
    .unwrap();
    x.handle_reply(secs(1), addr, SITE_MAC);
    let d = drain(&mut x);
    assert_eq!(d.len(), 1, "both offers in: REQUEST at once");
    assert_eq!(opt(&d[0].payload, 53).unwrap(), vec![REQUEST]);
    assert_eq!(opt(&d[0].payload, 50).unwrap(), vec![10, 97, 1, 5]);
    assert_eq!(opt(&d[0].payload, 54).unwrap(), SITE.octets().to_vec());

    let ack = Reply::parse(&reply(
        ACK,
        99,
        Ipv4Addr::new(10, 97, 1, 5),
        SITE,
        None,
        None,
    ))
    .unwrap();
    x.handle_reply(secs(1), ack, SITE_MAC);
    assert_eq!(x.bound().unwrap().ip, Ipv4Addr::new(10, 97, 1, 5));
    assert_eq!(x.bound().unwrap().prefix, 21);
    assert!(x.result().is_none(), "the 4011 request is still to come");
    let d = drain(&mut x);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].dst, SocketAddrV4::new(APPL, 4011));
    assert_eq!(
        d[0].src,
        SocketAddrV4::new(Ipv4Addr::new(10, 97, 1, 5), 4011)
    );
    assert_eq!(d[0].dst_mac, Some(APPL_MAC));
    assert_eq!(&d[0].payload[12..16], &[10, 97, 1, 5], "ciaddr set");
    assert!(opt(&d[0].payload, 43).is_none(), "no menu, no boot item");

    let pack = Reply::parse(&reply(
        ACK,
        99,
        Ipv4Addr::UNSPECIFIED,
        APPL,
        Some("PXEClient"),
        Some("ipxe.efi"),
    ))
    .unwrap();
    x.handle_reply(secs(1), pack, APPL_MAC);
    let lease = x.result().unwrap().unwrap();
    assert_eq!(
        lease.boot,
        Some(BootTarget::Tftp {
            server: APPL,
            file: "ipxe.efi".into()
        })
    );
}

#[test]
fn discover_is_retransmitted_at_4_8_16_32_seconds_then_fails() {
    let mut x = Exchange::new(id(false), 5, how(true), secs(0));
    let mut sent = vec![0u64];
    drain(&mut x);
    for t in 0..=70 {
        let now = secs(t);
        if x.poll_timeout().is_some_and(|d| d <= now) {
            x.handle_timeout(now);
        }
        if !drain(&mut x).is_empty() {
            sent.push(t);
        }
    }
    assert_eq!(sent, vec![0, 4, 12, 28]);
    assert_eq!(x.retries(), 3);
    assert_eq!(x.result(), Some(Err(&Failure::NoOffer)));
}

#[test]
fn address_offer_alone_settles_after_the_proxy_wait() {
    let mut x = Exchange::new(id(true), 5, how(true), secs(0));
    drain(&mut x);
    let addr = Reply::parse(&reply(
        OFFER,
        5,
        Ipv4Addr::new(10, 97, 1, 6),
        SITE,
        None,
        None,
    ))
    .unwrap();
    x.handle_reply(secs(1), addr, SITE_MAC);
    assert!(drain(&mut x).is_empty());
    assert_eq!(
        x.poll_timeout(),
        Some(secs(4)),
        "min(proxy wait, retransmit)"
    );
    x.handle_timeout(secs(4));
    let d = drain(&mut x);
    assert_eq!(opt(&d[0].payload, 53).unwrap(), vec![REQUEST]);
    let ack = Reply::parse(&reply(
        ACK,
        5,
        Ipv4Addr::new(10, 97, 1, 6),
        SITE,
        None,
        None,
    ))
    .unwrap();
    x.handle_reply(secs(4), ack, SITE_MAC);
    assert_eq!(x.result().unwrap().unwrap().boot, None);
}

#[test]
fn http_boot_takes_the_url_from_the_proxy_offer_without_4011() {
    let mut x = Exchange::new(id(false), 8, how(false), secs(0));
    drain(&mut x);
    let url = "http://10.97.0.2:50042/tftp/x86_64/ipxe.efi";
    let proxy = Reply::parse(&reply(
        OFFER,
        8,
        Ipv4Addr::UNSPECIFIED,
        APPL,
        Some("HTTPClient"),
        Some(url),
    ))
    .unwrap();
    x.handle_reply(secs(0), proxy, APPL_MAC);
    let addr = Reply::parse(&reply(
        OFFER,
        8,
        Ipv4Addr::new(10, 97, 1, 7),
        SITE,
        None,
        None,
    ))
    .unwrap();
    x.handle_reply(secs(0), addr, SITE_MAC);
    drain(&mut x);
    let ack = Reply::parse(&reply(
        ACK,
        8,
        Ipv4Addr::new(10, 97, 1, 7),
        SITE,
        None,
        None,
    ))
    .unwrap();
    x.handle_reply(secs(0), ack, SITE_MAC);
    assert!(drain(&mut x).is_empty(), "no 4011 request");
    assert_eq!(
        x.result().unwrap().unwrap().boot,
        Some(BootTarget::Http { url: url.into() })
    );
}

#[test]
fn nak_fails_and_malformed_replies_are_ignored() {
    assert!(Reply::parse(&[2u8; 100]).is_none());
    let mut bad = reply(ACK, 1, Ipv4Addr::UNSPECIFIED, SITE, None, None);
    bad.pop(); // the end option
    bad.extend_from_slice(&[60, 200, b'P', b'X']); // an option running past the end
    assert!(Reply::parse(&bad).is_none());

    let mut x = Exchange::new(id(false), 3, how(true), secs(0));
    let addr = Reply::parse(&reply(
        OFFER,
        3,
        Ipv4Addr::new(10, 97, 1, 8),
        SITE,
        None,
        Some("undionly.kpxe"),
    ))
    .unwrap();
    x.handle_reply(secs(0), addr.clone(), SITE_MAC);
    drain(&mut x);
    let nak = Reply::parse(&reply(NAK, 3, Ipv4Addr::UNSPECIFIED, SITE, None, None)).unwrap();
    // A NAK starts over with DISCOVER (RFC 2131 §3.1), a few times, then fails.
    for _ in 0..MAX_NAKS {
        x.handle_reply(secs(1), nak.clone(), SITE_MAC);
        let d = drain(&mut x);
        assert_eq!(opt(&d[0].payload, 53).unwrap(), vec![DISCOVER]);
        assert!(x.result().is_none());
        x.handle_reply(secs(1), addr.clone(), SITE_MAC);
        let d = drain(&mut x);
        assert_eq!(opt(&d[0].payload, 53).unwrap(), vec![REQUEST]);
    }
    x.handle_reply(secs(1), nak, SITE_MAC);
    assert_eq!(x.result(), Some(Err(&Failure::Nak)));
}

#[test]
fn a_pxe_menu_makes_the_4011_request_ask_for_its_first_item() {
    // dnsmasq's proxy offer to a BIOS client: discovery control, boot servers, menu, prompt.
    let mut offer = reply(
        OFFER,
        4,
        Ipv4Addr::UNSPECIFIED,
        APPL,
        Some("PXEClient"),
        None,
    );
    offer.pop();
    let menu: &[u8] = &[
        6, 1, 3, 8, 7, 0x80, 0, 1, 10, 97, 0, 2, 9, 7, 0x80, 0, 4, b'B', b'I', b'O', b'S', 10, 2,
        0, b'x', 255,
    ];
    offer.extend_from_slice(&[43, menu.len() as u8]);
    offer.extend_from_slice(menu);
    offer.push(255);
    let offer = Reply::parse(&offer).unwrap();
    assert_eq!(offer.first_menu_item(), Some(0x8000));

    let mut x = Exchange::new(id(false), 4, how(true), secs(0));
    drain(&mut x);
    x.handle_reply(secs(0), offer, APPL_MAC);
    let addr = Reply::parse(&reply(
        OFFER,
        4,
        Ipv4Addr::new(10, 97, 1, 9),
        SITE,
        None,
        None,
    ))
    .unwrap();
    x.handle_reply(secs(0), addr, SITE_MAC);
    drain(&mut x);
    let ack = Reply::parse(&reply(
        ACK,
        4,
        Ipv4Addr::new(10, 97, 1, 9),
        SITE,
        None,
        None,
    ))
    .unwrap();
    x.handle_reply(secs(0), ack, SITE_MAC);
    let d = drain(&mut x);
    assert_eq!(
        opt(&d[0].payload, 43).unwrap(),
        vec![71, 4, 0x80, 0, 0, 0, 255]
    );
}

#[test]
fn pxe_firmware_without_a_boot_offer_keeps_discovering_then_fails() {
    let firmware = Behaviour {
        need_boot: true,
        ..how(true)
    };
    let addr = |xid| {
        Reply::parse(&reply(
            OFFER,
            xid,
            Ipv4Addr::new(10, 97, 1, 6),
            SITE,
            None,
            None,
        ))
        .unwrap()
    };
    let mut x = Exchange::new(id(false), 6, firmware, secs(0));
    let mut discovers = vec![];
    for t in 0..=70 {
        let now = secs(t);
        if x.poll_timeout().is_some_and(|d| d <= now) {
            x.handle_timeout(now);
        }
        for d in drain(&mut x) {
            assert_eq!(
                opt(&d.payload, 53).unwrap(),
                vec![DISCOVER],
                "never settles on the address alone"
            );
            discovers.push(t);
            x.handle_reply(now, addr(6), SITE_MAC);
        }
    }
    assert_eq!(discovers, vec![0, 4, 12, 28]);
    assert_eq!(x.result(), Some(Err(&Failure::NoBootOffer)));

    // The boot offer answering a retransmitted DISCOVER completes it.
    let mut x = Exchange::new(id(false), 7, firmware, secs(0));
    drain(&mut x);
    x.handle_reply(secs(0), addr(7), SITE_MAC);
    x.handle_timeout(secs(4));
    assert_eq!(opt(&drain(&mut x)[0].payload, 53).unwrap(), vec![DISCOVER]);
    let proxy = Reply::parse(&reply(
        OFFER,
        7,
        Ipv4Addr::UNSPECIFIED,
        APPL,
        Some("PXEClient"),
        Some("ipxe.efi"),
    ))
    .unwrap();
    x.handle_reply(secs(4), proxy, APPL_MAC);
    assert_eq!(opt(&drain(&mut x)[0].payload, 53).unwrap(), vec![REQUEST]);
}

#[test]
fn a_4011_ack_echoing_the_address_is_taken_from_the_proxy_server_only() {
    // dnsmasq puts the client's address in yiaddr of its 4011 ACK.
    let mut x = Exchange::new(id(false), 9, how(true), secs(0));
    drain(&mut x);
    let proxy = Reply::parse(&reply(
        OFFER,
        9,
        Ipv4Addr::UNSPECIFIED,
        APPL,
        Some("PXEClient"),
        None,
    ))
    .unwrap();
    x.handle_reply(secs(0), proxy, APPL_MAC);
    let ip = Ipv4Addr::new(10, 97, 1, 12);
    x.handle_reply(
        secs(0),
        Reply::parse(&reply(OFFER, 9, ip, SITE, None, None)).unwrap(),
        SITE_MAC,
    );
    drain(&mut x);
    x.handle_reply(
        secs(0),
        Reply::parse(&reply(ACK, 9, ip, SITE, None, None)).unwrap(),
        SITE_MAC,
    );
    drain(&mut x);
    // A repeated site ACK is not the proxy's answer.
    x.handle_reply(
        secs(0),
        Reply::parse(&reply(ACK, 9, ip, SITE, None, None)).unwrap(),
        SITE_MAC,
    );
    assert!(x.result().is_none());
    let pack = Reply::parse(&reply(
        ACK,
        9,
        ip,
        APPL,
        Some("PXEClient"),
        Some("undionly.kpxe"),
    ))
    .unwrap();
    x.handle_reply(secs(0), pack, APPL_MAC);
    let lease = x.result().unwrap().unwrap();
    assert_eq!(lease.ip, ip);
    assert_eq!(
        lease.boot,
        Some(BootTarget::Tftp {
            server: APPL,
            file: "undionly.kpxe".into()
        })
    );
}
