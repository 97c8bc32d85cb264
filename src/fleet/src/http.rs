//! HTTP/1.1 GET as iPXE does it, sans-IO: the request bytes, and a response reader fed with
//! whatever the TCP stream delivers (status line, headers, a `Content-Length` or read-to-close
//! body, `Transfer-Encoding: chunked` decoded). Bodies of scripts are kept; big images are only
//! counted.

use std::net::{Ipv4Addr, SocketAddrV4};

/// `http://a.b.c.d[:port]/path?query` (the fleet only talks to IPv4 literals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: Ipv4Addr,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

impl Url {
    pub fn parse(s: &str) -> Option<Url> {
        let rest = s.strip_prefix("http://")?;
        let (authority, target) = match rest.find('/') {
            Some(i) => (rest.get(..i)?, rest.get(i..)?),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, 80),
        };
        Some(Url {
            host: host.parse().ok()?,
            port,
            target: target.to_string(),
        })
    }

    pub fn addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.host, self.port)
    }

    /// File name (last path segment, no query), as iPXE names a fetched image.
    pub fn file_name(&self) -> &str {
        let path = self.target.split(['?', '#']).next().unwrap_or("");
        path.rsplit('/').next().unwrap_or("")
    }

    pub fn request(&self) -> Vec<u8> {
        format!(
            "GET {} HTTP/1.1\r\nConnection: close\r\nUser-Agent: iPXE/1.0.0+ (rackboot-fleet)\r\nHost: {}:{}\r\n\r\n",
            self.target, self.host, self.port
        )
        .into_bytes()
    }
}

const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    /// Reading the size line (bytes so far).
    Size(Vec<u8>),
    /// Inside a chunk: bytes left.
    Data(u64),
    /// The CRLF after a chunk (bytes left to skip).
    Crlf(u8),
    Trailer(Vec<u8>),
    Done,
}

/// A finished response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Body bytes received.
    pub length: u64,
    /// The body, if it was kept (scripts).
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    BadHead,
    Truncated,
}

/// Reads one response from a byte stream.
#[derive(Debug)]
pub struct Reader {
    keep_limit: usize,
    head: Vec<u8>,
    status: Option<u16>,
    body: Option<Body>,
    length: u64,
    kept: Vec<u8>,
    done: bool,
}

impl Reader {
    /// Keep at most `keep_limit` body bytes (0 = count only).
    pub fn new(keep_limit: usize) -> Reader {
        Reader {
            keep_limit,
            head: Vec::new(),
            status: None,
            body: None,
            length: 0,
            kept: Vec::new(),
            done: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feed stream bytes; returns an error for a response that cannot be read.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), ReadError> {
        if self.body.is_none() {
            let start = self.head.len().saturating_sub(3);
            self.head.extend_from_slice(data);
            let Some(end) = find(&self.head[start..], b"\r\n\r\n").map(|i| start + i + 4) else {
                if self.head.len() > MAX_HEAD {
                    return Err(ReadError::BadHead);
                }
                return Ok(());
            };
            let rest = self.head.split_off(end);
            self.parse_head()?;
            self.head.clear();
            return self.body_bytes(&rest);
        }
        if self.done {
            data = &[];
        }
        self.body_bytes(data)
    }

    fn parse_head(&mut self) -> Result<(), ReadError> {
        let text = String::from_utf8_lossy(&self.head);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().ok_or(ReadError::BadHead)?;
        let mut parts = status_line.split(' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(ReadError::BadHead);
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(ReadError::BadHead)?;
        let mut body = Body::UntilClose;
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                body = Body::Length(v.parse().map_err(|_| ReadError::BadHead)?);
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                body = Body::Chunked(Chunk::Size(Vec::new()));
                break;
            }
        }
        self.status = Some(status);
        self.done = body == Body::Length(0);
        self.body = Some(body);
        Ok(())
    }

    fn keep(&mut self, b: &[u8]) {
        self.length += b.len() as u64;
        let room = self.keep_limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&b[..b.len().min(room)]);
    }

    fn body_bytes(&mut self, mut data: &[u8]) -> Result<(), ReadError> {
        while !data.is_empty() && !self.done {
            match self.body.clone() {
                None => return Ok(()),
                Some(Body::UntilClose) => {
                    self.keep(data);
                    data = &[];
                }
                Some(Body::Length(total)) => {
                    let left = total.saturating_sub(self.length);
                    let n = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.keep(&data[..n]);
                    data = &data[n..];
                    if self.length >= total {
                        self.done = true;
                    }
                }
                Some(Body::Chunked(state)) => {
                    let (next, used) = self.chunk_step(state, data)?;
                    data = &data[used..];
                    if next == Chunk::Done {
                        self.done = true;
                    }
                    self.body = Some(Body::Chunked(next));
                }
            }
        }
        Ok(())
    }

    fn chunk_step(&mut self, state: Chunk, data: &[u8]) -> Result<(Chunk, usize), ReadError> {
        Ok(match state {
            Chunk::Size(mut line) => match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&data[..i]);
                    let text = String::from_utf8_lossy(&line);
                    let hex = text.trim().split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(hex, 16).map_err(|_| ReadError::BadHead)?;
                    let next = if size == 0 {
                        Chunk::Trailer(Vec::new())
                    } else {
                        Chunk::Data(size)
                    };
                    (next, i + 1)
                }
                None => {
                    line.extend_from_slice(data);
                    if line.len() > 1024 {
                        return Err(ReadError::BadHead);
                    }
                    (Chunk::Size(line), data.len())
                }
            },
            Chunk::Data(left) => {
                let n = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                self.keep(&data[..n]);
                let left = left - n as u64;
                (
                    if left == 0 {
                        Chunk::Crlf(2)
                    } else {
                        Chunk::Data(left)
                    },
                    n,
                )
            }
            Chunk::Crlf(left) => {
                let n = data.len().min(usize::from(left));
                let left = left - n as u8;
                (
                    if left == 0 {
                        Chunk::Size(Vec::new())
                    } else {
                        Chunk::Crlf(left)
                    },
                    n,
                )
            }
            Chunk::Trailer(mut t) => {
                t.extend_from_slice(data);
                if t.starts_with(b"\r\n") || find(&t, b"\r\n\r\n").is_some() {
                    (Chunk::Done, data.len())
                } else {
                    (Chunk::Trailer(t), data.len())
                }
            }
            Chunk::Done => (Chunk::Done, data.len()),
        })
    }

    /// The peer closed the stream: the response, if it is complete.
    pub fn finish(self) -> Result<Response, ReadError> {
        let status = self.status.ok_or(ReadError::Truncated)?;
        if !self.done && self.body != Some(Body::UntilClose) {
            return Err(ReadError::Truncated);
        }
        Ok(Response {
            status,
            length: self.length,
            body: self.kept,
        })
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

#[cfg(test)]
#[path = "tests/http.rs"]
mod tests;
