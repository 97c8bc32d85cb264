//! One simulated machine, sans-IO: power on → firmware DHCP (+ ProxyDHCP 4011) → boot program
//! over TFTP or HTTP → iPXE: DHCP again → `init.ipxe` → whatever the scripts say (`dhcp`,
//! `chain boot.ipxe`, `kernel`, `initrd`, `boot`). Driven by [`Client::handle_dhcp`],
//! [`Client::handle_tftp`], [`Client::handle_http`] and [`Client::handle_timeout`] with the
//! time since the fleet started; the shell drains [`Client::poll_output`] and sleeps until
//! [`Client::poll_timeout`]. Every stage's start and end is recorded for the report.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::dhcp::{self, BootTarget, Datagram, Exchange, Identity};
use crate::http::{Reader, Url};
use crate::script::{Effect, FetchKind, Interp};
use crate::tftp;

/// Firmware families of the fleet (option 93 value in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Legacy BIOS PXE ROM (0): TFTP lock-step, then undionly.kpxe.
    Bios,
    /// EDK2 UEFI x86-64 native PXE (7): windowed TFTP with a tsize probe, then ipxe.efi.
    Efi7,
    /// EDK2 EFI BC (9): as 7.
    Efi9,
    /// UEFI HTTP boot (16): `HTTPClient`, boot program over HTTP.
    Http16,
    /// A NIC whose ROM is iPXE already (QEMU's): iPXE DHCP straight away.
    Ipxe,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Bios, Kind::Efi7, Kind::Efi9, Kind::Http16, Kind::Ipxe];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Bios => "bios",
            Kind::Efi7 => "efi7",
            Kind::Efi9 => "efi9",
            Kind::Http16 => "http16",
            Kind::Ipxe => "ipxe",
        }
    }

    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    fn firmware_identity(self, mac: [u8; 6], uuid: [u8; 16]) -> Identity {
        let (arch, vendor, undi) = match self {
            Kind::Bios => (0, "PXEClient:Arch:00000:UNDI:002001", (2, 1)),
            Kind::Efi7 => (7, "PXEClient:Arch:00007:UNDI:003016", (3, 16)),
            Kind::Efi9 => (9, "PXEClient:Arch:00009:UNDI:003016", (3, 16)),
            Kind::Http16 => (16, "HTTPClient:Arch:00016:UNDI:003001", (3, 1)),
            Kind::Ipxe => return self.ipxe_identity(mac, uuid),
        };
        Identity {
            mac,
            uuid,
            arch,
            vendor_class: vendor.into(),
            undi,
            ipxe: false,
        }
    }

    /// What the iPXE it chain-loads says (undionly.kpxe on BIOS, ipxe.efi on UEFI).
    fn ipxe_identity(self, mac: [u8; 6], uuid: [u8; 16]) -> Identity {
        let (arch, vendor, undi) = if self.is_efi() {
            (7, "PXEClient:Arch:00007:UNDI:003010", (3, 10))
        } else {
            (0, "PXEClient:Arch:00000:UNDI:002001", (2, 1))
        };
        Identity {
            mac,
            uuid,
            arch,
            vendor_class: vendor.into(),
            undi,
            ipxe: true,
        }
    }

    fn is_efi(self) -> bool {
        matches!(self, Kind::Efi7 | Kind::Efi9 | Kind::Http16)
    }

    fn tftp_options(self) -> tftp::Options {
        match self {
            Kind::Efi7 | Kind::Efi9 => tftp::Options::EDK2,
            _ => tftp::Options::LOCKSTEP,
        }
    }

    fn firmware_behaviour(self, proxy_wait: Duration) -> dhcp::Behaviour {
        dhcp::Behaviour {
            // UEFI HTTP boot takes the URL from the proxy offer; PXE ROMs ask 4011.
            proxy_request: self != Kind::Http16,
            proxy_src_port: if self.is_efi() {
                dhcp::PXE_PORT
            } else {
                dhcp::CLIENT_PORT
            },
            proxy_wait,
            need_boot: true,
        }
    }
}

/// Boot stages, in the order a machine goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Firmware DISCOVER → address ACK.
    Dhcp,
    /// Firmware ProxyDHCP REQUEST to 4011 → ACK.
    Proxy,
    /// The boot program (undionly.kpxe / ipxe.efi) over TFTP or HTTP.
    Nbp,
    /// iPXE's own DHCP (+ 4011).
    IpxeDhcp,
    /// `init.ipxe` over HTTP.
    InitScript,
    /// `dhcp` commands in scripts.
    ScriptDhcp,
    /// Other chained scripts (`boot.ipxe`).
    BootScript,
    Kernel,
    Initrd,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Dhcp,
        Stage::Proxy,
        Stage::Nbp,
        Stage::IpxeDhcp,
        Stage::InitScript,
        Stage::ScriptDhcp,
        Stage::BootScript,
        Stage::Kernel,
        Stage::Initrd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Dhcp => "dhcp",
            Stage::Proxy => "proxydhcp-4011",
            Stage::Nbp => "nbp",
            Stage::IpxeDhcp => "ipxe-dhcp",
            Stage::InitScript => "init.ipxe",
            Stage::ScriptDhcp => "script-dhcp",
            Stage::BootScript => "boot.ipxe",
            Stage::Kernel => "kernel",
            Stage::Initrd => "initrd",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One stage run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRec {
    pub stage: Stage,
    pub start: Duration,
    pub end: Option<Duration>,
    pub ok: bool,
    /// Bytes moved (file stages).
    pub bytes: u64,
    /// Datagrams the machine sent again after a firmware timeout in this stage (DHCP and TFTP
    /// stages; HTTP is TCP's business).
    pub retries: u32,
}

/// How a machine ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Booted {
        at: Duration,
    },
    Failed {
        at: Duration,
        stage: Option<Stage>,
        reason: String,
    },
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A DHCP datagram as a raw frame (no IP stack needed).
    Raw(Datagram),
    /// Configure the NIC's address (after an ACK).
    SetIp {
        ip: Ipv4Addr,
        prefix: u8,
        router: Option<Ipv4Addr>,
    },
    /// Open a UDP socket for a TFTP transfer (any free local port).
    TftpOpen,
    TftpSend {
        to: SocketAddrV4,
        payload: Vec<u8>,
    },
    TftpClose,
    /// Connect, send `request`, deliver the stream; `id` tags the events.
    HttpOpen {
        id: u32,
        to: SocketAddrV4,
        request: Vec<u8>,
    },
    HttpClose {
        id: u32,
    },
}

/// Stream events of an [`Output::HttpOpen`] connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpEvent<'a> {
    Data(&'a [u8]),
    /// The server closed its side (end of the response).
    Closed,
    /// Refused, reset or timed out.
    Failed,
}

/// Tunables (defaults model real firmware).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Wait after the first address offer for a boot offer (iPXE waits about this long).
    pub proxy_wait: Duration,
    /// An HTTP transfer with no bytes for this long fails.
    pub http_stall: Duration,
    /// Give up on the machine after this long.
    pub deadline: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            proxy_wait: Duration::from_secs(3),
            http_stall: Duration::from_secs(60),
            deadline: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DhcpPurpose {
    Firmware,
    Autoboot,
    Script,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetching {
    Nbp,
    Script(FetchKind),
}

#[derive(Debug)]
enum Phase {
    Off,
    Dhcp {
        x: Box<Exchange>,
        purpose: DhcpPurpose,
        bound: bool,
    },
    Tftp(tftp::Client),
    Http {
        id: u32,
        reader: Reader,
        what: Fetching,
        last_progress: Duration,
    },
    Sleep {
        until: Duration,
    },
    Ended,
}

const SCRIPT_LIMIT: usize = 256 * 1024;
const MAX_NBP_LOADS: u32 = 3;

/// One machine.
#[derive(Debug)]
pub struct Client {
    pub kind: Kind,
    pub mac: [u8; 6],
    pub uuid: [u8; 16],
    settings: Settings,
    power_on: Duration,
    phase: Phase,
    interp: Option<Interp>,
    ip: Option<Ipv4Addr>,
    rng: u64,
    next_http: u32,
    nbp_loads: u32,
    /// Retries of the running DHCP exchange or TFTP transfer already put on a stage.
    retries_seen: u32,
    out: Vec<Output>,
    pub stages: Vec<StageRec>,
    pub outcome: Option<Outcome>,
}

impl Client {
    /// A machine that powers on at `power_on`; `seed` makes its xids.
    pub fn new(
        kind: Kind,
        mac: [u8; 6],
        uuid: [u8; 16],
        power_on: Duration,
        settings: Settings,
        seed: u64,
    ) -> Client {
        Client {
            kind,
            mac,
            uuid,
            settings,
            power_on,
            phase: Phase::Off,
            interp: None,
            ip: None,
            rng: seed | 1,
            next_http: 0,
            nbp_loads: 0,
            retries_seen: 0,
            out: Vec::new(),
            stages: Vec::new(),
            outcome: None,
        }
    }

    pub fn power_on_at(&self) -> Duration {
        self.power_on
    }

    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.ip
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        (!self.out.is_empty()).then(|| self.out.remove(0))
    }

    /// True when the client has asked to close HTTP connection `id` (response complete).
    pub fn closing_http(&self, id: u32) -> bool {
        self.out
            .iter()
            .any(|o| matches!(o, Output::HttpClose { id: x } if *x == id))
    }

    fn xid(&mut self) -> u32 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.outcome.is_some() {
            return None;
        }
        let deadline = self.power_on + self.settings.deadline;
        let t = match &self.phase {
            Phase::Off => Some(self.power_on),
            Phase::Dhcp { x, .. } => x.poll_timeout(),
            Phase::Tftp(c) => c.poll_timeout(),
            Phase::Http { last_progress, .. } => Some(*last_progress + self.settings.http_stall),
            Phase::Sleep { until } => Some(*until),
            Phase::Ended => None,
        };
        Some(t.map_or(deadline, |t| t.min(deadline)))
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        if self.outcome.is_some() {
            return;
        }
        if now >= self.power_on + self.settings.deadline {
            self.close_transport();
            self.fail(now, "timeout".into());
            return;
        }
        match &mut self.phase {
            Phase::Off if now >= self.power_on => {
                if self.kind == Kind::Ipxe {
                    self.nbp_loads = 1;
                    self.start_dhcp(now, DhcpPurpose::Autoboot);
                } else {
                    self.start_dhcp(now, DhcpPurpose::Firmware);
                }
            }
            Phase::Dhcp { x, .. } => {
                x.handle_timeout(now);
                self.after_dhcp(now);
            }
            Phase::Tftp(c) => {
                c.handle_timeout(now);
                self.after_tftp(now);
            }
            Phase::Http {
                id, last_progress, ..
            } if now >= *last_progress + self.settings.http_stall => {
                let id = *id;
                self.out.push(Output::HttpClose { id });
                if let Some((_, what)) = self.take_http() {
                    self.http_done(now, what, Err("http: stalled".into()));
                }
            }
            Phase::Sleep { until } if now >= *until => {
                self.phase = Phase::Ended;
                if let Some(i) = self.interp.as_mut() {
                    i.resume(0);
                }
                self.run_script(now);
            }
            _ => {}
        }
    }

    /// A DHCP reply (UDP to port 68 or 4011) for this MAC or broadcast.
    pub fn handle_dhcp(&mut self, now: Duration, payload: &[u8], src_mac: [u8; 6]) {
        let Some(reply) = dhcp::Reply::parse(payload) else {
            return;
        };
        if let Phase::Dhcp { x, .. } = &mut self.phase {
            x.handle_reply(now, reply, src_mac);
            self.after_dhcp(now);
        }
    }

    pub fn handle_tftp(&mut self, now: Duration, from: SocketAddrV4, payload: &[u8]) {
        if let Phase::Tftp(c) = &mut self.phase {
            c.handle_datagram(now, from, payload);
            self.after_tftp(now);
        }
    }

    pub fn handle_http(&mut self, now: Duration, conn: u32, ev: HttpEvent<'_>) {
        let Phase::Http {
            id,
            reader,
            last_progress,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if *id != conn {
            return;
        }
        let id = *id;
        match ev {
            HttpEvent::Data(d) => {
                *last_progress = now;
                if let Err(e) = reader.feed(d) {
                    self.out.push(Output::HttpClose { id });
                    if let Some((_, what)) = self.take_http() {
                        self.http_done(now, what, Err(format!("http: {e:?}")));
                    }
                    return;
                }
                if reader.is_done() {
                    self.out.push(Output::HttpClose { id });
                    self.http_finish(now);
                }
            }
            HttpEvent::Closed => self.http_finish(now),
            HttpEvent::Failed => {
                if let Some((_, what)) = self.take_http() {
                    self.http_done(now, what, Err("http: connection failed".into()));
                }
            }
        }
    }

    fn take_http(&mut self) -> Option<(Reader, Fetching)> {
        match std::mem::replace(&mut self.phase, Phase::Ended) {
            Phase::Http { reader, what, .. } => Some((reader, what)),
            other => {
                self.phase = other;
                None
            }
        }
    }

    fn http_finish(&mut self, now: Duration) {
        let Some((reader, what)) = self.take_http() else {
            return;
        };
        let r = match reader.finish() {
            Ok(r) if r.status == 200 => Ok((r.length, r.body)),
            Ok(r) => Err(format!("http: status {}", r.status)),
            Err(e) => Err(format!("http: {e:?}")),
        };
        self.http_done(now, what, r);
    }

    fn close_transport(&mut self) {
        match &self.phase {
            Phase::Http { id, .. } => self.out.push(Output::HttpClose { id: *id }),
            Phase::Tftp(_) => self.out.push(Output::TftpClose),
            _ => {}
        }
    }

    // ---- stages ---------------------------------------------------------------------------

    fn stage_start(&mut self, now: Duration, stage: Stage) {
        self.stages.push(StageRec {
            stage,
            start: now,
            end: None,
            ok: false,
            bytes: 0,
            retries: 0,
        });
    }

    /// The running exchange or transfer has retried `total` times so far: the new ones go on
    /// the stage that is open now.
    fn take_retries(&mut self, total: u32) {
        let new = total.saturating_sub(self.retries_seen);
        self.retries_seen = total;
        if let Some(s) = self.stages.iter_mut().rev().find(|s| s.end.is_none()) {
            s.retries += new;
        }
    }

    fn stage_end(&mut self, now: Duration, ok: bool, bytes: u64) {
        if let Some(s) = self.stages.iter_mut().rev().find(|s| s.end.is_none()) {
            s.end = Some(now);
            s.ok = ok;
            s.bytes = bytes;
        }
    }

    fn current_stage(&self) -> Option<Stage> {
        self.stages
            .iter()
            .rev()
            .find(|s| s.end.is_none())
            .map(|s| s.stage)
    }

    fn fail(&mut self, now: Duration, reason: String) {
        let stage = self.current_stage();
        self.stage_end(now, false, 0);
        self.phase = Phase::Ended;
        self.outcome = Some(Outcome::Failed {
            at: now,
            stage,
            reason,
        });
    }

    // ---- DHCP -----------------------------------------------------------------------------

    fn start_dhcp(&mut self, now: Duration, purpose: DhcpPurpose) {
        let (id, how) = match purpose {
            DhcpPurpose::Firmware => (
                self.kind.firmware_identity(self.mac, self.uuid),
                self.kind.firmware_behaviour(self.settings.proxy_wait),
            ),
            DhcpPurpose::Autoboot | DhcpPurpose::Script => (
                self.kind.ipxe_identity(self.mac, self.uuid),
                dhcp::Behaviour {
                    proxy_request: true,
                    proxy_src_port: dhcp::CLIENT_PORT,
                    proxy_wait: self.settings.proxy_wait,
                    need_boot: false,
                },
            ),
        };
        self.stage_start(
            now,
            match purpose {
                DhcpPurpose::Firmware => Stage::Dhcp,
                DhcpPurpose::Autoboot => Stage::IpxeDhcp,
                DhcpPurpose::Script => Stage::ScriptDhcp,
            },
        );
        let xid = self.xid();
        self.retries_seen = 0;
        self.phase = Phase::Dhcp {
            x: Box::new(Exchange::new(id, xid, how, now)),
            purpose,
            bound: false,
        };
        self.after_dhcp(now);
    }

    fn after_dhcp(&mut self, now: Duration) {
        let Phase::Dhcp { x, purpose, bound } = &mut self.phase else {
            return;
        };
        while let Some(d) = x.poll_transmit() {
            self.out.push(Output::Raw(d));
        }
        let retries = x.retries();
        let purpose = *purpose;
        // Configure the address as soon as it is ACKed: the ProxyDHCP ACK to 4011 comes by
        // unicast, and the server ARPs for us first.
        let newly_bound = if *bound { None } else { x.bound().cloned() };
        if newly_bound.is_some() {
            *bound = true;
        }
        let proxy_running = x.result().is_none();
        let result = x.result().map(|r| r.cloned().map_err(|f| f.label()));
        self.take_retries(retries);
        if let Some(lease) = newly_bound {
            if self.ip != Some(lease.ip) {
                self.ip = Some(lease.ip);
                self.out.push(Output::SetIp {
                    ip: lease.ip,
                    prefix: lease.prefix,
                    router: lease.router,
                });
            }
            // The firmware's address ACK ends the DHCP stage; its 4011 request is a stage too.
            if purpose == DhcpPurpose::Firmware && proxy_running {
                self.stage_end(now, true, 0);
                self.stage_start(now, Stage::Proxy);
            }
        }
        let Some(result) = result else {
            return;
        };
        match result {
            Err(label) => {
                if purpose == DhcpPurpose::Script {
                    self.stage_end(now, false, 0);
                    self.phase = Phase::Ended;
                    self.script_rc(now, 1);
                } else {
                    self.fail(now, label.into());
                }
            }
            Ok(lease) => {
                self.stage_end(now, true, 0);
                self.phase = Phase::Ended;
                match purpose {
                    DhcpPurpose::Firmware | DhcpPurpose::Autoboot => match lease.boot {
                        Some(target) => self.load(now, target),
                        None => self.fail_after_stage(now, "dhcp: no boot file offered".into()),
                    },
                    DhcpPurpose::Script => {
                        if let Some(i) = self.interp.as_mut() {
                            i.set_var("net0/ip", &lease.ip.to_string());
                            i.set_var("ip", &lease.ip.to_string());
                        }
                        self.script_rc(now, 0);
                    }
                }
            }
        }
    }

    /// Load what DHCP named: a boot program (then iPXE runs) or, for iPXE, a script.
    fn load(&mut self, now: Duration, target: BootTarget) {
        let running_ipxe = self.nbp_loads > 0;
        match target {
            BootTarget::Tftp { server, file } => {
                self.nbp_loads += 1;
                if self.nbp_loads > MAX_NBP_LOADS {
                    return self.fail(now, "boot loop: boot program loaded again and again".into());
                }
                self.stage_start(now, Stage::Nbp);
                let opts = if running_ipxe {
                    tftp::Options::LOCKSTEP
                } else {
                    self.kind.tftp_options()
                };
                self.out.push(Output::TftpOpen);
                self.retries_seen = 0;
                self.phase = Phase::Tftp(tftp::Client::new(server, &file, opts, now));
                self.after_tftp(now);
            }
            BootTarget::Http { url } => {
                let what = if running_ipxe {
                    Fetching::Script(FetchKind::Script)
                } else {
                    self.nbp_loads += 1;
                    Fetching::Nbp
                };
                self.fetch(now, &url, what);
            }
        }
    }

    fn after_tftp(&mut self, now: Duration) {
        let Phase::Tftp(c) = &mut self.phase else {
            return;
        };
        while let Some((to, payload)) = c.poll_transmit() {
            self.out.push(Output::TftpSend { to, payload });
        }
        let (retries, outcome) = (c.retries(), c.outcome().cloned());
        self.take_retries(retries);
        match outcome {
            None => {}
            Some(tftp::Outcome::Done { bytes }) => {
                self.out.push(Output::TftpClose);
                self.stage_end(now, true, bytes);
                self.phase = Phase::Ended;
                self.start_dhcp(now, DhcpPurpose::Autoboot);
            }
            Some(tftp::Outcome::Failed(reason)) => {
                self.out.push(Output::TftpClose);
                self.fail(now, reason);
            }
        }
    }

    // ---- HTTP and scripts -----------------------------------------------------------------

    fn fetch(&mut self, now: Duration, url: &str, what: Fetching) {
        let stage = match what {
            Fetching::Nbp => Stage::Nbp,
            Fetching::Script(FetchKind::Script) if url.contains("init.ipxe") => Stage::InitScript,
            Fetching::Script(FetchKind::Script) => Stage::BootScript,
            Fetching::Script(FetchKind::Kernel) => Stage::Kernel,
            Fetching::Script(FetchKind::Initrd) => Stage::Initrd,
        };
        self.stage_start(now, stage);
        let Some(u) = Url::parse(url) else {
            return self.http_done(now, what, Err(format!("http: cannot fetch {url:?}")));
        };
        self.next_http = self.next_http.wrapping_add(1);
        let id = self.next_http;
        let keep = if what == Fetching::Script(FetchKind::Script) {
            SCRIPT_LIMIT
        } else {
            0
        };
        self.out.push(Output::HttpOpen {
            id,
            to: u.addr(),
            request: u.request(),
        });
        self.phase = Phase::Http {
            id,
            reader: Reader::new(keep),
            what,
            last_progress: now,
        };
    }

    fn http_done(&mut self, now: Duration, what: Fetching, r: Result<(u64, Vec<u8>), String>) {
        self.phase = Phase::Ended;
        match (what, r) {
            (Fetching::Nbp, Ok((len, _))) => {
                self.stage_end(now, true, len);
                self.start_dhcp(now, DhcpPurpose::Autoboot);
            }
            (Fetching::Nbp, Err(e)) => self.fail(now, e),
            (Fetching::Script(kind), Ok((len, body))) => {
                self.stage_end(now, true, len);
                match (kind, self.interp.as_mut()) {
                    (FetchKind::Script, None) => {
                        let text = String::from_utf8_lossy(&body);
                        self.interp = Some(Interp::new(&text, self.vars()));
                    }
                    (FetchKind::Script, Some(i)) => i.push_script(&String::from_utf8_lossy(&body)),
                    (FetchKind::Kernel, Some(i)) => {
                        i.kernel_loaded();
                        i.resume(0);
                    }
                    (_, Some(i)) => i.resume(0),
                    (_, None) => {}
                }
                self.run_script(now);
            }
            (Fetching::Script(_), Err(e)) => {
                self.stage_end(now, false, 0);
                if self.interp.is_none() {
                    // The autoboot file itself failed: iPXE gives up on this NIC.
                    return self.fail_after_stage(now, e);
                }
                self.script_rc(now, 1);
            }
        }
    }

    fn fail_after_stage(&mut self, now: Duration, reason: String) {
        let stage = self.stages.last().map(|s| s.stage);
        self.phase = Phase::Ended;
        self.outcome = Some(Outcome::Failed {
            at: now,
            stage,
            reason,
        });
    }

    fn vars(&self) -> HashMap<String, String> {
        let mac = self
            .mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let u = &self.uuid;
        let hex = |r: std::ops::Range<usize>| -> String {
            u[r].iter().map(|b| format!("{b:02x}")).collect()
        };
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            hex(0..4),
            hex(4..6),
            hex(6..8),
            hex(8..10),
            hex(10..16)
        );
        let ip = self.ip.map(|i| i.to_string()).unwrap_or_default();
        let (arch, platform) = if self.kind.is_efi() {
            ("x86_64", "efi")
        } else {
            ("i386", "pcbios")
        };
        [
            ("uuid", uuid),
            ("net0/mac", mac.clone()),
            ("mac", mac),
            ("net0/ip", ip.clone()),
            ("ip", ip),
            ("buildarch", arch.into()),
            ("platform", platform.into()),
            ("manufacturer", "rackboot-fleet".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn script_rc(&mut self, now: Duration, rc: i32) {
        if let Some(i) = self.interp.as_mut() {
            i.resume(rc);
        }
        self.run_script(now);
    }

    fn run_script(&mut self, now: Duration) {
        let Some(i) = self.interp.as_mut() else {
            return;
        };
        match i.run() {
            Effect::Dhcp => self.start_dhcp(now, DhcpPurpose::Script),
            Effect::Fetch { kind, url } => self.fetch(now, &url, Fetching::Script(kind)),
            Effect::Boot => {
                self.phase = Phase::Ended;
                self.outcome = Some(Outcome::Booted { at: now });
            }
            Effect::Sleep(d) => self.phase = Phase::Sleep { until: now + d },
            Effect::Exit(rc) => self.fail_after_stage(now, format!("script exited ({rc})")),
            Effect::Reboot => self.fail_after_stage(now, "script rebooted the machine".into()),
            Effect::Sanboot => self.fail_after_stage(now, "script booted the local disk".into()),
            Effect::Error(e) => self.fail_after_stage(now, e),
        }
    }
}

#[cfg(test)]
#[path = "tests/client.rs"]
mod tests;
