//! A simulated RFC 1350/7440 client driving a [`Transfer`] over a lossy link.

use std::collections::HashSet;
use std::time::Instant;

use super::ack;
use crate::{Outcome, Packet, Transfer};

/// What happened during a simulated run.
pub(crate) struct Run {
    pub received: Vec<u8>,
    pub outcome: Outcome,
    /// Timeouts the server had to take (retransmission deadline reached; tail probes not
    /// counted).
    pub timeouts: u64,
    /// Tail probes the server sent.
    pub probes: u64,
    /// DATA datagrams the server emitted (including resends).
    pub data_sent: u64,
    /// Wire block 65535 was immediately followed by wire block 0.
    pub saw_wrap: bool,
}

/// Client behaviour knobs.
pub(crate) struct Client {
    pub blksize: usize,
    pub windowsize: u64,
    /// Wire block numbers to drop the first time they are sent.
    pub drop_once: HashSet<u16>,
    /// ACKs for these wire blocks (first time only) arrive late: after the
    /// server's next deadline, i.e. after it already resent the window (or, with
    /// a tail probe, its last block).
    pub late_acks: HashSet<u16>,
    /// Re-ACK the last good block on every duplicate DATA (RFC 1350 style),
    /// which a correct server must not answer with resends.
    pub ack_duplicates: bool,
}

impl Client {
    pub(crate) fn new(blksize: usize, windowsize: u64) -> Client {
        Client {
            blksize,
            windowsize,
            drop_once: HashSet::new(),
            late_acks: HashSet::new(),
            ack_duplicates: false,
        }
    }

    /// Drive `t` (already created, nothing polled yet) to completion. If the
    /// transfer starts with an OACK, the client answers ACK 0.
    pub(crate) fn run(mut self, t: &mut Transfer, mut now: Instant) -> Run {
        let mut received = Vec::new();
        let mut expected: u64 = 1; // next block index wanted
        let mut in_window: u64 = 0;
        let mut gap_acked = false;
        let mut done = false;
        let mut acks: Vec<Vec<u8>> = Vec::new();
        let mut late: Vec<Vec<u8>> = Vec::new();
        let mut buf = Vec::new();
        let (mut timeouts, mut data_sent) = (0, 0);
        let mut prev_wire: Option<u16> = None;
        let mut saw_wrap = false;
        loop {
            while t.poll_transmit(&mut buf) {
                let block = match buf.get(..2) {
                    Some([0, 6]) => {
                        acks.push(ack(0));
                        continue;
                    }
                    Some([0, 3]) => u16::from_be_bytes([buf[2], buf[3]]),
                    _ => continue, // ERROR on timeout
                };
                data_sent += 1;
                if prev_wire == Some(u16::MAX) && block == 0 {
                    saw_wrap = true;
                }
                prev_wire = Some(block);
                if self.drop_once.remove(&block) {
                    continue;
                }
                if done {
                    continue;
                }
                let payload = &buf[4..];
                if block == expected as u16 {
                    received.extend_from_slice(payload);
                    expected += 1;
                    in_window += 1;
                    gap_acked = false;
                    let full_window = in_window == self.windowsize;
                    if payload.len() < self.blksize || full_window {
                        done = payload.len() < self.blksize;
                        in_window = 0;
                        if self.late_acks.remove(&block) {
                            late.push(ack(block));
                        } else {
                            acks.push(ack(block));
                        }
                    }
                } else if block.wrapping_sub(expected as u16) < 0x8000 {
                    // A block from the future: a gap. Re-ACK the last good one once.
                    if !gap_acked {
                        gap_acked = true;
                        in_window = 0;
                        acks.push(ack((expected - 1) as u16));
                    }
                } else if self.ack_duplicates {
                    acks.push(ack((expected - 1) as u16));
                }
            }
            if let Some(outcome) = t.outcome() {
                if t.is_finished() {
                    return Run {
                        received,
                        outcome: outcome.clone(),
                        timeouts,
                        probes: t.tail_probes(),
                        data_sent,
                        saw_wrap,
                    };
                }
            }
            if acks.is_empty() {
                now = t.poll_timeout().unwrap();
                let probes = t.tail_probes();
                t.handle_timeout(now);
                if t.tail_probes() == probes {
                    timeouts += 1;
                }
                acks.append(&mut late);
            } else {
                for a in std::mem::take(&mut acks) {
                    t.handle_datagram(&a, now);
                }
            }
        }
    }
}

pub(crate) fn assert_completed(run: &Run, file: &[u8]) {
    assert!(
        matches!(run.outcome, Outcome::Completed { bytes, .. } if bytes == file.len() as u64),
        "outcome {:?}",
        run.outcome
    );
    assert_eq!(run.received.len(), file.len());
    assert!(
        run.received == file,
        "reassembled bytes differ from the file"
    );
}

/// Sanity check of the helper's own parsing against [`Packet`].
#[test]
fn sim_helper_reads_data_block_numbers_like_packet_parse() {
    let mut bytes = Vec::new();
    Packet::Data {
        block: 0xfffe,
        data: vec![1, 2],
    }
    .encode(&mut bytes);
    assert_eq!(u16::from_be_bytes([bytes[2], bytes[3]]), 0xfffe);
}
