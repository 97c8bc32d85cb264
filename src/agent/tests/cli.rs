//! The binary's command line.

use std::process::Command;

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rackboot-agent"));
    c.env_remove("RACKBOOT_AGENT_DISKS");
    c
}

#[test]
fn help_and_bad_args() {
    let o = agent().arg("--help").output().expect("run");
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("rackboot.appliance"));
    let o = agent().arg("--bogus").output().expect("run");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn missing_appliance_on_cmdline_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("cmdline");
    std::fs::write(&f, "console=ttyS0 quiet\n").expect("write");
    let o = agent().args(["--cmdline"]).arg(&f).output().expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("rackboot.appliance"));
}

#[test]
fn once_against_closed_port_fails_and_lists_override_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("cmdline");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("a")
        .port();
    std::fs::write(
        &f,
        format!("rackboot.appliance=127.0.0.1:{port} rackboot.machine=t\n"),
    )
    .expect("write");
    let img = dir.path().join("d.img");
    std::fs::write(&img, [0u8; 512]).expect("write");
    let o = agent()
        .args(["--once", "--cmdline"])
        .arg(&f)
        .env("RACKBOOT_AGENT_DISKS", &img)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("disk d.img at"), "{err}");
    assert!(err.contains("connecting to 127.0.0.1"), "{err}");
    assert!(err.contains("machine=\"t\""), "{err}");
}

#[test]
fn facts_from_fake_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("sys/class/dmi/id");
    std::fs::create_dir_all(&p).expect("mkdir");
    std::fs::write(p.join("sys_vendor"), "QEMU\n").expect("write");
    let o = agent()
        .arg("--facts")
        .arg("--root")
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"QEMU\""));
}
