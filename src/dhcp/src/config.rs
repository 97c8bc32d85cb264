//! ProxyDHCP configuration and boot-file resolution (table + per-arch overrides).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::arch::{self, TableFile, IPXE_SCRIPT_PATH};

/// Longest boot file name or URL accepted: it must fit one DHCP option (255
/// bytes). Names that do not also fit the 128-byte BOOTP `file` header are
/// sent in option 67 only.
pub const MAX_BOOT_FILE_LEN: usize = 255;

/// Invalid [`ProxyConfig`] values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The advertise address cannot be a unicast server address.
    #[error("advertise address {0} is not a usable unicast IPv4 address")]
    BadAdvertise(Ipv4Addr),
    /// HTTP port 0.
    #[error("http port must not be 0")]
    BadHttpPort,
    /// Empty, too long, or containing NUL/control characters.
    #[error("boot file override for arch {arch}: {why}")]
    BadOverride {
        /// Option 93 value the override was for.
        arch: u16,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Static ProxyDHCP settings. Build with [`ProxyConfig::new`] and the `with_*`
/// methods; all values are validated there, so [`crate::handle`] never has to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    advertise: Ipv4Addr,
    http_port: u16,
    discovery_control: bool,
    file_overrides: BTreeMap<u16, String>,
    /// Derived (recomputed by every constructor/setter), so [`crate::handle`] allocates no
    /// strings per packet: the boot file of every arch that has one, the iPXE script URL and the
    /// advertise address as text (`sname`, option 66).
    resolved: BTreeMap<u16, BootFile>,
    ipxe_script: BootFile,
    advertise_text: String,
}

/// Boot file resolved for one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootFile {
    /// Fetched over TFTP from the advertise address (options 66 + 67, `sname` + `file`).
    Tftp(String),
    /// Fetched over HTTP(S) from this URL (option 67 + `file`, no 66 / `sname`).
    Url(String),
}

impl BootFile {
    /// The string sent in option 67 / the `file` header.
    pub fn as_str(&self) -> &str {
        match self {
            BootFile::Tftp(s) | BootFile::Url(s) => s,
        }
    }

    /// Whether this is an HTTP(S) URL.
    pub fn is_url(&self) -> bool {
        matches!(self, BootFile::Url(_))
    }

    fn from_override(s: &str) -> BootFile {
        if is_url(s) {
            BootFile::Url(s.to_owned())
        } else {
            BootFile::Tftp(s.to_owned())
        }
    }
}

fn is_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

impl ProxyConfig {
    /// `advertise` is the address put in siaddr, option 54, option 66/`sname`
    /// and the HTTP URLs; `http_port` is the appliance's HTTP port.
    /// Discovery control (option 43) defaults to off, no overrides.
    pub fn new(advertise: Ipv4Addr, http_port: u16) -> Result<Self, ConfigError> {
        if advertise.is_unspecified()
            || advertise.is_broadcast()
            || advertise.is_multicast()
            || advertise.is_loopback()
        {
            return Err(ConfigError::BadAdvertise(advertise));
        }
        if http_port == 0 {
            return Err(ConfigError::BadHttpPort);
        }
        let mut c = Self {
            advertise,
            http_port,
            discovery_control: false,
            file_overrides: BTreeMap::new(),
            resolved: BTreeMap::new(),
            ipxe_script: BootFile::Url(String::new()),
            advertise_text: advertise.to_string(),
        };
        c.resolve();
        Ok(c)
    }

    /// Recompute the derived fields from the table and the overrides.
    fn resolve(&mut self) {
        let mut resolved = BTreeMap::new();
        for row in arch::BOOT_TABLE {
            for &code in row.codes {
                // The first row listing a code decides it (as `arch::row_for`).
                if arch::row_for(code).is_some_and(|first| !std::ptr::eq(first, row)) {
                    continue;
                }
                let f = match &row.file {
                    Some(TableFile::Tftp(path)) => BootFile::Tftp((*path).to_owned()),
                    Some(TableFile::Http(path)) => BootFile::Url(self.http_url(path)),
                    None => continue,
                };
                resolved.insert(code, f);
            }
        }
        for (&arch, file) in &self.file_overrides {
            resolved.insert(arch, BootFile::from_override(file));
        }
        self.resolved = resolved;
        self.ipxe_script = BootFile::Url(self.http_url(IPXE_SCRIPT_PATH));
        self.advertise_text = self.advertise.to_string();
    }

    /// Send option 43 with PXE discovery control = 8 ("boot from file, skip
    /// discovery"). Helps some BIOS ROMs; some UEFI firmware ignores proxy
    /// offers carrying it, hence off by default.
    #[must_use]
    pub fn with_discovery_control(mut self, on: bool) -> Self {
        self.discovery_control = on;
        self
    }

    /// Replace (or, for arches without a default, provide) the boot file of
    /// `arch`. A value starting with `http://` / `https://` is sent as a URL,
    /// anything else as a TFTP path relative to the TFTP root.
    pub fn with_file_override(
        mut self,
        arch: u16,
        file: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        let file = file.into();
        let why = if file.is_empty() {
            Some("empty")
        } else if file.len() > MAX_BOOT_FILE_LEN {
            Some("longer than 255 bytes")
        } else if file.chars().any(char::is_control) {
            Some("contains NUL or control characters")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(ConfigError::BadOverride { arch, why });
        }
        self.file_overrides.insert(arch, file);
        self.resolve();
        Ok(self)
    }

    /// Address advertised to clients.
    pub fn advertise(&self) -> Ipv4Addr {
        self.advertise
    }

    /// HTTP port used in generated URLs.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Whether option 43 discovery control is sent.
    pub fn discovery_control(&self) -> bool {
        self.discovery_control
    }

    /// Configured per-arch overrides.
    pub fn file_overrides(&self) -> &BTreeMap<u16, String> {
        &self.file_overrides
    }

    /// Boot file for a client of architecture `arch` that is not yet running
    /// iPXE: the override if any, else the table's default, else `None`
    /// (unknown arch).
    pub fn boot_file_for(&self, arch: u16) -> Option<&BootFile> {
        self.resolved.get(&arch)
    }

    /// URL of the iPXE boot script given to clients already running iPXE.
    pub fn ipxe_script_url(&self) -> &str {
        self.ipxe_script.as_str()
    }

    /// [`Self::ipxe_script_url`] as the boot file of a reply.
    pub(crate) fn ipxe_script(&self) -> &BootFile {
        &self.ipxe_script
    }

    /// The advertise address as dotted-quad text.
    pub(crate) fn advertise_text(&self) -> &str {
        &self.advertise_text
    }

    fn http_url(&self, path: &str) -> String {
        format!("http://{}:{}{}", self.advertise, self.http_port, path)
    }
}
