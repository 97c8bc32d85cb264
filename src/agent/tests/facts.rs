//! Hardware facts against a fake /sys, /proc and /dev tree.

use std::fs;
use std::path::Path;

use rackboot_agent::facts;

fn put(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, content).expect("write");
}

fn link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink(target, p).expect("symlink");
}

const CPUINFO: &str = "\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz
physical id\t: 0
siblings\t: 2
core id\t\t: 0
cpu cores\t: 1

processor\t: 1
model name\t: Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz
physical id\t: 0
siblings\t: 2
core id\t\t: 0
cpu cores\t: 1

processor\t: 2
model name\t: Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz
physical id\t: 1
siblings\t: 2
core id\t\t: 0
cpu cores\t: 1

processor\t: 3
model name\t: Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz
physical id\t: 1
siblings\t: 2
core id\t\t: 0
cpu cores\t: 1
";

/// A two-socket server with an NVMe, a SATA HDD, a virtio disk, junk block devices, two NICs.
fn fake_machine(root: &Path) {
    put(
        root,
        "sys/class/dmi/id/product_uuid",
        "4C4C4544-0042-3510-8052-B4C04F4D4E31\n",
    );
    put(root, "sys/class/dmi/id/sys_vendor", "Dell Inc.\n");
    put(root, "sys/class/dmi/id/product_name", "PowerEdge R640\n");
    put(root, "sys/class/dmi/id/product_serial", "4B5QN42\n");
    put(root, "proc/cpuinfo", CPUINFO);
    put(
        root,
        "proc/meminfo",
        "MemTotal:       65852132 kB\nMemFree:        1 kB\n",
    );
    put(root, "proc/uptime", "123.45 200.00\n");

    put(root, "sys/block/nvme0n1/size", "1953525168\n");
    put(
        root,
        "sys/block/nvme0n1/device/model",
        "Samsung SSD 970 EVO Plus 1TB          \n",
    );
    put(root, "sys/block/nvme0n1/device/serial", "S4EWNX0N123456\n");
    put(root, "sys/block/nvme0n1/queue/rotational", "0\n");

    put(root, "sys/block/sda/size", "7814037168\n");
    put(root, "sys/block/sda/device/model", "ST4000NM0035-1V4\n");
    put(root, "sys/block/sda/device/wwid", "naa.5000c500a1b2c3d4\n");
    put(root, "sys/block/sda/queue/rotational", "1\n");

    put(root, "sys/block/vda/size", "131072\n");
    put(root, "sys/block/vda/serial", "scratch\n");
    put(root, "sys/block/vda/queue/rotational", "1\n");

    for junk in ["loop0", "ram0", "zram0", "sr0", "dm-0", "md127"] {
        put(root, &format!("sys/block/{junk}/size"), "100\n");
    }

    put(root, "sys/class/net/lo/address", "00:00:00:00:00:00\n");
    put(root, "sys/class/net/eno1/address", "B0:26:28:AA:BB:01\n");
    put(root, "sys/class/net/eno1/speed", "-1\n");
    put(root, "sys/class/net/eno1/operstate", "down\n");
    link(
        root,
        "sys/class/net/eno1/device/driver",
        "../../../bus/pci/drivers/tg3",
    );
    put(root, "sys/class/net/ens1f0/address", "3c:fd:fe:00:11:22\n");
    put(root, "sys/class/net/ens1f0/speed", "10000\n");
    put(root, "sys/class/net/ens1f0/operstate", "up\n");
    link(
        root,
        "sys/class/net/ens1f0/device/driver",
        "../../../bus/pci/drivers/ixgbe",
    );
}

#[test]
fn full_report_from_fake_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    fake_machine(root);
    let r = facts::gather(root);

    let sys = r.system.expect("system");
    assert_eq!(sys.uuid, "4c4c4544-0042-3510-8052-b4c04f4d4e31");
    assert_eq!(sys.vendor, "Dell Inc.");
    assert_eq!(sys.product, "PowerEdge R640");
    assert_eq!(sys.serial, "4B5QN42");

    assert_eq!(r.cpus.len(), 2);
    assert_eq!(
        r.cpus[0].model,
        "Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz"
    );
    assert_eq!((r.cpus[0].cores, r.cpus[0].threads), (1, 2));
    assert_eq!(r.memory_bytes, 65_852_132 * 1024);

    let names: Vec<_> = r.disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["nvme0n1", "sda", "vda"]);
    let nvme = &r.disks[0];
    assert_eq!(nvme.size_bytes, 1_953_525_168 * 512);
    assert_eq!(nvme.model, "Samsung SSD 970 EVO Plus 1TB");
    assert_eq!(nvme.serial, "S4EWNX0N123456");
    assert!(!nvme.rotational);
    assert_eq!(r.disks[1].serial, "naa.5000c500a1b2c3d4");
    assert!(r.disks[1].rotational);
    assert_eq!(r.disks[2].serial, "scratch");
    assert_eq!(r.disks[2].size_bytes, 64 << 20);

    assert_eq!(r.nics.len(), 2);
    let eno1 = &r.nics[0];
    assert_eq!(eno1.name, "eno1");
    assert_eq!(eno1.mac, "b0:26:28:aa:bb:01");
    assert_eq!(eno1.driver, "tg3");
    assert_eq!(eno1.speed_mbps, 0);
    assert!(!eno1.link_up);
    let ens = &r.nics[1];
    assert_eq!(
        (ens.driver.as_str(), ens.speed_mbps, ens.link_up),
        ("ixgbe", 10_000, true)
    );
    assert_eq!(facts::boot_mac(&r.nics), "3c:fd:fe:00:11:22");

    assert!(!r.bmc.expect("bmc").present);
    put(root, "dev/ipmi0", "");
    assert!(facts::bmc(root).present);
    assert_eq!(facts::uptime_secs(root), Some(123));

    let devs = facts::disks(root);
    assert_eq!(devs[0].dev_path, root.join("dev/nvme0n1"));
}

#[test]
fn empty_tree_gives_empty_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = facts::gather(dir.path());
    assert_eq!(r.system.expect("system").uuid, "");
    assert!(r.cpus.is_empty() && r.disks.is_empty() && r.nics.is_empty());
    assert_eq!(r.memory_bytes, 0);
    assert_eq!(facts::boot_mac(&r.nics), "");
    assert_eq!(facts::uptime_secs(dir.path()), None);
}

#[test]
fn cpuinfo_without_physical_id() {
    // arm64-style, or a VM hiding topology: one package, threads = processors.
    let cpus = facts::parse_cpuinfo("processor\t: 0\nBogoMIPS\t: 50\n\nprocessor\t: 1\n\n");
    assert_eq!(cpus.len(), 1);
    assert_eq!((cpus[0].cores, cpus[0].threads), (2, 2));
    assert_eq!(facts::parse_meminfo("MemTotal: x kB"), 0);
}

#[test]
fn garbage_values_do_not_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    put(root, "sys/block/sdb/size", "lots\n");
    put(root, "sys/block/sdb/queue/rotational", "maybe");
    put(root, "sys/class/net/eth0/speed", "99999999999999\n");
    put(root, "proc/uptime", "NaN 1\n");
    let r = facts::gather(root);
    assert_eq!(r.disks[0].size_bytes, 0);
    assert_eq!(r.nics[0].speed_mbps, 0);
    assert_eq!(facts::uptime_secs(root), None);
}

#[test]
fn disks_settle_only_after_boot_and_a_quiet_spell() {
    use std::time::Duration;
    let s = Duration::from_secs;
    // Right after boot the set may still grow: wait, even if it has been quiet.
    assert!(!facts::disks_settled(Some(s(4)), s(3), s(1)));
    // Up long enough but a disk just appeared.
    assert!(!facts::disks_settled(
        Some(s(12)),
        Duration::from_millis(500),
        s(5)
    ));
    assert!(facts::disks_settled(Some(s(12)), s(2), s(5)));
    // A system up for a minute is settled; nobody waits past the cap; no uptime: not the image.
    assert!(facts::disks_settled(Some(s(61)), s(0), s(0)));
    assert!(facts::disks_settled(Some(s(4)), s(0), s(30)));
    assert!(facts::disks_settled(None, s(0), s(0)));
}

#[test]
fn settle_disks_returns_at_once_on_a_long_running_system() {
    let dir = tempfile::tempdir().expect("tmp");
    put(dir.path(), "proc/uptime", "3600.12 100.00\n");
    put(dir.path(), "sys/block/vda/size", "131072\n");
    // No sleep at all (the bound only keeps a loaded machine from failing the test).
    assert!(facts::settle_disks(dir.path()) < std::time::Duration::from_secs(5));
}

#[test]
fn settle_disks_waits_for_a_quiet_spell_after_boot() {
    let dir = tempfile::tempdir().expect("tmp");
    put(dir.path(), "proc/uptime", "12.50 1.00\n");
    put(dir.path(), "sys/block/vda/size", "131072\n");
    let waited = facts::settle_disks(dir.path());
    assert!(waited >= facts::SETTLE_QUIET, "{waited:?}");
}
