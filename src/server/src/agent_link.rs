//! The appliance side of the agent link (`rackboot.agent.v1.AgentLink/Connect`, gRPC on the
//! boot HTTP port): the agent says hello, the machine is looked up (or discovered), its command
//! channel is registered with the [`AgentHub`], reports and results are stored and fed to the
//! lifecycle, and commands from the lifecycle go down the stream.

use crate::inventory::{Inventory, Sighting};
use crate::lifecycle::{AgentCommand, AgentHub, LifecycleHandle};
use rackboot_lifecycle::Input;
use rackboot_proto::agent::v1::agent_link_server::{AgentLink, AgentLinkServer};
use rackboot_proto::agent::v1::{
    agent_message, appliance_message, command, AgentMessage, ApplianceMessage, Command as PCommand,
    HardwareReport, Hello, Wipe,
};
use rackboot_proto::tonic::{self, Request, Response, Status, Streaming};
use serde_json::json;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

pub struct AgentLinkService {
    pub inventory: Inventory,
    pub agents: Arc<AgentHub>,
    pub lifecycle: LifecycleHandle,
    next_id: AtomicU64,
}

impl AgentLinkService {
    pub fn new(inventory: Inventory, agents: Arc<AgentHub>, lifecycle: LifecycleHandle) -> Self {
        Self {
            inventory,
            agents,
            lifecycle,
            next_id: AtomicU64::new(1),
        }
    }

    pub fn into_server(self) -> AgentLinkServer<Self> {
        AgentLinkServer::new(self)
    }
}

/// Why an agent was not accepted.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the agent's boot token is not the one issued with this machine's last agent boot")]
    Token,
    #[error("unknown machine and no usable boot MAC in Hello")]
    NoMac,
    #[error("{0}")]
    Inventory(#[from] crate::inventory::InventoryError),
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        match r {
            Refusal::Token => Status::permission_denied(r.to_string()),
            Refusal::NoMac => Status::not_found(r.to_string()),
            Refusal::Inventory(e) => Status::internal(e.to_string()),
        }
    }
}

/// The machine an agent belongs to: by id, UUID or boot MAC; unknown ones are discovered. The
/// agent must present the token of that machine's latest agent boot (see `agent_token`): a
/// known machine with any other token (or none) is refused and nothing about it changes; an
/// unknown machine is discovered only when its token was issued here (for `Hello.machine_id`,
/// the id its boot script named). The accepted token's hash is stored with the machine.
fn machine_for(inventory: &Inventory, h: &Hello) -> Result<String, Refusal> {
    let tokens = inventory.agent_tokens();
    for key in [&h.machine_id, &h.uuid, &h.boot_mac] {
        if !key.is_empty() {
            if let Ok(m) = inventory.find(key) {
                let hash = tokens
                    .check(&m.id, m.agent_token_sha256.as_deref(), &h.boot_token)
                    .ok_or(Refusal::Token)?;
                if m.agent_token_sha256.as_deref() != Some(hash.as_str()) {
                    inventory.modify(&m.id, |m| {
                        m.agent_token_sha256 = Some(hash.clone());
                        true
                    })?;
                }
                return Ok(m.id);
            }
        }
    }
    let hash = tokens
        .check(&h.machine_id, None, &h.boot_token)
        .ok_or(Refusal::Token)?;
    let mac = rackboot_store::model::normalize_mac(&h.boot_mac)
        .and_then(|m| hex::decode(m.replace(':', "")).ok())
        .and_then(|v| <[u8; 6]>::try_from(v).ok())
        .ok_or(Refusal::NoMac)?;
    let uuid = rackboot_store::model::normalize_uuid(&h.uuid)
        .and_then(|u| hex::decode(u.replace('-', "")).ok())
        .and_then(|v| <[u8; 16]>::try_from(v).ok());
    let s = Sighting {
        mac,
        uuid,
        arch: None,
        vendor_class: None,
        via: "agent",
        note: None,
    };
    let m = inventory.record_sighting(&s)?;
    inventory.modify(&m.id, |m| {
        m.agent_token_sha256 = Some(hash.clone());
        true
    })?;
    Ok(m.id)
}

/// How long an agent may stay silent (it heartbeats every 10 s) before its session is dropped.
const AGENT_SILENCE: std::time::Duration = std::time::Duration::from_secs(35);

type Outbound = Pin<Box<dyn futures_core::Stream<Item = Result<ApplianceMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentLink for AgentLinkService {
    type ConnectStream = Outbound;

    async fn connect(
        &self,
        req: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let mut inbound = req.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty stream"))?;
        let Some(agent_message::Msg::Hello(hello)) = first.msg else {
            return Err(Status::invalid_argument("the first message must be Hello"));
        };
        let inv = self.inventory.clone();
        let h = hello.clone();
        let inv2 = inv.clone();
        let id = match tokio::task::spawn_blocking(move || machine_for(&inv2, &h))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
        {
            Ok(id) => id,
            Err(refusal) => {
                // No event: a refused agent must not be able to write to the machine's record.
                tracing::warn!(
                    machine = ?hello.machine_id,
                    uuid = ?hello.uuid,
                    boot_mac = ?hello.boot_mac,
                    error = %refusal,
                    "agent refused"
                );
                return Err(refusal.into());
            }
        };
        let (cmd_tx, mut cmd_rx) = mpsc::channel::<AgentCommand>(8);
        let conn = self.agents.register(&id, cmd_tx);
        inv.event(
            &id,
            "agent",
            &format!(
                "agent {} connected (boot MAC {})",
                hello.agent_version, hello.boot_mac
            ),
        );
        self.lifecycle.notify(&id, Input::AgentConnected);

        let (out_tx, out_rx) = mpsc::channel::<Result<ApplianceMessage, Status>>(16);
        let agents = self.agents.clone();
        let lifecycle = self.lifecycle.clone();
        let first_id = self.next_id.fetch_add(1_000_000, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut pending: HashMap<u64, &'static str> = HashMap::new();
            let mut next = first_id;
            let mut last_progress: HashMap<(u64, String), u64> = HashMap::new();
            loop {
                tokio::select! {
                    cmd = cmd_rx.recv() => {
                        let Some(cmd) = cmd else { break };
                        next += 1;
                        let kind = match cmd {
                            AgentCommand::Wipe { full } => {
                                pending.insert(next, "wipe");
                                command::Kind::Wipe(Wipe { full })
                            }
                        };
                        let msg = ApplianceMessage { msg: Some(appliance_message::Msg::Command(PCommand { id: next, kind: Some(kind) })) };
                        if out_tx.send(Ok(msg)).await.is_err() {
                            break;
                        }
                    }
                    // The agent heartbeats every 10 s: silence means the machine is gone.
                    msg = tokio::time::timeout(AGENT_SILENCE, inbound.message()) => {
                        let msg = match msg {
                            Ok(Ok(Some(m))) => m,
                            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
                        };
                        match msg.msg {
                            Some(agent_message::Msg::Report(r)) => {
                                let hw = hardware_json(&r);
                                let (inv2, id2) = (inv.clone(), id.clone());
                                let _ = tokio::task::spawn_blocking(move || store_hardware(&inv2, &id2, hw)).await;
                                lifecycle.notify(&id, Input::AgentReport);
                            }
                            Some(agent_message::Msg::Result(r)) if pending.remove(&r.command_id) == Some("wipe") => {
                                let msg = if r.ok { format!("wipe done: {}", r.detail_json) } else { format!("wipe failed: {}", r.error) };
                                inv.event(&id, "agent", &msg);
                                lifecycle.notify(&id, Input::WipeDone { ok: r.ok, error: r.error });
                            }
                            Some(agent_message::Msg::Progress(p)) if p.total_bytes > 0 => {
                                let pct = p.done_bytes.saturating_mul(100) / p.total_bytes;
                                // Keyed by what the agent sends: keep the map bounded.
                                if last_progress.len() > 256 {
                                    last_progress.clear();
                                }
                                let seen = last_progress.entry((p.command_id, p.disk.clone())).or_insert(0);
                                if pct >= *seen + 25 || (pct == 100 && *seen < 100) {
                                    *seen = pct;
                                    inv.event(&id, "agent", &format!("wiping {}: {pct}%", p.disk));
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            if agents.unregister(&id, conn) {
                lifecycle.notify(&id, Input::AgentDisconnected);
            }
            inv.event(&id, "agent", "agent disconnected");
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out_rx),
        )))
    }
}

fn hardware_json(r: &HardwareReport) -> serde_json::Value {
    json!({
        "system": r.system.as_ref().map(|s| json!({"uuid": s.uuid, "vendor": s.vendor, "product": s.product, "serial": s.serial})),
        "cpus": r.cpus.iter().map(|c| json!({"model": c.model, "cores": c.cores, "threads": c.threads})).collect::<Vec<_>>(),
        "memory_bytes": r.memory_bytes,
        "disks": r.disks.iter().map(|d| json!({"name": d.name, "size_bytes": d.size_bytes, "model": d.model, "serial": d.serial, "rotational": d.rotational})).collect::<Vec<_>>(),
        "nics": r.nics.iter().map(|n| json!({"name": n.name, "mac": n.mac, "driver": n.driver, "speed_mbps": n.speed_mbps, "link_up": n.link_up})).collect::<Vec<_>>(),
        "bmc": r.bmc.as_ref().map(|b| json!({"present": b.present, "ip": b.ip, "mac": b.mac})),
    })
}

fn store_hardware(inv: &Inventory, id: &str, hw: serde_json::Value) {
    let stored = inv.modify(id, |m| {
        m.hardware = Some(hw.clone());
        true
    });
    match stored {
        Ok(_) => inv.event(id, "agent", "hardware reported"),
        Err(e) => tracing::warn!(error = %e, machine = id, "could not store the hardware report"),
    }
}

#[cfg(test)]
#[path = "agent_link_tests.rs"]
mod tests;
