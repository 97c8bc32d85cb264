//! `rackboot-fleet`: boot N simulated PXE machines through a TAP device and report.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rackboot_fleet::client::Client;
use rackboot_fleet::client::Settings;
use rackboot_fleet::packet::PacketSocket;
use rackboot_fleet::shell::{Fleet, ShellStats, Tap, Wire};
use rackboot_fleet::stats::{csv, Report};
use rackboot_fleet::{build, parse_mix, FleetSpec};
use smoltcp::phy::{Medium, TunTapInterface};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "PXE client fleet simulator (boot storms against a real segment)"
)]
struct Args {
    /// TAP device to attach to (must exist in this network namespace, on the segment's bridge).
    #[arg(long)]
    tap: Option<String>,
    /// Interface(s) to attach to with AF_PACKET sockets instead: ends of veth pairs whose other
    /// ends are on the segment's bridge. Receives the servers' TCP bursts as GSO super-frames
    /// (one read per up to 64 KiB instead of per 1.5 KiB frame). Several, comma-separated: one
    /// thread per interface, each simulating its share of the machines (the bridge learns which
    /// MAC is behind which port).
    #[arg(long, value_delimiter = ',')]
    packet: Vec<String>,
    /// Number of machines.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Firmware mix: bios, efi7, efi9, http16, ipxe with weights, e.g. `bios=2,efi7=1,ipxe=1`.
    #[arg(long, default_value = "bios,efi7,efi9,http16,ipxe")]
    mix: String,
    /// Spread the power-on over this many milliseconds (0 = all at once).
    #[arg(long, default_value_t = 0)]
    ramp_ms: u64,
    /// Third byte of every MAC (distinct machines per run).
    #[arg(long, default_value_t = 1)]
    seed: u8,
    /// How long a client waits after the address offer for a ProxyDHCP offer.
    #[arg(long, default_value_t = 3000)]
    proxy_wait_ms: u64,
    /// Give up on a machine after this many seconds.
    #[arg(long, default_value_t = 600)]
    deadline_s: u64,
    /// Per-machine CSV (completion times, per-stage totals).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// `key=value` summary for scripts.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Receive window of each machine's HTTP connections, KiB.
    #[arg(long, default_value_t = 16)]
    http_window_kib: usize,
    /// Label printed in the report.
    #[arg(long, default_value = "fleet")]
    label: String,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mix = parse_mix(&a.mix).map_err(anyhow::Error::msg)?;
    let settings = Settings {
        proxy_wait: Duration::from_millis(a.proxy_wait_ms),
        deadline: Duration::from_secs(a.deadline_s),
        ..Settings::default()
    };
    let spec = FleetSpec {
        clients: a.clients,
        mix,
        ramp: Duration::from_millis(a.ramp_ms),
        seed: a.seed,
        settings,
    };
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let window = a.http_window_kib * 1024;
    let limit = spec.ramp + settings.deadline + Duration::from_secs(5);
    let run = |share: Vec<Client>, t: usize, wire: &mut dyn Wire, clock: &dyn Fn() -> Duration| {
        let mut fleet = Fleet::new(share, salt ^ (t as u64)).with_http_window(window);
        fleet.run(wire, clock, limit);
        (fleet.stats, fleet.into_clients())
    };
    let (start, done, k): (Instant, Vec<(ShellStats, Vec<Client>)>, usize) =
        match (&a.tap, a.packet.as_slice()) {
            (Some(_), [_, ..]) => anyhow::bail!("--tap and --packet exclude each other"),
            (None, []) => anyhow::bail!("--tap or --packet is required"),
            (Some(tap), []) => {
                let mut wire = Tap(TunTapInterface::new(tap, Medium::Ethernet)
                    .with_context(|| format!("opening tap {tap}"))?);
                let start = Instant::now();
                let clock = move || start.elapsed();
                (start, vec![run(build(&spec), 0, &mut wire, &clock)], 1)
            }
            (None, ifaces) => {
                let mut wires = Vec::new();
                for iface in ifaces {
                    wires.push(
                        PacketSocket::open(iface)
                            .with_context(|| format!("opening interface {iface}"))?,
                    );
                }
                // The machines, dealt round-robin to one simulator thread per wire.
                let k = wires.len();
                let mut shares: Vec<Vec<Client>> = wires.iter().map(|_| Vec::new()).collect();
                for (i, c) in build(&spec).into_iter().enumerate() {
                    if let Some(share) = shares.get_mut(i % k) {
                        share.push(c);
                    }
                }
                let start = Instant::now();
                let clock = move || start.elapsed();
                let done = std::thread::scope(|scope| {
                    let threads: Vec<_> = shares
                        .into_iter()
                        .zip(wires)
                        .enumerate()
                        .map(|(t, (share, sock))| {
                            let run = &run;
                            let clock = &clock;
                            scope.spawn(move || run(share, t, &mut sock.into_wire(), clock))
                        })
                        .collect();
                    threads
                        .into_iter()
                        .filter_map(|t| t.join().ok())
                        .collect::<Vec<_>>()
                });
                (start, done, k)
            }
        };
    anyhow::ensure!(done.len() == k, "a simulator thread panicked");
    let wall = start.elapsed();
    let mut st = ShellStats::default();
    let mut clients = Vec::new();
    for (s, c) in done {
        st.frames_in += s.frames_in;
        st.frames_out += s.frames_out;
        st.frames_unrouted += s.frames_unrouted;
        st.frames_oversized += s.frames_oversized;
        st.frames_dropped += s.frames_dropped;
        clients.extend(c);
    }
    let report = Report::new(&clients);
    print!("{}", report.markdown(&a.label));
    println!(
        "\nsimulator: {} thread(s), {:.2} s wall, {:.2} s CPU (user + system), {} frames in, {} \
         out, {} not for any machine \
         (with several threads, each also sees the broadcasts for the others' machines), {} \
         dropped by the simulator's sockets before it read them",
        k,
        wall.as_secs_f64(),
        cpu_seconds(),
        st.frames_in,
        st.frames_out,
        st.frames_unrouted,
        st.frames_dropped
    );
    if st.frames_oversized > 0 {
        println!(
            "\nwarning: {} UDP frames longer than the MTU reached the simulator and were dropped: \
             a server's UDP GSO datagrams, not cut into datagrams on the way (turn off \
             tx-udp-segmentation on the wire's bridge port: ethtool -K PORT tx-udp-segmentation off)",
            st.frames_oversized
        );
    }
    if let Some(p) = &a.csv {
        std::fs::write(p, csv(&clients)).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.summary {
        let mut s = report.summary();
        s.push_str(&format!("wall_s={:.3}\n", wall.as_secs_f64()));
        s.push_str(&format!("cpu_s={:.2}\n", cpu_seconds()));
        std::fs::write(p, s).with_context(|| format!("writing {}", p.display()))?;
    }
    if report.booted < report.clients {
        std::process::exit(2);
    }
    Ok(())
}

/// CPU time this process has used so far (all threads, user and system).
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let (a, b) = (u.user_time(), u.system_time());
        (a.tv_sec() + b.tv_sec()) as f64 + (a.tv_usec() + b.tv_usec()) as f64 / 1e6
    })
}
