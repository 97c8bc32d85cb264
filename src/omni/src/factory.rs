//! Sans-IO pieces of the Talos Image Factory: the schematic to register for an install, and the
//! iPXE chain to the factory's PXE endpoint for it.

use crate::desired::Install;

/// The schematic (YAML, as the factory's `POST /schematics` takes it): the cluster's extensions and
/// the kernel arguments (Omni's join arguments, then the machine's extra ones). Deterministic, so
/// one install profile per distinct schematic.
pub fn schematic_yaml(i: &Install, join_args: &[String]) -> String {
    let mut exts = i.extensions.clone();
    exts.sort();
    exts.dedup();
    let args: Vec<&String> = join_args.iter().chain(i.extra_kernel_args.iter()).collect();
    let mut y = String::from("customization:\n");
    if !args.is_empty() {
        y.push_str("  extraKernelArgs:\n");
        for a in args {
            y.push_str(&format!("    - {}\n", yaml_str(a)));
        }
    }
    if !exts.is_empty() {
        y.push_str("  systemExtensions:\n    officialExtensions:\n");
        for e in exts {
            y.push_str(&format!("      - {}\n", yaml_str(&e)));
        }
    }
    y
}

/// A double-quoted YAML scalar.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FactoryError {
    #[error("the Image Factory answered without a usable schematic id")]
    BadId,
    #[error("Talos version {0:?} is not like v1.9.0")]
    BadVersion(String),
}

/// Parse the factory's `{"id": "<hex>"}` answer.
pub fn parse_schematic_id(body: &[u8]) -> Result<String, FactoryError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        id: String,
    }
    let a: Answer = serde_json::from_slice(body).map_err(|_| FactoryError::BadId)?;
    if a.id.is_empty() || a.id.len() > 128 || !a.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FactoryError::BadId);
    }
    Ok(a.id.to_ascii_lowercase())
}

/// `v1.9.0` (a leading `v` added when missing); refuses anything that could break out of a URL
/// path segment or an iPXE line.
pub fn talos_version(v: &str) -> Result<String, FactoryError> {
    let v = if v.starts_with('v') {
        v.to_string()
    } else {
        format!("v{v}")
    };
    let ok = v.len() <= 64
        && v[1..].starts_with(|c: char| c.is_ascii_digit())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'+');
    if ok {
        Ok(v)
    } else {
        Err(FactoryError::BadVersion(v))
    }
}

/// Factory architecture name for a PXE client architecture (option 93).
pub fn arch_for(client_arch: Option<u16>) -> &'static str {
    match client_arch {
        Some(11 | 19) => "arm64",
        _ => "amd64",
    }
}

/// The install profile's name and its iPXE script.
pub fn install_profile(
    pxe_base: &str,
    schematic: &str,
    version: &str,
    arch: &str,
) -> (String, String) {
    let short = &schematic[..schematic.len().min(12)];
    let name = format!("omni-talos-{version}-{arch}-{short}");
    let script = format!(
        "#!ipxe\nchain --replace --autofree {}/pxe/{schematic}/{version}/metal-{arch}\n",
        pxe_base.trim_end_matches('/')
    );
    (name, script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schematic_is_deterministic_and_quoted() {
        let i = Install {
            talos_version: "v1.9.0".into(),
            extensions: vec![
                "siderolabs/zfs".into(),
                "siderolabs/iscsi-tools".into(),
                "siderolabs/zfs".into(),
            ],
            extra_kernel_args: vec!["console=ttyS0".into()],
        };
        let y = schematic_yaml(&i, &["siderolink.api=grpc://omni:8090?jointoken=x".into()]);
        assert_eq!(
            y,
            "customization:\n  extraKernelArgs:\n    - \"siderolink.api=grpc://omni:8090?jointoken=x\"\n    - \"console=ttyS0\"\n  systemExtensions:\n    officialExtensions:\n      - \"siderolabs/iscsi-tools\"\n      - \"siderolabs/zfs\"\n"
        );
        let empty = Install {
            talos_version: "v1".into(),
            extensions: vec![],
            extra_kernel_args: vec![],
        };
        assert_eq!(schematic_yaml(&empty, &[]), "customization:\n");
    }

    #[test]
    fn ids_and_versions_are_checked() {
        assert_eq!(
            parse_schematic_id(br#"{"id":"ABCdef01"}"#),
            Ok("abcdef01".into())
        );
        assert_eq!(
            parse_schematic_id(br#"{"id":"../x"}"#),
            Err(FactoryError::BadId)
        );
        assert_eq!(parse_schematic_id(b"not json"), Err(FactoryError::BadId));
        assert_eq!(talos_version("1.9.0"), Ok("v1.9.0".into()));
        assert!(talos_version("v1.9.0\nshell").is_err());
        assert!(talos_version("v1.9/../../x").is_err());
        assert!(talos_version("vx").is_err());
    }

    #[test]
    fn profile_chains_to_the_factory() {
        let (name, script) =
            install_profile("http://f:8080/", "0123456789abcdef", "v1.9.0", "amd64");
        assert_eq!(name, "omni-talos-v1.9.0-amd64-0123456789ab");
        assert_eq!(script, "#!ipxe\nchain --replace --autofree http://f:8080/pxe/0123456789abcdef/v1.9.0/metal-amd64\n");
        assert_eq!(arch_for(Some(11)), "arm64");
        assert_eq!(arch_for(Some(7)), "amd64");
    }
}
