//! `make run`: a virtual rack on this machine (network namespaces, dnsmasq as the site DHCP
//! server, rackboot in proxy mode, N QEMU servers behind ipmi_sim / sushy-emulator BMCs), the
//! admin page forwarded to the host, and a scenario that makes the machines move. Ctrl-C (or
//! SIGTERM) tears everything down: VMs and peers killed by PID, namespaces deleted.

use clap::Parser;
use rackboot_e2e::rack::{BmcKind, Rack, RackSpec};
use rackboot_e2e::scenario::{Runner, Scenario, ScenarioError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "A virtual rack for rackboot: segment, site DHCP, appliance, VMs with BMCs")]
struct Args {
    /// Number of virtual servers (QEMU TCG; each takes one CPU core while it boots).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
    servers: u16,
    /// `demo` (accept all, provision two, release one), `none`, or a scenario file.
    #[arg(long, default_value = "demo")]
    scenario: String,
    /// Where the admin page and API are forwarded to on this host.
    #[arg(long, default_value = "127.0.0.1:8080")]
    admin_listen: SocketAddr,
    /// Working directory (wiped at start): logs, consoles, capture, rackboot's data.
    #[arg(long, default_value = "var/virtual-rack")]
    dir: PathBuf,
    /// Network namespace prefix (namespaces <prefix>sw, <prefix>site, <prefix>appl).
    #[arg(long, default_value = "vrack")]
    prefix: String,
    /// Guest RAM per VM in MiB.
    #[arg(long, default_value_t = 384)]
    vm_mem: u32,
    /// Exit after the scenario instead of keeping the rack up until Ctrl-C.
    #[arg(long)]
    exit_after_scenario: bool,
}

fn ts() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

/// SIGINT/SIGTERM are blocked in every thread and taken by one waiting thread, which raises
/// the stop flag; children get a clean signal mask (std resets it when spawning).
fn stop_on_signals() -> Result<Arc<AtomicBool>, nix::Error> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || loop {
        if set.wait().is_ok() {
            eprintln!("\n{} stopping: tearing the rack down…", ts());
            f.store(true, Ordering::SeqCst);
        }
    });
    Ok(flag)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "virtual-rack builds network namespaces and needs root: sudo make run\n\
             (to serve a real provisioning segment instead: make serve, or\n \
             rackboot serve --interface <provisioning NIC>)"
        );
        return ExitCode::from(2);
    }
    let scenario = match args.scenario.as_str() {
        "demo" => Scenario::demo(usize::from(args.servers)),
        "none" => Scenario { steps: vec![] },
        path => match std::fs::read_to_string(path) {
            Ok(text) => match Scenario::parse(&text) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{path}: {e}");
                    return ExitCode::from(2);
                }
            },
            Err(e) => {
                eprintln!("scenario {path}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let stop = match stop_on_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot take SIGINT/SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = std::env::current_dir()
        .map(|cwd| cwd.join(&args.dir))
        .unwrap_or(args.dir.clone());
    let spec = RackSpec {
        servers: usize::from(args.servers),
        admin_listen: args.admin_listen,
        vm_mem_mb: args.vm_mem,
        detach_children: true,
        ..RackSpec::default()
    };
    println!(
        "{} building the virtual rack in {} ({} servers)…",
        ts(),
        dir.display(),
        args.servers
    );
    let started = Instant::now();
    let rack = match Rack::start_at(&args.prefix, &dir, &spec) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("virtual rack: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_banner(&rack, &dir, started.elapsed());

    let stopped = || stop.load(Ordering::SeqCst);
    let mut log = |msg: &str| println!("{} {msg}", ts());
    let mut runner = Runner::new(&rack, &stopped, &mut log);
    let outcome = runner.run(&scenario);
    let code = match outcome {
        Ok(()) => {
            if !scenario.steps.is_empty() {
                println!(
                    "{} scenario done in {} s",
                    ts(),
                    started.elapsed().as_secs()
                );
            }
            ExitCode::SUCCESS
        }
        Err(ScenarioError::Stopped) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{} scenario failed: {e}", ts());
            eprintln!("logs: {}", dir.display());
            ExitCode::FAILURE
        }
    };
    if !args.exit_after_scenario && !stopped() {
        println!(
            "{} the rack stays up: drive it from the page or the CLI; Ctrl-C stops it",
            ts()
        );
        watch(&rack, &stopped);
    }
    drop(rack);
    println!(
        "{} rack torn down (VMs and peers stopped, namespaces deleted)",
        ts()
    );
    code
}

fn print_banner(rack: &Rack, dir: &std::path::Path, took: Duration) {
    let token = rack.token_file.display();
    println!(
        "\n  virtual rack up in {} s — segment 10.99.0.0/24: site DHCP (dnsmasq) 10.99.0.1, rackboot 10.99.0.2",
        took.as_secs()
    );
    for s in &rack.servers {
        let bmc = match s.bmc {
            BmcKind::Ipmi => "IPMI (ipmi_sim)",
            BmcKind::Redfish => "Redfish (sushy-emulator)",
        };
        let fw = match s.firmware {
            rackboot_e2e::qemu::Firmware::BiosIpxeRom => "BIOS (SeaBIOS, iPXE ROM)",
            rackboot_e2e::qemu::Firmware::UefiNativePxe => "UEFI (OVMF, native PXE)",
        };
        println!(
            "  {:7} {}  {:25} BMC {} {}",
            s.name, s.mac, fw, bmc, s.bmc_url
        );
    }
    println!(
        "\n  web page     {}\n  admin token  {token}\n  CLI          ./target/debug/rackboot machines list --server http://{} --token-file {token}\n  \
         consoles     {}/r1-uNN/serial.log   appliance log {}/rackboot.log   capture {}/segment.pcap\n",
        rack.admin_url(),
        rack.admin.addr,
        dir.display(),
        dir.display(),
        dir.display()
    );
}

/// Print state changes until stopped.
fn watch(rack: &Rack, stopped: &dyn Fn() -> bool) {
    let mut seen = std::collections::HashMap::new();
    while !stopped() {
        for s in &rack.servers {
            if let Ok(m) = rack.machine(&s.name) {
                let now = format!(
                    "{}/{}",
                    m["state"].as_str().unwrap_or("?"),
                    m["power"].as_str().unwrap_or("?")
                );
                if seen.get(&s.name) != Some(&now) {
                    println!("{} {}: {now}", ts(), s.name);
                    seen.insert(s.name.clone(), now);
                }
            }
        }
        for _ in 0..10 {
            if stopped() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
