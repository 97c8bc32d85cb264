//! Unit tests (fake clock: a base `Instant` plus `Duration`s).

mod fuzz;
mod gone;
mod initial;
mod negotiation;
mod path;
mod probe;
mod rto;
mod sim;
mod transfer;
mod vectors;
mod window;
mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{EngineConfig, Mode, Packet, ReadRequest, Transfer};

/// Base of the fake clock.
pub(crate) fn t0() -> Instant {
    Instant::now()
}

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) fn rrq(path: &str, opts: &[(&str, &str)]) -> ReadRequest {
    ReadRequest {
        path: path.to_owned(),
        mode: Mode::Octet,
        options: opts
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// Deterministic pseudo-random file contents (xorshift), cheap even for 64 MiB.
pub(crate) fn file_of(len: usize) -> Arc<[u8]> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let take = (len - v.len()).min(8);
        v.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    v.into()
}

/// Everything `poll_transmit` has queued right now.
pub(crate) fn drain(t: &mut Transfer) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while t.poll_transmit(&mut buf) {
        out.push(buf.clone());
    }
    out
}

pub(crate) fn ack(block: u16) -> Vec<u8> {
    Packet::Ack { block }.to_bytes()
}

pub(crate) fn parse(bytes: &[u8]) -> Packet {
    Packet::parse(bytes).unwrap()
}

/// Wire block numbers of a batch of DATA datagrams.
pub(crate) fn data_blocks(batch: &[Vec<u8>]) -> Vec<u16> {
    batch
        .iter()
        .map(|b| match parse(b) {
            Packet::Data { block, .. } => block,
            other => panic!("expected DATA, got {other:?}"),
        })
        .collect()
}

pub(crate) fn oack_options(bytes: &[u8]) -> Vec<(String, String)> {
    match parse(bytes) {
        Packet::Oack { options } => options,
        other => panic!("expected OACK, got {other:?}"),
    }
}

pub(crate) fn cfg() -> EngineConfig {
    EngineConfig::default()
}
