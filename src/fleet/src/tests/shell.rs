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
}

impl Wire for FakeWire {
    fn recv(&mut self) -> Option<Frame> {
        self.inbound.pop_front().map(Frame::from)
    }
    fn send(&mut self, frame: &[u8]) {
        self.sent.push(frame.to_vec());
    }
    fn wait(&mut self, _: Duration) {}
    fn reuse(&mut self, spent: &mut Vec<Vec<u8>>) {
        self.reused += spent.len();
        spent.clear();
    }
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
    let t = Cell::new(Duration::ZERO);
    let clock = || {
        t.set(t.get() + Duration::from_millis(1));
        t.get()
    };
    fleet.run(&mut wire, &clock, Duration::from_millis(20));
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
    let t = Cell::new(Duration::ZERO);
    let clock = || {
        t.set(t.get() + Duration::from_millis(1));
        t.get()
    };
    fleet.run(&mut wire, &clock, Duration::from_millis(20));
    assert_eq!(fleet.stats.frames_in, 4);
    assert_eq!(fleet.stats.frames_unrouted, 1);
    assert_eq!(wire.reused, 4);
}
