//! The two scripts the boot HTTP server serves: `init.ipxe` (same for every machine) and
//! `boot.ipxe` (per machine, from its boot mode).

use std::fmt::Write as _;

use crate::escape::{check_url, RenderError};
use crate::query::Arch;
use crate::template::Template;

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
    crate::template::render_template(&Template::new(mode, &ctx.appliance), ctx, None)
}
