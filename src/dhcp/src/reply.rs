//! Building the ProxyDHCP OFFER/ACK bytes and choosing where they go.
//!
//! Written by hand into one buffer (no per-option allocation; a reply costs one `Vec`): the
//! fixed header, then the options in a fixed order (53, 54, 60, 66, 67, 97, 43, end), so
//! replies are byte-for-byte deterministic, then zeros to the 300-byte BOOTP minimum. dhcproto is
//! not used to emit: its `Message::encode` writes options in `HashMap` order and its
//! `sname`/`file` setters assert on lengths; the tests use it as an independent decoder.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::MessageType;

use crate::config::{BootFile, ProxyConfig};
use crate::decision::ArrivalPort;
use crate::wire::{Request, MAGIC_COOKIE};

/// Minimum BOOTP message size; some ROMs drop shorter replies.
pub const MIN_REPLY_LEN: usize = 300;
const SNAME_LEN: usize = 64;
const FILE_LEN: usize = 128;
const BOOTREPLY: u8 = 2;
/// Option 43 payload: PXE sub-option 6 (discovery control) = 8 (boot from
/// the `file`/option 67 name, skip boot-server discovery), then end.
pub const DISCOVERY_CONTROL: [u8; 4] = [6, 1, 8, 255];

/// Client family, from option 60; echoed in the reply's option 60.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `PXEClient…`: classic PXE (TFTP, or HTTP for iPXE).
    Pxe,
    /// `HTTPClient…`: UEFI HTTP boot; needs an HTTP URL and `HTTPClient` back.
    Http,
}

impl Family {
    /// Family of a client's option 60, `None` if not a PXE/HTTP-boot client.
    pub fn of_vendor_class(vendor_class: &[u8]) -> Option<Family> {
        if vendor_class.starts_with(b"PXEClient") {
            Some(Family::Pxe)
        } else if vendor_class.starts_with(b"HTTPClient") {
            Some(Family::Http)
        } else {
            None
        }
    }

    fn vendor_class(self) -> &'static [u8] {
        match self {
            Family::Pxe => b"PXEClient",
            Family::Http => b"HTTPClient",
        }
    }
}

/// Everything that varies between replies besides the request itself.
#[derive(Debug, Clone, Copy)]
pub struct ReplySpec<'a> {
    /// OFFER or ACK.
    pub kind: MessageType,
    /// Echoed client family.
    pub family: Family,
    /// Resolved boot file.
    pub boot: &'a BootFile,
}

/// Serialise the reply to `request`.
pub fn build(
    request: &Request,
    spec: ReplySpec<'_>,
    config: &ProxyConfig,
) -> Result<Vec<u8>, EncodeError> {
    let advertise = config.advertise();
    let boot = spec.boot.as_str().as_bytes();
    let sname: &[u8] = match spec.boot {
        BootFile::Tftp(_) => config.advertise_text().as_bytes(),
        BootFile::Url(_) => &[],
    };
    // The header needs a NUL terminator inside its 128 bytes; a longer name
    // goes in option 67 only.
    let file_header: &[u8] = if boot.len() < FILE_LEN { boot } else { &[] };
    if boot.len() > usize::from(u8::MAX) {
        // It would need several option 67s (RFC 3396), which boot ROMs do not reassemble.
        // Config validation makes this unreachable.
        return Err(EncodeError::TooLong {
            code: 67,
            len: boot.len(),
        });
    }

    let mut buf = Vec::with_capacity(MIN_REPLY_LEN.saturating_add(boot.len()));
    buf.extend_from_slice(&[BOOTREPLY, request.htype, request.hlen, 0]); // hops 0
    buf.extend_from_slice(&request.xid);
    buf.extend_from_slice(&[0, 0]); // secs
    buf.extend_from_slice(&request.flags);
    buf.extend_from_slice(&request.ciaddr.octets());
    buf.extend_from_slice(&Ipv4Addr::UNSPECIFIED.octets()); // yiaddr: never hand out an address
    buf.extend_from_slice(&advertise.octets()); // siaddr
    buf.extend_from_slice(&request.giaddr.octets());
    buf.extend_from_slice(&request.chaddr);
    fill(&mut buf, sname, SNAME_LEN)?;
    fill(&mut buf, file_header, FILE_LEN)?;
    buf.extend_from_slice(&MAGIC_COOKIE);

    option(&mut buf, 53, &[u8::from(spec.kind)])?;
    option(&mut buf, 54, &advertise.octets())?;
    option(&mut buf, 60, spec.family.vendor_class())?;
    if !sname.is_empty() {
        option(&mut buf, 66, sname)?;
    }
    option(&mut buf, 67, boot)?;
    if let Some(uuid) = request.option(crate::wire::code::CLIENT_UUID) {
        option(&mut buf, 97, uuid)?;
    }
    if config.discovery_control() {
        option(&mut buf, 43, &DISCOVERY_CONTROL)?;
    }
    buf.push(255); // end
    if buf.len() < MIN_REPLY_LEN {
        buf.resize(MIN_REPLY_LEN, 0);
    }
    Ok(buf)
}

/// Why a reply could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A value longer than its field or option allows.
    #[error("value of {len} bytes does not fit option/field {code}")]
    TooLong {
        /// Option code (or 0 for a header field).
        code: u8,
        /// Its length.
        len: usize,
    },
}

/// A fixed-size header field: `value`, then zeros up to `size`.
fn fill(buf: &mut Vec<u8>, value: &[u8], size: usize) -> Result<(), EncodeError> {
    let pad = size.checked_sub(value.len()).ok_or(EncodeError::TooLong {
        code: 0,
        len: value.len(),
    })?;
    buf.extend_from_slice(value);
    buf.resize(buf.len().saturating_add(pad), 0);
    Ok(())
}

/// One option TLV (values over 255 bytes are refused, never split).
fn option(buf: &mut Vec<u8>, code: u8, value: &[u8]) -> Result<(), EncodeError> {
    let len = u8::try_from(value.len()).map_err(|_| EncodeError::TooLong {
        code,
        len: value.len(),
    })?;
    buf.push(code);
    buf.push(len);
    buf.extend_from_slice(value);
    Ok(())
}

/// Where the reply goes (and whether it is a broadcast):
/// 1. relayed (giaddr ≠ 0) → giaddr:67;
/// 2. arrived on 4011 → back to the source ip:port (OVMF uses 4011, iPXE 68);
///    if the source address is 0.0.0.0, fall through to broadcast;
/// 3. ciaddr ≠ 0 → ciaddr:68;
/// 4. otherwise (no address yet) → 255.255.255.255:68.
///
/// giaddr, ciaddr and the source address come from the client: only a unicast address counts
/// (not 0.0.0.0, 255.255.255.255, multicast or loopback), so a hostile client cannot aim a reply
/// at a broadcast or multicast group, or at the appliance itself; otherwise the next rule
/// applies. Only rule 4 broadcasts.
pub fn destination(
    request: &Request,
    port: ArrivalPort,
    source: SocketAddrV4,
) -> (SocketAddrV4, bool) {
    if is_unicast(request.giaddr) {
        return (SocketAddrV4::new(request.giaddr, 67), false);
    }
    if port == ArrivalPort::Pxe && is_unicast(*source.ip()) {
        return (source, false);
    }
    if is_unicast(request.ciaddr) {
        return (SocketAddrV4::new(request.ciaddr, 68), false);
    }
    (SocketAddrV4::new(Ipv4Addr::BROADCAST, 68), true)
}

fn is_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
}
