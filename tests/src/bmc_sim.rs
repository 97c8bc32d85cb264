//! A simulated BMC on the lab segment: OpenIPMI's ipmi_sim in LAN mode, its chassis control wired
//! (by `tests/bmc/chassis-control.sh`) to a QEMU VM on a tap of the lab's bridge.

use crate::Lab;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct SimVm<'a> {
    pub mac: &'a str,
    pub uuid: &'a str,
    pub disk: Option<&'a Path>,
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
    let tap = lab.tap();
    let disk = vm
        .disk
        .map(|d| format!("DISK={}\n", d.display()))
        .unwrap_or_default();
    std::fs::write(
        dir.join("vm.env"),
        format!("TAP={tap}\nMAC={}\nUUID={}\n{disk}", vm.mac, vm.uuid),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bmc/chassis-control.sh");
    let lan = format!(
        "name \"{name}\"\nset_working_mc 0x20\n  startlan 1\n    addr {addr} {port}\n    priv_limit admin\n\
         allowed_auths_callback none md2 md5 straight\n    allowed_auths_user none md2 md5 straight\n\
         allowed_auths_operator none md2 md5 straight\n    allowed_auths_admin none md2 md5 straight\n\
         guid a123456789abcdefa123456789abcdef\n  endlan\n  chassis_control \"{} {} 0x20\"\n\
         user 2 true \"admin\" \"password\" admin 10 none md2 md5 straight\n",
        script.display(),
        dir.display()
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

/// Number of marker boots the VM's serial console shows.
pub fn markers(bmc: &Path) -> usize {
    std::fs::read_to_string(bmc.join("serial.log"))
        .unwrap_or_default()
        .matches("RACKBOOT-MARKER-END")
        .count()
}
