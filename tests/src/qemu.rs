//! QEMU virtual servers on the lab segment (TCG: KVM does not work on these machines).

use crate::Lab;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Firmware {
    /// SeaBIOS with the iPXE option ROM of ipxe-qemu (iPXE in ROM, legacy BIOS).
    #[default]
    BiosIpxeRom,
    /// OVMF with its own PXE client (`romfile=` removes the iPXE ROM): TFTP → ipxe.efi.
    UefiNativePxe,
}

/// Test assets from `tests/assets/prepare.sh` (kernel, marker initramfs, iPXE binaries).
pub fn assets() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-assets");
    assert!(
        p.join("vmlinuz").is_file()
            && p.join("marker-initrd.gz").is_file()
            && p.join("tftp/ipxe.efi").is_file(),
        "test assets missing: run tests/assets/prepare.sh (make test does)"
    );
    p
}

/// [`assets`] plus the agent image (`tests/assets/prepare.sh` builds it from rackboot-agent).
pub fn agent_assets() -> PathBuf {
    let p = assets();
    assert!(
        p.join("agent/initramfs.cpio.gz").is_file(),
        "agent image missing: run tests/assets/prepare.sh after building rackboot-agent"
    );
    p
}

/// Whether the disk image holds `sig` at `offset` (a wipe removes it).
pub fn signature_at(disk: &Path, sig: &[u8], offset: u64) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(disk).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; sig.len()];
    f.read_exact(&mut buf).unwrap();
    buf == sig
}

pub struct Vm {
    pub name: String,
}

/// Boot a VM with one NIC on a new tap of the lab's bridge.
pub fn start(lab: &mut Lab, name: &str, fw: Firmware, mac: &str, uuid: &str) -> Vm {
    let tap = lab.tap();
    let netdev = format!("tap,id=n0,ifname={tap},script=no,downscript=no");
    let mut nic = format!("virtio-net-pci,netdev=n0,mac={mac},bootindex=1");
    let mut args: Vec<String> = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-machine",
        "q35",
        "-m",
        "512",
        "-nographic",
        "-nodefaults",
        "-no-reboot",
        "-serial",
        "stdio",
        "-uuid",
        uuid,
        "-netdev",
        &netdev,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match fw {
        Firmware::BiosIpxeRom => args.extend(["-boot".to_string(), "n".to_string()]),
        Firmware::UefiNativePxe => {
            nic.push_str(",romfile=");
            let vars = lab.dir.join(format!("{name}-vars.fd"));
            std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
            args.extend([
                "-drive".into(),
                "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
                    .into(),
                "-drive".into(),
                format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
            ]);
        }
    }
    args.extend(["-device".to_string(), nic]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let switch = lab.switch.clone();
    lab.spawn(name, &switch, &refs);
    Vm {
        name: name.to_string(),
    }
}

impl Vm {
    /// Wait until the serial console shows `needle`; returns the console so far.
    pub fn wait_serial(&self, lab: &mut Lab, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = lab.log(&self.name);
            if log.contains(needle) {
                return log;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: {needle:?} not seen within {timeout:?}; console:\n{}",
                    self.name,
                    tail(&log, 3000)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// A provisioning segment with dnsmasq as the site DHCP server (10.99.0.1) and rackboot in
/// proxy mode (10.99.0.2) serving `copies` (test-asset path → assets path) with `config_toml`.
pub fn boot_segment(tag: &str, config_toml: &str, copies: &[(&str, &str)]) -> (Lab, crate::Host) {
    let mut lab = Lab::new(tag);
    let site = lab.host(
        "site",
        std::net::Ipv4Addr::new(10, 99, 0, 1),
        Some("fd99::1/64"),
    );
    let appl = lab.host("appl", std::net::Ipv4Addr::new(10, 99, 0, 2), None);
    lab.site_dhcp(&site);
    let src = assets();
    let dst = lab.dir.join("assets");
    for (from, to) in copies {
        let to = dst.join(to);
        std::fs::create_dir_all(to.parent().unwrap_or(&dst)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(src.join(from), &to).unwrap_or_else(|e| panic!("{from}: {e}"));
    }
    std::fs::create_dir_all(dst.join("tftp")).unwrap_or_else(|e| panic!("{e}"));
    let cfg = lab.write("rackboot.toml", config_toml);
    let cfg = cfg.display().to_string();
    lab.rackboot(&appl, &dst, &["--config", &cfg]);
    (lab, appl)
}
