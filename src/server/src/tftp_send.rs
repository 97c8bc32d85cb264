//! Sending a TFTP transfer's due datagrams on its connected socket: a window's DATA blocks (all
//! the same size but the last) go out as one UDP GSO send (`UDP_SEGMENT`): one system call and
//! one trip through the IP stack for up to [`MAX_SEGMENTS`] datagrams; the kernel (or the NIC)
//! cuts them apart at the device, so the client sees the same datagrams as before. Where the
//! kernel or the route refuses it (no checksum offload on the device, a block larger than the
//! MTU), the transfer sends one datagram per call from then on; `tftp.gso = false` does that
//! from the start, and so does a kernel without `UDP_SEGMENT` (before 4.18, which would ignore
//! the request and send the whole batch as one datagram: see [`kernel_has_gso`]). Single-port
//! mode (`tftp.single_port`) sends one datagram per call.
//!
//! A send that fails for the peer's sake ends the flush: the batch's datagrams count as sent and
//! lost (the engine's retransmission recovers them, as for loss on the wire); the datagram taken
//! from the engine after them is kept for the next flush. When the failure was the client's
//! port refusing (`ECONNREFUSED`, an ICMP port unreachable), [`Sender::take_port_unreachable`]
//! says so once: the driver ends the transfer instead of retrying into a closed port.

use nix::sys::socket::{getsockopt, sendmsg, sockopt, ControlMessage, MsgFlags};
use rackboot_tftp::Transfer;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd};

/// Datagrams per GSO send at most (the kernel's `UDP_MAX_SEGMENTS` is 64 on older kernels).
pub const MAX_SEGMENTS: usize = 64;
/// Payload bytes per GSO send at most: the unsegmented datagram must fit in one IPv4 packet.
pub const MAX_BYTES: usize = 65_000;

/// The datagrams of one flush, grouped into runs that can each go out in one send.
#[derive(Debug, Default)]
pub struct Batch {
    /// Starts empty and grows to the transfer's window on its first sends: a lock-step
    /// transfer keeps one datagram's room, not a full GSO send's (hundreds are open in a storm).
    buf: Vec<u8>,
    /// The room `buf` had grown to before [`Batch::release`]: taken again at once on the next
    /// send, instead of growing through the sizes a window needs one doubling at a time.
    room: usize,
    /// Size of every datagram in `buf` but possibly the last.
    seg: usize,
    count: usize,
    /// A datagram shorter than `seg` was added: nothing may follow it in this send.
    closed: bool,
}

impl Batch {
    /// True when `len` bytes can join this send (equal size, or shorter as its last datagram).
    pub fn fits(&self, len: usize) -> bool {
        self.count == 0
            || (!self.closed
                && len <= self.seg
                && len > 0
                && self.count < MAX_SEGMENTS
                && self.buf.len() + len <= MAX_BYTES)
    }

    /// Add a datagram; the caller has checked [`Batch::fits`].
    pub fn push(&mut self, datagram: &[u8]) {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.room.max(datagram.len()));
        }
        if self.count == 0 {
            self.seg = datagram.len();
        } else if datagram.len() < self.seg {
            self.closed = true;
        }
        self.buf.extend_from_slice(datagram);
        self.count += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The datagrams one by one.
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        self.buf.chunks(self.seg.max(1))
    }

    /// Free the buffer of an empty batch (see [`Sender::release`]).
    fn release(&mut self) {
        if self.count == 0 && self.buf.capacity() > 0 {
            self.room = self.buf.capacity();
            self.buf = Vec::new();
        }
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
        self.seg = 0;
        self.closed = false;
    }
}

/// Per-transfer sender state.
#[derive(Debug)]
pub struct Sender {
    batch: Batch,
    out: Vec<u8>,
    /// GSO refused once: one datagram per send from then on.
    gso: bool,
    /// Datagrams that went out in GSO sends of two or more.
    pub coalesced: u64,
    /// A send failed with `ECONNREFUSED` since the last [`Sender::take_port_unreachable`].
    port_unreachable: bool,
}

impl Sender {
    pub fn new(gso: bool) -> Sender {
        Sender {
            batch: Batch::default(),
            out: Vec::with_capacity(1500),
            gso,
            coalesced: 0,
            port_unreachable: false,
        }
    }

    /// Free the send buffers while the transfer waits for its client: a storm has hundreds
    /// of task transfers waiting at once and only a few sending, so each flush allocating
    /// its own (a window of up to 64 datagrams) costs far less memory than each transfer
    /// keeping them. A datagram kept for the next flush (after a failed send) stays.
    pub fn release(&mut self) {
        self.batch.release();
        self.out = Vec::new();
    }

    /// True once after a send found the client's port closed (see the module documentation).
    pub fn take_port_unreachable(&mut self) -> bool {
        std::mem::take(&mut self.port_unreachable)
    }

    /// Send everything `t` has due on the connected blocking socket `sock`. An error ends the
    /// flush: loss for the engine's timers, or the client's port closed
    /// ([`Sender::take_port_unreachable`]).
    pub fn flush_blocking(&mut self, sock: &std::net::UdpSocket, t: &mut Transfer) {
        loop {
            let more = self.fill(t);
            if !self.batch.is_empty() {
                let r = match self.try_gso(|b| send_gso(sock, b)) {
                    Ok(true) => Ok(()),
                    Ok(false) => self
                        .batch
                        .datagrams()
                        .try_for_each(|d| sock.send(d).map(drop)),
                    Err(e) => Err(e),
                };
                if self.end_batch(r, more) {
                    return;
                }
            }
            if !more {
                return;
            }
            self.batch.push(&self.out);
        }
    }

    /// [`Sender::flush_blocking`] for a transfer that runs as a task.
    pub async fn flush(&mut self, sock: &tokio::net::UdpSocket, t: &mut Transfer) {
        loop {
            let more = self.fill(t);
            if !self.batch.is_empty() {
                let gso = if self.gso_wanted() {
                    let b = &self.batch;
                    sock.async_io(tokio::io::Interest::WRITABLE, || send_gso(sock, b))
                        .await
                } else {
                    Err(not_gso())
                };
                let r = match self.after_gso(gso) {
                    Ok(true) => Ok(()),
                    Ok(false) => send_each(sock, &self.batch).await,
                    Err(e) => Err(e),
                };
                if self.end_batch(r, more) {
                    return;
                }
            }
            if !more {
                return;
            }
            self.batch.push(&self.out);
        }
    }

    /// Take due datagrams from `t` into the batch until one does not fit (left in `out`) or
    /// none is due; true when `out` holds a datagram that did not fit.
    fn fill(&mut self, t: &mut Transfer) -> bool {
        loop {
            let more = t.poll_transmit(&mut self.out);
            if !(more && self.batch.fits(self.out.len())) {
                return more;
            }
            self.batch.push(&self.out);
        }
    }

    /// Send the batch in one GSO send when it holds several datagrams and GSO is on: true when
    /// sent, false when it is to go one by one.
    fn try_gso(&mut self, gso: impl Fn(&Batch) -> io::Result<()>) -> io::Result<bool> {
        let r = if self.gso_wanted() {
            gso(&self.batch)
        } else {
            Err(not_gso())
        };
        self.after_gso(r)
    }

    /// Whether the batch goes as one GSO send (several datagrams, GSO on).
    fn gso_wanted(&self) -> bool {
        self.gso && self.batch.count() > 1
    }

    /// Empty the batch after its send; on an error, keep the datagram taken after it (`more`)
    /// for the next flush. True when the flush is to end.
    fn end_batch(&mut self, r: io::Result<()>, more: bool) -> bool {
        self.batch.clear();
        if let Err(e) = r {
            self.port_unreachable |= is_port_unreachable(&e);
            if more {
                self.batch.push(&self.out);
            }
            return true;
        }
        false
    }

    fn after_gso(&mut self, r: io::Result<()>) -> io::Result<bool> {
        match r {
            Ok(()) => {
                self.coalesced += self.batch.count() as u64;
                Ok(true)
            }
            Err(e) if refused(&e) => {
                if self.batch.count() > 1 {
                    // The kernel or the route does not take it: not again for this transfer.
                    self.gso = false;
                }
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// "Not as GSO": the batch goes one datagram per send.
fn not_gso() -> io::Error {
    io::Error::from_raw_os_error(nix::libc::EINVAL)
}

/// True when the kernel knows `UDP_SEGMENT` (Linux 4.18 and later): asked of `sock`.
pub fn kernel_has_gso(sock: &impl AsFd) -> bool {
    getsockopt(sock, sockopt::UdpGsoSegment).is_ok()
}

async fn send_each(sock: &tokio::net::UdpSocket, b: &Batch) -> io::Result<()> {
    for d in b.datagrams() {
        sock.send(d).await?;
    }
    Ok(())
}

/// The error a connected UDP socket reports after an ICMP port unreachable from its peer.
pub fn is_port_unreachable(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionRefused
}

/// Errors that say "not this way" rather than "not to this peer".
fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EIO)
            | Some(nix::libc::EINVAL)
            | Some(nix::libc::ENOPROTOOPT)
            | Some(nix::libc::EOPNOTSUPP)
            | Some(nix::libc::EMSGSIZE)
    )
}

/// One `sendmsg` with `UDP_SEGMENT` = the batch's datagram size.
fn send_gso(sock: &impl AsRawFd, b: &Batch) -> io::Result<()> {
    let seg = u16::try_from(b.seg).map_err(|_| io::Error::from_raw_os_error(nix::libc::EINVAL))?;
    let iov = [IoSlice::new(&b.buf)];
    let cmsg = [ControlMessage::UdpGsoSegments(&seg)];
    let n = sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(io::Error::from)?;
    if n == b.buf.len() {
        Ok(())
    } else {
        Err(io::Error::other("short GSO send"))
    }
}

#[cfg(test)]
#[path = "tftp_send_tests.rs"]
pub(crate) mod tests;
