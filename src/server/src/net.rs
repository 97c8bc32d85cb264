//! Socket set-up for the UDP services (socket2; no unsafe): address reuse, broadcast, binding to
//! the provisioning interface, and looking up an interface's IPv4 address.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

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
    let _ = s.set_recv_buffer_size(4 * 1024 * 1024);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(s.into())
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
