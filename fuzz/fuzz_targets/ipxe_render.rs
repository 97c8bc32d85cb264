//! iPXE script rendering with operator-supplied values (profile kernel/initrd/cmdline, chain URL,
//! cordon reason, operator script) and the init script's base URL. Nothing panics, and whatever
//! is accepted keeps the script's skeleton: the same commands on the same number of lines, every
//! value inside its line, no iPXE separator or comment token where values go.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rackboot_ipxe::{init_script, render, BootMode, RenderCtx, Rendered};

#[derive(Arbitrary, Debug)]
enum Mode {
    Agent {
        kernel: String,
        initrds: Vec<String>,
        cmdline: String,
    },
    Profile {
        kernel: String,
        initrds: Vec<String>,
        cmdline: String,
    },
    Chain {
        url: String,
    },
    Cordoned {
        reason: String,
    },
    Script(String),
    Init {
        base: String,
        rounds: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    mode: Mode,
    appliance: String,
    machine_id: String,
}

/// Tokens that end a command or start a comment in iPXE.
fn syntax(tok: &str) -> bool {
    tok == ";" || tok == "||" || tok == "&&" || tok.starts_with('#')
}

fn check_linux(s: &str, initrds: usize) {
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), 8 + 2 * initrds, "{s}");
    assert_eq!(lines[0], "#!ipxe");
    assert!(lines[1].starts_with("echo rackboot: machine "));
    let kernel = lines[2]
        .strip_suffix(" || goto rackboot_failed")
        .expect("kernel line suffix");
    let toks: Vec<&str> = kernel.split_whitespace().collect();
    assert_eq!(toks[0], "kernel");
    assert!(
        toks[1].starts_with("http://") || toks[1].starts_with("https://"),
        "{kernel}"
    );
    assert!(
        !toks.iter().any(|t| syntax(t)),
        "script syntax in {kernel:?}"
    );
    assert!(!kernel.ends_with('\\'));
    for l in &lines[3..3 + initrds] {
        let rest = l
            .strip_prefix("initrd ")
            .and_then(|l| l.strip_suffix(" || goto rackboot_failed"));
        let url = rest.expect("initrd line");
        assert_eq!(url.split_whitespace().count(), 1, "{l}");
    }
    assert_eq!(lines[3 + initrds], "boot || goto rackboot_failed");
    assert_eq!(lines[4 + initrds], ":rackboot_failed");
    assert!(lines[5 + initrds].starts_with("echo rackboot: machine "));
    for l in &lines[6 + initrds..7 + 2 * initrds] {
        assert!(
            l.starts_with("imgfree ") && l.ends_with(" ||") && l.split_whitespace().count() == 3,
            "{l}"
        );
    }
    assert_eq!(lines[7 + 2 * initrds], "exit 1");
}

fuzz_target!(|input: Input| {
    let ctx = RenderCtx {
        appliance: input.appliance.clone(),
        machine_id: input.machine_id.clone(),
        uuid: "11111111-2222-3333-4444-555555555555".into(),
        mac: Some("52:54:00:00:00:01".into()),
        arch: None,
    };
    let (mode, initrds) = match input.mode {
        Mode::Init { base, rounds } => {
            if let Ok(s) = init_script(&base, u32::from(rounds % 8)) {
                let b = base.trim_end_matches('/');
                let canon = init_script("http://x", u32::from(rounds % 8)).expect("canonical");
                assert_eq!(
                    s.replace(b, "http://x"),
                    canon,
                    "base URL {base:?} changed the script"
                );
            }
            return;
        }
        Mode::Agent {
            kernel,
            initrds,
            cmdline,
        } => {
            let n = initrds.len();
            (
                BootMode::Agent {
                    kernel,
                    initrds,
                    cmdline,
                },
                Some(n),
            )
        }
        Mode::Profile {
            kernel,
            initrds,
            cmdline,
        } => {
            let n = initrds.len();
            (
                BootMode::Profile {
                    kernel,
                    initrds,
                    cmdline,
                },
                Some(n),
            )
        }
        Mode::Chain { url } => (BootMode::Chain { url }, None),
        Mode::Cordoned { reason } => (BootMode::Cordoned { reason }, None),
        Mode::Script(s) => (BootMode::Script(s), None),
    };
    let Ok(out) = render(&mode, &ctx) else { return };
    // Accepted context values have their shapes: no way into a script line for anything else.
    assert!(
        !ctx.machine_id.is_empty()
            && !ctx
                .machine_id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
    );
    assert!(!ctx
        .appliance
        .chars()
        .any(|c| c.is_whitespace() || c.is_control()));
    match (out, &mode) {
        (Rendered::NotFound { reason }, _) => {
            assert!(!reason.chars().any(char::is_control), "{reason:?}");
        }
        (Rendered::Script(s), BootMode::Agent { .. } | BootMode::Profile { .. }) => {
            check_linux(&s, initrds.expect("linux mode"));
        }
        (Rendered::Script(s), BootMode::Chain { .. }) => {
            let lines: Vec<&str> = s.lines().collect();
            assert_eq!(lines.len(), 3, "{s}");
            let toks: Vec<&str> = lines[2].split_whitespace().collect();
            assert_eq!(toks.len(), 3, "{s}");
            assert_eq!(&toks[..2], &["chain", "--autofree"]);
        }
        (Rendered::Script(s), BootMode::Script(_)) => {
            assert!(s.starts_with("#!ipxe\necho rackboot: machine "));
            assert!(s.ends_with('\n'));
            assert!(!s.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
        }
        (other, mode) => panic!("{mode:?} rendered as {other:?}"),
    }
});
