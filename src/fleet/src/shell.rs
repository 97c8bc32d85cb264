//! The thin I/O loop: one TAP device carries every simulated NIC. Frames read from it are
//! routed by destination MAC (broadcasts by DHCP `chaddr` or ARP target address) to one
//! machine: DHCP replies (UDP to 68/4011) straight into its [`Client`], everything else into
//! its own smoltcp [`Interface`] (ARP, TCP for HTTP, UDP for TFTP). Each machine is serviced
//! when a frame arrives for it or its next deadline passes (a timer heap), never in a busy loop.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::io::AsRawFd;
use std::time::Duration;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, HardwareAddress,
    IpAddress, IpCidr, IpEndpoint, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

use crate::client::{Client, HttpEvent, Output};
use crate::dhcp::{self, Datagram};

const MTU: usize = 1514;
/// Default receive window per HTTP connection. One thread simulates every NIC, so all of them
/// share one queue: a small window keeps what the servers have in flight (N × window) and with
/// it the queueing delay that DHCP and TFTP frames see behind bulk HTTP data small, without
/// lowering the aggregate rate (1,000 × 16 KiB ≈ 11k frames; the bench sets txqueuelen 50000).
/// [`Fleet::with_http_window`] changes it (a packet-socket wire receives a window's worth of
/// data as one GSO frame, so a larger window means fewer, larger frames).
pub const HTTP_RX: usize = 16 * 1024;
const HTTP_TX: usize = 4 * 1024;
/// How long a finished TFTP transfer's socket may wait for its last ACK to leave.
const TFTP_LINGER: Duration = Duration::from_secs(1);

/// A received frame: the first `len` bytes of `buf`. A packet-socket wire hands out its receive
/// buffers this way and gets them back through [`Wire::reuse`] once the frame is processed,
/// instead of copying each frame into a new allocation.
#[derive(Debug)]
pub struct Frame {
    buf: Vec<u8>,
    len: usize,
}

impl Frame {
    pub fn new(buf: Vec<u8>, len: usize) -> Frame {
        let len = len.min(buf.len());
        Frame { buf, len }
    }

    pub fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    pub fn into_buf(self) -> Vec<u8> {
        self.buf
    }
}

impl From<Vec<u8>> for Frame {
    fn from(buf: Vec<u8>) -> Frame {
        let len = buf.len();
        Frame { buf, len }
    }
}

/// A frame device: [`phy::TunTapInterface`] in the binary, a queue in tests.
pub trait Wire {
    /// Next received frame, if any (non-blocking).
    fn recv(&mut self) -> Option<Frame>;
    /// The buffers of frames processed since the last call, for the wire to receive into again
    /// (a wire that does not pool buffers lets them go).
    fn reuse(&mut self, spent: &mut Vec<Vec<u8>>) {
        spent.clear();
    }
    fn send(&mut self, frame: &[u8]);
    /// Block until a frame may be readable or `timeout` passed.
    fn wait(&mut self, timeout: Duration);
    /// Frames lost on their way to this reader that the wire knows of (0 if it cannot tell).
    fn dropped(&self) -> u64 {
        0
    }
    /// True when the next read could not hand frames out in pooled buffers (too many are out):
    /// the caller should process what it holds, so that the buffers come back, before reading on.
    fn saturated(&self) -> bool {
        false
    }
}

/// smoltcp's TAP device.
pub struct Tap(pub phy::TunTapInterface);

impl Wire for Tap {
    fn recv(&mut self) -> Option<Frame> {
        let (rx, _) = self.0.receive(Instant::now())?;
        Some(phy::RxToken::consume(rx, |b| b.to_vec()).into())
    }

    fn send(&mut self, frame: &[u8]) {
        if let Some(tx) = self.0.transmit(Instant::now()) {
            phy::TxToken::consume(tx, frame.len(), |b| b.copy_from_slice(frame));
        }
    }

    fn wait(&mut self, timeout: Duration) {
        let _ = phy::wait(self.0.as_raw_fd(), Some(timeout.into()));
    }
}

/// One machine's view of the wire for its smoltcp interface.
struct Port<'a> {
    rx: &'a mut VecDeque<Frame>,
    tx: &'a mut Vec<Vec<u8>>,
    /// Buffers of the frames smoltcp has read, for the wire to reuse.
    spent: &'a mut Vec<Vec<u8>>,
}

struct PortRx<'a> {
    frame: Frame,
    spent: &'a mut Vec<Vec<u8>>,
}
struct PortTx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for PortRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(self.frame.bytes());
        self.spent.push(self.frame.into_buf());
        r
    }
}

impl phy::TxToken for PortTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for Port<'_> {
    type RxToken<'b>
        = PortRx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = PortTx<'b>
    where
        Self: 'b;

    fn receive(&mut self, _: Instant) -> Option<(PortRx<'_>, PortTx<'_>)> {
        let frame = self.rx.pop_front()?;
        let rx = PortRx {
            frame,
            spent: &mut *self.spent,
        };
        Some((rx, PortTx(&mut *self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<PortTx<'_>> {
        Some(PortTx(self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut checksum = ChecksumCapabilities::default();
        // Frames from a local kernel carry good checksums; verifying them costs CPU only.
        checksum.ipv4 = Checksum::Tx;
        checksum.udp = Checksum::Tx;
        checksum.tcp = Checksum::Tx;
        checksum.icmpv4 = Checksum::Tx;
        let mut caps = DeviceCapabilities::default();
        caps.max_transmission_unit = MTU;
        caps.medium = Medium::Ethernet;
        caps.checksum = checksum;
        caps
    }
}

struct HttpConn {
    id: u32,
    handle: SocketHandle,
    request: Vec<u8>,
    sent: usize,
    established: bool,
}

struct Slot {
    client: Client,
    iface: Interface,
    sockets: SocketSet<'static>,
    rx: VecDeque<Frame>,
    tftp: Option<SocketHandle>,
    http: Option<HttpConn>,
    closing: Vec<SocketHandle>,
    /// A finished TFTP transfer's socket with its last ACK still queued, and when to drop it
    /// anyway (the ACK cannot leave, e.g. the server's MAC is unresolved).
    tftp_closing: Option<(SocketHandle, Duration)>,
    wake: Option<Duration>,
    next_port: u16,
}

/// Counters of the shell itself (to tell simulator limits from server behaviour).
#[derive(Debug, Default, Clone, Copy)]
pub struct ShellStats {
    pub frames_in: u64,
    pub frames_out: u64,
    pub frames_unrouted: u64,
    /// UDP frames longer than the MTU: a sender's UDP GSO datagram the wire did not cut into
    /// datagrams (see `bench/fleet.sh`); dropped, as no firmware could read one.
    pub frames_oversized: u64,
    /// Frames the wire dropped before the simulator read them (socket buffer full).
    pub frames_dropped: u64,
}

pub struct Fleet {
    slots: Vec<Slot>,
    by_mac: HashMap<[u8; 6], usize>,
    by_ip: HashMap<Ipv4Addr, usize>,
    tx: Vec<Vec<u8>>,
    /// Buffers of processed frames, handed back to the wire after each round.
    spent: Vec<Vec<u8>>,
    heap: BinaryHeap<Reverse<(Duration, usize)>>,
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    /// Machines with an outcome (kept as a count: checking 1,000 slots per loop is not free).
    finished: usize,
    counted: Vec<bool>,
    http_rx: usize,
    pub stats: ShellStats,
}

fn ts(d: Duration) -> Instant {
    Instant::from_micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Fleet {
    /// `salt` varies the machines' TCP/UDP source ports and TCP initial sequence numbers between
    /// runs (iPXE picks random ports): a second run with the same machines and addresses must
    /// not hit the server's TIME_WAIT entries of the first (a SYN inside an old 4-tuple whose
    /// sequence number is not past the old connection's is answered with the old connection's
    /// ACK; the machine resets it and sends its SYN again a second later). Ports drawn at random
    /// still meet an old 4-tuple now and then; the TCP timestamps (see [`tsval`]) make the
    /// server take that SYN as a new connection.
    pub fn new(clients: Vec<Client>, salt: u64) -> Fleet {
        let mut tx = Vec::new();
        let mut slots = Vec::with_capacity(clients.len());
        let mut by_mac = HashMap::new();
        for (i, client) in clients.into_iter().enumerate() {
            let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(client.mac)));
            cfg.random_seed = iface_seed(salt, i);
            let mut rx = VecDeque::new();
            let iface = Interface::new(
                cfg,
                &mut Port {
                    rx: &mut rx,
                    tx: &mut tx,
                    spent: &mut Vec::new(),
                },
                ts(Duration::ZERO),
            );
            by_mac.insert(client.mac, i);
            slots.push(Slot {
                client,
                iface,
                sockets: SocketSet::new(Vec::new()),
                rx,
                tftp: None,
                http: None,
                closing: Vec::new(),
                tftp_closing: None,
                wake: None,
                next_port: 49152
                    + ((salt ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) % 15_000) as u16,
            });
        }
        let n = slots.len();
        let mut f = Fleet {
            slots,
            by_mac,
            by_ip: HashMap::new(),
            tx,
            spent: Vec::new(),
            heap: BinaryHeap::new(),
            dirty: Vec::new(),
            is_dirty: vec![false; n],
            finished: 0,
            counted: vec![false; n],
            http_rx: HTTP_RX,
            stats: ShellStats::default(),
        };
        for i in 0..n {
            f.schedule(i, Duration::ZERO);
        }
        f
    }

    /// Receive window (bytes) of the machines' HTTP connections.
    pub fn with_http_window(mut self, bytes: usize) -> Fleet {
        self.http_rx = bytes.max(1024);
        self
    }

    pub fn clients(&self) -> impl Iterator<Item = &Client> {
        self.slots.iter().map(|s| &s.client)
    }

    pub fn into_clients(self) -> Vec<Client> {
        self.slots.into_iter().map(|s| s.client).collect()
    }

    pub fn all_done(&self) -> bool {
        self.finished == self.slots.len()
    }

    fn mark(&mut self, i: usize) {
        if !self.is_dirty[i] {
            self.is_dirty[i] = true;
            self.dirty.push(i);
        }
    }

    /// Run until every machine has booted or failed, or `limit` passed. `clock` gives the time
    /// since the start.
    pub fn run(&mut self, wire: &mut dyn Wire, clock: &dyn Fn() -> Duration, limit: Duration) {
        loop {
            let now = clock();
            let mut n = 0;
            // Read until the wire is empty, or its pooled buffers are all out (then the frames
            // held are processed first, which gives them back, instead of being copied).
            while n < 8192 && !(n > 0 && wire.saturated()) {
                let Some(frame) = wire.recv() else { break };
                self.stats.frames_in += 1;
                self.route(now, frame);
                n += 1;
            }
            while let Some(&Reverse((t, i))) = self.heap.peek() {
                if t > now {
                    break;
                }
                self.heap.pop();
                if self.slots[i].wake == Some(t) {
                    self.slots[i].wake = None;
                    self.mark(i);
                }
            }
            self.service_dirty(now);
            self.transmit(wire);
            wire.reuse(&mut self.spent);
            if self.all_done() || now >= limit {
                self.stats.frames_dropped = wire.dropped();
                return;
            }
            if n == 0 {
                let next = self.heap.peek().map(|Reverse((t, _))| *t).unwrap_or(limit);
                let wait = next.saturating_sub(clock()).min(Duration::from_millis(50));
                if !wait.is_zero() {
                    wire.wait(wait);
                }
            }
        }
    }

    fn service_dirty(&mut self, now: Duration) {
        let dirty = std::mem::take(&mut self.dirty);
        for &i in &dirty {
            self.is_dirty[i] = false;
            self.service(i, now);
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    fn transmit(&mut self, wire: &mut dyn Wire) {
        for f in self.tx.drain(..) {
            wire.send(&f);
            self.stats.frames_out += 1;
        }
    }

    fn schedule(&mut self, i: usize, now: Duration) {
        let s = &mut self.slots[i];
        let client_t = s.client.poll_timeout();
        let iface_t =
            if s.client.outcome.is_none() || !s.closing.is_empty() || s.tftp_closing.is_some() {
                s.iface
                    .poll_at(ts(now), &s.sockets)
                    .map(|t| Duration::from_micros(u64::try_from(t.total_micros()).unwrap_or(0)))
            } else {
                None
            };
        let t = match (client_t, iface_t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(t) = t {
            if s.wake.is_none_or(|w| t < w) {
                s.wake = Some(t);
                self.heap.push(Reverse((t, i)));
            }
        }
    }

    /// Hand a received frame to the machine it is for.
    fn route(&mut self, now: Duration, frame: Frame) {
        if frame.bytes().len() > MTU && is_udp(frame.bytes()) {
            self.stats.frames_oversized += 1;
            self.spent.push(frame.into_buf());
            return;
        }
        let Some(target) = self.classify(frame.bytes()) else {
            self.stats.frames_unrouted += 1;
            self.spent.push(frame.into_buf());
            return;
        };
        match target {
            Target::Dhcp(i, off, len, src_mac) => {
                if let Some(payload) = frame.bytes().get(off..off + len) {
                    self.slots[i].client.handle_dhcp(now, payload, src_mac);
                }
                self.spent.push(frame.into_buf());
                self.mark(i);
            }
            Target::Stack(i) => {
                self.slots[i].rx.push_back(frame);
                self.mark(i);
            }
        }
    }

    fn classify(&self, frame: &[u8]) -> Option<Target> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let dst = eth.dst_addr();
        let by_dst = || self.by_mac.get(&dst.0).copied();
        match eth.ethertype() {
            EthernetProtocol::Ipv4 => {
                let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
                if ip.next_header() == IpProtocol::Udp {
                    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
                    if matches!(udp.dst_port(), dhcp::CLIENT_PORT | dhcp::PXE_PORT) {
                        let payload = udp.payload();
                        let i = if dst.is_broadcast() {
                            let chaddr: [u8; 6] = payload.get(28..34)?.try_into().ok()?;
                            self.by_mac.get(&chaddr).copied()?
                        } else {
                            by_dst()?
                        };
                        let off =
                            EthernetFrame::<&[u8]>::header_len() + usize::from(ip.header_len()) + 8;
                        return Some(Target::Dhcp(i, off, payload.len(), eth.src_addr().0));
                    }
                }
                if dst.is_unicast() {
                    by_dst().map(Target::Stack)
                } else {
                    None
                }
            }
            EthernetProtocol::Arp => {
                if dst.is_broadcast() {
                    let arp = ArpPacket::new_checked(eth.payload()).ok()?;
                    let tpa: [u8; 4] = arp.target_protocol_addr().try_into().ok()?;
                    self.by_ip
                        .get(&Ipv4Addr::from(tpa))
                        .copied()
                        .map(Target::Stack)
                } else {
                    by_dst().map(Target::Stack)
                }
            }
            _ => None,
        }
    }

    fn service(&mut self, i: usize, now: Duration) {
        let t = ts(now);
        {
            let s = &mut self.slots[i];
            if s.client.poll_timeout().is_some_and(|d| d <= now) {
                s.client.handle_timeout(now);
            }
        }
        for _ in 0..16 {
            let mut progress = false;
            let s = &mut self.slots[i];
            s.iface.poll(
                t,
                &mut Port {
                    rx: &mut s.rx,
                    tx: &mut self.tx,
                    spent: &mut self.spent,
                },
                &mut s.sockets,
            );
            progress |= pump_sockets(s, now);
            s.closing.retain(|&h| {
                let st = s.sockets.get::<tcp::Socket>(h).state();
                let gone = matches!(st, tcp::State::Closed | tcp::State::TimeWait);
                if gone {
                    s.sockets.remove(h);
                }
                !gone
            });
            if let Some((h, until)) = s.tftp_closing {
                if s.sockets.get::<udp::Socket>(h).send_queue() == 0 || now >= until {
                    s.sockets.remove(h);
                    s.tftp_closing = None;
                }
            }
            while let Some(out) = self.slots[i].client.poll_output() {
                progress = true;
                self.execute(i, now, out);
            }
            if !progress {
                break;
            }
        }
        if !self.counted[i] && self.slots[i].client.outcome.is_some() {
            self.counted[i] = true;
            self.finished += 1;
        }
        self.schedule(i, now);
    }

    fn execute(&mut self, i: usize, now: Duration, out: Output) {
        let t = ts(now);
        match out {
            Output::Raw(d) => {
                let mac = self.slots[i].client.mac;
                if let Some(f) = raw_frame(mac, &d) {
                    self.tx.push(f);
                }
            }
            Output::SetIp { ip, prefix, router } => {
                let s = &mut self.slots[i];
                s.iface.update_ip_addrs(|a| {
                    a.clear();
                    let _ = a.push(IpCidr::new(IpAddress::Ipv4(ip), prefix));
                });
                if let Some(r) = router {
                    let _ = s.iface.routes_mut().add_default_ipv4_route(r);
                }
                self.by_ip.insert(ip, i);
            }
            Output::TftpOpen => {
                let s = &mut self.slots[i];
                if let Some(h) = s.tftp.take() {
                    s.sockets.remove(h);
                }
                let buf = || {
                    udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * 1600])
                };
                let mut sock = udp::Socket::new(buf(), buf());
                let port = next_port(s);
                if sock.bind(port).is_ok() {
                    s.tftp = Some(s.sockets.add(sock));
                }
            }
            Output::TftpSend { to, payload } => {
                let s = &mut self.slots[i];
                if let Some(h) = s.tftp {
                    let ep = IpEndpoint::new(IpAddress::Ipv4(*to.ip()), to.port());
                    let _ = s.sockets.get_mut::<udp::Socket>(h).send_slice(&payload, ep);
                }
            }
            Output::TftpClose => {
                // The transfer's last ACK may still be queued: the socket goes once it has left
                // (removed now, it would never be sent, and the server would resend its last
                // window to a closed port until its retries ran out).
                let s = &mut self.slots[i];
                if let Some(h) = s.tftp.take() {
                    if let Some((old, _)) = s.tftp_closing.replace((h, now + TFTP_LINGER)) {
                        s.sockets.remove(old);
                    }
                }
            }
            Output::HttpOpen { id, to, request } => {
                let http_rx = self.http_rx;
                let s = &mut self.slots[i];
                if let Some(old) = s.http.take() {
                    s.sockets.get_mut::<tcp::Socket>(old.handle).abort();
                    s.closing.push(old.handle);
                }
                let mut sock = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; http_rx]),
                    tcp::SocketBuffer::new(vec![0; HTTP_TX]),
                );
                sock.set_timeout(Some(smoltcp::time::Duration::from_secs(30)));
                // iPXE sends the timestamp option in its SYN, as do most stacks.
                sock.set_tsval_generator(Some(tsval));
                // ACK every batch at once: delayed ACKs make the server send in bursts that
                // overflow the shared TAP queue.
                sock.set_ack_delay(None);
                let port = next_port(s);
                let remote = IpEndpoint::new(IpAddress::Ipv4(*to.ip()), to.port());
                let ok = sock.connect(s.iface.context(), remote, port).is_ok();
                let handle = s.sockets.add(sock);
                s.http = Some(HttpConn {
                    id,
                    handle,
                    request,
                    sent: 0,
                    established: false,
                });
                if !ok {
                    s.client.handle_http(now, id, HttpEvent::Failed);
                }
                let _ = t;
            }
            Output::HttpClose { id } => {
                let s = &mut self.slots[i];
                if s.http.as_ref().is_some_and(|c| c.id == id) {
                    if let Some(c) = s.http.take() {
                        s.sockets.get_mut::<tcp::Socket>(c.handle).close();
                        s.closing.push(c.handle);
                    }
                }
            }
        }
    }
}

enum Target {
    /// Machine, payload offset and length, source MAC.
    Dhcp(usize, usize, usize, [u8; 6]),
    Stack(usize),
}

fn is_udp(frame: &[u8]) -> bool {
    EthernetFrame::new_checked(frame).is_ok_and(|e| {
        e.ethertype() == EthernetProtocol::Ipv4
            && Ipv4Packet::new_checked(e.payload())
                .is_ok_and(|ip| ip.next_header() == IpProtocol::Udp)
    })
}

/// The random seed of machine `i`'s smoltcp interface (its TCP initial sequence numbers).
fn iface_seed(salt: u64, i: usize) -> u64 {
    (salt ^ 0x5eed).wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// TCP timestamp value (RFC 7323): wall-clock milliseconds, so that it keeps rising from one
/// run of the simulator to the next. A Linux server then accepts a SYN that lands in the
/// TIME_WAIT entry of an earlier run's connection as a new connection (the timestamp is newer
/// than the last one it saw there), whatever its sequence number.
fn tsval() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u32)
}

fn next_port(s: &mut Slot) -> u16 {
    s.next_port = if s.next_port >= 65000 {
        49152
    } else {
        s.next_port + 1
    };
    s.next_port
}

/// Move bytes between a machine's sockets and its client; true if anything happened.
fn pump_sockets(s: &mut Slot, now: Duration) -> bool {
    let mut progress = false;
    if let Some(h) = s.tftp {
        let sock = s.sockets.get_mut::<udp::Socket>(h);
        while let Ok((data, meta)) = sock.recv() {
            let IpAddress::Ipv4(ip) = meta.endpoint.addr;
            let from = SocketAddrV4::new(ip, meta.endpoint.port);
            s.client.handle_tftp(now, from, data);
            progress = true;
        }
    }
    if let Some(c) = s.http.as_mut() {
        let sock = s.sockets.get_mut::<tcp::Socket>(c.handle);
        if !c.established && sock.may_send() {
            c.established = true;
        }
        if c.established && c.sent < c.request.len() && sock.can_send() {
            if let Ok(n) = sock.send_slice(&c.request[c.sent..]) {
                c.sent += n;
                progress |= n > 0;
            }
        }
        let mut closed = false;
        while sock.can_recv() {
            // The client reads the socket's buffer where it is (no copy out first).
            let client = &mut s.client;
            let read = sock.recv(|data| {
                if !data.is_empty() {
                    client.handle_http(now, c.id, HttpEvent::Data(data));
                }
                (data.len(), data.len())
            });
            match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    progress = true;
                    // The client may have finished (and asked to close) mid-stream.
                    if s.client.closing_http(c.id) {
                        closed = true;
                        break;
                    }
                }
            }
        }
        if !closed {
            let st = sock.state();
            if c.established && !sock.may_recv() && !sock.can_recv() {
                s.client.handle_http(now, c.id, HttpEvent::Closed);
                progress = true;
            } else if !c.established && st == tcp::State::Closed {
                s.client.handle_http(now, c.id, HttpEvent::Failed);
                progress = true;
            } else if c.established && st == tcp::State::Closed {
                s.client.handle_http(now, c.id, HttpEvent::Closed);
                progress = true;
            }
        }
    }
    progress
}

/// Ethernet + IPv4 + UDP around a DHCP datagram (broadcast when `dst_mac` is None).
pub fn raw_frame(src_mac: [u8; 6], d: &Datagram) -> Option<Vec<u8>> {
    let udp = UdpRepr {
        src_port: d.src.port(),
        dst_port: d.dst.port(),
    };
    let ip = Ipv4Repr {
        src_addr: *d.src.ip(),
        dst_addr: *d.dst.ip(),
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + d.payload.len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(d.dst_mac.unwrap_or([0xff; 6])),
        ethertype: EthernetProtocol::Ipv4,
    };
    let len = eth.buffer_len() + ip.buffer_len() + ip.payload_len;
    let mut buf = vec![0u8; len];
    let caps = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_checked(&mut buf[..]).ok()?;
    eth.emit(&mut frame);
    let mut ipp = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut ipp, &caps);
    let mut udpp = UdpPacket::new_unchecked(ipp.payload_mut());
    udp.emit(
        &mut udpp,
        &IpAddress::Ipv4(*d.src.ip()),
        &IpAddress::Ipv4(*d.dst.ip()),
        d.payload.len(),
        |p| p.copy_from_slice(&d.payload),
        &caps,
    );
    Some(buf)
}

#[cfg(test)]
#[path = "tests/shell.rs"]
mod tests;
