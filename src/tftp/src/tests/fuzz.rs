//! Property tests: round trip, and no panics on arbitrary input.

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;

use super::{file_of, rrq, t0};
use crate::wire::MAX_OPTIONS;
use crate::{handle_initial, sanitize, EngineConfig, Mode, Packet, Request, Transfer};

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Octet), Just(Mode::Netascii), Just(Mode::Mail)]
}

fn options() -> impl Strategy<Value = Vec<(String, String)>> {
    vec(("[a-z0-9]{1,10}", "[a-zA-Z0-9 ._-]{0,10}"), 0..=MAX_OPTIONS)
}

fn request() -> impl Strategy<Value = Request> {
    (vec(1u8..=255, 1..=512), mode(), options()).prop_map(|(filename, mode, options)| Request {
        filename,
        mode,
        options,
    })
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        request().prop_map(Packet::Rrq),
        request().prop_map(Packet::Wrq),
        (any::<u16>(), vec(any::<u8>(), 0..600))
            .prop_map(|(block, data)| Packet::Data { block, data }),
        any::<u16>().prop_map(|block| Packet::Ack { block }),
        (any::<u16>(), "[^\\x00]{0,40}")
            .prop_map(|(code, message)| Packet::Error { code, message }),
        options().prop_map(|options| Packet::Oack { options }),
    ]
}

/// A datagram a client might plausibly send mid-transfer, or junk.
fn client_datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => any::<u16>().prop_map(|b| Packet::Ack { block: b }.to_bytes()),
        1 => (0u16..20).prop_map(|b| Packet::Ack { block: b }.to_bytes()),
        1 => (any::<u16>(), "[a-z ]{0,8}")
            .prop_map(|(code, message)| Packet::Error { code, message }.to_bytes()),
        2 => vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #[test]
    fn parse_emit_round_trip(p in packet()) {
        prop_assert_eq!(Packet::parse(&p.to_bytes()), Ok(p));
    }

    #[test]
    fn random_bytes_never_panic_parse_or_initial(bytes in vec(any::<u8>(), 0..700)) {
        let _ = Packet::parse(&bytes);
        let _ = handle_initial(&bytes);
        let _ = sanitize(&bytes);
    }

    #[test]
    fn rrq_shaped_bytes_never_panic_initial(
        name in vec(any::<u8>(), 0..300),
        tail in vec(any::<u8>(), 0..100),
    ) {
        let mut b = vec![0u8, 1];
        b.extend_from_slice(&name);
        b.push(0);
        b.extend_from_slice(b"octet\0");
        b.extend_from_slice(&tail);
        if let crate::Initial::Read(req) = handle_initial(&b) {
            prop_assert!(!req.path.split('/').any(|c| c == ".." || c.is_empty()));
            prop_assert!(!req.path.starts_with('/'));
        }
    }

    #[test]
    fn random_datagrams_and_clock_never_panic_a_transfer(
        len in 0usize..5000,
        opts in vec(("blksize|windowsize|tsize|timeout|x", "[0-9]{0,6}|enable"), 0..5),
        steps in vec((client_datagram(), 0u64..3000, any::<bool>()), 0..60),
    ) {
        let pairs: Vec<(&str, &str)> = opts.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let cfg = EngineConfig { max_retries: 2, ..EngineConfig::default() };
        let mut now = t0();
        let mut t = Transfer::new(&rrq("f", &pairs), file_of(len), &cfg, now);
        let mut buf = Vec::new();
        for (dgram, advance_ms, timeout) in steps {
            while t.poll_transmit(&mut buf) {
                prop_assert!(Packet::parse(&buf).is_ok(), "engine emitted junk");
                prop_assert!(buf.len() <= 4 + usize::from(t.blksize()).max(512));
            }
            now += Duration::from_millis(advance_ms);
            if timeout {
                t.handle_timeout(now);
            } else {
                t.handle_datagram(&dgram, now);
            }
            if t.outcome().is_none() {
                prop_assert!(t.poll_timeout().is_some());
            }
        }
    }
}
