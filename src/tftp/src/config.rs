//! Engine configuration.

use std::time::Duration;

/// Largest block size allowed by RFC 2348.
pub const RFC_MAX_BLKSIZE: u16 = 65464;
/// Smallest block size allowed by RFC 2348.
pub const RFC_MIN_BLKSIZE: u16 = 8;
/// Block size without a `blksize` option (RFC 1350).
pub const DEFAULT_BLKSIZE: u16 = 512;

/// Largest window the engine uses (RFC 7440 allows 65535). Keeping the
/// window within half of the 16-bit block-number space lets stale ACKs from
/// before the window be told apart from ACKs inside it, even across the wrap.
pub const MAX_EFFECTIVE_WINDOWSIZE: u16 = 32768;

/// Knobs of the engine; shared by every transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Upper bound for a negotiated `blksize` (values above are clamped down).
    /// Itself clamped into 8..=65464. Default 65464.
    pub max_blksize: u16,
    /// Upper bound for a negotiated `windowsize` (RFC 7440). Clamped into 1..=32768. Default 64.
    pub max_windowsize: u16,
    /// Retransmission timeout when the client did not negotiate `timeout`. Default 1 s.
    pub default_timeout: Duration,
    /// Retransmissions of one window (or the OACK) at the full timeout before giving up.
    /// Default 5.
    pub max_retries: u32,
    /// Shortest retransmission timeout when the client did not negotiate `timeout`: the
    /// timeout then follows the measured round trip (RFC 1123 4.2.3.2) within
    /// `min_timeout..=default_timeout`. At or above `default_timeout` it stays fixed.
    /// Default 50 ms.
    pub min_timeout: Duration,
    /// With an adaptive timeout and a window of several blocks, send a window's last block
    /// again after twice the round trip when no ACK came (a lost last block is seen by no
    /// one: without the probe it costs the whole timeout). Default on.
    pub tail_probe: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_blksize: RFC_MAX_BLKSIZE,
            max_windowsize: 64,
            default_timeout: Duration::from_secs(1),
            max_retries: 5,
            min_timeout: Duration::from_millis(50),
            tail_probe: true,
        }
    }
}

impl EngineConfig {
    /// `max_blksize` clamped into the RFC 2348 range.
    pub fn effective_max_blksize(&self) -> u16 {
        self.max_blksize.clamp(RFC_MIN_BLKSIZE, RFC_MAX_BLKSIZE)
    }

    /// `max_windowsize` clamped into 1..=[`MAX_EFFECTIVE_WINDOWSIZE`].
    pub fn effective_max_windowsize(&self) -> u16 {
        self.max_windowsize.clamp(1, MAX_EFFECTIVE_WINDOWSIZE)
    }
}
