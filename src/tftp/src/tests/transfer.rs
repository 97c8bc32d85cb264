//! Transfer state machine: start, OACK flow, OVMF abort, timeouts, duplicates.

use std::time::Duration;

use super::sim::{assert_completed, Client};
use super::{ack, cfg, data_blocks, drain, file_of, ms, oack_options, parse, rrq, t0};
use crate::{error_packet, EngineConfig, ErrorCode, FailReason, Outcome, Packet, Transfer};

#[test]
fn no_options_starts_with_data_1_and_lockstep_completes() {
    let now = t0();
    let file = file_of(1500);
    let mut t = Transfer::new(&rrq("f", &[]), file.clone(), &cfg(), now);
    assert!(!t.oack_sent());
    let out = drain(&mut t);
    assert_eq!(out.len(), 1);
    assert_eq!(
        parse(&out[0]),
        Packet::Data {
            block: 1,
            data: file[..512].to_vec()
        }
    );
    t.handle_datagram(&ack(1), now + ms(1));
    assert_eq!(data_blocks(&drain(&mut t)), vec![2]);
    t.handle_datagram(&ack(2), now + ms(2));
    let last = drain(&mut t);
    assert_eq!(
        parse(&last[0]),
        Packet::Data {
            block: 3,
            data: file[1024..].to_vec()
        }
    );
    assert!(t.outcome().is_none());
    t.handle_datagram(&ack(3), now + ms(30));
    assert_eq!(
        t.outcome(),
        Some(&Outcome::Completed {
            bytes: 1500,
            blocks: 3,
            elapsed: ms(30)
        })
    );
    assert!(t.is_finished());
    assert_eq!(t.poll_timeout(), None);
    assert!(drain(&mut t).is_empty());
}

#[test]
fn file_size_multiple_of_blksize_ends_with_empty_block() {
    let now = t0();
    let file = file_of(1024);
    let mut t = Transfer::new(&rrq("f", &[]), file, &cfg(), now);
    drain(&mut t);
    t.handle_datagram(&ack(1), now);
    drain(&mut t);
    t.handle_datagram(&ack(2), now);
    let out = drain(&mut t);
    assert_eq!(
        parse(&out[0]),
        Packet::Data {
            block: 3,
            data: vec![]
        }
    );
    t.handle_datagram(&ack(3), now);
    assert!(matches!(
        t.outcome(),
        Some(Outcome::Completed { blocks: 3, .. })
    ));
}

#[test]
fn empty_file_is_one_empty_block() {
    let now = t0();
    let mut t = Transfer::new(&rrq("f", &[("tsize", "0")]), file_of(0), &cfg(), now);
    assert_eq!(
        oack_options(&drain(&mut t)[0]),
        vec![("tsize".into(), "0".into())]
    );
    t.handle_datagram(&ack(0), now);
    assert_eq!(
        parse(&drain(&mut t)[0]),
        Packet::Data {
            block: 1,
            data: vec![]
        }
    );
    t.handle_datagram(&ack(1), now);
    assert!(matches!(
        t.outcome(),
        Some(Outcome::Completed {
            bytes: 0,
            blocks: 1,
            ..
        })
    ));
}

#[test]
fn oack_then_ack0_then_data_1() {
    let now = t0();
    let mut t = Transfer::new(
        &rrq("f", &[("blksize", "1468")]),
        file_of(3000),
        &cfg(),
        now,
    );
    assert!(t.oack_sent());
    let out = drain(&mut t);
    assert_eq!(out.len(), 1);
    assert_eq!(
        oack_options(&out[0]),
        vec![("blksize".into(), "1468".into())]
    );
    // A stray ACK 1 before ACK 0 is ignored.
    t.handle_datagram(&ack(1), now);
    assert!(drain(&mut t).is_empty());
    t.handle_datagram(&ack(0), now);
    let out = drain(&mut t);
    assert_eq!(data_blocks(&out), vec![1]);
    assert_eq!(out[0].len(), 4 + 1468);
}

#[test]
fn ovmf_tsize_probe_error_8_after_oack_is_a_normal_outcome() {
    let now = t0();
    let req = rrq(
        "ipxe.efi",
        &[("tsize", "0"), ("blksize", "1468"), ("windowsize", "4")],
    );
    let mut t = Transfer::new(&req, file_of(1_000_000), &cfg(), now);
    drain(&mut t);
    let abort = Packet::Error {
        code: 8,
        message: "User aborted download".into(),
    }
    .to_bytes();
    t.handle_datagram(&abort, now + ms(5));
    let outcome = t.outcome().unwrap();
    assert_eq!(
        outcome,
        &Outcome::AbortedAfterOack {
            message: "User aborted download".into()
        }
    );
    assert!(!outcome.is_failure());
    assert!(t.is_finished());
    assert!(drain(&mut t).is_empty());
}

#[test]
fn client_error_during_data_is_a_failure() {
    let now = t0();
    let mut t = Transfer::new(&rrq("f", &[]), file_of(5000), &cfg(), now);
    drain(&mut t);
    t.handle_datagram(&error_packet(ErrorCode::OptionNegotiationFailed, "x"), now);
    let outcome = t.outcome().unwrap();
    assert!(outcome.is_failure());
    assert_eq!(
        outcome,
        &Outcome::Failed(FailReason::ClientError {
            code: 8,
            message: "x".into()
        })
    );
}

#[test]
fn client_error_other_than_8_after_oack_is_a_failure() {
    let now = t0();
    let mut t = Transfer::new(&rrq("f", &[("tsize", "0")]), file_of(5000), &cfg(), now);
    drain(&mut t);
    t.handle_datagram(&error_packet(ErrorCode::NotDefined, "cancelled"), now);
    assert!(matches!(
        t.outcome(),
        Some(Outcome::Failed(FailReason::ClientError { code: 0, .. }))
    ));
}

#[test]
fn timeout_retransmits_same_bytes_then_fails_after_max_retries() {
    let start = t0();
    let c = EngineConfig {
        max_retries: 3,
        ..cfg()
    };
    let mut t = Transfer::new(&rrq("f", &[]), file_of(2000), &c, start);
    let first = drain(&mut t);
    assert_eq!(t.poll_timeout(), Some(start + Duration::from_secs(1)));
    // Early call: nothing happens.
    t.handle_timeout(start + ms(999));
    assert!(drain(&mut t).is_empty());
    assert_eq!(t.poll_timeout(), Some(start + Duration::from_secs(1)));
    for i in 1..=3u64 {
        let now = t.poll_timeout().unwrap();
        assert_eq!(now, start + Duration::from_secs(i));
        t.handle_timeout(now);
        assert_eq!(drain(&mut t), first, "retransmission {i} differs");
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(1)));
        assert!(t.outcome().is_none());
    }
    assert_eq!(t.retransmits(), 3);
    t.handle_timeout(start + Duration::from_secs(4));
    assert_eq!(t.outcome(), Some(&Outcome::Failed(FailReason::TimedOut)));
    assert!(!t.is_finished(), "the ERROR is still queued");
    assert_eq!(t.poll_timeout(), None);
    let last = drain(&mut t);
    assert!(matches!(parse(&last[0]), Packet::Error { code: 0, .. }));
    assert!(t.is_finished());
}

#[test]
fn default_config_gives_up_after_five_retries() {
    let start = t0();
    let mut t = Transfer::new(&rrq("f", &[]), file_of(10), &cfg(), start);
    let mut sends = drain(&mut t).len();
    while t.outcome().is_none() {
        let now = t.poll_timeout().unwrap();
        t.handle_timeout(now);
        sends += drain(&mut t).len();
    }
    // 1 original + 5 retransmissions + 1 final ERROR.
    assert_eq!(sends, 7);
    assert_eq!(t.outcome(), Some(&Outcome::Failed(FailReason::TimedOut)));
}

#[test]
fn oack_is_retransmitted_on_timeout_with_negotiated_timeout() {
    let start = t0();
    let mut t = Transfer::new(&rrq("f", &[("timeout", "3")]), file_of(10), &cfg(), start);
    let first = drain(&mut t);
    assert_eq!(t.timeout(), Duration::from_secs(3));
    assert_eq!(t.poll_timeout(), Some(start + Duration::from_secs(3)));
    t.handle_timeout(start + Duration::from_secs(3));
    assert_eq!(drain(&mut t), first);
    assert_eq!(t.poll_timeout(), Some(start + Duration::from_secs(6)));
}

#[test]
fn whole_window_is_retransmitted_on_timeout() {
    let start = t0();
    let mut t = Transfer::new(
        &rrq("f", &[("windowsize", "4")]),
        file_of(10_000),
        &cfg(),
        start,
    );
    drain(&mut t);
    t.handle_datagram(&ack(0), start);
    let window = drain(&mut t);
    assert_eq!(data_blocks(&window), vec![1, 2, 3, 4]);
    t.handle_timeout(start + Duration::from_secs(1));
    assert_eq!(drain(&mut t), window);
}

#[test]
fn progress_resets_the_retry_budget_and_the_deadline() {
    let start = t0();
    let c = EngineConfig {
        max_retries: 1,
        ..cfg()
    };
    let mut t = Transfer::new(&rrq("f", &[]), file_of(5000), &c, start);
    drain(&mut t);
    t.handle_timeout(start + ms(1000));
    drain(&mut t);
    let now = start + ms(1500);
    t.handle_datagram(&ack(1), now);
    assert_eq!(t.poll_timeout(), Some(now + ms(1000)));
    t.handle_timeout(now + ms(1000));
    assert!(t.outcome().is_none(), "retry budget must be per window");
    assert_eq!(data_blocks(&drain(&mut t)), vec![2]);
}

#[test]
fn duplicate_acks_cause_no_retransmission() {
    let now = t0();
    let mut t = Transfer::new(&rrq("f", &[]), file_of(5000), &cfg(), now);
    drain(&mut t);
    t.handle_datagram(&ack(1), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![2]);
    for _ in 0..5 {
        t.handle_datagram(&ack(1), now);
        assert!(drain(&mut t).is_empty(), "duplicate ACK 1 must be ignored");
    }
    // Also the ACK 0 of an OACK that never happened, and a future block.
    t.handle_datagram(&ack(0), now);
    t.handle_datagram(&ack(9), now);
    assert!(drain(&mut t).is_empty());
    assert_eq!(t.retransmits(), 0);
    assert_eq!(t.ignored_datagrams(), 7);
    t.handle_datagram(&ack(2), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![3]);
}

#[test]
fn repeated_ack0_after_oack_resends_the_first_window_once() {
    // ACK 0 again after DATA 1-2 went out: the client missed DATA 1 (RFC 7440 clients re-ACK
    // their last good block on a gap). The window is resent at once, and only once.
    let now = t0();
    let mut t = Transfer::new(
        &rrq("f", &[("windowsize", "2")]),
        file_of(5000),
        &cfg(),
        now,
    );
    drain(&mut t);
    t.handle_datagram(&ack(0), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![1, 2]);
    t.handle_datagram(&ack(0), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![1, 2]);
    t.handle_datagram(&ack(0), now);
    assert!(drain(&mut t).is_empty());
    assert_eq!(t.retransmits(), 2);
}

#[test]
fn repeated_ack0_after_a_resent_oack_is_ignored() {
    // The OACK went out twice, so the client may ACK it twice: no loss signal.
    let now = t0();
    let mut t = Transfer::new(
        &rrq("f", &[("windowsize", "2")]),
        file_of(5000),
        &cfg(),
        now,
    );
    drain(&mut t);
    t.handle_timeout(now + Duration::from_secs(1));
    assert_eq!(drain(&mut t).len(), 1, "the OACK again");
    let now = now + ms(1001);
    t.handle_datagram(&ack(0), now);
    assert_eq!(data_blocks(&drain(&mut t)), vec![1, 2]);
    t.handle_datagram(&ack(0), now);
    assert!(drain(&mut t).is_empty());
}

#[test]
fn sorcerers_apprentice_client_reacking_duplicates_gets_no_extra_data() {
    // ACK 17 is delayed past the server's timeout, so the server resends
    // DATA 17, the client re-ACKs the duplicate and the server sees ACK 17
    // twice. A naive server would then send DATA 18 twice, and so on forever.
    // Retransmissions must only come from timeouts.
    let now = t0();
    let file = file_of(512 * 40 + 7);
    let mut t = Transfer::new(&rrq("f", &[]), file.clone(), &cfg(), now);
    let mut client = Client::new(512, 1);
    client.ack_duplicates = true;
    client.late_acks.extend([17, 30]);
    client.drop_once.insert(5);
    let run = client.run(&mut t, now);
    assert_completed(&run, &file);
    assert_eq!(run.timeouts, 3);
    assert_eq!(run.data_sent, 41 + 3);
    assert_eq!(t.retransmits(), 3);
    assert_eq!(t.ignored_datagrams(), 2, "the two duplicate ACKs");
}

#[test]
fn junk_and_wrong_opcodes_on_the_transfer_port_are_ignored() {
    let now = t0();
    let mut t = Transfer::new(&rrq("f", &[]), file_of(5000), &cfg(), now);
    drain(&mut t);
    let rrq_again = [0u8, 1, b'f', 0, b'o', b'c', b't', b'e', b't', 0];
    for junk in [
        &[][..],
        &[0xff, 0xff],
        &[0, 3, 0, 1, 9, 9],
        &rrq_again,
        &[0, 6],
    ] {
        t.handle_datagram(junk, now);
        assert!(drain(&mut t).is_empty());
    }
    assert_eq!(t.ignored_datagrams(), 5);
    assert!(t.outcome().is_none());
}

#[test]
fn datagrams_after_completion_are_ignored() {
    let now = t0();
    let mut t = Transfer::new(&rrq("f", &[]), file_of(3), &cfg(), now);
    drain(&mut t);
    t.handle_datagram(&ack(1), now);
    let done = t.outcome().cloned();
    t.handle_datagram(&ack(1), now);
    t.handle_datagram(&error_packet(ErrorCode::NotDefined, "late"), now);
    t.handle_timeout(now + Duration::from_secs(100));
    assert_eq!(t.outcome().cloned(), done);
    assert!(drain(&mut t).is_empty());
}

#[test]
fn metrics_accessors_report_negotiation() {
    let now = t0();
    let req = rrq(
        "f",
        &[("tsize", "0"), ("blksize", "1468"), ("windowsize", "4")],
    );
    let t = Transfer::new(&req, file_of(100), &cfg(), now);
    assert_eq!(t.blksize(), 1468);
    assert_eq!(t.windowsize(), 4);
    assert!(t.tsize_acked());
    assert!(t.oack_sent());
    assert_eq!(t.file_size(), 100);
    let plain = Transfer::new(&rrq("f", &[]), file_of(100), &cfg(), now);
    assert_eq!((plain.blksize(), plain.windowsize()), (512, 1));
    assert!(!plain.tsize_acked() && !plain.oack_sent());
}

#[test]
fn huge_default_timeout_does_not_overflow_the_clock() {
    let now = t0();
    let c = EngineConfig {
        default_timeout: Duration::MAX,
        ..cfg()
    };
    let mut t = Transfer::new(&rrq("f", &[]), file_of(10), &c, now);
    drain(&mut t);
    assert!(t.poll_timeout().unwrap() > now);
    t.handle_timeout(t.poll_timeout().unwrap());
    assert_eq!(drain(&mut t).len(), 1);
}
