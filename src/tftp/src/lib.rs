//! Sans-IO, read-only TFTP server engine (RFC 1350, 2347, 2348, 2349, 7440).
//!
//! The engine does no I/O: no sockets, threads, clock reads or async. The
//! caller (the "shell") feeds it datagrams and the current time, and sends
//! whatever it hands back. All parsing is panic-free on arbitrary bytes.
//!
//! # Call order (quinn-proto style: `handle_*` in, `poll_*` out)
//!
//! **Listen port (69).** For every datagram call [`handle_initial`]:
//! - [`Initial::Read`]`(req)`: `req.path` is already sanitised (relative, no
//!   `..`). Resolve it under the TFTP root (refuse symlinks leaving the root;
//!   that check is the shell's), load it as `Arc<[u8]>`. If it cannot be
//!   opened, send `error_packet(ErrorCode::FileNotFound, "file not found")`
//!   from a fresh socket and stop. Otherwise bind a fresh UDP socket (the
//!   server's transfer ID), connect it to the client's address/port, and
//!   create [`Transfer::new`]`(&req, file, &cfg, now)`.
//! - [`Initial::Reply`]`(bytes, reason)`: send `bytes` (an ERROR packet) back
//!   to the sender; count `reason`.
//! - [`Initial::Drop`]`(reason)`: send nothing; count `reason`.
//!
//! **Per transfer**, loop:
//! 1. Drain output: `while t.poll_transmit(&mut buf) { sock.send(&buf) }`.
//!    Do this right after `Transfer::new` and after every `handle_*` call.
//! 2. If `t.is_finished()`: read `t.outcome()`, record metrics, drop the
//!    transfer and its socket. (An outcome can be set while one last packet,
//!    an ERROR on timeout, is still queued; `is_finished` is only true once
//!    it has been drained.)
//! 3. Wait for either a datagram or the deadline `t.poll_timeout()`
//!    (`None` only when finished).
//!    - Datagram from the client's address/port: `t.handle_datagram(&bytes, now)`.
//!    - Datagram from any other address/port: do not feed it; reply with
//!      `error_packet(ErrorCode::UnknownTransferId, "unknown transfer id")`
//!      to that sender (RFC 1350).
//!    - Deadline reached: `t.handle_timeout(now)` (calling it early is harmless).
//!
//! `now` is any monotonic [`std::time::Instant`]; tests use a fixed base plus
//! durations.
//!
//! # Behaviour
//! - Options are negotiated as described in [`options`]; with no accepted
//!   option there is no OACK and DATA 1 is sent first. With an OACK, DATA 1
//!   follows ACK 0.
//! - Up to `windowsize` DATA blocks are sent, then the engine waits. An ACK
//!   for block *n* inside the outstanding window slides the window to *n+1*
//!   and sends the next window at once (so a client that re-ACKs its last good
//!   block after a loss gets the rest resent). Within a window's progress of
//!   a resend, such an ACK only slides the window: it may answer old copies
//!   still arriving, and resending again would keep both sides out of step.
//!   A stale ACK (block before the window start) is ignored and never
//!   triggers a resend.
//! - A repeat of the ACK that opened a window (its first block was lost) resends
//!   the window at once, once, if no older DATA was in flight and the window
//!   before had no resends; otherwise it is ignored like any duplicate. In
//!   lock-step (windowsize 1) duplicate ACKs never trigger a resend (the
//!   Sorcerer's Apprentice bug).
//! - Block numbers wrap from 65535 to 0.
//! - Without progress, the OACK or the whole current window is resent, up to
//!   `max_retries` times at the full `timeout`; then the transfer fails with
//!   [`FailReason::TimedOut`] and an ERROR 0 is queued for the client. When the
//!   client did not negotiate `timeout`, the wait adapts to the measured round
//!   trip (RFC 1123 4.2.3.2: RFC 6298's estimator, Karn's rule, at least
//!   `min_timeout`) and doubles on each timeout up to `timeout`; the shorter
//!   waits do not count towards `max_retries`.
//! - With that adaptive wait and a window of several blocks, a window whose ACK
//!   has not come after twice the smoothed round trip (at least 5 ms) gets its
//!   last block sent again, once (a tail loss probe, after RFC 8985): a lost
//!   last block is reported by no one, and would cost the whole timeout.
//!   [`EngineConfig::tail_probe`] turns it off.
//! - An ICMP port unreachable from the client's host (the shell's connected socket
//!   reports `ECONNREFUSED`) ends the transfer at once with
//!   [`FailReason::ClientGone`], sending nothing more
//!   ([`Transfer::handle_port_unreachable`]).
//! - An ERROR 8 from the client in answer to the OACK ends the transfer with
//!   [`Outcome::AbortedAfterOack`]: the normal end of a `tsize` probe (OVMF).
//!   Any other client ERROR ends it with [`FailReason::ClientError`].
//! - On the transfer port everything but ACK and ERROR (unparseable bytes,
//!   DATA, RRQ, WRQ, OACK) is ignored and counted
//!   ([`Transfer::ignored_datagrams`]); no ERROR 4 is sent.
//! - `netascii` requests are served byte-for-byte like `octet` (no CR/LF
//!   conversion); `mail` requests are refused.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod initial;
pub mod options;
pub mod path;
pub mod transfer;
pub mod wire;

#[cfg(test)]
mod tests;

pub use config::EngineConfig;
pub use initial::{handle_initial, Initial, ReadRequest, Rejection};
pub use options::Negotiated;
pub use path::{sanitize, PathError};
pub use transfer::{FailReason, Outcome, Transfer};
pub use wire::{error_packet, ErrorCode, Mode, Opcode, Packet, PacketError, Request};
