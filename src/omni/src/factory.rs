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
    #[error("the factory's PXE script is not a plain kernel/initrd boot: {0}")]
    Script(String),
}

/// The kernel boot a factory PXE script describes, for serving it from the asset cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelBoot {
    pub kernel: String,
    pub initrds: Vec<String>,
    /// The kernel arguments, without `initrd=` (the renderer names the cached initrds itself).
    pub cmdline: String,
}

/// Read the Image Factory's iPXE script (`GET /pxe/<schematic>/<version>/metal-<arch>`):
/// `#!ipxe`, then only `imgfree`, `kernel [opts] <url> <args>`, `initrd [opts] <url>` and
/// `boot`. Anything else (chains, menus, settings, `${…}` expansions) is refused, and the
/// caller falls back to chaining to the factory.
pub fn parse_pxe_script(text: &str) -> Result<KernelBoot, FactoryError> {
    let bad = |why: &str| FactoryError::Script(why.to_string());
    if text.len() > 64 * 1024 {
        return Err(bad("longer than 64 KiB"));
    }
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#!ipxe") {
        return Err(bad("no #!ipxe line"));
    }
    let (mut kernel, mut initrds, mut cmdline) = (None, Vec::new(), String::new());
    let mut booted = false;
    for line in lines {
        if line.starts_with('#') {
            continue;
        }
        if booted {
            return Err(bad("commands after boot"));
        }
        if line.contains('$') || line.chars().any(|c| c.is_control()) {
            return Err(bad("settings expansions or control characters"));
        }
        let mut words = line.split_ascii_whitespace();
        let cmd = words.next().unwrap_or("");
        match cmd {
            "imgfree" if words.next().is_none() => {}
            "boot" if words.next().is_none() => booted = true,
            "kernel" | "initrd" => {
                let url = loop {
                    match words.next() {
                        // Options of imgfetch-like commands; those with a value take the next word.
                        Some("--name" | "-n" | "--timeout" | "-t") => {
                            words.next();
                        }
                        Some(o) if o.starts_with('-') => {}
                        Some(u) => break u,
                        None => return Err(bad("a kernel/initrd line without a URL")),
                    }
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(bad("an image that is not an http(s) URL"));
                }
                let rest: Vec<&str> = words.collect();
                if cmd == "kernel" {
                    if kernel.is_some() {
                        return Err(bad("two kernel lines"));
                    }
                    kernel = Some(url.to_string());
                    cmdline = rest
                        .into_iter()
                        .filter(|w| !w.starts_with("initrd="))
                        .collect::<Vec<_>>()
                        .join(" ");
                } else {
                    if !rest.is_empty() {
                        return Err(bad("initrd with a name or mode (not supported)"));
                    }
                    initrds.push(url.to_string());
                }
            }
            _ => return Err(bad(&format!("command {cmd:?}"))),
        }
    }
    match (kernel, booted) {
        (Some(kernel), true) => Ok(KernelBoot {
            kernel,
            initrds,
            cmdline,
        }),
        _ => Err(bad("no kernel and boot")),
    }
}

/// The factory's PXE script URL for a schematic.
pub fn pxe_script_url(pxe_base: &str, schematic: &str, version: &str, arch: &str) -> String {
    format!(
        "{}/pxe/{schematic}/{version}/metal-{arch}",
        pxe_base.trim_end_matches('/')
    )
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
        "#!ipxe\nchain --replace --autofree {}\n",
        pxe_script_url(pxe_base, schematic, version, arch)
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
    fn factory_pxe_scripts_become_kernel_boots() {
        let real = "#!ipxe\n\nimgfree\nkernel https://pxe.factory.talos.dev/image/abc/v1.9.0/kernel-amd64 talos.platform=metal console=tty0 init_on_alloc=1 initrd=initramfs-amd64.xz\ninitrd https://pxe.factory.talos.dev/image/abc/v1.9.0/initramfs-amd64.xz\nboot\n";
        assert_eq!(
            parse_pxe_script(real),
            Ok(KernelBoot {
                kernel: "https://pxe.factory.talos.dev/image/abc/v1.9.0/kernel-amd64".into(),
                initrds: vec![
                    "https://pxe.factory.talos.dev/image/abc/v1.9.0/initramfs-amd64.xz".into()
                ],
                cmdline: "talos.platform=metal console=tty0 init_on_alloc=1".into(),
            })
        );
        let opts =
            "#!ipxe\nkernel --name k --timeout 5000 http://f/k a=1\ninitrd -n i http://f/i\nboot\n";
        let k = parse_pxe_script(opts).expect("options are skipped");
        assert_eq!(
            (k.kernel.as_str(), k.cmdline.as_str()),
            ("http://f/k", "a=1")
        );
        assert_eq!(k.initrds, vec!["http://f/i".to_string()]);
        for bad in [
            "",
            "kernel http://f/k\nboot\n",
            "#!ipxe\nchain http://f/x\n",
            "#!ipxe\nkernel http://f/k ${x}\nboot\n",
            "#!ipxe\nkernel tftp://f/k\nboot\n",
            "#!ipxe\nkernel http://f/k\n",
            "#!ipxe\nkernel http://f/k\nkernel http://f/k2\nboot\n",
            "#!ipxe\nkernel http://f/k\ninitrd http://f/i /x mode=755\nboot\n",
            "#!ipxe\nkernel http://f/k\nboot\nshell\n",
            "#!ipxe\nkernel\nboot\n",
        ] {
            assert!(parse_pxe_script(bad).is_err(), "{bad:?}");
        }
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
