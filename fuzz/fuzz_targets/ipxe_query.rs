//! `GET /ipxe/boot.ipxe?<query>`: any query string a machine on the segment sends. Nothing
//! panics; accepted values have their closed shapes; and the query is inert in every script:
//! rendering any boot mode with the machine's uuid/mac gives, after putting canonical values
//! back in their place, byte for byte the script rendered for a canonical query. So no query can
//! add a line, a command, a separator or a comment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot_ipxe::{render, BootMode, BootQuery, DiskMethod, RenderCtx};

const UUID0: &str = "11111111-2222-3333-4444-555555555555";
const MAC0: &str = "52:54:00:00:00:01";

fn modes() -> Vec<BootMode> {
    vec![
        BootMode::Agent {
            kernel: "agent/vmlinuz".into(),
            initrds: vec!["agent/initramfs.cpio.gz".into()],
            cmdline: "console=ttyS0 quiet".into(),
        },
        BootMode::Profile {
            kernel: "http://mirror.example/k/vmlinuz".into(),
            initrds: vec!["images/initrd.img".into()],
            cmdline:
                "root=/dev/sda1 uuid=${uuid} mac=${mac} m=${machine} a=${appliance} ip=${net0/ip}"
                    .into(),
        },
        BootMode::Chain {
            url: "http://10.99.0.1:8080/next.ipxe".into(),
        },
        BootMode::Disk {
            method: DiskMethod::Exit,
        },
        BootMode::Disk {
            method: DiskMethod::Sanboot,
        },
        BootMode::Disk {
            method: DiskMethod::NotFound,
        },
        BootMode::Cordoned {
            reason: "bad disk".into(),
        },
        BootMode::Script("#!ipxe\necho hello\n".into()),
    ]
}

fn ctx(uuid: &str, mac: Option<&str>, arch: Option<rackboot_ipxe::Arch>) -> RenderCtx {
    RenderCtx {
        appliance: "10.99.0.1:50042".into(),
        machine_id: uuid.into(),
        uuid: uuid.into(),
        mac: mac.map(str::to_string),
        arch,
    }
}

fn shaped(s: &str, sep: u8, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b == sep || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(query) = BootQuery::parse(q) else {
        return;
    };
    assert!(shaped(&query.uuid, b'-', 36), "uuid {:?}", query.uuid);
    if let Some(mac) = &query.mac {
        assert!(shaped(mac, b':', 17), "mac {mac:?}");
    }
    let mac0 = query.mac.as_ref().map(|_| MAC0);
    for mode in modes() {
        let got = render(&mode, &ctx(&query.uuid, query.mac.as_deref(), query.arch));
        let want = render(&mode, &ctx(UUID0, mac0, query.arch));
        let got = got.map(|r| format!("{r:?}").replace(&query.uuid, UUID0));
        let got = match (&query.mac, got) {
            (Some(mac), Ok(s)) => Ok(s.replace(mac.as_str(), MAC0)),
            (_, other) => other,
        };
        let want = want.map(|r| format!("{r:?}"));
        assert_eq!(got, want, "the query changed the script beyond its values");
    }
});
