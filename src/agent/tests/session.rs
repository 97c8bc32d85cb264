//! The gRPC session against a tiny in-test appliance on 127.0.0.1:0.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rackboot_agent::link::{Agent, AgentConfig, LinkError, PowerMode};
use rackboot_proto::agent::v1::{
    agent_link_server::{AgentLink, AgentLinkServer},
    agent_message, appliance_message, command, AgentMessage, ApplianceMessage, Command,
    CommandResult, Progress, Reboot, SetBmcUser, Wipe,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

type Out = Result<ApplianceMessage, Status>;

/// One agent connection at a time: what it sends goes to `events`, `commands` feed it.
struct FakeAppliance {
    events: mpsc::UnboundedSender<AgentMessage>,
    commands: Mutex<Option<mpsc::Receiver<Out>>>,
}

#[tonic::async_trait]
impl AgentLink for FakeAppliance {
    type ConnectStream = ReceiverStream<Out>;

    async fn connect(
        &self,
        req: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let rx = self
            .commands
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .take()
            .ok_or_else(|| Status::already_exists("one session only"))?;
        let mut inbound = req.into_inner();
        let events = self.events.clone();
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if events.send(m).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct Appliance {
    addr: String,
    events: mpsc::UnboundedReceiver<AgentMessage>,
    commands: mpsc::Sender<Out>,
}

async fn appliance() -> Appliance {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (ev_tx, events) = mpsc::unbounded_channel();
    let (commands, cmd_rx) = mpsc::channel(16);
    let svc = FakeAppliance {
        events: ev_tx,
        commands: Mutex::new(Some(cmd_rx)),
    };
    tokio::spawn(async move {
        let r = tonic::transport::Server::builder()
            .add_service(AgentLinkServer::new(svc))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
        if let Err(e) = r {
            eprintln!("fake appliance: {e}");
        }
    });
    Appliance {
        addr,
        events,
        commands,
    }
}

impl Appliance {
    async fn next(&mut self) -> agent_message::Msg {
        let m = tokio::time::timeout(Duration::from_secs(20), self.events.recv())
            .await
            .expect("timed out waiting for the agent")
            .expect("agent stream ended");
        m.msg.expect("empty AgentMessage")
    }

    async fn send(&self, id: u64, kind: command::Kind) {
        let m = ApplianceMessage {
            msg: Some(appliance_message::Msg::Command(Command {
                id,
                kind: Some(kind),
            })),
        };
        self.commands.send(Ok(m)).await.expect("send command");
    }

    /// Waits for the result of `id`, collecting progress and counting heartbeats on the way.
    async fn result(
        &mut self,
        id: u64,
        progress: &mut Vec<Progress>,
        beats: &mut u32,
    ) -> CommandResult {
        loop {
            match self.next().await {
                agent_message::Msg::Result(r) if r.command_id == id => return r,
                agent_message::Msg::Progress(p) => progress.push(p),
                agent_message::Msg::Heartbeat(_) => *beats += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

fn fake_root(root: &Path) {
    let put = |rel: &str, s: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, s).expect("write");
    };
    put(
        "sys/class/dmi/id/product_uuid",
        "ABCDEF01-0000-0000-0000-000000000001\n",
    );
    put("sys/block/vda/size", "131072\n");
    put("sys/class/net/eth0/address", "52:54:00:12:34:56\n");
    put("sys/class/net/eth0/operstate", "up\n");
    put("proc/meminfo", "MemTotal: 524288 kB\n");
}

const SIZE: usize = 64 << 20;

#[tokio::test]
async fn hello_report_wipe_and_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_root(dir.path());
    let img = dir.path().join("disk.img");
    std::fs::write(&img, vec![0xA5u8; SIZE]).expect("image");

    let mut app = appliance().await;
    let mut cfg = AgentConfig::new(app.addr.clone(), "m-7");
    cfg.root = dir.path().to_path_buf();
    cfg.disk_override = Some(vec![img.clone()]);
    cfg.allow_wipe = true;
    cfg.power = PowerMode::DryRun;
    cfg.heartbeat = Duration::from_millis(200);
    let agent = Agent::start(cfg);
    let session = tokio::spawn(async move { agent.session().await });

    let agent_message::Msg::Hello(h) = app.next().await else {
        panic!("expected Hello first")
    };
    assert_eq!(h.machine_id, "m-7");
    assert_eq!(h.uuid, "abcdef01-0000-0000-0000-000000000001");
    assert_eq!(h.boot_mac, "52:54:00:12:34:56");
    assert_eq!(h.agent_version, rackboot_agent::VERSION);
    let agent_message::Msg::Report(r) = app.next().await else {
        panic!("expected report")
    };
    assert_eq!(r.memory_bytes, 512 << 20);
    assert_eq!(r.disks.len(), 1);
    assert_eq!(
        (r.disks[0].name.as_str(), r.disks[0].size_bytes),
        ("vda", SIZE as u64)
    );

    let (mut progress, mut beats) = (Vec::new(), 0);

    // Fast wipe of the override file.
    app.send(1, command::Kind::Wipe(Wipe { full: false })).await;
    let res = app.result(1, &mut progress, &mut beats).await;
    assert!(res.ok, "{res:?}");
    let detail: serde_json::Value = serde_json::from_str(&res.detail_json).expect("json");
    assert_eq!(detail["mode"], "fast");
    assert_eq!(detail["disks"][0]["name"], "disk.img");
    assert_eq!(detail["disks"][0]["size_bytes"], SIZE as u64);
    assert_eq!(
        detail["disks"][0]["zeroed"].as_array().map(Vec::len),
        Some(2)
    );
    let data = std::fs::read(&img).expect("read");
    assert!(data[..1 << 20].iter().all(|b| *b == 0));
    assert!(data[SIZE - (1 << 20)..].iter().all(|b| *b == 0));
    assert!(data[1 << 20..2 << 20].iter().all(|b| *b == 0xA5));
    assert!(progress.is_empty(), "a fast wipe sends no progress");

    // A repeated id is answered from the ledger, not run again.
    std::fs::write(&img, vec![0xA5u8; SIZE]).expect("refill");
    app.send(1, command::Kind::Wipe(Wipe { full: false })).await;
    let again = app.result(1, &mut progress, &mut beats).await;
    assert_eq!(again, res);
    assert_eq!(
        std::fs::read(&img).expect("read")[0],
        0xA5,
        "not wiped twice"
    );

    // Full wipe with progress.
    app.send(2, command::Kind::Wipe(Wipe { full: true })).await;
    let res = app.result(2, &mut progress, &mut beats).await;
    assert!(res.ok, "{res:?}");
    assert!(std::fs::read(&img).expect("read").iter().all(|b| *b == 0));
    assert!(progress.len() >= 10, "{progress:?}");
    assert!(progress
        .iter()
        .all(|p| p.command_id == 2 && p.disk == "disk.img"));
    assert_eq!(
        progress.last().map(|p| (p.done_bytes, p.total_bytes)),
        Some((SIZE as u64, SIZE as u64))
    );

    // Power commands (dry run here) and the BMC without /dev/ipmi0.
    app.send(3, command::Kind::Reboot(Reboot {})).await;
    let res = app.result(3, &mut progress, &mut beats).await;
    assert!(res.ok && res.detail_json.contains("dry_run"), "{res:?}");
    app.send(
        4,
        command::Kind::SetBmcUser(SetBmcUser {
            username: "rb".into(),
            password: "pw".into(),
            slot: 0,
        }),
    )
    .await;
    let res = app.result(4, &mut progress, &mut beats).await;
    assert!(!res.ok);
    assert_eq!(res.error, "no in-band BMC interface");

    // Heartbeats flow while idle.
    while beats < 2 {
        if let agent_message::Msg::Heartbeat(_) = app.next().await {
            beats += 1;
        }
    }

    // The appliance hangs up: the session ends.
    drop(app.commands);
    let end = tokio::time::timeout(Duration::from_secs(10), session)
        .await
        .expect("session did not end")
        .expect("join");
    assert!(matches!(end, Err(LinkError::Closed)), "{end:?}");
}

#[tokio::test]
async fn wipe_refused_outside_the_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_root(dir.path());
    let mut app = appliance().await;
    let mut cfg = AgentConfig::new(app.addr.clone(), "");
    cfg.root = dir.path().to_path_buf();
    let agent = Agent::start(cfg); // allow_wipe false, power Refuse: the defaults
    tokio::spawn(async move { agent.session().await });
    assert!(matches!(app.next().await, agent_message::Msg::Hello(_)));
    assert!(matches!(app.next().await, agent_message::Msg::Report(_)));
    let (mut p, mut b) = (Vec::new(), 0);
    app.send(9, command::Kind::Wipe(Wipe { full: true })).await;
    let r = app.result(9, &mut p, &mut b).await;
    assert!(!r.ok && r.error.contains("refusing to wipe"), "{r:?}");
    app.send(10, command::Kind::Reboot(Reboot {})).await;
    let r = app.result(10, &mut p, &mut b).await;
    assert!(!r.ok && r.error.contains("refusing to reboot"), "{r:?}");
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    // Bind then drop to get a port that is (almost certainly) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("a")
        .port();
    let agent = Agent::start(AgentConfig::new(format!("127.0.0.1:{port}"), "x"));
    let r = agent.session().await;
    assert!(matches!(r, Err(LinkError::Connect { .. })), "{r:?}");
}
