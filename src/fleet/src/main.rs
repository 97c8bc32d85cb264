//! `rackboot-fleet`: boot N simulated PXE machines through a TAP device and report.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rackboot_fleet::client::Settings;
use rackboot_fleet::shell::{Fleet, Tap};
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
    tap: String,
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
    let tap = TunTapInterface::new(&a.tap, Medium::Ethernet)
        .with_context(|| format!("opening tap {}", a.tap))?;
    let mut wire = Tap(tap);
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut fleet = Fleet::new(build(&spec), salt);
    let start = Instant::now();
    let clock = move || start.elapsed();
    let limit = spec.ramp + settings.deadline + Duration::from_secs(5);
    fleet.run(&mut wire, &clock, limit);
    let wall = start.elapsed();
    let st = fleet.stats;
    let clients = fleet.into_clients();
    let report = Report::new(&clients);
    print!("{}", report.markdown(&a.label));
    println!(
        "\nsimulator: {:.2} s wall, {} frames in, {} out, {} not for any machine",
        wall.as_secs_f64(),
        st.frames_in,
        st.frames_out,
        st.frames_unrouted
    );
    if let Some(p) = &a.csv {
        std::fs::write(p, csv(&clients)).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.summary {
        let mut s = report.summary();
        s.push_str(&format!("wall_s={:.3}\n", wall.as_secs_f64()));
        std::fs::write(p, s).with_context(|| format!("writing {}", p.display()))?;
    }
    if report.booted < report.clients {
        std::process::exit(2);
    }
    Ok(())
}
