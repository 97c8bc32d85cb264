//! What a Redfish BMC sends (JSON bodies, error bodies) and BMC URLs an operator types. Nothing
//! panics; every path taken from the BMC is a path on the BMC (never `//host` or `@host`, which
//! would send our credentials elsewhere); messages are bounded single lines; a URL's user and
//! password never show in its Display or Debug form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot_bmc::redfish::parse;
use rackboot_bmc::{BmcUrl, PowerAction};

fn is_bmc_path(p: &str) {
    assert!(p.starts_with('/') && !p.starts_with("//"), "{p:?}");
    assert!(
        !p.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\'),
        "{p:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let msg = parse::error_message(&text);
    assert!(msg.chars().count() <= parse::MAX_MESSAGE);
    assert!(!msg.chars().any(char::is_control));

    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(p) = parse::system_path(&v) {
            is_bmc_path(&p);
            if let Ok((target, allowed)) = parse::reset_action(&v, &p) {
                is_bmc_path(&target);
                assert!(allowed.len() <= 32);
                for a in [PowerAction::On, PowerAction::Off, PowerAction::Cycle] {
                    if let Some(t) = rackboot_bmc::redfish::choose_reset_type(a, &allowed) {
                        assert!(allowed.is_empty() || allowed.iter().any(|x| x == t));
                    }
                }
            }
        }
        // The same document as a ComputerSystem.
        let _ = parse::power_state(&v);
        if let Ok((target, _)) = parse::reset_action(&v, "/redfish/v1/Systems/1") {
            is_bmc_path(&target);
        }
        // As an error reply.
        let m = parse::error_message(&v.to_string());
        assert!(m.chars().count() <= parse::MAX_MESSAGE);
    }

    if let Ok(u) = BmcUrl::parse(&text) {
        assert!(u.port != 0 && !u.host.is_empty());
        // Display and Debug do not depend on the credentials at all.
        let mut other = u.clone();
        other.password = Some("another-password".into());
        other.username = Some("another-user".into());
        assert_eq!(
            format!("{u:?} {u}"),
            format!("{other:?} {other}"),
            "credentials shown"
        );
        let _ = u.authority();
    }
});
