//! BMC endpoint URLs: `ipmi://[USER[:PASS]@]HOST[:PORT]`, `redfish://…` (HTTPS),
//! `redfish+http://…` (plain HTTP, for emulators). Credentials in the URL are optional and are
//! kept out of `Display`/`Debug`.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Ipmi,
    Redfish,
    RedfishHttp,
}

#[derive(Clone, PartialEq, Eq)]
pub struct BmcUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("unsupported BMC URL scheme (use ipmi://, redfish:// or redfish+http://)")]
    Scheme,
    #[error("BMC URL has no host")]
    NoHost,
    #[error("BMC URL port is not a number from 1 to 65535")]
    Port,
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl BmcUrl {
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let (scheme, rest, default_port) = if let Some(r) = s.strip_prefix("ipmi://") {
            (Scheme::Ipmi, r, 623)
        } else if let Some(r) = s.strip_prefix("redfish+http://") {
            (Scheme::RedfishHttp, r, 80)
        } else if let Some(r) = s.strip_prefix("redfish://") {
            (Scheme::Redfish, r, 443)
        } else {
            return Err(UrlError::Scheme);
        };
        let rest = rest.split('/').next().unwrap_or("");
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or(UrlError::NoHost)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| UrlError::Port)?,
                None => default_port,
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| UrlError::Port)?),
                None => (hostport.to_string(), default_port),
            }
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::NoHost);
        }
        if port == 0 {
            return Err(UrlError::Port);
        }
        let (username, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((n, p)) => (Some(pct_decode(n)), Some(pct_decode(p))),
                None => (Some(pct_decode(u)), None),
            },
            None => (None, None),
        };
        Ok(Self {
            scheme,
            host,
            port,
            username,
            password,
        })
    }

    /// `host:port` for sockets and HTTP.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for BmcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.scheme {
            Scheme::Ipmi => "ipmi",
            Scheme::Redfish => "redfish",
            Scheme::RedfishHttp => "redfish+http",
        };
        write!(f, "{s}://{}", self.authority())
    }
}

impl fmt::Debug for BmcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BmcUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_every_scheme_and_hides_secrets() {
        let u = BmcUrl::parse("ipmi://admin:pa%40ss@10.0.0.5").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Ipmi, "10.0.0.5", 623)
        );
        assert_eq!(u.username.as_deref(), Some("admin"));
        assert_eq!(u.password.as_deref(), Some("pa@ss"));
        assert_eq!(u.to_string(), "ipmi://10.0.0.5:623");
        assert!(!format!("{u:?}").contains("pa@ss"));
        let r = BmcUrl::parse("redfish+http://127.0.0.1:8000/redfish/v1").unwrap();
        assert_eq!((r.scheme, r.port), (Scheme::RedfishHttp, 8000));
        assert_eq!(
            BmcUrl::parse("redfish://[fd00::5]").unwrap().authority(),
            "[fd00::5]:443"
        );
        assert_eq!(BmcUrl::parse("telnet://x"), Err(UrlError::Scheme));
        assert_eq!(BmcUrl::parse("ipmi://"), Err(UrlError::NoHost));
        assert_eq!(BmcUrl::parse("ipmi://h:99999"), Err(UrlError::Port));
        assert_eq!(BmcUrl::parse("ipmi://h:0"), Err(UrlError::Port));
        assert_eq!(
            BmcUrl::parse("ipmi://u:p%4@h").unwrap().password.as_deref(),
            Some("p%4")
        );
        assert_eq!(
            BmcUrl::parse("ipmi://u:%é%@h").unwrap().password.as_deref(),
            Some("%é%")
        );
    }
}
