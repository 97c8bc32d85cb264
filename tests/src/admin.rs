//! A small client of rackboot's admin API over plain HTTP/1.1 (one request per connection), for
//! the virtual rack and the scenario runner. Everything from the server is checked: a status
//! outside 2xx or a body that is not JSON is an [`AdminError`], never a panic.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin API at {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{method} {path}: malformed HTTP reply")]
    Malformed { method: String, path: String },
    #[error("{method} {path}: HTTP {status}: {body}")]
    Status {
        method: String,
        path: String,
        status: u16,
        body: String,
    },
    #[error("{method} {path}: reply is not JSON: {source}")]
    Json {
        method: String,
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The admin API of one rackboot, reached on a TCP address of this network namespace.
#[derive(Clone, Debug)]
pub struct Admin {
    pub addr: SocketAddr,
    token: String,
}

impl Admin {
    pub fn new(addr: SocketAddr, token: &str) -> Self {
        Self {
            addr,
            token: token.trim().to_string(),
        }
    }

    pub fn get(&self, path: &str) -> Result<Value, AdminError> {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, AdminError> {
        self.call("POST", path, Some(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Value, AdminError> {
        self.call("PUT", path, Some(body))
    }

    /// One request with the bearer token; the JSON reply of a 2xx status.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AdminError> {
        let (status, text) = self.raw(method, path, body)?;
        if !(200..300).contains(&status) {
            return Err(AdminError::Status {
                method: method.into(),
                path: path.into(),
                status,
                body: text,
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|source| AdminError::Json {
            method: method.into(),
            path: path.into(),
            source,
        })
    }

    /// The status and body of one request.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), AdminError> {
        let io = |source| AdminError::Io {
            addr: self.addr,
            source,
        };
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).map_err(io)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(io)?;
        let payload = body.map(Value::to_string).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {}\r\n",
            self.addr, self.token
        );
        if body.is_some() {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!(
            "Content-Length: {}\r\n\r\n{payload}",
            payload.len()
        ));
        s.write_all(req.as_bytes()).map_err(io)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(io)?;
        parse_reply(&raw).ok_or_else(|| AdminError::Malformed {
            method: method.into(),
            path: path.into(),
        })
    }
}

impl Admin {
    /// The kernel arguments of the agent boot script rackboot serves the machine `uuid`/`mac`
    /// (`GET /ipxe/boot.ipxe`, as iPXE asks it; call on an `Admin` for the boot HTTP port).
    /// They carry the per-boot `rackboot.token=`: write them to a file for the agent's
    /// `--cmdline`, as the agent image reads `/proc/cmdline`.
    pub fn agent_kernel_args(&self, uuid: &str, mac: &str) -> Result<String, AdminError> {
        let path = format!(
            "/ipxe/boot.ipxe?uuid={uuid}&mac={}&arch=x86_64",
            mac.replace(':', "-")
        );
        let (status, script) = self.raw("GET", &path, None)?;
        let malformed = || AdminError::Malformed {
            method: "GET".into(),
            path: path.clone(),
        };
        if status != 200 {
            return Err(AdminError::Status {
                method: "GET".into(),
                path: path.clone(),
                status,
                body: script,
            });
        }
        let kernel = script
            .lines()
            .find(|l| l.starts_with("kernel ") && l.contains("rackboot.token="))
            .ok_or_else(malformed)?;
        let args = kernel
            .split_whitespace()
            .skip(2)
            .take_while(|w| *w != "||")
            .collect::<Vec<_>>()
            .join(" ");
        Ok(args)
    }
}

/// Status and body of a complete HTTP/1.1 reply (Content-Length, chunked or until EOF).
fn parse_reply(raw: &[u8]) -> Option<(u16, String)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = &raw[split + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Some((status, String::from_utf8_lossy(body).into_owned()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(rest.get(start..start + size)?);
        rest = rest.get(start + size + 2..)?;
    }
    Some((status, String::from_utf8_lossy(&out).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::parse_reply;

    #[test]
    fn replies_with_length_chunks_or_garbage() {
        let r = parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!(r, (200, "{}".into()));
        let r = parse_reply(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r, (404, "abcde".into()));
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\n").is_none());
        assert!(parse_reply(b"garbage\r\n\r\n").is_none());
        assert!(
            parse_reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nab").is_none()
        );
    }
}
