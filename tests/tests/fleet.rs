//! The boot-storm simulator (`rackboot-fleet`) on its packet wire, against a real segment: site
//! dnsmasq for addresses, rackboot for ProxyDHCP, TFTP and boot HTTP. Two veth ends, one
//! simulator thread each; machines of every firmware kind boot to the agent's kernel and
//! initramfs. This is what `make bench` runs at 1,000 machines.

use rackboot_e2e::{qemu, sh, workspace_bin};

#[test]
fn simulated_machines_of_every_kind_boot_through_the_packet_wire() {
    let (lab, _appl) = qemu::boot_segment(
        "fleet",
        "",
        &[
            ("tftp/undionly.kpxe", "tftp/undionly.kpxe"),
            ("tftp/ipxe.efi", "tftp/ipxe.efi"),
            ("tftp/ipxe.efi", "tftp/x86_64/ipxe.efi"),
            ("vmlinuz", "agent/vmlinuz"),
            ("marker-initrd.gz", "agent/initramfs.cpio.gz"),
        ],
    );
    let switch = lab.switch.clone();
    for i in 0..2 {
        let (end, peer) = (format!("fl{i}"), format!("fl{i}b"));
        sh(&[
            "ip", "-n", &switch, "link", "add", &end, "type", "veth", "peer", "name", &peer,
        ]);
        sh(&[
            "ip", "-n", &switch, "link", "set", &peer, "master", "br0", "up",
        ]);
        sh(&["ip", "-n", &switch, "link", "set", &end, "up"]);
        // rackboot sends a TFTP window as one UDP GSO datagram; cut it into the client's
        // datagrams before the simulator's packet socket, as a NIC would on the wire.
        sh(&[
            "ip",
            "netns",
            "exec",
            &switch,
            "ethtool",
            "-K",
            &peer,
            "tx-udp-segmentation",
            "off",
        ]);
    }
    let fleet = workspace_bin("rackboot-fleet").display().to_string();
    let csv = lab.dir.join("fleet.csv").display().to_string();
    let (ok, out) = lab.exec(
        &switch,
        &[
            &fleet,
            "--packet",
            "fl0,fl1",
            "--clients",
            "10",
            "--mix",
            "bios,efi7,efi9,http16,ipxe",
            "--http-window-kib",
            "256",
            "--deadline-s",
            "120",
            "--csv",
            &csv,
        ],
    );
    assert!(
        ok,
        "not every simulated machine booted:\n{out}\n{}",
        lab.log("rackboot")
    );
    assert!(out.contains("10 clients, 10 booted, 0 failed"), "{out}");
    assert!(out.contains("2 thread(s)"), "{out}");
    println!("{out}");
    // Every kind went through its own path: TFTP for the PXE ROM and EDK2, HTTP boot, iPXE.
    let rows = std::fs::read_to_string(&csv).unwrap_or_default();
    for kind in ["bios", "efi7", "efi9", "http16", "ipxe"] {
        assert!(
            rows.lines()
                .any(|l| l.contains(&format!(",{kind},booted,"))),
            "no {kind} machine booted:\n{rows}"
        );
    }
}
