//! TFTP shell around the sans-IO engine (`rackboot-tftp`).
//!
//! One listening socket takes read requests. In the default mode each transfer gets its own
//! socket on an ephemeral port (RFC 1350's transfer id) and runs as a task; with `single_port`
//! every transfer is served from the listening socket, demultiplexed by peer address (for
//! firewalled segments). Files come from [`BootFiles`], one shared copy each. Global and
//! per-client limits bound the number of transfers; a refused request gets an ERROR. A transfer
//! whose client's port is closed ends at once: `ECONNREFUSED` on its own connected socket, or
//! in single-port mode the listening socket's queued ICMP error (`tftp_icmp`).

use crate::files::{BootFiles, FileError};
use crate::metrics::Metrics;
use crate::tftp_icmp;
use crate::tftp_send::{is_port_unreachable, Sender};
use rackboot_tftp::{
    error_packet, handle_initial, EngineConfig, ErrorCode, Initial, Outcome, Rejection, Transfer,
};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Attempts at one send from the listening socket ([`TftpService::send_listen`]): with 1 ms
/// sleeps while the send buffer is full, a datagram waits at most this many milliseconds.
const SEND_TRIES: usize = 50;

/// How long a shutdown (SIGTERM) waits for the TFTP transfers in flight before cutting them.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Up to this many transfers at once run on a thread of their own with a blocking socket: per
/// block one `send` and one `recv` that sleeps until the ACK (no readiness poll, no `EAGAIN`
/// probe, no timer-wheel entry), which is what bounds a lock-step transfer. Beyond that, the
/// transfers are tasks on the runtime, which multiplexes thousands of them on the workers.
pub const THREADED_TRANSFERS: usize = 32;

/// A threaded transfer's `recv` wakes at least this often to check its retransmission deadline
/// and the shutdown cut (retransmissions may go out up to this much late; the adaptive
/// retransmission timeout is at least 50 ms).
const THREAD_TICK: std::time::Duration = std::time::Duration::from_millis(10);

#[derive(Clone, Debug)]
pub struct TftpLimits {
    pub max_transfers: u32,
    pub max_per_client: u32,
}

pub struct TftpService {
    socket: UdpSocket,
    files: Arc<BootFiles>,
    engine: EngineConfig,
    limits: TftpLimits,
    single_port: bool,
    /// Windows go out in UDP GSO sends (see `tftp_send`).
    gso: bool,
    metrics: Arc<Metrics>,
    active: Arc<Mutex<HashMap<IpAddr, u32>>>,
    /// Single-port mode: a send failed on a queued ICMP error (see [`TftpService::send_listen`]).
    icmp_error_pending: AtomicBool,
}

/// Decrements the transfer counts when a transfer ends, however it ends.
struct Slot {
    active: Arc<Mutex<HashMap<IpAddr, u32>>>,
    ip: IpAddr,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut a = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = a.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                a.remove(&self.ip);
            }
        }
        self.metrics.tftp_active.dec();
    }
}

/// Receive buffer of a transfer socket. A read-only server's client sends it ACKs (4 bytes)
/// and ERRORs; an ERROR longer than this is read cut short, which still ends the transfer
/// with its code and the start of its message.
const TRANSFER_RX: usize = 2048;

thread_local! {
    /// The receive buffer of the transfers a runtime thread drives: a waiting transfer holds
    /// none of its own (a 1,000-machine storm has hundreds waiting at once).
    static RX: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; TRANSFER_RX]);
}

/// Read one datagram, if one is queued, from a transfer socket that was reported readable.
fn recv_one(sock: &UdpSocket, t: &mut Transfer) {
    RX.with_borrow_mut(|rx| match sock.try_recv(rx) {
        Ok(n) => t.handle_datagram(&rx[..n], Instant::now()),
        Err(e) if is_port_unreachable(&e) => t.handle_port_unreachable(),
        // Nothing queued after all (the readiness was stale), or another error: wait again.
        Err(_) => {}
    });
}

impl TftpService {
    pub fn new(
        socket: UdpSocket,
        files: Arc<BootFiles>,
        engine: EngineConfig,
        limits: TftpLimits,
        single_port: bool,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            socket,
            files,
            engine,
            limits,
            single_port,
            gso: true,
            metrics,
            active: Arc::default(),
            icmp_error_pending: AtomicBool::new(false),
        }
    }

    /// Send from the listening socket. In single-port mode a queued ICMP error, for whichever
    /// peer and of whichever kind (port or host unreachable, too big), fails one send and that
    /// datagram does not go: note the error (the single-port loop then drains the queue,
    /// [`TftpService::end_refused`]) and send again. A full send buffer is waited out in short
    /// sleeps, not with `writable()`: once the socket has reported an error, the runtime takes it
    /// as writable for good (mio maps EPOLLERR to "write closed", a final state), and waiting on
    /// that would spin.
    async fn send_listen(&self, pkt: &[u8], peer: SocketAddr) {
        let mut failed = false;
        for _ in 0..SEND_TRIES {
            match self.socket.try_send_to(pkt, peer) {
                Ok(_) => return,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                // A second failure is this datagram's own (a bad address): give up.
                Err(_) if failed => return,
                Err(_) => {
                    self.icmp_error_pending.store(true, Ordering::Relaxed);
                    failed = true;
                }
            }
        }
        // Still not sent: the transfer's retransmission (or the client's) makes up for it.
    }

    /// Send each window's blocks in one UDP GSO send (default), or one datagram per send.
    pub fn with_gso(mut self, on: bool) -> Self {
        self.gso = on;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn count(&self, kind: &'static str, detail: &'static str) {
        Metrics::inc(&self.metrics.tftp, kind, detail);
    }

    /// Reserve a transfer slot for `ip`, or say why not.
    fn reserve(&self, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut a = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let total: u32 = a.values().sum();
        if total >= self.limits.max_transfers {
            return Err("server busy: too many transfers");
        }
        let n = a.entry(ip).or_insert(0);
        if *n >= self.limits.max_per_client {
            return Err("too many transfers from this client");
        }
        *n += 1;
        self.metrics.tftp_active.inc();
        Ok(Slot {
            active: self.active.clone(),
            ip,
            metrics: self.metrics.clone(),
        })
    }

    /// Classify a datagram from the listen port; `Some` when a transfer should start.
    async fn accept(&self, bytes: &[u8], peer: SocketAddr) -> Option<(Transfer, Slot)> {
        let req = match handle_initial(bytes) {
            Initial::Read(r) => r,
            Initial::Reply(pkt, why) => {
                self.count("refused", rejection_label(&why));
                tracing::debug!(%peer, reason = %why, "tftp request refused");
                self.send_listen(&pkt, peer).await;
                return None;
            }
            Initial::Drop(why) => {
                self.count("dropped", rejection_label(&why));
                return None;
            }
        };
        let slot = match self.reserve(peer.ip()) {
            Ok(s) => s,
            Err(msg) => {
                self.count("refused", "limit");
                self.send_listen(&error_packet(ErrorCode::NotDefined, msg), peer)
                    .await;
                return None;
            }
        };
        let file = match self.files.get(&req.path).await {
            Ok(f) => f,
            Err(e) => {
                let (code, label) = match e {
                    FileError::NotFound | FileError::NotAFile => {
                        (ErrorCode::FileNotFound, "not_found")
                    }
                    FileError::OutsideRoot => (ErrorCode::AccessViolation, "outside_root"),
                    FileError::TooLarge | FileError::Io(_) => (ErrorCode::NotDefined, "io"),
                };
                self.count("refused", label);
                tracing::debug!(%peer, path = %req.path, error = %e, "tftp file refused");
                self.send_listen(&error_packet(code, &e.to_string()), peer)
                    .await;
                return None;
            }
        };
        let t = Transfer::new(&req, file, &self.engine, Instant::now());
        self.count("started", "");
        for name in ["blksize", "tsize", "timeout", "windowsize"] {
            if t.oack_sent() && req.options.iter().any(|(k, _)| k == name) {
                self.count("option", name);
            }
        }
        tracing::debug!(%peer, path = %req.path, blksize = t.blksize(), windowsize = t.windowsize(), "tftp transfer");
        Some((t, slot))
    }

    /// Serve until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        if self.single_port {
            self.run_single_port(shutdown).await
        } else {
            self.run_ephemeral(shutdown).await
        }
    }

    async fn run_ephemeral(mut self, mut shutdown: watch::Receiver<bool>) {
        if self.gso && !crate::tftp_send::kernel_has_gso(&self.socket) {
            tracing::info!("tftp: this kernel has no UDP GSO (UDP_SEGMENT): one datagram per send");
            self.gso = false;
        }
        let me = Arc::new(self);
        let mut buf = vec![0u8; 65536];
        let local_ip = me.socket.local_addr().map(|a| a.ip()).ok();
        let mut inflight = tokio::task::JoinSet::new();
        let threaded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Set when the drain time is over: threaded transfers stop at their next tick.
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        loop {
            let (n, peer) = tokio::select! {
                r = me.socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => { tracing::debug!(error = %e, "tftp recv"); continue; }
                },
                // Reap finished transfers.
                Some(_) = inflight.join_next(), if !inflight.is_empty() => continue,
                _ = shutdown.changed() => break,
            };
            let Some((t, slot)) = me.accept(&buf[..n], peer).await else {
                continue;
            };
            let bind_ip = local_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let sock = match crate::net::bind_udp(SocketAddr::new(bind_ip, 0), None, false) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "tftp: cannot open a transfer socket");
                    me.count("failed", "socket");
                    continue;
                }
            };
            if let Err(e) = sock.connect(peer).await {
                tracing::debug!(error = %e, %peer, "tftp connect");
                continue;
            }
            let svc = me.clone();
            if threaded.fetch_add(1, Ordering::AcqRel) < THREADED_TRANSFERS {
                match sock.into_std().and_then(blocking_socket) {
                    Ok(std_sock) => {
                        let (threaded, cut) = (threaded.clone(), cut.clone());
                        inflight.spawn_blocking(move || {
                            let _slot = slot;
                            svc.drive_blocking(&std_sock, t, &cut, &threaded);
                            threaded.fetch_sub(1, Ordering::AcqRel);
                        });
                    }
                    Err(e) => {
                        threaded.fetch_sub(1, Ordering::AcqRel);
                        tracing::warn!(error = %e, "tftp: cannot set up a transfer socket");
                        me.count("failed", "socket");
                    }
                }
            } else {
                threaded.fetch_sub(1, Ordering::AcqRel);
                inflight.spawn(async move {
                    let _slot = slot;
                    svc.drive(sock, t).await;
                });
            }
        }
        // Shutdown: no new requests (the listen socket is no longer read); the transfers in
        // flight finish, for at most DRAIN.
        if !inflight.is_empty() {
            tracing::info!(
                transfers = inflight.len(),
                "tftp: finishing the transfers in flight"
            );
            let drained = tokio::time::timeout(DRAIN, async {
                while inflight.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!(
                    transfers = inflight.len(),
                    "tftp: transfers cut at shutdown"
                );
                cut.store(true, Ordering::Release);
                inflight.abort_all();
                // Threaded transfers see the cut within a tick.
                while inflight.join_next().await.is_some() {}
            }
        }
    }

    /// One transfer on its own connected socket.
    async fn drive(&self, sock: UdpSocket, mut t: Transfer) {
        let mut tx = Sender::new(self.gso);
        loop {
            tx.flush(&sock, &mut t).await;
            // Waiting for the client: hold no send buffers meanwhile (see `Sender::release`).
            tx.release();
            if tx.take_port_unreachable() {
                t.handle_port_unreachable();
            }
            if t.is_finished() {
                break;
            }
            let Some(deadline) = t.poll_timeout() else {
                break;
            };
            tokio::select! {
                r = sock.readable() => if r.is_ok() {
                    recv_one(&sock, &mut t);
                },
                _ = tokio::time::sleep_until(deadline.into()) => t.handle_timeout(Instant::now()),
            }
        }
        self.finish(&t, tx.coalesced);
    }

    /// One transfer on its own thread and connected, blocking socket (see
    /// [`THREADED_TRANSFERS`]). Ends without a verdict when `cut` is set, like an aborted task.
    fn drive_blocking(
        &self,
        sock: &std::net::UdpSocket,
        mut t: Transfer,
        cut: &AtomicBool,
        threaded: &std::sync::atomic::AtomicUsize,
    ) {
        let mut tx = Sender::new(self.gso);
        let mut rx = vec![0u8; TRANSFER_RX];
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut read_timeout = THREAD_TICK;
        loop {
            tx.flush_blocking(sock, &mut t);
            if tx.take_port_unreachable() {
                t.handle_port_unreachable();
            }
            if t.is_finished() {
                break;
            }
            let Some(deadline) = t.poll_timeout() else {
                break;
            };
            if cut.load(Ordering::Acquire) {
                return;
            }
            // With a core to spare (fewer threaded transfers than cores), wait for the ACK
            // awake for a moment: a lock-step transfer's rate is set by the wake-ups on both
            // sides, and an ACK usually comes back within tens of microseconds.
            if threaded.load(Ordering::Relaxed) < cores {
                match spin_recv(sock, &mut rx) {
                    Spin::Got(n) => {
                        t.handle_datagram(&rx[..n], Instant::now());
                        continue;
                    }
                    Spin::PortUnreachable => {
                        t.handle_port_unreachable();
                        continue;
                    }
                    Spin::Nothing => {}
                }
            }
            // Wake at the deadline itself when it is closer than a tick (adaptive timeouts
            // are short); a timeout of zero would mean "block forever".
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .clamp(std::time::Duration::from_millis(1), THREAD_TICK);
            if wait != read_timeout && sock.set_read_timeout(Some(wait)).is_ok() {
                read_timeout = wait;
            }
            match sock.recv(&mut rx) {
                Ok(n) => t.handle_datagram(&rx[..n], Instant::now()),
                Err(e) if is_port_unreachable(&e) => t.handle_port_unreachable(),
                // A tick without a datagram, or another ICMP error (a host unreachable may
                // pass): retransmit when it is time.
                Err(_) => {
                    let now = Instant::now();
                    if now >= deadline {
                        t.handle_timeout(now);
                    }
                }
            }
        }
        self.finish(&t, tx.coalesced);
    }

    /// Count a finished transfer; `coalesced`: its datagrams that went out in GSO sends.
    fn finish(&self, t: &Transfer, coalesced: u64) {
        self.metrics.tftp_retransmits.inc_by(t.retransmits());
        self.metrics.tftp_coalesced.inc_by(coalesced);
        self.metrics.tftp_tail_probes.inc_by(t.tail_probes());
        match t.outcome() {
            Some(Outcome::Completed { bytes, elapsed, .. }) => {
                self.metrics
                    .tftp_transfer_seconds
                    .observe(elapsed.as_secs_f64());
                self.metrics.tftp_bytes.inc_by(*bytes);
                self.count("completed", "");
            }
            Some(Outcome::AbortedAfterOack { .. }) => self.count("completed", "aborted_after_oack"),
            Some(Outcome::Failed(r)) => {
                let label = match r {
                    rackboot_tftp::FailReason::TimedOut => "timeout",
                    rackboot_tftp::FailReason::ClientError { .. } => "client_error",
                    // Every block went out and the client left: its final ACK was lost, the
                    // file most likely arrived whole. Not a failure to alarm anyone about.
                    rackboot_tftp::FailReason::ClientGone { all_sent: true } => {
                        tracing::debug!("tftp client left after the last block, final ACK missing");
                        self.count("unconfirmed", "client_gone");
                        return;
                    }
                    rackboot_tftp::FailReason::ClientGone { all_sent: false } => "client_gone",
                };
                tracing::info!(reason = ?r, "tftp transfer failed");
                self.count("failed", label);
            }
            None => self.count("failed", "unfinished"),
        }
    }

    async fn run_single_port(self, mut shutdown: watch::Receiver<bool>) {
        let ipv6 = self.socket.local_addr().is_ok_and(|a| a.is_ipv6());
        if let Err(e) = tftp_icmp::enable(&self.socket, ipv6) {
            tracing::warn!(error = %e, "tftp: no ICMP errors on the single-port socket (IP_RECVERR): a transfer to a client that left runs until its retries end");
        }
        let mut transfers: HashMap<SocketAddr, (Transfer, Slot)> = HashMap::new();
        let mut rx = vec![0u8; 65536];
        let mut out = Vec::with_capacity(1500);
        // Set at shutdown: no new transfers; the running ones finish until this deadline.
        let mut draining: Option<Instant> = None;
        loop {
            // Flush every transfer's output, retire finished ones.
            let mut done = Vec::new();
            for (peer, (t, _)) in transfers.iter_mut() {
                while t.poll_transmit(&mut out) {
                    self.send_listen(&out, *peer).await;
                }
                if t.is_finished() {
                    done.push(*peer);
                }
            }
            if self.icmp_error_pending.load(Ordering::Relaxed) {
                self.icmp_error_pending.store(false, Ordering::Relaxed);
                done.extend(self.end_refused(&mut transfers));
            }
            for p in done {
                if let Some((t, _slot)) = transfers.remove(&p) {
                    self.finish(&t, 0);
                }
            }
            if let Some(deadline) = draining {
                if transfers.is_empty() {
                    return;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        transfers = transfers.len(),
                        "tftp: transfers cut at shutdown"
                    );
                    return;
                }
            }
            let next = transfers
                .values()
                .filter_map(|(t, _)| t.poll_timeout())
                .chain(draining)
                .min();
            let sleep = async {
                match next {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.socket.recv_from(&mut rx) => {
                    let Ok((n, peer)) = r else {
                        // With IP_RECVERR, an ICMP error for any peer fails one receive.
                        self.end_refused(&mut transfers);
                        continue;
                    };
                    if let Some((t, _)) = transfers.get_mut(&peer) {
                        t.handle_datagram(&rx[..n], Instant::now());
                    } else if draining.is_none() {
                        // A refusal still queued from an earlier transfer of this address and
                        // port must not end the new one: take the queue first.
                        self.end_refused(&mut transfers);
                        if let Some(new) = self.accept(&rx[..n], peer).await {
                            transfers.insert(peer, new);
                        }
                    }
                }
                _ = sleep => {
                    let now = Instant::now();
                    for (t, _) in transfers.values_mut() {
                        t.handle_timeout(now);
                    }
                }
                _ = shutdown.changed(), if draining.is_none() => {
                    if !transfers.is_empty() {
                        tracing::info!(transfers = transfers.len(), "tftp: finishing the transfers in flight");
                    }
                    draining = Some(Instant::now() + DRAIN);
                }
            }
        }
    }
}

impl TftpService {
    /// End the single-port transfers whose clients' ports refused a datagram (the socket's
    /// queued ICMP errors), as a connected transfer socket's `ECONNREFUSED` ends its own; the
    /// peers of the transfers it ended.
    fn end_refused(
        &self,
        transfers: &mut HashMap<SocketAddr, (Transfer, Slot)>,
    ) -> Vec<SocketAddr> {
        let mut ended = Vec::new();
        for peer in tftp_icmp::refused_peers(&self.socket) {
            if let Some((t, _)) = transfers.get_mut(&peer) {
                t.handle_port_unreachable();
                if t.is_finished() {
                    ended.push(peer);
                }
            }
        }
        ended
    }
}

/// How long [`spin_recv`] polls before the transfer sleeps in `recv`.
const SPIN: std::time::Duration = std::time::Duration::from_micros(100);

/// What [`spin_recv`] found.
enum Spin {
    Got(usize),
    /// The client's port is closed (ICMP port unreachable).
    PortUnreachable,
    /// Nothing arrived in time (or another error): sleep in `recv` instead.
    Nothing,
}

/// Poll `sock` without sleeping for up to [`SPIN`], yielding the core between polls (the peer
/// may be waiting for it).
fn spin_recv(sock: &std::net::UdpSocket, rx: &mut [u8]) -> Spin {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let until = Instant::now() + SPIN;
    loop {
        match recv(sock.as_raw_fd(), rx, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => return Spin::Got(n),
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < until => std::thread::yield_now(),
            Err(nix::errno::Errno::ECONNREFUSED) => return Spin::PortUnreachable,
            Err(_) => return Spin::Nothing,
        }
    }
}

/// A transfer socket for [`TftpService::drive_blocking`]: blocking, `recv` waking every tick.
fn blocking_socket(sock: std::net::UdpSocket) -> std::io::Result<std::net::UdpSocket> {
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(THREAD_TICK))?;
    Ok(sock)
}

fn rejection_label(r: &Rejection) -> &'static str {
    match r {
        Rejection::Malformed(_) => "malformed",
        Rejection::UnexpectedOpcode(_) => "unexpected_opcode",
        Rejection::WriteRequest => "write_request",
        Rejection::MailMode => "mail_mode",
        Rejection::BadPath(_) => "bad_path",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    /// A lock-step octet client on a blocking socket; with `lose_ack`, the ACK of block 1 is
    /// "lost" once (the server must retransmit block 1).
    fn fetch(server: SocketAddr, name: &str, lose_ack: bool) -> Vec<u8> {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.send_to(format!("\0\x01{name}\0octet\0").as_bytes(), server)
            .unwrap();
        let (mut got, mut next, mut lost) = (Vec::new(), 1u16, false);
        let mut buf = [0u8; 600];
        loop {
            let (n, from) = s.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..2], b"\0\x03", "DATA expected: {:?}", &buf[..n]);
            let block = u16::from_be_bytes([buf[2], buf[3]]);
            if block == next {
                if lose_ack && block == 1 && !lost {
                    lost = true;
                    continue;
                }
                got.extend_from_slice(&buf[4..n]);
                next = next.wrapping_add(1);
            }
            let mut ack = vec![0, 4];
            ack.extend_from_slice(&block.to_be_bytes());
            s.send_to(&ack, from).unwrap();
            if block == next.wrapping_sub(1) && n - 4 < 512 {
                return got;
            }
        }
    }

    /// A service on loopback for files in `root`, without per-client limits.
    async fn loopback_service(
        root: &std::path::Path,
        metrics: &Arc<Metrics>,
        single_port: bool,
    ) -> TftpService {
        TftpService::new(
            UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            Arc::new(BootFiles::new(root.to_path_buf())),
            EngineConfig::default(),
            TftpLimits {
                max_transfers: 1024,
                max_per_client: 1024,
            },
            single_port,
            metrics.clone(),
        )
    }

    /// A service on loopback running on the files given (name, bytes), in a temporary root.
    pub(super) struct Running {
        _dir: tempfile::TempDir,
        pub metrics: Arc<Metrics>,
        pub addr: SocketAddr,
        stop: watch::Sender<bool>,
        server: tokio::task::JoinHandle<()>,
    }

    impl Running {
        pub async fn start(files: &[(&str, &[u8])], gso: bool) -> Running {
            Running::start_in(files, gso, false).await
        }

        /// The same, in single-port mode (every transfer served from the listening socket).
        pub async fn start_single_port(files: &[(&str, &[u8])]) -> Running {
            Running::start_in(files, true, true).await
        }

        async fn start_in(files: &[(&str, &[u8])], gso: bool, single_port: bool) -> Running {
            let dir = tempfile::tempdir().unwrap();
            for (name, bytes) in files {
                std::fs::write(dir.path().join(name), bytes).unwrap();
            }
            let metrics = Arc::new(Metrics::new());
            let svc = loopback_service(dir.path(), &metrics, single_port)
                .await
                .with_gso(gso);
            let addr = svc.local_addr().unwrap();
            let (stop, rx) = watch::channel(false);
            let server = tokio::spawn(svc.run(rx));
            Running {
                _dir: dir,
                metrics,
                addr,
                stop,
                server,
            }
        }

        /// Stop the service and return its metrics text.
        pub async fn stop(self) -> String {
            let _ = self.stop.send(true);
            self.server.await.unwrap();
            self.metrics.render(0)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn threaded_and_task_transfers_complete_and_retransmit() {
        let file: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 255) as u8).collect();
        let svc = Running::start(&[("f.bin", &file)], true).await;
        let addr = svc.addr;
        // More transfers at once than THREADED_TRANSFERS: both kinds run; two lose an ACK.
        let n = THREADED_TRANSFERS + 8;
        let got = tokio::task::spawn_blocking(move || {
            let clients: Vec<_> = (0..n)
                .map(|i| std::thread::spawn(move || fetch(addr, "f.bin", i % 20 == 0)))
                .collect();
            clients
                .into_iter()
                .map(|c| c.join().unwrap())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        assert_eq!(got.len(), n);
        for g in &got {
            assert!(*g == file, "a transfer differs ({} bytes)", g.len());
        }
        let text = svc.stop().await;
        let completed = text
            .lines()
            .find(|l| l.contains("kind=\"completed\"") && l.contains("detail=\"\""))
            .unwrap_or_default()
            .to_string();
        assert!(
            completed.ends_with(&format!(" {n}")),
            "completed counter: {completed:?}"
        );
    }
}

#[cfg(test)]
#[path = "tftp_gone_tests.rs"]
mod gone_tests;

#[cfg(test)]
mod windowed_tests {
    #![allow(clippy::unwrap_used)]
    use super::tests::Running;
    use super::*;
    use crate::tftp_send::tests::fetch_windowed;

    /// Windowed transfers (threaded and as tasks) send each window's blocks in GSO sends; the
    /// client still gets every block as its own datagram, the file intact, whether it ends in a
    /// short block or an empty one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn windows_go_out_in_gso_sends_and_arrive_as_blocks() {
        let (coalesced, blocks) = windowed_transfers(true).await;
        // Nearly every block goes in a GSO send (not a window's single block sent again), in
        // the threaded transfers and in the task transfers (8 of 40, a fifth of the blocks).
        assert!(
            coalesced * 10 > blocks * 9,
            "{coalesced} of {blocks} blocks in GSO sends"
        );
    }

    /// `tftp.gso = false`: one datagram per send, the same bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_gso_every_block_is_its_own_send() {
        let (coalesced, _) = windowed_transfers(false).await;
        assert_eq!(coalesced, 0);
    }

    /// 40 windowed transfers at once (windowsize 8 and 4); every file checked. Returns the
    /// coalesced-datagram counter and the number of blocks sent.
    async fn windowed_transfers(gso: bool) -> (u64, u64) {
        let odd: Vec<u8> = (0..300_001u32).map(|i| (i * 7 % 251) as u8).collect();
        // 199 full blocks and an empty one: the last window of 4 (197–200) ends in it.
        let even: Vec<u8> = (0..1024 * 199u32).map(|i| (i % 253) as u8).collect();
        let svc = Running::start(&[("odd.bin", &odd), ("even.bin", &even)], gso).await;
        let addr = svc.addr;
        let n = THREADED_TRANSFERS + 8;
        // Every transfer is open before any sends data: 8 of them run as tasks.
        let start = Arc::new(std::sync::Barrier::new(n));
        let blocks = (n as u64 / 2) * (odd.len() as u64 / 1024 + 1 + even.len() as u64 / 1024 + 1);
        tokio::task::spawn_blocking(move || {
            let clients: Vec<_> = (0..n)
                .map(|i| {
                    let start = start.clone();
                    std::thread::spawn(move || {
                        let start = Some(&*start);
                        if i % 2 == 0 {
                            (i, fetch_windowed(addr, "odd.bin", 1024, 8, start))
                        } else {
                            (i, fetch_windowed(addr, "even.bin", 1024, 4, start))
                        }
                    })
                })
                .collect();
            for c in clients {
                let (i, got) = c.join().unwrap();
                let want = if i % 2 == 0 { &odd } else { &even };
                assert!(got == *want, "transfer {i} differs ({} bytes)", got.len());
            }
        })
        .await
        .unwrap();
        let text = svc.stop().await;
        let coalesced = text
            .lines()
            .find(|l| l.starts_with("rackboot_tftp_coalesced_datagrams_total "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        (coalesced, blocks)
    }
}
