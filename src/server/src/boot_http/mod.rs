//! The segment-facing boot HTTP server (unauthenticated, read-only): iPXE scripts, the boot files
//! TFTP also serves, boot assets, and per-machine config documents.
//!
//! Handlers never wait on internal queues: a sighting (and the boot event) goes to the recorder
//! with `try_send`, and the script is answered at once with a Content-Length.

pub mod fast;
pub mod head;
mod ranged;
mod templates;

use crate::files::{BootFiles, FileError};
use crate::inventory::{Inventory, Sighting};
use crate::metrics::Metrics;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rackboot_ipxe::{BootMode, BootQuery, RenderCtx, Rendered};
use rackboot_store::model::MachineState;
use rackboot_store::{BootModeSetting, DiskMethod, Machine};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub use ranged::{parse_range, RangeAnswer};
pub use templates::Templates;

#[derive(Clone)]
pub struct BootHttp {
    pub inventory: Inventory,
    pub metrics: Arc<Metrics>,
    pub tftp_files: Arc<BootFiles>,
    pub assets: Arc<BootFiles>,
    /// Profile files named by URL, fetched once and served from `/cache/<key>`.
    pub cache: Arc<crate::asset_cache::AssetCache>,
    /// `cache.content_dir()` as a file root (shared in memory like the other boot files).
    pub cached_files: Arc<BootFiles>,
    pub sightings: mpsc::Sender<Sighting>,
    /// Boot requests feed the lifecycle (PXE seen, profile served).
    pub lifecycle: Option<crate::lifecycle::LifecycleHandle>,
    /// `host:port` machines reach this server at.
    pub appliance: String,
    pub agent: BootMode,
    pub init_rounds: u32,
    /// Boot sightings passed on recently (see [`BootHttp::sighting_is_news`]).
    pub recent_boots: Arc<std::sync::Mutex<RecentBoots>>,
    /// The boot modes' checked scripts (see [`Templates`]).
    pub templates: Arc<Templates>,
}

/// Per MAC: when its last boot sighting was passed on, for which script and UUID.
pub type RecentBoots =
    std::collections::HashMap<[u8; 6], (Instant, &'static str, Option<[u8; 16]>)>;

/// The same machine fetching the same script again within this interval is not passed to the
/// recorder again (it writes one event per machine and script per interval anyway; the send
/// would wake its thread once per request).
const BOOT_SIGHTING_INTERVAL: Duration = Duration::from_secs(5);

pub fn router(state: BootHttp) -> Router {
    Router::new()
        .route("/ipxe/init.ipxe", get(init_ipxe))
        .route("/ipxe/boot.ipxe", get(boot_ipxe))
        .route("/tftp/{*path}", get(tftp_file))
        .route("/assets/{*path}", get(asset_file))
        .route("/config", get(config_doc))
        .route("/cache/{key}", get(cached_file))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found\n".into()) })
        .with_state(Arc::new(state))
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn count(s: &BootHttp, kind: &'static str, detail: &'static str) {
    Metrics::inc(&s.metrics.http, kind, detail);
}

async fn init_ipxe(State(s): State<Arc<BootHttp>>) -> Response {
    let (status, body) = init_script(&s);
    text(status, body)
}

/// The answer to `GET /ipxe/init.ipxe`, for both the axum route and the fast path.
pub(super) fn init_script(s: &BootHttp) -> (StatusCode, String) {
    count(s, "init", "");
    match rackboot_ipxe::init_script(&format!("http://{}", s.appliance), s.init_rounds) {
        Ok(script) => (StatusCode::OK, script),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// The hex digits of `s` (separators skipped) as exactly `N` bytes.
fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    let mut digits = s.bytes().filter_map(|c| char::from(c).to_digit(16));
    for byte in &mut out {
        let (hi, lo) = (digits.next()?, digits.next()?);
        *byte = u8::try_from(hi << 4 | lo).ok()?;
    }
    digits.next().is_none().then_some(out)
}

async fn boot_ipxe(State(s): State<Arc<BootHttp>>, RawQuery(q): RawQuery) -> Response {
    let (status, body) = boot_script(&s, q).await;
    text(status, body)
}

/// The answer to `GET /ipxe/boot.ipxe?<query>` as status and `text/plain` body, for both the
/// axum route and the fast path (`fast`), which answers it without hyper in a boot storm.
pub(super) async fn boot_script(s: &BootHttp, q: Option<String>) -> (StatusCode, String) {
    let started = std::time::Instant::now();
    let answer = boot_ipxe_inner(s, q).await;
    s.metrics
        .boot_script_seconds
        .observe(started.elapsed().as_secs_f64());
    answer
}

/// What a served boot script tells the lifecycle. Only inputs that can change the machine are
/// sent: every other one would cost the lifecycle a store read per boot.ipxe request (at a boot
/// storm's rate) for nothing.
fn lifecycle_inputs(state: MachineState, label: &str) -> Vec<rackboot_lifecycle::Input> {
    let mut v = Vec::new();
    if state == MachineState::Registered {
        v.push(rackboot_lifecycle::Input::PxeSeen);
    }
    if label == "profile" && state == MachineState::Provisioning {
        v.push(rackboot_lifecycle::Input::ProfileServed);
    }
    v
}

async fn boot_ipxe_inner(s: &BootHttp, q: Option<String>) -> (StatusCode, String) {
    let query = match BootQuery::parse(q.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => {
            count(s, "boot_refused", "bad_query");
            return (StatusCode::BAD_REQUEST, format!("bad boot query: {e}\n"));
        }
    };
    let uuid = (!query.uuid_is_placeholder).then(|| query.uuid.clone());
    let machine = lookup(&s.inventory, uuid.as_deref(), query.mac.as_deref());
    let machine_id = match &machine {
        Some(m) => m.id.clone(),
        None => uuid.clone().unwrap_or_else(|| {
            query
                .mac
                .as_deref()
                .map(rackboot_store::model::id_from_mac)
                .unwrap_or_else(|| query.uuid.clone())
        }),
    };
    let (mut mode, label) = match mode_for(s, machine.as_ref()) {
        Ok(m) => m,
        Err(msg) => {
            count(s, "boot_refused", "profile");
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{msg}\n"));
        }
    };
    // Omni mode with `omni.agent = "talos"`: the agent is Talos in agent mode from the Image
    // Factory (the metal agent dials back to this port). The boot is recorded like an agent
    // boot, so the machine's tunnel is accepted.
    if matches!(mode, BootMode::Agent { .. }) {
        let arch = match query.arch {
            Some(rackboot_ipxe::Arch::Arm64) => "arm64",
            _ => "amd64",
        };
        match s.metrics.omni.talos_agent_chain(&s.appliance, arch).await {
            None => {}
            Some(Ok(url)) => {
                if s.inventory.agent_tokens().issue(&machine_id).is_none() {
                    count(s, "boot_refused", "random");
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "random number generator failed\n".into(),
                    );
                }
                mode = BootMode::Chain { url };
            }
            Some(Err(e)) => {
                count(s, "boot_refused", "factory");
                tracing::warn!(machine = %machine_id, error = %e, "Talos agent-mode boot unavailable");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the Image Factory is unreachable; retry\n".into(),
                );
            }
        }
    }
    // The agent gets a fresh per-boot token on its command line (see `agent_token`).
    let token = if matches!(mode, BootMode::Agent { .. }) {
        let Some(token) = s.inventory.agent_tokens().issue(&machine_id) else {
            count(s, "boot_refused", "random");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "random number generator failed\n".into(),
            );
        };
        Some(token)
    } else {
        None
    };
    let ctx = RenderCtx {
        appliance: s.appliance.clone(),
        machine_id: machine_id.clone(),
        uuid: query.uuid.clone(),
        mac: query.mac.clone(),
        arch: query.arch,
    };
    let template = s.templates.get(&mode, &s.appliance);
    let rendered = rackboot_ipxe::render_template(&template.template, &ctx, token.as_deref());
    // Record the boot without waiting (discovery for unknown machines).
    let mac = query.mac.as_deref().and_then(parse_hex::<6>);
    let uuid16 = uuid.as_deref().and_then(parse_hex::<16>);
    if let Some(mac) = mac.filter(|mac| s.sighting_is_news(*mac, label, uuid16)) {
        let sighting = Sighting {
            mac,
            uuid: uuid16,
            arch: None,
            vendor_class: None,
            via: "http",
            note: Some(format!("boot.ipxe served: {label}")),
        };
        if s.sightings.try_send(sighting).is_ok() {
            s.sighting_sent(mac, label, uuid16);
        } else {
            count(s, "sighting_dropped", "queue_full");
        }
    }
    count(s, "boot", label);
    if let (Some(l), Some(m)) = (&s.lifecycle, &machine) {
        for input in lifecycle_inputs(m.state, label) {
            l.notify(&m.id, input);
        }
    }
    match rendered {
        Ok(Rendered::Script(script)) => (StatusCode::OK, script),
        Ok(Rendered::NotFound { reason }) => (StatusCode::NOT_FOUND, format!("{reason}\n")),
        Err(e) => (
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            format!("{e}\n"),
        ),
    }
}

fn lookup(inv: &Inventory, uuid: Option<&str>, mac: Option<&str>) -> Option<Machine> {
    let store = inv.store();
    if let Some(u) = uuid {
        if let Ok(Some(m)) = store.machine_by_uuid(u) {
            return Some(m);
        }
        if let Ok(Some(m)) = store.get_machine(u) {
            return Some(m);
        }
    }
    mac.and_then(|m| store.machine_by_mac(m).ok().flatten())
}

/// The boot mode for a machine: unknown machines and machines without a setting get the agent.
fn mode_for(s: &BootHttp, m: Option<&Machine>) -> Result<(BootMode, &'static str), String> {
    let Some(setting) = m.and_then(|m| m.boot_mode.clone()) else {
        return Ok((s.agent_mode(), "agent"));
    };
    Ok(match setting {
        BootModeSetting::Agent => (s.agent_mode(), "agent"),
        BootModeSetting::Chain { url } => (BootMode::Chain { url }, "chain"),
        BootModeSetting::Cordoned { reason } => {
            let reason = if reason.is_empty() {
                "machine is cordoned".to_string()
            } else {
                reason
            };
            (BootMode::Cordoned { reason }, "cordoned")
        }
        BootModeSetting::Disk { method } => {
            let method = match method {
                DiskMethod::Exit => rackboot_ipxe::DiskMethod::Exit,
                DiskMethod::Http404 => rackboot_ipxe::DiskMethod::NotFound,
                DiskMethod::Sanboot => rackboot_ipxe::DiskMethod::Sanboot,
            };
            (BootMode::Disk { method }, "disk")
        }
        BootModeSetting::Profile { profile } => {
            let p = s
                .inventory
                .store()
                .get_profile(&profile)
                .map_err(|e| format!("cannot read profile {profile:?}: {e}"))?
                .ok_or_else(|| format!("boot profile {profile:?} does not exist"))?;
            match (p.script, p.kernel) {
                (Some(script), _) => (BootMode::Script(script), "profile"),
                (None, Some(kernel)) => (
                    BootMode::Profile {
                        kernel: s.via_cache(&kernel, &p.sha256),
                        initrds: p
                            .initrds
                            .iter()
                            .map(|i| s.via_cache(i, &p.sha256))
                            .collect(),
                        cmdline: p.cmdline,
                    },
                    "profile",
                ),
                (None, None) => {
                    return Err(format!(
                        "boot profile {profile:?} has neither a kernel nor a script"
                    ))
                }
            }
        }
    })
}

impl BootHttp {
    /// Whether a boot of `mac` with script `label` is worth a sighting (not the same as one
    /// passed on within [`BOOT_SIGHTING_INTERVAL`]).
    fn sighting_is_news(&self, mac: [u8; 6], label: &'static str, uuid: Option<[u8; 16]>) -> bool {
        let Ok(recent) = self.recent_boots.lock() else {
            return true;
        };
        !recent.get(&mac).is_some_and(|(at, l, u)| {
            *l == label && *u == uuid && at.elapsed() < BOOT_SIGHTING_INTERVAL
        })
    }

    /// A boot sighting was queued: repeats within the interval are not news.
    fn sighting_sent(&self, mac: [u8; 6], label: &'static str, uuid: Option<[u8; 16]>) {
        if let Ok(mut recent) = self.recent_boots.lock() {
            if recent.len() >= 100_000 {
                recent.clear();
            }
            recent.insert(mac, (Instant::now(), label, uuid));
        }
    }

    /// The agent boot, with Omni's join kernel arguments appended in Omni mode.
    fn agent_mode(&self) -> BootMode {
        let join = self.metrics.omni.join_kernel_args();
        match (&self.agent, join.is_empty()) {
            (
                BootMode::Agent {
                    kernel,
                    initrds,
                    cmdline,
                },
                false,
            ) => BootMode::Agent {
                kernel: kernel.clone(),
                initrds: initrds.clone(),
                cmdline: format!("{cmdline} {}", join.join(" ")).trim().to_string(),
            },
            (a, _) => a.clone(),
        }
    }

    /// A profile file named by `http(s)://` URL is served from the appliance's cache instead.
    fn via_cache(&self, file: &str, sums: &std::collections::BTreeMap<String, String>) -> String {
        if file.starts_with("http://") || file.starts_with("https://") {
            let key = self
                .cache
                .register(file, sums.get(file).map(String::as_str));
            format!("http://{}/cache/{key}", self.appliance)
        } else {
            file.to_string()
        }
    }
}

/// `GET /cache/<key>`: a remote profile file, fetched on first use (once), then from disk.
async fn cached_file(
    State(s): State<Arc<BootHttp>>,
    Path(key): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return text(StatusCode::NOT_FOUND, "not found\n".into());
    }
    match s.cache.ensure(&key).await {
        Ok(hash) => {
            count(&s, "cache", "ok");
            serve_file(&s.cached_files, &hash, &method, &headers)
                .await
                .unwrap_or_else(|e| e)
        }
        Err(crate::asset_cache::CacheError::UnknownKey) => {
            text(StatusCode::NOT_FOUND, "not found\n".into())
        }
        Err(e) => {
            count(&s, "cache", "failed");
            tracing::warn!(error = %e, "boot asset not cached");
            text(StatusCode::BAD_GATEWAY, format!("{e}\n"))
        }
    }
}

async fn serve_file(
    files: &BootFiles,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, Response> {
    let clean = rackboot_tftp::sanitize(name)
        .map_err(|e| text(StatusCode::FORBIDDEN, format!("refused: {e}\n")))?;
    match files.get_with_mtime(&clean).await {
        Ok((data, mtime)) => Ok(ranged::respond(
            method,
            headers,
            data,
            mtime,
            "application/octet-stream",
        )),
        Err(e @ (FileError::NotFound | FileError::NotAFile)) => {
            Err(text(StatusCode::NOT_FOUND, format!("{e}\n")))
        }
        Err(e @ FileError::OutsideRoot) => Err(text(StatusCode::FORBIDDEN, format!("{e}\n"))),
        Err(e) => {
            tracing::warn!(error = %e, file = %clean, "boot file not served");
            Err(text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))
        }
    }
}

async fn tftp_file(
    State(s): State<Arc<BootHttp>>,
    Path(path): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let r = serve_file(&s.tftp_files, &path, &method, &headers).await;
    count(&s, "tftp_file", if r.is_ok() { "ok" } else { "refused" });
    r.unwrap_or_else(|e| e)
}

async fn asset_file(
    State(s): State<Arc<BootHttp>>,
    Path(path): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let r = serve_file(&s.assets, &path, &method, &headers).await;
    count(&s, "asset", if r.is_ok() { "ok" } else { "refused" });
    r.unwrap_or_else(|e| e)
}

/// `GET /config?u=<uuid>`: the machine's config document (the Omni join config documents in
/// Omni mode; empty in standalone mode or before Omni sent one).
async fn config_doc(State(s): State<Arc<BootHttp>>) -> Response {
    count(&s, "config", "");
    let doc = s.metrics.omni.join_config().unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/yaml")],
        doc,
    )
        .into_response()
}

#[cfg(test)]
mod fast_tests;
#[cfg(test)]
mod tests;
