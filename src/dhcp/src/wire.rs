//! Guarded parsing of an incoming BOOTP/DHCP packet into a [`Request`] view.
//!
//! This is our own small parser, not dhcproto's decoder: dhcproto 0.12 reads
//! option 93 as a single `u16` whatever its length (a multi-value option 93
//! desynchronises the rest of the option walk), keeps only the last copy of a
//! repeated option, and has debug assertions on lengths. Here every access is
//! a checked `get`, arithmetic is checked, and the module is compiled with
//! `clippy::indexing_slicing` / `arithmetic_side_effects` denied, so malformed
//! input can only produce a [`Malformed`] error, never a panic.
//!
//! Rules:
//! - length ≥ 240 (236-byte BOOTP header + 4-byte magic cookie), ≤ 65 507
//!   (largest UDP payload), cookie `63 82 53 63`;
//! - options are TLVs after the cookie: pad (0) is one byte, end (255) stops,
//!   anything else is code + length + value and must lie inside the packet;
//!   a packet without an end option that ends exactly on an option boundary
//!   is accepted (seen from sloppy stacks);
//! - a repeated option is concatenated (RFC 3396);
//! - option 52 (overload) is ignored: `sname`/`file` are never parsed as
//!   options (we read nothing from them);
//! - options we interpret have fixed shapes, checked here: 53 len 1, 54 len 4,
//!   93 a non-empty even length (list of u16), 94 len 3, 97 len 17.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::net::Ipv4Addr;

/// Size of the fixed BOOTP header (op … file).
pub const BOOTP_HEADER_LEN: usize = 236;
/// DHCP magic cookie (RFC 2131 §3).
pub const MAGIC_COOKIE: [u8; 4] = [0x63, 0x82, 0x53, 0x63];
/// Largest possible UDP payload over IPv4.
pub const MAX_PACKET_LEN: usize = 65_507;

const OPTIONS_START: usize = BOOTP_HEADER_LEN + MAGIC_COOKIE.len();

/// Why a packet was rejected as malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Shorter than header + cookie.
    #[error("packet is {0} bytes, shorter than the 240-byte BOOTP header + magic cookie")]
    TooShort(usize),
    /// Longer than any UDP payload.
    #[error("packet is {0} bytes, longer than any UDP payload")]
    TooLong(usize),
    /// Not `63 82 53 63` after the header.
    #[error("missing DHCP magic cookie")]
    BadCookie,
    /// An option's length byte or value lies past the end of the packet.
    #[error("option {code} at offset {offset} runs past the end of the packet")]
    OptionOverrun {
        /// Option code.
        code: u8,
        /// Offset of the option's code byte.
        offset: usize,
    },
    /// An option we interpret has the wrong length.
    #[error("option {code} has invalid length {len}")]
    BadOptionLength {
        /// Option code.
        code: u8,
        /// Its (concatenated) length.
        len: usize,
    },
}

/// Option codes this crate reads.
pub mod code {
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const VENDOR_CLASS: u8 = 60;
    pub const USER_CLASS: u8 = 77;
    pub const CLIENT_ARCH: u8 = 93;
    pub const CLIENT_UUID: u8 = 97;
    pub const IPXE_ENCAP: u8 = 175;
}

/// Read-only view of a request, header fields copied out, options owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub op: u8,
    pub htype: u8,
    pub hlen: u8,
    pub xid: [u8; 4],
    pub flags: [u8; 2],
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 16],
    options: Options,
}

/// The options of a request: a copy of the packet (plus the concatenations of repeated options)
/// and per code present its (code, start, length) in that buffer, sorted by code. Two
/// allocations per packet in the common case.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Options {
    data: Vec<u8>,
    index: Vec<(u8, usize, usize)>,
}

impl Options {
    fn get(&self, code: u8) -> Option<&[u8]> {
        let i = self.index.binary_search_by_key(&code, |e| e.0).ok()?;
        let &(_, start, len) = self.index.get(i)?;
        self.data.get(start..start.checked_add(len)?)
    }
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    bytes.get(at..end)?.try_into().ok()
}

fn byte(bytes: &[u8], at: usize) -> Option<u8> {
    bytes.get(at).copied()
}

/// Parse the fixed header only; `None` if shorter than the header.
fn header(bytes: &[u8]) -> Option<Request> {
    Some(Request {
        op: byte(bytes, 0)?,
        htype: byte(bytes, 1)?,
        hlen: byte(bytes, 2)?,
        xid: array(bytes, 4)?,
        flags: array(bytes, 10)?,
        ciaddr: Ipv4Addr::from(array::<4>(bytes, 12)?),
        giaddr: Ipv4Addr::from(array::<4>(bytes, 24)?),
        chaddr: array(bytes, 28)?,
        options: Options::default(),
    })
}

/// Walk the option TLVs after the cookie, calling `each(code, offset, length)` for every
/// option's value (its bounds checked).
fn walk(bytes: &[u8], mut each: impl FnMut(u8, usize, usize)) -> Result<(), Malformed> {
    let mut at = OPTIONS_START;
    while let Some(code) = byte(bytes, at) {
        match code {
            0 => at = at.checked_add(1).ok_or(Malformed::TooLong(at))?,
            255 => break,
            _ => {
                let overrun = Malformed::OptionOverrun { code, offset: at };
                let len_at = at.checked_add(1).ok_or(overrun)?;
                let len = usize::from(byte(bytes, len_at).ok_or(overrun)?);
                let start = len_at.checked_add(1).ok_or(overrun)?;
                let end = start.checked_add(len).ok_or(overrun)?;
                if end > bytes.len() {
                    return Err(overrun);
                }
                each(code, start, len);
                at = end;
            }
        }
    }
    Ok(())
}

/// Collect the options: the packet is copied once and each option indexed where it lies; an
/// option that occurs more than once (rare) gets its concatenation appended to the copy.
/// O(n log n) in the number of options however they repeat.
fn options(bytes: &[u8]) -> Result<Options, Malformed> {
    let mut spans: Vec<(u8, usize, usize)> = Vec::with_capacity(32);
    walk(bytes, |code, start, len| spans.push((code, start, len)))?;
    // Stable: the copies of a repeated option stay in packet order.
    spans.sort_by_key(|e| e.0);
    let mut data = bytes.to_vec();
    let mut index = Vec::with_capacity(spans.len());
    let mut rest = spans.as_slice();
    while let Some(&(code, start, len)) = rest.first() {
        let n = rest.iter().take_while(|e| e.0 == code).count();
        let (group, tail) = rest.split_at(n.min(rest.len()));
        if n == 1 {
            index.push((code, start, len));
        } else {
            let at = data.len();
            for &(_, s, l) in group {
                if let Some(end) = s.checked_add(l) {
                    if end <= bytes.len() {
                        data.extend_from_within(s..end);
                    }
                }
            }
            index.push((code, at, data.len().saturating_sub(at)));
        }
        rest = tail;
    }
    Ok(Options { data, index })
}

fn check_len(options: &Options, code: u8, ok: impl Fn(usize) -> bool) -> Result<(), Malformed> {
    match options.get(code) {
        Some(value) if !ok(value.len()) => Err(Malformed::BadOptionLength {
            code,
            len: value.len(),
        }),
        _ => Ok(()),
    }
}

/// Parse and validate a raw UDP payload.
pub fn parse(bytes: &[u8]) -> Result<Request, Malformed> {
    if bytes.len() < OPTIONS_START {
        return Err(Malformed::TooShort(bytes.len()));
    }
    if bytes.len() > MAX_PACKET_LEN {
        return Err(Malformed::TooLong(bytes.len()));
    }
    let mut request = header(bytes).ok_or(Malformed::TooShort(bytes.len()))?;
    if array::<4>(bytes, BOOTP_HEADER_LEN) != Some(MAGIC_COOKIE) {
        return Err(Malformed::BadCookie);
    }
    let options = options(bytes)?;
    check_len(&options, code::MESSAGE_TYPE, |n| n == 1)?;
    check_len(&options, code::SERVER_ID, |n| n == 4)?;
    check_len(&options, code::CLIENT_ARCH, |n| n >= 2 && n % 2 == 0)?;
    // Option 94 (never read) and option 97 are not checked: firmware with a bad one (an Intel
    // ROM's 16-byte option 97 without its type byte) still boots. Option 97 is echoed as sent
    // and taken as a UUID only in its 17-byte form.
    request.options = options;
    Ok(request)
}

impl Request {
    /// Raw (concatenated) value of option `code`.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options.get(code)
    }

    /// Option 53 value.
    pub fn message_type(&self) -> Option<u8> {
        self.option(code::MESSAGE_TYPE)?.first().copied()
    }

    /// Option 54 value.
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        let value: [u8; 4] = self.option(code::SERVER_ID)?.try_into().ok()?;
        Some(Ipv4Addr::from(value))
    }

    /// Option 93 values in the order the client sent them (none if absent).
    pub fn arches(&self) -> impl Iterator<Item = u16> + '_ {
        self.option(code::CLIENT_ARCH)
            .unwrap_or_default()
            .chunks_exact(2)
            .filter_map(|pair| Some(u16::from_be_bytes(pair.try_into().ok()?)))
    }

    /// Ethernet MAC, when htype is Ethernet (1) and hlen is 6.
    pub fn ethernet_mac(&self) -> Option<[u8; 6]> {
        if self.htype == 1 && self.hlen == 6 {
            array(&self.chaddr, 0)
        } else {
            None
        }
    }
}
