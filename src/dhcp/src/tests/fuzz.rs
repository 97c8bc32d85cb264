//! proptest: nothing panics, and every reply keeps the invariants
//! (yiaddr 0.0.0.0, option 53 OFFER/ACK, ≥ 300 bytes, dhcproto can decode it).

use std::net::{Ipv4Addr, SocketAddrV4};

use proptest::prelude::*;

use super::vectors::ALL;
use super::*;
use crate::Outcome;

fn port() -> impl Strategy<Value = ArrivalPort> {
    prop_oneof![Just(ArrivalPort::Dhcp), Just(ArrivalPort::Pxe)]
}

fn source() -> impl Strategy<Value = SocketAddrV4> {
    (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| SocketAddrV4::new(Ipv4Addr::from(ip), port))
}

fn config() -> impl Strategy<Value = ProxyConfig> {
    (any::<bool>(), any::<bool>()).prop_map(|(dc, ovr)| {
        let c = cfg().with_discovery_control(dc);
        if ovr {
            c.with_file_override(6, "x".repeat(200))
                .expect("valid override")
        } else {
            c
        }
    })
}

fn check(bytes: &[u8], port: ArrivalPort, src: SocketAddrV4, config: &ProxyConfig) {
    let d = handle(bytes, port, src, config);
    match (&d.reply, d.outcome) {
        (Some(reply), Outcome::Offered | Outcome::Acked) => check_reply_invariants(reply),
        (None, Outcome::Ignored(_)) => {}
        other => panic!("reply/outcome mismatch: {other:?}"),
    }
}

/// A valid header + cookie (from a real DISCOVER) followed by random option bytes.
fn with_header(tail: &[u8]) -> Vec<u8> {
    let mut b = ALL[3][..240].to_vec();
    b.extend_from_slice(tail);
    b
}

/// Random well-formed TLVs drawn from the interesting codes.
fn tlvs() -> impl Strategy<Value = Vec<u8>> {
    let code = prop_oneof![
        Just(52u8),
        Just(53),
        Just(54),
        Just(60),
        Just(77),
        Just(93),
        Just(94),
        Just(97),
        Just(175),
        Just(0),
        any::<u8>()
    ];
    let value = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..20),
        Just(b"PXEClient:Arch:00007".to_vec()),
        Just(b"HTTPClient:Arch:00016".to_vec()),
        Just(vec![1]),
        Just(vec![3]),
        Just(vec![0, 7]),
        Just(vec![0, 16]),
        Just(b"iPXE".to_vec()),
        Just(vec![10, 99, 0, 2]),
    ];
    prop::collection::vec((code, value), 0..12).prop_map(|opts| {
        let mut out = Vec::new();
        for (code, value) in opts {
            out.push(code);
            if code != 0 && code != 255 {
                out.push(u8::try_from(value.len()).expect("short"));
                out.extend_from_slice(&value);
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..700),
        port in port(), src in source(), config in config(),
    ) {
        check(&bytes, port, src, &config);
    }

    #[test]
    fn random_options_after_valid_header_never_panic(
        tail in prop::collection::vec(any::<u8>(), 0..400),
        port in port(), src in source(), config in config(),
    ) {
        check(&with_header(&tail), port, src, &config);
    }

    #[test]
    fn structured_options_never_panic(
        tail in tlvs(), pxe_prefix in any::<bool>(), end in any::<bool>(),
        port in port(), src in source(), config in config(),
    ) {
        // With the prefix, most cases are answerable PXE DISCOVERs/REQUESTs
        // plus random extra options, so the reply path is exercised too.
        let mut options = Vec::new();
        if pxe_prefix {
            options.extend_from_slice(&[53, 1, 1, 60, 9]);
            options.extend_from_slice(b"PXEClient");
            options.extend_from_slice(&[93, 2, 0, 7]);
        }
        options.extend_from_slice(&tail);
        let mut bytes = with_header(&options);
        if end { bytes.push(255); }
        check(&bytes, port, src, &config);
    }

    #[test]
    fn mutated_real_vectors_never_panic(
        which in 0..ALL.len(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(), truncate in any::<bool>(),
        port in port(), src in source(), config in config(),
    ) {
        let mut bytes = ALL[which].to_vec();
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        check(&bytes, port, src, &config);
    }
}
