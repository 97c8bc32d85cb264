//! Serving an in-memory file over HTTP the way firmware needs it: `Content-Length` always,
//! single-range `Range` requests (206 / 416), `HEAD`, a strong `ETag` with `If-None-Match`
//! (304), no redirects. The body is a zero-copy slice of the shared `Arc<[u8]>`.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::SystemTime;

/// A byte range to send, inclusive start, exclusive end.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    Full,
    Partial(u64, u64),
    Unsatisfiable,
}

/// Interpret a `Range` header for a body of `len` bytes. Multi-range and malformed headers are
/// answered with the full body (RFC 9110 allows ignoring Range).
pub fn parse_range(value: Option<&str>, len: u64) -> RangeAnswer {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAnswer::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        (true, false) => match parse(b) {
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(n) if len > 0 => RangeAnswer::Partial(len.saturating_sub(n), len),
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Full,
        },
        (false, _) => {
            let Some(start) = parse(a) else {
                return RangeAnswer::Full;
            };
            let end = if b.is_empty() {
                Some(len)
            } else {
                match parse(b) {
                    Some(e) if e >= start => Some(e.saturating_add(1).min(len)),
                    Some(_) => return RangeAnswer::Full,
                    None => return RangeAnswer::Full,
                }
            };
            match end {
                Some(e) if start < len => RangeAnswer::Partial(start, e),
                _ => RangeAnswer::Unsatisfiable,
            }
        }
        (true, true) => RangeAnswer::Full,
    }
}

/// Strong validator from size and modification time.
pub fn etag(len: u64, mtime: Option<SystemTime>) -> String {
    let nanos = mtime
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("\"{len:x}-{nanos:x}\"")
}

/// What to answer for a file of `len` bytes: the status, the headers (in the order they are
/// written) and the byte range of the body (`None`: no body). Sans-IO, shared by the hyper
/// handler ([`respond`]) and the zero-copy shell (`fast`), so both answer the same.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<(u64, u64)>,
}

/// The request headers that matter to a file answer (the first value of each, if it is visible
/// ASCII).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Conditions<'a> {
    pub range: Option<&'a str>,
    pub if_range: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
}

pub fn plan(
    head: bool,
    cond: &Conditions<'_>,
    len: u64,
    mtime: Option<SystemTime>,
    content_type: &str,
) -> Plan {
    let tag = etag(len, mtime);
    let mut h: Vec<(&'static str, String)> = vec![
        ("accept-ranges", "bytes".into()),
        ("etag", tag.clone()),
        ("content-type", content_type.into()),
    ];
    if cond
        .if_none_match
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"))
    {
        return Plan {
            status: 304,
            headers: h,
            body: None,
        };
    }
    // If-Range with a different validator: send the whole file.
    let if_range_ok = cond.if_range.is_none_or(|v| v.trim() == tag);
    let range = if if_range_ok { cond.range } else { None };
    let (status, start, end) = match parse_range(range, len) {
        RangeAnswer::Full => (200, 0, len),
        RangeAnswer::Partial(s, e) => {
            h.push((
                "content-range",
                format!("bytes {s}-{}/{len}", e.saturating_sub(1)),
            ));
            (206, s, e)
        }
        RangeAnswer::Unsatisfiable => {
            h.push(("content-range", format!("bytes */{len}")));
            h.push(("content-length", "0".into()));
            return Plan {
                status: 416,
                headers: h,
                body: None,
            };
        }
    };
    h.push(("content-length", (end - start).to_string()));
    Plan {
        status,
        headers: h,
        body: (!head).then_some((start, end)),
    }
}

pub fn respond(
    method: &Method,
    headers: &HeaderMap,
    data: Arc<[u8]>,
    mtime: Option<SystemTime>,
    content_type: &str,
) -> Response {
    let first = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let cond = Conditions {
        range: first(header::RANGE),
        if_range: first(header::IF_RANGE),
        if_none_match: first(header::IF_NONE_MATCH),
    };
    let p = plan(
        *method == Method::HEAD,
        &cond,
        data.len() as u64,
        mtime,
        content_type,
    );
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut h = HeaderMap::new();
    for (name, value) in &p.headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(*name, v);
        }
    }
    match p.body {
        None => (status, h).into_response(),
        Some((start, end)) => {
            let body = Bytes::from_owner(ArcBytes(data)).slice(start as usize..end as usize);
            (status, h, Body::from(body)).into_response()
        }
    }
}

struct ArcBytes(Arc<[u8]>);
impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeAnswer::*;
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Partial(0, 10));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Partial(90, 100));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Partial(90, 100));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), Partial(0, 100));
        assert_eq!(parse_range(Some("bytes=50-1000"), 100), Partial(50, 100));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(parse_range(Some("bytes=9-3"), 100), Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=x-"), 100), Full);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(
            parse_range(Some("bytes=18446744073709551615-18446744073709551615"), 100),
            Unsatisfiable
        );
    }
}
