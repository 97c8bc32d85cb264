#![allow(clippy::unwrap_used)]
use super::*;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 2);

fn t(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn drain(c: &mut Client) -> Vec<(SocketAddrV4, Vec<u8>)> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

fn fields(p: &[u8]) -> Vec<String> {
    p[2..]
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn oack(kv: &[(&str, &str)]) -> Vec<u8> {
    let mut p = vec![0, 6];
    for (k, v) in kv {
        p.extend_from_slice(k.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    }
    p
}

fn data(block: u16, len: usize) -> Vec<u8> {
    let mut p = vec![0, 3];
    p.extend_from_slice(&block.to_be_bytes());
    p.extend(std::iter::repeat_n(0xaa, len));
    p
}

fn ack_of(p: &[u8]) -> Option<u16> {
    (p[..2] == [0, 4]).then(|| u16::from_be_bytes([p[2], p[3]]))
}

#[test]
fn edk2_probe_then_windowed_transfer() {
    let mut c = Client::new(SERVER, "ipxe.efi", Options::EDK2, t(0));
    let d = drain(&mut c);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].0, SocketAddrV4::new(SERVER, 69));
    let f = fields(&d[0].1);
    assert_eq!(&f[..2], &["ipxe.efi", "octet"]);
    assert!(f.contains(&"tsize".to_string()) && !f.contains(&"windowsize".to_string()));

    let tid1 = SocketAddrV4::new(SERVER, 40001);
    c.handle_datagram(t(1), tid1, &oack(&[("tsize", "5000"), ("blksize", "1468")]));
    let d = drain(&mut c);
    assert_eq!(d.len(), 2, "ERROR 8 to the probe's TID, then the real RRQ");
    assert_eq!(d[0].0, tid1);
    assert_eq!(&d[0].1[..4], &[0, 5, 0, 8]);
    assert_eq!(d[1].0, SocketAddrV4::new(SERVER, 69));
    let f = fields(&d[1].1);
    let w = f.iter().position(|s| s == "windowsize").unwrap();
    assert_eq!(f[w + 1], "4");
    assert_eq!(c.tsize(), Some(5000));

    let tid2 = SocketAddrV4::new(SERVER, 40002);
    c.handle_datagram(
        t(2),
        tid2,
        &oack(&[("blksize", "1468"), ("windowsize", "4"), ("tsize", "5000")]),
    );
    let d = drain(&mut c);
    assert_eq!(d, vec![(tid2, vec![0, 4, 0, 0])]);
    // 5000 bytes = 3 full blocks + 596: one ACK for the window-closing last block.
    for b in 1..=3 {
        c.handle_datagram(t(3), tid2, &data(b, 1468));
    }
    assert!(drain(&mut c).is_empty(), "no ACK inside a window");
    c.handle_datagram(t(3), tid2, &data(4, 596));
    let d = drain(&mut c);
    assert_eq!(d.len(), 1);
    assert_eq!(ack_of(&d[0].1), Some(4));
    assert_eq!(c.outcome(), Some(&Outcome::Done { bytes: 5000 }));
}

#[test]
fn a_gap_in_the_window_acks_the_last_good_block_once() {
    let o = Options {
        tsize_probe: false,
        ..Options::EDK2
    };
    let mut c = Client::new(SERVER, "f", o, t(0));
    drain(&mut c);
    let tid = SocketAddrV4::new(SERVER, 40003);
    c.handle_datagram(
        t(0),
        tid,
        &oack(&[("blksize", "1468"), ("windowsize", "4")]),
    );
    drain(&mut c);
    c.handle_datagram(t(1), tid, &data(1, 1468));
    c.handle_datagram(t(1), tid, &data(3, 1468)); // 2 lost
    c.handle_datagram(t(1), tid, &data(4, 1468));
    let acks: Vec<_> = drain(&mut c)
        .iter()
        .filter_map(|(_, p)| ack_of(p))
        .collect();
    assert_eq!(acks, vec![1]);
    // The server goes on from block 2.
    for b in 2..=5 {
        c.handle_datagram(t(2), tid, &data(b, 1468));
    }
    let acks: Vec<_> = drain(&mut c)
        .iter()
        .filter_map(|(_, p)| ack_of(p))
        .collect();
    assert_eq!(acks, vec![5]);
    // Packets from a stranger get ERROR 5 and change nothing.
    let stranger = SocketAddrV4::new(SERVER, 1);
    c.handle_datagram(t(2), stranger, &data(6, 10));
    let d = drain(&mut c);
    assert_eq!(d[0].0, stranger);
    assert_eq!(&d[0].1[..4], &[0, 5, 0, 5]);
    assert!(c.outcome().is_none());
}

#[test]
fn lockstep_acks_every_block_and_rolls_over_the_block_number() {
    let o = Options {
        blksize: Some(8),
        windowsize: None,
        tsize: false,
        tsize_probe: false,
    };
    let mut c = Client::new(SERVER, "big", o, t(0));
    drain(&mut c);
    let tid = SocketAddrV4::new(SERVER, 40004);
    c.handle_datagram(t(0), tid, &oack(&[("blksize", "8")]));
    assert_eq!(ack_of(&drain(&mut c)[0].1), Some(0));
    let mut block: u16 = 0;
    for _ in 0..70_000u32 {
        block = block.wrapping_add(1);
        c.handle_datagram(t(1), tid, &data(block, 8));
        let d = drain(&mut c);
        assert_eq!(d.len(), 1);
        assert_eq!(ack_of(&d[0].1), Some(block));
    }
    c.handle_datagram(t(1), tid, &data(block.wrapping_add(1), 0));
    assert_eq!(c.outcome(), Some(&Outcome::Done { bytes: 70_000 * 8 }));
}

#[test]
fn no_options_acknowledged_means_512_byte_lockstep() {
    let mut c = Client::new(SERVER, "f", Options::LOCKSTEP, t(0));
    drain(&mut c);
    let tid = SocketAddrV4::new(SERVER, 40005);
    c.handle_datagram(t(0), tid, &data(1, 512));
    assert_eq!(ack_of(&drain(&mut c)[0].1), Some(1));
    c.handle_datagram(t(0), tid, &data(2, 100));
    assert_eq!(c.outcome(), Some(&Outcome::Done { bytes: 612 }));
}

#[test]
fn timeouts_resend_the_last_packet_then_give_up() {
    let mut c = Client::new(SERVER, "f", Options::LOCKSTEP, t(0));
    drain(&mut c);
    let mut resent = vec![];
    for s in 0..=70u64 {
        let now = Duration::from_secs(s);
        if c.poll_timeout().is_some_and(|d| d <= now) {
            c.handle_timeout(now);
        }
        if !drain(&mut c).is_empty() {
            resent.push(s);
        }
    }
    assert_eq!(resent, vec![4, 12, 28]);
    assert_eq!(c.retries(), 3);
    assert!(matches!(c.outcome(), Some(Outcome::Failed(_))));
}

#[test]
fn a_server_error_fails_the_transfer() {
    let mut c = Client::new(SERVER, "nope", Options::LOCKSTEP, t(0));
    drain(&mut c);
    let mut e = vec![0, 5, 0, 1];
    e.extend_from_slice(b"File not found\0");
    c.handle_datagram(t(0), SocketAddrV4::new(SERVER, 40006), &e);
    match c.outcome() {
        Some(Outcome::Failed(m)) => assert!(m.contains("File not found"), "{m}"),
        o => panic!("{o:?}"),
    }
}
