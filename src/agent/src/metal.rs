//! The Talos metal agent's protocol, so rackboot-agent also serves providers that speak it
//! (Omni's own bare-metal provider, and rackboot with `omni.agent = "talos"`): dial the
//! provider, open `/grpctunnel.v1.TunnelService/OpenReverseTunnel` with `machine-id: <SMBIOS
//! UUID>` and `grpctunnel-negotiate: on`, and answer `management.AgentService` calls through
//! the tunnel (`rackboot_tunnel::Server`): Hello, GetPowerManagement / SetPowerManagement
//! (in-band IPMI via ipmitool), WipeDisks (the same wipe as the rackboot link), Reboot.

use std::sync::Arc;
use std::time::Duration;

use rackboot_proto::agent::v1::{command, Command, Reboot, Wipe};
use rackboot_proto::grpctunnel::v1::tunnel_service_client::TunnelServiceClient;
use rackboot_proto::grpctunnel::v1::ServerToClient;
use rackboot_proto::management as api;
use rackboot_proto::prost::Message;
use rackboot_tunnel::{code, Server, Status, NEGOTIATE_HEADER};
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

use crate::bmc;
use crate::link::{execute_detached, AgentConfig, PowerAction};

/// Why a tunnel session ended.
#[derive(Debug, thiserror::Error)]
pub enum MetalError {
    #[error("provider address {0:?}: {1}")]
    Address(String, String),
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("opening the tunnel: {0}")]
    Open(String),
    #[error("tunnel: {0}")]
    Tunnel(String),
}

/// The provider's address as the stock agent reads `metal.provider.address`: `host:port`
/// (plaintext h2c) or `http://host:port`; `https://` is not supported by rackboot-agent.
pub fn provider_uri(address: &str) -> Result<String, MetalError> {
    let bad = |why: &str| MetalError::Address(address.to_string(), why.to_string());
    let a = address.trim();
    if a.starts_with("https://") {
        return Err(bad(
            "TLS to the provider is not supported by rackboot-agent",
        ));
    }
    let hostport = a.strip_prefix("http://").unwrap_or(a).trim_end_matches('/');
    crate::cmdline::validate_appliance(hostport).map_err(|e| bad(&e.to_string()))?;
    Ok(format!("http://{hostport}"))
}

/// One tunnel session: until the provider or the network ends it.
pub async fn session(
    cfg: Arc<AgentConfig>,
    address: &str,
    machine_id: &str,
) -> Result<(), MetalError> {
    let uri = provider_uri(address)?;
    let channel = Endpoint::from_shared(uri.clone())
        .map_err(|e| MetalError::Address(uri.clone(), e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|e| MetalError::Connect(uri.clone(), crate::link::error_chain(&e)))?;
    let mut client = TunnelServiceClient::new(channel);
    let (tx, rx) = mpsc::channel::<ServerToClient>(64);
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let md = req.metadata_mut();
    md.insert(
        "machine-id",
        machine_id.parse().map_err(|_| {
            MetalError::Open(format!("machine id {machine_id:?} is not a header value"))
        })?,
    );
    md.insert(
        NEGOTIATE_HEADER,
        tonic::metadata::MetadataValue::from_static("on"),
    );
    let resp = client
        .open_reverse_tunnel(req)
        .await
        .map_err(|s| MetalError::Open(format!("{:?}: {}", s.code(), s.message())))?;
    let negotiated = resp
        .metadata()
        .get(NEGOTIATE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "on");
    let mut inbound = resp.into_inner();
    crate::log!(
        "metal tunnel open to {uri} (machine-id {machine_id}, revision {})",
        if negotiated { "1" } else { "0" }
    );
    let mut core = Server::new(negotiated);
    let (done_tx, mut done_rx) =
        mpsc::channel::<(i64, Result<Vec<u8>, Status>, Option<PowerAction>)>(16);
    let mut pending_power: Option<PowerAction> = None;
    loop {
        while let Some(f) = core.poll_transmit() {
            if tx.send(f).await.is_err() {
                return Err(MetalError::Tunnel("the provider went away".into()));
            }
        }
        if core.open_streams() == 0 {
            if let Some(p) = pending_power.take() {
                tokio::time::sleep(cfg.power_grace).await;
                p.act();
            }
        }
        tokio::select! {
            frame = inbound.message() => {
                let f = match frame {
                    Ok(Some(f)) => f,
                    Ok(None) => return Ok(()),
                    Err(s) => return Err(MetalError::Tunnel(format!("{:?}: {}", s.code(), s.message()))),
                };
                let calls = core.on_frame(f).map_err(|e| MetalError::Tunnel(e.to_string()))?;
                for call in calls {
                    let (cfg, done) = (cfg.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let (r, p) = answer(&cfg, &call.method, &call.request).await;
                        let _ = done.send((call.stream, r, p)).await;
                    });
                }
            }
            Some((stream, result, power)) = done_rx.recv() => {
                core.respond(stream, result);
                if power.is_some() {
                    pending_power = power;
                }
            }
        }
    }
}

/// Answer one `management.AgentService` call.
async fn answer(
    cfg: &Arc<AgentConfig>,
    method: &str,
    request: &[u8],
) -> (Result<Vec<u8>, Status>, Option<PowerAction>) {
    let bad = |e: rackboot_proto::prost::DecodeError| {
        Err(Status::new(
            code::INVALID_ARGUMENT,
            format!("bad request: {e}"),
        ))
    };
    match method {
        "/management.AgentService/Hello" => (Ok(api::HelloResponse {}.encode_to_vec()), None),
        "/management.AgentService/GetPowerManagement" => {
            let req = match api::GetPowerManagementRequest::decode(request) {
                Ok(r) => r,
                Err(e) => return (bad(e), None),
            };
            let check = req.ipmi.map(|i| i.check_username).unwrap_or_default();
            let root = cfg.root.clone();
            let r = tokio::task::spawn_blocking(move || {
                let (ip, _mac) = bmc::lan_info(&root).ok_or(bmc::BmcError::NoInterface)?;
                if ip.is_empty() || ip == "0.0.0.0" {
                    return Err(bmc::BmcError::NoInterface);
                }
                let exists = !check.is_empty() && bmc::user_exists(&root, &check)?;
                Ok(api::GetPowerManagementResponse {
                    ipmi: Some(api::get_power_management_response::Ipmi {
                        address: ip,
                        port: 623,
                        user_exists: exists,
                    }),
                    api: None,
                })
            })
            .await;
            let r = match r {
                Ok(Ok(pm)) => Ok(pm.encode_to_vec()),
                Ok(Err(e)) => Err(Status::new(
                    code::INTERNAL,
                    format!("error creating ipmi client: {e}"),
                )),
                Err(e) => Err(Status::new(code::INTERNAL, e.to_string())),
            };
            (r, None)
        }
        "/management.AgentService/SetPowerManagement" => {
            let req = match api::SetPowerManagementRequest::decode(request) {
                Ok(r) => r,
                Err(e) => return (bad(e), None),
            };
            let Some(ipmi) = req.ipmi else {
                return (Ok(api::SetPowerManagementResponse {}.encode_to_vec()), None);
            };
            let root = cfg.root.clone();
            let r = tokio::task::spawn_blocking(move || {
                bmc::set_user(&root, &ipmi.username, &ipmi.password, 0)
            })
            .await;
            let r = match r {
                Ok(Ok(d)) => {
                    crate::log!("BMC user {} set up in slot {}", d.username, d.slot);
                    Ok(api::SetPowerManagementResponse {}.encode_to_vec())
                }
                Ok(Err(e)) => Err(Status::new(
                    code::UNKNOWN,
                    format!("failed to set up IPMI user: {e}"),
                )),
                Err(e) => Err(Status::new(code::INTERNAL, e.to_string())),
            };
            (r, None)
        }
        "/management.AgentService/WipeDisks" => {
            let req = match api::WipeDisksRequest::decode(request) {
                Ok(r) => r,
                Err(e) => return (bad(e), None),
            };
            crate::log!(
                "metal: wipe disks ({})",
                if req.zeroes { "zeroes" } else { "fast" }
            );
            let c = Command {
                id: 0,
                kind: Some(command::Kind::Wipe(Wipe { full: req.zeroes })),
            };
            let (r, _) = execute_detached(cfg, c).await;
            if r.ok {
                crate::log!("metal: wipe done");
                (Ok(api::WipeDisksResponse {}.encode_to_vec()), None)
            } else {
                let msg = format!("failed to wipe disks: {} {}", r.error, r.detail_json);
                (Err(Status::new(code::UNKNOWN, msg)), None)
            }
        }
        "/management.AgentService/Reboot" => {
            let c = Command {
                id: 0,
                kind: Some(command::Kind::Reboot(Reboot {})),
            };
            let (r, p) = execute_detached(cfg, c).await;
            if r.ok {
                (Ok(api::RebootResponse {}.encode_to_vec()), p)
            } else {
                (Err(Status::new(code::UNKNOWN, r.error)), None)
            }
        }
        other => (
            Err(Status::new(
                code::UNIMPLEMENTED,
                format!("{other} not implemented"),
            )),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::provider_uri;

    #[test]
    fn provider_addresses_as_the_stock_agent_reads_them() {
        assert_eq!(
            provider_uri("10.0.0.5:50042").ok().as_deref(),
            Some("http://10.0.0.5:50042")
        );
        assert_eq!(
            provider_uri("http://10.0.0.5:50042/").ok().as_deref(),
            Some("http://10.0.0.5:50042")
        );
        assert!(provider_uri("https://10.0.0.5:50043").is_err());
        assert!(provider_uri("10.0.0.5").is_err());
        assert!(provider_uri("10.0.0.5:50042 x").is_err());
    }
}
