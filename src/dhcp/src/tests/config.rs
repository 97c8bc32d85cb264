//! ProxyConfig validation and the boot table.

use std::net::Ipv4Addr;

use crate::arch::{arch_name, row_for};
use crate::{BootFile, ConfigError, ProxyConfig, TableFile, BOOT_TABLE};

#[test]
fn config_rejects_unusable_values() {
    for ip in [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(224, 0, 0, 1),
    ] {
        assert_eq!(ProxyConfig::new(ip, 80), Err(ConfigError::BadAdvertise(ip)));
    }
    let adv = Ipv4Addr::new(10, 0, 0, 1);
    assert_eq!(ProxyConfig::new(adv, 0), Err(ConfigError::BadHttpPort));
    let base = ProxyConfig::new(adv, 80).expect("valid");
    assert!(!base.discovery_control(), "option 43 is off by default");
    for bad in [String::new(), "x".repeat(256), "a\0b".into(), "a\nb".into()] {
        assert!(matches!(
            base.clone().with_file_override(7, bad),
            Err(ConfigError::BadOverride { arch: 7, .. })
        ));
    }
    let ok = base
        .with_file_override(7, "x".repeat(255))
        .expect("255 bytes fit option 67");
    assert_eq!(ok.file_overrides().len(), 1);
}

#[test]
fn boot_file_resolution() {
    let c = ProxyConfig::new(Ipv4Addr::new(10, 0, 0, 1), 8080).expect("valid");
    assert_eq!(
        c.boot_file_for(0),
        Some(&BootFile::Tftp("undionly.kpxe".into()))
    );
    assert_eq!(
        c.boot_file_for(16),
        Some(&BootFile::Url(
            "http://10.0.0.1:8080/tftp/x86_64/ipxe.efi".into()
        ))
    );
    assert_eq!(c.boot_file_for(6), None);
    assert_eq!(c.boot_file_for(0x1234), None);
    assert_eq!(c.ipxe_script_url(), "http://10.0.0.1:8080/ipxe/init.ipxe");
    let c = c.with_file_override(0, "HTTPS://boot/x").expect("valid");
    assert_eq!(
        c.boot_file_for(0),
        Some(&BootFile::Url("HTTPS://boot/x".into()))
    );
}

#[test]
fn table_is_consistent_and_printable() {
    let mut seen = Vec::new();
    for row in BOOT_TABLE {
        for &code in row.codes {
            assert!(!seen.contains(&code), "arch {code} listed twice");
            seen.push(code);
            assert_eq!(row_for(code), Some(row));
        }
        if let Some(TableFile::Http(path)) = row.file {
            assert!(path.starts_with('/'));
        }
        println!("{row}");
    }
    for code in [0, 6, 7, 9, 10, 11, 15, 16, 19, 22, 24] {
        assert!(arch_name(code).is_some(), "arch {code} in the table");
    }
    let printed: Vec<String> = BOOT_TABLE.iter().map(ToString::to_string).collect();
    assert!(printed
        .iter()
        .any(|l| l.starts_with("7,9") && l.ends_with("tftp ipxe.efi")));
    assert!(printed.iter().any(|l| l.contains("UnknownArch")));
}
