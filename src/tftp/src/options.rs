//! Option negotiation for read requests (RFC 2347, 2348, 2349, 7440).
//!
//! Policy (chosen for firmware friendliness):
//! - `blksize`: accepted if numeric and >= 8; clamped down to
//!   `min(65464, cfg.max_blksize)`. Smaller or non-numeric values are ignored.
//! - `timeout`: accepted if numeric and in 1..=255 seconds, otherwise ignored.
//! - `tsize`: accepted if numeric (clients send `0` in an RRQ); answered with
//!   the real file size. Non-numeric values such as atftp's `enable` are ignored.
//! - `windowsize`: accepted if numeric and >= 1; clamped down to
//!   `min(32768, cfg.max_windowsize)` (see `MAX_EFFECTIVE_WINDOWSIZE`).
//! - Unknown options and repeats of an option already seen are ignored.
//! - The OACK lists the accepted options in the order the client sent them,
//!   under the (lower-cased) name the client used.
//! - If nothing is accepted there is no OACK and the transfer starts with DATA 1.

use std::time::Duration;

use crate::config::{EngineConfig, DEFAULT_BLKSIZE, RFC_MIN_BLKSIZE};

/// Result of negotiating a request's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Block size in effect (512 unless negotiated).
    pub blksize: u16,
    /// Window size in effect (1 unless negotiated).
    pub windowsize: u16,
    /// Retransmission timeout in effect.
    pub timeout: Duration,
    /// Whether the OACK carries `tsize`.
    pub tsize_acked: bool,
    /// Whether `timeout` was negotiated (otherwise `timeout` is the config default).
    pub timeout_acked: bool,
    /// Options for the OACK, in client order; empty means "send no OACK".
    pub oack: Vec<(String, String)>,
}

/// Parse a decimal option value. Only ASCII digits are accepted (no sign, no
/// spaces); very long digit strings saturate at `u64::MAX`.
pub fn parse_number(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Negotiate the options of a read request for a file of `file_size` bytes.
pub fn negotiate(options: &[(String, String)], file_size: u64, cfg: &EngineConfig) -> Negotiated {
    let mut out = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: cfg.default_timeout,
        tsize_acked: false,
        timeout_acked: false,
        oack: Vec::new(),
    };
    let (mut seen_blksize, mut seen_windowsize) = (false, false);

    for (name, value) in options {
        let Some(n) = parse_number(value) else {
            continue;
        };
        if name.eq_ignore_ascii_case("blksize") {
            if seen_blksize || n < u64::from(RFC_MIN_BLKSIZE) {
                continue;
            }
            let max = cfg.effective_max_blksize();
            let size = u16::try_from(n).map_or(max, |v| v.min(max));
            seen_blksize = true;
            out.blksize = size;
            out.oack.push((name.to_ascii_lowercase(), size.to_string()));
        } else if name.eq_ignore_ascii_case("timeout") {
            if out.timeout_acked || !(1..=255).contains(&n) {
                continue;
            }
            out.timeout_acked = true;
            out.timeout = Duration::from_secs(n);
            out.oack.push((name.to_ascii_lowercase(), n.to_string()));
        } else if name.eq_ignore_ascii_case("tsize") {
            if out.tsize_acked {
                continue;
            }
            out.tsize_acked = true;
            out.oack
                .push((name.to_ascii_lowercase(), file_size.to_string()));
        } else if name.eq_ignore_ascii_case("windowsize") {
            if seen_windowsize || n == 0 {
                continue;
            }
            let max = cfg.effective_max_windowsize();
            let size = u16::try_from(n).map_or(max, |v| v.min(max));
            seen_windowsize = true;
            out.windowsize = size;
            out.oack.push((name.to_ascii_lowercase(), size.to_string()));
        }
    }
    out
}
