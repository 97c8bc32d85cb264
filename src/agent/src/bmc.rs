//! In-band BMC set-up through `ipmitool` over `/dev/ipmi0` (the `ipmi_si` + `ipmi_devintf`
//! kernel modules). The agent shells out: no unsafe ioctls in this workspace.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

/// Why a BMC operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BmcError {
    /// No `/dev/ipmi0` or no `ipmitool`.
    #[error("no in-band BMC interface")]
    NoInterface,
    /// `ipmitool` could not be run.
    #[error("running ipmitool {args}: {source}")]
    Spawn {
        /// The arguments (never the password).
        args: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `ipmitool` exited non-zero.
    #[error("ipmitool {args} failed: {stderr}")]
    Failed {
        /// The arguments (never the password).
        args: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// No free user slot from 2 up.
    #[error("no free BMC user slot")]
    NoFreeSlot,
    /// Bad request.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Finds an executable in `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The IPMI LAN channel the agent configures.
const LAN_CHANNEL: &str = "1";
/// IPMI privilege level 4 = ADMINISTRATOR.
const PRIV_ADMIN: &str = "4";

struct Ipmitool {
    bin: PathBuf,
}

impl Ipmitool {
    fn find(root: &Path) -> Result<Self, BmcError> {
        crate::facts::ipmi_device(root).ok_or(BmcError::NoInterface)?;
        let bin = which("ipmitool").ok_or(BmcError::NoInterface)?;
        Ok(Self { bin })
    }

    /// Runs ipmitool; `secret` args are replaced by `***` in errors.
    fn run(&self, args: &[&str], secret: Option<&str>) -> Result<String, BmcError> {
        let shown = args
            .iter()
            .map(|a| if Some(*a) == secret { "***" } else { a })
            .collect::<Vec<_>>()
            .join(" ");
        let out = Command::new(&self.bin)
            .args(args)
            .output()
            .map_err(|source| BmcError::Spawn {
                args: shown.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(BmcError::Failed {
                args: shown,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `ipmitool lan print` → (ip, mac).
pub fn parse_lan_print(text: &str) -> (String, String) {
    let mut ip = String::new();
    let mut mac = String::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim() {
            "IP Address" => ip = v.trim().to_string(),
            "MAC Address" => mac = v.trim().to_ascii_lowercase(),
            _ => {}
        }
    }
    (ip, mac)
}

/// The BMC's LAN address and MAC, when `ipmitool` and the device exist.
pub fn lan_info(root: &Path) -> Option<(String, String)> {
    let t = Ipmitool::find(root).ok()?;
    t.run(&["lan", "print", LAN_CHANNEL], None)
        .ok()
        .map(|o| parse_lan_print(&o))
}

/// Whether a BMC user named exactly `username` exists (LAN channel 1).
pub fn user_exists(root: &Path, username: &str) -> Result<bool, BmcError> {
    let t = Ipmitool::find(root)?;
    let users = parse_user_list(&t.run(&["user", "list", LAN_CHANNEL], None)?);
    Ok(users.iter().any(|u| u.name == username))
}

/// One row of `ipmitool user list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSlot {
    /// Slot id.
    pub id: u32,
    /// User name, empty if unused.
    pub name: String,
}

/// Parses `ipmitool user list 1`:
/// `ID  Name             Callin  Link Auth  IPMI Msg   Channel Priv Limit`.
pub fn parse_user_list(text: &str) -> Vec<UserSlot> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let id: u32 = it.next()?.parse().ok()?;
            // The name column is 17 characters wide starting at column 4; empty names leave
            // the next column ("true"/"false") in its place.
            let name = line.get(4..21).map(str::trim).unwrap_or_default();
            let name = if matches!(name, "true" | "false")
                || name.starts_with("true ")
                || name.starts_with("false ")
            {
                ""
            } else {
                name
            };
            Some(UserSlot {
                id,
                name: name.to_string(),
            })
        })
        .collect()
}

/// Picks the slot: `requested` if non-zero; else the slot already named `username`; else the
/// first empty slot from 2 up.
pub fn pick_slot(users: &[UserSlot], username: &str, requested: u32) -> Result<u32, BmcError> {
    if requested != 0 {
        return Ok(requested);
    }
    if let Some(u) = users.iter().find(|u| u.id >= 2 && u.name == username) {
        return Ok(u.id);
    }
    users
        .iter()
        .find(|u| u.id >= 2 && u.name.is_empty())
        .map(|u| u.id)
        .ok_or(BmcError::NoFreeSlot)
}

/// What [`set_user`] did (no password).
#[derive(Debug, Serialize)]
pub struct SetUserDetail {
    /// The slot used.
    pub slot: u32,
    /// The user name set.
    pub username: String,
    /// The LAN channel whose access was granted.
    pub channel: u32,
    /// The privilege level (4 = administrator).
    pub privilege: u32,
}

/// Creates or updates a BMC user in-band: name, password, administrator on the LAN channel,
/// enabled.
pub fn set_user(
    root: &Path,
    username: &str,
    password: &str,
    slot: u32,
) -> Result<SetUserDetail, BmcError> {
    if username.is_empty() || username.len() > 16 {
        return Err(BmcError::Invalid("username must be 1..=16 bytes".into()));
    }
    if password.is_empty() || password.len() > 20 {
        return Err(BmcError::Invalid("password must be 1..=20 bytes".into()));
    }
    let t = Ipmitool::find(root)?;
    let users = parse_user_list(&t.run(&["user", "list", LAN_CHANNEL], None)?);
    let slot = pick_slot(&users, username, slot)?;
    let s = slot.to_string();
    t.run(&["user", "set", "name", &s, username], None)?;
    // 20-byte passwords are IPMI v2.0 only; ipmitool wants the size for those.
    let size = if password.len() > 16 { "20" } else { "16" };
    t.run(
        &["user", "set", "password", &s, password, size],
        Some(password),
    )?;
    let access = format!("privilege={PRIV_ADMIN}");
    t.run(
        &[
            "channel",
            "setaccess",
            LAN_CHANNEL,
            &s,
            "callin=on",
            "ipmi=on",
            "link=on",
            &access,
        ],
        None,
    )?;
    t.run(&["user", "priv", &s, PRIV_ADMIN, LAN_CHANNEL], None)?;
    t.run(&["user", "enable", &s], None)?;
    Ok(SetUserDetail {
        slot,
        username: username.to_string(),
        channel: 1,
        privilege: 4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER_LIST: &str = "\
ID  Name\t     Callin  Link Auth\tIPMI Msg   Channel Priv Limit
1                    true    false      false      Unknown (0x00)
2   admin            true    true       true       ADMINISTRATOR
3                    true    false      false      Unknown (0x00)
4   rackboot         true    true       true       ADMINISTRATOR
";

    #[test]
    fn user_list_and_slots() {
        let users = parse_user_list(USER_LIST);
        assert_eq!(users.len(), 4);
        assert_eq!(
            users[0],
            UserSlot {
                id: 1,
                name: String::new()
            }
        );
        assert_eq!(users[1].name, "admin");
        assert_eq!(users[2].name, "");
        assert_eq!(pick_slot(&users, "rackboot", 0).expect("slot"), 4);
        assert_eq!(pick_slot(&users, "other", 0).expect("slot"), 3);
        assert_eq!(pick_slot(&users, "other", 7).expect("slot"), 7);
        assert!(matches!(
            pick_slot(&users[..2], "x", 0),
            Err(BmcError::NoFreeSlot)
        ));
    }

    #[test]
    fn lan_print() {
        let (ip, mac) = parse_lan_print(
            "Set in Progress         : Set Complete\nIP Address Source       : Static Address\n\
             IP Address              : 10.0.0.5\nSubnet Mask             : 255.255.255.0\n\
             MAC Address             : 52:54:00:AA:BB:CC\n",
        );
        assert_eq!(ip, "10.0.0.5");
        assert_eq!(mac, "52:54:00:aa:bb:cc");
    }

    #[test]
    fn no_device_means_no_interface() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            set_user(dir.path(), "u", "p", 0),
            Err(BmcError::NoInterface)
        ));
        assert!(lan_info(dir.path()).is_none());
    }
}
