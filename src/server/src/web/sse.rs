//! `GET /api/v1/events/stream`: Server-Sent Events, one `event: machine-event` per recorded
//! event with `{seq, machine_id, kind, message, at_ms, machine}` (the machine as it is when the
//! event is sent, `null` once removed). A client that falls behind gets `event: resync` (and
//! should reload its view). Keep-alive comments every 15 s; the stream ends on SIGINT/SIGTERM
//! so a graceful shutdown is not held up by open pages.

use crate::admin::AdminState;
use crate::api::MachineView;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use rackboot_store::Event;
use serde::Serialize;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The data of one `machine-event`.
#[derive(Debug, Serialize)]
pub struct MachineEvent {
    pub seq: u64,
    pub machine_id: String,
    pub kind: String,
    pub message: String,
    pub at_ms: u64,
    pub machine: Option<MachineView>,
}

impl MachineEvent {
    pub fn new(inventory: &crate::inventory::Inventory, ev: Event) -> Self {
        let machine = match inventory.store().get_machine(&ev.machine_id) {
            Ok(m) => m.as_ref().map(MachineView::from),
            Err(e) => {
                tracing::warn!(error = %e, machine = %ev.machine_id, "event stream: cannot read machine");
                None
            }
        };
        Self {
            seq: ev.seq,
            machine_id: ev.machine_id,
            kind: ev.kind,
            message: ev.message,
            at_ms: ev.at_ms,
            machine,
        }
    }
}

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Resolves on SIGINT or SIGTERM (tokio notifies every listener, so this does not steal the
/// server's own shutdown signal).
fn shutdown() -> Shutdown {
    Box::pin(async {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => {
                if r.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    })
}

/// The event stream of an inventory: ends on `shutdown`.
pub fn events(
    inventory: crate::inventory::Inventory,
    stop: Shutdown,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send {
    let rx = inventory.subscribe();
    stream::unfold(
        (inventory, rx, stop),
        |(inventory, mut rx, mut stop)| async move {
            let next = tokio::select! {
                r = rx.recv() => r,
                _ = &mut stop => return None,
            };
            let out = match next {
                Ok(ev) => {
                    let inv = inventory.clone();
                    // The store read is quick (sled keeps it in memory) but still blocking I/O.
                    let data = tokio::task::spawn_blocking(move || MachineEvent::new(&inv, ev))
                        .await
                        .ok()?;
                    SseEvent::default()
                        .event("machine-event")
                        .id(data.seq.to_string())
                        .json_data(&data)
                        .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"))
                }
                Err(RecvError::Lagged(n)) => SseEvent::default()
                    .event("resync")
                    .data(format!("{n} events missed")),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(out), (inventory, rx, stop)))
        },
    )
}

pub async fn stream(State(s): State<AdminState>) -> Response {
    Sse::new(events(s.inventory, shutdown()))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}
