#![allow(clippy::unwrap_used)]
use super::*;
use crate::client::{Kind, Settings};
use std::cell::Cell;

/// Frames in from a script, frames out recorded.
#[derive(Default)]
struct FakeWire {
    inbound: VecDeque<Vec<u8>>,
    sent: Vec<Vec<u8>>,
    /// Buffers of processed frames handed back.
    reused: usize,
    /// Pretend to pool this many receive buffers (`saturated` once they are all out).
    pool: Option<usize>,
    /// Frames handed out and not back yet; the most at once.
    out: usize,
    max_out: usize,
}

impl Wire for FakeWire {
    fn recv(&mut self) -> Option<Frame> {
        let frame = self.inbound.pop_front().map(Frame::from)?;
        self.out += 1;
        self.max_out = self.max_out.max(self.out);
        Some(frame)
    }
    fn send(&mut self, frame: &[u8]) {
        self.sent.push(frame.to_vec());
    }
    fn wait(&mut self, _: Duration) {}
    fn reuse(&mut self, spent: &mut Vec<Vec<u8>>) {
        self.reused += spent.len();
        self.out = self.out.saturating_sub(spent.len());
        spent.clear();
    }
    fn saturated(&self) -> bool {
        self.pool.is_some_and(|p| self.out >= p)
    }
}

/// Run `fleet` on `wire` for 20 ms of a fake clock that moves 1 ms each time it is read.
fn run_20ms(fleet: &mut Fleet, wire: &mut FakeWire) {
    let t = Cell::new(Duration::ZERO);
    let clock = || {
        t.set(t.get() + Duration::from_millis(1));
        t.get()
    };
    fleet.run(wire, &clock, Duration::from_millis(20));
}

fn udp_of(frame: &[u8]) -> (EthernetAddress, EthernetAddress, u16, u16, Vec<u8>) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(udp.verify_checksum(
        &IpAddress::Ipv4(ip.src_addr()),
        &IpAddress::Ipv4(ip.dst_addr())
    ));
    (
        eth.src_addr(),
        eth.dst_addr(),
        udp.src_port(),
        udp.dst_port(),
        udp.payload().to_vec(),
    )
}

fn machines(n: usize) -> Vec<Client> {
    (0..n)
        .map(|i| {
            let mac = [0x52, 0x54, 0, 0, 0, i as u8 + 1];
            Client::new(
                Kind::Ipxe,
                mac,
                [1; 16],
                Duration::ZERO,
                Settings::default(),
                i as u64,
            )
        })
        .collect()
}

/// The one machine of [`addressed_machine`], the server it talks to and the server's MAC.
const ME: Ipv4Addr = Ipv4Addr::new(10, 97, 1, 5);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 2);
const SERVER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

/// A fleet of one machine with its address ([`ME`], /21) set.
fn addressed_machine() -> Fleet {
    let mut fleet = Fleet::new(machines(1), 7);
    fleet.execute(
        0,
        Duration::from_millis(5),
        Output::SetIp {
            ip: ME,
            prefix: 21,
            router: None,
        },
    );
    fleet
}

/// Answer the ARP request machine `me` sent first (for `server`'s MAC).
fn answer_arp(
    fleet: &mut Fleet,
    now: Duration,
    me: Ipv4Addr,
    server: Ipv4Addr,
    server_mac: EthernetAddress,
) {
    use smoltcp::wire::{ArpOperation, ArpRepr};
    let arp = fleet.tx.drain(..).next().expect("an ARP request");
    let eth = EthernetFrame::new_checked(&arp[..]).unwrap();
    assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
    let reply = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: server_mac,
        source_protocol_addr: server,
        target_hardware_addr: eth.src_addr(),
        target_protocol_addr: me,
    };
    let header = EthernetRepr {
        src_addr: server_mac,
        dst_addr: eth.src_addr(),
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = vec![0u8; 14 + reply.buffer_len()];
    let mut out = EthernetFrame::new_unchecked(&mut frame[..]);
    header.emit(&mut out);
    reply.emit(&mut ArpPacket::new_unchecked(out.payload_mut()));
    fleet.route(now, Frame::from(frame));
}

#[test]
fn raw_frames_are_valid_udp_with_checksums() {
    let d = Datagram {
        src: SocketAddrV4::new(Ipv4Addr::new(10, 97, 1, 5), 4011),
        dst: SocketAddrV4::new(Ipv4Addr::new(10, 97, 0, 2), 4011),
        dst_mac: Some([2, 0, 0, 0, 0, 2]),
        payload: vec![7; 300],
    };
    let f = raw_frame([0x52, 0x54, 0, 0, 0, 1], &d).unwrap();
    let (src, dst, sp, dp, payload) = udp_of(&f);
    assert_eq!(src, EthernetAddress([0x52, 0x54, 0, 0, 0, 1]));
    assert_eq!(dst, EthernetAddress([2, 0, 0, 0, 0, 2]));
    assert_eq!((sp, dp), (4011, 4011));
    assert_eq!(payload, vec![7; 300]);
}

#[test]
fn every_machine_discovers_from_its_own_mac_and_replies_reach_the_right_one() {
    let mut fleet = Fleet::new(machines(3), 0);
    let mut wire = FakeWire::default();
    run_20ms(&mut fleet, &mut wire);
    let mut from: Vec<[u8; 6]> = wire
        .sent
        .iter()
        .map(|f| {
            let (src, dst, sp, dp, payload) = udp_of(f);
            assert!(dst.is_broadcast());
            assert_eq!((sp, dp), (68, 67));
            assert_eq!(payload[242], dhcp::DISCOVER, "option 53 first");
            src.0
        })
        .collect();
    from.sort();
    assert_eq!(
        from,
        vec![
            [0x52, 0x54, 0, 0, 0, 1],
            [0x52, 0x54, 0, 0, 0, 2],
            [0x52, 0x54, 0, 0, 0, 3]
        ]
    );

    // A broadcast DHCP reply goes to the machine named by chaddr, whatever the Ethernet dst.
    let mut reply = vec![0u8; 240];
    reply[0] = 2;
    reply[28..34].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 2]);
    let d = Datagram {
        src: SocketAddrV4::new(Ipv4Addr::new(10, 97, 0, 1), 67),
        dst: SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
        dst_mac: None,
        payload: reply,
    };
    let f = raw_frame([2, 0, 0, 0, 0, 1], &d).unwrap();
    assert!(matches!(
        fleet.classify(&f),
        Some(Target::Dhcp(1, _, 240, [2, 0, 0, 0, 0, 1]))
    ));
    // Unicast to a MAC of ours that is not DHCP goes to that machine's IP stack.
    let d = Datagram {
        dst: SocketAddrV4::new(Ipv4Addr::new(10, 97, 1, 9), 50000),
        dst_mac: Some([0x52, 0x54, 0, 0, 0, 3]),
        ..d
    };
    let f = raw_frame([2, 0, 0, 0, 0, 1], &d).unwrap();
    assert!(matches!(fleet.classify(&f), Some(Target::Stack(2))));
    // Not for any machine: dropped.
    let d = Datagram {
        dst_mac: Some([0x52, 0x54, 9, 9, 9, 9]),
        ..d
    };
    assert!(fleet
        .classify(&raw_frame([2, 0, 0, 0, 0, 1], &d).unwrap())
        .is_none());
}

/// Every frame read comes back to the wire once processed (a packet wire receives into those
/// buffers again): DHCP replies, frames for a machine's IP stack, and frames for nobody.
#[test]
fn the_buffer_of_every_frame_read_goes_back_to_the_wire() {
    let mut fleet = Fleet::new(machines(3), 0);
    let mut wire = FakeWire::default();
    let mut reply = vec![0u8; 240];
    reply[0] = 2;
    reply[28..34].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 2]);
    let dhcp = Datagram {
        src: SocketAddrV4::new(Ipv4Addr::new(10, 97, 0, 1), 67),
        dst: SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
        dst_mac: None,
        payload: reply,
    };
    let stack = Datagram {
        dst: SocketAddrV4::new(Ipv4Addr::new(10, 97, 1, 9), 50000),
        dst_mac: Some([0x52, 0x54, 0, 0, 0, 3]),
        ..dhcp.clone()
    };
    let nobody = Datagram {
        dst_mac: Some([0x52, 0x54, 9, 9, 9, 9]),
        ..stack.clone()
    };
    for d in [&dhcp, &stack, &nobody, &stack] {
        wire.inbound
            .push_back(raw_frame([2, 0, 0, 0, 0, 1], d).unwrap());
    }
    run_20ms(&mut fleet, &mut wire);
    assert_eq!(fleet.stats.frames_in, 4);
    assert_eq!(fleet.stats.frames_unrouted, 1);
    assert_eq!(wire.reused, 4);
}

/// A wire whose pooled buffers are all out is not read further until the frames held have been
/// processed and their buffers given back (no frame is then copied out of a full pool).
#[test]
fn reading_pauses_while_the_wires_buffers_are_all_out() {
    let mut fleet = Fleet::new(machines(3), 0);
    let mut wire = FakeWire {
        pool: Some(2),
        ..FakeWire::default()
    };
    let stack = Datagram {
        src: SocketAddrV4::new(Ipv4Addr::new(10, 97, 0, 2), 69),
        dst: SocketAddrV4::new(Ipv4Addr::new(10, 97, 1, 9), 50000),
        dst_mac: Some([0x52, 0x54, 0, 0, 0, 3]),
        payload: vec![0; 64],
    };
    for _ in 0..7 {
        wire.inbound
            .push_back(raw_frame([2, 0, 0, 0, 0, 1], &stack).unwrap());
    }
    run_20ms(&mut fleet, &mut wire);
    assert_eq!(fleet.stats.frames_in, 7);
    assert_eq!(wire.reused, 7);
    assert_eq!(wire.max_out, 2);
}

/// A machine's HTTP connection opens with a SYN that carries the TCP timestamp option (as
/// iPXE's does), with a value from the wall clock, so a later run's SYN is newer than any
/// earlier run's and a Linux server takes it as a new connection even inside an old 4-tuple.
#[test]
fn http_syn_carries_a_wall_clock_timestamp() {
    use smoltcp::wire::{TcpPacket, TcpRepr};
    let (mut fleet, now) = (addressed_machine(), Duration::from_millis(5));
    let (me, server, server_mac) = (ME, SERVER, SERVER_MAC);
    fleet.execute(
        0,
        now,
        Output::HttpOpen {
            id: 1,
            to: SocketAddrV4::new(server, 50042),
            request: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        },
    );
    fleet.service(0, now);
    answer_arp(&mut fleet, now, me, server, server_mac);
    let before = tsval();
    fleet.service(0, now + Duration::from_millis(1));
    let syn = fleet.tx.drain(..).next().expect("a SYN");
    let eth = EthernetFrame::new_checked(&syn[..]).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.dst_addr(), server);
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    let repr = TcpRepr::parse(
        &tcp,
        &IpAddress::Ipv4(ip.src_addr()),
        &IpAddress::Ipv4(ip.dst_addr()),
        &ChecksumCapabilities::ignored(),
    )
    .unwrap();
    assert!(tcp.syn() && !tcp.ack());
    let ts = repr.timestamp.expect("the timestamp option in the SYN");
    // Milliseconds since 1970 (mod 2^32): the value a clock read just before gives, or a
    // moment later.
    assert!(
        ts.tsval.wrapping_sub(before) < 60_000,
        "{} vs {before}",
        ts.tsval
    );
}

/// Each run seeds the machines' TCP sequence numbers differently (and each machine apart).
#[test]
fn sequence_number_seeds_differ_by_run_and_machine() {
    assert_ne!(iface_seed(1, 0), iface_seed(2, 0));
    assert_ne!(iface_seed(1, 0), iface_seed(1, 1));
}

/// A UDP datagram longer than the MTU (a server's GSO send that reached the wire whole) is
/// counted and dropped, not handed to a machine as one oversized TFTP block.
#[test]
fn an_oversized_udp_frame_is_counted_not_delivered() {
    let mut fleet = Fleet::new(machines(1), 0);
    let d = Datagram {
        src: SocketAddrV4::new(Ipv4Addr::new(10, 97, 0, 2), 40000),
        dst: SocketAddrV4::new(Ipv4Addr::new(10, 97, 1, 9), 50000),
        dst_mac: Some([0x52, 0x54, 0, 0, 0, 1]),
        payload: vec![0; 4 * 1472],
    };
    let big = raw_frame([2, 0, 0, 0, 0, 1], &d).unwrap();
    fleet.route(Duration::ZERO, Frame::from(big));
    let small = raw_frame(
        [2, 0, 0, 0, 0, 1],
        &Datagram {
            payload: vec![0; 1472],
            ..d
        },
    )
    .unwrap();
    fleet.route(Duration::ZERO, Frame::from(small));
    assert_eq!(fleet.stats.frames_oversized, 1);
    assert_eq!(fleet.slots[0].rx.len(), 1, "only the datagram that fits");
}

/// The ACK of a transfer's last block leaves although the transfer closes its socket in the
/// same step (a firmware sends it; without it the server resends its last window to a closed
/// port until its retries run out).
#[test]
fn the_last_tftp_ack_leaves_after_the_transfer_closes() {
    let (mut fleet, now) = (addressed_machine(), Duration::from_millis(5));
    let (me, server, server_mac) = (ME, SERVER, SERVER_MAC);
    fleet.execute(0, now, Output::TftpOpen);
    let ack = vec![0, 4, 0, 7];
    fleet.execute(
        0,
        now,
        Output::TftpSend {
            to: SocketAddrV4::new(server, 41000),
            payload: ack.clone(),
        },
    );
    fleet.execute(0, now, Output::TftpClose);
    fleet.service(0, now);
    answer_arp(&mut fleet, now, me, server, server_mac);
    fleet.service(0, now + Duration::from_millis(1));
    let sent: Vec<_> = fleet.tx.drain(..).collect();
    assert_eq!(sent.len(), 1, "the ACK, once");
    let (_, dst_mac, _, dst_port, payload) = udp_of(&sent[0]);
    assert_eq!((dst_mac, dst_port, payload), (server_mac, 41000, ack));
    // Then the socket is gone.
    assert!(fleet.slots[0].tftp_closing.is_none());
    assert_eq!(fleet.slots[0].sockets.iter().count(), 0);
}
