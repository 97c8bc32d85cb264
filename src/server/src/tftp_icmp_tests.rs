#![allow(clippy::unwrap_used)]
use super::*;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// An address on `host` where nothing listens (a socket bound and closed again).
fn closed_port(host: &str) -> SocketAddr {
    UdpSocket::bind(format!("{host}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Drain `sock` until some peer is named or a second passed (the ICMP error is asynchronous).
fn wait_refused(sock: &UdpSocket) -> Vec<SocketAddr> {
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        let peers = refused_peers(sock);
        if !peers.is_empty() || Instant::now() > until {
            return peers;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn names_the_closed_port(host: &str, ipv6: bool) {
    let sock = UdpSocket::bind(format!("{host}:0")).unwrap();
    enable(&sock, ipv6).unwrap();
    let open = UdpSocket::bind(format!("{host}:0")).unwrap();
    let gone = closed_port(host);
    sock.send_to(b"to an open port", open.local_addr().unwrap())
        .unwrap();
    // Two datagrams to the closed port, errors queued for both: the peer is named once.
    sock.send_to(b"to a closed port", gone).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let _ = sock.send_to(b"again", gone);
    assert_eq!(wait_refused(&sock), vec![gone]);
    // The queue is empty now, and the socket still carries datagrams.
    assert!(refused_peers(&sock).is_empty());
    sock.send_to(b"still works", open.local_addr().unwrap())
        .unwrap();
    let mut buf = [0u8; 32];
    open.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let (n, _) = open.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"to an open port");
}

#[test]
fn an_unconnected_ipv4_socket_learns_which_peer_refused() {
    names_the_closed_port("127.0.0.1", false);
}

#[test]
fn an_unconnected_ipv6_socket_learns_which_peer_refused() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    names_the_closed_port("[::1]", true);
}

#[test]
fn without_enable_nothing_is_queued() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(b"x", closed_port("127.0.0.1")).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(refused_peers(&sock).is_empty());
}

/// A dual-stack socket (`[::]`) serving an IPv4 client names it as the v4-mapped address its
/// datagrams come from.
#[test]
fn a_dual_stack_socket_names_a_refusing_ipv4_peer_v4_mapped() {
    let Ok(sock) = UdpSocket::bind("[::]:0") else {
        eprintln!("no IPv6 here: skipped");
        return;
    };
    enable(&sock, true).unwrap();
    let SocketAddr::V4(gone) = closed_port("127.0.0.1") else {
        unreachable!()
    };
    let mapped = SocketAddr::new(gone.ip().to_ipv6_mapped().into(), gone.port());
    sock.send_to(b"to a closed port", mapped).unwrap();
    assert_eq!(wait_refused(&sock), vec![mapped]);
}
