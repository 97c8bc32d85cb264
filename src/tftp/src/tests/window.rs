//! Windowed transfers (RFC 7440) with loss, and block-number rollover.

use super::sim::{assert_completed, Client};
use super::{ack, cfg, data_blocks, drain, file_of, rrq, t0};
use crate::{EngineConfig, Transfer};

fn windowed(ws: u16, blksize: u16, len: usize, drops: &[u16]) {
    let now = t0();
    let file = file_of(len);
    let req = rrq(
        "f",
        &[
            ("blksize", &blksize.to_string()),
            ("windowsize", &ws.to_string()),
        ],
    );
    let mut t = Transfer::new(&req, file.clone(), &cfg(), now);
    assert_eq!(t.windowsize(), ws);
    let mut client = Client::new(usize::from(blksize), u64::from(ws));
    client.drop_once.extend(drops.iter().copied());
    let run = client.run(&mut t, now);
    assert_completed(&run, &file);
    if ws > 1 {
        // Every drop sits in the middle of a window: the client's re-ACK of
        // its last good block recovers it without any server timeout.
        assert_eq!(run.timeouts, 0, "ws {ws}: needed a timeout");
        assert!(t.retransmits() > 0);
    }
}

#[test]
fn windowsize_1_dropped_data_recovers_by_timeout() {
    let now = t0();
    let file = file_of(512 * 10 + 3);
    let mut t = Transfer::new(&rrq("f", &[]), file.clone(), &cfg(), now);
    let mut client = Client::new(512, 1);
    client.drop_once.extend([4, 9]);
    let run = client.run(&mut t, now);
    assert_completed(&run, &file);
    assert_eq!(run.timeouts, 2);
    assert_eq!(t.retransmits(), 2);
}

#[test]
fn windowsize_4_dropped_data_mid_window_resumes_from_last_good() {
    // Windows 1-4, 5-8, ...: drop 6 (mid window), 10 (mid window).
    // 6 lost: re-ACK 5, window 6-9; then 10-13 with 11 lost: re-ACK 10.
    windowed(4, 512, 512 * 30 + 100, &[6, 11]);
}

#[test]
fn windowsize_16_dropped_data_mid_window_resumes_from_last_good() {
    windowed(16, 1468, 1468 * 100 + 1, &[8, 41]);
}

#[test]
fn windowsize_64_dropped_data_mid_window_resumes_from_last_good() {
    windowed(64, 1024, 1024 * 300, &[30, 100, 250]);
}

#[test]
fn window_slides_to_the_reacked_block_exactly() {
    let now = t0();
    let req = rrq("f", &[("windowsize", "4")]);
    let mut t = Transfer::new(&req, file_of(512 * 20), &cfg(), now);
    drain(&mut t);
    t.handle_datagram(&ack(0), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![1, 2, 3, 4]);
    // Block 3 lost: client re-ACKs 2. Server resends from 3.
    t.handle_datagram(&ack(2), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![3, 4, 5, 6]);
    // Late re-ACK 2 (client saw the old 4 after the gap): stale, ignored.
    t.handle_datagram(&ack(2), now);
    assert!(drain(&mut t).is_empty());
    t.handle_datagram(&ack(6), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![7, 8, 9, 10]);
}

#[test]
fn first_block_of_window_lost_is_resent_without_a_timeout() {
    // The client's re-ACK then repeats the ACK that opened the window: the window is resent
    // at once instead of after the retransmission timeout.
    let now = t0();
    let file = file_of(512 * 20 + 1);
    let req = rrq("f", &[("windowsize", "4")]);
    let mut t = Transfer::new(&req, file.clone(), &cfg(), now);
    let mut client = Client::new(512, 4);
    client.drop_once.extend([1, 9, 17]);
    let run = client.run(&mut t, now);
    assert_completed(&run, &file);
    assert_eq!(run.timeouts, 0);
    // Windows 1-4, 9-12 and 17-20 went out twice.
    assert_eq!(run.data_sent, 21 + 3 * 4);
}

#[test]
fn first_block_lost_right_after_a_resend_waits_for_the_timeout() {
    // After a resent window, copies of old blocks may still be on their way and make the
    // client repeat its ACK: the next window does not take that as a loss.
    let now = t0();
    let file = file_of(512 * 12 + 1);
    let req = rrq("f", &[("windowsize", "4")]);
    let mut t = Transfer::new(&req, file.clone(), &cfg(), now);
    let mut client = Client::new(512, 4);
    // 5 lost: window 5-8 resent at once; then 9 lost in the window after the resend.
    client.drop_once.extend([5, 9]);
    let run = client.run(&mut t, now);
    assert_completed(&run, &file);
    assert_eq!(run.timeouts, 1);
    // The tail probe of window 9-12 came first and could not help: the gap was reported.
    assert_eq!(run.probes, 1);
}

fn reacking_client_with_late_acks(tail_probe: bool) -> super::sim::Run {
    let now = t0();
    let file = file_of(512 * 40 + 7);
    let req = rrq("f", &[("windowsize", "4")]);
    let c = EngineConfig {
        tail_probe,
        ..cfg()
    };
    let mut t = Transfer::new(&req, file.clone(), &c, now);
    let mut client = Client::new(512, 4);
    client.ack_duplicates = true;
    client.late_acks.extend([8, 24]);
    let run = client.run(&mut t, now);
    assert_completed(&run, &file);
    run
}

#[test]
fn windowed_client_reacking_duplicates_gets_each_window_at_most_twice() {
    // The ACK of window 5-8 arrives after the server's timeout: the server resends 5-8 and
    // the client re-ACKs every duplicate. Those repeats must not resend 9-12 (and so on).
    let run = reacking_client_with_late_acks(false);
    assert_eq!((run.timeouts, run.probes), (2, 0));
    assert_eq!(run.data_sent, 41 + 4 + 4);
    // With the tail probe, the late ACK meets a probe instead: one block resent, not four,
    // and the client's ACK of the duplicate does not resend the next window either.
    let run = reacking_client_with_late_acks(true);
    assert_eq!((run.timeouts, run.probes), (0, 2));
    assert_eq!(run.data_sent, 41 + 1 + 1);
}

#[test]
fn acks_answering_a_resend_slide_the_window_without_sending_it_again() {
    // atftp re-ACKs its last good block when an old copy arrives. After a resend, such an ACK
    // inside the window must not resend blocks that are still on their way, or the two
    // sides' windows stay out of step and every window goes out twice.
    let now = t0();
    let req = rrq("f", &[("windowsize", "4")]);
    // Without the tail probe, which would find the lost 4 first (tests/probe.rs).
    let c = EngineConfig {
        tail_probe: false,
        ..cfg()
    };
    let mut t = Transfer::new(&req, file_of(512 * 30), &c, now);
    drain(&mut t);
    t.handle_datagram(&ack(0), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![1, 2, 3, 4]);
    // 4 lost: the timeout resends the window.
    t.handle_timeout(t.poll_timeout().unwrap());
    assert_eq!(data_blocks(&drain(&mut t)), vec![1, 2, 3, 4]);
    // The old 1 arrives again: the client re-ACKs 3. The resent 4 is on its way.
    t.handle_datagram(&ack(3), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![5, 6, 7]);
    t.handle_datagram(&ack(3), now);
    assert!(drain(&mut t).is_empty());
    t.handle_datagram(&ack(7), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![8, 9, 10, 11]);
    // Far from the resend, an ACK inside the window is a gap report again.
    t.handle_datagram(&ack(9), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![10, 11, 12, 13]);
}

#[test]
fn rollover_64mib_at_blksize_512_wraps_block_numbers() {
    let now = t0();
    let file = file_of(64 << 20);
    let mut t = Transfer::new(&rrq("big", &[]), file.clone(), &cfg(), now);
    let run = Client::new(512, 1).run(&mut t, now);
    assert_completed(&run, &file);
    assert!(run.saw_wrap, "wire block 65535 must be followed by 0");
    assert!(matches!(
        run.outcome,
        crate::Outcome::Completed {
            blocks: 131_073,
            ..
        }
    ));
    assert_eq!(run.data_sent, 131_073);
    assert_eq!(run.timeouts, 0);
}

#[test]
fn rollover_with_windows_and_loss_around_the_wrap() {
    let now = t0();
    // blksize 8: 70_000 blocks, crossing 65535 -> 0 once.
    let file = file_of(8 * 70_000 + 5);
    let req = rrq("f", &[("blksize", "8"), ("windowsize", "16")]);
    let mut t = Transfer::new(&req, file.clone(), &cfg(), now);
    let mut client = Client::new(8, 16);
    // Drops are by wire number, first occurrence (2 is lost in the first
    // epoch); some may land at a window start and need a timeout: fine.
    client.drop_once.extend([65530, 65535, 0, 2]);
    let run = client.run(&mut t, now);
    assert_completed(&run, &file);
    assert!(run.saw_wrap);
}

#[test]
fn stale_ack_across_the_wrap_is_ignored() {
    // Get the window to straddle the wrap, then replay an old ACK.
    let now = t0();
    let c = EngineConfig::default();
    let req = rrq("f", &[("blksize", "8"), ("windowsize", "4")]);
    let mut t = Transfer::new(&req, file_of(8 * 70_000), &c, now);
    drain(&mut t);
    t.handle_datagram(&ack(0), now);
    let mut last: u64 = 0;
    while last < 65_532 {
        drain(&mut t);
        last += 4;
        t.handle_datagram(&ack(last as u16), now);
    }
    assert_eq!(data_blocks(&drain(&mut t)), vec![65533, 65534, 65535, 0]);
    for stale in [65000u16, 1, 40000] {
        t.handle_datagram(&ack(stale), now);
        assert!(drain(&mut t).is_empty(), "stale ACK {stale} caused sends");
    }
    // Wire 0 (block 65536) lost: the client re-ACKs 65535, resend from 0.
    t.handle_datagram(&ack(65535), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![0, 1, 2, 3]);
    t.handle_datagram(&ack(3), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![4, 5, 6, 7]);
}

#[test]
fn windowed_completion_at_a_short_final_window() {
    let now = t0();
    let file = file_of(512 * 5 + 10);
    let req = rrq("f", &[("windowsize", "4")]);
    let mut t = Transfer::new(&req, file, &cfg(), now);
    drain(&mut t);
    t.handle_datagram(&ack(0), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![1, 2, 3, 4]);
    t.handle_datagram(&ack(4), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![5, 6]);
    t.handle_datagram(&ack(6), now);
    assert!(matches!(
        t.outcome(),
        Some(crate::Outcome::Completed { blocks: 6, .. })
    ));
}
