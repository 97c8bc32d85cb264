//! `rackboot-dhcp-load`: an open-loop ProxyDHCP load generator (what perfdhcp does, without its
//! ~30 k packets/s ceiling on this machine). Acts as a DHCP relay: relayed PXE DISCOVERs
//! (giaddr = `--relay`) from `--clients` distinct machines go to `--server`:67 at `--rate` per
//! second for `--seconds`; the replies come back to the relay's port 67. Prints `key=value`
//! lines: sent, offers received, offers/s, loss and the DISCOVER→OFFER delay percentiles.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rackboot_fleet::dhcp::{client_packet, Fields, Identity, Reply, DISCOVER, OFFER};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "ProxyDHCP load generator (relayed PXE DISCOVERs, open loop)"
)]
struct Args {
    /// The ProxyDHCP server (port 67).
    #[arg(long)]
    server: Ipv4Addr,
    /// This host's address: giaddr of every DISCOVER; replies arrive on its port 67.
    #[arg(long)]
    relay: Ipv4Addr,
    /// DISCOVERs per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Distinct machines (MAC/UUID), used round-robin.
    #[arg(long, default_value_t = 1000)]
    clients: u32,
    /// Client system architecture (option 93).
    #[arg(long, default_value_t = 7)]
    arch: u16,
}

/// Send times by xid slot (ns since start + 1; 0 = free), so the receiver can time each offer.
const SLOTS: usize = 1 << 20;
/// Datagrams per `sendmmsg` / `recvmmsg`: the generator must not be what limits the rate.
const BATCH: usize = 64;
/// Receive buffer asked for (with CAP_NET_ADMIN, above `rmem_max`): offers arriving while the
/// receiving thread waits for the core it shares with the sender must queue, not be dropped
/// here and counted against the server.
const RCVBUF: usize = 64 << 20;

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let sock = UdpSocket::bind(SocketAddrV4::new(a.relay, 67))
        .with_context(|| format!("binding {}:67", a.relay))?;
    {
        use nix::sys::socket::{setsockopt, sockopt};
        if setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF).is_err() {
            setsockopt(&sock, sockopt::RcvBuf, &RCVBUF).context("setting SO_RCVBUF")?;
        }
    }
    let recv = sock.try_clone().context("cloning the socket")?;
    recv.set_read_timeout(Some(Duration::from_millis(100)))
        .context("read timeout")?;
    let dest = SocketAddrV4::new(a.server, 67);
    let packets: Vec<Vec<u8>> = (0..a.clients.max(1))
        .map(|i| discover(i, a.arch, a.relay))
        .collect();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..SLOTS).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();

    let receiver = {
        let (sent_at, done) = (sent_at.clone(), done.clone());
        std::thread::spawn(move || {
            use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrIn};
            use std::io::IoSliceMut;
            use std::os::fd::AsRawFd;
            let mut bufs = vec![[0u8; 1500]; BATCH];
            let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
            let mut lens: Vec<usize> = Vec::with_capacity(BATCH);
            let mut delays_us: Vec<u32> = Vec::new();
            let (mut other, mut late) = (0u64, 0u64);
            let mut idle_since: Option<Instant> = None;
            loop {
                lens.clear();
                // Whatever is queued, up to BATCH offers, in one call (blocks for the first, up to
                // the read timeout).
                let r = {
                    let mut iovs: Vec<[IoSliceMut; 1]> =
                        bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
                    recvmmsg(
                        recv.as_raw_fd(),
                        &mut headers,
                        iovs.iter_mut(),
                        MsgFlags::MSG_WAITFORONE,
                        None,
                    )
                    .map(|msgs| lens.extend(msgs.map(|m| m.bytes)))
                };
                match r {
                    Ok(()) => {
                        idle_since = None;
                        let now = start.elapsed().as_nanos() as u64 + 1;
                        for (buf, n) in bufs.iter().zip(&lens) {
                            let Some(r) = buf.get(..*n).and_then(Reply::parse) else {
                                other += 1;
                                continue;
                            };
                            if r.msg_type != OFFER {
                                other += 1;
                                continue;
                            }
                            let slot = &sent_at[r.xid as usize % SLOTS];
                            let t = slot.swap(0, Ordering::Relaxed);
                            if t == 0 {
                                late += 1;
                                continue;
                            }
                            delays_us.push(((now.saturating_sub(t)) / 1000) as u32);
                        }
                    }
                    Err(_) => {
                        if done.load(Ordering::Relaxed) {
                            // Stop 500 ms after the last offer once sending is over.
                            let t = *idle_since.get_or_insert_with(Instant::now);
                            if t.elapsed() >= Duration::from_millis(500) {
                                break;
                            }
                        }
                    }
                }
            }
            (delays_us, other, late)
        })
    };

    // Sender: every half millisecond, catch up to rate × elapsed, up to BATCH DISCOVERs per
    // `sendmmsg`.
    let total = a.rate * a.seconds;
    let mut sent = 0u64;
    let mut send_errors = 0u64;
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let mut send_headers =
        nix::sys::socket::MultiHeaders::<nix::sys::socket::SockaddrIn>::preallocate(BATCH, None);
    while sent < total {
        let due = (start.elapsed().as_secs_f64() * a.rate as f64) as u64;
        let due = due.min(total);
        while sent < due {
            batch.clear();
            let first = sent;
            while sent < due && batch.len() < BATCH {
                let xid = (sent as u32).wrapping_add(1);
                let i = (sent % u64::from(a.clients.max(1))) as usize;
                let Some(p) = packets.get(i) else { break };
                let mut p = p.clone();
                if let Some(x) = p.get_mut(4..8) {
                    x.copy_from_slice(&xid.to_be_bytes());
                }
                batch.push(p);
                sent += 1;
            }
            if batch.is_empty() {
                break;
            }
            let at = start.elapsed().as_nanos() as u64 + 1;
            for k in first..sent {
                let xid = (k as u32).wrapping_add(1);
                sent_at[xid as usize % SLOTS].store(at, Ordering::Relaxed);
            }
            send_errors += send_batch(&sock, &mut send_headers, &batch, dest);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let send_secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let (mut delays, other, late) = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver thread panicked"))?;
    delays.sort_unstable();
    let pct = |p: f64| -> f64 {
        if delays.is_empty() {
            return 0.0;
        }
        let i = ((delays.len() as f64 - 1.0) * p).round() as usize;
        f64::from(delays.get(i).copied().unwrap_or(0)) / 1000.0
    };
    let got = delays.len() as u64;
    println!("rate={}", a.rate);
    println!("sent={sent}");
    println!("send_errors={send_errors}");
    println!("send_seconds={send_secs:.3}");
    println!("offers={got}");
    println!("offers_per_s={:.0}", got as f64 / send_secs);
    println!("lost={}", sent.saturating_sub(got));
    println!("other_replies={other}");
    println!("unmatched_offers={late}");
    println!("delay_p50_ms={:.3}", pct(0.5));
    println!("delay_p99_ms={:.3}", pct(0.99));
    println!("delay_max_ms={:.3}", pct(1.0));
    Ok(())
}

/// Send `batch` to `dest` with `sendmmsg` (one by one for whatever it did not take); returns the
/// number of datagrams that could not be sent.
fn send_batch(
    sock: &UdpSocket,
    headers: &mut nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrIn>,
    batch: &[Vec<u8>],
    dest: SocketAddrV4,
) -> u64 {
    use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, SockaddrIn};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    let iovs: Vec<[IoSlice; 1]> = batch.iter().map(|b| [IoSlice::new(b)]).collect();
    let addrs: Vec<Option<SockaddrIn>> =
        batch.iter().map(|_| Some(SockaddrIn::from(dest))).collect();
    let none: [ControlMessage; 0] = [];
    let taken = sendmmsg(
        sock.as_raw_fd(),
        headers,
        &iovs,
        addrs,
        none,
        MsgFlags::empty(),
    )
    .map(|r| r.count())
    .unwrap_or(0);
    let mut failed = 0;
    for p in batch.iter().skip(taken) {
        if sock.send_to(p, dest).is_err() {
            failed += 1;
        }
    }
    failed
}

fn discover(i: u32, arch: u16, relay: Ipv4Addr) -> Vec<u8> {
    let b = i.to_be_bytes();
    let mut uuid = [0u8; 16];
    uuid[..4].copy_from_slice(&b);
    uuid[4] = 0xd1;
    let id = Identity {
        mac: [0x02, 0xd1, b[0], b[1], b[2], b[3]],
        uuid,
        arch,
        vendor_class: format!("PXEClient:Arch:{arch:05}:UNDI:003000"),
        undi: (3, 0),
        ipxe: false,
    };
    let mut p = client_packet(&id, 0, 0, DISCOVER, Fields::default());
    // As a relay agent forwards it: hops 1, giaddr set, no broadcast flag needed.
    if let Some(h) = p.get_mut(3) {
        *h = 1;
    }
    if let Some(g) = p.get_mut(24..28) {
        g.copy_from_slice(&relay.octets());
    }
    p
}
