#![allow(clippy::unwrap_used)]
//! Driven with the scripts rackboot really serves (rendered by rackboot-ipxe), not hand copies.
use super::*;
use rackboot_ipxe::{init_script, render, Arch, BootMode, RenderCtx, Rendered};

const BASE: &str = "http://10.97.0.2:50042";

fn vars() -> HashMap<String, String> {
    [
        ("uuid", "f1ee7000-0000-0000-0000-000000000007"),
        ("net0/mac", "52:54:0a:00:00:07"),
        ("buildarch", "x86_64"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn agent_script() -> String {
    let mode = BootMode::Agent {
        kernel: "agent/vmlinuz".into(),
        initrds: vec!["agent/initramfs.cpio.gz".into()],
        cmdline: "console=ttyS0".into(),
    };
    let ctx = RenderCtx {
        appliance: "10.97.0.2:50042".into(),
        machine_id: "f1ee7000-0000-0000-0000-000000000007".into(),
        uuid: "f1ee7000-0000-0000-0000-000000000007".into(),
        mac: Some("52:54:0a:00:00:07".into()),
        arch: Some(Arch::X86_64),
    };
    match render(&mode, &ctx).unwrap() {
        Rendered::Script(s) => s,
        r => panic!("{r:?}"),
    }
}

#[test]
fn init_then_boot_script_reach_boot() {
    let mut i = Interp::new(&init_script(BASE, 3).unwrap(), vars());
    assert_eq!(i.run(), Effect::Dhcp);
    i.resume(0);
    assert_eq!(
        i.run(),
        Effect::Fetch {
            kind: FetchKind::Script,
            url: format!("{BASE}/ipxe/boot.ipxe?uuid=f1ee7000-0000-0000-0000-000000000007&mac=52-54-0a-00-00-07&arch=x86_64"),
        }
    );
    assert!(i.awaiting_chain());
    i.push_script(&agent_script());
    assert_eq!(
        i.run(),
        Effect::Fetch {
            kind: FetchKind::Kernel,
            url: format!("{BASE}/assets/agent/vmlinuz"),
        }
    );
    i.kernel_loaded();
    i.resume(0);
    assert_eq!(
        i.run(),
        Effect::Fetch {
            kind: FetchKind::Initrd,
            url: format!("{BASE}/assets/agent/initramfs.cpio.gz"),
        }
    );
    i.resume(0);
    assert_eq!(i.run(), Effect::Boot);
}

#[test]
fn dhcp_failing_everywhere_goes_round_by_round_then_reboots() {
    let mut i = Interp::new(&init_script(BASE, 2).unwrap(), vars());
    let mut dhcps = 0;
    let effect = loop {
        match i.run() {
            Effect::Dhcp => {
                dhcps += 1;
                i.resume(1);
            }
            Effect::Sleep(d) => {
                assert_eq!(d, Duration::from_secs(10));
                i.resume(0);
            }
            e => break e,
        }
    };
    // 3 attempts on net0 per round, 2 rounds; net1 does not exist.
    assert_eq!(dhcps, 6);
    assert_eq!(effect, Effect::Reboot);
}

#[test]
fn a_refused_boot_script_exits_to_the_firmware() {
    let mut i = Interp::new(&init_script(BASE, 3).unwrap(), vars());
    assert_eq!(i.run(), Effect::Dhcp);
    i.resume(0);
    assert!(matches!(i.run(), Effect::Fetch { .. }));
    i.resume(1); // HTTP 404: boot from disk or cordoned
    assert_eq!(i.run(), Effect::Exit(1));
}

#[test]
fn a_failed_kernel_falls_back_to_the_init_script_error_path() {
    let mut i = Interp::new(&init_script(BASE, 3).unwrap(), vars());
    i.run();
    i.resume(0);
    i.run();
    i.push_script(&agent_script());
    assert!(matches!(
        i.run(),
        Effect::Fetch {
            kind: FetchKind::Kernel,
            ..
        }
    ));
    i.resume(1);
    // boot.ipxe: goto rackboot_failed, imgfree, exit 1 → chain failed → init script: exit 1.
    assert_eq!(i.run(), Effect::Exit(1));
}

#[test]
fn language_basics() {
    let s = "#!ipxe\nset a 1\niseq ${a} 1 && goto yes || goto no\n:no\nexit 3\n:yes\nisset ${nothing} || set b x${a}y\nkernel http://h/${b}\nboot\n";
    let mut i = Interp::new(s, HashMap::new());
    assert_eq!(
        i.run(),
        Effect::Fetch {
            kind: FetchKind::Kernel,
            url: "http://h/x1y".into()
        }
    );
    i.resume(0);
    assert_eq!(
        i.run(),
        Effect::Exit(1),
        "boot without a loaded kernel fails; the script ends with that rc"
    );
    let mut i = Interp::new("boot || exit 4\n", HashMap::new());
    assert_eq!(i.run(), Effect::Exit(4));
    let mut i = Interp::new(":a\ngoto a\n", HashMap::new());
    assert!(matches!(i.run(), Effect::Error(_)));
    let mut i = Interp::new("goto nowhere || exit 5\n", HashMap::new());
    assert_eq!(i.run(), Effect::Exit(5));
}
