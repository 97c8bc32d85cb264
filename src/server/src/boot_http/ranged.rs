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

pub fn respond(
    method: &Method,
    headers: &HeaderMap,
    data: Arc<[u8]>,
    mtime: Option<SystemTime>,
    content_type: &str,
) -> Response {
    let len = data.len() as u64;
    let tag = etag(len, mtime);
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if inm.is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*")) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    // If-Range with a different validator: send the whole file.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == tag);
    let range = if if_range_ok {
        headers.get(header::RANGE).and_then(|v| v.to_str().ok())
    } else {
        None
    };
    let (status, start, end) = match parse_range(range, len) {
        RangeAnswer::Full => (StatusCode::OK, 0, len),
        RangeAnswer::Partial(s, e) => {
            if let Ok(v) =
                HeaderValue::from_str(&format!("bytes {s}-{}/{len}", e.saturating_sub(1)))
            {
                h.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, s, e)
        }
        RangeAnswer::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            return (StatusCode::RANGE_NOT_SATISFIABLE, h).into_response();
        }
    };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if *method == Method::HEAD {
        return (status, h).into_response();
    }
    let body = Bytes::from_owner(ArcBytes(data)).slice(start as usize..end as usize);
    (status, h, Body::from(body)).into_response()
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
