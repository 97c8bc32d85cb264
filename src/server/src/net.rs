//! Socket set-up (socket2; no unsafe): the UDP services' sockets (address reuse, broadcast,
//! binding to the provisioning interface), TCP listeners with a boot-storm-sized accept queue,
//! and looking up an interface's IPv4 address.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

/// Receive buffer asked for on the UDP services' sockets.
const UDP_RCVBUF: usize = 4 * 1024 * 1024;
/// Send buffer asked for on them (granted up to net.core.wmem_max): single-port TFTP sends
/// every transfer's windows from its one listening socket.
const UDP_SNDBUF: usize = 4 * 1024 * 1024;

/// A non-blocking tokio UDP socket bound to `addr`, optionally to one interface
/// (`SO_BINDTODEVICE`) and allowed to send broadcasts.
pub fn bind_udp(
    addr: SocketAddr,
    interface: Option<&str>,
    broadcast: bool,
) -> io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if broadcast {
        s.set_broadcast(true)?;
    }
    if let Some(ifname) = interface {
        s.bind_device(Some(ifname.as_bytes()))?;
    }
    // Bursts of boot traffic: a larger receive buffer loses fewer requests.
    let _ = s.set_recv_buffer_size(UDP_RCVBUF);
    let _ = s.set_send_buffer_size(UDP_SNDBUF);
    // Linux reports twice what it grants; it grants at most net.core.rmem_max.
    if let Ok(got) = s.recv_buffer_size() {
        if got < UDP_RCVBUF {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                tracing::warn!(
                    granted_kib = got / 2048,
                    asked_kib = UDP_RCVBUF / 1024,
                    "UDP receive buffers are capped by net.core.rmem_max: a boot storm's burst of \
                     requests may overflow them (raise net.core.rmem_max to 4194304 or more)"
                )
            });
        }
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(s.into())
}

/// Connections a TCP listener holds before they are accepted (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default). `TcpListener::bind` of std and tokio asks for 128:
/// when a rack powers on at once, hundreds of machines connect within milliseconds, and a SYN
/// that finds the queue full is dropped (the firmware tries again after a second or more).
pub const LISTEN_BACKLOG: i32 = 4096;

/// A non-blocking tokio TCP listener on `addr` (`SO_REUSEADDR`) with [`LISTEN_BACKLOG`].
pub fn bind_tcp(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(LISTEN_BACKLOG)?;
    tokio::net::TcpListener::from_std(s.into())
}

/// Set the TCP congestion control of `listener`; the connections it accepts inherit it.
/// Fails with `NotFound` for a name the kernel does not have, `PermissionDenied` for one
/// outside `net.ipv4.tcp_allowed_congestion_control` without `CAP_NET_ADMIN`.
pub fn set_congestion(listener: &tokio::net::TcpListener, name: &str) -> io::Result<()> {
    socket2::SockRef::from(listener).set_tcp_congestion(name.as_bytes())
}

/// The TCP congestion control a socket uses (`bbr`, `cubic`, …).
pub fn congestion(sock: &impl std::os::fd::AsFd) -> io::Result<String> {
    let name = socket2::SockRef::from(sock).tcp_congestion()?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(String::from_utf8_lossy(name.get(..end).unwrap_or_default()).into_owned())
}

/// First IPv4 address of interface `name`.
pub fn interface_ipv4(name: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        if ifa.interface_name != name {
            return None;
        }
        ifa.address.as_ref()?.as_sockaddr_in().map(|sin| sin.ip())
    })
}

/// Name of the interface holding `ip`.
pub fn interface_of(ip: Ipv4Addr) -> Option<String> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        let a = ifa.address.as_ref()?.as_sockaddr_in()?.ip();
        (a == ip).then(|| ifa.interface_name.clone())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    /// More machines than std's default backlog (128) connect before the server accepts any:
    /// every handshake completes at once (a full queue drops the SYN, and the client would
    /// only try again after a second).
    #[tokio::test]
    async fn listener_queues_a_storm_of_connections() {
        let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for i in 0..300 {
            let c = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500));
            assert!(c.is_ok(), "connection {i} not taken: {c:?}");
            held.push(c);
        }
        drop(listener);
    }

    /// The host's default congestion control.
    fn host_default() -> String {
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
            .unwrap()
            .trim()
            .to_string()
    }

    /// Set on the listener, the congestion control reaches the accepted connections. `reno`
    /// is always built in and always allowed; the test says so when it is also the host's
    /// default (then inheritance cannot be told from the default).
    #[tokio::test]
    async fn accepted_connections_inherit_the_listeners_congestion_control() {
        let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let default = host_default();
        assert_eq!(congestion(&listener).unwrap(), default);
        set_congestion(&listener, "reno").unwrap();
        assert_eq!(congestion(&listener).unwrap(), "reno");
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert_eq!(congestion(&accepted).unwrap(), "reno");
        if default == "reno" {
            eprintln!("host default is reno: inheritance not distinguishable here");
        } else {
            assert_eq!(congestion(&client).unwrap(), default);
        }
    }

    #[tokio::test]
    async fn an_unknown_congestion_control_is_refused_and_changes_nothing() {
        let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let err = set_congestion(&listener, "no-such-cc").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert_eq!(congestion(&listener).unwrap(), host_default());
    }

    #[tokio::test]
    async fn a_taken_port_is_refused() {
        let a = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let err = bind_tcp(a.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
