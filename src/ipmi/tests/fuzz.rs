//! Random and mutated datagrams never panic the client, in every handshake state and in an
//! established session, and never complete a command with forged data.
#![allow(clippy::unwrap_used)]

mod common;

use common::{FakeBmc, Harness};
use proptest::prelude::*;
use rackboot_ipmi::{wire, ClientConfig, Command};

/// Drive a fresh client to the state after `steps` genuine BMC replies, returning the harness
/// and the next genuine reply (to mutate).
fn client_at(steps: usize, suite: u8) -> (Harness, Option<Vec<u8>>) {
    let mut h = Harness::new(
        ClientConfig::new("admin", "password"),
        FakeBmc::new(&[suite]),
    );
    if steps >= 5 {
        h.run(Command::GetChassisStatus).unwrap();
    }
    h.client.start(Command::GetChassisStatus, h.now).unwrap();
    let mut delivered = 0;
    let target = if steps >= 5 { steps - 5 } else { steps };
    while let Some(d) = h.client.poll_transmit() {
        let replies = h.bmc.handle(&d);
        for r in replies {
            if delivered == target {
                return (h, Some(r));
            }
            h.client.handle_datagram(&r, h.now);
            delivered += 1;
        }
    }
    (h, None)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(steps in 0usize..6, suite in prop::sample::select(vec![3u8, 17]),
                                junk in prop::collection::vec(any::<u8>(), 0..200),
                                rmcp_prefix in any::<bool>()) {
        let (mut h, _) = client_at(steps, suite);
        let mut d = junk;
        if rmcp_prefix {
            let mut p = wire::RMCP_HEADER.to_vec();
            p.extend(d);
            d = p;
        }
        h.client.handle_datagram(&d, h.now);
        let _ = h.client.poll_result();
        let _ = h.client.poll_transmit();
    }

    #[test]
    fn mutated_replies_never_panic(steps in 0usize..6, suite in prop::sample::select(vec![3u8, 17]),
                                   muts in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
                                   cut in any::<Option<usize>>()) {
        let (mut h, genuine) = client_at(steps, suite);
        let Some(mut r) = genuine else { return Ok(()) };
        let before = r.clone();
        for (pos, x) in muts {
            let i = pos % r.len();
            r[i] ^= x;
        }
        if let Some(c) = cut {
            r.truncate(c % (r.len() + 1));
        }
        h.client.handle_datagram(&r, h.now);
        // Bytes 1-2 of the RMCP header are outside the integrity-protected region.
        if r.len() != before.len() || r[4..] != before[4..] {
            // A mutated in-session reply must never complete the command.
            if steps == 5 {
                prop_assert!(h.client.poll_result().is_none());
            }
        }
        // The genuine reply still works afterwards (or the state moved on legitimately).
        h.client.handle_datagram(&before, h.now);
        let _ = h.client.poll_result();
    }
}
