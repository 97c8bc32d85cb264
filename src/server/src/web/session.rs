//! Web sessions: the login form checks the admin token once and hands out a random session id
//! in an `HttpOnly; SameSite=Strict` cookie. The table is in memory (a restart logs everyone
//! out) and keyed by a SHA-256 of the id, so lookups leak nothing useful through timing. Each
//! session has its own CSRF token, which pages carry in a `<meta>` and app.js sends back as
//! `X-CSRF-Token` on state-changing calls. Over HTTPS (a TLS proxy in front, see [`is_https`])
//! the cookie is also `Secure`.

use axum::http::{header, HeaderMap, Uri};
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

/// `Set-Cookie` for a new session; `secure` (the browser came over HTTPS, see [`is_https`])
/// adds `Secure`, so the browser never sends the cookie over plain HTTP.
pub fn set_cookie(id: &str, lifetime: Duration, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        lifetime.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Did the browser reach the admin listener over HTTPS? The listener itself speaks plain HTTP,
/// so HTTPS means a TLS-terminating proxy in front that says so (`X-Forwarded-Proto: https`,
/// or RFC 7239 `Forwarded: proto=https`; the first, client-facing hop counts), or a request
/// URI with the `https` scheme (HTTP/2's `:scheme`, an absolute-form request line). Trusting
/// these headers is safe here: a false `https` only makes the cookie `Secure`.
pub fn is_https(uri: &Uri, headers: &HeaderMap) -> bool {
    if uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        return true;
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
    };
    if let Some(proto) = first("x-forwarded-proto") {
        return proto.eq_ignore_ascii_case("https");
    }
    first("forwarded").is_some_and(|hop| {
        hop.split(';')
            .filter_map(|kv| kv.split_once('='))
            .any(|(k, v)| {
                k.trim().eq_ignore_ascii_case("proto")
                    && v.trim().trim_matches('"').eq_ignore_ascii_case("https")
            })
    })
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

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn https_is_recognised_from_the_scheme_and_proxy_headers() {
        let plain: Uri = "/login".parse().unwrap();
        let https: Uri = "https://rack.example/login".parse().unwrap();
        let http: Uri = "http://rack.example/login".parse().unwrap();
        assert!(!is_https(&plain, &HeaderMap::new()));
        assert!(is_https(&https, &HeaderMap::new()));
        assert!(!is_https(&http, &HeaderMap::new()));
        for (h, want) in [
            (headers(&[("x-forwarded-proto", "https")]), true),
            (headers(&[("x-forwarded-proto", "HTTPS")]), true),
            (headers(&[("x-forwarded-proto", "https, http")]), true),
            (headers(&[("x-forwarded-proto", "http, https")]), false),
            (headers(&[("x-forwarded-proto", "http")]), false),
            (headers(&[("x-forwarded-proto", "httpsx")]), false),
            (
                headers(&[("forwarded", "for=10.0.0.9;proto=https;by=10.0.0.1")]),
                true,
            ),
            (headers(&[("forwarded", "Proto=\"https\"")]), true),
            (headers(&[("forwarded", "proto=http, proto=https")]), false),
            (headers(&[("forwarded", "for=\"proto=https\"")]), false),
            (headers(&[("x-forwarded-host", "https")]), false),
        ] {
            assert_eq!(is_https(&plain, &h), want, "{h:?}");
        }
    }

    #[test]
    fn the_cookie_is_secure_only_over_https() {
        let c = set_cookie("abc", Duration::from_secs(60), true);
        assert!(c.split("; ").any(|f| f == "Secure"), "{c}");
        assert!(c.split("; ").any(|f| f == "HttpOnly"), "{c}");
        let c = set_cookie("abc", Duration::from_secs(60), false);
        assert!(!c.contains("Secure"), "{c}");
        assert!(clear_cookie(true).ends_with("; Secure"));
        assert!(!clear_cookie(false).contains("Secure"));
    }
}
