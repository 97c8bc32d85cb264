//! `rackboot-agent`: see the crate docs of `rackboot_agent` and `boot-assets/README.md`.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use rackboot_agent::link::{Agent, AgentConfig, PowerMode};
use rackboot_agent::{cmdline, log};

const USAGE: &str = "\
usage: rackboot-agent [options]

Finds the appliance on the kernel command line (rackboot.appliance=<host:port>,
rackboot.machine=<id>, rackboot.token=<per-boot token>), connects to its AgentLink gRPC service, reports hardware,
heartbeats and executes its commands (wipe, reboot, power off, BMC user).

options:
  --cmdline FILE         kernel command line to read (default /proc/cmdline)
  --appliance HOST:PORT  override rackboot.appliance=
  --machine ID           override rackboot.machine=
  --token-file FILE      read the per-boot token from FILE instead of rackboot.token=
  --root DIR             root of /sys, /proc, /dev (default /; tests use fake trees)
  --disk PATH            wipe exactly PATH instead of the disks found under /sys/block
                         (repeatable; for tests and hand-picked devices; also
                         RACKBOOT_AGENT_DISKS=PATH[:PATH...])
  --allow-destructive    allow wipes, reboot and power-off outside the agent image
                         (the image has /etc/rackboot-agent-image)
  --dry-run-power        answer Reboot/PowerOff without doing them (tests)
  --heartbeat SECS       heartbeat interval (default 10)
  --once                 one session, then exit (non-zero if it failed)
  --facts                print the hardware report and exit
  --metal-provider ADDR  speak the Talos metal agent's protocol to ADDR (host:port) instead:
                         a reverse grpctunnel answering management.AgentService; also
                         chosen by metal.provider.address= on the command line when there
                         is no rackboot.appliance=. The machine id is the SMBIOS UUID
                         (--machine overrides it).
  -h, --help             this text
";

/// The marker file the agent image's build writes: destructive commands are allowed there.
const IMAGE_MARKER: &str = "etc/rackboot-agent-image";

struct Args {
    cmdline: PathBuf,
    appliance: Option<String>,
    machine: Option<String>,
    token_file: Option<PathBuf>,
    root: PathBuf,
    disks: Vec<PathBuf>,
    allow_destructive: bool,
    dry_run_power: bool,
    heartbeat: u64,
    once: bool,
    facts: bool,
    metal_provider: Option<String>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        cmdline: PathBuf::from("/proc/cmdline"),
        appliance: None,
        machine: None,
        token_file: None,
        root: PathBuf::from("/"),
        disks: Vec::new(),
        allow_destructive: false,
        dry_run_power: false,
        heartbeat: 10,
        once: false,
        facts: false,
        metal_provider: None,
    };
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--cmdline" => a.cmdline = val("--cmdline")?.into(),
            "--appliance" => a.appliance = Some(val("--appliance")?),
            "--machine" => a.machine = Some(val("--machine")?),
            "--token-file" => a.token_file = Some(val("--token-file")?.into()),
            "--root" => a.root = val("--root")?.into(),
            "--disk" => a.disks.push(val("--disk")?.into()),
            "--allow-destructive" => a.allow_destructive = true,
            "--dry-run-power" => a.dry_run_power = true,
            "--heartbeat" => {
                let v = val("--heartbeat")?;
                a.heartbeat = v
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or("--heartbeat: seconds > 0")?;
            }
            "--once" => a.once = true,
            "--facts" => a.facts = true,
            "--metal-provider" => a.metal_provider = Some(val("--metal-provider")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(env) = std::env::var_os("RACKBOOT_AGENT_DISKS") {
        a.disks
            .extend(std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()));
    }
    Ok(a)
}

/// The metal provider to dial, when the agent runs the metal-agent protocol.
fn metal_address(a: &Args) -> Option<String> {
    if a.metal_provider.is_some() {
        return a.metal_provider.clone();
    }
    let line = std::fs::read_to_string(&a.cmdline).ok()?;
    if a.appliance.is_some() || cmdline::parse(&line).is_ok() {
        return None;
    }
    cmdline::metal_provider(&line)
}

fn config(a: &Args) -> Result<AgentConfig, String> {
    if let Some(addr) = metal_address(a) {
        let hostport = rackboot_agent::metal::provider_uri(&addr)
            .map_err(|e| e.to_string())?
            .trim_start_matches("http://")
            .to_string();
        let machine = match &a.machine {
            Some(m) => m.clone(),
            None => rackboot_agent::facts::system_info(&a.root).uuid,
        };
        if machine.is_empty() {
            return Err("no SMBIOS UUID to use as the machine id (--machine)".into());
        }
        let mut cfg = AgentConfig::new(hostport, machine);
        apply_common(a, &mut cfg);
        return Ok(cfg);
    }
    let (appliance, machine, token) = match (&a.appliance, cmdline::read(&a.cmdline)) {
        (Some(app), Ok(p)) => (app.clone(), p.machine_id, p.token),
        (Some(app), Err(_)) => (app.clone(), String::new(), String::new()),
        (None, Ok(p)) => (p.appliance, p.machine_id, p.token),
        (None, Err(e)) => return Err(e.to_string()),
    };
    let token = match &a.token_file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| format!("--token-file {}: {e}", f.display()))?
            .trim()
            .to_string(),
        None => token,
    };
    cmdline::validate_appliance(&appliance).map_err(|e| e.to_string())?;
    let machine = a.machine.clone().unwrap_or(machine);
    let mut cfg = AgentConfig::new(appliance, machine);
    cfg.boot_token = token;
    apply_common(a, &mut cfg);
    Ok(cfg)
}

fn apply_common(a: &Args, cfg: &mut AgentConfig) {
    let in_image = Path::new("/").join(IMAGE_MARKER).exists();
    cfg.root = a.root.clone();
    cfg.disk_override = (!a.disks.is_empty()).then(|| a.disks.clone());
    cfg.allow_wipe = in_image || a.allow_destructive || cfg.disk_override.is_some();
    cfg.power = if a.dry_run_power {
        PowerMode::DryRun
    } else if in_image || a.allow_destructive {
        PowerMode::Execute
    } else {
        PowerMode::Refuse
    };
    cfg.heartbeat = Duration::from_secs(a.heartbeat);
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rackboot-agent: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.facts {
        let r = rackboot_agent::facts::gather(&args.root);
        println!("{r:#?}");
        return ExitCode::SUCCESS;
    }
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            log!("{e}");
            return ExitCode::from(2);
        }
    };
    log!(
        "version {} appliance={} machine={:?} token={} wipe={} power={:?}",
        rackboot_agent::VERSION,
        cfg.appliance,
        cfg.machine_id,
        if cfg.boot_token.is_empty() {
            "none"
        } else {
            "set"
        },
        if cfg.allow_wipe { "allowed" } else { "refused" },
        cfg.power
    );
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log!("starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = metal_address(&args) {
        return rt.block_on(metal(cfg, addr, args.once));
    }
    rt.block_on(async move {
        let agent = Agent::start(cfg);
        for t in rackboot_agent::link::wipe_targets(agent.config()) {
            log!("disk {} at {}", t.name, t.path.display());
        }
        if args.once {
            match agent.session().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log!("session: {}", rackboot_agent::link::error_chain(&e));
                    ExitCode::FAILURE
                }
            }
        } else {
            match agent.run().await {}
        }
    })
}

/// The metal-agent protocol: one tunnel session at a time, reconnecting with backoff (the stock
/// agent exits and is restarted by Talos; here the agent is its own supervisor).
async fn metal(cfg: AgentConfig, addr: String, once: bool) -> ExitCode {
    let cfg = std::sync::Arc::new(cfg);
    for t in rackboot_agent::link::wipe_targets(&cfg) {
        log!("disk {} at {}", t.name, t.path.display());
    }
    let mut wait = Duration::from_secs(1);
    loop {
        let started = std::time::Instant::now();
        let r = rackboot_agent::metal::session(cfg.clone(), &addr, &cfg.machine_id).await;
        match &r {
            Ok(()) => log!("metal tunnel closed by the provider"),
            Err(e) => log!("metal tunnel: {e}"),
        }
        if once {
            return if r.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        if started.elapsed() > Duration::from_secs(60) {
            wait = Duration::from_secs(1);
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}
