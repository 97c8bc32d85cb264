//! TFTP packet parsing and emission (RFC 1350, RFC 2347).
//!
//! Parsing never panics on any input; it returns a [`PacketError`] instead.

use std::fmt;

/// Longest filename accepted in a request, in bytes (before sanitising).
pub const MAX_FILENAME_LEN: usize = 512;
/// Most option pairs accepted in a request or OACK.
pub const MAX_OPTIONS: usize = 16;

/// TFTP opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// Read request (1).
    Rrq,
    /// Write request (2).
    Wrq,
    /// Data (3).
    Data,
    /// Acknowledgement (4).
    Ack,
    /// Error (5).
    Error,
    /// Option acknowledgement (6, RFC 2347).
    Oack,
}

impl Opcode {
    /// The opcode for a wire value, if it is one of the six known ones.
    pub fn from_u16(v: u16) -> Option<Opcode> {
        Some(match v {
            1 => Opcode::Rrq,
            2 => Opcode::Wrq,
            3 => Opcode::Data,
            4 => Opcode::Ack,
            5 => Opcode::Error,
            6 => Opcode::Oack,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Opcode::Rrq => 1,
            Opcode::Wrq => 2,
            Opcode::Data => 3,
            Opcode::Ack => 4,
            Opcode::Error => 5,
            Opcode::Oack => 6,
        }
    }
}

/// Transfer mode of a request (matched case-insensitively on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `netascii`.
    Netascii,
    /// `octet`.
    Octet,
    /// `mail` (obsolete, write-only in RFC 1350).
    Mail,
}

impl Mode {
    /// Lower-case wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Netascii => "netascii",
            Mode::Octet => "octet",
            Mode::Mail => "mail",
        }
    }

    fn parse(raw: &[u8]) -> Option<Mode> {
        if raw.eq_ignore_ascii_case(b"octet") {
            Some(Mode::Octet)
        } else if raw.eq_ignore_ascii_case(b"netascii") {
            Some(Mode::Netascii)
        } else if raw.eq_ignore_ascii_case(b"mail") {
            Some(Mode::Mail)
        } else {
            None
        }
    }
}

/// Body of an RRQ or WRQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Raw filename bytes as sent (not sanitised, no NUL).
    pub filename: Vec<u8>,
    /// Transfer mode.
    pub mode: Mode,
    /// Options in the order the client sent them; names lower-cased, values verbatim.
    pub options: Vec<(String, String)>,
}

/// A decoded TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Read request.
    Rrq(Request),
    /// Write request.
    Wrq(Request),
    /// Data block.
    Data {
        /// Wire block number (wraps past 65535 to 0).
        block: u16,
        /// Payload.
        data: Vec<u8>,
    },
    /// Acknowledgement.
    Ack {
        /// Wire block number acknowledged.
        block: u16,
    },
    /// Error.
    Error {
        /// Error code (see [`ErrorCode`]; other values are passed through).
        code: u16,
        /// Message (decoded lossily as UTF-8).
        message: String,
    },
    /// Option acknowledgement (RFC 2347).
    Oack {
        /// Accepted options, in order.
        options: Vec<(String, String)>,
    },
}

/// Why bytes could not be parsed as a TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketError {
    /// Fewer bytes than the fixed part of the packet needs.
    Truncated,
    /// The opcode is not one of 1..=6.
    UnknownOpcode(u16),
    /// A string field is not NUL-terminated.
    MissingNul,
    /// The request filename is empty.
    EmptyFilename,
    /// The request filename is longer than [`MAX_FILENAME_LEN`].
    FilenameTooLong,
    /// The mode is not octet/netascii/mail.
    UnknownMode,
    /// An option name has no value string after it.
    OptionWithoutValue,
    /// An option name is empty.
    EmptyOptionName,
    /// An option name or value is not valid UTF-8.
    OptionNotUtf8,
    /// More than [`MAX_OPTIONS`] option pairs.
    TooManyOptions,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Truncated => f.write_str("packet truncated"),
            PacketError::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            PacketError::MissingNul => f.write_str("string field not NUL-terminated"),
            PacketError::EmptyFilename => f.write_str("empty filename"),
            PacketError::FilenameTooLong => {
                write!(f, "filename longer than {MAX_FILENAME_LEN} bytes")
            }
            PacketError::UnknownMode => f.write_str("unknown transfer mode"),
            PacketError::OptionWithoutValue => f.write_str("option without value"),
            PacketError::EmptyOptionName => f.write_str("empty option name"),
            PacketError::OptionNotUtf8 => f.write_str("option is not valid UTF-8"),
            PacketError::TooManyOptions => write!(f, "more than {MAX_OPTIONS} options"),
        }
    }
}

impl std::error::Error for PacketError {}

/// Standard TFTP error codes (RFC 1350, RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: not defined, see message.
    NotDefined,
    /// 1: file not found.
    FileNotFound,
    /// 2: access violation.
    AccessViolation,
    /// 3: disk full or allocation exceeded.
    DiskFull,
    /// 4: illegal TFTP operation.
    IllegalOperation,
    /// 5: unknown transfer ID.
    UnknownTransferId,
    /// 6: file already exists.
    FileExists,
    /// 7: no such user.
    NoSuchUser,
    /// 8: terminate transfer due to option negotiation (RFC 2347).
    OptionNegotiationFailed,
}

impl ErrorCode {
    /// Wire value.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::NotDefined => 0,
            ErrorCode::FileNotFound => 1,
            ErrorCode::AccessViolation => 2,
            ErrorCode::DiskFull => 3,
            ErrorCode::IllegalOperation => 4,
            ErrorCode::UnknownTransferId => 5,
            ErrorCode::FileExists => 6,
            ErrorCode::NoSuchUser => 7,
            ErrorCode::OptionNegotiationFailed => 8,
        }
    }

    /// The code for a wire value, if standard.
    pub fn from_code(code: u16) -> Option<ErrorCode> {
        Some(match code {
            0 => ErrorCode::NotDefined,
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTransferId,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionNegotiationFailed,
            _ => return None,
        })
    }
}

/// Build an ERROR packet. NUL bytes in `msg` are dropped so the packet stays parseable.
pub fn error_packet(code: ErrorCode, msg: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(5 + msg.len());
    write_error(&mut buf, code.code(), msg);
    buf
}

/// Append an ERROR packet with a raw code to `buf`.
pub(crate) fn write_error(buf: &mut Vec<u8>, code: u16, msg: &str) {
    buf.extend_from_slice(&Opcode::Error.to_u16().to_be_bytes());
    buf.extend_from_slice(&code.to_be_bytes());
    buf.extend(msg.bytes().filter(|&b| b != 0));
    buf.push(0);
}

/// Append a DATA packet to `buf`.
pub(crate) fn write_data(buf: &mut Vec<u8>, block: u16, payload: &[u8]) {
    buf.reserve(4 + payload.len());
    buf.extend_from_slice(&Opcode::Data.to_u16().to_be_bytes());
    buf.extend_from_slice(&block.to_be_bytes());
    buf.extend_from_slice(payload);
}

fn write_cstr(buf: &mut Vec<u8>, s: &[u8]) {
    buf.extend_from_slice(s);
    buf.push(0);
}

fn write_options(buf: &mut Vec<u8>, options: &[(String, String)]) {
    for (name, value) in options {
        write_cstr(buf, name.as_bytes());
        write_cstr(buf, value.as_bytes());
    }
}

impl Packet {
    /// Opcode of this packet.
    pub fn opcode(&self) -> Opcode {
        match self {
            Packet::Rrq(_) => Opcode::Rrq,
            Packet::Wrq(_) => Opcode::Wrq,
            Packet::Data { .. } => Opcode::Data,
            Packet::Ack { .. } => Opcode::Ack,
            Packet::Error { .. } => Opcode::Error,
            Packet::Oack { .. } => Opcode::Oack,
        }
    }

    /// Append the wire form to `buf`.
    ///
    /// Strings are written verbatim followed by NUL; a caller that puts NUL bytes
    /// inside a string field gets a packet that does not parse back the same.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.opcode().to_u16().to_be_bytes());
        match self {
            Packet::Rrq(req) | Packet::Wrq(req) => {
                write_cstr(buf, &req.filename);
                write_cstr(buf, req.mode.as_str().as_bytes());
                write_options(buf, &req.options);
            }
            Packet::Data { block, data } => {
                buf.extend_from_slice(&block.to_be_bytes());
                buf.extend_from_slice(data);
            }
            Packet::Ack { block } => buf.extend_from_slice(&block.to_be_bytes()),
            Packet::Error { code, message } => {
                buf.extend_from_slice(&code.to_be_bytes());
                write_cstr(buf, message.as_bytes());
            }
            Packet::Oack { options } => write_options(buf, options),
        }
    }

    /// The wire form as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode(&mut buf);
        buf
    }

    /// Parse a datagram.
    ///
    /// Leniencies: an ACK may carry trailing bytes (ignored); an ERROR message
    /// may lack its final NUL. Requests and OACKs must be NUL-terminated, but a
    /// single stray NUL after the last complete option pair is tolerated.
    pub fn parse(bytes: &[u8]) -> Result<Packet, PacketError> {
        let (op, rest) = split_u16(bytes)?;
        let opcode = Opcode::from_u16(op).ok_or(PacketError::UnknownOpcode(op))?;
        match opcode {
            Opcode::Rrq => parse_request(rest).map(Packet::Rrq),
            Opcode::Wrq => parse_request(rest).map(Packet::Wrq),
            Opcode::Data => {
                let (block, data) = split_u16(rest)?;
                Ok(Packet::Data {
                    block,
                    data: data.to_vec(),
                })
            }
            Opcode::Ack => {
                let (block, _trailing) = split_u16(rest)?;
                Ok(Packet::Ack { block })
            }
            Opcode::Error => {
                let (code, msg) = split_u16(rest)?;
                let end = msg.iter().position(|&b| b == 0).unwrap_or(msg.len());
                let message = String::from_utf8_lossy(msg.get(..end).unwrap_or_default());
                Ok(Packet::Error {
                    code,
                    message: message.into_owned(),
                })
            }
            Opcode::Oack => parse_options(rest).map(|options| Packet::Oack { options }),
        }
    }
}

fn split_u16(bytes: &[u8]) -> Result<(u16, &[u8]), PacketError> {
    match bytes {
        [a, b, rest @ ..] => Ok((u16::from_be_bytes([*a, *b]), rest)),
        _ => Err(PacketError::Truncated),
    }
}

/// Split off one NUL-terminated string: (string without NUL, rest after NUL).
fn split_cstr(bytes: &[u8]) -> Result<(&[u8], &[u8]), PacketError> {
    let pos = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(PacketError::MissingNul)?;
    let (s, rest) = bytes.split_at(pos);
    Ok((s, rest.get(1..).unwrap_or_default()))
}

fn parse_request(bytes: &[u8]) -> Result<Request, PacketError> {
    let (filename, rest) = split_cstr(bytes)?;
    if filename.is_empty() {
        return Err(PacketError::EmptyFilename);
    }
    if filename.len() > MAX_FILENAME_LEN {
        return Err(PacketError::FilenameTooLong);
    }
    let (mode, rest) = split_cstr(rest)?;
    let mode = Mode::parse(mode).ok_or(PacketError::UnknownMode)?;
    let options = parse_options(rest)?;
    Ok(Request {
        filename: filename.to_vec(),
        mode,
        options,
    })
}

fn parse_options(mut bytes: &[u8]) -> Result<Vec<(String, String)>, PacketError> {
    let mut options = Vec::new();
    while !bytes.is_empty() {
        if bytes == [0] {
            // One stray NUL after the last pair: tolerated.
            break;
        }
        let (name, rest) = split_cstr(bytes)?;
        if name.is_empty() {
            return Err(PacketError::EmptyOptionName);
        }
        let (value, rest) = split_cstr(rest).map_err(|_| PacketError::OptionWithoutValue)?;
        if options.len() == MAX_OPTIONS {
            return Err(PacketError::TooManyOptions);
        }
        let name = std::str::from_utf8(name).map_err(|_| PacketError::OptionNotUtf8)?;
        let value = std::str::from_utf8(value).map_err(|_| PacketError::OptionNotUtf8)?;
        options.push((name.to_ascii_lowercase(), value.to_owned()));
        bytes = rest;
    }
    Ok(options)
}
