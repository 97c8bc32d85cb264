//! Tests: real captured vectors, synthetic packets, config/table, proptest.

mod config;
mod fuzz;
mod synthetic;
mod vectors;

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{DhcpOption, Message, OptionCode};
use dhcproto::{Decodable, Decoder};

use crate::{handle, ArrivalPort, Decision, MessageType, ProxyConfig, Reply};

pub(crate) const ADV: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
pub(crate) const HTTP_PORT: u16 = 8080;

pub(crate) fn cfg() -> ProxyConfig {
    ProxyConfig::new(ADV, HTTP_PORT).expect("valid test config")
}

pub(crate) fn from_client() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)
}

pub(crate) fn run(bytes: &[u8], port: ArrivalPort, src: SocketAddrV4) -> Decision {
    handle(bytes, port, src, &cfg())
}

/// Decode a reply with dhcproto (independent of our parser).
pub(crate) fn decode(reply: &Reply) -> Message {
    Message::decode(&mut Decoder::new(&reply.bytes)).expect("dhcproto decodes our reply")
}

pub(crate) fn msg_type(msg: &Message) -> Option<MessageType> {
    match msg.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => Some(*t),
        _ => None,
    }
}

pub(crate) fn server_id(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

/// Raw bytes of a byte-valued option in a decoded reply.
pub(crate) fn opt(msg: &Message, code: OptionCode) -> Option<Vec<u8>> {
    match msg.opts().get(code)? {
        DhcpOption::ClassIdentifier(b)
        | DhcpOption::TFTPServerName(b)
        | DhcpOption::BootfileName(b)
        | DhcpOption::ClientMachineIdentifier(b)
        | DhcpOption::VendorExtensions(b) => Some(b.clone()),
        other => panic!("unexpected option shape {other:?}"),
    }
}

pub(crate) fn opt_str(msg: &Message, code: OptionCode) -> Option<String> {
    opt(msg, code).map(|b| String::from_utf8(b).expect("utf8 option"))
}

/// NUL-terminated string in a fixed header field of the reply bytes.
fn header_str(reply: &Reply, range: std::ops::Range<usize>) -> String {
    let field = &reply.bytes[range];
    let end = field
        .iter()
        .position(|&b| b == 0)
        .expect("NUL-terminated field");
    assert!(
        field[end..].iter().all(|&b| b == 0),
        "field zero-filled after NUL"
    );
    String::from_utf8(field[..end].to_vec()).expect("utf8 header field")
}

/// The 128-byte `file` header field, "" when empty.
pub(crate) fn file_header(reply: &Reply) -> String {
    header_str(reply, 108..236)
}

/// The 64-byte `sname` header field, "" when empty.
pub(crate) fn sname_header(reply: &Reply) -> String {
    header_str(reply, 44..108)
}

/// Invariants every reply must satisfy (also used by proptest).
pub(crate) fn check_reply_invariants(reply: &Reply) {
    let b = &reply.bytes;
    assert!(b.len() >= 300, "reply shorter than 300 bytes");
    assert_eq!(b[0], 2, "op BOOTREPLY");
    assert_eq!(&b[16..20], &[0, 0, 0, 0], "yiaddr must be 0.0.0.0");
    assert_eq!(&b[236..240], &[0x63, 0x82, 0x53, 0x63], "magic cookie");
    assert_eq!(b[240], 53, "option 53 first");
    assert_eq!(b[241], 1);
    assert!(b[242] == 2 || b[242] == 5, "option 53 is OFFER or ACK");
    let msg = decode(reply);
    assert_eq!(msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(matches!(
        msg_type(&msg),
        Some(MessageType::Offer | MessageType::Ack)
    ));
    assert_eq!(reply.broadcast, *reply.dest.ip() == Ipv4Addr::BROADCAST);
}

/// Synthetic BOOTREQUEST builder.
pub(crate) struct Pkt {
    pub op: u8,
    pub htype: u8,
    pub hlen: u8,
    pub xid: u32,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    pub file: [u8; 128],
    pub options: Vec<u8>,
    pub end: bool,
}

pub(crate) const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];

impl Pkt {
    /// A PXE client of arch `arch` sending message type `mt`.
    pub fn pxe(mt: u8, arch: u16) -> Pkt {
        Pkt::bare(mt)
            .opt(60, b"PXEClient:Arch:00007:UNDI:003000")
            .opt(93, &arch.to_be_bytes())
            .opt(94, &[1, 3, 0])
    }

    /// Only option 53.
    pub fn bare(mt: u8) -> Pkt {
        Pkt {
            op: 1,
            htype: 1,
            hlen: 6,
            xid: 0x1122_3344,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: MAC,
            file: [0; 128],
            options: Vec::new(),
            end: true,
        }
        .opt(53, &[mt])
    }

    pub fn opt(mut self, code: u8, value: &[u8]) -> Pkt {
        self.options.push(code);
        self.options
            .push(u8::try_from(value.len()).expect("short option"));
        self.options.extend_from_slice(value);
        self
    }

    /// Append raw option bytes (for malformed TLVs).
    pub fn raw(mut self, bytes: &[u8]) -> Pkt {
        self.options.extend_from_slice(bytes);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut b = vec![self.op, self.htype, self.hlen, 0];
        b.extend_from_slice(&self.xid.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.flags.to_be_bytes());
        b.extend_from_slice(&self.ciaddr.octets());
        b.extend_from_slice(&[0; 8]); // yiaddr, siaddr
        b.extend_from_slice(&self.giaddr.octets());
        b.extend_from_slice(&self.chaddr);
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&[0; 64]);
        b.extend_from_slice(&self.file);
        assert_eq!(b.len(), 236);
        b.extend_from_slice(&[0x63, 0x82, 0x53, 0x63]);
        b.extend_from_slice(&self.options);
        if self.end {
            b.push(255);
        }
        b
    }
}
