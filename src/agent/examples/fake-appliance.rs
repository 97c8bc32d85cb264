//! A stand-in appliance for trying the agent (e.g. the agent image in QEMU) without the
//! rackboot server: accepts one agent, prints what it reports, then sends a script of commands.
//!
//! ```text
//! cargo run -p rackboot-agent --example fake-appliance -- 127.0.0.1:50042 wipe-fast power-off
//! ```
//!
//! Commands: `wipe-fast`, `wipe-full`, `reboot`, `power-off`, `bmc-user`. Exits after the last
//! command's result (or 3 s after a power command's result, which the agent acts on).

use std::time::Duration;

use rackboot_proto::agent::v1::{
    agent_link_server::{AgentLink, AgentLinkServer},
    agent_message, appliance_message, command, AgentMessage, ApplianceMessage, Command, PowerOff,
    Reboot, SetBmcUser, Wipe,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

type Out = Result<ApplianceMessage, Status>;

struct Fake {
    script: Vec<command::Kind>,
    done: mpsc::UnboundedSender<()>,
}

fn parse(word: &str) -> Option<command::Kind> {
    Some(match word {
        "wipe-fast" => command::Kind::Wipe(Wipe { full: false }),
        "wipe-full" => command::Kind::Wipe(Wipe { full: true }),
        "reboot" => command::Kind::Reboot(Reboot {}),
        "power-off" => command::Kind::PowerOff(PowerOff {}),
        "bmc-user" => command::Kind::SetBmcUser(SetBmcUser {
            username: "rackboot".into(),
            password: "rackboot-secret".into(),
            slot: 0,
        }),
        _ => return None,
    })
}

#[tonic::async_trait]
impl AgentLink for Fake {
    type ConnectStream = ReceiverStream<Out>;

    async fn connect(
        &self,
        req: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        println!(
            "fake-appliance: agent connected from {:?}",
            req.remote_addr()
        );
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel::<Out>(8);
        let script = self.script.clone();
        let done = self.done.clone();
        tokio::spawn(async move {
            let mut next = 0usize;
            let mut last_was_power = false;
            loop {
                let m = match inbound.message().await {
                    Ok(Some(AgentMessage { msg: Some(m) })) => m,
                    Ok(_) => break,
                    Err(e) => {
                        println!("fake-appliance: stream error: {e}");
                        break;
                    }
                };
                let send_next = match &m {
                    agent_message::Msg::Hello(h) => {
                        println!("fake-appliance: HELLO {h:?}");
                        false
                    }
                    agent_message::Msg::Report(r) => {
                        println!("fake-appliance: REPORT {r:?}");
                        true
                    }
                    agent_message::Msg::Heartbeat(h) => {
                        println!("fake-appliance: heartbeat uptime={}s", h.uptime_secs);
                        false
                    }
                    agent_message::Msg::Progress(p) => {
                        println!(
                            "fake-appliance: PROGRESS cmd={} {} {}/{}",
                            p.command_id, p.disk, p.done_bytes, p.total_bytes
                        );
                        false
                    }
                    agent_message::Msg::Result(r) => {
                        println!("fake-appliance: RESULT {r:?}");
                        true
                    }
                };
                if !send_next {
                    continue;
                }
                match script.get(next) {
                    Some(kind) => {
                        next += 1;
                        last_was_power =
                            matches!(kind, command::Kind::Reboot(_) | command::Kind::PowerOff(_));
                        let c = Command {
                            id: next as u64,
                            kind: Some(kind.clone()),
                        };
                        println!("fake-appliance: COMMAND {c:?}");
                        let m = ApplianceMessage {
                            msg: Some(appliance_message::Msg::Command(c)),
                        };
                        if tx.send(Ok(m)).await.is_err() {
                            break;
                        }
                    }
                    None => {
                        if last_was_power {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                        }
                        let _ = done.send(());
                        break;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:50042".into());
    let script = args
        .map(|w| parse(&w).ok_or_else(|| format!("unknown command {w:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    let (done, mut done_rx) = mpsc::unbounded_channel();
    let addr = listen.parse()?;
    println!("fake-appliance: listening on {addr}");
    tonic::transport::Server::builder()
        .add_service(AgentLinkServer::new(Fake { script, done }))
        .serve_with_shutdown(addr, async move {
            let _ = done_rx.recv().await;
        })
        .await?;
    println!("fake-appliance: done");
    Ok(())
}
