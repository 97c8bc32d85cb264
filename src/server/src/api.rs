//! JSON shapes of the admin API (requests and replies). Secrets are write-only: a reply carries
//! `password_set`, never the password.

use rackboot_store::{BootModeSetting, BootSeen, Machine, MachineState, PowerState};
use serde::{Deserialize, Serialize};

/// `POST /api/v1/machines`.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewMachine {
    pub name: Option<String>,
    #[serde(default)]
    pub macs: Vec<String>,
    pub uuid: Option<String>,
    pub bmc: Option<NewBmc>,
    pub boot_mode: Option<BootModeSetting>,
}

#[derive(Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewBmc {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    #[serde(default)]
    pub insecure_tls: bool,
}

impl std::fmt::Debug for NewBmc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewBmc")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("insecure_tls", &self.insecure_tls)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BmcView {
    pub url: String,
    pub username: String,
    pub password_set: bool,
    pub insecure_tls: bool,
    /// Last call outcome; `None` until the BMC was first talked to.
    pub health: Option<rackboot_store::BmcHealth>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MachineView {
    pub id: String,
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub macs: Vec<String>,
    pub state: MachineState,
    pub state_reason: Option<String>,
    pub power: PowerState,
    pub boot_mode: Option<BootModeSetting>,
    pub bmc: Option<BmcView>,
    pub hardware: Option<serde_json::Value>,
    pub boot: BootSeen,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub generation: u64,
}

impl From<&Machine> for MachineView {
    fn from(m: &Machine) -> Self {
        Self {
            id: m.id.clone(),
            name: m.name.clone(),
            uuid: m.uuid.clone(),
            macs: m.macs.clone(),
            state: m.state,
            state_reason: m.state_reason.clone(),
            power: m.power,
            boot_mode: m.boot_mode.clone(),
            bmc: m.bmc.as_ref().map(|b| BmcView {
                url: b.url.clone(),
                username: b.username.clone(),
                password_set: !b.password_sealed.is_empty(),
                insecure_tls: b.insecure_tls,
                health: b.health.clone(),
            }),
            hardware: m.hardware.clone(),
            boot: m.boot.clone(),
            created_ms: m.created_ms,
            updated_ms: m.updated_ms,
            generation: m.generation,
        }
    }
}

/// Every error reply: `{"error": "...", "detail": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}
