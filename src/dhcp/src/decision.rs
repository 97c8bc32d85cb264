//! What [`crate::handle`] returns: the reply to send (if any), a metrics
//! outcome, and the inventory sighting.

use std::net::SocketAddrV4;

pub use dhcproto::v4::MessageType;

use crate::wire::Malformed;

/// UDP port a packet arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArrivalPort {
    /// UDP 67: broadcast DISCOVER/REQUEST (and relayed packets).
    Dhcp,
    /// UDP 4011: the PXE ProxyDHCP REQUEST.
    Pxe,
}

impl ArrivalPort {
    /// The port number.
    pub fn number(self) -> u16 {
        match self {
            ArrivalPort::Dhcp => 67,
            ArrivalPort::Pxe => 4011,
        }
    }
}

/// Result of handling one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Datagram to send, if any.
    pub reply: Option<Reply>,
    /// Classification for metrics/logs.
    pub outcome: Outcome,
    /// Inventory sighting: present for every parsed PXE-looking BOOTREQUEST
    /// (option 60 `PXEClient…`/`HTTPClient…`) from an Ethernet client, even
    /// when it is ignored afterwards (unknown arch, not for us, …).
    pub seen: Option<Seen>,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// UDP payload (at least 300 bytes).
    pub bytes: Vec<u8>,
    /// Where to send it.
    pub dest: SocketAddrV4,
    /// `dest` is 255.255.255.255: the socket needs SO_BROADCAST and should
    /// send out of the interface the request came in on.
    pub broadcast: bool,
}

/// Metrics classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// DISCOVER answered with a ProxyDHCP OFFER.
    Offered,
    /// REQUEST answered with a ProxyDHCP ACK.
    Acked,
    /// No reply.
    Ignored(IgnoreReason),
}

/// Why no reply was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// Failed the guarded parse (length, cookie, option TLVs, option shapes).
    Malformed(Malformed),
    /// op is not BOOTREQUEST (1).
    NotBootRequest,
    /// No option 53: plain BOOTP, not DHCP.
    NotDhcp,
    /// Not a PXE/HTTP-boot client: option 60 does not start with `PXEClient`
    /// or `HTTPClient`, or option 93 is missing.
    NotPxe,
    /// A PXE client's message other than DISCOVER/REQUEST (RELEASE, INFORM,
    /// DECLINE, …); carries the option 53 value.
    UnsupportedMessageType(u8),
    /// DISCOVER sent to 4011 (only REQUEST belongs there).
    DiscoverOnPxePort,
    /// REQUEST on 67 whose option 54 is not our address (or absent): it is
    /// for the site DHCP server.
    RequestNotForUs,
    /// No boot file for any value of option 93; carries the first value.
    UnknownArch(u16),
    /// An HTTPClient asked, but the resolved boot file is a TFTP path
    /// (HTTP-boot firmware cannot use it); carries the arch.
    HttpClientWithoutUrl(u16),
    /// Writing the reply failed (cannot happen with validated config; kept
    /// so a bug shows up as a metric, not a panic).
    EncodeFailed,
}

impl Outcome {
    /// Short stable label for a metrics series.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Offered => "offered",
            Outcome::Acked => "acked",
            Outcome::Ignored(reason) => reason.label(),
        }
    }
}

impl IgnoreReason {
    /// Short stable label for a metrics series.
    pub fn label(&self) -> &'static str {
        match self {
            IgnoreReason::Malformed(_) => "malformed",
            IgnoreReason::NotBootRequest => "not_boot_request",
            IgnoreReason::NotDhcp => "not_dhcp",
            IgnoreReason::NotPxe => "not_pxe",
            IgnoreReason::UnsupportedMessageType(_) => "unsupported_message_type",
            IgnoreReason::DiscoverOnPxePort => "discover_on_pxe_port",
            IgnoreReason::RequestNotForUs => "request_not_for_us",
            IgnoreReason::UnknownArch(_) => "unknown_arch",
            IgnoreReason::HttpClientWithoutUrl(_) => "http_client_without_url",
            IgnoreReason::EncodeFailed => "encode_failed",
        }
    }
}

/// A PXE-looking client as seen on the wire (for the machine inventory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Client MAC (chaddr; only Ethernet clients are reported).
    pub mac: [u8; 6],
    /// The option 93 value used (first known one), else the first value sent;
    /// `None` without option 93.
    pub arch: Option<u16>,
    /// Option 60, lossy UTF-8.
    pub vendor_class: String,
    /// SMBIOS UUID from option 97 (17 bytes, type 0), `None` if absent, of
    /// another type, or all zero (QEMU without `-uuid`).
    pub uuid: Option<[u8; 16]>,
    /// Option 53.
    pub msg_type: MessageType,
    /// Client is already running iPXE (option 77 contains `iPXE` or option 175 present).
    pub is_ipxe: bool,
    /// Option 77, lossy UTF-8 (raw bytes; iPXE sends the bare string `iPXE`).
    pub user_class: Option<String>,
}
