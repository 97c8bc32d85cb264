//! Simulated BMCs on the lab segment, each wired to a QEMU VM on a tap of the lab's bridge by
//! `tests/bmc/chassis-control.sh`: OpenIPMI's ipmi_sim in LAN mode (its `chassis_control`
//! program), or sushy-emulator (Redfish, fake driver) whose change notifications
//! `tests/bmc/redfish-bridge.py` turns into the same chassis-control calls.

use crate::qemu::Firmware;
use crate::{venv_tool, Lab};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Default)]
pub struct SimVm<'a> {
    pub mac: &'a str,
    pub uuid: &'a str,
    pub disk: Option<&'a Path>,
    /// SeaBIOS + iPXE ROM (default) or OVMF with its native PXE client.
    pub firmware: Firmware,
    /// Guest RAM in MiB (0: 512).
    pub mem_mb: u32,
    /// Give the guest an in-band IPMI interface (KCS) to the same ipmi_sim (its VM serial port
    /// on this TCP port of the switch namespace's loopback); ipmi_sim only.
    pub inband_port: Option<u16>,
}

/// Write `<dir>/vm.env` for the chassis-control script and give the VM a tap on the bridge.
fn vm_env(lab: &mut Lab, dir: &Path, vm: &SimVm) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let tap = lab.tap();
    let mut env = format!("TAP={tap}\nMAC={}\nUUID={}\n", vm.mac, vm.uuid);
    if let Some(d) = vm.disk {
        env.push_str(&format!("DISK={}\n", d.display()));
    }
    if vm.firmware == Firmware::UefiNativePxe {
        env.push_str("FIRMWARE=uefi\n");
    }
    if vm.mem_mb > 0 {
        env.push_str(&format!("MEM={}\n", vm.mem_mb));
    }
    if let Some(port) = vm.inband_port {
        env.push_str(&format!("INBAND_IPMI=127.0.0.1:{port}\n"));
    }
    std::fs::write(dir.join("vm.env"), env).unwrap_or_else(|e| panic!("{e}"));
}

fn chassis_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bmc/chassis-control.sh")
}

/// Kills the VM the chassis-control script started (by the PID it wrote), on drop.
pub struct VmGuard(pub PathBuf);

impl Drop for VmGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.0.join("vm.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Start ipmi_sim (user admin / password) in the switch namespace on `addr:port`, driving `vm`.
/// Returns the BMC's directory (chassis log, serial log of the VM, vm.pid).
pub fn start_ipmi_sim(lab: &mut Lab, name: &str, addr: &str, port: u16, vm: &SimVm) -> PathBuf {
    let dir = lab.dir.join(name);
    std::fs::create_dir_all(dir.join("state")).unwrap_or_else(|e| panic!("{e}"));
    vm_env(lab, &dir, vm);
    let script = chassis_script();
    let lan = format!(
        "name \"{name}\"\nset_working_mc 0x20\n  startlan 1\n    addr {addr} {port}\n    priv_limit admin\n\
         allowed_auths_callback none md2 md5 straight\n    allowed_auths_user none md2 md5 straight\n\
         allowed_auths_operator none md2 md5 straight\n    allowed_auths_admin none md2 md5 straight\n\
         guid a123456789abcdefa123456789abcdef\n  endlan\n  chassis_control \"{} {} 0x20\"\n\
         user 2 true \"admin\" \"password\" admin 10 none md2 md5 straight\n{}",
        script.display(),
        dir.display(),
        vm.inband_port
            .map(|p| format!("  serial kcs 127.0.0.1 {p} codec VM\n"))
            .unwrap_or_default()
    );
    std::fs::write(dir.join("lan.conf"), lan).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.join("bmc.emu"),
        "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let sw = lab.switch.clone();
    let (lan_p, emu_p, st) = (dir.join("lan.conf"), dir.join("bmc.emu"), dir.join("state"));
    let args = [
        "ipmi_sim".to_string(),
        "-c".into(),
        lan_p.display().to_string(),
        "-f".into(),
        emu_p.display().to_string(),
        "-n".into(),
        "-s".into(),
        st.display().to_string(),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.spawn(name, &sw, &refs);
    std::thread::sleep(Duration::from_millis(500));
    assert!(lab.alive(name), "ipmi_sim died: {}", lab.log(name));
    dir
}

/// Start sushy-emulator (fake driver, one system whose UUID is the VM's, no authentication) in
/// the switch namespace on `addr:port`, and the bridge that powers the VM when the emulator's
/// power state changes (on `127.0.0.1:bridge_port` there). Returns the BMC's directory, laid out
/// as for [`start_ipmi_sim`].
pub fn start_redfish(
    lab: &mut Lab,
    name: &str,
    addr: &str,
    port: u16,
    bridge_port: u16,
    vm: &SimVm,
) -> PathBuf {
    let dir = lab.dir.join(name);
    std::fs::create_dir_all(dir.join("state")).unwrap_or_else(|e| panic!("{e}"));
    vm_env(lab, &dir, vm);
    let conf = dir.join("emulator.conf");
    std::fs::write(
        &conf,
        format!(
            "SUSHY_EMULATOR_LISTEN_IP = '{addr}'\nSUSHY_EMULATOR_LISTEN_PORT = {port}\n\
             SUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_STATE_DIR = '{}'\n\
             SUSHY_EMULATOR_FAKE_SYSTEMS = [{{'uuid': '{}', 'name': '{name}', 'power_state': 'Off', \
             'external_notifier': True, 'nics': [{{'mac': '{}'}}]}}]\n\
             EXTERNAL_NOTIFICATION_URL = 'http://127.0.0.1:{bridge_port}/notify'\n",
            dir.join("state").display(),
            vm.uuid,
            vm.mac
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let sw = lab.switch.clone();
    let python = venv_tool("python3");
    let bridge = Path::new(env!("CARGO_MANIFEST_DIR")).join("bmc/redfish-bridge.py");
    let bridge_args = [
        python.display().to_string(),
        bridge.display().to_string(),
        bridge_port.to_string(),
        chassis_script().display().to_string(),
        dir.display().to_string(),
    ];
    let refs: Vec<&str> = bridge_args.iter().map(String::as_str).collect();
    lab.spawn(&format!("{name}-bridge"), &sw, &refs);
    let sushy = venv_tool("sushy-emulator");
    let args = [
        sushy.display().to_string(),
        "--config".into(),
        conf.display().to_string(),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.spawn(name, &sw, &refs);
    let url = format!("http://{addr}:{port}/redfish/v1/Systems");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !lab.exec(&sw, &["curl", "-sf", "-o", "/dev/null", &url]).0 {
        assert!(lab.alive(name), "sushy-emulator died: {}", lab.log(name));
        assert!(
            std::time::Instant::now() < deadline,
            "sushy-emulator did not answer on {url}: {}",
            lab.log(name)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        lab.alive(&format!("{name}-bridge")),
        "redfish bridge died: {}",
        lab.log(&format!("{name}-bridge"))
    );
    dir
}

/// Number of marker boots the VM's serial console shows.
pub fn markers(bmc: &Path) -> usize {
    std::fs::read_to_string(bmc.join("serial.log"))
        .unwrap_or_default()
        .matches("RACKBOOT-MARKER-END")
        .count()
}

pub const FILE_CHASSIS: &str = r#"#!/bin/sh
# ipmi_sim chassis_control: "<this> <dir> 0x20 get|set parm [val]..."; power kept in <dir>/power.
D=$1; op=$3; shift 3
case $op in
  get) for p in "$@"; do
         case $p in
           power) echo "power:$(cat "$D/power" 2>/dev/null || echo 0)" ;;
           boot) echo "boot:default" ;;
           *) echo "Invalid parameter: $p"; exit 1 ;;
         esac
       done ;;
  set) while [ $# -ge 2 ]; do
         [ "$1" = power ] && { echo "$2" > "$D/power"; echo "power $2" >> "$D/actions"; }
         shift 2
       done ;;
  *) echo "Unknown operation: $op"; exit 1 ;;
esac
exit 0
"#;

/// An ipmi_sim on loopback whose chassis control keeps the power state in `<dir>/power` and
/// appends every power change to `<dir>/actions` (no VM). User `admin` / `password`. Returns `<dir>`.
pub fn start_file_ipmi_sim(p: &mut crate::Procs, name: &str, port: u16) -> PathBuf {
    let dir = p.dir.join(name);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let script = p.dir.join("chassis.sh");
    if !script.exists() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&script, FILE_CHASSIS).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let lan = format!(
        "name \"{name}\"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {port}\n    priv_limit admin\n\
         allowed_auths_callback none md2 md5 straight\n    allowed_auths_user none md2 md5 straight\n\
         allowed_auths_operator none md2 md5 straight\n    allowed_auths_admin none md2 md5 straight\n\
         guid a123456789abcdefa123456789abcdef\n  endlan\n  chassis_control \"{} {} 0x20\"\n\
         user 2 true \"admin\" \"password\" admin 10 none md2 md5 straight\n",
        script.display(),
        dir.display()
    );
    std::fs::write(dir.join("lan.conf"), lan).unwrap();
    std::fs::write(
        dir.join("bmc.emu"),
        "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n",
    )
    .unwrap();
    p.spawn(
        name,
        std::process::Command::new("ipmi_sim")
            .arg("-c")
            .arg(dir.join("lan.conf"))
            .arg("-f")
            .arg(dir.join("bmc.emu"))
            .arg("-s")
            .arg(dir.join("state"))
            .arg("-n"),
    );
    dir
}
