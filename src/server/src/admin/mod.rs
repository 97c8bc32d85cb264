//! The admin HTTP server: health, metrics, the JSON API and the web status page
//! ([`crate::web`]). Token auth: every state-changing request needs `Authorization: Bearer
//! <token>` (or the web session cookie plus its CSRF token, see `auth.rs`); when bound to a
//! non-loopback address every request does, except `GET /healthz` (so a load balancer can probe
//! it; it reveals nothing) and the login form with its static assets.

mod auth;
pub mod auth_error {
    pub use super::auth::TokenError;
}
mod machines;

use crate::api::ErrorBody;
use crate::inventory::{Inventory, InventoryError};
use crate::metrics::Metrics;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use rackboot_store::StoreError;
use std::sync::Arc;

pub use auth::AdminToken;

#[derive(Clone)]
pub struct AdminState {
    pub inventory: Inventory,
    pub metrics: Arc<Metrics>,
    pub token: Arc<AdminToken>,
    pub power: Arc<crate::power::PowerService>,
    pub lifecycle: Arc<crate::lifecycle::Reconciler>,
    /// Listening on loopback only: read-only calls need no token.
    pub loopback: bool,
}

/// Every (method, path) of the JSON/text API the admin router serves; the router is built from
/// this table (see [`api_route`]) and `openapi.json` documents exactly these (a test checks).
/// The HTML pages are listed in [`crate::web::PAGES`].
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/machines"),
    ("POST", "/api/v1/machines"),
    ("GET", "/api/v1/machines/{id}"),
    ("DELETE", "/api/v1/machines/{id}"),
    ("PUT", "/api/v1/machines/{id}/boot"),
    ("GET", "/api/v1/machines/{id}/power"),
    ("POST", "/api/v1/machines/{id}/power"),
    ("POST", "/api/v1/machines/{id}/{action}"),
    ("POST", "/api/v1/power/poll"),
    ("GET", "/api/v1/profiles"),
    ("PUT", "/api/v1/profiles/{name}"),
    ("DELETE", "/api/v1/profiles/{name}"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/events/stream"),
    ("GET", "/api/v1/omni"),
];

/// Routes served without any credentials, even off loopback (they reveal nothing).
const PUBLIC: &[&str] = &["/healthz"];

/// The handler of one [`ROUTES`] entry.
fn api_route(method: &str, path: &str) -> MethodRouter<AdminState> {
    use axum::routing::{delete, post, put};
    match (method, path) {
        ("GET", "/healthz") => get(healthz),
        ("GET", "/metrics") => get(metrics),
        ("GET", "/api/v1/machines") => get(machines::list),
        ("POST", "/api/v1/machines") => post(machines::create),
        ("GET", "/api/v1/machines/{id}") => get(machines::show),
        ("DELETE", "/api/v1/machines/{id}") => delete(machines::remove),
        ("PUT", "/api/v1/machines/{id}/boot") => put(machines::set_boot),
        ("GET", "/api/v1/machines/{id}/power") => get(machines::power_status),
        ("POST", "/api/v1/machines/{id}/power") => post(machines::power),
        ("POST", "/api/v1/machines/{id}/{action}") => post(machines::lifecycle_command),
        ("POST", "/api/v1/power/poll") => post(machines::power_poll),
        ("GET", "/api/v1/profiles") => get(machines::profiles),
        ("PUT", "/api/v1/profiles/{name}") => put(machines::put_profile),
        ("DELETE", "/api/v1/profiles/{name}") => delete(machines::remove_profile),
        ("GET", "/api/v1/events") => get(machines::events),
        ("GET", "/api/v1/events/stream") => get(crate::web::sse::stream),
        ("GET", "/api/v1/omni") => get(omni_status),
        _ => panic!("admin ROUTES entry {method} {path} has no handler"),
    }
}

pub fn router(state: AdminState) -> Router {
    let web = crate::web::WebState::new(state.clone());
    let (mut public, mut api) = (Router::new(), Router::new());
    for &(method, path) in ROUTES {
        if PUBLIC.contains(&path) {
            public = public.route(path, api_route(method, path));
        } else {
            api = api.route(path, api_route(method, path));
        }
    }
    let protected = api
        .with_state(state.clone())
        .merge(crate::web::pages(web.clone()))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            auth::require_token,
        ));
    public
        .with_state(state)
        .merge(crate::web::public(web))
        .merge(protected)
        .layer(axum::middleware::map_response(crate::web::security_headers))
}

/// The Omni link's state (`enabled: false` in standalone mode).
async fn omni_status(
    axum::extract::State(s): axum::extract::State<AdminState>,
) -> axum::Json<crate::omni_link::LinkStatus> {
    axum::Json(s.metrics.omni.status())
}

/// `ok`, or `degraded: <why>` while the data disk is full or failing (still 200: boots are
/// served and reads answered; writes resume by themselves when the disk has room again).
async fn healthz(axum::extract::State(s): axum::extract::State<AdminState>) -> String {
    let store = s.inventory.store().clone();
    let fault = tokio::task::spawn_blocking(move || store.write_fault())
        .await
        .unwrap_or(None);
    match fault {
        None => "ok\n".to_string(),
        Some(why) => format!("degraded: {why}\n"),
    }
}

async fn metrics(axum::extract::State(s): axum::extract::State<AdminState>) -> Response {
    let machines = s.inventory.store().list_machines().unwrap_or_default();
    let states: Vec<String> = machines
        .iter()
        .map(|m| {
            serde_json::to_value(m.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .collect();
    s.metrics
        .set_machine_states(states.iter().map(String::as_str));
    s.metrics
        .set_store_writable(s.inventory.store().write_fault().is_none());
    let body = s.metrics.render(s.inventory.store().size_on_disk());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

pub(crate) fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: msg.into(),
            detail: None,
        }),
    )
        .into_response()
}

impl IntoResponse for crate::power::PowerError {
    fn into_response(self) -> Response {
        use crate::power::PowerError;
        match self {
            PowerError::Inventory(e) => e.into_response(),
            e @ PowerError::NoBmc(_) => error(StatusCode::CONFLICT, e.to_string()),
            e @ PowerError::Bmc { .. } => error(StatusCode::BAD_GATEWAY, e.to_string()),
        }
    }
}

impl IntoResponse for InventoryError {
    fn into_response(self) -> Response {
        let status = match &self {
            InventoryError::Invalid(_) => StatusCode::BAD_REQUEST,
            InventoryError::NotFound(_) => StatusCode::NOT_FOUND,
            InventoryError::Conflict(_) => StatusCode::CONFLICT,
            InventoryError::DiscoveryLimited => StatusCode::TOO_MANY_REQUESTS,
            InventoryError::Store(
                e @ (StoreError::WritesRefused(_) | StoreError::Unavailable(_)),
            ) => {
                tracing::warn!(error = %e, "inventory write refused");
                return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            }
            InventoryError::Store(e) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(e), "inventory failure");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        error(status, self.to_string())
    }
}

#[cfg(test)]
mod tests;
