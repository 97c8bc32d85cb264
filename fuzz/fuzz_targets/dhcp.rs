//! ProxyDHCP: any UDP payload on 67 or 4011, with two configurations. Nothing panics; every
//! reply keeps the invariants (BOOTREPLY, yiaddr 0.0.0.0, xid/chaddr/giaddr copied, OFFER only
//! for a DISCOVER on 67, dhcproto decodes it) and our own parser accepts it (emit → parse).
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::{Decodable, Decoder};
use libfuzzer_sys::fuzz_target;
use rackboot_dhcp::{handle, ArrivalPort, IgnoreReason, Outcome, ProxyConfig};

fn configs() -> [ProxyConfig; 2] {
    let adv = Ipv4Addr::new(10, 99, 0, 2);
    let plain = ProxyConfig::new(adv, 50042).expect("valid config");
    let tuned = ProxyConfig::new(adv, 8080)
        .expect("valid config")
        .with_discovery_control(true)
        .with_file_override(7, "http://10.99.0.2:8080/tftp/snponly.efi")
        .and_then(|c| c.with_file_override(0, "x".repeat(200)))
        .expect("valid override");
    [plain, tuned]
}

fn unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
}

fuzz_target!(|data: &[u8]| {
    for config in &configs() {
        for (port, src) in [
            (
                ArrivalPort::Dhcp,
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
            ),
            (
                ArrivalPort::Pxe,
                SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 115), 68),
            ),
        ] {
            let d = handle(data, port, src, config);
            let Some(reply) = d.reply else {
                assert!(
                    matches!(d.outcome, Outcome::Ignored(_)),
                    "no reply but {:?}",
                    d.outcome
                );
                continue;
            };
            assert!(matches!(d.outcome, Outcome::Offered | Outcome::Acked));
            let b = &reply.bytes;
            assert!(b.len() >= 300);
            assert_eq!(b[0], 2, "BOOTREPLY");
            assert_eq!(&b[4..8], &data[4..8], "xid copied");
            assert_eq!(&b[16..20], &[0, 0, 0, 0], "never hands out an address");
            assert_eq!(&b[24..28], &data[24..28], "giaddr copied");
            assert_eq!(&b[28..44], &data[28..44], "chaddr copied");
            if d.outcome == Outcome::Offered {
                assert_eq!(port, ArrivalPort::Dhcp, "OFFER only on 67");
            }
            let giaddr = Ipv4Addr::new(data[24], data[25], data[26], data[27]);
            if unicast(giaddr) {
                assert_eq!(
                    reply.dest,
                    SocketAddrV4::new(giaddr, 67),
                    "relayed → giaddr:67"
                );
            }
            // Only a unicast address the client named, or the limited broadcast.
            assert_eq!(reply.broadcast, *reply.dest.ip() == Ipv4Addr::BROADCAST);
            assert!(
                reply.broadcast || unicast(*reply.dest.ip()),
                "reply to {}",
                reply.dest
            );
            let msg = dhcproto::v4::Message::decode(&mut Decoder::new(b))
                .expect("dhcproto decodes our reply");
            assert_eq!(msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
            // Round trip: our parser accepts what we emit (and ignores it: it is a BOOTREPLY).
            let again = handle(b, port, src, config);
            assert_eq!(
                again.outcome,
                Outcome::Ignored(IgnoreReason::NotBootRequest)
            );
        }
    }
});
