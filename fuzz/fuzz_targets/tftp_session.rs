//! The TFTP transfer engine against a scripted client: a genuine client (ACKs what it got, in
//! order) interleaved with junk, forged ACKs and ERRORs, and a fake clock. Nothing panics; the
//! engine only emits packets that parse and fit the negotiated block size; it always has a
//! deadline until it is finished; and when only genuine ACKs reached it and it reports the
//! transfer completed, the client holds exactly the file.
//!
//! Input: `[len: u16 BE][RRQ bytes][file len: u16][max blksize: u16][max window: u8][retries: u8][steps…]`.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rackboot_tftp::{handle_initial, EngineConfig, Initial, Mode, Outcome, Packet, ReadRequest};

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

/// What the client knows.
#[derive(Default)]
struct Client {
    blksize: usize,
    got_oack: bool,
    /// Next wire block number expected.
    expect: u16,
    /// Last block received in order (wire number), 0 before any.
    last: u16,
    data: Vec<u8>,
    done: bool,
}

impl Client {
    fn receive(&mut self, pkt: &[u8], max_payload: usize) {
        match Packet::parse(pkt).expect("the engine emits only packets that parse") {
            Packet::Data { block, data } => {
                assert!(data.len() <= max_payload, "DATA larger than the block size");
                if block == self.expect && !self.done {
                    self.data.extend_from_slice(&data);
                    self.last = block;
                    self.expect = block.wrapping_add(1);
                    self.done = data.len() < self.blksize;
                }
            }
            Packet::Oack { options } => {
                self.got_oack = true;
                if let Some((_, v)) = options.iter().find(|(n, _)| n == "blksize") {
                    self.blksize = v.parse().expect("OACK blksize is a number");
                }
            }
            Packet::Error { .. } => {}
            other => panic!("the engine sent {other:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let Some(len) = b.u16() else { return };
    let rrq = b.take(usize::from(len)).to_vec();
    let req = match handle_initial(&rrq) {
        Initial::Read(req) => req,
        _ => ReadRequest {
            path: "f".into(),
            mode: Mode::Octet,
            options: vec![
                ("blksize".into(), "8".into()),
                ("windowsize".into(), "4".into()),
            ],
        },
    };
    let (Some(file_len), Some(max_blk), Some(max_win), Some(retries)) =
        (b.u16(), b.u16(), b.u8(), b.u8())
    else {
        return;
    };
    let file: Arc<[u8]> = (0..usize::from(file_len))
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    let cfg = EngineConfig {
        max_blksize: max_blk,
        max_windowsize: u16::from(max_win),
        default_timeout: Duration::from_secs(1),
        max_retries: u32::from(retries % 4),
        // 0 (clamped to 1 ms by the engine) up to above the default timeout (fixed).
        min_timeout: Duration::from_millis(u64::from(retries / 4) * 20),
        tail_probe: file_len % 2 == 0,
    };
    let mut now = Instant::now();
    let mut t = rackboot_tftp::Transfer::new(&req, file.clone(), &cfg, now);
    let max_payload = usize::from(t.blksize()).max(512);
    let mut client = Client {
        blksize: 512,
        expect: 1,
        ..Client::default()
    };
    let mut forged = false;
    let mut buf = Vec::new();
    let mut steps = 0u32;
    loop {
        while t.poll_transmit(&mut buf) {
            client.receive(&buf, max_payload);
        }
        if t.is_finished() {
            break;
        }
        assert!(
            t.poll_timeout().is_some(),
            "an unfinished transfer has a deadline"
        );
        steps += 1;
        let Some(op) = b.u8() else {
            // Out of script: let the clock run out, which must end it.
            now += Duration::from_secs(256);
            t.handle_timeout(now);
            if steps > 100_000 {
                panic!("transfer never ends");
            }
            continue;
        };
        match op {
            0x00..=0x5f => {
                let block = if client.got_oack && client.last == 0 {
                    0
                } else {
                    client.last
                };
                t.handle_datagram(&Packet::Ack { block }.to_bytes(), now);
            }
            0x60..=0x7f => {
                now += Duration::from_millis(u64::from(op & 0x1f) * 100);
                t.handle_timeout(now);
            }
            0x80..=0x9f => {
                let n = usize::from(b.u8().unwrap_or(0));
                let junk = b.take(n).to_vec();
                forged |= matches!(
                    Packet::parse(&junk),
                    Ok(Packet::Ack { .. } | Packet::Error { .. })
                );
                t.handle_datagram(&junk, now);
            }
            0xa0..=0xaf => {
                forged = true;
                let block = b.u16().unwrap_or(0);
                t.handle_datagram(&Packet::Ack { block }.to_bytes(), now);
            }
            0xb0..=0xb7 => {
                forged = true;
                let code = b.u16().unwrap_or(0);
                t.handle_datagram(
                    &Packet::Error {
                        code,
                        message: "x".into(),
                    }
                    .to_bytes(),
                    now,
                );
            }
            _ => {
                forged = true;
                t.handle_datagram(
                    &Packet::Error {
                        code: 8,
                        message: "abort".into(),
                    }
                    .to_bytes(),
                    now,
                );
            }
        }
    }
    if let Some(Outcome::Completed { bytes, .. }) = t.outcome() {
        assert_eq!(*bytes, file.len() as u64);
        if !forged {
            assert!(client.done, "completed but the client saw no final block");
            assert_eq!(
                client.data.as_slice(),
                &file[..],
                "client got other bytes than the file"
            );
        }
    }
});
