//! Error types: [`ParseError`] for malformed datagrams, [`IpmiError`] for failed commands.

use std::time::Duration;

/// Why a received datagram could not be parsed. Parse errors never fail a command: the datagram
/// is dropped and counted (see [`crate::Stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The datagram ended before a field that the header announced.
    #[error("truncated: needed {needed} bytes, have {have}")]
    Truncated { needed: usize, have: usize },
    /// Not an RMCP v1.0 (0x06) IPMI-class (0x07) datagram.
    #[error("not an RMCP IPMI datagram")]
    NotRmcpIpmi,
    /// Unknown session authentication type in the session header.
    #[error("unsupported session auth type {0:#04x}")]
    AuthType(u8),
    /// IPMI message checksum 1 (header) or 2 (body) did not add up to zero.
    #[error("bad IPMI message checksum {0}")]
    Checksum(u8),
    /// A field held a value the protocol forbids (payload length, pad, next header ...).
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}

/// Why a command failed. Returned by [`crate::Client::poll_result`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpmiError {
    /// The BMC did not answer (after all retries, and after one session re-establishment).
    #[error("BMC did not answer {what} after {attempts} attempts of {per_attempt:?}")]
    Timeout {
        what: &'static str,
        attempts: u32,
        per_attempt: Duration,
    },
    /// RAKP failed: the BMC refused the user name, or the key exchange codes did not match.
    #[error("wrong username or password ({0})")]
    AuthFailed(String),
    /// The BMC refused every configured cipher suite (Open Session Response status codes).
    #[error("BMC refused all cipher suites: {0}")]
    NoCipherSuite(String),
    /// The BMC refused the session for a reason other than credentials (RMCP+ status code).
    #[error("BMC refused the session: {meaning} (RMCP+ status {status:#04x})")]
    SessionRejected { status: u8, meaning: &'static str },
    /// The BMC does not support IPMI v2.0 / RMCP+ (Get Channel Authentication Capabilities).
    #[error("BMC does not support IPMI v2.0 / RMCP+")]
    NotIpmi20,
    /// The BMC answered a command with a non-zero completion code.
    #[error("completion code {code:#04x}: {meaning}")]
    Completion { code: u8, meaning: &'static str },
    /// The BMC answered with a reply too short or otherwise not matching the command.
    #[error("malformed reply: {0}")]
    BadReply(&'static str),
    /// Another command is still in flight (one at a time per client).
    #[error("another command is in flight")]
    Busy,
    /// The caller's configuration is unusable (e.g. user name longer than 16 bytes).
    #[error("invalid configuration: {0}")]
    Config(&'static str),
}

/// Meaning of an IPMI completion code (IPMI v2.0 table 5-2).
pub fn completion_meaning(code: u8) -> &'static str {
    match code {
        0x00 => "command completed normally",
        0xc0 => "node busy",
        0xc1 => "invalid command",
        0xc2 => "command invalid for given LUN",
        0xc3 => "timeout while processing command",
        0xc4 => "out of space",
        0xc5 => "reservation canceled or invalid",
        0xc6 => "request data truncated",
        0xc7 => "request data length invalid",
        0xc8 => "request data field length limit exceeded",
        0xc9 => "parameter out of range",
        0xca => "cannot return number of requested data bytes",
        0xcb => "requested sensor, data, or record not present",
        0xcc => "invalid data field in request",
        0xcd => "command illegal for specified sensor or record type",
        0xce => "command response could not be provided",
        0xcf => "cannot execute duplicated request",
        0xd0 => "SDR repository in update mode",
        0xd1 => "device in firmware update mode",
        0xd2 => "BMC initialization in progress",
        0xd3 => "destination unavailable",
        0xd4 => "insufficient privilege level",
        0xd5 => "command not supported in present state",
        0xd6 => "command sub-function disabled or unavailable",
        0xff => "unspecified error",
        0x80..=0xbe => "command-specific error",
        _ => "reserved completion code",
    }
}

/// Meaning of an RMCP+ / RAKP status code (IPMI v2.0 table 13-15).
pub fn rmcpp_status_meaning(code: u8) -> &'static str {
    match code {
        0x00 => "no errors",
        0x01 => "insufficient resources to create a session",
        0x02 => "invalid session ID",
        0x03 => "invalid payload type",
        0x04 => "invalid authentication algorithm",
        0x05 => "invalid integrity algorithm",
        0x06 => "no matching authentication payload",
        0x07 => "no matching integrity payload",
        0x08 => "inactive session ID",
        0x09 => "invalid role",
        0x0a => "unauthorized role or privilege level requested",
        0x0b => "insufficient resources to create a session at the requested role",
        0x0c => "invalid name length",
        0x0d => "unauthorized name",
        0x0e => "unauthorized GUID",
        0x0f => "invalid integrity check value",
        0x10 => "invalid confidentiality algorithm",
        0x11 => "no cipher suite match with proposed security algorithms",
        0x12 => "illegal or unrecognized parameter",
        _ => "reserved status code",
    }
}
