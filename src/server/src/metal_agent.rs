//! The provider side of the Talos metal agent's reverse tunnel
//! (`/grpctunnel.v1.TunnelService/OpenReverseTunnel` on the boot HTTP port), as Omni's own
//! provider serves it: the agent (Talos in agent mode, or `rackboot-agent --protocol metal`)
//! dials in with `machine-id: <SMBIOS UUID>`; rackboot pings it (`Hello`), registers it as the
//! machine's agent with the lifecycle, sets up a BMC user in-band when the machine has no BMC
//! yet (`GetPowerManagement` + `SetPowerManagement`, user `talos-agent`), and turns the
//! lifecycle's wipe commands into `WipeDisks`. The protocol is `rackboot_tunnel::Client`; this
//! is its thin async shell.
//!
//! The tunnel carries no credential (the stock agent has none). A tunnel is accepted only for
//! a machine in the inventory that was served an agent boot by this process, or that the
//! lifecycle is waiting on an agent for (wiping/releasing).

use crate::inventory::Inventory;
use crate::lifecycle::{AgentCommand, AgentHub, LifecycleHandle};
use rackboot_lifecycle::Input;
use rackboot_proto::grpctunnel::v1::tunnel_service_server::{TunnelService, TunnelServiceServer};
use rackboot_proto::grpctunnel::v1::{ClientToServer, ServerToClient};
use rackboot_proto::management as api;
use rackboot_proto::prost::Message;
use rackboot_proto::tonic::{self, Request, Response, Status, Streaming};
use rackboot_store::model::MachineState;
use rackboot_tunnel::{CallResult, Client, NEGOTIATE_HEADER};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

const SERVICE: &str = "/management.AgentService/";
/// Per-call limits, as Omni's provider uses them.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const FAST_WIPE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const ZEROES_WIPE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How often a connected agent is pinged.
const PING_EVERY: Duration = Duration::from_secs(30);
/// The BMC user the provider creates in-band.
pub const BMC_USER: &str = "talos-agent";

pub struct MetalAgentService {
    pub inventory: Inventory,
    pub agents: Arc<AgentHub>,
    pub lifecycle: LifecycleHandle,
}

type Frames<T> = Pin<Box<dyn futures_core::Stream<Item = Result<T, Status>> + Send>>;

impl MetalAgentService {
    pub fn into_server(self) -> TunnelServiceServer<Self> {
        TunnelServiceServer::new(self)
    }

    /// The machine a tunnel belongs to, if it may have one.
    fn admit(&self, machine_id: &str) -> Result<String, Refused> {
        let m = self
            .inventory
            .find(machine_id)
            .map_err(|_| Refused::Unknown)?;
        let booted_here = self.inventory.agent_tokens().latest(&m.id).is_some();
        let waiting = matches!(m.state, MachineState::Wiping | MachineState::Releasing);
        if !(booted_here || waiting) {
            return Err(Refused::NoAgentBoot);
        }
        Ok(m.id)
    }
}

/// Why a tunnel was not accepted.
#[derive(Debug, Clone, Copy, thiserror::Error)]
enum Refused {
    #[error("unknown machine")]
    Unknown,
    #[error("no agent boot was served to this machine")]
    NoAgentBoot,
}

impl From<Refused> for Status {
    fn from(r: Refused) -> Status {
        match r {
            Refused::Unknown => Status::not_found(r.to_string()),
            Refused::NoAgentBoot => Status::permission_denied(r.to_string()),
        }
    }
}

#[tonic::async_trait]
impl TunnelService for MetalAgentService {
    type OpenTunnelStream = Frames<ServerToClient>;
    type OpenReverseTunnelStream = Frames<ClientToServer>;

    async fn open_tunnel(
        &self,
        _req: Request<Streaming<ClientToServer>>,
    ) -> Result<Response<Self::OpenTunnelStream>, Status> {
        Err(Status::unimplemented(
            "only reverse tunnels (OpenReverseTunnel) are served",
        ))
    }

    async fn open_reverse_tunnel(
        &self,
        req: Request<Streaming<ServerToClient>>,
    ) -> Result<Response<Self::OpenReverseTunnelStream>, Status> {
        let md = req.metadata();
        let machine = md
            .get("machine-id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 64)
            .ok_or_else(|| Status::invalid_argument("machine-id metadata missing"))?
            .to_ascii_lowercase();
        let negotiated = md
            .get(NEGOTIATE_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "on");
        let inv = self.inventory.clone();
        let svc_machine = machine.clone();
        let id = match self.admit(&svc_machine) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(machine = %machine, error = %e, "metal agent tunnel refused");
                return Err(e.into());
            }
        };
        let (out_tx, out_rx) = mpsc::channel::<Result<ClientToServer, Status>>(64);
        let session = Session {
            id,
            inventory: inv,
            agents: self.agents.clone(),
            lifecycle: self.lifecycle.clone(),
            core: Client::new(negotiated),
            calls: HashMap::new(),
            out: out_tx,
        };
        tokio::spawn(session.run(req.into_inner()));
        let mut resp = Response::new(
            Box::pin(tokio_stream::wrappers::ReceiverStream::new(out_rx))
                as Self::OpenReverseTunnelStream,
        );
        // The agent waits for these headers before it sends anything.
        resp.metadata_mut().insert(
            NEGOTIATE_HEADER,
            tonic::metadata::MetadataValue::from_static("on"),
        );
        Ok(resp)
    }
}

/// What a call in flight is for.
#[derive(Debug)]
enum Purpose {
    Hello { first: bool },
    GetPower,
    SetPower { url: String, password: String },
    Wipe,
}

struct Session {
    id: String,
    inventory: Inventory,
    agents: Arc<AgentHub>,
    lifecycle: LifecycleHandle,
    core: Client,
    calls: HashMap<i64, (Purpose, Instant)>,
    out: mpsc::Sender<Result<ClientToServer, Status>>,
}

impl Session {
    fn start(&mut self, purpose: Purpose, method: &str, request: Vec<u8>, timeout: Duration) {
        let stream = self.core.call(&format!("{SERVICE}{method}"), request);
        self.calls
            .insert(stream, (purpose, Instant::now() + timeout));
    }

    async fn flush(&mut self) -> bool {
        while let Some(f) = self.core.poll_transmit() {
            if self.out.send(Ok(f)).await.is_err() {
                return false;
            }
        }
        true
    }

    async fn run(mut self, mut inbound: Streaming<ServerToClient>) {
        let (cmd_tx, mut cmd_rx) = mpsc::channel::<AgentCommand>(8);
        let mut cmd_tx = Some(cmd_tx);
        let mut conn = None;
        self.start(
            Purpose::Hello { first: true },
            "Hello",
            api::HelloRequest {}.encode_to_vec(),
            CALL_TIMEOUT,
        );
        let mut next_ping = Instant::now() + PING_EVERY;
        let why = loop {
            if !self.flush().await {
                break "the agent went away".to_string();
            }
            let deadline = self
                .calls
                .values()
                .map(|(_, d)| *d)
                .min()
                .unwrap_or(next_ping)
                .min(next_ping);
            tokio::select! {
                frame = inbound.message() => {
                    let f = match frame {
                        Ok(Some(f)) => f,
                        Ok(None) => break "the agent closed the tunnel".into(),
                        Err(e) => break format!("tunnel error: {}", e.message()),
                    };
                    match self.core.on_frame(f) {
                        Ok(done) => {
                            let mut stop = None;
                            for r in done {
                                if let Err(e) = self.finished(r, &mut cmd_tx, &mut conn) {
                                    stop = Some(e);
                                }
                            }
                            if let Some(e) = stop {
                                break e;
                            }
                        }
                        Err(e) => break format!("tunnel protocol error: {e}"),
                    }
                }
                cmd = cmd_rx.recv(), if conn.is_some() => {
                    let Some(AgentCommand::Wipe { full }) = cmd else { continue };
                    let timeout = if full { ZEROES_WIPE_TIMEOUT } else { FAST_WIPE_TIMEOUT };
                    self.inventory.event(&self.id, "agent", &format!("wipe sent to the metal agent ({})", if full { "zeroes" } else { "fast" }));
                    self.start(Purpose::Wipe, "WipeDisks", api::WipeDisksRequest { zeroes: full }.encode_to_vec(), timeout);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    let expired: Vec<i64> = self.calls.iter().filter(|(_, (_, d))| *d <= now).map(|(k, _)| *k).collect();
                    let mut stop = None;
                    for stream in expired {
                        self.core.cancel(stream);
                        let r = CallResult { stream, result: Err(rackboot_tunnel::Status::new(rackboot_tunnel::code::CANCELLED, "timed out")) };
                        if let Err(e) = self.finished(r, &mut cmd_tx, &mut conn) {
                            stop = Some(e);
                        }
                    }
                    if let Some(e) = stop {
                        break e;
                    }
                    if now >= next_ping && conn.is_some() {
                        next_ping = now + PING_EVERY;
                        self.start(Purpose::Hello { first: false }, "Hello", api::HelloRequest {}.encode_to_vec(), CALL_TIMEOUT);
                    } else if now >= next_ping {
                        next_ping = now + PING_EVERY;
                    }
                }
            }
        };
        if let Some(c) = conn {
            if self.agents.unregister(&self.id, c) {
                self.lifecycle.notify(&self.id, Input::AgentDisconnected);
            }
            self.inventory.event(
                &self.id,
                "agent",
                &format!("metal agent disconnected: {why}"),
            );
        } else {
            tracing::info!(machine = %self.id, reason = %why, "metal agent tunnel ended before Hello");
        }
    }

    /// A call ended. An error ends the session.
    fn finished(
        &mut self,
        r: CallResult,
        cmd_tx: &mut Option<mpsc::Sender<AgentCommand>>,
        conn: &mut Option<u64>,
    ) -> Result<(), String> {
        let Some((purpose, _)) = self.calls.remove(&r.stream) else {
            return Ok(());
        };
        match (purpose, r.result) {
            (Purpose::Hello { first }, Ok(_)) => {
                if first {
                    if let Some(tx) = cmd_tx.take() {
                        *conn = Some(self.agents.register(&self.id, tx));
                    }
                    self.inventory.event(
                        &self.id,
                        "agent",
                        "metal agent connected (reverse tunnel)",
                    );
                    self.lifecycle.notify(&self.id, Input::AgentConnected);
                    let has_bmc = self
                        .inventory
                        .find(&self.id)
                        .map(|m| m.bmc.is_some())
                        .unwrap_or(true);
                    if !has_bmc {
                        self.start(
                            Purpose::GetPower,
                            "GetPowerManagement",
                            api::GetPowerManagementRequest::default().encode_to_vec(),
                            CALL_TIMEOUT,
                        );
                    }
                }
            }
            (Purpose::Hello { .. }, Err(s)) => {
                return Err(format!("Hello failed: {}", s.message));
            }
            (Purpose::GetPower, Ok(bytes)) => {
                let pm = api::GetPowerManagementResponse::decode(bytes.as_slice())
                    .map_err(|e| format!("undecodable GetPowerManagement answer: {e}"))?;
                match pm.ipmi.filter(|i| !i.address.is_empty()) {
                    Some(ipmi) => {
                        let port = if ipmi.port == 0 { 623 } else { ipmi.port };
                        let Some(password) = random_password() else {
                            return Ok(());
                        };
                        let url = format!("ipmi://{}:{port}", ipmi.address);
                        let req = api::SetPowerManagementRequest {
                            ipmi: Some(api::set_power_management_request::Ipmi {
                                username: BMC_USER.into(),
                                password: password.clone(),
                            }),
                            api: None,
                        };
                        self.start(
                            Purpose::SetPower { url, password },
                            "SetPowerManagement",
                            req.encode_to_vec(),
                            CALL_TIMEOUT,
                        );
                    }
                    None => self.inventory.event(
                        &self.id,
                        "agent",
                        "the metal agent reported no IPMI BMC; configure the BMC by hand",
                    ),
                }
            }
            (Purpose::SetPower { url, password }, Ok(_)) => {
                match self
                    .inventory
                    .set_bmc_from_omni(&self.id, &url, BMC_USER, &password)
                {
                    Ok(_) => self.inventory.event(
                        &self.id,
                        "agent",
                        &format!("BMC user {BMC_USER} set up in-band: {url}"),
                    ),
                    Err(e) => {
                        tracing::warn!(machine = %self.id, error = %e, "BMC from the metal agent not stored")
                    }
                }
            }
            (Purpose::GetPower | Purpose::SetPower { .. }, Err(s)) => {
                self.inventory.event(
                    &self.id,
                    "agent",
                    &format!("in-band BMC set-up failed: {}", s.message),
                );
            }
            (Purpose::Wipe, result) => {
                let (ok, error) = match result {
                    Ok(_) => (true, String::new()),
                    Err(s) => (false, format!("code {}: {}", s.code, s.message)),
                };
                let msg = if ok {
                    "wipe done (metal agent)".to_string()
                } else {
                    format!("wipe failed (metal agent): {error}")
                };
                self.inventory.event(&self.id, "agent", &msg);
                self.lifecycle
                    .notify(&self.id, Input::WipeDone { ok, error });
            }
        }
        Ok(())
    }
}

/// 16 random characters from `[A-Za-z0-9]` (what the stock provider generates).
fn random_password() -> Option<String> {
    use ring::rand::{SecureRandom, SystemRandom};
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(16);
    let rng = SystemRandom::new();
    while out.len() < 16 {
        let mut b = [0u8; 32];
        rng.fill(&mut b).ok()?;
        // 248 = 4 × 62: no modulo bias.
        for x in b.iter().filter(|x| **x < 248) {
            if out.len() < 16 {
                out.push(char::from(ALPHABET[usize::from(*x % 62)]));
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_16_alphanumerics_and_differ() {
        let a = super::random_password().unwrap_or_default();
        let b = super::random_password().unwrap_or_default();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
