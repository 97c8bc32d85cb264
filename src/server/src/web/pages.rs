//! The HTML pages: machine table (`/`), machine detail (`/machines/{id}`), events (`/events`),
//! and the login form. Rendered from the store on each request; every value is escaped.

use super::html::{esc, form_decode, time_el, url_enc, utc, Page};
use super::session::{self, Session};
use super::{tail_events, WebState};
use crate::api::MachineView;
use crate::inventory::InventoryError;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use rackboot_store::{BootModeSetting, DiskMethod, Event, MachineState};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write;

const STATES: &[&str] = &[
    "registered",
    "discovered",
    "inspecting",
    "wiping",
    "available",
    "provisioning",
    "provisioned",
    "releasing",
    "cordoned",
    "rejected",
    "error",
];

fn state_str(s: MachineState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{s:?}").to_lowercase())
}

fn power_str(p: rackboot_store::PowerState) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// Same wording as `bootLabel` in app.js.
pub fn boot_label(m: &Option<BootModeSetting>) -> String {
    match m {
        None => "agent (default)".into(),
        Some(BootModeSetting::Agent) => "agent".into(),
        Some(BootModeSetting::Profile { profile }) => format!("profile: {profile}"),
        Some(BootModeSetting::Chain { url }) => format!("chain: {url}"),
        Some(BootModeSetting::Disk { method }) => match method {
            DiskMethod::Exit => "disk".into(),
            DiskMethod::Http404 => "disk (http 404)".into(),
            DiskMethod::Sanboot => "disk (sanboot)".into(),
        },
        Some(BootModeSetting::Cordoned { reason }) if reason.is_empty() => "cordoned".into(),
        Some(BootModeSetting::Cordoned { reason }) => format!("cordoned: {reason}"),
    }
}

/// Reachability of a BMC as a small badge (same as `bmcHealth` in app.js).
pub fn bmc_health_badge(h: Option<&rackboot_store::BmcHealth>) -> String {
    match h {
        None => "<span class=\"badge\">unchecked</span>".to_string(),
        Some(h) if h.reachable => "<span class=\"badge power-on\">reachable</span>".to_string(),
        Some(h) => format!(
            "<span class=\"badge power-off\" title=\"{}\">unreachable</span>",
            esc(h.error.as_deref().unwrap_or(""))
        ),
    }
}

/// BMC type from the URL scheme (same as `bmcType` in app.js).
pub fn bmc_type(url: &str) -> &'static str {
    if url.starts_with("ipmi://") {
        "IPMI"
    } else if url.starts_with("redfish+http://") {
        "Redfish (http)"
    } else if url.starts_with("redfish://") {
        "Redfish"
    } else {
        "?"
    }
}

fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

fn store_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "web page: store read failed");
    let mut p = Page::new("error", "", None, false);
    p.el("h1", "", "Inventory read failed")
        .el("p", "", "See the server log.");
    html(StatusCode::INTERNAL_SERVER_ERROR, p.finish())
}

/// The session of a request, if logged in.
fn session_of(w: &WebState, headers: &HeaderMap) -> Option<Session> {
    w.sessions.lookup(headers).map(|(_, s)| s)
}

fn new_page(title: &str, nav: &str, sess: &Option<Session>) -> Page {
    Page::new(title, nav, sess.as_ref().map(|s| s.csrf.as_str()), true)
}

fn badge(kind: &str, value: &str) -> String {
    format!(
        "<span class=\"badge {kind}-{}\">{}</span>",
        esc(value),
        esc(value)
    )
}

/// Action buttons for one machine (rendered only for a logged-in session). "Provision…" opens
/// a profile picker (app.js, profiles from `GET /api/v1/profiles`) before it asks to confirm.
fn actions(m: &MachineView) -> String {
    let name = m.name.clone().unwrap_or_else(|| m.id.clone());
    let mut out = String::from("<div class=\"actions\">");
    for (op, arg, label, cls) in [
        ("power", "on", "On", ""),
        ("power", "off", "Off", "warn"),
        ("power", "cycle", "Cycle", "warn"),
        ("boot", "disk", "Disk", ""),
        ("boot", "agent", "Agent", ""),
        ("lifecycle", "accept", "Accept", ""),
        ("provision", "", "Provision…", ""),
        ("lifecycle", "release", "Release", "warn"),
        ("lifecycle", "wipe", "Wipe", "warn"),
        ("lifecycle", "cordon", "Cordon", "warn"),
    ] {
        let _ = write!(
            out,
            "<button type=\"button\" class=\"act {cls}\" data-machine=\"{}\" data-name=\"{}\" data-op=\"{op}\" data-arg=\"{arg}\">{label}</button>",
            esc(&m.id),
            esc(&name)
        );
    }
    out.push_str("</div>");
    out
}

fn event_cell(now: u64, ev: Option<&Event>) -> String {
    match ev {
        None => "<span class=\"muted\">none</span>".into(),
        Some(e) => format!(
            "<span class=\"kind\">{}</span> {} <span class=\"sub\">{}</span>",
            esc(&e.kind),
            esc(&e.message),
            time_el(now, Some(e.at_ms))
        ),
    }
}

fn machine_row(now: u64, m: &MachineView, last: Option<&Event>, logged_in: bool) -> String {
    let mut r = String::with_capacity(1024);
    let display = m.name.clone().unwrap_or_else(|| m.id.clone());
    let _ = write!(
        r,
        "<tr data-machine-id=\"{}\"><td><a href=\"/machines/{}\" data-field=\"name\">{}</a><div class=\"sub mono\">{}</div></td>",
        esc(&m.id),
        url_enc(&m.id),
        esc(&display),
        esc(m.uuid.as_deref().unwrap_or(&m.id))
    );
    let _ = write!(
        r,
        "<td class=\"mono\" data-field=\"macs\">{}</td>",
        m.macs
            .iter()
            .map(|x| esc(x))
            .collect::<Vec<_>>()
            .join("<br>")
    );
    let reason = m.state_reason.as_deref().unwrap_or("");
    let _ = write!(
        r,
        "<td data-field=\"state\" title=\"{}\">{}</td>",
        esc(reason),
        badge("state", &state_str(m.state))
    );
    let _ = write!(
        r,
        "<td data-field=\"power\">{}</td>",
        badge("power", &power_str(m.power))
    );
    match &m.bmc {
        Some(b) => {
            let _ = write!(
                r,
                "<td data-field=\"bmc\">{} {}<div class=\"sub mono\">{}</div></td>",
                esc(bmc_type(&b.url)),
                bmc_health_badge(b.health.as_ref()),
                esc(&b.url)
            );
        }
        None => r.push_str("<td data-field=\"bmc\"><span class=\"muted\">none</span></td>"),
    }
    let _ = write!(
        r,
        "<td data-field=\"boot_mode\">{}</td>",
        esc(&boot_label(&m.boot_mode))
    );
    let _ = write!(
        r,
        "<td data-field=\"last_seen\">{}</td>",
        time_el(now, m.boot.last_seen_ms)
    );
    let _ = write!(
        r,
        "<td data-field=\"last_event\">{}</td>",
        event_cell(now, last)
    );
    if logged_in {
        let _ = write!(r, "<td>{}</td>", actions(m));
    }
    r.push_str("</tr>\n");
    r
}

#[derive(Deserialize)]
pub(super) struct IndexQuery {
    state: Option<String>,
}

/// Sum a counter family of the Prometheus text by its `kind` label.
pub fn counters(metrics: &str, family: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(family) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let kind = rest
            .split_once("kind=\"")
            .and_then(|(_, k)| k.split_once('"'))
            .map_or("total", |(k, _)| k);
        let value = rest
            .rsplit_once(' ')
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        *out.entry(kind.to_string()).or_insert(0.0) += value;
    }
    out
}

fn services_panel(w: &WebState) -> String {
    let s = &w.admin;
    let text = s.metrics.render(s.inventory.store().size_on_disk());
    let mut out = String::from("<section class=\"panel\" id=\"services\"><h2>Services</h2>");
    for (label, family) in [
        ("ProxyDHCP", "rackboot_dhcp_packets_total"),
        ("TFTP", "rackboot_tftp_transfers_total"),
        ("Boot HTTP", "rackboot_boot_http_requests_total"),
    ] {
        let c = counters(&text, family);
        let _ = write!(out, "<div class=\"svc\"><h3>{}</h3>", esc(label));
        if c.is_empty() {
            out.push_str("<p class=\"muted\">no traffic yet</p>");
        } else {
            out.push_str("<dl class=\"counters\">");
            for (k, v) in &c {
                let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), v);
            }
            out.push_str("</dl>");
        }
        out.push_str("</div>");
    }
    let bytes = counters(&text, "rackboot_tftp_sent_bytes_total")
        .values()
        .sum::<f64>();
    let active = counters(&text, "rackboot_tftp_active_transfers")
        .values()
        .sum::<f64>();
    let _ = write!(
        out,
        "<p class=\"sub\">TFTP: {} sent, {} active transfers</p>",
        esc(&human_bytes(bytes)),
        active
    );
    out.push_str(&omni_panel(&s.metrics.omni.status()));
    out.push_str("</section>");
    out
}

pub(super) fn omni_panel(l: &crate::omni_link::LinkStatus) -> String {
    if !l.enabled {
        return "<div class=\"svc\" id=\"omni\"><h3>Omni link</h3><p><span class=\"badge omni-standalone\">standalone mode</span> <span class=\"muted\">no Omni endpoint; the operator decides</span></p></div>".into();
    }
    let (class, word) = if l.connected {
        ("omni-up", "connected")
    } else {
        ("omni-down", "disconnected")
    };
    let beat = match l.last_heartbeat_ms {
        Some(t) => format!(
            "{} s ago",
            rackboot_store::now_ms().saturating_sub(t) / 1000
        ),
        None => "never".into(),
    };
    let mut out = format!(
        "<div class=\"svc\" id=\"omni\"><h3>Omni link</h3><p><span class=\"badge {class}\">{word}</span> provider <code>{}</code> at {}</p><dl class=\"counters\"><dt>last heartbeat</dt><dd>{}</dd><dt>InfraMachines</dt><dd>{}</dd></dl>",
        esc(&l.provider_id),
        esc(&l.endpoint),
        esc(&beat),
        l.infra_machines
    );
    if let Some(e) = &l.last_error {
        let _ = write!(out, "<p class=\"muted\">last error: {}</p>", esc(e));
    }
    out.push_str("</div>");
    out
}

fn human_bytes(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn events_table(now: u64, evs: &[Event], id: &str, with_machine: bool) -> String {
    let mut out = String::from("<table class=\"events\"><thead><tr><th>when</th>");
    if with_machine {
        out.push_str("<th>machine</th>");
    }
    let _ = write!(
        out,
        "<th>kind</th><th>message</th></tr></thead><tbody id=\"{}\">",
        esc(id)
    );
    for e in evs {
        let _ = write!(
            out,
            "<tr data-seq=\"{}\"><td>{}</td>",
            e.seq,
            time_el(now, Some(e.at_ms))
        );
        if with_machine {
            let _ = write!(
                out,
                "<td><a class=\"mono\" href=\"/machines/{}\">{}</a></td>",
                url_enc(&e.machine_id),
                esc(&e.machine_id)
            );
        }
        let _ = write!(
            out,
            "<td><span class=\"kind\">{}</span></td><td>{}</td></tr>",
            esc(&e.kind),
            esc(&e.message)
        );
    }
    out.push_str("</tbody></table>");
    if evs.is_empty() {
        out.push_str("<p class=\"muted empty\">no events</p>");
    }
    out
}

pub(super) async fn index(
    State(w): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<IndexQuery>,
) -> Response {
    let sess = session_of(&w, &headers);
    let inv = w.admin.inventory.clone();
    let filter = q.state.filter(|s| !s.is_empty());
    let loaded = tokio::task::spawn_blocking(move || {
        let ms = inv.list()?;
        let mut lasts = Vec::with_capacity(ms.len());
        for m in &ms {
            lasts.push(tail_events(inv.store(), Some(&m.id), 1)?.pop());
        }
        let recent = tail_events(inv.store(), None, 20)?;
        Ok::<_, InventoryError>((ms, lasts, recent))
    })
    .await;
    let (ms, lasts, recent) = match loaded {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return store_error(e),
        Err(e) => return store_error(e),
    };
    let now = rackboot_store::now_ms();
    let logged_in = sess.is_some();
    let mut p = new_page("Machines", "machines", &sess);

    // State filter chips with counts.
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for m in &ms {
        *by_state.entry(state_str(m.state)).or_default() += 1;
    }
    p.raw("<section class=\"head\"><h1>Machines <span class=\"count\">");
    p.text(&ms.len().to_string());
    p.raw("</span></h1><nav class=\"chips\" aria-label=\"filter by state\">");
    let all_cls = if filter.is_none() {
        "chip here"
    } else {
        "chip"
    };
    let _ = write!(p.out, "<a class=\"{all_cls}\" href=\"/\">all</a>");
    for st in STATES {
        let n = by_state.get(*st).copied().unwrap_or(0);
        let here = filter.as_deref() == Some(*st);
        if n == 0 && !here {
            continue;
        }
        let _ = write!(
            p.out,
            "<a class=\"chip{}\" href=\"/?state={}\">{} <b>{}</b></a>",
            if here { " here" } else { "" },
            url_enc(st),
            esc(st),
            n
        );
    }
    p.raw("</nav></section>");
    if let Some(f) = &filter {
        if !STATES.contains(&f.as_str()) {
            p.el("p", "warn", &format!("unknown state {f:?}: showing none"));
        }
    }

    let _ = write!(
        p.out,
        "<table class=\"machines\"><thead><tr><th>machine</th><th>MACs</th><th>state</th><th>power</th><th>BMC</th><th>boot mode</th><th>last PXE</th><th>last event</th>{}</tr></thead><tbody id=\"machines\" data-filter-state=\"{}\" data-actions=\"{}\">",
        if logged_in { "<th>actions</th>" } else { "" },
        esc(filter.as_deref().unwrap_or("")),
        if logged_in { "yes" } else { "no" }
    );
    let mut shown = 0;
    for (m, last) in ms.iter().zip(&lasts) {
        if filter.as_deref().is_some_and(|f| f != state_str(m.state)) {
            continue;
        }
        shown += 1;
        p.raw(&machine_row(now, m, last.as_ref(), logged_in));
    }
    p.raw("</tbody></table>");
    if shown == 0 {
        p.el(
            "p",
            "muted empty",
            if ms.is_empty() {
                "No machines yet: they appear when they PXE-boot, or add one with `rackboot machines add`."
            } else {
                "No machine in this state."
            },
        );
    }

    p.raw("<div class=\"cols\">");
    p.raw(&services_panel(&w));
    p.raw("<section class=\"panel\"><h2>Recent events <a class=\"more\" href=\"/events\">all events</a></h2>");
    p.raw(&events_table(now, &recent, "recent-events", true));
    p.raw("</section></div>");
    html(StatusCode::OK, p.finish())
}

pub(super) async fn machine(
    State(w): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let sess = session_of(&w, &headers);
    let inv = w.admin.inventory.clone();
    let key = id.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let m = inv.find(&key).map(|m| MachineView::from(&m));
        let events_id = match &m {
            Ok(m) => m.id.clone(),
            Err(_) => key.clone(),
        };
        let evs = tail_events(inv.store(), Some(&events_id), 500)?;
        Ok::<_, InventoryError>((m, evs))
    })
    .await;
    let (m, evs) = match loaded {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return store_error(e),
        Err(e) => return store_error(e),
    };
    let now = rackboot_store::now_ms();
    let m = match m {
        Ok(m) => m,
        Err(InventoryError::NotFound(_)) => {
            let mut p = new_page("not found", "machines", &sess);
            p.el("h1", "", &format!("Machine {id} not found"));
            if !evs.is_empty() {
                p.el("h2", "", "Its recorded events");
                p.raw(&events_table(now, &evs, "machine-events", false));
            }
            return html(StatusCode::NOT_FOUND, p.finish());
        }
        Err(e) => return store_error(e),
    };
    let display = m.name.clone().unwrap_or_else(|| m.id.clone());
    let mut p = new_page(&display, "machines", &sess);
    let _ = write!(
        p.out,
        "<section class=\"machine\" data-machine-id=\"{}\"><div class=\"head\"><h1>{}</h1> <span data-field=\"state\">{}</span> <span data-field=\"power\">{}</span>",
        esc(&m.id),
        esc(&display),
        badge("state", &state_str(m.state)),
        badge("power", &power_str(m.power))
    );
    if sess.is_some() {
        p.raw(&actions(&m));
    }
    p.raw(
        "</div><div class=\"cols\"><section class=\"panel\"><h2>Machine</h2><dl class=\"facts\">",
    );
    let mut fact = |k: &str, v: &str| {
        let _ = write!(p.out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    };
    fact("id", &m.id);
    fact("name", m.name.as_deref().unwrap_or("—"));
    fact("UUID", m.uuid.as_deref().unwrap_or("—"));
    fact("MACs", &m.macs.join(", "));
    fact("state", &state_str(m.state));
    fact("state reason", m.state_reason.as_deref().unwrap_or("—"));
    fact("power", &power_str(m.power));
    fact("boot mode", &boot_label(&m.boot_mode));
    match &m.bmc {
        Some(b) => {
            fact("BMC", &format!("{} {}", bmc_type(&b.url), b.url));
            let health = match &b.health {
                None => "not checked yet".to_string(),
                Some(h) if h.reachable => format!(
                    "reachable ({})",
                    crate::web::html::ago(rackboot_store::now_ms(), Some(h.checked_ms))
                ),
                Some(h) => format!(
                    "unreachable ({}): {}",
                    crate::web::html::ago(rackboot_store::now_ms(), Some(h.checked_ms)),
                    h.error.as_deref().unwrap_or("")
                ),
            };
            fact("BMC health", &health);
            fact("BMC user", &b.username);
            fact(
                "BMC password",
                if b.password_set { "set" } else { "not set" },
            );
            fact(
                "BMC TLS",
                if b.insecure_tls {
                    "not verified"
                } else {
                    "verified"
                },
            );
        }
        None => fact("BMC", "none"),
    }
    fact("arch", &m.boot.arch.map_or("—".into(), |a| a.to_string()));
    fact(
        "vendor class",
        m.boot.vendor_class.as_deref().unwrap_or("—"),
    );
    fact("seen via", m.boot.via.as_deref().unwrap_or("—"));
    let when = |ms: Option<u64>| ms.map_or("never".to_string(), utc);
    fact("first PXE", &when(m.boot.first_seen_ms));
    fact("last PXE", &when(m.boot.last_seen_ms));
    fact("created", &when(Some(m.created_ms)));
    fact("updated", &when(Some(m.updated_ms)));
    fact("generation", &m.generation.to_string());
    p.raw("</dl></section><section class=\"panel\"><h2>Hardware facts</h2>");
    match &m.hardware {
        Some(hw) => {
            let pretty = serde_json::to_string_pretty(hw).unwrap_or_default();
            p.el("pre", "hw", &pretty);
        }
        None => {
            p.el("p", "muted", "Not reported yet (the agent reports them).");
        }
    }
    p.raw("</section></div>");
    let boots: Vec<Event> = evs.iter().filter(|e| e.kind == "boot").cloned().collect();
    let power: Vec<Event> = evs
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "power" | "power_error" | "bootdev"))
        .cloned()
        .collect();
    p.raw("<div class=\"cols\"><section class=\"panel\"><h2>Boot history</h2>");
    p.raw(&events_table(now, &boots, "boot-events", false));
    p.raw("</section><section class=\"panel\"><h2>Power history</h2>");
    p.raw(&events_table(now, &power, "power-events", false));
    p.raw("</section></div><section class=\"panel\"><h2>Event log</h2>");
    p.raw(&events_table(now, &evs, "machine-events", false));
    p.raw("</section></section>");
    html(StatusCode::OK, p.finish())
}

#[derive(Deserialize)]
pub(super) struct EventsQuery {
    machine: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn events(
    State(w): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    let sess = session_of(&w, &headers);
    let inv = w.admin.inventory.clone();
    let limit = q.limit.unwrap_or(200).clamp(1, 2000);
    let machine = q.machine.clone().filter(|m| !m.is_empty());
    let loaded = tokio::task::spawn_blocking(move || {
        let id = machine
            .as_ref()
            .map(|k| inv.find(k).map(|m| m.id).unwrap_or_else(|_| k.clone()));
        tail_events(inv.store(), id.as_deref(), limit)
    })
    .await;
    let evs = match loaded {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return store_error(e),
        Err(e) => return store_error(e),
    };
    let now = rackboot_store::now_ms();
    let mut p = new_page("Events", "events", &sess);
    p.raw("<section class=\"head\"><h1>Events</h1>");
    match &q.machine {
        Some(m) if !m.is_empty() => {
            p.el("span", "sub", &format!("machine {m} · newest {limit}"));
        }
        _ => {
            p.el("span", "sub", &format!("newest {limit}, live"));
        }
    }
    p.raw("</section><section class=\"panel\">");
    p.raw(&events_table(now, &evs, "all-events", true));
    p.raw("</section>");
    html(StatusCode::OK, p.finish())
}

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    next: Option<String>,
}

/// Only a local path: never an absolute or scheme-relative URL (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/".into(),
    }
}

fn login_page(next: &str, problem: Option<&str>, logged_in: bool) -> String {
    let mut p = Page::new("Log in", "", None, false);
    p.raw("<section class=\"login-box panel\"><h1>Log in</h1>");
    if logged_in {
        p.el(
            "p",
            "ok",
            "You are logged in; logging in again starts a new session.",
        );
    }
    p.el(
        "p",
        "sub",
        "Paste the admin token (the admin token file, by default <data-dir>/admin-token).",
    );
    if let Some(msg) = problem {
        p.el("p", "error", msg);
    }
    let _ = write!(
        p.out,
        "<form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"next\" value=\"{}\"><label>Admin token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required autofocus></label><button type=\"submit\" id=\"login\">Log in</button></form></section>",
        esc(next)
    );
    p.finish()
}

pub(super) async fn login_form(
    State(w): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let logged_in = session_of(&w, &headers).is_some();
    html(
        StatusCode::OK,
        login_page(&safe_next(q.next.as_deref()), None, logged_in),
    )
}

pub(super) async fn login(
    State(w): State<WebState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let refuse = |reason: &str| {
        w.admin
            .metrics
            .admin_requests
            .get_or_create(&crate::metrics::ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    };
    if let Err(msg) = session::same_origin(&headers) {
        refuse("login_cross_origin");
        return html(StatusCode::FORBIDDEN, login_page("/", Some(msg), false));
    }
    let form = form_decode(&body);
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let next = safe_next(get("next"));
    let token = get("token").unwrap_or("").trim();
    if token.is_empty() || !w.admin.token.matches(token) {
        refuse("login_wrong_token");
        return html(
            StatusCode::UNAUTHORIZED,
            login_page(&next, Some("Wrong admin token."), false),
        );
    }
    // A new session on every login (no fixation); drop the old one.
    if let Some((old, _)) = w.sessions.lookup(&headers) {
        w.sessions.remove(&old);
    }
    let Some((id, _csrf)) = w.sessions.create() else {
        return html(
            StatusCode::INTERNAL_SERVER_ERROR,
            login_page(&next, Some("The random number generator failed."), false),
        );
    };
    let mut resp = Redirect::to(&next).into_response();
    let secure = session::is_https(&uri, &headers);
    if let Ok(v) = session::set_cookie(&id, session::LIFETIME, secure).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

pub(super) async fn logout(
    State(w): State<WebState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(msg) = session::same_origin(&headers) {
        return (StatusCode::FORBIDDEN, msg).into_response();
    }
    if let Some((id, sess)) = w.sessions.lookup(&headers) {
        let form = form_decode(&body);
        let csrf = form
            .iter()
            .find(|(k, _)| k == "csrf")
            .map_or("", |(_, v)| v.as_str());
        if !session::ct_eq(csrf, &sess.csrf) {
            return (StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response();
        }
        w.sessions.remove(&id);
    }
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = session::clear_cookie(session::is_https(&uri, &headers)).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}
