//! DHCP as PXE firmware and iPXE speak it: the packets a client sends (DISCOVER, REQUEST, the
//! ProxyDHCP REQUEST to 4011) and a guarded view of the replies, plus [`Exchange`], the sans-IO
//! state machine of one DHCP run (select → request → optional ProxyDHCP request).
//!
//! Independent of `rackboot-dhcp` on purpose: the fleet checks the wire, not our own types.
//! Parsing never panics: every read is bounds-checked and a bad packet is `None`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::retry::Backoff;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
pub const PXE_PORT: u16 = 4011;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;

/// What a client says about itself in every DHCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub mac: [u8; 6],
    pub uuid: [u8; 16],
    /// Option 93.
    pub arch: u16,
    /// Option 60 (`PXEClient:Arch:…` or `HTTPClient:Arch:…`).
    pub vendor_class: String,
    /// Option 94 (UNDI major, minor).
    pub undi: (u8, u8),
    /// Running iPXE: option 77 `iPXE` and option 175.
    pub ipxe: bool,
}

impl Identity {
    pub fn is_http_client(&self) -> bool {
        self.vendor_class.starts_with("HTTPClient")
    }
}

fn put(p: &mut Vec<u8>, code: u8, v: &[u8]) {
    // Every option we write is far below 255 bytes; longer ones are cut rather than panic.
    let v = v.get(..v.len().min(255)).unwrap_or_default();
    p.push(code);
    p.push(v.len() as u8);
    p.extend_from_slice(v);
}

/// The per-packet fields of a client packet besides the message type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fields {
    pub ciaddr: Option<Ipv4Addr>,
    /// Option 50.
    pub requested: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 43 sub-option 71 (PXE boot item, layer 0) for boot server discovery.
    pub boot_item: Option<u16>,
}

/// A client packet; `msg` is the option 53 value.
pub fn client_packet(id: &Identity, xid: u32, secs: u16, msg: u8, f: Fields) -> Vec<u8> {
    let ciaddr = f.ciaddr.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let (requested, server_id) = (f.requested, f.server_id);
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[8..10].copy_from_slice(&secs.to_be_bytes());
    if ciaddr.is_unspecified() {
        p[10] = 0x80; // broadcast flag: firmware cannot take unicast before it has an address
    }
    p[12..16].copy_from_slice(&ciaddr.octets());
    p[28..34].copy_from_slice(&id.mac);
    p.extend_from_slice(&MAGIC);
    put(&mut p, 53, &[msg]);
    if let Some(r) = requested {
        put(&mut p, 50, &r.octets());
    }
    if let Some(s) = server_id {
        put(&mut p, 54, &s.octets());
    }
    put(&mut p, 57, &1464u16.to_be_bytes());
    put(
        &mut p,
        55,
        &[
            1, 3, 6, 43, 54, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135, 175,
        ],
    );
    put(&mut p, 60, id.vendor_class.as_bytes());
    put(&mut p, 93, &id.arch.to_be_bytes());
    put(&mut p, 94, &[1, id.undi.0, id.undi.1]);
    let mut guid = vec![0u8];
    guid.extend_from_slice(&id.uuid);
    put(&mut p, 97, &guid);
    if let Some(item) = f.boot_item {
        let t = item.to_be_bytes();
        put(&mut p, 43, &[71, 4, t[0], t[1], 0, 0, 255]);
    }
    if id.ipxe {
        put(&mut p, 77, b"iPXE");
        // iPXE's feature list: priority, keep-san, … (what iPXE 1.0 sends; any 175 marks iPXE).
        put(
            &mut p,
            175,
            &[0xb1, 0x05, 0x01, 0x1a, 0xf4, 0x10, 0x00, 0x13, 0x01, 0x01],
        );
    }
    p.push(255);
    if p.len() < 300 {
        p.resize(300, 0);
    }
    p
}

/// A parsed server reply (only what a booting client looks at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub msg_type: u8,
    pub xid: u32,
    pub chaddr: [u8; 6],
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub server_id: Option<Ipv4Addr>,
    pub vendor_class: Option<String>,
    /// Option 67, else the `file` header.
    pub boot_file: Option<String>,
    /// Option 66, else the `sname` header.
    pub tftp_server: Option<String>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
    /// Option 43 (PXE vendor options: discovery control, boot servers, menu).
    pub pxe_options: Option<Vec<u8>>,
}

fn cstr(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(b.get(..end)?).trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn ip4(b: &[u8]) -> Option<Ipv4Addr> {
    let a: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(a))
}

impl Reply {
    pub fn parse(b: &[u8]) -> Option<Reply> {
        if b.len() < 240 || b.get(236..240)? != MAGIC || *b.first()? != 2 {
            return None;
        }
        let mut opts: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut i = 240usize;
        while let Some(&code) = b.get(i) {
            match code {
                0 => i += 1,
                255 => break,
                _ => {
                    let len = usize::from(*b.get(i + 1)?);
                    let v = b.get(i + 2..i + 2 + len)?;
                    match opts.iter_mut().find(|(c, _)| *c == code) {
                        Some((_, acc)) => acc.extend_from_slice(v),
                        None => opts.push((code, v.to_vec())),
                    }
                    i += 2 + len;
                }
            }
        }
        let opt = |c: u8| {
            opts.iter()
                .find(|(k, _)| *k == c)
                .map(|(_, v)| v.as_slice())
        };
        let msg_type = *opt(53)?.first()?;
        Some(Reply {
            msg_type,
            xid: u32::from_be_bytes(b.get(4..8)?.try_into().ok()?),
            chaddr: b.get(28..34)?.try_into().ok()?,
            yiaddr: ip4(b.get(16..20)?)?,
            siaddr: ip4(b.get(20..24)?)?,
            server_id: opt(54).and_then(ip4),
            vendor_class: opt(60).and_then(cstr),
            boot_file: opt(67).and_then(cstr).or_else(|| cstr(b.get(108..236)?)),
            tftp_server: opt(66).and_then(cstr).or_else(|| cstr(b.get(44..108)?)),
            subnet_mask: opt(1).and_then(ip4),
            router: opt(3).and_then(ip4),
            pxe_options: opt(43).map(<[u8]>::to_vec),
        })
    }

    /// An offer of an address (from the site DHCP server).
    pub fn offers_address(&self) -> bool {
        !self.yiaddr.is_unspecified()
    }

    /// A ProxyDHCP offer: no address, option 60 `PXEClient`/`HTTPClient`.
    pub fn is_proxy(&self) -> bool {
        !self.offers_address()
            && self
                .vendor_class
                .as_deref()
                .is_some_and(|v| v.starts_with("PXEClient") || v.starts_with("HTTPClient"))
    }

    /// Type of the first PXE boot menu item (option 43 sub-option 9), if there is a menu: a PXE
    /// client then asks the boot server for that item (boot server discovery).
    pub fn first_menu_item(&self) -> Option<u16> {
        let mut v = self.pxe_options.as_deref()?;
        while let [code, rest @ ..] = v {
            match code {
                0 => v = rest,
                255 => return None,
                _ => {
                    let (&len, rest) = rest.split_first()?;
                    let val = rest.get(..usize::from(len))?;
                    if *code == 9 {
                        return Some(u16::from_be_bytes([*val.first()?, *val.get(1)?]));
                    }
                    v = rest.get(usize::from(len)..)?;
                }
            }
        }
        None
    }

    fn server(&self) -> Option<Ipv4Addr> {
        self.server_id
            .or_else(|| (!self.siaddr.is_unspecified()).then_some(self.siaddr))
    }
}

/// Where to get the next boot program from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootTarget {
    Tftp { server: Ipv4Addr, file: String },
    Http { url: String },
}

/// Result of a successful exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub boot: Option<BootTarget>,
}

/// How the client runs the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behaviour {
    /// After the address ACK, send a ProxyDHCP REQUEST to 4011 when a proxy offer came.
    pub proxy_request: bool,
    /// Source port of that request: 68 (iPXE) or 4011 (EDK2, Intel PXE).
    pub proxy_src_port: u16,
    /// Wait this long after the first address offer for a boot offer before settling.
    pub proxy_wait: Duration,
    /// PXE firmware: without a boot offer keep DISCOVERing (4/8/16/32 s) instead of settling
    /// for the address alone (iPXE settles and then has nothing to boot).
    pub need_boot: bool,
}

/// A datagram for the shell to send as a raw frame (no ARP: `dst_mac` None = broadcast).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub dst_mac: Option<[u8; 6]>,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    NoOffer,
    NoBootOffer,
    NoAck,
    Nak,
}

impl Failure {
    pub fn label(&self) -> &'static str {
        match self {
            Failure::NoOffer => "dhcp: no address offer",
            Failure::NoBootOffer => "dhcp: no boot offer",
            Failure::NoAck => "dhcp: no ACK",
            Failure::Nak => "dhcp: NAK",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Selecting { first_offer: Option<Duration> },
    Requesting,
    Proxy { lease: Lease },
    Done(Lease),
    Failed(Failure),
}

/// One DHCP run of one client: DISCOVER (retransmitted 4/8/16/32 s), collect the address offer
/// and a boot offer (ProxyDHCP, or an address offer that carries a boot file), REQUEST the
/// address, then optionally the ProxyDHCP REQUEST to 4011.
#[derive(Debug)]
pub struct Exchange {
    id: Identity,
    xid: u32,
    how: Behaviour,
    started: Duration,
    phase: Phase,
    backoff: Backoff,
    address: Option<(Reply, Option<[u8; 6]>)>,
    proxy: Option<(Reply, [u8; 6])>,
    naks: u32,
    out: Vec<Datagram>,
}

/// NAKs after which an exchange fails (dnsmasq, storming, offers one free address to several
/// machines at once and NAKs all but the first REQUEST; each restart gets a fresh offer).
pub const MAX_NAKS: u32 = 8;

impl Exchange {
    pub fn new(id: Identity, xid: u32, how: Behaviour, now: Duration) -> Exchange {
        let mut x = Exchange {
            id,
            xid,
            how,
            started: now,
            phase: Phase::Selecting { first_offer: None },
            backoff: Backoff::firmware(now),
            address: None,
            proxy: None,
            naks: 0,
            out: Vec::new(),
        };
        x.send_discover(now);
        x
    }

    fn secs(&self, now: Duration) -> u16 {
        u16::try_from(now.saturating_sub(self.started).as_secs()).unwrap_or(u16::MAX)
    }

    fn broadcast(&mut self, payload: Vec<u8>) {
        self.out.push(Datagram {
            src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT),
            dst: SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT),
            dst_mac: None,
            payload,
        });
    }

    fn send_discover(&mut self, now: Duration) {
        let p = client_packet(
            &self.id,
            self.xid,
            self.secs(now),
            DISCOVER,
            Fields::default(),
        );
        self.broadcast(p);
    }

    fn send_request(&mut self, now: Duration) {
        let Some((offer, _)) = &self.address else {
            return;
        };
        let (yiaddr, server) = (offer.yiaddr, offer.server());
        let f = Fields {
            requested: Some(yiaddr),
            server_id: server,
            ..Fields::default()
        };
        let p = client_packet(&self.id, self.xid, self.secs(now), REQUEST, f);
        self.broadcast(p);
    }

    fn send_proxy_request(&mut self, now: Duration, ip: Ipv4Addr) {
        let Some((offer, mac)) = &self.proxy else {
            return;
        };
        let Some(server) = offer.server() else {
            return;
        };
        let mac = *mac;
        let f = Fields {
            ciaddr: Some(ip),
            boot_item: offer.first_menu_item(),
            ..Fields::default()
        };
        let p = client_packet(&self.id, self.xid, self.secs(now), REQUEST, f);
        self.out.push(Datagram {
            src: SocketAddrV4::new(ip, self.how.proxy_src_port),
            dst: SocketAddrV4::new(server, PXE_PORT),
            dst_mac: Some(mac),
            payload: p,
        });
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        (!self.out.is_empty()).then(|| self.out.remove(0))
    }

    pub fn result(&self) -> Option<Result<&Lease, &Failure>> {
        match &self.phase {
            Phase::Done(l) => Some(Ok(l)),
            Phase::Failed(f) => Some(Err(f)),
            _ => None,
        }
    }

    /// The lease once the address is ACKed (also while the ProxyDHCP request runs).
    /// Datagrams sent again after a firmware timeout (DISCOVER, REQUEST, the 4011 REQUEST).
    pub fn retries(&self) -> u32 {
        self.backoff.retries()
    }

    pub fn bound(&self) -> Option<&Lease> {
        match &self.phase {
            Phase::Proxy { lease } | Phase::Done(lease) => Some(lease),
            _ => None,
        }
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        match &self.phase {
            Phase::Done(_) | Phase::Failed(_) => None,
            Phase::Selecting {
                first_offer: Some(t),
            } if self.address.is_some() && !self.how.need_boot => {
                Some(self.backoff.deadline().min(*t + self.how.proxy_wait))
            }
            _ => Some(self.backoff.deadline()),
        }
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        match self.phase.clone() {
            Phase::Selecting { first_offer } => {
                if let Some(t) = first_offer {
                    if now >= t + self.how.proxy_wait
                        && (!self.how.need_boot || self.complete())
                        && self.settle(now)
                    {
                        return;
                    }
                }
                if now >= self.backoff.deadline() {
                    if self.backoff.next(now) {
                        self.send_discover(now);
                    } else {
                        let f = if self.address.is_some() {
                            Failure::NoBootOffer
                        } else {
                            Failure::NoOffer
                        };
                        self.phase = Phase::Failed(f);
                    }
                }
            }
            Phase::Requesting if now >= self.backoff.deadline() => {
                if self.backoff.next(now) {
                    self.send_request(now);
                } else {
                    self.phase = Phase::Failed(Failure::NoAck);
                }
            }
            Phase::Proxy { lease } if now >= self.backoff.deadline() => {
                if self.backoff.next(now) {
                    self.send_proxy_request(now, lease.ip);
                } else {
                    // No answer on 4011: fall back to what the proxy offer said, if anything.
                    let mut lease = lease;
                    if lease.boot.is_none() {
                        lease.boot = self.proxy.as_ref().and_then(|(o, _)| boot_of(o));
                    }
                    self.phase = Phase::Done(lease);
                }
            }
            _ => {}
        }
    }

    /// A reply addressed to this client (`src_mac` from the Ethernet header).
    pub fn handle_reply(&mut self, now: Duration, r: Reply, src_mac: [u8; 6]) {
        if r.xid != self.xid || r.chaddr != self.id.mac {
            return;
        }
        match self.phase.clone() {
            Phase::Selecting { first_offer } if r.msg_type == OFFER => {
                if r.offers_address() {
                    if self.address.is_none() {
                        self.address = Some((r, Some(src_mac)));
                    }
                    if first_offer.is_none() {
                        self.phase = Phase::Selecting {
                            first_offer: Some(now),
                        };
                    }
                } else if r.is_proxy() && self.proxy.is_none() {
                    self.proxy = Some((r, src_mac));
                }
                if self.complete() {
                    self.settle(now);
                }
            }
            Phase::Requesting => {
                let from_chosen = self
                    .address
                    .as_ref()
                    .is_some_and(|(o, _)| r.server_id.is_none() || r.server_id == o.server());
                if !from_chosen {
                    return;
                }
                match r.msg_type {
                    ACK if r.offers_address() => self.on_ack(now, r),
                    NAK => self.restart(now),
                    _ => {}
                }
            }
            // dnsmasq's 4011 ACK echoes the address in yiaddr: match on the server instead.
            Phase::Proxy { mut lease }
                if r.msg_type == ACK
                    && (!r.offers_address()
                        || r.server().is_some()
                            && r.server() == self.proxy.as_ref().and_then(|(o, _)| o.server())) =>
            {
                if let Some(b) = boot_of(&r) {
                    lease.boot = Some(b);
                } else if lease.boot.is_none() {
                    lease.boot = self.proxy.as_ref().and_then(|(o, _)| boot_of(o));
                }
                self.phase = Phase::Done(lease);
            }
            _ => {}
        }
    }

    /// A NAK (e.g. dnsmasq offered the same address to two machines and the other one got it):
    /// start over with DISCOVER, as RFC 2131 §3.1 says; give up after [`MAX_NAKS`].
    fn restart(&mut self, now: Duration) {
        self.naks += 1;
        if self.naks > MAX_NAKS {
            self.phase = Phase::Failed(Failure::Nak);
            return;
        }
        self.address = None;
        self.proxy = None;
        self.phase = Phase::Selecting { first_offer: None };
        self.backoff.reset(now);
        self.send_discover(now);
    }

    /// Address offer and boot information both present.
    fn complete(&self) -> bool {
        let addr_has_boot = self
            .address
            .as_ref()
            .is_some_and(|(o, _)| boot_of(o).is_some());
        self.address.is_some() && (self.proxy.is_some() || addr_has_boot)
    }

    /// Move to REQUEST if an address offer is there; true if it moved.
    fn settle(&mut self, now: Duration) -> bool {
        if self.address.is_none() {
            return false;
        }
        self.phase = Phase::Requesting;
        self.backoff.reset(now);
        self.send_request(now);
        true
    }

    fn on_ack(&mut self, now: Duration, ack: Reply) {
        let prefix = ack
            .subnet_mask
            .map(|m| u32::from(m).leading_ones() as u8)
            .unwrap_or(24);
        // A boot file on the site server's own offer/ACK (a non-proxy setup) wins only when
        // no ProxyDHCP offer came.
        let site_boot =
            boot_of(&ack).or_else(|| self.address.as_ref().and_then(|(o, _)| boot_of(o)));
        let lease = Lease {
            ip: ack.yiaddr,
            prefix,
            router: ack.router,
            boot: if self.proxy.is_some() {
                None
            } else {
                site_boot
            },
        };
        if self.proxy.is_some() && self.how.proxy_request {
            self.phase = Phase::Proxy {
                lease: lease.clone(),
            };
            self.backoff.reset(now);
            self.send_proxy_request(now, lease.ip);
        } else {
            let mut lease = lease;
            if lease.boot.is_none() {
                lease.boot = self.proxy.as_ref().and_then(|(o, _)| boot_of(o));
            }
            self.phase = Phase::Done(lease);
        }
    }
}

/// The boot program a reply names: an `http(s)://` URL, or a TFTP file on option 66 / sname /
/// siaddr / the server id.
pub fn boot_of(r: &Reply) -> Option<BootTarget> {
    let file = r.boot_file.clone()?;
    if file.starts_with("http://") || file.starts_with("https://") {
        return Some(BootTarget::Http { url: file });
    }
    let server = r
        .tftp_server
        .as_deref()
        .and_then(|s| s.parse().ok())
        .or_else(|| (!r.siaddr.is_unspecified()).then_some(r.siaddr))
        .or(r.server_id)?;
    Some(BootTarget::Tftp { server, file })
}

#[cfg(test)]
#[path = "tests/dhcp.rs"]
mod tests;
