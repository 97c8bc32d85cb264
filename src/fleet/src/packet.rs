//! An AF_PACKET socket on one end of a veth pair as the simulator's wire.
//!
//! The kernel hands a packet socket its frames as they travel, so a burst of TCP data from a
//! server arrives as one GSO super-frame (up to 64 KiB: one read and one smoltcp segment where a
//! TAP device needs ~44, because the kernel segments every frame before a TAP without offloads).
//! Checksums of such frames may be left for offload; the simulator's stacks do not verify
//! received checksums (see `shell::Port`). Frames are taken [`BATCH`] per `recvmmsg`.

use std::collections::VecDeque;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, recvmmsg, send, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned,
    LinkAddr, MsgFlags, MultiHeaders, SockFlag, SockProtocol, SockType,
};

use crate::shell::{Frame, Wire};

/// `sll_pkttype` of a frame this host sent (a packet socket sees its own transmissions).
const PACKET_OUTGOING: u8 = 4;
/// Room for a GSO super-frame: 64 KiB of IP plus the Ethernet header.
const FRAME_ROOM: usize = 1 << 17;
/// Frames taken per `recvmmsg` (TFTP and DHCP frames are small: one syscall for many).
const BATCH: usize = 32;
/// A frame at least this long is handed out in the buffer it was received in (the buffer comes
/// back through [`Wire::reuse`]); a shorter one is copied, which costs less than a buffer kept.
const HAND_OUT_FROM: usize = 2048;
/// Receive buffers handed out at most (each [`FRAME_ROOM`] long): the simulator stops reading
/// when they may run out (`Wire::saturated`), and copies large frames only if they do.
const SPARE_MAX: usize = 512;
/// Receive buffer asked for (with CAP_NET_ADMIN, above `rmem_max`): every server's window of
/// data in flight at once must fit, or the servers retransmit.
const RCVBUF: usize = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("no interface {0:?} in this network namespace")]
    NoInterface(String),
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: Errno,
    },
}

fn sys(what: &'static str) -> impl FnOnce(Errno) -> PacketError {
    move |source| PacketError::Sys { what, source }
}

/// An opened, bound packet socket (sendable to the thread that will read it; the wire's
/// receive headers are not).
pub struct PacketSocket(OwnedFd);

impl PacketSocket {
    pub fn open(iface: &str) -> Result<Self, PacketError> {
        let link: LinkAddr = nix::ifaddrs::getifaddrs()
            .map_err(sys("listing interfaces"))?
            .filter(|a| a.interface_name == iface)
            .find_map(|a| a.address.and_then(|s| s.as_link_addr().copied()))
            .ok_or_else(|| PacketError::NoInterface(iface.to_string()))?;
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::EthAll,
        )
        .map_err(sys("opening a packet socket"))?;
        if setsockopt(&fd, sockopt::RcvBufForce, &RCVBUF).is_err() {
            setsockopt(&fd, sockopt::RcvBuf, &RCVBUF).map_err(sys("setting SO_RCVBUF"))?;
        }
        // Every frame read then says how many the socket has dropped so far (full buffer).
        setsockopt(&fd, sockopt::RxqOvfl, &1).map_err(sys("setting SO_RXQ_OVFL"))?;
        bind(fd.as_raw_fd(), &link).map_err(sys("binding the packet socket"))?;
        // Until the bind it saw every interface of the namespace: forget that.
        let mut junk = [0u8; 64];
        while nix::sys::socket::recv(fd.as_raw_fd(), &mut junk, MsgFlags::empty()).is_ok() {}
        Ok(Self(fd))
    }

    pub fn into_wire(self) -> PacketWire {
        PacketWire {
            fd: self.0,
            bufs: (0..BATCH).map(|_| vec![0; FRAME_ROOM]).collect(),
            headers: headers(),
            queued: VecDeque::with_capacity(BATCH),
            spare: Vec::new(),
            out: 0,
            dropped: 0,
        }
    }
}

/// Receive headers for [`BATCH`] frames, each with room for the `SO_RXQ_OVFL` drop count.
fn headers() -> MultiHeaders<LinkAddr> {
    MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(u32)))
}

/// A packet socket bound to one interface.
pub struct PacketWire {
    fd: OwnedFd,
    bufs: Vec<Vec<u8>>,
    headers: MultiHeaders<LinkAddr>,
    /// Frames received and not yet handed out.
    queued: VecDeque<Frame>,
    /// Receive buffers back from the simulator, to put in place of ones handed out.
    spare: Vec<Vec<u8>>,
    /// Receive buffers handed out and not back yet.
    out: usize,
    /// Frames the kernel dropped before this socket read them (its latest `SO_RXQ_OVFL`).
    dropped: u32,
}

impl Wire for PacketWire {
    fn recv(&mut self) -> Option<Frame> {
        while self.queued.is_empty() {
            let fd = self.fd.as_raw_fd();
            // nix leaves each header's control length as the kernel set it (0 without a control
            // message), so reused headers would never carry the drop count again: fresh ones.
            self.headers = headers();
            let got: Vec<(usize, bool)> = {
                let mut iovs: Vec<[IoSliceMut; 1]> =
                    self.bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
                match recvmmsg(
                    fd,
                    &mut self.headers,
                    iovs.iter_mut(),
                    MsgFlags::empty(),
                    None,
                ) {
                    Ok(msgs) => msgs
                        .map(|m| {
                            if let Ok(cmsgs) = m.cmsgs() {
                                for c in cmsgs {
                                    if let ControlMessageOwned::RxqOvfl(n) = c {
                                        self.dropped = self.dropped.max(n);
                                    }
                                }
                            }
                            let echo = m.address.is_some_and(|a| a.pkttype() == PACKET_OUTGOING);
                            (m.bytes, echo)
                        })
                        .collect(),
                    Err(Errno::EINTR) => continue,
                    Err(_) => return None,
                }
            };
            // Frames this process sent come back on the socket: skipped.
            for (b, (n, echo)) in self.bufs.iter_mut().zip(got) {
                if echo || n == 0 {
                    continue;
                }
                // A large frame leaves in its buffer (a GSO super-frame is up to 64 KiB: no
                // copy and no allocation of that size per frame), while buffers last.
                let fresh = if n < HAND_OUT_FROM {
                    None
                } else if let Some(spare) = self.spare.pop() {
                    Some(spare)
                } else if self.out < SPARE_MAX {
                    Some(vec![0; FRAME_ROOM])
                } else {
                    None
                };
                match fresh {
                    Some(fresh) => {
                        self.out += 1;
                        self.queued
                            .push_back(Frame::new(std::mem::replace(b, fresh), n));
                    }
                    None => {
                        if let Some(frame) = b.get(..n) {
                            self.queued.push_back(frame.to_vec().into());
                        }
                    }
                }
            }
        }
        self.queued.pop_front()
    }

    fn send(&mut self, frame: &[u8]) {
        // The device queue may be full for a moment: wait for it to drain (a lost frame costs a
        // firmware retry), but give up after about a second.
        for _ in 0..100 {
            match send(self.fd.as_raw_fd(), frame, MsgFlags::empty()) {
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN | Errno::ENOBUFS) => {
                    let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLOUT)];
                    let _ = poll(&mut fds, PollTimeout::from(10u8));
                }
                _ => return,
            }
        }
    }

    fn reuse(&mut self, spent: &mut Vec<Vec<u8>>) {
        for b in spent.drain(..) {
            // Receive buffers (full length) come back; copies of small frames go.
            if b.len() == FRAME_ROOM && self.out > 0 {
                self.out -= 1;
                self.spare.push(b);
            }
        }
    }

    fn dropped(&self) -> u64 {
        u64::from(self.dropped)
    }

    fn saturated(&self) -> bool {
        self.queued.is_empty() && self.out + BATCH > SPARE_MAX
    }

    fn wait(&mut self, timeout: Duration) {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        let t = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let _ = poll(&mut fds, t);
    }
}
