//! The kernel command line: `rackboot.appliance=<host:port>`, `rackboot.machine=<id>` and
//! `rackboot.token=<hex>` (the per-boot token the appliance issued with the boot script).

use std::path::Path;

/// What the agent needs from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    /// `host:port` of the appliance's boot HTTP port (gRPC on the same port).
    pub appliance: String,
    /// The machine id the appliance gave this machine (may be empty for an unknown machine).
    pub machine_id: String,
    /// The per-boot token (empty when the command line has none; the appliance then refuses
    /// the agent). Never logged.
    pub token: String,
}

/// Why the command line is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `rackboot.appliance=` is missing.
    #[error("no rackboot.appliance=<host:port> on the kernel command line")]
    MissingAppliance,
    /// `rackboot.appliance=` is not `host:port`.
    #[error("rackboot.appliance={0:?} is not host:port")]
    BadAppliance(String),
}

/// Parses a kernel command line. The last occurrence of a key wins (as the kernel does for
/// `init=` and friends). Quoted values (`key="v"`) are unquoted.
pub fn parse(line: &str) -> Result<BootParams, CmdlineError> {
    let mut appliance = None;
    let mut machine_id = String::new();
    let mut token = String::new();
    for word in split_words(line) {
        let Some((k, v)) = word.split_once('=') else {
            continue;
        };
        let v = v.trim_matches('"');
        match k {
            "rackboot.appliance" => appliance = Some(v.to_string()),
            "rackboot.machine" => machine_id = v.to_string(),
            "rackboot.token" => token = v.to_string(),
            _ => {}
        }
    }
    let appliance = appliance.ok_or(CmdlineError::MissingAppliance)?;
    validate_appliance(&appliance)?;
    Ok(BootParams {
        appliance,
        machine_id,
        token,
    })
}

/// `host:port` with a non-empty host and a numeric port; `[v6]:port` allowed.
pub fn validate_appliance(a: &str) -> Result<(), CmdlineError> {
    let bad = || CmdlineError::BadAppliance(a.to_string());
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty()
        || host.contains('/')
        || host.chars().any(|c| c.is_whitespace() || c.is_control())
        || port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(bad());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad());
    }
    Ok(())
}

/// `metal.provider.address=` (the Talos metal agent's provider address; the first value, as
/// the stock agent reads it), if present.
pub fn metal_provider(line: &str) -> Option<String> {
    split_words(line).into_iter().find_map(|w| {
        w.strip_prefix("metal.provider.address=")
            .map(|v| v.trim_matches('"').to_string())
    })
}

/// Reads and parses the command line at `path` (normally `/proc/cmdline`).
pub fn read(path: &Path) -> Result<BootParams, CmdlineError> {
    let text = std::fs::read_to_string(path).map_err(|source| CmdlineError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text)
}

/// Splits on whitespace, keeping double-quoted runs together (`a="b c"`).
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_keys() {
        let p = parse(
            "BOOT_IMAGE=vmlinuz console=ttyS0 rackboot.appliance=10.0.0.1:50042 \
             rackboot.machine=m-42 rackboot.token=00ff quiet\n",
        )
        .expect("parse");
        assert_eq!(p.appliance, "10.0.0.1:50042");
        assert_eq!(p.machine_id, "m-42");
        assert_eq!(p.token, "00ff");
    }

    #[test]
    fn machine_is_optional_and_quotes_are_stripped() {
        let p = parse(r#"rackboot.appliance="boot.example:8080" foo="a b""#).expect("parse");
        assert_eq!(p.appliance, "boot.example:8080");
        assert_eq!(p.machine_id, "");
    }

    #[test]
    fn last_wins_and_ipv6() {
        let p = parse("rackboot.appliance=a:1 rackboot.appliance=[fd00::1]:50042").expect("parse");
        assert_eq!(p.appliance, "[fd00::1]:50042");
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse("console=ttyS0"),
            Err(CmdlineError::MissingAppliance)
        ));
        for bad in [
            "10.0.0.1",
            "10.0.0.1:",
            ":80",
            "h:0",
            "h:99999",
            "fd00::1:80",
            "http://h:1",
            "\"a b:1\"",
        ] {
            assert!(
                matches!(
                    parse(&format!("rackboot.appliance={bad}")),
                    Err(CmdlineError::BadAppliance(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn reads_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("cmdline");
        std::fs::write(&f, "rackboot.appliance=h:1 rackboot.machine=x\n").expect("write");
        assert_eq!(read(&f).expect("read").machine_id, "x");
        assert!(matches!(
            read(&dir.path().join("nope")),
            Err(CmdlineError::Read { .. })
        ));
    }
}
