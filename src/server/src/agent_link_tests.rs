//! The agent link over a real HTTP/2 socket with tonic's client: an agent is accepted only with
//! the per-boot token rackboot put into its machine's boot script.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::boot_http::{router, BootHttp};
use crate::files::BootFiles;
use crate::lifecycle::Reconciler;
use crate::metrics::Metrics;
use axum::body::Body;
use rackboot_proto::agent::v1::agent_link_client::AgentLinkClient;
use rackboot_proto::agent::v1::SystemInfo;
use std::time::Duration;
use tower::ServiceExt;

const UUID_A: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const MAC_A: &str = "52:54:00:aa:00:01";
const UUID_B: &str = "bbbbbbbb-0000-0000-0000-000000000002";
const MAC_B: &str = "52:54:00:bb:00:02";

struct Env {
    _dir: tempfile::TempDir,
    boot: BootHttp,
    hub: Arc<AgentHub>,
    lifecycle_rx: mpsc::Receiver<(String, Input)>,
    url: String,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let inventory = crate::test_support::inventory(dir.path());
    let power = crate::test_support::power(&inventory);
    let (reconciler, lifecycle_rx) = Reconciler::new(inventory.clone(), power, Default::default());
    let (tx, _rx) = mpsc::channel(16);
    let boot = BootHttp {
        inventory: inventory.clone(),
        metrics: Arc::new(Metrics::new()),
        tftp_files: Arc::new(BootFiles::new(dir.path().join("tftp"))),
        assets: Arc::new(BootFiles::new(dir.path().join("assets"))),
        cache: Arc::new(crate::asset_cache::AssetCache::new(
            dir.path().join("cache"),
        )),
        cached_files: Arc::new(BootFiles::new(dir.path().join("cache/sha256"))),
        sightings: tx,
        lifecycle: None,
        appliance: "10.99.0.2:50042".into(),
        agent: rackboot_ipxe::BootMode::Agent {
            kernel: "agent/vmlinuz".into(),
            initrds: vec!["agent/initrd.gz".into()],
            cmdline: "console=ttyS0".into(),
        },
        init_rounds: 3,
        recent_boots: Default::default(),
        templates: Default::default(),
    };
    let service = AgentLinkService::new(inventory, reconciler.agents.clone(), reconciler.handle());
    let app = router(boot.clone()).route_service(
        "/rackboot.agent.v1.AgentLink/Connect",
        service.into_server(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Env {
        _dir: dir,
        boot,
        hub: reconciler.agents.clone(),
        lifecycle_rx,
        url,
    }
}

/// `GET /ipxe/boot.ipxe` as iPXE asks it; returns the `rackboot.token=` of the agent script.
async fn boot_token(e: &Env, uuid: &str, mac: &str) -> String {
    let uri = format!(
        "/ipxe/boot.ipxe?uuid={uuid}&mac={}&arch=x86_64",
        mac.replace(':', "-")
    );
    let resp = router(e.boot.clone())
        .oneshot(axum::http::Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let script = String::from_utf8(body.to_vec()).unwrap();
    let kernel = script
        .lines()
        .find(|l| l.starts_with("kernel "))
        .expect(&script);
    let token = kernel
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rackboot.token="))
        .expect(kernel);
    assert_eq!(token.len(), 32, "{kernel}");
    token.to_string()
}

fn hello(machine_id: &str, uuid: &str, mac: &str, token: &str) -> AgentMessage {
    AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello {
            machine_id: machine_id.into(),
            uuid: uuid.into(),
            boot_mac: mac.into(),
            agent_version: "test".into(),
            boot_token: token.into(),
        })),
    }
}

fn report(serial: &str) -> AgentMessage {
    AgentMessage {
        msg: Some(agent_message::Msg::Report(HardwareReport {
            system: Some(SystemInfo {
                serial: serial.into(),
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

/// Open a session with these messages; `Err` is the appliance's refusal.
async fn connect(
    e: &Env,
    msgs: Vec<AgentMessage>,
) -> Result<(mpsc::Sender<AgentMessage>, Streaming<ApplianceMessage>), Status> {
    let (tx, rx) = mpsc::channel(8);
    for m in msgs {
        tx.send(m).await.unwrap();
    }
    let channel = tonic::transport::Endpoint::from_shared(e.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let resp = AgentLinkClient::new(channel)
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?;
    Ok((tx, resp.into_inner()))
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn an_agent_claiming_another_machine_is_refused_and_changes_nothing() {
    let mut e = env().await;
    let inv = e.boot.inventory.clone();
    for (uuid, mac) in [(UUID_A, MAC_A), (UUID_B, MAC_B)] {
        inv.add(crate::api::NewMachine {
            macs: vec![mac.into()],
            uuid: Some(uuid.into()),
            ..Default::default()
        })
        .unwrap();
    }
    let a = inv.find(MAC_A).unwrap().id;
    let token_a = boot_token(&e, UUID_A, MAC_A).await;
    let token_b = boot_token(&e, UUID_B, MAC_B).await;

    // A's own agent, with A's token: accepted, its report stored, its token hash kept.
    let (_keep_a, _down_a) = connect(
        &e,
        vec![hello(&a, UUID_A, MAC_A, &token_a), report("serial-A")],
    )
    .await
    .expect("A's agent is accepted");
    wait_for("A's hardware report", || {
        inv.find(&a)
            .unwrap()
            .hardware
            .is_some_and(|h| h.to_string().contains("serial-A"))
    })
    .await;
    assert!(e.hub.connected(&a));
    let before = inv.find(&a).unwrap();
    assert!(before.agent_token_sha256.is_some());
    assert!(
        !before
            .agent_token_sha256
            .as_deref()
            .unwrap()
            .contains(&token_a),
        "hash, not token"
    );
    // The lifecycle hears about A's report after the store has it: wait for that input, so
    // nothing of A's own session is still on its way below.
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some((id, input)) = e.lifecycle_rx.recv().await {
            if id == a && matches!(input, Input::AgentReport) {
                break;
            }
        }
    })
    .await
    .expect("A's report reached the lifecycle");
    let events_before = inv.store().events(Some(&a), 0, 1000).unwrap();
    while e.lifecycle_rx.try_recv().is_ok() {}

    // Impostors: no token, a wrong one, B's (valid, but B's), A's previous boot's token, and
    // by id, by UUID alone, by MAC alone.
    let stale = token_a.clone();
    let fresh_a = boot_token(&e, UUID_A, MAC_A).await; // A rebooted into the agent
    for (id, uuid, mac, token) in [
        (a.as_str(), UUID_A, MAC_A, ""),
        (
            a.as_str(),
            UUID_A,
            MAC_A,
            "00000000000000000000000000000000",
        ),
        (a.as_str(), UUID_A, MAC_A, token_b.as_str()),
        (a.as_str(), UUID_A, MAC_A, stale.as_str()),
        ("", UUID_A, "52:54:00:ee:ee:ee", token_b.as_str()),
        ("", "", MAC_A, token_b.as_str()),
    ] {
        let r = connect(&e, vec![hello(id, uuid, mac, token), report("forged")]).await;
        let status = r
            .err()
            .unwrap_or_else(|| panic!("impostor {id:?}/{uuid}/{mac} accepted"));
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    }
    let after = inv.find(&a).unwrap();
    assert_eq!(
        after.generation, before.generation,
        "A's record was not written"
    );
    assert_eq!(after.hardware, before.hardware);
    assert_eq!(
        inv.store().events(Some(&a), 0, 1000).unwrap(),
        events_before,
        "no event for A"
    );
    assert!(e.lifecycle_rx.try_recv().is_err(), "no lifecycle input");
    assert!(e.hub.connected(&a), "A's own session is untouched");

    // The agent of A's new boot is accepted (and its hash replaces the old one).
    let (_keep, _down) = connect(&e, vec![hello(&a, UUID_A, MAC_A, &fresh_a)])
        .await
        .expect("A's next agent boot");
    assert_ne!(
        inv.find(&a).unwrap().agent_token_sha256,
        before.agent_token_sha256
    );
}

#[tokio::test]
async fn an_unknown_machine_is_discovered_only_with_a_token_issued_for_it() {
    let e = env().await;
    let inv = e.boot.inventory.clone();
    const UUID_C: &str = "cccccccc-0000-0000-0000-000000000003";
    const MAC_C: &str = "52:54:00:cc:00:03";
    let r = connect(&e, vec![hello(UUID_C, UUID_C, MAC_C, "")]).await;
    assert_eq!(r.err().unwrap().code(), tonic::Code::PermissionDenied);
    assert!(inv.list().unwrap().is_empty(), "nothing created");

    let token = boot_token(&e, UUID_C, MAC_C).await;
    let (_keep, _down) = connect(&e, vec![hello(UUID_C, UUID_C, MAC_C, &token)])
        .await
        .expect("the agent of a boot we served");
    let m = inv.find(MAC_C).unwrap();
    assert_eq!(m.uuid.as_deref(), Some(UUID_C));
    assert!(m.agent_token_sha256.is_some());
}
