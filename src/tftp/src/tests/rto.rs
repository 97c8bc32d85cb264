//! Adaptive retransmission timeout (RFC 1123 4.2.3.2): follows the round trip when the client
//! did not negotiate `timeout`, backs off exponentially, never gives up sooner than a fixed one.

use std::time::Duration;

use super::{ack, cfg, data_blocks, drain, file_of, ms, rrq, t0};
use crate::{EngineConfig, FailReason, Outcome, Transfer};

#[test]
fn timeout_follows_the_round_trip_within_its_bounds() {
    let start = t0();
    let mut t = Transfer::new(&rrq("f", &[]), file_of(512 * 200), &cfg(), start);
    assert_eq!(t.rto(), Duration::from_secs(1), "no sample yet");
    drain(&mut t);
    // A 2 ms round trip: the timeout drops to its 50 ms floor.
    let mut now = start + ms(2);
    t.handle_datagram(&ack(1), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![2]);
    assert_eq!(t.rto(), ms(50));
    assert_eq!(t.poll_timeout(), Some(now + ms(50)));
    // A slow client answering after 120 ms each time: the timeout rises above that.
    for block in 2..60u16 {
        now += ms(120);
        t.handle_datagram(&ack(block), now);
        drain(&mut t);
    }
    assert!(t.rto() > ms(120) && t.rto() < ms(400), "rto {:?}", t.rto());
    assert_eq!(t.poll_timeout(), Some(now + t.rto()));
}

#[test]
fn timeouts_back_off_to_the_full_timeout_and_give_up_no_sooner_than_a_fixed_one() {
    let start = t0();
    let mut t = Transfer::new(&rrq("f", &[]), file_of(5000), &cfg(), start);
    drain(&mut t);
    let opened = start + ms(1);
    t.handle_datagram(&ack(1), opened);
    let window = drain(&mut t);
    assert_eq!(data_blocks(&window), vec![2]);
    let mut waits = Vec::new();
    let mut last = opened;
    while t.outcome().is_none() {
        let deadline = t.poll_timeout().unwrap();
        waits.push(deadline - last);
        last = deadline;
        t.handle_timeout(deadline);
        let sent = drain(&mut t);
        if t.outcome().is_none() {
            assert_eq!(sent, window, "each timeout resends the window");
        }
    }
    assert_eq!(t.outcome(), Some(&Outcome::Failed(FailReason::TimedOut)));
    let expected: Vec<Duration> = [50, 100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000, 1000]
        .into_iter()
        .map(ms)
        .collect();
    assert_eq!(waits, expected);
    // A fixed 1 s timeout with 5 retries gives up after 6 s of silence.
    assert!(last - opened >= Duration::from_secs(6));
}

#[test]
fn a_negotiated_timeout_is_kept_as_is() {
    let start = t0();
    let req = rrq("f", &[("timeout", "2"), ("windowsize", "4")]);
    let mut t = Transfer::new(&req, file_of(512 * 100), &cfg(), start);
    drain(&mut t);
    let mut now = start + ms(1);
    t.handle_datagram(&ack(0), now);
    drain(&mut t);
    for block in [4u16, 8, 12] {
        now += ms(1);
        t.handle_datagram(&ack(block), now);
        drain(&mut t);
        assert_eq!(t.rto(), Duration::from_secs(2));
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(2)));
    }
    t.handle_timeout(now + Duration::from_secs(2));
    assert_eq!(data_blocks(&drain(&mut t)), vec![13, 14, 15, 16]);
    assert_eq!(
        t.poll_timeout(),
        Some(now + Duration::from_secs(4)),
        "no backoff beyond it"
    );
}

#[test]
fn a_resent_window_gives_no_sample_and_the_backoff_stays_until_a_clean_one() {
    let start = t0();
    let mut t = Transfer::new(&rrq("f", &[]), file_of(5000), &cfg(), start);
    drain(&mut t);
    t.handle_datagram(&ack(1), start + ms(1));
    drain(&mut t);
    assert_eq!(t.rto(), ms(50));
    // DATA 2's ACK is slow: one timeout, then the ACK after 700 ms, for the first or the
    // second copy (Karn: no sample from either).
    t.handle_timeout(start + ms(51));
    assert_eq!(data_blocks(&drain(&mut t)), vec![2]);
    assert_eq!(t.rto(), ms(100));
    let now = start + ms(701);
    t.handle_datagram(&ack(2), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![3]);
    assert_eq!(t.rto(), ms(100), "backed-off timeout kept");
    assert_eq!(t.poll_timeout(), Some(now + ms(100)));
    // DATA 3 sent once and answered: a clean sample sets the timeout again.
    t.handle_datagram(&ack(3), now + ms(1));
    assert_eq!(t.rto(), ms(50));
}

#[test]
fn a_floor_at_the_default_timeout_keeps_the_timeout_fixed() {
    let start = t0();
    let c = EngineConfig {
        min_timeout: Duration::from_secs(1),
        ..cfg()
    };
    let mut t = Transfer::new(&rrq("f", &[]), file_of(5000), &c, start);
    drain(&mut t);
    t.handle_datagram(&ack(1), start + ms(1));
    drain(&mut t);
    assert_eq!(t.rto(), Duration::from_secs(1));
    t.handle_timeout(start + ms(1001));
    assert_eq!(data_blocks(&drain(&mut t)), vec![2]);
    assert_eq!(t.poll_timeout(), Some(start + ms(2001)));
}
