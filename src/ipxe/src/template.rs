//! A boot mode's script with everything that does not depend on the machine checked and laid
//! out once: [`Template::new`] validates the mode's URLs, asset paths, image names and command
//! line; [`Template::render`] adds the machine (its id, UUID, MAC and the agent's per-boot
//! token) and writes the script with plain string appends.
//!
//! The boot server keeps the templates of the modes it serves, so a boot storm or a client
//! re-fetching its script pays for the machine's values only. [`crate::render`] is
//! `Template::new` + `Template::render`: both give the same bytes.

use crate::escape::{
    check_args, check_asset_path, check_host_port, check_single_line, check_token, check_url,
    strip_controls, RenderError,
};
use crate::query::{is_normalized_mac, is_normalized_uuid};
use crate::script::{BootMode, DiskMethod, RenderCtx, Rendered};

/// A checked boot mode for one appliance address (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    body: Body,
    /// The (checked) appliance address the template was made for: its URLs, the agent's
    /// `rackboot.appliance=` and a profile's `${appliance}` all use it.
    appliance: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// `kernel` + `initrd` + `boot` (agent or profile).
    Linux(Linux),
    /// A script whose lines after the `echo` head do not depend on the machine.
    Fixed { what: &'static str, rest: String },
    /// 404 with `machine <id>: <reason>`.
    NotFound { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Linux {
    /// `"agent"` or `"profile"`: the `echo` head and the failure message name it.
    what: &'static str,
    /// `kernel <url>` and `initrd=<name>` for every initrd.
    kernel: String,
    /// Command line words after the `initrd=` ones. Agent: the checked base command line (the
    /// token, appliance and machine are added per request). Profile: the operator's text,
    /// whose `${uuid}`, `${mac}`, `${appliance}` and `${machine}` are substituted per request.
    args: String,
    agent: bool,
    /// ` || goto rackboot_failed`, the `initrd` lines, `boot`, the label, and the start of the
    /// failure `echo` (the machine id follows).
    middle: String,
    /// The rest of the failure `echo`, the `imgfree` lines and `exit 1`.
    tail: String,
}

impl Template {
    /// Check `mode` for machines that reach the boot server at `appliance` (`host:port`).
    pub fn new(mode: &BootMode, appliance: &str) -> Result<Template, RenderError> {
        check_host_port("appliance", appliance)?;
        let body = match mode {
            BootMode::Agent {
                kernel,
                initrds,
                cmdline,
            } => {
                let args = check_args("cmdline", cmdline)?;
                Body::Linux(Linux::new("agent", appliance, kernel, initrds, args, true)?)
            }
            BootMode::Profile {
                kernel,
                initrds,
                cmdline,
            } => {
                // The operator's text is checked as written here, and again once the machine's
                // values are in (per request).
                check_args("cmdline", cmdline)?;
                Body::Linux(Linux::new(
                    "profile",
                    appliance,
                    kernel,
                    initrds,
                    cmdline.clone(),
                    false,
                )?)
            }
            BootMode::Script(text) => Body::Fixed {
                what: "operator script",
                rest: operator_script_body(text)?,
            },
            BootMode::Chain { url } => {
                check_url("url", url)?;
                Body::Fixed {
                    what: "chain",
                    rest: format!("chain --autofree {url}\n"),
                }
            }
            BootMode::Disk { method } => match method {
                DiskMethod::Exit => Body::Fixed {
                    what: "boot from disk (exit to firmware)",
                    rest: "exit\n".into(),
                },
                DiskMethod::Sanboot => Body::Fixed {
                    what: "boot from disk (sanboot 0x80)",
                    rest: "sanboot --no-describe --drive 0x80\n".into(),
                },
                DiskMethod::NotFound => Body::NotFound {
                    reason: "boot from disk".into(),
                },
            },
            BootMode::Cordoned { reason } => Body::NotFound {
                reason: format!("cordoned: {}", strip_controls(reason)),
            },
        };
        Ok(Template {
            body,
            appliance: appliance.to_string(),
        })
    }

    /// The script for one machine. `token` is the agent's per-boot token (put on the agent's
    /// command line as `rackboot.token=`; ignored for other modes).
    pub fn render(&self, ctx: &RenderCtx, token: Option<&str>) -> Result<Rendered, RenderError> {
        // The address the template was checked with needs no second look.
        check_machine(ctx, ctx.appliance != self.appliance)?;
        if let Some(t) = token {
            check_token("token", t)?;
        }
        let id = &ctx.machine_id;
        let script = match &self.body {
            Body::NotFound { reason } => {
                let mut r = String::with_capacity(10 + id.len() + reason.len());
                push_all(&mut r, &["machine ", id, ": ", reason]);
                return Ok(Rendered::NotFound { reason: r });
            }
            Body::Fixed { what, rest } => {
                let mut s = String::with_capacity(64 + id.len() + rest.len());
                head(&mut s, id, what);
                s.push_str(rest);
                s
            }
            Body::Linux(l) => l.render(&self.appliance, ctx, token)?,
        };
        Ok(Rendered::Script(script))
    }
}

/// The machine's values are checked before anything else (a bad one is the client's error).
fn check_machine(ctx: &RenderCtx, appliance: bool) -> Result<(), RenderError> {
    if appliance {
        check_host_port("appliance", &ctx.appliance)?;
    }
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
    Ok(())
}

/// Render `mode` for `ctx`, with the machine's values checked before the mode's (as
/// [`crate::render`] does) when the template could not be made.
pub fn render_template(
    template: &Result<Template, RenderError>,
    ctx: &RenderCtx,
    token: Option<&str>,
) -> Result<Rendered, RenderError> {
    match template {
        Ok(t) => t.render(ctx, token),
        Err(e) => {
            check_machine(ctx, true)?;
            Err(e.clone())
        }
    }
}

fn push_all(s: &mut String, parts: &[&str]) {
    for p in parts {
        s.push_str(p);
    }
}

/// `#!ipxe` and the `echo` line saying what the script does.
fn head(s: &mut String, id: &str, what: &str) {
    push_all(
        s,
        &["#!ipxe\necho rackboot: machine ", id, ": ", what, "\n"],
    );
}

impl Linux {
    /// `initrd=<name>` for every initrd goes in front of the command line (the 2019 iPXE EFI
    /// loader passes only the command line; the kernel's EFI stub loads the initrds it names).
    fn new(
        what: &'static str,
        appliance: &str,
        kernel: &str,
        initrds: &[String],
        args: String,
        agent: bool,
    ) -> Result<Linux, RenderError> {
        let kernel_url = image_url("kernel", appliance, kernel)?;
        let initrd_urls = initrds
            .iter()
            .map(|i| image_url("initrd", appliance, i))
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
        let mut line = format!("kernel {kernel_url}");
        for n in names.iter().skip(1) {
            push_all(&mut line, &[" initrd=", n]);
        }
        let mut middle = String::from(" || goto rackboot_failed\n");
        for url in &initrd_urls {
            push_all(&mut middle, &["initrd ", url, " || goto rackboot_failed\n"]);
        }
        middle.push_str("boot || goto rackboot_failed\n:rackboot_failed\necho rackboot: machine ");
        let mut tail = format!(": could not boot the {what}, back to the init script\n");
        for name in &names {
            push_all(&mut tail, &["imgfree ", name, " ||\n"]);
        }
        tail.push_str("exit 1\n");
        Ok(Linux {
            what,
            kernel: line,
            args,
            agent,
            middle,
            tail,
        })
    }

    fn render(
        &self,
        appliance: &str,
        ctx: &RenderCtx,
        token: Option<&str>,
    ) -> Result<String, RenderError> {
        let id = ctx.machine_id.as_str();
        // The machine's values in the command line: words checked alone, so the line is too.
        let args = if self.agent {
            let mut a = String::with_capacity(self.args.len() + 128 + id.len());
            a.push_str(&self.args);
            if let Some(t) = token {
                push_sep(&mut a);
                push_all(&mut a, &["rackboot.token=", t]);
            }
            push_sep(&mut a);
            push_all(
                &mut a,
                &["rackboot.appliance=", appliance, " rackboot.machine=", id],
            );
            a
        } else {
            let mut c = self
                .args
                .replace("${uuid}", &ctx.uuid)
                .replace("${appliance}", appliance)
                .replace("${machine}", id);
            if let Some(mac) = &ctx.mac {
                c = c.replace("${mac}", mac);
            }
            check_args("cmdline", &c)?
        };
        check_single_line("cmdline", &args)?;
        let mut s = String::with_capacity(
            96 + 2 * id.len()
                + self.kernel.len()
                + args.len()
                + self.middle.len()
                + self.tail.len(),
        );
        head(&mut s, id, self.what);
        s.push_str(&self.kernel);
        if !args.is_empty() {
            s.push(' ');
            s.push_str(&args);
        }
        push_all(&mut s, &[&self.middle, id, &self.tail]);
        Ok(s)
    }
}

fn push_sep(s: &mut String) {
    if !s.is_empty() {
        s.push(' ');
    }
}

/// URL of a kernel/initrd: absolute http(s) URLs as given, anything else is an asset path.
fn image_url(field: &'static str, appliance: &str, src: &str) -> Result<String, RenderError> {
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
        Ok(format!("http://{appliance}/assets/{path}"))
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

/// An operator script after our `echo` head: CRLF → LF, a leading BOM dropped, the operator's
/// own `#!ipxe` line dropped (ours comes first), ending in a newline. Control characters other
/// than newline and tab are refused (they have no business in a script).
fn operator_script_body(text: &str) -> Result<String, RenderError> {
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
    let mut body = if has_magic {
        text.split_once('\n')
            .map(|(_, rest)| rest)
            .unwrap_or("")
            .to_string()
    } else {
        text
    };
    // The head before it ends in a newline already.
    if !body.is_empty() && !body.ends_with('\n') {
        body.push('\n');
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Arch;

    fn ctx(id: &str) -> RenderCtx {
        RenderCtx {
            appliance: "10.99.0.1:50042".into(),
            machine_id: id.into(),
            uuid: "4c4c4544-0035-3010-8052-b4c04f4d4d32".into(),
            mac: Some("52:54:00:99:00:10".into()),
            arch: Some(Arch::X86_64),
        }
    }

    fn agent(cmdline: &str) -> BootMode {
        BootMode::Agent {
            kernel: "agent/vmlinuz".into(),
            initrds: vec!["agent/initramfs.cpio.gz".into()],
            cmdline: cmdline.into(),
        }
    }

    #[test]
    fn one_template_serves_many_machines_with_their_own_values() {
        let t = Template::new(&agent("console=ttyS0"), "10.99.0.1:50042").expect("template");
        for (id, token) in [("r1-u07", "00ff"), ("r2-u01", "abcd")] {
            let Ok(Rendered::Script(s)) = t.render(&ctx(id), Some(token)) else {
                panic!("no script for {id}");
            };
            assert!(
                s.contains(&format!("echo rackboot: machine {id}: agent\n")),
                "{s}"
            );
            assert!(
                s.contains(&format!(
                    "console=ttyS0 rackboot.token={token} rackboot.appliance=10.99.0.1:50042 rackboot.machine={id} ||"
                )),
                "{s}"
            );
            assert!(s.contains(&format!(
                "echo rackboot: machine {id}: could not boot the agent"
            )));
        }
    }

    #[test]
    fn a_token_is_checked_like_any_value_put_on_a_line() {
        let t = Template::new(&agent(""), "10.99.0.1:50042").expect("template");
        for bad in ["a b", "x\ny", "", "a;b"] {
            assert!(t.render(&ctx("r1"), Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_machine_is_checked_before_a_broken_mode_is_reported() {
        let broken = Template::new(&agent("a ; b"), "10.99.0.1:50042");
        assert!(matches!(broken, Err(RenderError::ScriptSyntax { .. })));
        let mut bad_uuid = ctx("r1");
        bad_uuid.uuid = "not-a-uuid".into();
        let err = render_template(&broken, &bad_uuid, None).expect_err("bad uuid");
        assert_eq!(err.field(), "uuid");
        assert_eq!(
            render_template(&broken, &ctx("r1"), None),
            Err(broken.clone().expect_err("broken"))
        );
    }

    #[test]
    fn a_template_remembers_its_appliance() {
        let Ok(Template {
            body: Body::Linux(l),
            appliance,
        }) = Template::new(&agent(""), "[fd00::1]:50042")
        else {
            panic!("agent template");
        };
        assert_eq!(appliance, "[fd00::1]:50042");
        assert!(l
            .kernel
            .starts_with("kernel http://[fd00::1]:50042/assets/agent/vmlinuz"));
    }
}
