//! Per-transfer state machine for one read request.
//!
//! See the crate documentation for the call order. Block indices are tracked
//! internally as `u64` starting at 1; the wire block number is the index
//! modulo 65536, so the block after 65535 is 0 (tftpd-hpa/atftp/curl rollover).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::EngineConfig;
use crate::initial::ReadRequest;
use crate::options::{negotiate, Negotiated};
use crate::wire::{write_data, write_error, ErrorCode, Packet};

/// The shortest wait before a tail probe (see `Window::probe`).
const PROBE_FLOOR: Duration = Duration::from_millis(5);

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The final DATA block was acknowledged.
    Completed {
        /// File size in bytes.
        bytes: u64,
        /// Number of DATA blocks (including a final empty one).
        blocks: u64,
        /// From [`Transfer::new`] to the final ACK.
        elapsed: Duration,
    },
    /// The client answered the OACK with ERROR 8. This is the normal end of a
    /// `tsize` probe (OVMF does it before every real download): not a failure.
    AbortedAfterOack {
        /// Message the client sent.
        message: String,
    },
    /// The transfer failed.
    Failed(FailReason),
}

impl Outcome {
    /// True for [`Outcome::Failed`] only.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }
}

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// The client sent an ERROR packet (other than the OACK abort above).
    ClientError {
        /// Error code sent by the client.
        code: u16,
        /// Message sent by the client.
        message: String,
    },
    /// No progress after `max_retries` retransmissions.
    TimedOut,
    /// The client's port is closed: its host answered our datagram with an ICMP port
    /// unreachable (see [`Transfer::handle_port_unreachable`]).
    ClientGone {
        /// Every DATA block, the last included, had been sent, and more datagrams after it: the
        /// client most likely has the whole file and only its final ACK was lost (the refusal
        /// answered a resend).
        all_sent: bool,
    },
}

#[derive(Debug)]
struct Window {
    /// First unacknowledged block index.
    base: u64,
    /// Next block `poll_transmit` emits.
    next: u64,
    /// Exclusive end of the window being (re)sent.
    end: u64,
    /// Exclusive end of all blocks emitted so far (monotonic).
    sent_end: u64,
    deadline: Instant,
    retries: u32,
    /// When the window was opened: its ACK's round-trip sample starts here.
    opened: Instant,
    /// Some block of this window has been sent more than once (its ACK gives no
    /// round-trip sample, Karn's rule; the next window is not `fresh`).
    resent: bool,
    /// A repeat of the ACK that opened the window means its first block was lost
    /// (the client re-ACKs its last good block on a gap, RFC 7440): resend the
    /// window at once, once. Only for a window with no older DATA in flight and
    /// no resends just before it, so echoes of duplicates cannot keep doubling
    /// the traffic (the windowed Sorcerer's Apprentice). Never in lock-step.
    fresh: bool,
    /// When to send the window's last block again if no ACK came: a lost last block is
    /// reported by no one (the client has no later block to see the gap by), so only a timer
    /// finds it. Twice the smoothed round trip (at least 5 ms) instead of the whole timeout;
    /// once per window, only with a measured round trip, an adaptive timeout and a window of
    /// more than one block (like TCP's tail loss probe, RFC 8985). A client that had the block
    /// answers the duplicate with the ACK it already sent, which a probed window's successor
    /// ignores (it is not `fresh`).
    probe: Option<Instant>,
    /// The probe is due: `poll_transmit` sends the last block next.
    probe_due: bool,
}

#[derive(Debug)]
enum State {
    /// OACK to (re)send / sent; waiting for ACK 0.
    AwaitOackAck {
        pending: bool,
        deadline: Instant,
        retries: u32,
    },
    /// Sending DATA windows.
    Sending(Window),
    /// Finished; `pending` is a final packet still to emit (ERROR on timeout).
    Done {
        outcome: Outcome,
        pending: Option<Vec<u8>>,
    },
}

/// One read transfer (sans-IO). Create with [`Transfer::new`].
#[derive(Debug)]
pub struct Transfer {
    file: Arc<[u8]>,
    negotiated: Negotiated,
    oack: Option<Vec<u8>>,
    last_block: u64,
    start: Instant,
    max_retries: u32,
    state: State,
    datagrams_sent: u64,
    retransmits: u64,
    ignored: u64,
    /// Retransmission timeout for the next wait (see [`Transfer::rto`]).
    rto: Duration,
    /// Whether `rto` adapts to the measured round trip (the client did not set `timeout`).
    adaptive: bool,
    min_timeout: Duration,
    /// Smoothed round trip and its variation (RFC 6298), once sampled.
    srtt: Option<(Duration, Duration)>,
    /// First block of the latest resend (timeout, repeated or in-window ACK).
    resent_from: Option<u64>,
    /// `EngineConfig::tail_probe`.
    tail_probe: bool,
    /// Tail probes sent.
    probes: u64,
    /// `datagrams_sent` just after the last block first went out.
    last_block_sent_at: Option<u64>,
}

impl Transfer {
    /// Start serving `file` for `request`. The first datagram (OACK or DATA 1)
    /// is ready in [`Transfer::poll_transmit`] right away.
    pub fn new(
        request: &ReadRequest,
        file: Arc<[u8]>,
        cfg: &EngineConfig,
        now: Instant,
    ) -> Transfer {
        let file_size = file.len() as u64;
        let negotiated = negotiate(&request.options, file_size, cfg);
        let blksize = u64::from(negotiated.blksize.max(1));
        let last_block = file_size / blksize + 1;
        let deadline = deadline_after(now, negotiated.timeout);
        let (oack, state) = if negotiated.oack.is_empty() {
            let w = Window::starting_at(1, 1, &negotiated, last_block, now, negotiated.timeout);
            (None, State::Sending(w))
        } else {
            let pkt = Packet::Oack {
                options: negotiated.oack.clone(),
            };
            let state = State::AwaitOackAck {
                pending: true,
                deadline,
                retries: 0,
            };
            (Some(pkt.to_bytes()), state)
        };
        Transfer {
            file,
            oack,
            last_block,
            start: now,
            max_retries: cfg.max_retries,
            state,
            datagrams_sent: 0,
            retransmits: 0,
            ignored: 0,
            rto: negotiated.timeout,
            adaptive: !negotiated.timeout_acked && cfg.min_timeout < negotiated.timeout,
            // Above zero, so that doubling on timeouts reaches `timeout`.
            min_timeout: cfg.min_timeout.max(Duration::from_millis(1)),
            srtt: None,
            resent_from: None,
            tail_probe: cfg.tail_probe,
            probes: 0,
            last_block_sent_at: None,
            negotiated,
        }
    }

    /// Write the next datagram to send into `buf` (cleared first) and return
    /// true, or return false when nothing is due. Call until it returns false
    /// after every `new`/`handle_*` call.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        let sent = match &mut self.state {
            State::AwaitOackAck {
                pending, retries, ..
            } => {
                if !*pending {
                    return false;
                }
                *pending = false;
                if *retries > 0 {
                    self.retransmits += 1;
                }
                buf.extend_from_slice(self.oack.as_deref().unwrap_or_default());
                true
            }
            State::Sending(w) => {
                let tail = w.end.saturating_sub(1);
                let idx = if std::mem::take(&mut w.probe_due) && tail >= w.base {
                    tail
                } else if w.next < w.end {
                    w.next += 1;
                    w.next - 1
                } else {
                    return false;
                };
                if idx < w.sent_end {
                    self.retransmits += 1;
                } else {
                    w.sent_end = idx + 1;
                    if idx == self.last_block {
                        self.last_block_sent_at = Some(self.datagrams_sent + 1);
                    }
                }
                let bs = u64::from(self.negotiated.blksize);
                let len = self.file.len() as u64;
                let start = (idx - 1).saturating_mul(bs).min(len);
                let end = start.saturating_add(bs).min(len);
                let payload = match (usize::try_from(start), usize::try_from(end)) {
                    (Ok(s), Ok(e)) => self.file.get(s..e).unwrap_or_default(),
                    _ => &[],
                };
                write_data(buf, idx as u16, payload);
                true
            }
            State::Done { pending, .. } => match pending.take() {
                Some(pkt) => {
                    buf.extend_from_slice(&pkt);
                    true
                }
                None => false,
            },
        };
        if sent {
            self.datagrams_sent += 1;
        }
        sent
    }

    /// When [`Transfer::handle_timeout`] must be called next; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::AwaitOackAck { deadline, .. } => Some(*deadline),
            State::Sending(w) => Some(w.probe.map_or(w.deadline, |p| p.min(w.deadline))),
            State::Done { .. } => None,
        }
    }

    /// Advance the clock. Before the deadline this does nothing; at or after it
    /// the OACK or the whole current window is queued again, or the transfer
    /// fails with [`FailReason::TimedOut`] after `max_retries` retransmissions
    /// (an ERROR 0 is then queued for the client).
    pub fn handle_timeout(&mut self, now: Instant) {
        let timeout = self.negotiated.timeout;
        let max_retries = self.max_retries;
        // Adaptive timeouts back off exponentially up to `timeout` (RFC 1123 4.2.3.2); only
        // waits of the full `timeout` count towards `max_retries`, so a transfer never gives
        // up sooner than with a fixed timeout.
        let full_wait = self.rto >= timeout;
        let expired = match &mut self.state {
            State::AwaitOackAck {
                pending,
                deadline,
                retries,
            } => {
                if now < *deadline {
                    return;
                }
                if *retries >= max_retries {
                    true
                } else {
                    *retries += 1;
                    *pending = true;
                    *deadline = deadline_after(now, timeout);
                    false
                }
            }
            State::Sending(w) => {
                if now < w.deadline {
                    // Only the tail probe can be due: the window's last block, once, if the
                    // whole window has gone out. It resends a block, so the window's ACK gives
                    // no round-trip sample (Karn).
                    if w.probe.is_some_and(|p| now >= p) {
                        w.probe = None;
                        if w.next >= w.end {
                            w.probe_due = true;
                            w.resent = true;
                            self.probes += 1;
                        }
                    }
                    return;
                }
                w.probe = None;
                w.probe_due = false;
                if full_wait && w.retries >= max_retries {
                    true
                } else {
                    if full_wait {
                        w.retries += 1;
                    }
                    self.rto = self.rto.saturating_mul(2).min(timeout);
                    self.resent_from = Some(w.base);
                    w.next = w.base;
                    w.resent = true;
                    w.fresh = false;
                    w.deadline = deadline_after(now, self.rto);
                    false
                }
            }
            State::Done { .. } => false,
        };
        if expired {
            let mut pkt = Vec::new();
            write_error(&mut pkt, ErrorCode::NotDefined.code(), "transfer timed out");
            self.state = State::Done {
                outcome: Outcome::Failed(FailReason::TimedOut),
                pending: Some(pkt),
            };
        }
    }

    /// Feed a datagram that arrived from the client's transfer ID (the shell
    /// checks the source address/port). Only ACK and ERROR matter; anything
    /// else (unparseable bytes, DATA, RRQ, WRQ, OACK) is ignored and counted in
    /// [`Transfer::ignored_datagrams`]. Stale/duplicate ACKs are ignored too and
    /// never cause a retransmission.
    pub fn handle_datagram(&mut self, bytes: &[u8], now: Instant) {
        let pkt = match Packet::parse(bytes) {
            Ok(pkt) => pkt,
            Err(_) => {
                self.ignored += 1;
                return;
            }
        };
        match pkt {
            Packet::Ack { block } => self.on_ack(block, now),
            Packet::Error { code, message } => self.on_error(code, message),
            _ => self.ignored += 1,
        }
    }

    fn on_error(&mut self, code: u16, message: String) {
        let outcome = match &self.state {
            State::Done { .. } => {
                self.ignored += 1;
                return;
            }
            State::AwaitOackAck { .. } if code == ErrorCode::OptionNegotiationFailed.code() => {
                Outcome::AbortedAfterOack { message }
            }
            _ => Outcome::Failed(FailReason::ClientError { code, message }),
        };
        self.state = State::Done {
            outcome,
            pending: None,
        };
    }

    fn on_ack(&mut self, block: u16, now: Instant) {
        let rto = self.rto;
        let probe = self.probe_at(now);
        match &mut self.state {
            State::AwaitOackAck { deadline, .. } => {
                if block == 0 {
                    // The OACK's round trip is the first sample (it was sent once if the
                    // deadline is still the first one: `timeout` after the start).
                    let once = deadline_after(self.start, self.negotiated.timeout) == *deadline;
                    if once {
                        self.sample_rtt(now.saturating_duration_since(self.start));
                    }
                    let ws = self.negotiated.windowsize;
                    let mut w =
                        Window::starting_at(1, 1, &self.negotiated, self.last_block, now, self.rto);
                    // A client that got the OACK twice may ACK it twice: not a loss signal.
                    w.fresh = ws > 1 && once;
                    w.probe = self.probe_at(now);
                    self.state = State::Sending(w);
                } else {
                    self.ignored += 1;
                }
            }
            State::Sending(w) => {
                let prev = w.base - 1;
                let offset = u64::from(block.wrapping_sub(prev as u16));
                let acked = prev + offset;
                if offset == 0 {
                    if w.fresh && w.next > w.base {
                        // The client missed the window's first block: resend the window now.
                        w.fresh = false;
                        w.resent = true;
                        w.next = w.base;
                        w.deadline = deadline_after(now, rto);
                        w.probe = probe;
                        self.resent_from = Some(w.base);
                    } else {
                        self.ignored += 1;
                    }
                    return;
                }
                if acked >= w.sent_end {
                    // Stale, or for a block never sent.
                    self.ignored += 1;
                    return;
                }
                if acked >= self.last_block {
                    self.state = State::Done {
                        outcome: Outcome::Completed {
                            bytes: self.file.len() as u64,
                            blocks: self.last_block,
                            elapsed: now.saturating_duration_since(self.start),
                        },
                        pending: None,
                    };
                } else {
                    let sample = (!w.resent && acked + 1 == w.end)
                        .then(|| now.saturating_duration_since(w.opened));
                    // Nothing older in flight and no resends: a repeat of this ACK will mean loss.
                    let fresh =
                        self.negotiated.windowsize > 1 && !w.resent && acked + 1 == w.sent_end;
                    let sent_end = w.sent_end;
                    // An ACK inside what was sent reports a gap at `acked + 1`, unless copies
                    // from a recent resend are still arriving: a client that re-ACKs on
                    // duplicates, or ACKs the block after its re-ACK, answers those too. Within
                    // a window's progress of the last resend such an ACK only slides the window
                    // (new blocks follow; a real loss is left to the timeout), so the two sides'
                    // windows cannot stay out of step with every window sent twice.
                    let ws = u64::from(self.negotiated.windowsize.max(1));
                    let settling = acked + 1 < sent_end
                        && self
                            .resent_from
                            .is_some_and(|r| acked + 1 < r.saturating_add(ws));
                    if let Some(rtt) = sample {
                        self.sample_rtt(rtt);
                    }
                    let mut w = Window::starting_at(
                        acked + 1,
                        sent_end,
                        &self.negotiated,
                        self.last_block,
                        now,
                        self.rto,
                    );
                    w.fresh = fresh;
                    w.probe = self.probe_at(now);
                    if settling {
                        w.next = sent_end.min(w.end).max(w.base);
                    } else if w.resent {
                        self.resent_from = Some(w.base);
                    }
                    self.state = State::Sending(w);
                }
            }
            State::Done { .. } => self.ignored += 1,
        }
    }

    /// The tail probe's time for a window opened `now` (see `Window::probe`), if it gets one.
    fn probe_at(&self, now: Instant) -> Option<Instant> {
        let (srtt, _) = self.srtt?;
        let wait = srtt.saturating_mul(2).max(PROBE_FLOOR);
        (self.tail_probe && self.adaptive && self.negotiated.windowsize > 1 && wait < self.rto)
            .then(|| deadline_after(now, wait))
    }

    /// Fold a round-trip sample into the retransmission timeout (RFC 6298's estimator),
    /// kept within `min_timeout..=timeout`. Without adaptation the timeout stays fixed.
    fn sample_rtt(&mut self, rtt: Duration) {
        if !self.adaptive {
            return;
        }
        let (srtt, rttvar) = match self.srtt {
            None => (rtt, rtt / 2),
            Some((srtt, rttvar)) => {
                let err = srtt.abs_diff(rtt);
                (srtt * 7 / 8 + rtt / 8, rttvar * 3 / 4 + err / 4)
            }
        };
        self.srtt = Some((srtt, rttvar));
        self.rto = srtt
            .saturating_add(rttvar.saturating_mul(4))
            .clamp(self.min_timeout, self.negotiated.timeout);
    }

    /// The client's host refused a datagram of this transfer (ICMP port unreachable: on a
    /// connected socket, `ECONNREFUSED` from `send` or `recv`). Nobody listens on the client's
    /// port any more, so resending cannot help: the transfer ends at once with
    /// [`FailReason::ClientGone`] and nothing more is sent (tftpd-hpa ends it too). Without
    /// this a client that left after its final ACK was lost, or one that dropped a `tsize`
    /// probe without an ERROR, held its transfer slot through every retry. Does nothing once
    /// the transfer has ended.
    pub fn handle_port_unreachable(&mut self) {
        if matches!(self.state, State::Done { .. }) {
            return;
        }
        // A client that had the last block still listened when it arrived: the refused datagram
        // went out after it (a resend or a tail probe). A refusal with nothing sent after the
        // last block's first copy may be that copy's own: the client never had it.
        let all_sent = self
            .last_block_sent_at
            .is_some_and(|at| self.datagrams_sent > at);
        self.state = State::Done {
            outcome: Outcome::Failed(FailReason::ClientGone { all_sent }),
            pending: None,
        };
    }

    /// How the transfer ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.state {
            State::Done { outcome, .. } => Some(outcome),
            _ => None,
        }
    }

    /// True once [`Transfer::outcome`] is set and nothing is left to send:
    /// the shell can drop the transfer and close its socket.
    pub fn is_finished(&self) -> bool {
        matches!(&self.state, State::Done { pending: None, .. })
    }

    /// Negotiated block size (512 without the option).
    pub fn blksize(&self) -> u16 {
        self.negotiated.blksize
    }

    /// Negotiated window size (1 without the option).
    pub fn windowsize(&self) -> u16 {
        self.negotiated.windowsize
    }

    /// The negotiated (or default) retransmission timeout: the longest wait.
    pub fn timeout(&self) -> Duration {
        self.negotiated.timeout
    }

    /// The retransmission timeout for the next wait. Equal to [`Transfer::timeout`] when the
    /// client negotiated `timeout`; otherwise it follows the measured round trip (RFC 1123
    /// 4.2.3.2), at least `min_timeout`, doubling on each timeout up to `timeout`.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// Whether the OACK carried `tsize`.
    pub fn tsize_acked(&self) -> bool {
        self.negotiated.tsize_acked
    }

    /// Whether an OACK was (or is to be) sent instead of starting with DATA 1.
    pub fn oack_sent(&self) -> bool {
        self.oack.is_some()
    }

    /// Full negotiation result (including the OACK option list).
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// Size of the file being served.
    pub fn file_size(&self) -> u64 {
        self.file.len() as u64
    }

    /// Datagrams handed out by `poll_transmit`, retransmissions included.
    pub fn datagrams_sent(&self) -> u64 {
        self.datagrams_sent
    }

    /// OACK/DATA datagrams sent again after a timeout or a window rewind.
    pub fn retransmits(&self) -> u64 {
        self.retransmits
    }

    /// Tail probes sent (see [`EngineConfig::tail_probe`]); each is also a retransmit.
    pub fn tail_probes(&self) -> u64 {
        self.probes
    }

    /// Datagrams ignored by `handle_datagram` (stale ACKs, junk, wrong opcode).
    pub fn ignored_datagrams(&self) -> u64 {
        self.ignored
    }
}

impl Window {
    fn starting_at(
        base: u64,
        sent_end: u64,
        negotiated: &Negotiated,
        last_block: u64,
        now: Instant,
        rto: Duration,
    ) -> Window {
        let ws = u64::from(negotiated.windowsize.max(1));
        Window {
            base,
            next: base,
            end: base.saturating_add(ws).min(last_block + 1),
            sent_end: sent_end.max(base),
            deadline: deadline_after(now, rto),
            retries: 0,
            opened: now,
            // Starting below `sent_end` resends blocks already sent.
            resent: base < sent_end,
            fresh: false,
            probe: None,
            probe_due: false,
        }
    }
}

/// `now + timeout` without the overflow panic of `Instant + Duration` (a
/// misconfigured huge `default_timeout`): falls back to one hour, then `now`.
fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(3600)))
        .unwrap_or(now)
}
