//! The sans-IO [`Client`]: runs one command at a time, establishing the RMCP+ session first,
//! with per-request timeouts, bounded retries, cipher-suite fallback and one transparent
//! session re-establishment when an established session stops answering.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::commands::{completion_error, Command, IpmiRequest, Response, Step, StepKind};
use crate::crypto::{self, CipherSuite};
use crate::error::IpmiError;
use crate::session::{Active, DropReason, Handshake, HsCtx, HsOutcome};
use crate::wire::{self, netfn};

/// Session privilege level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    Callback = 1,
    User = 2,
    Operator = 3,
    Administrator = 4,
}

/// Client configuration. `Debug` never prints the password.
#[derive(Clone)]
pub struct ClientConfig {
    /// BMC user name (at most 16 bytes).
    pub username: String,
    /// BMC password (at most 20 bytes).
    pub password: String,
    /// Cipher suites to propose, in order (default: 17, then 3).
    pub suites: Vec<CipherSuite>,
    /// Time to wait for each reply (default 1 s).
    pub timeout: Duration,
    /// Retransmissions per request after the first attempt (default 3).
    pub retries: u32,
    /// Privilege to request (default Administrator). When the BMC refuses Administrator for
    /// this user in Set Session Privilege Level (an Operator account; OpenBMC limits the
    /// session to the user's own level), Operator is asked next: enough for chassis control
    /// and boot options.
    pub privilege: Privilege,
    /// When an established session stops answering, open a new one once and resend (default true).
    pub reestablish: bool,
}

impl ClientConfig {
    /// Defaults: suites [17, 3], timeout 1 s, 3 retries, Administrator, re-establish on.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> ClientConfig {
        ClientConfig {
            username: username.into(),
            password: password.into(),
            suites: vec![CipherSuite::SUITE_17, CipherSuite::SUITE_3],
            timeout: Duration::from_secs(1),
            retries: 3,
            privilege: Privilege::Administrator,
            reestablish: true,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field(
                "suites",
                &self.suites.iter().map(|s| s.id).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("privilege", &self.privilege)
            .field("reestablish", &self.reestablish)
            .finish()
    }
}

/// Counters of dropped datagrams and retransmissions.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Unparseable: truncated, bad checksum, bad pad, not RMCP ...
    pub malformed: u64,
    pub wrong_session_id: u64,
    /// Session sequence number replayed or outside the acceptance window.
    pub out_of_window: u64,
    pub bad_integrity: u64,
    /// Valid but not an answer to the outstanding request (stale, duplicate, unsolicited).
    pub unexpected: u64,
    pub retransmits: u64,
    pub sessions_established: u64,
}

/// Randomness source: fills the buffer (session ids, Rm, AES IVs). Use a CSPRNG in production.
pub type RandomSource = Box<dyn FnMut(&mut [u8]) + Send>;

enum SessionState {
    Idle,
    Handshaking(Handshake),
    Established(Box<Active>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    SetPrivilege,
    Step,
    Close,
}

enum Sent {
    Handshake,
    Ipmi {
        msg: Vec<u8>,
        netfn: u8,
        cmd: u8,
        rq_seq: u8,
        purpose: Purpose,
    },
}

struct Outstanding {
    sent: Sent,
    packet: Vec<u8>,
    deadline: Instant,
    attempts: u32,
}

struct Job {
    cmd: Command,
    steps: VecDeque<Step>,
    primary: Option<Vec<u8>>,
    error: Option<IpmiError>,
    reestablished: bool,
}

/// Sans-IO IPMI v2.0 / RMCP+ client for one BMC. See the crate docs for the call order.
pub struct Client {
    cfg: ClientConfig,
    kuid: [u8; 20],
    rng: RandomSource,
    session: SessionState,
    job: Option<Job>,
    out: Option<Outstanding>,
    transmit: VecDeque<Vec<u8>>,
    results: VecDeque<Result<Response, IpmiError>>,
    rq_seq: u8,
    stats: Stats,
    /// The level Set Session Privilege Level asks for (lowered once, see `privilege`).
    privilege: Privilege,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.session {
            SessionState::Idle => "idle".to_string(),
            SessionState::Handshaking(h) => format!("handshaking ({})", h.step_name()),
            SessionState::Established(a) => format!("established ({a:?})"),
        };
        f.debug_struct("Client")
            .field("cfg", &self.cfg)
            .field("session", &state)
            .field("command", &self.job.as_ref().map(|j| j.cmd.name()))
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn ctx<'a>(cfg: &'a ClientConfig, kuid: &[u8; 20]) -> HsCtx<'a> {
    HsCtx {
        username: cfg.username.as_bytes(),
        kuid: *kuid,
        privilege: cfg.privilege as u8,
        suites: &cfg.suites,
    }
}

impl Client {
    /// Create a client. Fails if the user name exceeds 16 bytes or the password 20 bytes.
    pub fn new(cfg: ClientConfig, rng: RandomSource) -> Result<Client, IpmiError> {
        if cfg.username.len() > 16 {
            return Err(IpmiError::Config("user name longer than 16 bytes"));
        }
        if cfg.password.len() > 20 {
            return Err(IpmiError::Config("password longer than 20 bytes"));
        }
        Ok(Client {
            kuid: crypto::kuid(cfg.password.as_bytes()),
            privilege: cfg.privilege,
            cfg,
            rng,
            session: SessionState::Idle,
            job: None,
            out: None,
            transmit: VecDeque::new(),
            results: VecDeque::new(),
            rq_seq: 0,
            stats: Stats::default(),
        })
    }

    /// Start a command (establishing a session first if needed). `Err(Busy)` while another
    /// command's result has not been produced yet.
    pub fn start(&mut self, cmd: Command, now: Instant) -> Result<(), IpmiError> {
        if self.job.is_some() {
            return Err(IpmiError::Busy);
        }
        self.job = Some(Job {
            steps: cmd.steps().into(),
            cmd,
            primary: None,
            error: None,
            reestablished: false,
        });
        self.drive(now);
        Ok(())
    }

    /// Close the session (Close Session, App 0x3C). Same as `start(Command::CloseSession, now)`.
    pub fn close(&mut self, now: Instant) -> Result<(), IpmiError> {
        self.start(Command::CloseSession, now)
    }

    /// Next datagram to send to the BMC.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// When to call [`Client::handle_timeout`] next (`None`: nothing outstanding).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.out.as_ref().map(|o| o.deadline)
    }

    /// Next finished command.
    pub fn poll_result(&mut self) -> Option<Result<Response, IpmiError>> {
        self.results.pop_front()
    }

    /// Drop/retransmit counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The negotiated cipher suite while a session is established.
    pub fn session_suite(&self) -> Option<CipherSuite> {
        match &self.session {
            SessionState::Established(a) => Some(a.suite),
            _ => None,
        }
    }

    /// True while no command is in progress.
    pub fn is_idle(&self) -> bool {
        self.job.is_none()
    }

    fn next_rq_seq(&mut self) -> u8 {
        self.rq_seq = self.rq_seq % 63 + 1;
        self.rq_seq
    }

    fn send_new(&mut self, sent: Sent, packet: Vec<u8>, now: Instant) {
        self.transmit.push_back(packet.clone());
        self.out = Some(Outstanding {
            sent,
            packet,
            deadline: now + self.cfg.timeout,
            attempts: 1,
        });
    }

    fn send_ipmi(&mut self, purpose: Purpose, req: IpmiRequest, now: Instant) {
        let rq_seq = self.next_rq_seq();
        let SessionState::Established(active) = &mut self.session else {
            return;
        };
        let msg = wire::encode_request(req.netfn, req.cmd, rq_seq, &req.data);
        let packet = active.seal(&msg, &mut *self.rng);
        let sent = Sent::Ipmi {
            msg,
            netfn: req.netfn,
            cmd: req.cmd,
            rq_seq,
            purpose,
        };
        self.send_new(sent, packet, now);
    }

    fn finish(&mut self, r: Result<Response, IpmiError>) {
        self.job = None;
        self.results.push_back(r);
    }

    /// Advance the current command while nothing is outstanding.
    fn drive(&mut self, now: Instant) {
        while self.out.is_none() {
            let Some(job) = self.job.as_mut() else {
                return;
            };
            match &mut self.session {
                SessionState::Idle | SessionState::Handshaking(_) => {
                    if job.cmd == Command::CloseSession {
                        self.session = SessionState::Idle;
                        self.finish(Ok(Response::SessionClosed));
                        continue;
                    }
                    let rq = self.next_rq_seq();
                    let (hs, pkt) = Handshake::start(rq, self.cfg.privilege as u8);
                    self.session = SessionState::Handshaking(hs);
                    self.send_new(Sent::Handshake, pkt, now);
                }
                SessionState::Established(active) => {
                    let (sidc, privileged) = (active.sidc, active.privileged);
                    if job.cmd == Command::CloseSession {
                        let req = IpmiRequest {
                            netfn: netfn::APP,
                            cmd: 0x3c,
                            data: sidc.to_le_bytes().to_vec(),
                        };
                        self.send_ipmi(Purpose::Close, req, now);
                    } else if !privileged && self.privilege as u8 > Privilege::User as u8 {
                        let req = IpmiRequest {
                            netfn: netfn::APP,
                            cmd: 0x3b,
                            data: vec![self.privilege as u8],
                        };
                        self.send_ipmi(Purpose::SetPrivilege, req, now);
                    } else if let Some(step) = job.steps.front() {
                        let req = step.req.clone();
                        self.send_ipmi(Purpose::Step, req, now);
                    } else {
                        let r = match (job.error.take(), job.primary.take()) {
                            (Some(e), _) => Err(e),
                            (None, data) => job.cmd.parse(&data.unwrap_or_default()),
                        };
                        self.finish(r);
                    }
                }
            }
        }
    }

    fn count(&mut self, r: DropReason) {
        let s = &mut self.stats;
        match r {
            DropReason::Malformed(_) => s.malformed += 1,
            DropReason::WrongSessionId => s.wrong_session_id += 1,
            DropReason::OutOfWindow => s.out_of_window += 1,
            DropReason::BadIntegrity => s.bad_integrity += 1,
            DropReason::Unexpected => s.unexpected += 1,
        }
    }

    /// Feed a datagram received from the BMC. Anything invalid or unexpected is dropped
    /// (see [`Client::stats`]); this never panics.
    pub fn handle_datagram(&mut self, buf: &[u8], now: Instant) {
        let Some(out) = self.out.as_ref() else {
            self.stats.unexpected += 1;
            return;
        };
        match (&out.sent, &mut self.session) {
            (Sent::Handshake, SessionState::Handshaking(hs)) => {
                let c = ctx(&self.cfg, &self.kuid);
                match hs.handle(buf, &c, &mut *self.rng) {
                    HsOutcome::Drop(r) => self.count(r),
                    HsOutcome::Send(pkt) => self.send_new(Sent::Handshake, pkt, now),
                    HsOutcome::Established(active) => {
                        self.session = SessionState::Established(active);
                        self.stats.sessions_established += 1;
                        self.out = None;
                    }
                    HsOutcome::Failed(e, last) => {
                        self.transmit.extend(last);
                        self.out = None;
                        self.session = SessionState::Idle;
                        self.finish(Err(e));
                    }
                }
            }
            (
                Sent::Ipmi {
                    netfn,
                    cmd,
                    rq_seq,
                    purpose,
                    ..
                },
                SessionState::Established(active),
            ) => {
                let (netfn, cmd, rq_seq, purpose) = (*netfn, *cmd, *rq_seq, *purpose);
                let msg = match active.open(buf) {
                    Ok(m) => m,
                    Err(r) => return self.count(r),
                };
                let r = match wire::parse_response(&msg) {
                    Ok(r) => r,
                    Err(e) => return self.count(DropReason::Malformed(e)),
                };
                if r.netfn != netfn | 1 || r.cmd != cmd || r.rq_seq != rq_seq {
                    return self.count(DropReason::Unexpected);
                }
                let (cc, data) = (r.completion, r.data.to_vec());
                self.out = None;
                match purpose {
                    Purpose::SetPrivilege if cc == 0 => active.privileged = true,
                    // 0x80/0x81: the level is not available to this user or exceeds its limit;
                    // 0xd4: insufficient privilege. Ask for Operator (sent by `drive`).
                    Purpose::SetPrivilege
                        if self.privilege == Privilege::Administrator
                            && matches!(cc, 0x80 | 0x81 | 0xd4) =>
                    {
                        self.privilege = Privilege::Operator;
                    }
                    Purpose::SetPrivilege => self.finish(Err(completion_error(cc))),
                    Purpose::Close => {
                        self.session = SessionState::Idle;
                        let r = if cc == 0 {
                            Ok(Response::SessionClosed)
                        } else {
                            Err(completion_error(cc))
                        };
                        self.finish(r);
                    }
                    Purpose::Step => self.on_step_reply(cc, data),
                }
            }
            _ => self.stats.unexpected += 1,
        }
        self.drive(now);
    }

    fn on_step_reply(&mut self, cc: u8, data: Vec<u8>) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        let Some(step) = job.steps.pop_front() else {
            return;
        };
        if step.kind == StepKind::Primary {
            if cc == 0 {
                job.primary = Some(data);
            } else {
                job.error = Some(completion_error(cc));
                job.steps.retain(|s| s.kind == StepKind::Cleanup);
            }
        }
    }

    /// Call when [`Client::poll_timeout`] has passed: retransmits, falls back to the next
    /// cipher suite, re-establishes the session, or fails the command with `Timeout`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let timeout = self.cfg.timeout;
        let Some(out) = self.out.as_mut() else {
            return;
        };
        if now < out.deadline {
            return;
        }
        if out.attempts <= self.cfg.retries {
            out.attempts += 1;
            out.deadline = now + timeout;
            self.stats.retransmits += 1;
            if let (Sent::Ipmi { msg, .. }, SessionState::Established(active)) =
                (&out.sent, &mut self.session)
            {
                // ipmitool: a retransmitted request gets a new session sequence number
                // (and a new IV), with the same rqSeq.
                out.packet = active.seal(msg, &mut *self.rng);
            }
            self.transmit.push_back(out.packet.clone());
            return;
        }
        let attempts = out.attempts;
        let purpose = match &out.sent {
            Sent::Ipmi { purpose, .. } => Some(*purpose),
            Sent::Handshake => None,
        };
        self.out = None;
        let timeout_err = |what| IpmiError::Timeout {
            what,
            attempts,
            per_attempt: timeout,
        };
        match &mut self.session {
            SessionState::Handshaking(hs) => {
                let what = hs.step_name();
                let c = ctx(&self.cfg, &self.kuid);
                match hs.on_exhausted(&c, &mut *self.rng) {
                    Some(HsOutcome::Send(pkt)) => self.send_new(Sent::Handshake, pkt, now),
                    Some(HsOutcome::Failed(e, _)) => {
                        self.session = SessionState::Idle;
                        self.finish(Err(e));
                    }
                    _ => {
                        self.session = SessionState::Idle;
                        self.finish(Err(timeout_err(what)));
                    }
                }
            }
            SessionState::Established(_) => {
                self.session = SessionState::Idle;
                let reestablish = self.cfg.reestablish;
                let Some(job) = self.job.as_mut() else {
                    return;
                };
                if purpose != Some(Purpose::Close) && reestablish && !job.reestablished {
                    job.reestablished = true;
                } else {
                    let what = match purpose {
                        Some(Purpose::SetPrivilege) => "Set Session Privilege Level",
                        _ => job.cmd.name(),
                    };
                    self.finish(Err(timeout_err(what)));
                }
            }
            SessionState::Idle => {}
        }
        self.drive(now);
    }
}
