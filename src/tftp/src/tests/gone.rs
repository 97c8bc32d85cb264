//! A client whose port is closed (ICMP port unreachable): the transfer ends at once.

use super::{ack, cfg, data_blocks, drain, file_of, ms, rrq, t0};
use crate::{FailReason, Outcome, Transfer};
use std::time::Instant;

fn gone(all_sent: bool) -> Option<Outcome> {
    Some(Outcome::Failed(FailReason::ClientGone { all_sent }))
}

/// A windowsize-4 transfer of `len` bytes past its OACK, and the blocks of its first window.
fn first_window(len: usize, now: Instant) -> (Transfer, Vec<u16>) {
    let mut t = Transfer::new(&rrq("f", &[("windowsize", "4")]), file_of(len), &cfg(), now);
    drain(&mut t);
    t.handle_datagram(&ack(0), now + ms(1));
    let blocks = data_blocks(&drain(&mut t));
    (t, blocks)
}

#[test]
fn refused_after_the_last_window_went_out_ends_as_all_sent() {
    let now = t0();
    // 3 blocks of 512 and an empty fourth: one window of 4 holds them all.
    let (mut t, window) = first_window(1536, now);
    assert_eq!(window, vec![1, 2, 3, 4]);
    let (mut early, _) = first_window(1536, now);
    early.handle_port_unreachable();
    assert_eq!(
        early.outcome(),
        gone(false).as_ref(),
        "refused before any resend"
    );
    // The final ACK was lost; the client left. The timeout resends the window and the
    // client's host answers with port unreachable.
    t.handle_timeout(now + ms(2000));
    assert_eq!(drain(&mut t).len(), 4);
    t.handle_port_unreachable();
    assert_eq!(t.outcome(), gone(true).as_ref());
    assert!(t.is_finished(), "nothing (no ERROR) is left to send");
    assert!(drain(&mut t).is_empty());
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn refused_mid_file_ends_as_not_all_sent() {
    let now = t0();
    let (mut t, window) = first_window(100_000, now);
    assert_eq!(window, vec![1, 2, 3, 4]);
    t.handle_datagram(&ack(4), now + ms(1));
    assert_eq!(data_blocks(&drain(&mut t)), vec![5, 6, 7, 8]);
    t.handle_port_unreachable();
    assert_eq!(t.outcome(), gone(false).as_ref());
    assert!(drain(&mut t).is_empty());
}

#[test]
fn refused_oack_ends_a_probe_the_client_dropped_without_an_error() {
    let now = t0();
    let mut t = Transfer::new(&rrq("f", &[("tsize", "0")]), file_of(5000), &cfg(), now);
    assert_eq!(drain(&mut t).len(), 1);
    t.handle_port_unreachable();
    assert_eq!(t.outcome(), gone(false).as_ref());
    assert!(t.is_finished());
}

#[test]
fn lockstep_refusal_counts_all_sent_only_after_a_resend_of_the_last_block() {
    let now = t0();
    let mut t = Transfer::new(&rrq("f", &[]), file_of(700), &cfg(), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![1]);
    t.handle_port_unreachable();
    assert_eq!(t.outcome(), gone(false).as_ref(), "block 2 was never sent");
    // Block 2 went out once and was refused: the client was gone before it arrived.
    let mut t = Transfer::new(&rrq("f", &[]), file_of(700), &cfg(), now);
    drain(&mut t);
    t.handle_datagram(&ack(1), now + ms(1));
    assert_eq!(data_blocks(&drain(&mut t)), vec![2]);
    t.handle_port_unreachable();
    assert_eq!(
        t.outcome(),
        gone(false).as_ref(),
        "only its first copy went out"
    );
    // Block 2 resent after a timeout, then refused: the client left after having it.
    let mut t = Transfer::new(&rrq("f", &[]), file_of(700), &cfg(), now);
    drain(&mut t);
    t.handle_datagram(&ack(1), now + ms(1));
    drain(&mut t);
    t.handle_timeout(now + ms(2000));
    assert_eq!(data_blocks(&drain(&mut t)), vec![2]);
    t.handle_port_unreachable();
    assert_eq!(t.outcome(), gone(true).as_ref());
}

#[test]
fn an_ended_transfer_keeps_its_outcome() {
    let now = t0();
    let mut t = Transfer::new(&rrq("f", &[]), file_of(10), &cfg(), now);
    drain(&mut t);
    t.handle_datagram(&ack(1), now + ms(3));
    let done = t.outcome().cloned();
    assert!(matches!(done, Some(Outcome::Completed { .. })));
    t.handle_port_unreachable();
    assert_eq!(t.outcome().cloned(), done);
}
