//! The two scripts the boot HTTP server serves: `init.ipxe` (same for every machine) and
//! `boot.ipxe` (per machine, from its boot mode).

use std::fmt::Write as _;

use crate::escape::{
    check_args, check_asset_path, check_host_port, check_single_line, check_token, check_url,
    strip_controls, RenderError,
};
use crate::query::{is_normalized_mac, is_normalized_uuid, Arch};

/// Highest NIC index the init script tries (`net0` ..= `net7`).
pub const MAX_NIC: u32 = 7;

/// Attempts of `dhcp netX` per NIC and round (ProxyDHCP offers can come late).
pub const DHCP_ATTEMPTS: u32 = 3;

/// What a machine boots, as decided by the operator or Omni.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootMode {
    /// The rackboot agent image. `kernel` and `initrds` are paths below `/assets/` on the
    /// appliance; `cmdline` is the agent's base command line.
    Agent {
        kernel: String,
        initrds: Vec<String>,
        cmdline: String,
    },
    /// An operator profile: `kernel`/`initrds` are absolute `http(s)://` URLs or paths below
    /// `/assets/`; `${uuid}`, `${mac}`, `${appliance}` and `${machine}` in `cmdline` are
    /// replaced by rackboot, any other `${...}` is left for iPXE to expand at boot time.
    Profile {
        kernel: String,
        initrds: Vec<String>,
        cmdline: String,
    },
    /// A raw iPXE script from the operator.
    Script(String),
    /// Chain-load another URL (`http`/`https` only).
    Chain { url: String },
    /// Boot from the local disk.
    Disk { method: DiskMethod },
    /// The machine is cordoned: serve nothing.
    Cordoned { reason: String },
}

/// How "boot from disk" is expressed (firmware differ in which one works).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskMethod {
    /// iPXE `exit`: return to the firmware, which tries the next boot device.
    Exit,
    /// HTTP 404 on `boot.ipxe`.
    NotFound,
    /// `sanboot --no-describe --drive 0x80`: boot the first BIOS disk from iPXE.
    Sanboot,
}

/// Per-request facts the script is rendered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderCtx {
    /// `host:port` of the boot HTTP server as the machine reaches it (e.g. `10.99.0.1:50042`).
    pub appliance: String,
    /// The machine's id in the store (`[A-Za-z0-9._:@-]`, up to 128 characters).
    pub machine_id: String,
    /// Normalised UUID from [`crate::BootQuery`].
    pub uuid: String,
    /// Normalised MAC from [`crate::BootQuery`], if the query had one.
    pub mac: Option<String>,
    /// Build architecture from [`crate::BootQuery`], if the query had one.
    pub arch: Option<Arch>,
}

/// The answer to `GET /ipxe/boot.ipxe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    /// 200, `text/plain`, this body.
    Script(String),
    /// 404 with this reason as the body (control characters already replaced).
    NotFound { reason: String },
}

/// Render `GET /ipxe/init.ipxe`.
///
/// The script tries every NIC (`net0`..`net7`, stopping at the first one that does not exist):
/// `dhcp` up to [`DHCP_ATTEMPTS`] times, then chains
/// `<base_url>/ipxe/boot.ipxe?uuid=${uuid}&mac=${netX/mac:hexhyp}&arch=${buildarch}`. When the
/// chained script returns successfully (e.g. `exit` for boot-from-disk) the init script exits
/// too; when it fails the NIC is closed and the next one is tried. After all NICs it starts
/// another round only if no NIC got an address; if one did but its boot script failed or was
/// refused (HTTP 404 for boot-from-disk or a cordoned machine) it exits to the firmware, which
/// moves on to the next boot device. After `max_rounds` rounds (at least 1) it prints why and
/// reboots. Only
/// commands of iPXE 1.0.0+git-20190125 are used (no `inc`, no arithmetic): the rounds are
/// driven by a `goto ${rackboot-next}` setting, the NIC blocks are generated here.
///
/// `base_url` is `http(s)://host[:port]` (a trailing `/` is dropped).
pub fn init_script(base_url: &str, max_rounds: u32) -> Result<String, RenderError> {
    check_url("base_url", base_url)?;
    let base = base_url.trim_end_matches('/');
    let rounds = max_rounds.max(1);
    let mut s = String::new();
    // `writeln!` into a String cannot fail; `let _ =` keeps clippy and unwrap_used quiet.
    let _ = writeln!(s, "#!ipxe");
    let _ = writeln!(
        s,
        "echo rackboot: init: fetching the boot script from {base} (net0..net{MAX_NIC}, {rounds} rounds)"
    );
    let _ = writeln!(s, "ifclose ||");
    for round in 1..=rounds {
        let next = if round == rounds {
            "rackboot_give_up".to_string()
        } else {
            format!("rackboot_round{}", round + 1)
        };
        let _ = writeln!(s, ":rackboot_round{round}");
        let _ = writeln!(s, "set rackboot-round {round}");
        let _ = writeln!(s, "set rackboot-next {next}");
        let _ = writeln!(s, "goto rackboot_nics");
    }
    let _ = writeln!(s, ":rackboot_give_up");
    let _ = writeln!(
        s,
        "echo rackboot: init: no NIC reached {base} after {rounds} rounds, rebooting in 10 s"
    );
    let _ = writeln!(s, "sleep 10");
    let _ = writeln!(s, "reboot");
    let _ = writeln!(s, "exit 1");
    let _ = writeln!(s);
    let _ = writeln!(s, ":rackboot_nics");
    for nic in 0..=MAX_NIC {
        let n = format!("net{nic}");
        let _ = writeln!(s, ":rackboot_{n}");
        let _ = writeln!(s, "isset ${{{n}/mac}} || goto rackboot_nics_done");
        for attempt in 1..=DHCP_ATTEMPTS {
            let _ = writeln!(
                s,
                "dhcp {n} && goto rackboot_{n}_up || echo rackboot: {n}: no DHCP answer (round ${{rackboot-round}}, try {attempt} of {DHCP_ATTEMPTS})"
            );
        }
        let _ = writeln!(s, "ifclose {n} ||");
        let _ = writeln!(s, "goto rackboot_{}", next_nic(nic));
        let _ = writeln!(s, ":rackboot_{n}_up");
        let _ = writeln!(
            s,
            "chain --autofree {base}/ipxe/boot.ipxe?uuid=${{uuid}}&mac=${{{n}/mac:hexhyp}}&arch=${{buildarch}} && exit 0 || echo rackboot: {n}: boot script failed or declined"
        );
        let _ = writeln!(s, "set rackboot-reached 1");
        let _ = writeln!(s, "ifclose {n} ||");
    }
    let _ = writeln!(s, ":rackboot_nics_done");
    // A NIC got an address but its boot script failed or was refused (404: boot from disk,
    // cordoned): hand back to the firmware, which moves on to the next boot device, as iPXE's
    // own autoboot does. Only when no NIC got an address at all are more rounds worth it.
    let _ = writeln!(
        s,
        "isset ${{rackboot-reached}} && goto rackboot_declined ||"
    );
    let _ = writeln!(s, "goto ${{rackboot-next}}");
    let _ = writeln!(s, ":rackboot_declined");
    let _ = writeln!(
        s,
        "echo rackboot: init: the boot script was refused or failed; returning to the firmware"
    );
    let _ = writeln!(s, "exit 1");
    Ok(s)
}

fn next_nic(nic: u32) -> String {
    if nic == MAX_NIC {
        "nics_done".to_string()
    } else {
        format!("net{}", nic + 1)
    }
}

/// Render `GET /ipxe/boot.ipxe` for one machine.
///
/// Every script starts with `#!ipxe` and an `echo` line saying what it does. Values put into
/// the script are checked first: control characters (line breaks), iPXE command
/// separators and comment tokens in argument lists, and non-http(s) URLs are refused with a
/// [`RenderError`] (use [`RenderError::http_status`]). iPXE itself expands `${...}` at run time,
/// so operator command lines and URLs may use iPXE settings on purpose; the machine-supplied
/// values (`uuid`, `mac` from the query) are validated shapes and cannot carry any.
pub fn render(mode: &BootMode, ctx: &RenderCtx) -> Result<Rendered, RenderError> {
    check_host_port("appliance", &ctx.appliance)?;
    check_token("machine_id", &ctx.machine_id)?;
    if !is_normalized_uuid(&ctx.uuid) {
        return Err(RenderError::InvalidValue {
            field: "uuid",
            reason: "not a normalised (lower-case 8-4-4-4-12) UUID",
        });
    }
    if let Some(mac) = &ctx.mac {
        if !is_normalized_mac(mac) {
            return Err(RenderError::InvalidValue {
                field: "mac",
                reason: "not a normalised (lower-case colon) MAC",
            });
        }
    }
    let id = &ctx.machine_id;
    // Sized for a whole agent or profile script: one allocation, no regrowth while writing.
    let head = |what: &str| {
        let mut s = String::with_capacity(1024);
        let _ = writeln!(s, "#!ipxe\necho rackboot: machine {id}: {what}");
        s
    };

    let script = match mode {
        BootMode::Agent {
            kernel,
            initrds,
            cmdline,
        } => {
            let mut extra = check_args("cmdline", cmdline)?;
            if !extra.is_empty() {
                extra.push(' ');
            }
            let _ = write!(
                extra,
                "rackboot.appliance={} rackboot.machine={}",
                ctx.appliance, ctx.machine_id
            );
            let mut s = head("agent");
            linux_boot(&mut s, ctx, "agent", kernel, initrds, &extra)?;
            s
        }
        BootMode::Profile {
            kernel,
            initrds,
            cmdline,
        } => {
            // Check the operator's text first, then substitute validated values.
            check_args("cmdline", cmdline)?;
            let mut c = cmdline
                .replace("${uuid}", &ctx.uuid)
                .replace("${appliance}", &ctx.appliance)
                .replace("${machine}", &ctx.machine_id);
            if let Some(mac) = &ctx.mac {
                c = c.replace("${mac}", mac);
            }
            let c = check_args("cmdline", &c)?;
            let mut s = head("profile");
            linux_boot(&mut s, ctx, "profile", kernel, initrds, &c)?;
            s
        }
        BootMode::Script(text) => operator_script(text, &head("operator script"))?,
        BootMode::Chain { url } => {
            check_url("url", url)?;
            let mut s = head("chain");
            let _ = writeln!(s, "chain --autofree {url}");
            s
        }
        BootMode::Disk { method } => match method {
            DiskMethod::Exit => {
                let mut s = head("boot from disk (exit to firmware)");
                let _ = writeln!(s, "exit");
                s
            }
            DiskMethod::Sanboot => {
                let mut s = head("boot from disk (sanboot 0x80)");
                let _ = writeln!(s, "sanboot --no-describe --drive 0x80");
                s
            }
            DiskMethod::NotFound => {
                return Ok(Rendered::NotFound {
                    reason: format!("machine {id}: boot from disk"),
                })
            }
        },
        BootMode::Cordoned { reason } => {
            return Ok(Rendered::NotFound {
                reason: format!("machine {id}: cordoned: {}", strip_controls(reason)),
            })
        }
    };
    Ok(Rendered::Script(script))
}

/// URL of a kernel/initrd: absolute http(s) URLs as given, anything else is an asset path.
fn image_url(field: &'static str, ctx: &RenderCtx, src: &str) -> Result<String, RenderError> {
    let has_prefix = |p: &str| {
        src.get(..p.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(p))
    };
    if has_prefix("http://") || has_prefix("https://") {
        check_url(field, src)?;
        Ok(src.to_string())
    } else if src.get(..8).unwrap_or(src).contains("://") {
        Err(RenderError::InvalidUrl {
            field,
            reason: "only http:// and https:// URLs are allowed",
        })
    } else {
        let path = check_asset_path(field, src)?;
        Ok(format!("http://{}/assets/{path}", ctx.appliance))
    }
}

/// The name iPXE gives an image fetched from `url`: the last path segment, without query or
/// fragment. It must be a plain, static name because it is repeated in `initrd=` for the EFI
/// stub (which looks the file up by that name).
fn image_name<'a>(field: &'static str, url: &'a str) -> Result<&'a str, RenderError> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or(path);
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~' | '+' | ','));
    if !ok {
        return Err(RenderError::InvalidValue {
            field,
            reason: "the file name (last path segment) must be a plain name [A-Za-z0-9._~+,-]",
        });
    }
    Ok(name)
}

/// `kernel` + `initrd` + `boot`, with `initrd=<name>` for every initrd in front of the command
/// line (the 2019 iPXE EFI loader passes only the command line; the kernel's EFI stub loads the
/// initrds it names).
fn linux_boot(
    s: &mut String,
    ctx: &RenderCtx,
    what: &str,
    kernel: &str,
    initrds: &[String],
    args: &str,
) -> Result<(), RenderError> {
    let kernel_url = image_url("kernel", ctx, kernel)?;
    let initrd_urls = initrds
        .iter()
        .map(|i| image_url("initrd", ctx, i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut names: Vec<&str> = Vec::with_capacity(1 + initrd_urls.len());
    names.push(image_name("kernel", &kernel_url)?);
    for url in &initrd_urls {
        let name = image_name("initrd", url)?;
        if names.contains(&name) {
            return Err(RenderError::DuplicateImageName {
                name: name.to_string(),
            });
        }
        names.push(name);
    }
    let mut cmdline = String::with_capacity(args.len() + 64);
    for n in names.iter().skip(1) {
        if !cmdline.is_empty() {
            cmdline.push(' ');
        }
        cmdline.push_str("initrd=");
        cmdline.push_str(n);
    }
    if !args.is_empty() {
        if !cmdline.is_empty() {
            cmdline.push(' ');
        }
        cmdline.push_str(args);
    }
    check_single_line("cmdline", &cmdline)?;

    let id = &ctx.machine_id;
    if cmdline.is_empty() {
        let _ = writeln!(s, "kernel {kernel_url} || goto rackboot_failed");
    } else {
        let _ = writeln!(s, "kernel {kernel_url} {cmdline} || goto rackboot_failed");
    }
    for url in &initrd_urls {
        let _ = writeln!(s, "initrd {url} || goto rackboot_failed");
    }
    let _ = writeln!(s, "boot || goto rackboot_failed");
    let _ = writeln!(s, ":rackboot_failed");
    let _ = writeln!(
        s,
        "echo rackboot: machine {id}: could not boot the {what}, back to the init script"
    );
    for name in &names {
        let _ = writeln!(s, "imgfree {name} ||");
    }
    let _ = writeln!(s, "exit 1");
    Ok(())
}

/// An operator script: CRLF → LF, a leading BOM dropped, `#!ipxe` guaranteed as the first
/// line, our `echo` line right after it. Control characters other than newline and tab are
/// refused (they have no business in a script).
fn operator_script(text: &str, head: &str) -> Result<String, RenderError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n");
    if text
        .chars()
        .any(|c| crate::escape::is_line_breaking(c) && c != '\n' && c != '\t')
    {
        return Err(RenderError::ControlCharacter { field: "script" });
    }
    let has_magic = ["#!ipxe", "#!gpxe"].iter().any(|m| {
        text.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\n']))
    });
    let body = if has_magic {
        // Drop the operator's magic line; ours replaces it.
        text.split_once('\n').map(|(_, rest)| rest).unwrap_or("")
    } else {
        text.as_str()
    };
    let mut s = String::from(head);
    s.push_str(body);
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}
