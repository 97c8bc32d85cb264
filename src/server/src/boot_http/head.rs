//! Sans-IO classification of the bytes at the start of a boot HTTP connection (or after the
//! last answered request on it): a plain HTTP/1.x `GET`/`HEAD` of a file under `/assets/` or
//! `/tftp/`, or of the scripts `/ipxe/init.ipxe` and `/ipxe/boot.ipxe`, that the shell (`fast`)
//! answers itself; anything else for the full HTTP stack (hyper + axum: `/config`, `/cache/…`, the
//! HTTP/2 agent link, requests with a body, percent-encoded or unusual paths); or bytes that are
//! not an HTTP/1 request head (400).
//!
//! The fast path is kept deliberately narrow: every request it takes is one axum would route to
//! the same handler with the same path and query, so both answer alike (see `ranged::plan` and
//! `boot_script`).

/// Heads longer than this are left to hyper (which has its own limit and answers 431).
pub const MAX_HEAD: usize = 16 * 1024;

/// The HTTP/2 prior-knowledge connection preface (the agent link's gRPC).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the fast path serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `/assets/<path>`
    Assets,
    /// `/tftp/<path>`
    Tftp,
    /// `/ipxe/boot.ipxe` (a boot storm fetches one per machine and boot): `path` is empty, the
    /// script is chosen by `query`.
    BootScript,
    /// `/ipxe/init.ipxe` (the first script of every iPXE boot; the query is ignored, as axum's
    /// route does): `path` is empty.
    InitScript,
}

/// A request the fast path answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastRequest {
    pub head: bool,
    pub root: Root,
    /// The file name under the root, as axum's `{*path}` would extract it (not yet sanitised).
    pub path: String,
    /// The query after `?`, undecoded, as axum's `RawQuery` extracts it.
    pub query: Option<String>,
    /// HTTP/1.0 (the answer's status line says HTTP/1.0 too).
    pub http10: bool,
    /// The connection stays open after the answer.
    pub keep_alive: bool,
    /// The client asked for keep-alive explicitly on HTTP/1.0 or for close on HTTP/1.1: the
    /// answer carries a `connection` header saying what happens (as hyper writes it).
    pub connection_header: bool,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub if_none_match: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// No complete head yet: read more bytes.
    Partial,
    /// A request the fast path answers; the head is `len` bytes long (no body follows).
    Fast(FastRequest, usize),
    /// Anything else: hand the connection, these bytes included, to the full HTTP stack.
    Other,
    /// Not an HTTP/1 request head: answer 400 and close.
    Malformed,
}

const MAX_HEADERS: usize = 48;

/// Classify `buf` (the unread bytes of a connection). Never panics, whatever the bytes.
pub fn classify(buf: &[u8]) -> Head {
    if buf.is_empty() {
        return Head::Partial;
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        // A prefix of the preface could still be a `PRI` request: wait until it is decided.
        return if n == H2_PREFACE.len() {
            Head::Other
        } else {
            Head::Partial
        };
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Head::Other,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(httparse::Error::TooManyHeaders) => return Head::Other,
        Err(_) => return Head::Malformed,
    };
    if len > MAX_HEAD {
        return Head::Other;
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Head::Malformed;
    };
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Head::Other,
    };
    let Some((root, path, query)) = fast_target(target) else {
        return Head::Other;
    };
    let http10 = version == 0;
    // `Some(None)`: the first such header was not readable (treated as absent, as axum does).
    let mut range: Option<Option<String>> = None;
    let mut if_range: Option<Option<String>> = None;
    let mut if_none_match: Option<Option<String>> = None;
    let (mut close, mut keep) = (false, false);
    for h in req.headers.iter() {
        let name = h.name;
        let value = visible(h.value);
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            // A body, an upgrade or a 100-continue dance: hyper's job.
            return Head::Other;
        } else if name.eq_ignore_ascii_case("connection") {
            // hyper reads every `Connection` header, token by token.
            for token in String::from_utf8_lossy(h.value).split(',') {
                let t = token.trim();
                close |= t.eq_ignore_ascii_case("close");
                keep |= t.eq_ignore_ascii_case("keep-alive");
                if t.eq_ignore_ascii_case("upgrade") {
                    return Head::Other;
                }
            }
        } else if name.eq_ignore_ascii_case("range") {
            first(&mut range, value);
        } else if name.eq_ignore_ascii_case("if-range") {
            first(&mut if_range, value);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            first(&mut if_none_match, value);
        }
    }
    // hyper: HTTP/1.1 stays open unless `close`; HTTP/1.0 only with `keep-alive`.
    let keep_alive = if http10 { keep && !close } else { !close };
    Head::Fast(
        FastRequest {
            head,
            root,
            path: path.to_string(),
            query: query.map(str::to_string),
            http10,
            keep_alive,
            connection_header: if http10 { keep_alive } else { close },
            range: range.flatten(),
            if_range: if_range.flatten(),
            if_none_match: if_none_match.flatten(),
        },
        len,
    )
}

/// The first value of a header counts (as `HeaderMap::get`); a duplicate with an unreadable first
/// value still counts as that first one (absent).
fn first(slot: &mut Option<Option<String>>, value: Option<&str>) {
    if slot.is_none() {
        *slot = Some(value.map(str::to_string));
    }
}

/// `HeaderValue::to_str`: visible ASCII (and tab/space) only.
fn visible(v: &[u8]) -> Option<&str> {
    if v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// Unreserved and sub-delimiter characters, `:` and `@` (RFC 3986 `pchar` without `%`).
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

/// `/assets/<path>` or `/tftp/<path>` (a query is ignored, as axum routes), when `<path>` is
/// plain: [`plain`] characters only (no `%`, `\`), no empty, `.` or `..` segment; or exactly
/// `/ipxe/boot.ipxe`, with a query of [`plain`] characters, `/`, `?` and `%`-escapes (what
/// `http::Uri` accepts, so hyper would route it the same). Anything else goes to axum, which
/// decodes and refuses as before.
fn fast_target(target: &str) -> Option<(Root, &str, Option<&str>)> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if path == "/ipxe/init.ipxe" {
        return Some((Root::InitScript, "", query));
    }
    if path == "/ipxe/boot.ipxe" {
        let ok = query.is_none_or(|q| q.bytes().all(|b| plain(b) || b"/?%".contains(&b)));
        return ok.then_some((Root::BootScript, "", query));
    }
    let (root, rest) = if let Some(r) = path.strip_prefix("/assets/") {
        (Root::Assets, r)
    } else if let Some(r) = path.strip_prefix("/tftp/") {
        (Root::Tftp, r)
    } else {
        return None;
    };
    let ok = !rest.is_empty()
        && rest
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && seg.bytes().all(plain));
    ok.then_some((root, rest, query))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn file(buf: &str) -> FastRequest {
        match classify(buf.as_bytes()) {
            Head::Fast(r, len) => {
                assert_eq!(len, buf.len(), "{buf:?}");
                r
            }
            other => panic!("{buf:?}: {other:?}"),
        }
    }

    #[test]
    fn plain_file_requests_are_taken() {
        let r = file("GET /assets/agent/vmlinuz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            (r.root, r.path.as_str(), r.head),
            (Root::Assets, "agent/vmlinuz", false)
        );
        assert!(r.keep_alive && !r.http10 && !r.connection_header);
        let r = file("HEAD /tftp/x86_64/ipxe.efi?x=1 HTTP/1.1\r\n\r\n");
        assert_eq!(
            (r.root, r.path.as_str(), r.head),
            (Root::Tftp, "x86_64/ipxe.efi", true)
        );
        let r = file(
            "GET /assets/a.bin HTTP/1.1\r\nrange: bytes=0-9\r\nRange: bytes=5-\r\nIf-Range: \"x\"\r\nIF-NONE-MATCH: *\r\n\r\n",
        );
        assert_eq!(
            r.range.as_deref(),
            Some("bytes=0-9"),
            "the first Range counts"
        );
        assert_eq!(r.if_range.as_deref(), Some("\"x\""));
        assert_eq!(r.if_none_match.as_deref(), Some("*"));
    }

    #[test]
    fn boot_script_requests_are_taken_with_their_query() {
        let q = "uuid=11111111-2222-3333-4444-555555555551&mac=52-54-00-99-00-10&arch=x86_64";
        let r = file(&format!(
            "GET /ipxe/boot.ipxe?{q} HTTP/1.1\r\nHost: x\r\n\r\n"
        ));
        assert_eq!(
            (r.root, r.path.as_str(), r.query.as_deref(), r.head),
            (Root::BootScript, "", Some(q), false)
        );
        let r = file("HEAD /ipxe/boot.ipxe HTTP/1.0\r\n\r\n");
        assert_eq!((r.root, r.query, r.head), (Root::BootScript, None, true));
        let r = file("GET /ipxe/boot.ipxe?uuid=a%2Db&x=/?: HTTP/1.1\r\n\r\n");
        assert_eq!(r.query.as_deref(), Some("uuid=a%2Db&x=/?:"));
        let r = file("GET /ipxe/boot.ipxe? HTTP/1.1\r\n\r\n");
        assert_eq!(r.query.as_deref(), Some(""));
    }

    #[test]
    fn init_script_requests_are_taken_whatever_their_query() {
        let r = file("GET /ipxe/init.ipxe HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            (r.root, r.path.as_str(), r.query.as_deref(), r.head),
            (Root::InitScript, "", None, false)
        );
        let r = file("HEAD /ipxe/init.ipxe?x=\"1\" HTTP/1.0\r\n\r\n");
        assert_eq!((r.root, r.head, r.http10), (Root::InitScript, true, true));
    }

    #[test]
    fn keep_alive_follows_hyper() {
        let r = file("GET /assets/a HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!r.keep_alive && r.connection_header);
        let r = file("GET /assets/a HTTP/1.0\r\n\r\n");
        assert!(!r.keep_alive && !r.connection_header && r.http10);
        let r = file("GET /assets/a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(r.keep_alive && r.connection_header);
        let r = file("GET /assets/a HTTP/1.1\r\nConnection: foo, close\r\n\r\n");
        assert!(!r.keep_alive);
    }

    #[test]
    fn everything_else_goes_to_the_full_stack() {
        for req in [
            "GET /ipxe/init.ipxe/ HTTP/1.1\r\n\r\n",
            "GET /ipxe/init%2eipxe HTTP/1.1\r\n\r\n",
            "GET /ipxe/init.ipxe HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /ipxe/boot.ipxe/ HTTP/1.1\r\n\r\n",
            "GET /ipxe/boot%2eipxe?uuid=1 HTTP/1.1\r\n\r\n",
            "GET /ipxe/boot.ipxe?uuid=\"1\" HTTP/1.1\r\n\r\n",
            "GET /ipxe/boot.ipxe?uuid=1#x HTTP/1.1\r\n\r\n",
            "GET /ipxe/boot.ipxe?a={} HTTP/1.1\r\n\r\n",
            "GET /ipxe/boot.ipxe?uuid=1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "POST /ipxe/boot.ipxe?uuid=1 HTTP/1.1\r\n\r\n",
            "GET /config?u=1 HTTP/1.1\r\n\r\n",
            "GET /cache/abc HTTP/1.1\r\n\r\n",
            "POST /assets/a HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
            "GET /assets/a HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /assets/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /assets/a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /assets/a HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            "GET /assets/%2e%2e/secret HTTP/1.1\r\n\r\n",
            "GET /assets/../secret HTTP/1.1\r\n\r\n",
            "GET /assets/./a HTTP/1.1\r\n\r\n",
            "GET /assets//a HTTP/1.1\r\n\r\n",
            "GET /assets/a/ HTTP/1.1\r\n\r\n",
            "GET /assets/ HTTP/1.1\r\n\r\n",
            "GET /assets HTTP/1.1\r\n\r\n",
            "GET /assets/a\\b HTTP/1.1\r\n\r\n",
            "GET http://host/assets/a HTTP/1.1\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert_eq!(classify(req.as_bytes()), Head::Other, "{req:?}");
        }
        let many = format!("GET /assets/a HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(60));
        assert_eq!(classify(many.as_bytes()), Head::Other);
        let long = format!("GET /assets/a HTTP/1.1\r\nX: {}", "y".repeat(MAX_HEAD));
        assert_eq!(classify(long.as_bytes()), Head::Other);
    }

    #[test]
    fn incomplete_heads_wait() {
        for req in ["", "G", "GET /assets/a HTTP/1.1\r\nHost: x\r\n", "PRI * HT"] {
            assert_eq!(classify(req.as_bytes()), Head::Partial, "{req:?}");
        }
    }

    #[test]
    fn malformed_heads_are_refused() {
        for req in [
            "GARBAGE\r\n\r\n",
            "GET /assets/a HTTP/9.9\r\n\r\n",
            "GET /assets/a\r\n\r\n",
            "GET  /assets/a HTTP/1.1\r\n\r\n",
            "GET /assets/a HTTP/1.1\r\nBad Header\r\n\r\n",
            "GET /assets/a HTTP/1.1\r\n: empty\r\n\r\n",
            "\0\0\0\0\r\n\r\n",
            "GET /assets/\x01 HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(classify(req.as_bytes()), Head::Malformed, "{req:?}");
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A deterministic pseudo-random walk over mutated heads (xorshift), every prefix.
        let seed =
            b"GET /assets/agent/vmlinuz HTTP/1.1\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut buf = seed.to_vec();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % buf.len() as u64) as usize;
                buf[i] = (x >> 32) as u8;
            }
            for end in 0..=buf.len() {
                let _ = classify(&buf[..end]);
            }
        }
    }
}
