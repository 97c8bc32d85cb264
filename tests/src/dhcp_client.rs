//! A tiny DHCP client for tests: builds PXE-style DISCOVER/REQUEST packets and reads replies.
//! Independent of the code under test (no shared parser), so it checks the wire, not our types.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct ClientSpec {
    pub mac: [u8; 6],
    pub xid: u32,
    pub arch: u16,
    pub vendor_class: String,
    pub ipxe: bool,
    pub uuid: Option<[u8; 16]>,
    pub giaddr: Ipv4Addr,
}

/// DHCP message type 1 (DISCOVER) or 3 (REQUEST, with `server_id`).
pub fn packet(c: &ClientSpec, msg_type: u8, server_id: Option<Ipv4Addr>) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&c.xid.to_be_bytes());
    p[10] = 0x80; // broadcast flag
    p[24..28].copy_from_slice(&c.giaddr.octets());
    p[28..34].copy_from_slice(&c.mac);
    p.extend_from_slice(&[99, 130, 83, 99]);
    let mut opt = |code: u8, v: &[u8]| {
        p.push(code);
        p.push(v.len() as u8);
        p.extend_from_slice(v);
    };
    opt(53, &[msg_type]);
    if let Some(s) = server_id {
        opt(54, &s.octets());
    }
    opt(55, &[1, 3, 6, 43, 54, 60, 66, 67, 97]);
    opt(60, c.vendor_class.as_bytes());
    opt(93, &c.arch.to_be_bytes());
    opt(94, &[1, 3, 0]);
    let mut guid = vec![0u8];
    guid.extend_from_slice(&c.uuid.unwrap_or([0; 16]));
    opt(97, &guid);
    if c.ipxe {
        opt(77, b"iPXE");
        opt(175, &[0xb1, 0x05, 0x01, 0x1a, 0xf4, 0x10, 0x00]);
    }
    p.push(255);
    p
}

#[derive(Debug, Clone)]
pub struct ReplyView {
    pub from: SocketAddr,
    pub op: u8,
    pub xid: u32,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub sname: String,
    pub file: String,
    pub options: BTreeMap<u8, Vec<u8>>,
}

impl ReplyView {
    pub fn parse(b: &[u8], from: SocketAddr) -> Option<ReplyView> {
        if b.len() < 240 || b[236..240] != [99, 130, 83, 99] {
            return None;
        }
        let ip = |o: usize| Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]);
        let cstr = |r: std::ops::Range<usize>| {
            let s = &b[r];
            let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        };
        let mut options = BTreeMap::new();
        let mut i = 240;
        while i < b.len() {
            match b[i] {
                0 => i += 1,
                255 => break,
                code => {
                    let len = *b.get(i + 1)? as usize;
                    let v = b.get(i + 2..i + 2 + len)?;
                    options
                        .entry(code)
                        .or_insert_with(Vec::new)
                        .extend_from_slice(v);
                    i += 2 + len;
                }
            }
        }
        Some(ReplyView {
            from,
            op: b[0],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            yiaddr: ip(16),
            siaddr: ip(20),
            sname: cstr(44..108),
            file: cstr(108..236),
            options,
        })
    }

    pub fn opt_str(&self, code: u8) -> Option<String> {
        self.options.get(&code).map(|v| {
            String::from_utf8_lossy(v)
                .trim_end_matches('\0')
                .to_string()
        })
    }

    pub fn msg_type(&self) -> Option<u8> {
        self.options.get(&53).and_then(|v| v.first().copied())
    }

    pub fn server_id(&self) -> Option<Ipv4Addr> {
        let v = self.options.get(&54)?;
        (v.len() == 4).then(|| Ipv4Addr::new(v[0], v[1], v[2], v[3]))
    }
}

/// Send `pkt` to `to` from `sock` and collect every reply with our xid for `wait`.
pub fn exchange(
    sock: &UdpSocket,
    pkt: &[u8],
    to: SocketAddr,
    xid: u32,
    wait: Duration,
) -> Vec<ReplyView> {
    sock.send_to(pkt, to).unwrap();
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Some(r) = ReplyView::parse(&buf[..n], from) {
                    if r.xid == xid && r.op == 2 {
                        out.push(r);
                    }
                }
            }
            Err(_) => break,
        }
    }
    out
}

/// A UDP socket on `port`, bound to `eth0`, that may send broadcasts (create it inside the
/// client namespace).
pub fn client_socket(port: u16) -> UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_broadcast(true).unwrap();
    s.bind_device(Some(b"eth0")).unwrap();
    s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())
        .unwrap();
    s.into()
}
