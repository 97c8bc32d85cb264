//! ICMP errors for the single-port TFTP socket.
//!
//! A connected transfer socket learns that its client's port is closed from `ECONNREFUSED`.
//! The single-port socket serves every client and is not connected, so the kernel tells it
//! nothing unless `IP_RECVERR` (`IPV6_RECVERR`) is on. With it on, each ICMP error is queued on
//! the socket's error queue, naming the destination of the datagram that caused it, and the
//! next `recv` or `send` on the socket, for whichever peer, fails once with that error. So:
//! [`enable`] once; after a failed `recv` or a refused `send`, [`refused_peers`] drains the
//! queue (queued errors count against the receive buffer: left there they would crowd out
//! requests) and names the peers whose ports refused.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};

/// Errors drained per call at most (the queue is bounded by the receive buffer anyway).
const DRAIN_MAX: usize = 1024;

/// Ask the kernel to queue ICMP errors on `sock` (IPv4, or IPv6 and v4-mapped IPv4).
pub fn enable(sock: &impl AsFd, ipv6: bool) -> nix::Result<()> {
    if ipv6 {
        setsockopt(sock, sockopt::Ipv6RecvErr, &true)?;
        // v4-mapped peers of a dual-stack socket get ICMPv4 errors: those need IP_RECVERR.
        let _ = setsockopt(sock, sockopt::Ipv4RecvErr, &true);
        Ok(())
    } else {
        setsockopt(sock, sockopt::Ipv4RecvErr, &true)
    }
}

/// Drain the error queue of `sock`; return the peers that answered with a port unreachable
/// (`ECONNREFUSED`), once each, in order. Other errors (host unreachable, too big) are dropped:
/// like a lost datagram, the transfer's own retries deal with them.
pub fn refused_peers(sock: &impl AsRawFd) -> Vec<SocketAddr> {
    let mut peers: Vec<SocketAddr> = Vec::new();
    let mut payload = [0u8; 64];
    let mut cmsg = nix::cmsg_space!(nix::libc::sock_extended_err, nix::libc::sockaddr_in6);
    for _ in 0..DRAIN_MAX {
        let mut iov = [std::io::IoSliceMut::new(&mut payload)];
        let msg = match recvmsg::<SockaddrStorage>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(m) => m,
            Err(Errno::EINTR) => continue,
            Err(_) => break, // EAGAIN: the queue is empty
        };
        let refused = msg.cmsgs().is_ok_and(|mut c| {
            c.any(|c| match c {
                ControlMessageOwned::Ipv4RecvErr(e, _) | ControlMessageOwned::Ipv6RecvErr(e, _) => {
                    e.ee_errno == nix::libc::ECONNREFUSED as u32
                }
                _ => false,
            })
        });
        if let Some(peer) = msg.address.as_ref().and_then(socket_addr) {
            if refused && !peers.contains(&peer) {
                peers.push(peer);
            }
        }
    }
    peers
}

fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
#[path = "tftp_icmp_tests.rs"]
mod tests;
