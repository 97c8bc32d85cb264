//! ProxyDHCP shell around the sans-IO core (`rackboot-dhcp`): two UDP sockets (67 and 4011,
//! `SO_REUSEADDR`, `SO_BROADCAST`, bound to the provisioning interface), each served by an OS
//! thread of its own with a blocking socket: a datagram is handed to [`rackboot_dhcp::handle`],
//! the reply sent where the core says, counters bumped, and the client's sighting passed to the
//! inventory recorder without waiting (a full queue drops the sighting, never the reply).
//!
//! Why threads and not tasks: during a boot storm the answer must not wait behind whatever the
//! async runtime is busy with (store writes, the lifecycle, HTTP); a blocking `recvmmsg` takes
//! everything queued (up to [`BATCH`] datagrams) in one syscall, with no readiness polling, and
//! the replies to a batch leave in one `sendmmsg`. Sightings are de-duplicated here (one per
//! machine per [`SIGHTING_INTERVAL`] unless what it says changes), so a storm of retransmissions
//! does not wake the recorder once per datagram.

use crate::inventory::Sighting;
use crate::metrics::Metrics;
use prometheus_client::metrics::counter::Counter;
use rackboot_dhcp::{ArrivalPort, Outcome, ProxyConfig};
use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// A machine's sighting is passed on at most this often unless its arch or UUID changes (the
/// recorder applies its own, longer interval on top).
pub const SIGHTING_INTERVAL: Duration = Duration::from_secs(5);
/// How often a serving thread looks at the stop flag when no datagram arrives.
const STOP_POLL: Duration = Duration::from_millis(200);
/// Datagrams taken from the socket per `recvmmsg` call, and the room for each (a DHCP packet
/// is at most 576 bytes unless the client raised option 57; anything longer is cut and then
/// refused as malformed, like a packet larger than the old single 4 KiB buffer).
const BATCH: usize = 32;
const DATAGRAM: usize = 4096;
/// Remembered sightings per thread before the table is cleared (a flood of made-up MACs).
const SIGHTINGS_REMEMBERED: usize = 100_000;

pub struct DhcpService {
    pub dhcp: tokio::net::UdpSocket,
    pub pxe: tokio::net::UdpSocket,
    pub config: ProxyConfig,
    pub metrics: Arc<Metrics>,
    pub sightings: mpsc::Sender<Sighting>,
}

impl DhcpService {
    /// Serve until `shutdown` changes (or its sender is dropped, or this future is dropped).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let blocking = |s: tokio::net::UdpSocket| {
            s.into_std().and_then(|s| {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(STOP_POLL))?;
                Ok(s)
            })
        };
        // Both sockets first: a failure starts no thread.
        let (dhcp, pxe) = match (blocking(self.dhcp), blocking(self.pxe)) {
            (Ok(d), Ok(p)) => (d, p),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "proxydhcp socket set-up failed");
                return;
            }
        };
        // The threads stop when this future ends, however it ends.
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let config = Arc::new(self.config);
        let mut threads = Vec::new();
        // One reader per socket: a second thread blocking on the same socket did not raise the
        // ceiling (bench/dhcp.sh) and cost more CPU per offer (contention on the receive queue).
        for (port, sock, name) in [
            (ArrivalPort::Dhcp, dhcp, "rackboot-dhcp67"),
            (ArrivalPort::Pxe, pxe, "rackboot-dhcp4011"),
        ] {
            let worker = Worker {
                sock,
                port,
                config: config.clone(),
                metrics: self.metrics.clone(),
                sightings: self.sightings.clone(),
                counters: HashMap::new(),
                recent: HashMap::new(),
                out: Vec::with_capacity(BATCH),
            };
            let flag = stop.0.clone();
            match std::thread::Builder::new()
                .name(name.into())
                .spawn(move || worker.serve(&flag))
            {
                Ok(t) => threads.push(t),
                Err(e) => tracing::error!(error = %e, "proxydhcp thread not started"),
            }
        }
        let _ = shutdown.changed().await;
        drop(stop);
        // The threads notice within STOP_POLL; wait for them off the runtime.
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Sets the serving threads' stop flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What one sighting said (compared to decide whether the next one is news).
type Said = (Instant, Option<u16>, Option<[u8; 16]>);

struct Worker {
    sock: UdpSocket,
    port: ArrivalPort,
    config: Arc<ProxyConfig>,
    metrics: Arc<Metrics>,
    sightings: mpsc::Sender<Sighting>,
    /// Counter handles by (kind, detail): the family lookup allocates its label strings, so it
    /// runs once per distinct pair instead of once per datagram.
    counters: HashMap<(&'static str, &'static str, Option<u16>), Counter>,
    recent: HashMap<[u8; 6], Said>,
    /// Replies to the datagrams of the current batch, sent together at its end.
    out: Vec<(Vec<u8>, SocketAddrV4)>,
}

impl Worker {
    fn serve(mut self, stop: &AtomicBool) {
        use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrIn};
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;
        let fd = self.sock.as_raw_fd();
        let mut bufs = vec![[0u8; DATAGRAM]; BATCH];
        let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
        let mut send_headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
        let mut got: Vec<(usize, Option<SocketAddrV4>)> = Vec::with_capacity(BATCH);
        while !stop.load(Ordering::Relaxed) {
            got.clear();
            // Whatever is queued, up to BATCH datagrams, in one call (blocks for the first,
            // up to the socket's read timeout).
            let r = {
                let mut iovs: Vec<[IoSliceMut; 1]> =
                    bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
                recvmmsg(
                    fd,
                    &mut headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                )
                .map(|msgs| {
                    for m in msgs {
                        let from = m.address.map(|a| SocketAddrV4::new(a.ip(), a.port()));
                        got.push((m.bytes, from));
                    }
                })
            };
            match r {
                Ok(()) => {
                    for (i, (n, from)) in got.iter().enumerate() {
                        let (Some(from), Some(b)) = (from, bufs.get(i)) else {
                            continue;
                        };
                        if let Some(payload) = b.get(..*n) {
                            self.handle(payload, *from);
                        }
                    }
                    self.flush(&mut send_headers);
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    tracing::debug!(error = %e, port = ?self.port, "proxydhcp recv");
                    // Not a busy loop when the socket keeps failing.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Bump the `dhcp` counter {kind, detail}; detail is `reason` if not empty, else the arch.
    fn count(&mut self, kind: &'static str, reason: &'static str, arch: Option<u16>) {
        let metrics = &self.metrics;
        self.counters
            .entry((kind, reason, arch))
            .or_insert_with(|| {
                let detail = match arch {
                    Some(a) if reason.is_empty() => a.to_string(),
                    _ => reason.to_string(),
                };
                metrics
                    .dhcp
                    .get_or_create(&crate::metrics::KindLabels {
                        kind: kind.to_string().into(),
                        detail: detail.into(),
                    })
                    .clone()
            })
            .inc();
    }

    /// Send the batch's replies: one `sendmmsg`, then one by one whatever it did not take (so
    /// each failure is counted and logged with its destination).
    fn flush(
        &mut self,
        headers: &mut nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrIn>,
    ) {
        use nix::sys::socket::{sendmmsg, MsgFlags, SockaddrIn};
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;
        let mut taken = 0;
        if self.out.len() > 1 {
            let iovs: Vec<[IoSlice; 1]> = self.out.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
            let addrs: Vec<Option<SockaddrIn>> = self
                .out
                .iter()
                .map(|(_, d)| Some(SockaddrIn::from(*d)))
                .collect();
            let none: [nix::sys::socket::ControlMessage; 0] = [];
            if let Ok(r) = sendmmsg(
                self.sock.as_raw_fd(),
                headers,
                &iovs,
                addrs,
                none,
                MsgFlags::empty(),
            ) {
                taken = r.count();
            }
        }
        let rest: Vec<_> = self.out.drain(..).skip(taken).collect();
        for (bytes, dest) in rest {
            if let Err(e) = self.sock.send_to(&bytes, SocketAddr::V4(dest)) {
                self.count("send_failed", "", None);
                tracing::warn!(error = %e, %dest, "proxydhcp reply not sent");
            }
        }
    }

    fn handle(&mut self, payload: &[u8], from: SocketAddrV4) {
        let d = rackboot_dhcp::handle(payload, self.port, from, &self.config);
        let arch = d.seen.as_ref().and_then(|s| s.arch);
        match &d.outcome {
            Outcome::Ignored(reason) => {
                let kind = if reason.label() == "malformed" {
                    "malformed"
                } else {
                    "ignored"
                };
                self.count(kind, reason.label(), None);
                tracing::trace!(%from, reason = reason.label(), "dhcp ignored");
            }
            o => self.count(o.label(), "", arch),
        }
        if let Some(reply) = d.reply {
            tracing::debug!(%from, dest = %reply.dest, outcome = d.outcome.label(), arch, "proxydhcp reply");
            self.out.push((reply.bytes, reply.dest));
        }
        if let Some(seen) = d.seen {
            let now = Instant::now();
            let news = match self.recent.get(&seen.mac) {
                Some((at, a, u)) => {
                    now.saturating_duration_since(*at) >= SIGHTING_INTERVAL
                        || *a != seen.arch
                        || *u != seen.uuid
                }
                None => true,
            };
            if !news {
                return;
            }
            let s = Sighting {
                mac: seen.mac,
                uuid: seen.uuid,
                arch: seen.arch,
                vendor_class: Some(seen.vendor_class),
                via: "dhcp",
                note: None,
            };
            if self.sightings.try_send(s).is_err() {
                self.count("sighting_dropped", "queue_full", None);
                return;
            }
            if self.recent.len() >= SIGHTINGS_REMEMBERED {
                self.recent.clear();
            }
            self.recent.insert(seen.mac, (now, seen.arch, seen.uuid));
        }
    }
}
