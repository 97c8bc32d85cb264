//! Real firmware boots through rackboot on a segment where dnsmasq is the site DHCP server
//! (addresses only): ProxyDHCP → (TFTP ipxe.efi for native UEFI PXE) → init.ipxe → boot.ipxe →
//! the agent kernel + a marker initramfs that prints its command line. Then the machine is set
//! to boot from disk and its next boot gets the disk script. QEMU TCG; needs root.
#![allow(clippy::unwrap_used)]

use rackboot_e2e::qemu::{self, Firmware};
use rackboot_e2e::{Host, Lab};
use std::sync::Mutex;
use std::time::Duration;

/// One VM at a time: two TCG guests on two cores slow each other past the firmware timeouts.
static QEMU: Mutex<()> = Mutex::new(());

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

fn segment(tag: &str) -> (Lab, Host) {
    qemu::boot_segment(
        tag,
        "[boot]\nagent_cmdline = \"console=ttyS0 panic=-1\"\n",
        &[
            ("tftp/undionly.kpxe", "tftp/undionly.kpxe"),
            ("tftp/ipxe.efi", "tftp/ipxe.efi"),
            ("tftp/snponly.efi", "tftp/snponly.efi"),
            ("vmlinuz", "agent/vmlinuz"),
            ("marker-initrd.gz", "agent/initramfs.cpio.gz"),
        ],
    )
}

fn set_boot_mode(lab: &Lab, appl: &Host, machine: &str, body: &str) {
    let token = std::fs::read_to_string(lab.dir.join("rackboot-data/admin-token")).unwrap();
    let (ok, out) = lab.exec(
        &appl.ns,
        &[
            "curl",
            "-sf",
            "-X",
            "PUT",
            "-H",
            &format!("Authorization: Bearer {}", token.trim()),
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            &format!("http://127.0.0.1:8080/api/v1/machines/{machine}/boot"),
        ],
    );
    assert!(ok, "setting the boot mode failed: {out}");
}

fn boot_to_marker_then_disk(fw: Firmware, tag: &str, mac: &str, uuid: &str, firmware_line: &str) {
    let _one = QEMU.lock().unwrap_or_else(|p| p.into_inner());
    let (mut lab, appl) = segment(tag);
    let vm = qemu::start(&mut lab, "vm1", fw, mac, uuid);
    let console = vm.wait_serial(&mut lab, "RACKBOOT-MARKER-END", BOOT_TIMEOUT);
    let cmdline = console
        .lines()
        .find(|l| l.contains("RACKBOOT-CMDLINE:"))
        .unwrap()
        .to_string();
    assert!(
        cmdline.contains(&format!("rackboot.machine={uuid}")),
        "{cmdline}"
    );
    assert!(
        cmdline.contains("rackboot.appliance=10.99.0.2:50042"),
        "{cmdline}"
    );
    assert!(console.contains(firmware_line), "expected {firmware_line}");

    // Discovered through DHCP and the boot script, with the boot recorded.
    let m = lab.admin_get(&appl, &format!("/api/v1/machines/{uuid}"));
    assert!(
        m.contains(mac) && m.contains("\"state\":\"discovered\""),
        "{m}"
    );
    let events = lab.admin_get(&appl, &format!("/api/v1/events?machine={uuid}"));
    assert!(events.contains("boot.ipxe served: agent"), "{events}");
    let log = lab.log("rackboot");
    if fw == Firmware::UefiNativePxe {
        assert!(
            log.contains("ipxe.efi"),
            "native UEFI PXE should fetch ipxe.efi over TFTP"
        );
        let metrics = lab.admin_get(&appl, "/metrics");
        // What the firmware negotiated and what its transfers needed resent (for the log).
        for line in metrics.lines().filter(|l| {
            l.starts_with("rackboot_tftp_transfers_total{kind=\"option\"")
                || l.starts_with("rackboot_tftp_retransmitted")
                || l.starts_with("rackboot_tftp_tail_probes")
        }) {
            eprintln!("{line}");
        }
        assert!(
            metrics.contains("rackboot_tftp_transfers_total{kind=\"completed\""),
            "{metrics}"
        );
    }

    // Second boot: the machine is set to boot from disk; it gets the disk script.
    set_boot_mode(&lab, &appl, uuid, r#"{"mode":"disk","method":"exit"}"#);
    let vm2 = qemu::start(&mut lab, "vm2", fw, mac, uuid);
    vm2.wait_serial(
        &mut lab,
        &format!("rackboot: machine {uuid}: boot from disk"),
        BOOT_TIMEOUT,
    );
    let events = lab.admin_get(&appl, &format!("/api/v1/events?machine={uuid}"));
    assert!(events.contains("boot.ipxe served: disk"), "{events}");
}

#[test]
fn bios_ipxe_rom_boots_the_agent_then_the_disk() {
    boot_to_marker_then_disk(
        Firmware::BiosIpxeRom,
        "pxe-bios",
        "52:54:00:99:00:10",
        "11111111-2222-3333-4444-555555555551",
        "RACKBOOT-FIRMWARE: BIOS",
    );
}

#[test]
fn uefi_native_pxe_fetches_ipxe_efi_over_tftp_and_boots_the_agent() {
    boot_to_marker_then_disk(
        Firmware::UefiNativePxe,
        "pxe-uefi",
        "52:54:00:99:00:20",
        "11111111-2222-3333-4444-555555555552",
        "RACKBOOT-FIRMWARE: UEFI",
    );
}
