//! The operator's web status page on the admin listener: server-rendered HTML (no JS build
//! step; `app.js` and `app.css` are embedded), live updates over Server-Sent Events
//! (`/api/v1/events/stream`, see [`sse`]), and actions that call the JSON API with a session
//! cookie plus a per-session CSRF token (see [`session`]).
//!
//! Every value is HTML-escaped ([`html::esc`]); no secret reaches a page (machines are rendered
//! from [`crate::api::MachineView`], which has no BMC password; the admin token and the session
//! id never appear in HTML). Pages render straight from the store: no BMC is called.

pub mod html;
mod pages;
pub mod session;
pub mod sse;

use crate::admin::AdminState;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use rackboot_store::{Event, Store};
use std::sync::Arc;

/// State of the page handlers: the admin state plus the session table.
#[derive(Clone)]
pub struct WebState {
    pub admin: AdminState,
    pub sessions: Arc<session::Sessions>,
}

impl WebState {
    pub fn new(admin: AdminState) -> Self {
        Self {
            admin,
            sessions: Arc::new(session::Sessions::default()),
        }
    }
}

/// The HTML pages and static files (not part of the JSON API, so not in `openapi.json`).
pub const PAGES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/machines/{id}"),
    ("GET", "/events"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/static/app.js"),
    ("GET", "/static/app.css"),
];

/// Pages behind the admin auth middleware (open for reading on loopback; login elsewhere).
pub fn pages(w: WebState) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/machines/{id}", get(pages::machine))
        .route("/events", get(pages::events))
        .with_state(w)
}

/// Reachable without credentials: the login form, logout, static assets.
pub fn public(w: WebState) -> Router {
    Router::new()
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/static/app.js", get(app_js))
        .route("/static/app.css", get(app_css))
        .with_state(w)
}

/// A browser page (redirect to the login form) rather than an API call (401).
pub fn is_page(path: &str) -> bool {
    !(path.starts_with("/api/") || path == "/metrics")
}

const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

async fn app_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
        .into_response()
}

async fn app_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_CSS,
    )
        .into_response()
}

/// Security headers on every admin response; HTML is never cached (it carries a CSRF token).
pub async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    let html = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The newest `n` events (of one machine or all), newest first. The store pages oldest-first
/// and sled's sequence has gaps (it jumps after a restart), so: find the newest sequence number
/// at or below a bound by bisection, read the window before it, and repeat over gaps.
pub fn tail_events(
    store: &Arc<dyn Store>,
    machine: Option<&str>,
    n: usize,
) -> Result<Vec<Event>, rackboot_store::StoreError> {
    // The largest event sequence number <= x, if any.
    let last_at_or_below = |x: u64| -> Result<Option<u64>, rackboot_store::StoreError> {
        let (mut lo, mut hi) = (0u64, x);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let beyond = store
                .events(machine, mid, 1)?
                .first()
                .is_none_or(|e| e.seq > x);
            if beyond {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(Some(lo).filter(|s| *s > 0))
    };
    let mut out = Vec::with_capacity(n);
    let Some(mut upper) = last_at_or_below(u64::MAX)? else {
        return Ok(out);
    };
    while out.len() < n {
        let window = 2 * (n - out.len()) as u64;
        let from = upper.saturating_sub(window);
        let evs = store.events(machine, from, window as usize)?;
        for ev in evs.into_iter().filter(|e| e.seq <= upper).rev() {
            if out.len() < n {
                out.push(ev);
            }
        }
        if from == 0 {
            break;
        }
        match last_at_or_below(from)? {
            Some(s) => upper = s,
            None => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
