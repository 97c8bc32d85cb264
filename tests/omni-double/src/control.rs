//! The control HTTP/JSON API: drives Omni's side of a double running as its own process.
//!
//! Mutations answer the resulting resource as JSON ([`crate::json::resource`]), errors
//! `{"error": "..."}` with 404 (not found), 409 (conflict, pending finalizers), 400 (bad input).
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/healthz` | | `{"ok":true}` |
//! | GET | `/control/status` | | `{"provider_id","persisting","keys":[fingerprint]}` |
//! | POST | `/control/providers` | `{"id"}` | InfraProvider |
//! | DELETE | `/control/providers/{id}` | | `{}` |
//! | POST | `/control/machines` | `{"uuid"?}` | InfraMachine (PENDING) |
//! | POST | `/control/machines/{uuid}/accept` · `/reject` · `/installed` · `/deallocate` · `/reboot` · `/power-off` · `/cordon` · `/uncordon` · `/teardown` | | InfraMachine (`/teardown`: `{"destroy_ready"}`) |
//! | POST | `/control/machines/{uuid}/allocate` | `{"talos_version","extensions"?,"cluster"?,"machine_set"?,"role"?,"installed"?}` | InfraMachine |
//! | POST | `/control/machines/{uuid}/preferred-power` | `{"on":bool}` | InfraMachine |
//! | POST | `/control/machines/{uuid}/extra-kernel-args` | `{"args"}` | InfraMachine |
//! | PUT | `/control/bmc-configs/{uuid}` | `{"ipmi"?:{"address","port","username","password"},"api"?:{"address"}}` | BMCConfig |
//! | PUT | `/control/join-config` | `{"kernel_args","config","join_token"}` | ProviderJoinConfig |
//! | GET | `/control/resources/{ns}/{type}` | | `[resource]` |
//! | GET / DELETE | `/control/resources/{ns}/{type}/{id}` | | resource / `{}` |
//! | POST | `/control/wipe` | | `{}` (Omni empty, state file frozen) |
//! | POST | `/control/restore` | | `{"restored": n}` (state file loaded, writing resumed) |

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::omni::{Allocation, BmcSettings, JoinSettings, OmniError, OmniHandle};
use crate::store::StoreError;

struct ApiError(StatusCode, String);

impl From<OmniError> for ApiError {
    fn from(e: OmniError) -> Self {
        let code = match &e {
            OmniError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            OmniError::Store(
                StoreError::AlreadyExists(_)
                | StoreError::PendingFinalizers { .. }
                | StoreError::VersionConflict { .. }
                | StoreError::OwnerConflict { .. }
                | StoreError::PhaseConflict { .. },
            ) => StatusCode::CONFLICT,
            OmniError::Persist(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

type Answer = Result<Json<Value>, ApiError>;

fn res(r: rackboot_proto::cosi::resource::Resource) -> Answer {
    Ok(Json(crate::json::resource(&r)))
}

#[derive(serde::Deserialize)]
struct IdBody {
    id: String,
}

#[derive(serde::Deserialize, Default)]
struct JoinBody {
    uuid: Option<String>,
}

#[derive(serde::Deserialize)]
struct PowerBody {
    on: bool,
}

#[derive(serde::Deserialize)]
struct ArgsBody {
    args: String,
}

async fn machine_action(
    State(h): State<OmniHandle>,
    Path((uuid, action)): Path<(String, String)>,
) -> Answer {
    let r = match action.as_str() {
        "accept" => h.accept(&uuid)?,
        "reject" => h.reject(&uuid)?,
        "installed" => h.mark_installed(&uuid)?,
        "deallocate" => h.deallocate(&uuid)?,
        "reboot" => h.request_reboot(&uuid)?,
        "power-off" => h.request_power_off(&uuid)?,
        "cordon" => h.set_cordoned(&uuid, true)?,
        "uncordon" => h.set_cordoned(&uuid, false)?,
        "teardown" => return Ok(Json(json!({"destroy_ready": h.teardown_machine(&uuid)?}))),
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}"),
            ))
        }
    };
    res(r)
}

fn router_inner() -> Router<OmniHandle> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"ok": true})) }))
        .route(
            "/control/status",
            get(|State(h): State<OmniHandle>| async move {
                Json(json!({"provider_id": h.provider_id(), "persisting": h.persisting(),
                            "keys": h.key_fingerprints()}))
            }),
        )
        .route(
            "/control/providers",
            post(|State(h): State<OmniHandle>, Json(b): Json<IdBody>| async move { res(h.create_infra_provider(&b.id)?) }),
        )
        .route(
            "/control/providers/{id}",
            delete(|State(h): State<OmniHandle>, Path(id): Path<String>| async move {
                h.delete_infra_provider(&id)?;
                Ok::<_, ApiError>(Json(json!({})))
            }),
        )
        .route(
            "/control/machines",
            post(|State(h): State<OmniHandle>, body: Option<Json<JoinBody>>| async move {
                let b = body.map(|Json(b)| b).unwrap_or_default();
                let id = h.machine_joins(b.uuid.as_deref())?;
                res(h.get(crate::names::NS_INFRA_PROVIDER, crate::names::TYPE_INFRA_MACHINE, &id)?)
            }),
        )
        .route("/control/machines/{uuid}/{action}", post(machine_action))
        .route(
            "/control/machines/{uuid}/allocate",
            post(|State(h): State<OmniHandle>, Path(uuid): Path<String>, Json(a): Json<Allocation>| async move {
                res(h.allocate(&uuid, &a)?)
            }),
        )
        .route(
            "/control/machines/{uuid}/preferred-power",
            post(|State(h): State<OmniHandle>, Path(uuid): Path<String>, Json(b): Json<PowerBody>| async move {
                res(h.set_preferred_power(&uuid, b.on)?)
            }),
        )
        .route(
            "/control/machines/{uuid}/extra-kernel-args",
            post(|State(h): State<OmniHandle>, Path(uuid): Path<String>, Json(b): Json<ArgsBody>| async move {
                res(h.set_extra_kernel_args(&uuid, &b.args)?)
            }),
        )
        .route(
            "/control/bmc-configs/{uuid}",
            put(|State(h): State<OmniHandle>, Path(uuid): Path<String>, Json(b): Json<BmcSettings>| async move {
                res(h.set_bmc_config(&uuid, &b)?)
            }),
        )
        .route(
            "/control/join-config",
            put(|State(h): State<OmniHandle>, Json(b): Json<JoinSettings>| async move { res(h.set_join_config(&b)?) }),
        )
        .route(
            "/control/resources/{ns}/{ty}",
            get(|State(h): State<OmniHandle>, Path((ns, ty)): Path<(String, String)>| async move {
                let items: Vec<Value> = h.list(&ns, &ty).iter().map(crate::json::resource).collect();
                Json(Value::Array(items))
            }),
        )
        .route(
            "/control/resources/{ns}/{ty}/{id}",
            get(|State(h): State<OmniHandle>, Path((ns, ty, id)): Path<(String, String, String)>| async move {
                res(h.get(&ns, &ty, &id)?)
            })
            .delete(|State(h): State<OmniHandle>, Path((ns, ty, id)): Path<(String, String, String)>| async move {
                h.destroy(&ns, &ty, &id)?;
                Ok::<_, ApiError>(Json(json!({})))
            }),
        )
        .route(
            "/control/wipe",
            post(|State(h): State<OmniHandle>| async move {
                h.wipe();
                Json(json!({}))
            }),
        )
        .route(
            "/control/restore",
            post(|State(h): State<OmniHandle>| async move {
                let n = h.restore()?;
                Ok::<_, ApiError>(Json(json!({"restored": n})))
            }),
        )
}

/// The control API router over `handle`.
pub fn router(handle: OmniHandle) -> Router {
    router_inner().with_state(handle)
}
