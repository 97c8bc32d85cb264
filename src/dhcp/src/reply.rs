//! Building the ProxyDHCP OFFER/ACK bytes and choosing where they go.
//!
//! Emission uses dhcproto's [`Encoder`] and per-option [`DhcpOption`]
//! encoding, but not `Message::encode`: dhcproto keeps options in a
//! `HashMap`, so whole-message encoding writes them in random order, and its
//! `sname`/`file` setters assert on lengths. We write the fixed header
//! ourselves and the options one by one in a fixed order (53, 54, 60, 66, 67,
//! 97, 43, end), so replies are byte-for-byte deterministic, then pad with
//! zeros to the 300-byte BOOTP minimum.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{DhcpOption, EncodeError, EncodeResult, MessageType};
use dhcproto::{Encodable, Encoder};

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
) -> EncodeResult<Vec<u8>> {
    let advertise = config.advertise();
    let boot = spec.boot.as_str().as_bytes();
    let sname = match spec.boot {
        BootFile::Tftp(_) => advertise.to_string().into_bytes(),
        BootFile::Url(_) => Vec::new(),
    };
    // The header needs a NUL terminator inside its 128 bytes; a longer name
    // goes in option 67 only.
    let file_header: &[u8] = if boot.len() < FILE_LEN { boot } else { &[] };

    let mut buf = Vec::with_capacity(MIN_REPLY_LEN);
    let mut e = Encoder::new(&mut buf);
    e.write_u8(BOOTREPLY)?;
    e.write_u8(request.htype)?;
    e.write_u8(request.hlen)?;
    e.write_u8(0)?; // hops
    e.write_slice(&request.xid)?;
    e.write_u16(0)?; // secs
    e.write_slice(&request.flags)?;
    e.write_u32(request.ciaddr.into())?;
    e.write_u32(Ipv4Addr::UNSPECIFIED.into())?; // yiaddr: never hand out an address
    e.write_u32(advertise.into())?; // siaddr
    e.write_u32(request.giaddr.into())?;
    e.write_slice(&request.chaddr)?;
    e.write_fill_bytes(&sname, SNAME_LEN)?;
    e.write_fill_bytes(file_header, FILE_LEN)?;
    e.write(MAGIC_COOKIE)?;

    let mut options = vec![
        DhcpOption::MessageType(spec.kind),
        DhcpOption::ServerIdentifier(advertise),
        DhcpOption::ClassIdentifier(spec.family.vendor_class().to_vec()),
    ];
    if !sname.is_empty() {
        options.push(DhcpOption::TFTPServerName(sname.clone()));
    }
    if boot.len() > usize::from(u8::MAX) {
        // dhcproto would split it into several option 67s (RFC 3396), which
        // boot ROMs do not reassemble. Config validation makes this unreachable.
        return Err(EncodeError::StringSizeTooBig { len: boot.len() });
    }
    options.push(DhcpOption::BootfileName(boot.to_vec()));
    if let Some(uuid) = request.option(crate::wire::code::CLIENT_UUID) {
        options.push(DhcpOption::ClientMachineIdentifier(uuid.to_vec()));
    }
    if config.discovery_control() {
        options.push(DhcpOption::VendorExtensions(DISCOVERY_CONTROL.to_vec()));
    }
    options.push(DhcpOption::End);
    for option in &options {
        option.encode(&mut e)?;
    }
    if buf.len() < MIN_REPLY_LEN {
        buf.resize(MIN_REPLY_LEN, 0);
    }
    Ok(buf)
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
