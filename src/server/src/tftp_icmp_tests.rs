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

/// Send until a datagram goes: with IP_RECVERR, a pending ICMP error (any peer's) fails one
/// send, and that datagram is not sent. The number of failed attempts.
fn send_through(sock: &UdpSocket, buf: &[u8], to: SocketAddr) -> usize {
    for failed in 0..100 {
        if sock.send_to(buf, to).is_ok() {
            return failed;
        }
    }
    panic!("no send to {to} went through");
}

fn names_the_closed_port(host: &str, ipv6: bool) {
    let sock = UdpSocket::bind(format!("{host}:0")).unwrap();
    enable(&sock, ipv6).unwrap();
    let open = UdpSocket::bind(format!("{host}:0")).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let to_open = open.local_addr().unwrap();
    let gone = closed_port(host);
    send_through(&sock, b"first", to_open);
    // Two datagrams reach the closed port and each is refused: two errors queued for one
    // peer, which is named once. The second send first takes the error the first caused.
    send_through(&sock, b"to a closed port", gone);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(send_through(&sock, b"again", gone), 1);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(wait_refused(&sock), vec![gone]);
    // The queue is empty now, and the socket still carries datagrams.
    assert!(refused_peers(&sock).is_empty());
    send_through(&sock, b"still works", to_open);
    let mut buf = [0u8; 32];
    for want in [&b"first"[..], b"still works"] {
        let (n, _) = open.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], want);
    }
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
    if sock.send_to(b"to a closed port", mapped).is_err() {
        eprintln!("the socket is IPv6-only (net.ipv6.bindv6only): skipped");
        return;
    }
    assert_eq!(wait_refused(&sock), vec![mapped]);
}
