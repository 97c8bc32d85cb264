//! Classification of datagrams arriving on the listen port (69).

use std::fmt;

use crate::path::{sanitize, PathError};
use crate::wire::{error_packet, ErrorCode, Mode, Opcode, Packet, PacketError};

/// A read request that passed parsing and path sanitising.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// Sanitised path relative to the TFTP root (no `..`, no leading `/`).
    pub path: String,
    /// Mode as requested (`octet` or `netascii`; the engine serves bytes
    /// unchanged in both, it does no netascii conversion).
    pub mode: Mode,
    /// Options as sent by the client (names lower-cased), in order.
    pub options: Vec<(String, String)>,
}

/// Why a listen-port datagram did not become a [`ReadRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The bytes are not a valid TFTP packet (dropped silently).
    Malformed(PacketError),
    /// A valid packet that does not belong on the listen port: DATA, ACK,
    /// ERROR, OACK (dropped silently).
    UnexpectedOpcode(Opcode),
    /// A write request (answered with ERROR 2).
    WriteRequest,
    /// An RRQ in `mail` mode (answered with ERROR 4).
    MailMode,
    /// An RRQ whose filename failed sanitising (answered with ERROR 2).
    BadPath(PathError),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Malformed(e) => write!(f, "malformed packet: {e}"),
            Rejection::UnexpectedOpcode(op) => write!(f, "unexpected {op:?} on listen port"),
            Rejection::WriteRequest => f.write_str("write request refused (read-only server)"),
            Rejection::MailMode => f.write_str("mail mode not supported"),
            Rejection::BadPath(e) => write!(f, "bad path: {e}"),
        }
    }
}

impl std::error::Error for Rejection {}

/// What to do with a datagram that arrived on the listen port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initial {
    /// Start a transfer: open `path`, then [`crate::Transfer::new`] on a new
    /// socket (new transfer ID). If the file is missing, send
    /// `error_packet(ErrorCode::FileNotFound, ..)` instead.
    Read(ReadRequest),
    /// Send this ERROR packet back to the sender, then forget it.
    Reply(Vec<u8>, Rejection),
    /// Send nothing; the reason is for counters/logs.
    Drop(Rejection),
}

/// Classify a datagram that arrived on the listen port. Never panics.
pub fn handle_initial(bytes: &[u8]) -> Initial {
    let req = match Packet::parse(bytes) {
        Ok(Packet::Rrq(req)) => req,
        Ok(Packet::Wrq(_)) => {
            return Initial::Reply(
                error_packet(
                    ErrorCode::AccessViolation,
                    "access violation: read-only server",
                ),
                Rejection::WriteRequest,
            )
        }
        Ok(other) => return Initial::Drop(Rejection::UnexpectedOpcode(other.opcode())),
        Err(e) => return Initial::Drop(Rejection::Malformed(e)),
    };
    if req.mode == Mode::Mail {
        return Initial::Reply(
            error_packet(ErrorCode::IllegalOperation, "mail mode not supported"),
            Rejection::MailMode,
        );
    }
    match sanitize(&req.filename) {
        Ok(path) => Initial::Read(ReadRequest {
            path,
            mode: req.mode,
            options: req.options,
        }),
        Err(e) => Initial::Reply(
            error_packet(
                ErrorCode::AccessViolation,
                &format!("access violation: {e}"),
            ),
            Rejection::BadPath(e),
        ),
    }
}
