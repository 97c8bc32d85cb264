#![allow(clippy::unwrap_used)]
use super::*;

fn batch_of(sizes: &[usize]) -> (Batch, Vec<usize>) {
    let mut b = Batch::default();
    let mut refused = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        if b.fits(n) {
            b.push(&vec![i as u8; n]);
        } else {
            refused.push(i);
        }
    }
    (b, refused)
}

#[test]
fn equal_datagrams_go_together_and_a_shorter_one_only_last() {
    let (b, refused) = batch_of(&[1472, 1472, 1472, 900, 1472, 4]);
    assert_eq!(b.count(), 4);
    assert_eq!(refused, vec![4, 5], "nothing after the short block");
    let got: Vec<(usize, u8)> = b.datagrams().map(|d| (d.len(), d[0])).collect();
    assert_eq!(got, vec![(1472, 0), (1472, 1), (1472, 2), (900, 3)]);
    // A longer datagram cannot follow (an OACK after DATA, say).
    let (b, refused) = batch_of(&[516, 600]);
    assert_eq!((b.count(), refused), (1, vec![1]));
    // The empty last block of a file that ends on a block boundary.
    let (b, _) = batch_of(&[1028, 1028, 4]);
    assert_eq!(
        b.datagrams().map(<[u8]>::len).collect::<Vec<_>>(),
        vec![1028, 1028, 4]
    );
}

#[test]
fn a_send_holds_at_most_the_kernels_segments_and_one_ip_packet() {
    let (b, refused) = batch_of(&[516; 100]);
    assert_eq!(b.count(), MAX_SEGMENTS);
    assert_eq!(refused.len(), 100 - MAX_SEGMENTS);
    let (b, _) = batch_of(&[8196; 20]);
    assert_eq!(b.count(), MAX_BYTES / 8196);
}

/// A windowed client (RFC 7440) that ACKs every `window`-th block and the last one; with
/// `start`, it waits there between the OACK and its ACK (so that transfers overlap).
pub(crate) fn fetch_windowed(
    server: std::net::SocketAddr,
    name: &str,
    blksize: usize,
    window: u16,
    start: Option<&std::sync::Barrier>,
) -> Vec<u8> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let rrq = format!("\0\x01{name}\0octet\0blksize\0{blksize}\0windowsize\0{window}\0");
    s.send_to(rrq.as_bytes(), server).unwrap();
    let mut buf = vec![0u8; blksize + 4];
    let (n, from) = s.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..2], b"\0\x06", "OACK expected: {:?}", &buf[..n]);
    if let Some(b) = start {
        b.wait();
    }
    s.send_to(&[0, 4, 0, 0], from).unwrap();
    let (mut got, mut next) = (Vec::new(), 1u16);
    loop {
        let n = s.recv(&mut buf).unwrap();
        assert_eq!(&buf[..2], b"\0\x03", "DATA expected");
        let block = u16::from_be_bytes([buf[2], buf[3]]);
        if block != next {
            // Out of order: ask again from the last block in order.
            let last = next.wrapping_sub(1).to_be_bytes();
            s.send_to(&[0, 4, last[0], last[1]], from).unwrap();
            continue;
        }
        got.extend_from_slice(&buf[4..n]);
        next = next.wrapping_add(1);
        let end = n - 4 < blksize;
        #[allow(clippy::manual_is_multiple_of)] // is_multiple_of: Rust 1.87, MSRV 1.85
        let window_end = block % window == 0;
        if end || window_end {
            let b = block.to_be_bytes();
            s.send_to(&[0, 4, b[0], b[1]], from).unwrap();
        }
        if end {
            return got;
        }
    }
}

/// A refused GSO send (no checksum offload on the device, a block above the MTU) sends the
/// batch one by one and turns GSO off for the transfer; a peer's error ends the flush instead.
#[test]
fn a_refused_gso_send_falls_back_to_single_datagrams() {
    let mut s = Sender::new(true);
    for _ in 0..3 {
        s.batch.push(&[0u8; 516]);
    }
    let eio = |_: &Batch| Err(io::Error::from_raw_os_error(nix::libc::EIO));
    assert!(!s.try_gso(eio).unwrap(), "to go one by one");
    assert!(!s.gso, "and GSO off from now on");
    assert_eq!(s.coalesced, 0);

    let mut s = Sender::new(true);
    for _ in 0..3 {
        s.batch.push(&[0u8; 516]);
    }
    let gone = |_: &Batch| Err(io::Error::from_raw_os_error(nix::libc::ECONNREFUSED));
    assert!(s.try_gso(gone).is_err());
    assert!(s.gso, "a peer's error says nothing about GSO");
    assert!(s.try_gso(|_| Ok(())).unwrap());
    assert_eq!(s.coalesced, 3);

    // A single datagram never goes as GSO, and does not turn it off.
    let mut s = Sender::new(true);
    s.batch.push(&[0u8; 516]);
    assert!(!s.try_gso(|_| panic!("no GSO for one datagram")).unwrap());
    assert!(s.gso);
}

/// A failed send ends the flush but keeps the datagram taken after the batch for the next one.
#[test]
fn after_a_failed_send_the_next_datagram_waits_in_the_batch() {
    let mut s = Sender::new(true);
    s.batch.push(&[1u8; 516]);
    s.out = vec![2u8; 516];
    let gone = Err(io::Error::from_raw_os_error(nix::libc::ECONNREFUSED));
    assert!(s.end_batch(gone, true), "the flush ends");
    let kept: Vec<&[u8]> = s.batch.datagrams().collect();
    assert_eq!(kept, vec![&[2u8; 516][..]]);
    assert!(s.take_port_unreachable(), "the refusal is reported");
    assert!(!s.take_port_unreachable(), "once");
    // Sent fine: the batch is empty, the flush goes on.
    assert!(!s.end_batch(Ok(()), true));
    assert!(s.batch.is_empty());
    assert!(!s.take_port_unreachable());
    // Other failures (no route, a full buffer) are loss, not a closed port.
    let lost = Err(io::Error::from_raw_os_error(nix::libc::EHOSTUNREACH));
    assert!(s.end_batch(lost, false));
    assert!(!s.take_port_unreachable());
}

/// A waiting transfer holds no send buffers, but a datagram kept after a failed send stays, and
/// the next send takes the room the batch had grown to at once.
#[test]
fn release_frees_the_buffers_but_keeps_a_waiting_datagram() {
    let mut s = Sender::new(true);
    for _ in 0..4 {
        s.batch.push(&[3u8; 1468]);
    }
    let grown = s.batch.buf.capacity();
    assert!(grown >= 4 * 1468);
    assert!(!s.end_batch(Ok(()), false));
    s.release();
    assert_eq!((s.batch.buf.capacity(), s.out.capacity()), (0, 0));
    s.batch.push(&[4u8; 1468]);
    assert_eq!(
        s.batch.buf.capacity(),
        grown,
        "the earlier room, in one allocation"
    );

    s.out = vec![5u8; 516];
    let gone = Err(io::Error::from_raw_os_error(nix::libc::ECONNREFUSED));
    assert!(s.end_batch(gone, true));
    s.release();
    let kept: Vec<&[u8]> = s.batch.datagrams().collect();
    assert_eq!(
        kept,
        vec![&[5u8; 516][..]],
        "the datagram for the next flush stays"
    );
}

/// The kernel here has UDP GSO (the tests of the service need it).
#[test]
fn this_kernel_has_udp_gso() {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(kernel_has_gso(&sock));
}
