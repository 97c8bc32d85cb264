//! `Watch` with the COSI server's stream shape and Omni's per-provider filtering.
//!
//! The stream starts with an empty `WatchResponse` (the watch is established). Then:
//! - kind watch (`id` absent): with `bootstrap_contents`, one CREATED per matching resource
//!   (sorted by id, no bookmark), then BOOTSTRAPPED carrying the bookmark of the last event
//!   before the snapshot (api_version ≥ 1 only); with `bootstrap_bookmark`, a NOOP with that
//!   bookmark. Live events follow; an UPDATE that makes a resource start or stop matching the
//!   label/ID query is sent as CREATED or DESTROYED.
//! - single-resource watch: first CREATED with the resource, or DESTROYED with a tombstone if
//!   it does not exist (no bookmark), then that resource's events. `bootstrap_contents` and
//!   label queries are `Unimplemented` there.
//! - `tail_events` replays the last N events; `start_from_bookmark` resumes after the
//!   bookmarked event (and skips the initial events); a bookmark of another run or outside
//!   the kept history is `FailedPrecondition`.
//! - Live events each carry their bookmark. `aggregated` sends each batch in one response.
//! - A watcher that falls behind the kept history gets an ERRORED event and the stream ends.
//! - Omni drops events whose resource lacks the caller's provider-id label in shared
//!   namespaces (BOOTSTRAPPED and ERRORED pass).

use std::sync::Arc;

use rackboot_proto::cosi::resource::{
    Event, EventType, Metadata, Resource, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::names::{LABEL_PROVIDER_ID, PHASE_RUNNING};
use crate::query::Filter;
use crate::server::{query_error, RpcError};
use crate::shared::Shared;
use crate::store::{EventKind, Since, Store, StoredEvent};

/// The stream type the service returns.
pub type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

fn tombstone(ns: &str, ty: &str, id: &str) -> Resource {
    Resource {
        metadata: Some(Metadata {
            namespace: ns.into(),
            r#type: ty.into(),
            id: id.into(),
            version: "undefined".into(),
            phase: PHASE_RUNNING.into(),
            ..Default::default()
        }),
        spec: None,
    }
}

fn event(
    kind: EventType,
    resource: Resource,
    old: Option<Resource>,
    bookmark: Option<Vec<u8>>,
) -> Event {
    Event {
        resource: Some(resource),
        event_type: kind as i32,
        old,
        error: None,
        bookmark,
    }
}

fn wire_kind(k: EventKind) -> EventType {
    match k {
        EventKind::Created => EventType::Created,
        EventKind::Updated => EventType::Updated,
        EventKind::Destroyed => EventType::Destroyed,
    }
}

fn res_matches(filter: &Filter, r: &Resource) -> bool {
    r.metadata
        .as_ref()
        .is_some_and(|m| filter.matches(&m.id, &m.labels))
}

struct Plan {
    ns: String,
    ty: String,
    id: Option<String>,
    filter: Filter,
    label: Option<String>,
    aggregated: bool,
    api_version: i32,
}

impl Plan {
    /// Applies the query (kind watch) or id (single watch) to a stored event.
    fn select(&self, e: &StoredEvent, store: &Store) -> Option<Event> {
        let bookmark = Some(store.bookmark(e.pos));
        if let Some(id) = &self.id {
            let rid = e.resource.metadata.as_ref().map(|m| m.id.as_str());
            return (rid == Some(id.as_str())).then(|| {
                event(
                    wire_kind(e.kind),
                    e.resource.clone(),
                    e.old.clone(),
                    bookmark,
                )
            });
        }
        let now = res_matches(&self.filter, &e.resource);
        match e.kind {
            EventKind::Created | EventKind::Destroyed => {
                now.then(|| event(wire_kind(e.kind), e.resource.clone(), None, bookmark))
            }
            EventKind::Updated => {
                let before = e.old.as_ref().is_some_and(|o| res_matches(&self.filter, o));
                match (before, now) {
                    (true, true) => Some(event(
                        EventType::Updated,
                        e.resource.clone(),
                        e.old.clone(),
                        bookmark,
                    )),
                    (true, false) => Some(event(
                        EventType::Destroyed,
                        e.resource.clone(),
                        None,
                        bookmark,
                    )),
                    (false, true) => Some(event(
                        EventType::Created,
                        e.resource.clone(),
                        None,
                        bookmark,
                    )),
                    (false, false) => None,
                }
            }
        }
    }

    /// Omni's provider-id filter and the api_version gate.
    fn visible(&self, e: &Event) -> bool {
        let t = EventType::try_from(e.event_type).unwrap_or(EventType::Noop);
        if matches!(t, EventType::Bootstrapped | EventType::Errored) {
            return self.api_version >= 1;
        }
        match (&self.label, &e.resource) {
            (Some(want), Some(r)) => r
                .metadata
                .as_ref()
                .and_then(|m| m.labels.get(LABEL_PROVIDER_ID))
                .is_some_and(|v| v == want),
            _ => true,
        }
    }
}

/// Validates the request, takes the initial snapshot and spawns the stream task.
pub fn start(
    shared: Arc<Shared>,
    req: WatchRequest,
    label: Option<String>,
) -> Result<WatchStream, RpcError> {
    let opts = req.options.clone().unwrap_or_default();
    let single = req.id.is_some();
    if single && opts.bootstrap_contents {
        return Err(RpcError::Unimplemented(
            "bootstrap contents is not implemented for resource watch".into(),
        ));
    }
    if single && !opts.label_query.is_empty() {
        return Err(RpcError::Unimplemented(
            "label query is not implemented for resource watch".into(),
        ));
    }
    if opts.tail_events > 0 && opts.start_from_bookmark.is_some() {
        return Err(RpcError::InvalidArgument(
            "cannot use both TailEvents and StartFromBookmark options".into(),
        ));
    }
    if opts.bootstrap_contents && (opts.tail_events > 0 || opts.start_from_bookmark.is_some()) {
        return Err(RpcError::InvalidArgument(
            "cannot use BootstrapContents with TailEvents and StartFromBookmark options".into(),
        ));
    }
    let filter = Filter::new(&opts.label_query, opts.id_query.as_ref()).map_err(query_error)?;
    let plan = Plan {
        ns: req.namespace.clone(),
        ty: req.r#type.clone(),
        id: req.id.clone(),
        filter,
        label,
        aggregated: opts.aggregated,
        api_version: req.api_version,
    };

    let mut changes = shared.subscribe();
    changes.borrow_and_update();
    let (pos, initial) = shared.read(|store| -> Result<(i64, Vec<Event>), RpcError> {
        let (ns, ty) = (plan.ns.as_str(), plan.ty.as_str());
        let write_pos = store.write_pos(ns, ty);
        let mut initial = Vec::new();
        let pos = if let Some(b) = &opts.start_from_bookmark {
            store.resume_from(ns, ty, b)?
        } else if opts.tail_events > 0 {
            tail_start(store, &plan, opts.tail_events as i64, write_pos)
        } else {
            write_pos
        };
        if let Some(id) = &plan.id {
            if opts.start_from_bookmark.is_none() && opts.tail_events <= 0 {
                initial.push(match store.get(ns, ty, id) {
                    Ok(r) => event(EventType::Created, r, None, None),
                    Err(_) => event(EventType::Destroyed, tombstone(ns, ty, id), None, None),
                });
            }
        } else {
            if opts.bootstrap_contents {
                for r in store.list(ns, ty, &plan.filter) {
                    initial.push(event(EventType::Created, r, None, None));
                }
                initial.push(event(
                    EventType::Bootstrapped,
                    tombstone(ns, ty, ""),
                    None,
                    Some(store.bookmark(pos - 1)),
                ));
            }
            if opts.bootstrap_bookmark {
                initial.push(event(
                    EventType::Noop,
                    tombstone(ns, ty, ""),
                    None,
                    Some(store.bookmark(pos - 1)),
                ));
            }
        }
        Ok((pos, initial))
    })?;

    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(run(shared, plan, pos, initial, changes, tx));
    Ok(ReceiverStream::new(rx))
}

fn tail_start(store: &Store, plan: &Plan, tail: i64, write_pos: i64) -> i64 {
    let (ns, ty) = (plan.ns.as_str(), plan.ty.as_str());
    match &plan.id {
        None => (write_pos - tail).max(store.oldest_valid(ns, ty)).max(0),
        Some(id) => {
            let Since::Events(evs) = store.since(ns, ty, store.oldest_valid(ns, ty).max(0)) else {
                return write_pos;
            };
            let mut found = 0;
            let mut pos = write_pos;
            for e in evs.iter().rev() {
                if found >= tail {
                    break;
                }
                pos = e.pos;
                if e.resource.metadata.as_ref().is_some_and(|m| &m.id == id) {
                    found += 1;
                }
            }
            pos
        }
    }
}

async fn send(
    tx: &mpsc::Sender<Result<WatchResponse, Status>>,
    plan: &Plan,
    events: Vec<Event>,
) -> bool {
    let events: Vec<Event> = events.into_iter().filter(|e| plan.visible(e)).collect();
    if events.is_empty() {
        return true;
    }
    if plan.aggregated {
        return tx.send(Ok(WatchResponse { event: events })).await.is_ok();
    }
    for e in events {
        if tx.send(Ok(WatchResponse { event: vec![e] })).await.is_err() {
            return false;
        }
    }
    true
}

async fn run(
    shared: Arc<Shared>,
    plan: Plan,
    mut pos: i64,
    initial: Vec<Event>,
    mut changes: tokio::sync::watch::Receiver<u64>,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
) {
    if tx.send(Ok(WatchResponse::default())).await.is_err() || !send(&tx, &plan, initial).await {
        return;
    }
    loop {
        changes.borrow_and_update();
        let batch = shared.read(|store| match store.since(&plan.ns, &plan.ty, pos) {
            Since::Overrun { write_pos, pos } => Err(format!(
                "buffer overrun: namespace {:?} type {:?}, write pos {write_pos}, pos {pos}",
                plan.ns, plan.ty
            )),
            Since::Events(evs) => {
                let next = evs.last().map(|e| e.pos + 1);
                Ok((
                    next,
                    evs.iter()
                        .filter_map(|e| plan.select(e, store))
                        .collect::<Vec<_>>(),
                ))
            }
        });
        match batch {
            Err(msg) => {
                let errored = Event {
                    resource: None,
                    event_type: EventType::Errored as i32,
                    old: None,
                    error: Some(msg),
                    bookmark: None,
                };
                send(&tx, &plan, vec![errored]).await;
                return;
            }
            Ok((Some(next), events)) => {
                pos = next;
                if !send(&tx, &plan, events).await {
                    return;
                }
            }
            Ok((None, _)) => {
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        }
    }
}
