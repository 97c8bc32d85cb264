//! Watch: ready marker, bootstrap, live events with `old` and bookmarks, resume, stale
//! bookmarks, provider filtering, single-resource watches.

mod common;

use std::time::Duration;

use common::{provider_client, start, start_with, Client, PROVIDER};
use rackboot_omni_double::names::*;
use rackboot_proto::cosi::resource::*;
use tokio_stream::StreamExt as _;
use tonic::{Code, Streaming};

fn kind_watch(ns: &str, ty: &str, bootstrap: bool, bookmark: Option<Vec<u8>>) -> WatchRequest {
    WatchRequest {
        namespace: ns.into(),
        r#type: ty.into(),
        id: None,
        options: Some(WatchOptions {
            bootstrap_contents: bootstrap,
            start_from_bookmark: bookmark,
            ..Default::default()
        }),
        api_version: 1,
    }
}

async fn open(
    c: &mut Client,
    req: WatchRequest,
) -> Result<Streaming<WatchResponse>, tonic::Status> {
    c.watch(req).await.map(|r| r.into_inner())
}

async fn next(s: &mut Streaming<WatchResponse>) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("an event within 10 s")
        .expect("stream open")
        .expect("no stream error")
}

async fn next_event(s: &mut Streaming<WatchResponse>) -> Event {
    let mut r = next(s).await;
    assert_eq!(r.event.len(), 1, "one event per response: {r:?}");
    r.event.remove(0)
}

fn kind(e: &Event) -> EventType {
    EventType::try_from(e.event_type).expect("known event type")
}

fn id(r: &Option<Resource>) -> String {
    r.as_ref()
        .and_then(|r| r.metadata.as_ref())
        .map(|m| m.id.clone())
        .unwrap_or_default()
}

fn version(r: &Option<Resource>) -> String {
    r.as_ref()
        .and_then(|r| r.metadata.as_ref())
        .map(|m| m.version.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn ready_marker_bootstrap_and_live_events() {
    let (running, k) = start().await;
    let h = running.handle.clone();
    let a = h
        .machine_joins(Some("00000000-0000-0000-0000-00000000000a"))
        .expect("join");
    let b = h
        .machine_joins(Some("00000000-0000-0000-0000-00000000000b"))
        .expect("join");
    h.machine_joins_for("rack-2", Some("00000000-0000-0000-0000-00000000000c"))
        .expect("join other");
    let mut c = provider_client(&running, &k).await;
    let mut s = open(
        &mut c,
        kind_watch(NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, true, None),
    )
    .await
    .expect("watch");

    let ready = next(&mut s).await;
    assert!(
        ready.event.is_empty(),
        "first response is the empty ready marker"
    );
    let e1 = next_event(&mut s).await;
    let e2 = next_event(&mut s).await;
    assert_eq!(
        (kind(&e1), id(&e1.resource)),
        (EventType::Created, a.clone())
    );
    assert_eq!(
        (kind(&e2), id(&e2.resource)),
        (EventType::Created, b.clone())
    );
    assert!(
        e1.bookmark.is_none(),
        "bootstrap CREATED events carry no bookmark (as COSI)"
    );
    let boot = next_event(&mut s).await;
    assert_eq!(kind(&boot), EventType::Bootstrapped);
    assert!(boot.bookmark.is_some());

    // A change of another provider's machine is filtered; ours comes through with `old`.
    h.accept("00000000-0000-0000-0000-00000000000c")
        .expect("accept other");
    h.accept(&a).expect("accept");
    let up = next_event(&mut s).await;
    assert_eq!(
        (kind(&up), id(&up.resource)),
        (EventType::Updated, a.clone())
    );
    assert_eq!(version(&up.resource), "2");
    assert_eq!(version(&up.old), "1");
    assert!(up.bookmark.is_some());

    // Destroy arrives as DESTROYED with the last resource.
    h.destroy(NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, &b)
        .expect("destroy");
    let gone = next_event(&mut s).await;
    assert_eq!((kind(&gone), id(&gone.resource)), (EventType::Destroyed, b));
    let new = h.machine_joins(None).expect("join");
    let created = next_event(&mut s).await;
    assert_eq!(
        (kind(&created), id(&created.resource)),
        (EventType::Created, new)
    );
}

#[tokio::test]
async fn resume_from_bookmark_delivers_exactly_what_followed() {
    let (running, k) = start().await;
    let h = running.handle.clone();
    let a = h.machine_joins(None).expect("join");
    let mut c = provider_client(&running, &k).await;
    let mut s = open(
        &mut c,
        kind_watch(NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, true, None),
    )
    .await
    .expect("watch");
    next(&mut s).await; // ready
    next_event(&mut s).await; // CREATED a
    let boot = next_event(&mut s).await;
    h.accept(&a).expect("accept");
    let up = next_event(&mut s).await;
    drop(s);

    // While disconnected: two more changes.
    h.request_reboot(&a).expect("reboot");
    h.set_cordoned(&a, true).expect("cordon");

    let mut s = open(
        &mut c,
        kind_watch(
            NS_INFRA_PROVIDER,
            TYPE_INFRA_MACHINE,
            false,
            up.bookmark.clone(),
        ),
    )
    .await
    .expect("resume");
    assert!(next(&mut s).await.event.is_empty(), "ready marker first");
    let r1 = next_event(&mut s).await;
    let r2 = next_event(&mut s).await;
    assert_eq!(
        (kind(&r1), version(&r1.resource)),
        (EventType::Updated, "3".into())
    );
    assert_eq!(
        (kind(&r2), version(&r2.resource)),
        (EventType::Updated, "4".into())
    );

    // From the BOOTSTRAPPED bookmark: everything after the snapshot, in order.
    let mut s = open(
        &mut c,
        kind_watch(NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, false, boot.bookmark),
    )
    .await
    .expect("resume");
    next(&mut s).await;
    let versions: Vec<String> = [
        next_event(&mut s).await,
        next_event(&mut s).await,
        next_event(&mut s).await,
    ]
    .iter()
    .map(|e| version(&e.resource))
    .collect();
    assert_eq!(versions, vec!["2", "3", "4"]);
}

#[tokio::test]
async fn stale_foreign_and_garbage_bookmarks_fail_precondition() {
    let (running, k) = start_with(|c| {
        c.history_capacity = 8;
        c.history_gap = 2;
    })
    .await;
    let h = running.handle.clone();
    let a = h.machine_joins(None).expect("join");
    let mut c = provider_client(&running, &k).await;
    let mut s = open(
        &mut c,
        kind_watch(NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, true, None),
    )
    .await
    .expect("watch");
    next(&mut s).await;
    next_event(&mut s).await;
    next_event(&mut s).await; // BOOTSTRAPPED
    h.accept(&a).expect("accept");
    let old = next_event(&mut s).await.bookmark.expect("bookmark");
    drop(s);
    for _ in 0..10 {
        h.request_reboot(&a).expect("reboot");
    }
    let e = open(
        &mut c,
        kind_watch(
            NS_INFRA_PROVIDER,
            TYPE_INFRA_MACHINE,
            false,
            Some(old.clone()),
        ),
    )
    .await
    .expect_err("stale");
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = open(
        &mut c,
        kind_watch(
            NS_INFRA_PROVIDER,
            TYPE_INFRA_MACHINE,
            false,
            Some(vec![1, 2, 3]),
        ),
    )
    .await
    .expect_err("garbage");
    assert_eq!(e.code(), Code::FailedPrecondition);

    // A bookmark from another Omni run (a restart) is invalid too.
    let (other, k2) = start().await;
    let mut c2 = provider_client(&other, &k2).await;
    other.handle.machine_joins(None).expect("join");
    let mut s = open(
        &mut c2,
        kind_watch(NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, true, None),
    )
    .await
    .expect("watch");
    next(&mut s).await;
    next_event(&mut s).await;
    let foreign = next_event(&mut s).await.bookmark.expect("bookmark");
    let e = open(
        &mut c,
        kind_watch(NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, false, Some(foreign)),
    )
    .await
    .expect_err("foreign");
    assert_eq!(e.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn api_version_zero_gets_no_bootstrapped_event() {
    let (running, k) = start().await;
    let h = running.handle.clone();
    h.machine_joins(None).expect("join");
    let mut c = provider_client(&running, &k).await;
    let mut req = kind_watch(NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, true, None);
    req.api_version = 0;
    let mut s = open(&mut c, req).await.expect("watch");
    next(&mut s).await;
    assert_eq!(kind(&next_event(&mut s).await), EventType::Created);
    let later = h.machine_joins(None).expect("join");
    let e = next_event(&mut s).await;
    assert_eq!((kind(&e), id(&e.resource)), (EventType::Created, later));
}

#[tokio::test]
async fn label_query_turns_updates_into_create_and_destroy() {
    let (running, k) = start().await;
    let h = running.handle.clone();
    let a = h.machine_joins(None).expect("join");
    let mut c = provider_client(&running, &k).await;
    let mut req = kind_watch(NS_INFRA_PROVIDER, TYPE_INFRA_MACHINE, true, None);
    if let Some(o) = req.options.as_mut() {
        o.label_query = vec![LabelQuery {
            terms: vec![LabelTerm {
                key: LABEL_ACCEPT_PENDING.into(),
                op: label_term::Operation::Exists as i32,
                value: vec![],
                invert: false,
            }],
        }];
    }
    let mut s = open(&mut c, req).await.expect("watch");
    next(&mut s).await;
    assert_eq!(kind(&next_event(&mut s).await), EventType::Created);
    assert_eq!(kind(&next_event(&mut s).await), EventType::Bootstrapped);
    h.accept(&a).expect("accept"); // label removed: leaves the query
    let e = next_event(&mut s).await;
    assert_eq!((kind(&e), id(&e.resource)), (EventType::Destroyed, a));
    assert!(e.old.is_none());
}

#[tokio::test]
async fn single_resource_watch() {
    let (running, k) = start().await;
    let mut c = provider_client(&running, &k).await;
    let ns = private_namespace(PROVIDER);
    let ty = format!("Leases.{PROVIDER}.infraprovider.sidero.dev");
    let req = |id: &str, bootstrap: bool| WatchRequest {
        namespace: ns.clone(),
        r#type: ty.clone(),
        id: Some(id.into()),
        options: Some(WatchOptions {
            bootstrap_contents: bootstrap,
            ..Default::default()
        }),
        api_version: 1,
    };
    assert_eq!(
        open(&mut c, req("x", true))
            .await
            .expect_err("bootstrap")
            .code(),
        Code::Unimplemented
    );
    let mut s = open(&mut c, req("x", false)).await.expect("watch");
    next(&mut s).await;
    let first = next_event(&mut s).await;
    assert_eq!(
        (kind(&first), version(&first.resource)),
        (EventType::Destroyed, "undefined".into())
    );
    let r = Resource {
        metadata: Some(Metadata {
            namespace: ns.clone(),
            r#type: ty.clone(),
            id: "x".into(),
            version: "undefined".into(),
            phase: PHASE_RUNNING.into(),
            ..Default::default()
        }),
        spec: Some(Spec::default()),
    };
    let mut other = r.clone();
    other.metadata.as_mut().expect("md").id = "y".into();
    for res in [other, r] {
        c.create(CreateRequest {
            resource: Some(res),
            options: None,
        })
        .await
        .expect("create");
    }
    let e = next_event(&mut s).await;
    assert_eq!(
        (kind(&e), id(&e.resource)),
        (EventType::Created, "x".into())
    );
}
