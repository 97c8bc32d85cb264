//! A TFTP read as boot firmware does it, sans-IO: RRQ with the client's options (RFC 2347/2348/
//! 2349/7440), OACK → ACK 0, DATA in lock-step or in windows, block-number rollover, the EDK2
//! `tsize` probe (RRQ, OACK, ERROR 8, then the real RRQ), retransmission on timeout
//! (4/8/16/32 s). The shell owns the UDP socket; datagrams go in and out as bytes.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::retry::Backoff;

pub const PORT: u16 = 69;
const RRQ: u16 = 1;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

/// What the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub blksize: Option<u16>,
    pub windowsize: Option<u16>,
    pub tsize: bool,
    /// EDK2: first RRQ only to learn `tsize`, aborted with ERROR 8 after the OACK.
    pub tsize_probe: bool,
}

impl Options {
    /// EDK2 (OVMF) native PXE: blksize 1468, windowsize 4, tsize probe first.
    pub const EDK2: Options = Options {
        blksize: Some(1468),
        windowsize: Some(4),
        tsize: true,
        tsize_probe: true,
    };
    /// iPXE / classic PXE ROM: lock-step, blksize 1432.
    pub const LOCKSTEP: Options = Options {
        blksize: Some(1432),
        windowsize: None,
        tsize: true,
        tsize_probe: false,
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done { bytes: u64 },
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Probe,
    Requesting,
    Transferring,
}

/// One file transfer.
#[derive(Debug)]
pub struct Client {
    server: Ipv4Addr,
    file: String,
    opts: Options,
    phase: Phase,
    peer: Option<SocketAddrV4>,
    blksize: usize,
    window: u16,
    last: u16,
    in_window: u16,
    gap_acked: bool,
    received: u64,
    tsize: Option<u64>,
    backoff: Backoff,
    outcome: Option<Outcome>,
    out: Vec<(SocketAddrV4, Vec<u8>)>,
    last_sent: Option<(SocketAddrV4, Vec<u8>)>,
}

impl Client {
    pub fn new(server: Ipv4Addr, file: &str, opts: Options, now: Duration) -> Client {
        let mut c = Client {
            server,
            file: file.to_string(),
            opts,
            phase: if opts.tsize_probe {
                Phase::Probe
            } else {
                Phase::Requesting
            },
            peer: None,
            blksize: 512,
            window: 1,
            last: 0,
            in_window: 0,
            gap_acked: false,
            received: 0,
            tsize: None,
            backoff: Backoff::firmware(now),
            outcome: None,
            out: Vec::new(),
            last_sent: None,
        };
        c.send_rrq();
        c
    }

    /// Requests and ACKs sent again after a firmware timeout (a stalled transfer each).
    pub fn retries(&self) -> u32 {
        self.backoff.retries()
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Size announced by the server (OACK `tsize`).
    pub fn tsize(&self) -> Option<u64> {
        self.tsize
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddrV4, Vec<u8>)> {
        (!self.out.is_empty()).then(|| self.out.remove(0))
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.outcome.is_none().then(|| self.backoff.deadline())
    }

    fn send(&mut self, to: SocketAddrV4, p: Vec<u8>, remember: bool) {
        if remember {
            self.last_sent = Some((to, p.clone()));
        }
        self.out.push((to, p));
    }

    fn send_rrq(&mut self) {
        let mut p = RRQ.to_be_bytes().to_vec();
        p.extend_from_slice(self.file.as_bytes());
        p.push(0);
        p.extend_from_slice(b"octet\0");
        let mut opt = |k: &str, v: &str| {
            p.extend_from_slice(k.as_bytes());
            p.push(0);
            p.extend_from_slice(v.as_bytes());
            p.push(0);
        };
        if self.opts.tsize {
            opt("tsize", "0");
        }
        if let Some(b) = self.opts.blksize {
            opt("blksize", &b.to_string());
        }
        // The probe only asks for the size (and the block size, as EDK2 does).
        if self.phase != Phase::Probe {
            if let Some(w) = self.opts.windowsize {
                opt("windowsize", &w.to_string());
            }
        }
        self.send(SocketAddrV4::new(self.server, PORT), p, true);
    }

    fn send_ack(&mut self, block: u16) {
        if let Some(peer) = self.peer {
            let mut p = ACK.to_be_bytes().to_vec();
            p.extend_from_slice(&block.to_be_bytes());
            self.send(peer, p, true);
        }
    }

    fn send_error(&mut self, to: SocketAddrV4, code: u16, msg: &str) {
        let mut p = ERROR.to_be_bytes().to_vec();
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(msg.as_bytes());
        p.push(0);
        self.send(to, p, false);
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        if self.outcome.is_some() || now < self.backoff.deadline() {
            return;
        }
        if !self.backoff.next(now) {
            self.outcome = Some(Outcome::Failed(format!(
                "tftp: timeout after {} bytes",
                self.received
            )));
            return;
        }
        // Windowed: the re-sent ACK of the last good block restarts the window there.
        self.in_window = 0;
        if let Some((to, p)) = self.last_sent.clone() {
            self.out.push((to, p));
        }
    }

    /// A datagram from `from` to our port.
    pub fn handle_datagram(&mut self, now: Duration, from: SocketAddrV4, p: &[u8]) {
        if self.outcome.is_some() {
            return;
        }
        let Some(op) = p.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
            return;
        };
        if let Some(peer) = self.peer {
            if from != peer && self.phase == Phase::Transferring {
                self.send_error(from, 5, "unknown transfer ID");
                return;
            }
        }
        match (self.phase, op) {
            (_, ERROR) => {
                let code = p.get(2..4).map(|b| u16::from_be_bytes([b[0], b[1]]));
                let msg = p.get(4..).map(cstr).unwrap_or_default();
                self.outcome = Some(Outcome::Failed(format!(
                    "tftp: error {} {msg}",
                    code.unwrap_or(0)
                )));
            }
            (Phase::Probe, OACK | DATA) => {
                if op == OACK {
                    self.tsize = oack(p).tsize;
                }
                self.send_error(from, 8, "tsize probe done");
                self.phase = Phase::Requesting;
                self.backoff.reset(now);
                self.send_rrq();
            }
            (Phase::Requesting, OACK) => {
                let o = oack(p);
                self.peer = Some(from);
                self.blksize = o.blksize.map(usize::from).unwrap_or(512);
                self.window = o.windowsize.unwrap_or(1).max(1);
                self.tsize = o.tsize.or(self.tsize);
                self.phase = Phase::Transferring;
                self.backoff.reset(now);
                self.send_ack(0);
            }
            (Phase::Requesting, DATA) => {
                // The server ignored every option: 512-byte lock-step.
                self.peer = Some(from);
                self.blksize = 512;
                self.window = 1;
                self.phase = Phase::Transferring;
                self.data(now, p);
            }
            (Phase::Transferring, DATA) => self.data(now, p),
            _ => {}
        }
    }

    fn data(&mut self, now: Duration, p: &[u8]) {
        let (Some(block), Some(payload)) = (
            p.get(2..4).map(|b| u16::from_be_bytes([b[0], b[1]])),
            p.get(4..),
        ) else {
            return;
        };
        if block == self.last.wrapping_add(1) {
            self.last = block;
            self.received += payload.len() as u64;
            self.in_window += 1;
            self.gap_acked = false;
            self.backoff.reset(now);
            if payload.len() < self.blksize {
                self.send_ack(block);
                self.outcome = Some(Outcome::Done {
                    bytes: self.received,
                });
            } else if self.in_window >= self.window {
                self.in_window = 0;
                self.send_ack(block);
            }
        } else if !self.gap_acked || self.window == 1 {
            // Duplicate (our ACK was lost) or a gap in the window: ACK the last good block
            // once, the server goes on from there (RFC 7440 §4).
            self.gap_acked = self.window > 1;
            self.in_window = 0;
            let last = self.last;
            self.send_ack(last);
        }
    }
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(b.get(..end).unwrap_or_default()).into_owned()
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Oack {
    blksize: Option<u16>,
    windowsize: Option<u16>,
    tsize: Option<u64>,
}

fn oack(p: &[u8]) -> Oack {
    let mut o = Oack::default();
    let fields: Vec<&[u8]> = p.get(2..).unwrap_or_default().split(|&b| b == 0).collect();
    for kv in fields.chunks(2) {
        let (Some(k), Some(v)) = (kv.first(), kv.get(1)) else {
            break;
        };
        let k = String::from_utf8_lossy(k).to_ascii_lowercase();
        let v = String::from_utf8_lossy(v);
        match k.as_str() {
            "blksize" => o.blksize = v.parse().ok(),
            "windowsize" => o.windowsize = v.parse().ok(),
            "tsize" => o.tsize = v.parse().ok(),
            _ => {}
        }
    }
    o
}

#[cfg(test)]
#[path = "tests/tftp.rs"]
mod tests;
