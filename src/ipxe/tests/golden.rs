//! Golden-file tests: every boot mode and the init script against `tests/golden/*.ipxe`.
//! `UPDATE_GOLDEN=1 cargo test -p rackboot-ipxe --test golden` rewrites the files.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use rackboot_ipxe::{
    init_script, render, render_template, Arch, BootMode, DiskMethod, RenderCtx, RenderError,
    Rendered, Template,
};

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "{} differs from the rendered output (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

fn ctx() -> RenderCtx {
    RenderCtx {
        appliance: "10.99.0.1:50042".into(),
        machine_id: "r1-u07".into(),
        uuid: "4c4c4544-0035-3010-8052-b4c04f4d4d32".into(),
        mac: Some("52:54:00:99:00:10".into()),
        arch: Some(Arch::X86_64),
    }
}

fn script(mode: &BootMode) -> String {
    match render(mode, &ctx()).unwrap() {
        Rendered::Script(s) => {
            assert!(s.starts_with("#!ipxe\necho rackboot: machine r1-u07: "));
            assert!(s.ends_with('\n'));
            s
        }
        other => panic!("expected a script, got {other:?}"),
    }
}

#[test]
fn init() {
    let s = init_script("http://10.99.0.1:50042/", 3).unwrap();
    assert!(s.starts_with("#!ipxe\n"));
    assert!(!s.contains(" inc "), "no `inc` in 2019 iPXE");
    golden("init.ipxe", &s);
}

#[test]
fn init_single_round() {
    let s = init_script("http://10.99.0.1:50042", 0).unwrap();
    assert_eq!(s.matches("set rackboot-round ").count(), 1);
    assert!(s.contains("set rackboot-next rackboot_give_up"));
    assert_eq!(s, init_script("http://10.99.0.1:50042", 1).unwrap());
}

#[test]
fn init_labels_resolve() {
    // Every `goto` target exists exactly once as a label.
    let s = init_script("http://10.99.0.1:50042", 4).unwrap();
    let labels: Vec<&str> = s.lines().filter_map(|l| l.strip_prefix(':')).collect();
    let mut sorted = labels.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), labels.len(), "duplicate labels");
    for line in s.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        for pair in tokens.windows(2).filter(|w| w[0] == "goto") {
            let target = pair[1];
            if target == "${rackboot-next}" {
                continue;
            }
            assert!(labels.contains(&target), "goto {target}: no such label");
        }
    }
    for line in s.lines().filter(|l| l.starts_with("set rackboot-next ")) {
        let target = line.rsplit(' ').next().unwrap();
        assert!(labels.contains(&target), "rackboot-next {target}: no label");
    }
}

#[test]
fn init_refuses_bad_base() {
    assert!(init_script("tftp://10.99.0.1", 3).is_err());
    assert!(init_script("http://10.99.0.1\nshell", 3).is_err());
    assert!(init_script("http://10.99.0.1 x", 3).is_err());
}

#[test]
fn agent() {
    let s = script(&BootMode::Agent {
        kernel: "agent/vmlinuz".into(),
        initrds: vec!["/agent/initramfs.cpio.gz".into()],
        cmdline: "console=ttyS0,115200 console=tty0  quiet".into(),
    });
    assert!(s.contains(
        "kernel http://10.99.0.1:50042/assets/agent/vmlinuz initrd=initramfs.cpio.gz console=ttyS0,115200 console=tty0 quiet rackboot.appliance=10.99.0.1:50042 rackboot.machine=r1-u07 || goto rackboot_failed\n"
    ));
    golden("agent.ipxe", &s);
}

#[test]
fn agent_empty_cmdline() {
    let s = script(&BootMode::Agent {
        kernel: "agent/vmlinuz".into(),
        initrds: vec!["agent/initramfs.img".into()],
        cmdline: "".into(),
    });
    assert!(s.contains(
        "initrd=initramfs.img rackboot.appliance=10.99.0.1:50042 rackboot.machine=r1-u07 ||"
    ));
}

#[test]
fn profile() {
    let s = script(&BootMode::Profile {
        kernel: "https://mirror.example.com/talos/v1.9.0/vmlinuz-amd64".into(),
        initrds: vec![
            "talos/initramfs-amd64.xz".into(),
            "http://10.99.0.1:50042/assets/extra/firmware.cpio".into(),
        ],
        cmdline: "talos.platform=metal uuid=${uuid} mac=${mac} api=http://${appliance}/config?m=${machine} ip=${net0/ip}".into(),
    });
    golden("profile.ipxe", &s);
}

#[test]
fn profile_without_mac_leaves_it_to_ipxe() {
    let mut c = ctx();
    c.mac = None;
    let mode = BootMode::Profile {
        kernel: "k/vmlinuz".into(),
        initrds: vec![],
        cmdline: "mac=${mac}".into(),
    };
    let Rendered::Script(s) = render(&mode, &c).unwrap() else {
        panic!()
    };
    assert!(s.contains("kernel http://10.99.0.1:50042/assets/k/vmlinuz mac=${mac} ||"));
    assert!(!s.contains("initrd="));
}

#[test]
fn profile_no_cmdline_no_initrd() {
    let s = script(&BootMode::Profile {
        kernel: "k/vmlinuz".into(),
        initrds: vec![],
        cmdline: "".into(),
    });
    assert!(s.contains("kernel http://10.99.0.1:50042/assets/k/vmlinuz || goto rackboot_failed\n"));
}

#[test]
fn operator_script_with_magic() {
    let s = script(&BootMode::Script(
        "#!ipxe\r\necho hello from the operator\r\nchain http://10.0.0.9/menu.ipxe\r\n".into(),
    ));
    golden("script.ipxe", &s);
}

#[test]
fn operator_script_without_magic() {
    let s = script(&BootMode::Script("shell".into()));
    golden("script_no_magic.ipxe", &s);
}

#[test]
fn operator_script_refuses_nul() {
    let err = render(&BootMode::Script("#!ipxe\nshell\0".into()), &ctx()).unwrap_err();
    assert_eq!(err, RenderError::ControlCharacter { field: "script" });
}

#[test]
fn chain() {
    let s = script(&BootMode::Chain {
        url: "https://boot.example.com/menu.ipxe?rack=r1".into(),
    });
    golden("chain.ipxe", &s);
}

#[test]
fn disk_exit() {
    golden(
        "disk_exit.ipxe",
        &script(&BootMode::Disk {
            method: DiskMethod::Exit,
        }),
    );
}

#[test]
fn disk_sanboot() {
    golden(
        "disk_sanboot.ipxe",
        &script(&BootMode::Disk {
            method: DiskMethod::Sanboot,
        }),
    );
}

#[test]
fn disk_not_found_and_cordoned() {
    assert_eq!(
        render(
            &BootMode::Disk {
                method: DiskMethod::NotFound
            },
            &ctx()
        )
        .unwrap(),
        Rendered::NotFound {
            reason: "machine r1-u07: boot from disk".into()
        }
    );
    assert_eq!(
        render(
            &BootMode::Cordoned {
                reason: "bad DIMM\nsee ticket 42".into()
            },
            &ctx()
        )
        .unwrap(),
        Rendered::NotFound {
            reason: "machine r1-u07: cordoned: bad DIMM see ticket 42".into()
        }
    );
}

fn err(mode: BootMode) -> RenderError {
    render(&mode, &ctx()).unwrap_err()
}

#[test]
fn injection_is_refused() {
    let agent = |cmdline: &str| BootMode::Agent {
        kernel: "agent/vmlinuz".into(),
        initrds: vec!["agent/initrd".into()],
        cmdline: cmdline.into(),
    };
    assert_eq!(
        err(agent("quiet\nshell")),
        RenderError::ControlCharacter { field: "cmdline" }
    );
    assert_eq!(
        err(agent("quiet\rshell")),
        RenderError::ControlCharacter { field: "cmdline" }
    );
    assert!(matches!(
        err(agent("quiet ; shell")),
        RenderError::ScriptSyntax {
            field: "cmdline",
            ..
        }
    ));
    assert!(matches!(
        err(agent("quiet || shell")),
        RenderError::ScriptSyntax { .. }
    ));
    assert!(matches!(
        err(agent("quiet #comment")),
        RenderError::ScriptSyntax { .. }
    ));
    assert!(matches!(
        err(agent("quiet \\")),
        RenderError::ScriptSyntax { .. }
    ));
    assert!(matches!(
        err(BootMode::Agent {
            kernel: "agent/vmlinuz\nshell".into(),
            initrds: vec![],
            cmdline: "".into()
        }),
        RenderError::ControlCharacter { field: "kernel" }
    ));
    assert!(matches!(
        err(BootMode::Agent {
            kernel: "../../etc/shadow".into(),
            initrds: vec![],
            cmdline: "".into()
        }),
        RenderError::InvalidUrl {
            field: "kernel",
            ..
        }
    ));
    assert!(matches!(
        err(BootMode::Chain {
            url: "http://x/a\nshell".into()
        }),
        RenderError::ControlCharacter { field: "url" }
    ));
    assert!(matches!(
        err(BootMode::Chain {
            url: "http://x/a || shell".into()
        }),
        RenderError::InvalidUrl { field: "url", .. }
    ));
    assert!(matches!(
        err(BootMode::Chain {
            url: "file:///etc/passwd".into()
        }),
        RenderError::InvalidUrl { field: "url", .. }
    ));
    assert!(matches!(
        err(BootMode::Profile {
            kernel: "tftp://10.0.0.1/vmlinuz".into(),
            initrds: vec![],
            cmdline: "".into()
        }),
        RenderError::InvalidUrl {
            field: "kernel",
            ..
        }
    ));
    assert!(matches!(
        err(BootMode::Profile {
            kernel: "http://10.0.0.1/k/".into(),
            initrds: vec![],
            cmdline: "".into()
        }),
        RenderError::InvalidValue {
            field: "kernel",
            ..
        }
    ));
    assert_eq!(
        err(BootMode::Profile {
            kernel: "k/vmlinuz".into(),
            initrds: vec!["a/initrd.img".into(), "b/initrd.img".into()],
            cmdline: "".into()
        }),
        RenderError::DuplicateImageName {
            name: "initrd.img".into()
        }
    );
}

#[test]
fn bad_context_is_refused() {
    let mode = BootMode::Disk {
        method: DiskMethod::Exit,
    };
    let mut c = ctx();
    c.machine_id = "r1\necho pwned".into();
    assert_eq!(
        render(&mode, &c).unwrap_err(),
        RenderError::ControlCharacter {
            field: "machine_id"
        }
    );
    let mut c = ctx();
    c.machine_id = "${x}".into();
    assert!(render(&mode, &c).is_err());
    let mut c = ctx();
    c.uuid = "4C4C4544-0035-3010-8052-B4C04F4D4D32".into();
    let e = render(&mode, &c).unwrap_err();
    assert_eq!((e.field(), e.http_status()), ("uuid", 400));
    let mut c = ctx();
    c.mac = Some("52-54-00-99-00-10\nshell".into());
    assert_eq!(render(&mode, &c).unwrap_err().http_status(), 400);
    let mut c = ctx();
    c.appliance = "10.99.0.1:50042/../x".into();
    assert_eq!(render(&mode, &c).unwrap_err().http_status(), 500);
}

/// The server gives the agent's token apart from the mode (so one template serves every
/// machine); the script must be the one the token inside the command line gave.
#[test]
fn a_token_given_apart_gives_the_script_of_a_token_in_the_command_line() {
    let token = "0123456789abcdef0123456789abcdef";
    for cmdline in [
        "",
        "console=ttyS0",
        "  console=ttyS0   quiet ",
        "a=b\u{a0}c",
    ] {
        let agent = |c: String| BootMode::Agent {
            kernel: "agent/vmlinuz".into(),
            initrds: vec!["agent/initramfs.cpio.gz".into(), "agent/extra.img".into()],
            cmdline: c,
        };
        let inside = render(&agent(format!("{cmdline} rackboot.token={token}")), &ctx());
        let template = Template::new(&agent(cmdline.into()), &ctx().appliance);
        assert_eq!(
            render_template(&template, &ctx(), Some(token)),
            inside,
            "{cmdline:?}"
        );
    }
    // Every other mode: the same script as `render`, the token unused.
    let modes = [
        BootMode::Chain {
            url: "http://h/x".into(),
        },
        BootMode::Script("#!ipxe\r\nshell".into()),
        BootMode::Script("".into()),
        BootMode::Disk {
            method: DiskMethod::NotFound,
        },
        BootMode::Cordoned {
            reason: "rack\nmove".into(),
        },
        BootMode::Profile {
            kernel: "k/vmlinuz".into(),
            initrds: vec![],
            cmdline: "m=${mac} u=${uuid} a=${appliance} id=${machine}".into(),
        },
        BootMode::Chain {
            url: "ftp://h/x".into(),
        },
    ];
    for mode in modes {
        let template = Template::new(&mode, &ctx().appliance);
        assert_eq!(
            render_template(&template, &ctx(), None),
            render(&mode, &ctx()),
            "{mode:?}"
        );
    }
}
