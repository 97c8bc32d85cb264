//! The admin HTTP server: health, metrics and the JSON API. Token auth: every state-changing
//! request needs `Authorization: Bearer <token>`; when bound to a non-loopback address every
//! request does, except `GET /healthz` (so a load balancer can probe it; it reveals nothing).

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
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

pub use auth::AdminToken;

#[derive(Clone)]
pub struct AdminState {
    pub inventory: Inventory,
    pub metrics: Arc<Metrics>,
    pub token: Arc<AdminToken>,
    pub power: Arc<crate::power::PowerService>,
    /// Listening on loopback only: read-only calls need no token.
    pub loopback: bool,
}

pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route(
            "/api/v1/machines",
            get(machines::list).post(machines::create),
        )
        .route(
            "/api/v1/machines/{id}",
            get(machines::show).delete(machines::remove),
        )
        .route(
            "/api/v1/machines/{id}/boot",
            axum::routing::put(machines::set_boot),
        )
        .route(
            "/api/v1/machines/{id}/power",
            get(machines::power_status).post(machines::power),
        )
        .route("/api/v1/profiles", get(machines::profiles))
        .route(
            "/api/v1/profiles/{name}",
            axum::routing::put(machines::put_profile).delete(machines::remove_profile),
        )
        .route("/api/v1/events", get(machines::events))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(axum::extract::State(s): axum::extract::State<AdminState>) -> Response {
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
