//! The gRPC session with the appliance: one `AgentLink/Connect` bidirectional stream.
//!
//! A session sends `Hello` and a `HardwareReport`, then heartbeats every
//! [`AgentConfig::heartbeat`] while commands from the appliance run one at a time on an
//! executor that outlives sessions: a wipe keeps going while the link is down, its result is
//! sent again on the next session, and a command id that is repeated (the appliance retrying
//! after a reconnect) is answered from the ledger instead of being run twice.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rackboot_proto::agent::v1::{
    agent_link_client::AgentLinkClient, agent_message, appliance_message, command, AgentMessage,
    Command, CommandResult, HardwareReport, Heartbeat, Hello, Progress,
};
use serde_json::json;
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

use crate::{bmc, facts, wipe};

/// What the agent does with `Reboot` / `PowerOff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerMode {
    /// `reboot(2)` after sending the result (in the agent image).
    Execute,
    /// Answer ok without doing anything (tests).
    DryRun,
    /// Answer with an error (not in the agent image: never reboot a developer's machine).
    Refuse,
}

/// How the agent runs. `Debug` never shows the boot token.
#[derive(Clone)]
pub struct AgentConfig {
    /// `host:port` of the appliance.
    pub appliance: String,
    /// `rackboot.machine=` from the command line.
    pub machine_id: String,
    /// `rackboot.token=` from the command line: sent in `Hello`, never logged.
    pub boot_token: String,
    /// Root of `/sys`, `/proc`, `/dev` (`/` except in tests).
    pub root: PathBuf,
    /// Wipe exactly these paths instead of the disks under `<root>/sys/block` (tests, and
    /// operators wiping a chosen device by hand).
    pub disk_override: Option<Vec<PathBuf>>,
    /// Wipes are allowed (in the image, or with a disk override, or `--allow-destructive`).
    pub allow_wipe: bool,
    /// Reboot/power-off behaviour.
    pub power: PowerMode,
    /// Heartbeat interval (10 s).
    pub heartbeat: Duration,
    /// Wait between sending a power command's result and acting, so the result reaches the
    /// appliance.
    pub power_grace: Duration,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("appliance", &self.appliance)
            .field("machine_id", &self.machine_id)
            .field("boot_token", &"<redacted>")
            .field("root", &self.root)
            .field("disk_override", &self.disk_override)
            .field("allow_wipe", &self.allow_wipe)
            .field("power", &self.power)
            .field("heartbeat", &self.heartbeat)
            .field("power_grace", &self.power_grace)
            .finish()
    }
}

impl AgentConfig {
    /// Defaults for `appliance`/`machine_id`: root `/`, no override, nothing destructive.
    pub fn new(appliance: impl Into<String>, machine_id: impl Into<String>) -> Self {
        Self {
            appliance: appliance.into(),
            machine_id: machine_id.into(),
            boot_token: String::new(),
            root: PathBuf::from("/"),
            disk_override: None,
            allow_wipe: false,
            power: PowerMode::Refuse,
            heartbeat: Duration::from_secs(10),
            power_grace: Duration::from_secs(2),
        }
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The appliance address is not a valid URI.
    #[error("appliance address {addr:?}: {source}")]
    Address {
        /// The address.
        addr: String,
        /// The parse error.
        source: tonic::transport::Error,
    },
    /// TCP/HTTP2 connection failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// The `Connect` call was refused.
    #[error("AgentLink/Connect: {0}")]
    Rpc(tonic::Status),
    /// The stream from the appliance broke.
    #[error("stream from the appliance: {0}")]
    Stream(tonic::Status),
    /// The appliance ended the stream.
    #[error("the appliance closed the stream")]
    Closed,
}

type Outbox = Arc<Mutex<Option<mpsc::Sender<AgentMessage>>>>;

#[derive(Default)]
struct Ledger {
    pending: HashSet<u64>,
    /// Result and whether it was handed to a live session.
    done: HashMap<u64, (CommandResult, bool)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn msg(m: agent_message::Msg) -> AgentMessage {
    AgentMessage { msg: Some(m) }
}

/// The agent: a command executor plus sessions to the appliance.
pub struct Agent {
    cfg: Arc<AgentConfig>,
    outbox: Outbox,
    ledger: Arc<Mutex<Ledger>>,
    commands: mpsc::UnboundedSender<Command>,
    started: Instant,
}

impl Agent {
    /// Starts the executor (needs a tokio runtime).
    pub fn start(cfg: AgentConfig) -> Self {
        let cfg = Arc::new(cfg);
        let outbox: Outbox = Arc::default();
        let ledger: Arc<Mutex<Ledger>> = Arc::default();
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(executor(cfg.clone(), rx, outbox.clone(), ledger.clone()));
        Self {
            cfg,
            outbox,
            ledger,
            commands,
            started: Instant::now(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// One session: connect, hello, report, then heartbeats and commands until the stream ends.
    pub async fn session(&self) -> Result<(), LinkError> {
        let addr = self.cfg.appliance.clone();
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|source| LinkError::Address {
                addr: addr.clone(),
                source,
            })?
            .connect_timeout(Duration::from_secs(10))
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| LinkError::Connect { addr, source })?;
        let mut client = AgentLinkClient::new(channel);

        let cfg = self.cfg.clone();
        let (hello, report) = tokio::task::spawn_blocking(move || hello_and_report(&cfg))
            .await
            .unwrap_or_else(|e| {
                log!("gathering facts failed: {e}");
                hello_and_report(&self.cfg)
            });
        log!(
            "connected to {}; hello machine={:?} uuid={:?} mac={:?}; {} disk(s), {} nic(s)",
            self.cfg.appliance,
            hello.machine_id,
            hello.uuid,
            hello.boot_mac,
            report.disks.len(),
            report.nics.len()
        );
        let (tx, rx) = mpsc::channel::<AgentMessage>(64);
        // The channel is empty and owned here: these cannot fail.
        let _ = tx.try_send(msg(agent_message::Msg::Hello(hello)));
        let _ = tx.try_send(msg(agent_message::Msg::Report(report)));
        let response = client
            .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(LinkError::Rpc)?;
        let mut inbound = response.into_inner();

        // Hand the executor this session, and re-send results the last session missed.
        *lock(&self.outbox) = Some(tx.clone());
        let undelivered: Vec<CommandResult> = {
            let mut l = lock(&self.ledger);
            l.done
                .values_mut()
                .filter(|(_, delivered)| !*delivered)
                .map(|(r, delivered)| {
                    *delivered = true;
                    r.clone()
                })
                .collect()
        };
        for r in undelivered {
            let _ = tx.send(msg(agent_message::Msg::Result(r))).await;
        }

        let mut tick = tokio::time::interval(self.cfg.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate
        let end = loop {
            tokio::select! {
                _ = tick.tick() => {
                    let uptime = facts::uptime_secs(&self.cfg.root)
                        .unwrap_or_else(|| self.started.elapsed().as_secs());
                    let hb = msg(agent_message::Msg::Heartbeat(Heartbeat { uptime_secs: uptime }));
                    if tx.send(hb).await.is_err() {
                        break Err(LinkError::Closed);
                    }
                }
                m = inbound.message() => match m {
                    Ok(Some(m)) => match m.msg {
                        Some(appliance_message::Msg::Command(c)) => self.accept(c, &tx).await,
                        None => log!("empty message from the appliance (newer protocol?)"),
                    },
                    Ok(None) => break Err(LinkError::Closed),
                    Err(s) => break Err(LinkError::Stream(s)),
                },
            }
        };
        *lock(&self.outbox) = None;
        end
    }

    async fn accept(&self, c: Command, tx: &mpsc::Sender<AgentMessage>) {
        enum Action {
            Resend(CommandResult),
            Ignore,
            Queue,
        }
        let action = {
            let mut l = lock(&self.ledger);
            if let Some((r, _)) = l.done.get(&c.id) {
                Action::Resend(r.clone())
            } else if !l.pending.insert(c.id) {
                Action::Ignore
            } else {
                Action::Queue
            }
        };
        match action {
            Action::Resend(r) => {
                log!("command {} already done: sending its result again", c.id);
                let _ = tx.send(msg(agent_message::Msg::Result(r))).await;
            }
            Action::Ignore => log!("command {} already queued or running", c.id),
            Action::Queue => {
                log!("command {} received: {}", c.id, describe(&c));
                if self.commands.send(c).is_err() {
                    log!("executor gone: command dropped");
                }
            }
        }
    }

    /// Sessions forever, with exponential backoff (1 s doubling to 30 s, ±25 % jitter; back to
    /// 1 s after a session that lasted a minute).
    pub async fn run(&self) -> std::convert::Infallible {
        let mut backoff = Duration::from_secs(1);
        loop {
            let t0 = Instant::now();
            match self.session().await {
                Ok(()) => log!("session ended"),
                Err(e) => log!("session: {}", error_chain(&e)),
            }
            if t0.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_secs(1);
            }
            let d = jitter(backoff);
            log!("reconnecting in {:.1}s", d.as_secs_f64());
            tokio::time::sleep(d).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

/// `Hello` and `HardwareReport` from the facts under `cfg.root` (blocking: reads files and
/// may run `ipmitool`).
pub fn hello_and_report(cfg: &AgentConfig) -> (Hello, HardwareReport) {
    let root = &cfg.root;
    let mut report = facts::gather(root);
    if let Some(b) = report.bmc.as_mut().filter(|b| b.present) {
        if let Some((ip, mac)) = bmc::lan_info(root) {
            b.ip = ip;
            b.mac = mac;
        }
    }
    let hello = Hello {
        machine_id: cfg.machine_id.clone(),
        uuid: report
            .system
            .as_ref()
            .map(|s| s.uuid.clone())
            .unwrap_or_default(),
        boot_mac: facts::boot_mac(&report.nics),
        agent_version: crate::VERSION.to_string(),
        boot_token: cfg.boot_token.clone(),
    };
    (hello, report)
}

/// `e: cause: cause…` (tonic's transport errors say little without their sources).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    // 0.75 ..= 1.25
    let f = 0.75 + f64::from(nanos % 1000) / 2000.0;
    d.mul_f64(f)
}

fn describe(c: &Command) -> &'static str {
    match &c.kind {
        Some(command::Kind::Wipe(w)) if w.full => "wipe (full)",
        Some(command::Kind::Wipe(_)) => "wipe (fast)",
        Some(command::Kind::Reboot(_)) => "reboot",
        Some(command::Kind::PowerOff(_)) => "power off",
        Some(command::Kind::SetBmcUser(_)) => "set BMC user",
        None => "unknown",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    Reboot,
    Off,
}

async fn send(outbox: &Outbox, m: AgentMessage) -> bool {
    let tx = lock(outbox).clone();
    match tx {
        Some(tx) => tx.send(m).await.is_ok(),
        None => false,
    }
}

async fn executor(
    cfg: Arc<AgentConfig>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    outbox: Outbox,
    ledger: Arc<Mutex<Ledger>>,
) {
    while let Some(c) = rx.recv().await {
        let id = c.id;
        let what = describe(&c);
        let (result, power) = execute(&cfg, c, &outbox).await;
        if result.ok {
            log!("command {id} ({what}) done");
        } else {
            log!("command {id} ({what}) failed: {}", result.error);
        }
        let ok = result.ok;
        let delivered = send(&outbox, msg(agent_message::Msg::Result(result.clone()))).await;
        {
            let mut l = lock(&ledger);
            l.pending.remove(&id);
            l.done.insert(id, (result, delivered));
        }
        if let (true, Some(p)) = (ok, power) {
            tokio::time::sleep(cfg.power_grace).await;
            act(p);
        }
    }
}

fn fail(id: u64, error: impl Into<String>) -> CommandResult {
    CommandResult {
        command_id: id,
        ok: false,
        error: error.into(),
        detail_json: String::new(),
    }
}

/// Run one command outside a session (the metal-agent protocol): the result, and a power
/// action to carry out after the answer went out.
pub(crate) async fn execute_detached(
    cfg: &Arc<AgentConfig>,
    c: Command,
) -> (CommandResult, Option<PowerAction>) {
    let outbox: Outbox = Arc::default();
    let (r, p) = execute(cfg, c, &outbox).await;
    (r, p.map(PowerAction))
}

/// A reboot or power-off to do later ([`PowerAction::act`]).
#[derive(Debug)]
pub(crate) struct PowerAction(Power);

impl PowerAction {
    pub(crate) fn act(self) {
        act(self.0);
    }
}

async fn execute(
    cfg: &Arc<AgentConfig>,
    c: Command,
    outbox: &Outbox,
) -> (CommandResult, Option<Power>) {
    let id = c.id;
    match c.kind {
        None => (fail(id, "unknown command (newer appliance?)"), None),
        Some(command::Kind::Wipe(w)) => (wipe_disks(cfg, id, w.full, outbox).await, None),
        Some(command::Kind::Reboot(_)) => power(cfg, id, Power::Reboot),
        Some(command::Kind::PowerOff(_)) => power(cfg, id, Power::Off),
        Some(command::Kind::SetBmcUser(u)) => {
            let root = cfg.root.clone();
            let r = tokio::task::spawn_blocking(move || {
                bmc::set_user(&root, &u.username, &u.password, u.slot)
            })
            .await;
            let r = match r {
                Ok(Ok(d)) => CommandResult {
                    command_id: id,
                    ok: true,
                    error: String::new(),
                    detail_json: serde_json::to_string(&d).unwrap_or_default(),
                },
                Ok(Err(e)) => fail(id, e.to_string()),
                Err(e) => fail(id, format!("BMC task failed: {e}")),
            };
            (r, None)
        }
    }
}

fn power(cfg: &AgentConfig, id: u64, p: Power) -> (CommandResult, Option<Power>) {
    let action = match p {
        Power::Reboot => "reboot",
        Power::Off => "power_off",
    };
    match cfg.power {
        PowerMode::Refuse => (
            fail(
                id,
                format!("refusing to {action}: not running in the rackboot agent image"),
            ),
            None,
        ),
        PowerMode::DryRun => (
            CommandResult {
                command_id: id,
                ok: true,
                error: String::new(),
                detail_json: json!({"action": action, "dry_run": true}).to_string(),
            },
            None,
        ),
        PowerMode::Execute => {
            if !nix::unistd::geteuid().is_root() {
                return (fail(id, format!("cannot {action}: not root")), None);
            }
            (
                CommandResult {
                    command_id: id,
                    ok: true,
                    error: String::new(),
                    detail_json:
                        json!({"action": action, "in_secs": cfg.power_grace.as_secs_f64()})
                            .to_string(),
                },
                Some(p),
            )
        }
    }
}

/// Syncs and reboots or powers off now (`reboot(2)`).
fn act(p: Power) {
    use nix::sys::reboot::{reboot, RebootMode};
    nix::unistd::sync();
    let mode = match p {
        Power::Reboot => RebootMode::RB_AUTOBOOT,
        Power::Off => RebootMode::RB_POWER_OFF,
    };
    log!(
        "{}",
        if p == Power::Reboot {
            "rebooting"
        } else {
            "powering off"
        }
    );
    let Err(e) = reboot(mode);
    log!("reboot(2) failed: {e}");
}

/// The disks a wipe writes to: the override, or every non-empty disk under `<root>/sys/block`.
pub fn wipe_targets(cfg: &AgentConfig) -> Vec<wipe::Target> {
    match &cfg.disk_override {
        Some(paths) => paths
            .iter()
            .map(|p| wipe::Target {
                name: p
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                path: p.clone(),
            })
            .collect(),
        None => facts::disks(&cfg.root)
            .into_iter()
            .filter(|d| d.disk.size_bytes > 0)
            .map(|d| wipe::Target {
                name: d.disk.name,
                path: d.dev_path,
            })
            .collect(),
    }
}

async fn wipe_disks(cfg: &Arc<AgentConfig>, id: u64, full: bool, outbox: &Outbox) -> CommandResult {
    if !cfg.allow_wipe {
        return fail(
            id,
            "refusing to wipe: not running in the rackboot agent image (use --disk or \
             --allow-destructive)",
        );
    }
    let outbox = outbox.clone();
    let cfg = cfg.clone();
    let job = tokio::task::spawn_blocking(move || {
        if cfg.disk_override.is_none() {
            let waited = facts::settle_disks(&cfg.root);
            if !waited.is_zero() {
                log!("waited {} ms for the disks to settle", waited.as_millis());
            }
        }
        let targets = wipe_targets(&cfg);
        if targets.is_empty() {
            log!("no disks to wipe");
        }
        let mut wiped = Vec::new();
        let mut errors = Vec::new();
        for t in targets {
            log!(
                "wiping {} ({}, {})",
                t.name,
                t.path.display(),
                if full { "full" } else { "fast" }
            );
            let r = if full {
                let name = t.name.clone();
                wipe::wipe_full(&t.name, &t.path, |done, total| {
                    log!("wipe {name}: {done}/{total} bytes");
                    let tx = lock(&outbox).clone();
                    if let Some(tx) = tx {
                        let p = Progress {
                            command_id: id,
                            disk: name.clone(),
                            done_bytes: done,
                            total_bytes: total,
                        };
                        // Never block the wipe on the network; a lost progress is harmless.
                        let _ = tx.try_send(msg(agent_message::Msg::Progress(p)));
                    }
                })
            } else {
                wipe::wipe_fast(&t.name, &t.path)
            };
            match r {
                Ok(w) => wiped.push(w),
                Err(e) => errors.push(json!({"disk": t.name, "error": e.to_string()})),
            }
        }
        (wiped, errors)
    });
    match job.await {
        Ok((wiped, errors)) => {
            let detail = json!({
                "mode": if full { "full" } else { "fast" },
                "disks": wiped,
                "errors": errors,
            });
            let ok = errors.is_empty();
            CommandResult {
                command_id: id,
                ok,
                error: if ok {
                    String::new()
                } else {
                    format!("{} disk(s) failed", errors.len())
                },
                detail_json: detail.to_string(),
            }
        }
        Err(e) => fail(id, format!("wipe task failed: {e}")),
    }
}
