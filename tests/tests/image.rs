//! The appliance image end to end: `image/build.sh` (lab overlay) → boot under OVMF in QEMU TCG
//! with a management NIC (user-mode, restricted, admin port forwarded) and a provisioning NIC on
//! the lab segment (site DHCP gives it an address) → the init's markers and rackboot serving →
//! /healthz, boot HTTP from the segment, a machine registered through the admin API → power cut
//! → second boot from the same disk: the machine and the token are still there → Ctrl-Alt-Del:
//! a clean shutdown. Needs root; about a minute.
//!
//! The admin token follows the operator flow of image/README.md: it is put on the ESP as
//! `rackboot/admin-token`; the init installs it (0600) on the data partition and deletes it from
//! the ESP. The token is never printed (the test checks both consoles for it).
#![allow(clippy::unwrap_used)]

use rackboot_e2e::image::{self, tail};
use rackboot_e2e::Lab;
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const ADMIN_PORT: u16 = 18080;
/// The ESP override moves the admin listener here (proves the override is in effect).
const GUEST_ADMIN: u16 = 8081;
const PROV_MAC: &str = "52:54:00:aa:00:02";

fn secret_file(lab: &Lab, name: &str, text: &str) -> std::path::PathBuf {
    let p = lab.write(name, text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[test]
fn appliance_image_boots_serves_and_keeps_its_data() {
    let mut lab = Lab::new("image");
    let site = lab.host("site", Ipv4Addr::new(10, 99, 0, 1), Some("fd99::1/64"));
    lab.site_dhcp(&site);

    // --- build ---
    let built = image::build(&lab.dir.join("image"), "lab");
    let disk = built.disk.clone();
    let raw_size = std::fs::metadata(&disk).unwrap().len();
    let qcow_size = std::fs::metadata(built.dir.join("rackboot.qcow2"))
        .unwrap()
        .len();
    let uki_size = std::fs::metadata(built.dir.join("rackboot.efi"))
        .unwrap()
        .len();

    // --- the operator's laptop: admin token and a config override on the ESP ---
    let mut raw = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut raw)
        .unwrap();
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let tok = secret_file(&lab, "esp-admin-token", &format!("{token}\n"));
    image::esp_put(&disk, &tok, "/rackboot/admin-token");
    std::fs::remove_file(&tok).unwrap();
    let defaults = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../image/rackboot.toml"),
    )
    .unwrap();
    let over = defaults.replace(
        "listen = \"0.0.0.0:8080\"",
        &format!("listen = \"0.0.0.0:{GUEST_ADMIN}\""),
    );
    assert_ne!(
        over, defaults,
        "image/rackboot.toml: admin listen not found"
    );
    let over = lab.write("esp-rackboot.toml", &over);
    image::esp_put(&disk, &over, "/rackboot/rackboot.toml");
    let auth = secret_file(
        &lab,
        "auth.header",
        &format!("Authorization: Bearer {token}\n"),
    );

    // --- first boot ---
    let a = image::boot(
        &mut lab,
        "appliance1",
        &disk,
        ADMIN_PORT,
        GUEST_ADMIN,
        PROV_MAC,
    );
    for needle in [
        "rackboot-init: === start",
        "rackboot-init: data partition /dev/vda2 mounted at /data",
        "rackboot-init: config: using /boot/efi/rackboot/rackboot.toml (ESP override)",
        "rackboot-init: admin token installed from the ESP",
        "rackboot-init: admin token removed from the ESP",
        "rackboot-init: network: eth1 up, address 10.99.0.",
        "rackboot-supervise:",
        "rackboot serving",
        // the supervisor's `ulimit -n`: room for a storm's sockets
        "open_files=65536",
    ] {
        a.wait_console(&mut lab, needle, BOOT_TIMEOUT);
    }
    let healthy1 = a.wait_healthy(&mut lab, BOOT_TIMEOUT);
    let console1 = a.console(&lab);
    let prov_ip = console1
        .lines()
        .find_map(|l| l.strip_prefix("rackboot-init: network: eth1 up, address "))
        .and_then(|s| s.split('/').next())
        .unwrap()
        .to_string();
    // init raised net.core.rmem_max: the DHCP/TFTP sockets got the buffers rackboot asks for
    assert!(
        !console1.contains("UDP receive buffers are capped"),
        "rmem_max not raised:\n{}",
        tail(&console1, 3000)
    );
    assert!(
        console1.contains(&format!("proxydhcp serving advertise={prov_ip}")),
        "rackboot does not serve ProxyDHCP on the provisioning NIC:\n{}",
        tail(&console1, 3000)
    );

    // boot HTTP answers on the provisioning segment (from the site host)
    let (ok, script) = lab.exec(
        &site.ns,
        &[
            "curl",
            "-sf",
            "-m",
            "10",
            &format!("http://{prov_ip}:50042/ipxe/init.ipxe"),
        ],
    );
    assert!(ok && script.starts_with("#!ipxe"), "init.ipxe: {script}");

    // the admin API: token required (non-loopback listener), the ESP token works
    let body = r#"{"name": "r1-u07", "macs": ["52:54:00:99:00:10"]}"#;
    let (code, _) = a.admin(&lab, "POST", "/api/v1/machines", None, Some(body));
    assert_eq!(code, 401, "POST without a token");
    let (code, created) = a.admin(&lab, "POST", "/api/v1/machines", Some(&auth), Some(body));
    assert_eq!(code, 201, "POST /api/v1/machines: {created}");
    assert!(created.contains("r1-u07"), "{created}");

    // --- pull the plug (sled flushes every commit: the machine must survive) ---
    a.power_cut(&mut lab);
    let esp_after = image::esp_ls(&disk, "/rackboot");
    assert!(
        !esp_after.iter().any(|n| n == "admin-token"),
        "admin-token still on the ESP: {esp_after:?}"
    );

    // --- second boot, same disk ---
    let b = image::boot(
        &mut lab,
        "appliance2",
        &disk,
        ADMIN_PORT,
        GUEST_ADMIN,
        PROV_MAC,
    );
    b.wait_console(&mut lab, "rackboot serving", BOOT_TIMEOUT);
    let healthy2 = b.wait_healthy(&mut lab, BOOT_TIMEOUT);
    let (code, list) = b.admin(&lab, "GET", "/api/v1/machines", Some(&auth), None);
    assert_eq!(code, 200, "GET /api/v1/machines after reboot: {list}");
    assert!(
        list.contains("r1-u07") && list.contains("52:54:00:99:00:10"),
        "machine lost across the reboot: {list}"
    );
    let console2 = b.console(&lab);
    assert!(
        !console2.contains("admin token installed"),
        "token installed twice"
    );

    // --- clean shutdown: Ctrl-Alt-Del → busybox init → rackboot-shutdown → reboot (QEMU exits) ---
    let t = Instant::now();
    b.monitor("sendkey ctrl-alt-delete");
    b.wait_console(
        &mut lab,
        "rackboot-shutdown: data partition clean",
        Duration::from_secs(60),
    );
    b.wait_exit(&mut lab, Duration::from_secs(60));
    let shutdown = t.elapsed();

    let console2 = b.console(&lab);
    for (n, c) in [(1, &console1), (2, &console2)] {
        assert!(!c.contains(&token), "boot {n}: the admin token was printed");
    }
    eprintln!(
        "image: build {:.1}s; rackboot.img {} MiB (sparse), rackboot.qcow2 {:.1} MiB, UKI {:.1} MiB; \
         boot to /healthz (TCG, OVMF): first {:.1}s, second {:.1}s; Ctrl-Alt-Del to off {:.1}s",
        built.seconds,
        raw_size >> 20,
        qcow_size as f64 / 1048576.0,
        uki_size as f64 / 1048576.0,
        healthy1.as_secs_f64(),
        healthy2.as_secs_f64(),
        shutdown.as_secs_f64()
    );
    // the images are large; the logs stay in the scratch dir
    let _ = std::fs::remove_dir_all(&built.dir);
}
