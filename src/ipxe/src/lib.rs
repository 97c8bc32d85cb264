//! # rackboot-ipxe: iPXE scripts and boot query validation, without I/O
//!
//! The boot HTTP server answers two iPXE requests with what this crate computes:
//!
//! - `GET /ipxe/init.ipxe` → [`init_script`]: the same script for every machine. It brings up
//!   each NIC (`net0`..`net7`) with `dhcp` (retried: ProxyDHCP offers can arrive late) and
//!   chains `boot.ipxe` with the machine's `${uuid}`, `${netX/mac:hexhyp}` and `${buildarch}`;
//!   it loops over the NICs for a bounded number of rounds, then reboots. It uses only commands
//!   that Debian's iPXE 1.0.0+git-20190125 knows (no `inc`).
//! - `GET /ipxe/boot.ipxe?uuid=&mac=&arch=` → [`BootQuery::parse`] on the raw query string
//!   (any [`QueryError`] is a 400; [`QueryError::MissingUuid`] reads "missing uuid (and no mac)"), then the
//!   server looks the machine up (by uuid, or by mac when [`BootQuery::uuid_is_placeholder`]), decides
//!   its [`BootMode`] and calls [`render`] with a [`RenderCtx`]:
//!   [`Rendered::Script`] is a 200 with that body, [`Rendered::NotFound`] a 404 with that
//!   reason, and a [`RenderError`] a 400 or 500 ([`RenderError::http_status`]). A server that
//!   renders the same mode for many machines keeps its [`Template`] (everything but the
//!   machine checked once) and calls [`render_template`] with the machine and the agent's token:
//!   the same bytes as [`render`].
//!
//! ## Invariants
//!
//! - **No I/O**: pure functions over strings, std only, no allocation of global state. The
//!   server sets Content-Length and answers from memory, in microseconds, even in a boot storm.
//! - **No injection**: query values are parsed into closed shapes (lower-case UUID, colon MAC,
//!   five architecture names) and anything carrying line breaks, spaces, `;`, `$`, `{`, `}`,
//!   quotes or backslashes is refused before shape checks. Every value put into a script line is
//!   checked before it is written: control characters are refused (never stripped), argument
//!   lists may not contain iPXE's `;`/`||`/`&&` separators or `#` comments or end in a
//!   line-continuation `\`, URLs are http/https without whitespace, asset paths have no `..`.
//! - iPXE expands `${...}` itself at run time. Operator-supplied command lines, URLs and
//!   scripts may use iPXE settings on purpose (e.g. `${net0/ip}`); rackboot substitutes
//!   `${uuid}`, `${mac}`, `${appliance}` and `${machine}` in profile command lines with values
//!   that were validated, so machine-supplied data never reaches iPXE's expander unchecked.
//! - Output is deterministic (golden-file tested in `tests/golden/`).

#![forbid(unsafe_code)]

mod escape;
mod query;
mod script;
mod template;

pub use escape::RenderError;
pub use query::{normalize_mac, normalize_uuid, Arch, BootQuery, QueryError};
pub use script::{
    init_script, render, BootMode, DiskMethod, RenderCtx, Rendered, DHCP_ATTEMPTS, MAX_NIC,
};
pub use template::{render_template, Template};
