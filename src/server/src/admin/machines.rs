//! `/api/v1/machines` and `/api/v1/events` handlers: translate HTTP into inventory calls.

use super::{error, AdminState};
use crate::api::{MachineView, NewMachine};
use crate::inventory::InventoryError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rackboot_store::{BootModeSetting, Event, Profile};
use serde::Deserialize;

pub(super) async fn list(
    State(s): State<AdminState>,
) -> Result<Json<Vec<MachineView>>, InventoryError> {
    Ok(Json(s.inventory.list()?))
}

pub(super) async fn show(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<MachineView>, InventoryError> {
    Ok(Json(MachineView::from(&s.inventory.find(&id)?)))
}

pub(super) async fn create(
    State(s): State<AdminState>,
    body: Result<Json<NewMachine>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(rej) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid machine JSON: {}", rej.body_text()),
            )
        }
    };
    let inv = s.inventory.clone();
    match tokio::task::spawn_blocking(move || inv.add(req)).await {
        Ok(Ok(m)) => (StatusCode::CREATED, Json(m)).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "request task failed"),
    }
}

pub(super) async fn remove(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<MachineView>, InventoryError> {
    Ok(Json(s.inventory.remove(&id)?))
}

#[derive(Deserialize)]
pub(super) struct EventQuery {
    machine: Option<String>,
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

pub(super) async fn events(
    State(s): State<AdminState>,
    Query(q): Query<EventQuery>,
) -> Result<Json<Vec<Event>>, InventoryError> {
    let limit = q.limit.unwrap_or(200).min(1000);
    Ok(Json(s.inventory.store().events(
        q.machine.as_deref(),
        q.after,
        limit,
    )?))
}

fn bad_json(rej: JsonRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!("invalid JSON: {}", rej.body_text()),
    )
}

pub(super) async fn set_boot(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<BootModeSetting>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(mode)) => match s.inventory.set_boot_mode(&id, mode) {
            Ok(m) => Json(m).into_response(),
            Err(e) => e.into_response(),
        },
        Err(rej) => bad_json(rej),
    }
}

pub(super) async fn profiles(
    State(s): State<AdminState>,
) -> Result<Json<Vec<Profile>>, InventoryError> {
    Ok(Json(s.inventory.profiles()?))
}

pub(super) async fn put_profile(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Json<Profile>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(p)) if p.name != name => error(
            StatusCode::BAD_REQUEST,
            "name in the body must match the URL",
        ),
        Ok(Json(p)) => match s.inventory.put_profile(p) {
            Ok(p) => Json(p).into_response(),
            Err(e) => e.into_response(),
        },
        Err(rej) => bad_json(rej),
    }
}

pub(super) async fn remove_profile(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Response {
    match s.inventory.remove_profile(&name) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PowerRequest {
    /// on, off, cycle, reset, soft or status.
    action: String,
    /// With `on`/`cycle`/`reset`: set PXE as the next boot device first.
    #[serde(default)]
    pxe: bool,
    /// With `pxe`: UEFI PXE.
    #[serde(default)]
    efi: bool,
}

pub(super) async fn power_status(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    match s.power.act(&id, None).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn power(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<PowerRequest>, JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(r)) => r,
        Err(rej) => return bad_json(rej),
    };
    let action = if req.action == "status" {
        None
    } else {
        match req.action.parse::<rackboot_bmc::PowerAction>() {
            Ok(a) => Some(a),
            Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
        }
    };
    if req.pxe {
        if let Err(e) = s.power.pxe_once(&id, req.efi).await {
            return e.into_response();
        }
    }
    match s.power.act(&id, action).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/power/poll`: poll every BMC now; answers when the pass is done.
pub(super) async fn power_poll(State(s): State<AdminState>) -> Json<crate::power::PollReport> {
    Json(s.power.poll_all().await)
}

/// Body of a lifecycle command; which fields apply depends on the action.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LifecycleBody {
    profile: Option<String>,
    #[serde(default)]
    full: bool,
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/machines/{id}/{accept|reject|provision|release|wipe|cordon|uncordon}`.
pub(super) async fn lifecycle_command(
    State(s): State<AdminState>,
    Path((id, action)): Path<(String, String)>,
    body: Option<Json<LifecycleBody>>,
) -> Response {
    use rackboot_lifecycle::Command;
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let cmd = match action.as_str() {
        "accept" => Command::Accept,
        "reject" => Command::Reject,
        "provision" => match b.profile {
            Some(profile) => Command::Provision { profile },
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "provision needs {\"profile\": NAME}",
                )
            }
        },
        "release" => Command::Release,
        "wipe" => Command::Wipe { full: b.full },
        "cordon" => Command::Cordon { reason: b.reason },
        "uncordon" => Command::Uncordon,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no machine action {other:?}"),
            )
        }
    };
    match s.lifecycle.command(&id, cmd).await {
        Ok(m) => Json(MachineView::from(&m)).into_response(),
        Err(e) => e.into_response(),
    }
}
