//! Tail loss probe: a lost last block of a window is resent after twice the round trip, not
//! after the whole retransmission timeout.

use std::time::{Duration, Instant};

use super::sim::{assert_completed, Client};
use super::{ack, cfg, data_blocks, drain, file_of, ms, rrq, t0};
use crate::{EngineConfig, Transfer};

/// A transfer of 20 KiB for `opts` whose OACK (sent at `start`) was ACKed after `rtt`; what
/// that ACK let out has been sent. Returns it and the time of the ACK.
fn acked(
    opts: &[(&str, &str)],
    start: Instant,
    rtt: Duration,
    c: &EngineConfig,
) -> (Transfer, Instant, Vec<u16>) {
    let mut t = Transfer::new(&rrq("f", opts), file_of(512 * 40), c, start);
    drain(&mut t);
    let now = start + rtt;
    t.handle_datagram(&ack(0), now);
    let sent = data_blocks(&drain(&mut t));
    (t, now, sent)
}

/// A windowsize-4 transfer whose OACK was ACKed after `rtt`; the first window is out.
fn opened(rtt: Duration, c: &EngineConfig) -> (Transfer, Instant) {
    let (t, now, sent) = acked(&[("windowsize", "4")], t0(), rtt, c);
    assert_eq!(sent, vec![1, 2, 3, 4]);
    (t, now)
}

#[test]
fn a_lost_last_block_is_sent_again_after_twice_the_round_trip_once() {
    let (mut t, now) = opened(ms(2), &cfg());
    assert_eq!(t.rto(), ms(50));
    // 2 × 2 ms is under the 5 ms floor.
    let probe = now + ms(5);
    assert_eq!(t.poll_timeout(), Some(probe));
    t.handle_timeout(probe - ms(1));
    assert!(drain(&mut t).is_empty(), "nothing before its time");
    t.handle_timeout(probe);
    assert_eq!(data_blocks(&drain(&mut t)), vec![4], "the last block only");
    assert_eq!((t.tail_probes(), t.retransmits()), (1, 1));
    // Once per window: then the retransmission timeout as before.
    assert_eq!(t.poll_timeout(), Some(now + ms(50)));
    // The probe brought the block: the client ACKs the window, the next one goes out.
    t.handle_datagram(&ack(4), probe + ms(2));
    assert_eq!(data_blocks(&drain(&mut t)), vec![5, 6, 7, 8]);
    assert_eq!(
        t.rto(),
        ms(50),
        "no round-trip sample from a probed window (Karn)"
    );
}

#[test]
fn the_probe_waits_twice_the_smoothed_round_trip() {
    let (mut t, now) = opened(ms(20), &cfg());
    // srtt 20 ms, rttvar 10 ms: timeout 60 ms, probe at 40 ms.
    assert_eq!(t.rto(), ms(60));
    assert_eq!(t.poll_timeout(), Some(now + ms(40)));
    t.handle_timeout(now + ms(40));
    assert_eq!(data_blocks(&drain(&mut t)), vec![4]);
}

#[test]
fn a_window_acked_in_time_is_not_probed() {
    let (mut t, now) = opened(ms(2), &cfg());
    t.handle_datagram(&ack(4), now + ms(1));
    assert_eq!(data_blocks(&drain(&mut t)), vec![5, 6, 7, 8]);
    // The new window has its own probe time; the old one is gone.
    assert_eq!(t.poll_timeout(), Some(now + ms(1) + ms(5)));
    assert_eq!(t.tail_probes(), 0);
}

#[test]
fn no_probe_in_lock_step_with_a_negotiated_timeout_without_a_sample_or_when_disabled() {
    let start = t0();
    // Lock-step: the first deadline is the timeout.
    let (t, _, _) = acked(&[("blksize", "1024")], start, ms(2), &cfg());
    assert_eq!(t.poll_timeout(), Some(start + ms(2) + t.rto()));
    // A negotiated timeout is the retransmission interval (RFC 2349): nothing sooner.
    let opts = [("windowsize", "4"), ("timeout", "1")];
    let (t, _, _) = acked(&opts, start, ms(2), &cfg());
    assert_eq!(
        t.poll_timeout(),
        Some(start + ms(2) + Duration::from_secs(1))
    );
    // The OACK went out twice: its ACK is no sample, so no round trip to probe by.
    let req = rrq("f", &[("windowsize", "4")]);
    let mut t = Transfer::new(&req, file_of(9000), &cfg(), start);
    drain(&mut t);
    let resent = t.poll_timeout().unwrap();
    t.handle_timeout(resent);
    drain(&mut t);
    t.handle_datagram(&ack(0), resent + ms(2));
    drain(&mut t);
    assert_eq!(t.poll_timeout(), Some(resent + ms(2) + t.rto()));
    // Switched off.
    let off = EngineConfig {
        tail_probe: false,
        ..cfg()
    };
    let (t, now) = opened(ms(2), &off);
    assert_eq!(t.poll_timeout(), Some(now + ms(50)));
}

#[test]
fn lost_last_blocks_cost_no_timeout_end_to_end() {
    // 4, 8, …: the last block of a window each time, seen by no one but the server.
    for ws in [2u16, 4, 8] {
        let now = t0();
        let file = file_of(512 * 64 + 100);
        let req = rrq("f", &[("windowsize", &ws.to_string())]);
        let mut t = Transfer::new(&req, file.clone(), &cfg(), now);
        let mut client = Client::new(512, u64::from(ws));
        client.drop_once.extend([ws, 3 * ws, 5 * ws]);
        let run = client.run(&mut t, now);
        assert_completed(&run, &file);
        assert_eq!((run.timeouts, run.probes), (0, 3), "ws {ws}");
        assert_eq!(
            run.data_sent,
            65 + 3,
            "ws {ws}: only the lost blocks went twice"
        );
    }
}
