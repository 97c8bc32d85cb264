//! Sans-IO ProxyDHCP decision core.
//!
//! [`handle`] takes one UDP payload, the port it arrived on, its source
//! address and a [`ProxyConfig`], and returns a [`Decision`]: the reply
//! datagram (if any) with its destination, an [`Outcome`] for metrics and a
//! [`Seen`] record for the machine inventory. No sockets, no clock, no state:
//! the socket shell owns all I/O.
//!
//! # Behaviour (see `shared/design/netboot-facts.md`, ProxyDHCP)
//! - Only PXE / UEFI HTTP-boot clients are answered: option 60 starts with
//!   `PXEClient` or `HTTPClient` **and** option 93 is present
//!   ([`IgnoreReason::NotPxe`] otherwise).
//! - DISCOVER on 67 → OFFER. REQUEST on 4011 → ACK. REQUEST on 67 → ACK only
//!   when option 54 is our advertise address (else it is for the site DHCP
//!   server: [`IgnoreReason::RequestNotForUs`]). Anything else is ignored and
//!   classified.
//! - Replies never hand out an address: yiaddr is always 0.0.0.0. xid, flags,
//!   htype/hlen/chaddr, ciaddr and giaddr are copied; siaddr and option 54 are
//!   the advertise address; option 60 is `PXEClient` or `HTTPClient` (the
//!   client's own family); option 97 is echoed verbatim when sent; the boot
//!   file is in option 67 and in the `file` header (when it fits: at most 127
//!   bytes plus the NUL); TFTP files also get option 66 and `sname` = advertise address;
//!   option 43 (discovery control = 8) only when configured; padded to 300
//!   bytes. Destination: relayed (giaddr ≠ 0) → giaddr:67; else arrived on
//!   4011 → the source ip:port; else ciaddr ≠ 0 → ciaddr:68; else broadcast
//!   255.255.255.255:68 ([`Reply::broadcast`] set). Client-chosen addresses
//!   count only when unicast (not broadcast, multicast or loopback).
//! - Architecture choice: option 93 may list several u16 values. We take the
//!   **first value, in the client's order, that has a boot file** (a
//!   [`BOOT_TABLE`] default or a configured override). If none has one the
//!   packet is ignored as [`IgnoreReason::UnknownArch`] with the first value.
//! - Chainload loop breaking: a client already running iPXE (option 77
//!   contains `iPXE`, or option 175 is present) always gets the boot script
//!   `http://<advertise>:<http_port>/ipxe/init.ipxe`, whatever its arch.
//! - An `HTTPClient` whose resolved file is not an HTTP URL is ignored
//!   ([`IgnoreReason::HttpClientWithoutUrl`]): firmware refuses it anyway.
//!
//! # No-panic contract
//! Input bytes are never handed to dhcproto's decoder. `wire.rs` is
//! a small parser of our own that validates length (240..=65 507 bytes),
//! the magic cookie, every option TLV's bounds and the shape of each option
//! we interpret before anything reads them; any failure is
//! [`IgnoreReason::Malformed`]. Option 52 (overload) is ignored: `sname` and
//! `file` are never parsed as options. All non-test code of this crate is
//! compiled with `clippy::indexing_slicing`, `arithmetic_side_effects`,
//! `unwrap_used`, `expect_used`, `panic` and `unreachable` denied, so there is
//! no panicking index, overflow or unwrap on any path, in debug or release;
//! proptest feeds random and mutated real packets through [`handle`] to back
//! that up. Because dhcproto's decoder is not used on untrusted input, no
//! `catch_unwind` is needed (it would also hide bugs from the fuzz tests).
//! dhcproto provides the `MessageType` enum; the tests use its decoder as an
//! independent check of what we emit (we encode replies ourselves, `reply.rs`).
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod arch;
mod config;
mod decision;
mod reply;
mod wire;

#[cfg(test)]
mod tests;

use std::net::SocketAddrV4;

pub use arch::{ArchRow, TableFile, BOOT_TABLE, IPXE_SCRIPT_PATH};
pub use config::{BootFile, ConfigError, ProxyConfig, MAX_BOOT_FILE_LEN};
pub use decision::{ArrivalPort, Decision, IgnoreReason, MessageType, Outcome, Reply, Seen};
pub use reply::Family;
pub use wire::Malformed;

use reply::ReplySpec;
use wire::{code, Request};

const BOOTREQUEST: u8 = 1;

/// Decide what to do with one UDP payload that arrived on `port` from `source`.
pub fn handle(
    payload: &[u8],
    port: ArrivalPort,
    source: SocketAddrV4,
    config: &ProxyConfig,
) -> Decision {
    let request = match wire::parse(payload) {
        Ok(request) => request,
        Err(malformed) => return ignored(IgnoreReason::Malformed(malformed), None),
    };
    if request.op != BOOTREQUEST {
        return ignored(IgnoreReason::NotBootRequest, None);
    }
    let Some(msg_type) = request.message_type() else {
        return ignored(IgnoreReason::NotDhcp, None);
    };

    let family = Family::of_vendor_class(request.option(code::VENDOR_CLASS).unwrap_or_default());
    let chosen = choose_arch(&request, config, family);
    let arch = chosen
        .as_ref()
        .map(|(arch, _)| *arch)
        .or_else(|| request.arches().next());
    let is_ipxe = is_ipxe(&request);
    let seen = family.and_then(|_| seen(&request, msg_type, arch, is_ipxe));

    let (Some(family), Some(arch)) = (family, arch) else {
        return ignored(IgnoreReason::NotPxe, seen);
    };

    let kind = match (MessageType::from(msg_type), port) {
        (MessageType::Discover, ArrivalPort::Dhcp) => MessageType::Offer,
        (MessageType::Discover, ArrivalPort::Pxe) => {
            return ignored(IgnoreReason::DiscoverOnPxePort, seen)
        }
        (MessageType::Request, ArrivalPort::Pxe) => MessageType::Ack,
        (MessageType::Request, ArrivalPort::Dhcp) => {
            if request.server_id() != Some(config.advertise()) {
                return ignored(IgnoreReason::RequestNotForUs, seen);
            }
            MessageType::Ack
        }
        _ => return ignored(IgnoreReason::UnsupportedMessageType(msg_type), seen),
    };

    let boot = if is_ipxe {
        config.ipxe_script()
    } else {
        match chosen {
            Some((_, file)) => file,
            None => return ignored(IgnoreReason::UnknownArch(arch), seen),
        }
    };
    if family == Family::Http && !boot.is_url() {
        return ignored(IgnoreReason::HttpClientWithoutUrl(arch), seen);
    }

    let spec = ReplySpec { kind, family, boot };
    let Ok(bytes) = reply::build(&request, spec, config) else {
        return ignored(IgnoreReason::EncodeFailed, seen);
    };
    let (dest, broadcast) = reply::destination(&request, port, source);
    let outcome = if kind == MessageType::Offer {
        Outcome::Offered
    } else {
        Outcome::Acked
    };
    Decision {
        reply: Some(Reply {
            bytes,
            dest,
            broadcast,
        }),
        outcome,
        seen,
    }
}

fn ignored(reason: IgnoreReason, seen: Option<Seen>) -> Decision {
    Decision {
        reply: None,
        outcome: Outcome::Ignored(reason),
        seen,
    }
}

fn is_ipxe(request: &Request) -> bool {
    let user_class_ipxe = request
        .option(code::USER_CLASS)
        .is_some_and(|uc| uc.windows(4).any(|w| w == b"iPXE"));
    user_class_ipxe || request.option(code::IPXE_ENCAP).is_some()
}

fn seen(request: &Request, msg_type: u8, arch: Option<u16>, is_ipxe: bool) -> Option<Seen> {
    let lossy = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    Some(Seen {
        mac: request.ethernet_mac()?,
        arch,
        vendor_class: lossy(request.option(code::VENDOR_CLASS).unwrap_or_default()),
        uuid: uuid(request.option(code::CLIENT_UUID)),
        msg_type: MessageType::from(msg_type),
        is_ipxe,
        user_class: request.option(code::USER_CLASS).map(lossy),
    })
}

/// The option 93 value (client order) whose boot file the client's family can fetch: a URL for
/// an `HTTPClient`, a TFTP file for a `PXEClient`; failing that, the first with any boot file.
fn choose_arch<'c>(
    request: &Request,
    config: &'c ProxyConfig,
    family: Option<Family>,
) -> Option<(u16, &'c BootFile)> {
    let wants_url = family == Some(Family::Http);
    let mut first = None;
    for arch in request.arches() {
        if let Some(file) = config.boot_file_for(arch) {
            if file.is_url() == wants_url {
                return Some((arch, file));
            }
            first.get_or_insert((arch, file));
        }
    }
    first
}

/// Option 97 → SMBIOS UUID: 17 bytes, type 0, not a placeholder ([`is_placeholder_uuid`]).
fn uuid(option: Option<&[u8]>) -> Option<[u8; 16]> {
    let (&kind, rest) = option?.split_first()?;
    let uuid: [u8; 16] = rest.try_into().ok()?;
    (kind == 0 && !is_placeholder_uuid(&uuid)).then_some(uuid)
}

/// SMBIOS UUIDs that identify no machine: all zero, all `ff` ("not present, settable" in the
/// SMBIOS specification), and the `03000200-0400-0500-0006-000700080009` that many boards ship
/// with unset (in either byte order). Machines sending one are known by MAC only, so that two
/// boards with the same placeholder are not merged into one machine.
pub fn is_placeholder_uuid(uuid: &[u8; 16]) -> bool {
    const OEM_DEFAULT: [u8; 16] = [3, 0, 2, 0, 4, 0, 5, 0, 0, 6, 0, 7, 0, 8, 0, 9];
    const OEM_DEFAULT_SWAPPED: [u8; 16] = [0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0, 9];
    *uuid == [0; 16] || *uuid == [0xff; 16] || *uuid == OEM_DEFAULT || *uuid == OEM_DEFAULT_SWAPPED
}
