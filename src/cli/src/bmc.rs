//! `rackboot bmc --url URL power …|bootdev pxe …`: one BMC, directly, no server.

use crate::args::{BmcArgs, BmcCmd};
use anyhow::{Context, Result};
use rackboot_bmc::{
    BmcUrl, Credentials, Paced, PacingConfig, PowerAction, PxeBoot, RedfishOptions,
};
use std::time::Duration;

pub fn run(a: BmcArgs) -> Result<i32> {
    let url = BmcUrl::parse(&a.url).with_context(|| format!("--url {:?}", redact(&a.url)))?;
    let password = match &a.password_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read password file {}", f.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        ),
        None => url.password.clone(),
    };
    let creds = Credentials {
        username: a
            .user
            .clone()
            .or_else(|| url.username.clone())
            .unwrap_or_default(),
        password: password.unwrap_or_default(),
    };
    let opts = RedfishOptions {
        verify_tls: !a.insecure_tls,
        ca_file: a.ca_file.clone(),
        send_boot_mode: !a.no_boot_mode,
        ..Default::default()
    };
    let driver = rackboot_bmc::connect(&url, Some(creds), opts)?;
    let pacing = PacingConfig {
        verify_timeout: Duration::from_secs(a.verify_timeout),
        ..Default::default()
    };
    let bmc = Paced::new(driver, pacing);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async {
        match a.action {
            BmcCmd::Power { action } if action == "status" => {
                let s = bmc.power_state().await?;
                println!("power: {}", state_word(s));
            }
            BmcCmd::Power { action } => {
                let action: PowerAction = action.parse().map_err(anyhow::Error::msg)?;
                let s = bmc.power(action).await?;
                println!(
                    "power {}: done, power is {}",
                    format!("{action:?}").to_lowercase(),
                    state_word(s)
                );
            }
            BmcCmd::Bootdev {
                efi, persistent, ..
            } => {
                bmc.set_pxe_boot(PxeBoot { efi, persistent }).await?;
                let when = if persistent {
                    "every boot"
                } else {
                    "next boot"
                };
                println!(
                    "bootdev: pxe{} for the {when}",
                    if efi { " (UEFI)" } else { "" }
                );
            }
        }
        Ok::<_, anyhow::Error>(())
    })
    .with_context(|| format!("BMC {url}"))?;
    Ok(0)
}

fn state_word(s: rackboot_bmc::PowerState) -> &'static str {
    match s {
        rackboot_bmc::PowerState::On => "on",
        rackboot_bmc::PowerState::Off => "off",
    }
}

/// The URL without its password, for messages: everything between the scheme (if any) and
/// the last `@` but the user name is hidden, also in a URL too broken to parse
/// (`admin:pw@host`, `ipmi:/admin:pw@host`).
fn redact(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_string();
    };
    let start = url[..at].find("://").map_or(0, |s| s + 3);
    let user = url[start..at].split(':').next().unwrap_or("");
    let user = if user.contains('/') { "" } else { user };
    format!("{}{user}:***{}", &url[..start], &url[at..])
}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn the_password_never_shows_even_in_a_broken_url() {
        for (url, shown) in [
            ("ipmi://admin:s3cret@10.0.0.5", "ipmi://admin:***@10.0.0.5"),
            (
                "redfish://admin:p@ss@bmc:443",
                "redfish://admin:***@bmc:443",
            ),
            ("admin:s3cret@10.0.0.5", "admin:***@10.0.0.5"),
            ("ipmi:/admin:s3cret@10.0.0.5", "ipmi:***@10.0.0.5"),
            ("ipmi://10.0.0.5", "ipmi://10.0.0.5"),
        ] {
            assert_eq!(redact(url), shown);
            assert!(!redact(url).contains("s3cret") && !redact(url).contains("p@ss"));
        }
    }
}
