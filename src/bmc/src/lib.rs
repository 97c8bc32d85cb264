//! BMC power management: IPMI v2.0 over LAN (RMCP+, sans-IO core in `rackboot-ipmi`, UDP shell
//! in [`Ipmi`]) and Redfish,
//! behind one interface ([`Bmc`]); the driver is chosen by the URL scheme ([`BmcUrl`]).
//!
//! Field BMCs need care (see netboot-facts.md): [`Paced`] keeps one command in flight per BMC
//! and a minimum interval between commands, and [`Paced::power`] verifies that the power state
//! really changed after on/off (a BMC may accept a command and do nothing).

mod ipmi;
mod paced;
pub mod redfish;
mod url;

pub use ipmi::Ipmi;
pub use paced::{Paced, PacingConfig};
pub use redfish::{Redfish, RedfishOptions};
pub use url::{BmcUrl, Scheme, UrlError};

use std::future::Future;
use std::pin::Pin;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    On,
    Off,
    Cycle,
    Reset,
    /// Ask the OS to shut down (ACPI soft-off / GracefulShutdown).
    Soft,
}

impl std::str::FromStr for PowerAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "on" => Self::On,
            "off" => Self::Off,
            "cycle" => Self::Cycle,
            "reset" => Self::Reset,
            "soft" => Self::Soft,
            other => {
                return Err(format!(
                    "unknown power action {other:?} (on, off, cycle, reset, soft)"
                ))
            }
        })
    }
}

/// PXE boot override.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PxeBoot {
    /// UEFI (EFI bit / BootSourceOverrideMode UEFI) rather than legacy BIOS.
    pub efi: bool,
    /// Every boot rather than the next one only.
    pub persistent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BmcError {
    #[error("wrong BMC username or password")]
    Auth,
    #[error("BMC did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("BMC refused the command: {0}")]
    Refused(String),
    #[error("BMC does not support {0}")]
    Unsupported(String),
    #[error("BMC accepted power {action:?} but the machine is still {state:?} after {waited:?}")]
    NotApplied {
        action: PowerAction,
        state: PowerState,
        waited: std::time::Duration,
    },
    #[error("BMC protocol error: {0}")]
    Protocol(String),
    #[error("cannot reach the BMC: {0}")]
    Transport(String),
    #[error("invalid BMC endpoint: {0}")]
    Url(#[from] UrlError),
}

pub type BmcFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BmcError>> + Send + 'a>>;

/// One BMC. Implementations do one thing per call; pacing and verification are in [`Paced`].
pub trait Bmc: Send + Sync {
    fn power_state(&self) -> BmcFuture<'_, PowerState>;
    fn power(&self, action: PowerAction) -> BmcFuture<'_, ()>;
    fn set_pxe_boot(&self, how: PxeBoot) -> BmcFuture<'_, ()>;
    /// A short description for logs (never includes credentials).
    fn describe(&self) -> String;
}

/// Credentials and TLS options stored with a machine's BMC.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// Open a driver for `url`: credentials from `creds` win over those in the URL.
pub fn connect(
    url: &BmcUrl,
    creds: Option<Credentials>,
    redfish: RedfishOptions,
) -> Result<Box<dyn Bmc>, BmcError> {
    let creds = creds.unwrap_or_else(|| Credentials {
        username: url.username.clone().unwrap_or_default(),
        password: url.password.clone().unwrap_or_default(),
    });
    match url.scheme {
        Scheme::Redfish | Scheme::RedfishHttp => Ok(Box::new(std::sync::Arc::new(Redfish::new(
            url, creds, redfish,
        )?))),
        Scheme::Ipmi => ipmi_driver(url, creds),
    }
}

fn ipmi_driver(url: &BmcUrl, creds: Credentials) -> Result<Box<dyn Bmc>, BmcError> {
    Ok(Box::new(Ipmi::new(url, creds)?))
}
