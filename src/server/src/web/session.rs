//! Web sessions: the login form checks the admin token once and hands out a random session id
//! in an `HttpOnly; SameSite=Strict` cookie. The table is in memory (a restart logs everyone
//! out) and keyed by a SHA-256 of the id, so lookups leak nothing useful through timing. Each
//! session has its own CSRF token, which pages carry in a `<meta>` and app.js sends back as
//! `X-CSRF-Token` on state-changing calls.

use axum::http::{header, HeaderMap};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const COOKIE: &str = "rackboot_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 1024;

#[derive(Clone, Debug)]
pub struct Session {
    pub csrf: String,
    expires: Instant,
}

pub struct Sessions {
    table: Mutex<HashMap<[u8; 32], Session>>,
    rng: SystemRandom,
    lifetime: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(LIFETIME)
    }
}

fn key(id: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Self {
        Self {
            table: Mutex::new(HashMap::new()),
            rng: SystemRandom::new(),
            lifetime,
        }
    }

    fn random(&self) -> Option<String> {
        let mut raw = [0u8; 32];
        self.rng.fill(&mut raw).ok()?;
        Some(hex::encode(raw))
    }

    /// A new session: `(session id for the cookie, its CSRF token)`.
    pub fn create(&self) -> Option<(String, String)> {
        let id = self.random()?;
        let csrf = self.random()?;
        let now = Instant::now();
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.retain(|_, s| s.expires > now);
        if t.len() >= MAX_SESSIONS {
            // Drop the session closest to expiry (the oldest).
            if let Some(k) = t.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                t.remove(&k);
            }
        }
        t.insert(
            key(&id),
            Session {
                csrf: csrf.clone(),
                expires: now + self.lifetime,
            },
        );
        Some((id, csrf))
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let k = key(id);
        match t.get(&k) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                t.remove(&k);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(id));
    }

    /// The session of a request's cookie, with its id.
    pub fn lookup(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, COOKIE)?;
        self.get(&id).map(|s| (id, s))
    }
}

/// A cookie's value from the `Cookie` header(s).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a new session (no `Secure`: the admin listener has no TLS yet).
pub fn set_cookie(id: &str, lifetime: Duration) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        lifetime.as_secs()
    )
}

pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// Constant-time string comparison.
pub fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuse cross-site requests: `Sec-Fetch-Site` must be `same-origin` or `none` when sent, and
/// `Origin`, when sent, must be this server (`http(s)://<Host>`). `Err` names the problem.
pub fn same_origin(headers: &HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        match site.to_str().unwrap_or("") {
            "same-origin" | "none" => {}
            _ => return Err("cross-site request refused (Sec-Fetch-Site)"),
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let ok = !host.is_empty()
            && (origin == format!("http://{host}") || origin == format!("https://{host}"));
        if !ok {
            return Err("cross-origin request refused (Origin)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn sessions_expire_and_are_removed() {
        let s = Sessions::new(Duration::from_millis(50));
        let (id, csrf) = s.create().unwrap();
        assert_ne!(id, csrf);
        assert_eq!(id.len(), 64);
        assert_eq!(s.get(&id).unwrap().csrf, csrf);
        assert!(s.get("nope").is_none());
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.get(&id).is_none());
        let (id, _) = s.create().unwrap();
        s.remove(&id);
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn parses_cookies_and_checks_origin() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; rackboot_session=abc ; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(same_origin(&h).is_err());
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(same_origin(&h).is_err());
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_origin(&h).is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h).is_ok());
        assert!(ct_eq("abc", "abc") && !ct_eq("abc", "abd") && !ct_eq("abc", "ab"));
    }
}
