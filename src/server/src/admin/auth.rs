//! Admin token: loaded from `--admin-token-file`, or generated once (0600) in the data dir.

use super::error;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ring::rand::{SecureRandom, SystemRandom};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct AdminToken {
    value: String,
    pub path: PathBuf,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminToken({})", self.path.display())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read admin token file {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("admin token file {0} is empty")]
    Empty(PathBuf),
    #[error("cannot create admin token file {0}")]
    Create(PathBuf, #[source] std::io::Error),
    #[error("system random number generator failed")]
    Random,
}

impl AdminToken {
    /// Read the token from `configured`, or from `<data_dir>/admin-token`, creating that one.
    pub fn load(configured: Option<&Path>, data_dir: &Path) -> Result<Self, TokenError> {
        let path = configured
            .map(Path::to_path_buf)
            .unwrap_or_else(|| data_dir.join("admin-token"));
        if configured.is_none() && !path.exists() {
            let mut raw = [0u8; 24];
            SystemRandom::new()
                .fill(&mut raw)
                .map_err(|_| TokenError::Random)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| TokenError::Create(path.clone(), e))?;
            writeln!(f, "{}", hex::encode(raw)).map_err(|e| TokenError::Create(path.clone(), e))?;
            f.sync_all()
                .map_err(|e| TokenError::Create(path.clone(), e))?;
        }
        let value = std::fs::read_to_string(&path)
            .map_err(|e| TokenError::Read(path.clone(), e))?
            .trim()
            .to_string();
        if value.is_empty() {
            return Err(TokenError::Empty(path));
        }
        Ok(Self { value, path })
    }

    #[cfg(test)]
    pub fn fixed(value: &str) -> Self {
        Self {
            value: value.to_string(),
            path: PathBuf::from("<test>"),
        }
    }

    /// Constant-time comparison.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.value.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Token check for the admin API and pages. Accepted credentials: `Authorization: Bearer
/// <token>`, or the web session cookie (from the login form). A cookie-authenticated request
/// that changes state must also be same-origin (`Origin`/`Sec-Fetch-Site`, when sent) and carry
/// the session's CSRF token in `X-CSRF-Token` (403 otherwise). Off loopback, a page request
/// without credentials is redirected to `/login`; an API request gets 401.
pub(super) async fn require_token(
    State(w): State<crate::web::WebState>,
    req: Request,
    next: Next,
) -> Response {
    use crate::web::session;
    let s = &w.admin;
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    let needed = !reads || !s.loopback;
    if !needed {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let refuse = |reason: &str| {
        s.metrics
            .admin_requests
            .get_or_create(&crate::metrics::ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    };
    let reason = match presented {
        Some(t) if s.token.matches(t.trim()) => return next.run(req).await,
        Some(_) => "wrong",
        None => match w.sessions.lookup(req.headers()) {
            Some((_, sess)) => {
                if reads {
                    return next.run(req).await;
                }
                if let Err(msg) = session::same_origin(req.headers()) {
                    refuse("cross_origin");
                    return error(StatusCode::FORBIDDEN, msg);
                }
                let csrf = req
                    .headers()
                    .get(session::CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !session::ct_eq(csrf, &sess.csrf) {
                    refuse("csrf");
                    return error(
                        StatusCode::FORBIDDEN,
                        "missing or wrong X-CSRF-Token for this session",
                    );
                }
                return next.run(req).await;
            }
            None => "missing",
        },
    };
    refuse(&format!("token_{reason}"));
    let path = req.uri().path();
    if reads && reason == "missing" && crate::web::is_page(path) {
        let target = match req.uri().path_and_query() {
            Some(pq) if pq.as_str() != "/" => {
                format!("/login?next={}", crate::web::html::url_enc(pq.as_str()))
            }
            _ => "/login".to_string(),
        };
        return axum::response::Redirect::to(&target).into_response();
    }
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        format!("admin token {reason}: send 'Authorization: Bearer <token>' (the token is in the admin token file), or log in at /login"),
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    resp
}
