//! TFTP wire format and the listen port: any datagram. Nothing panics; every packet that parses
//! is emitted back to the same packet (parse → emit → parse); a read request that is accepted
//! names a sanitised relative path (no `..`, no empty or absolute component, no NUL, no `\`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot_tftp::{handle_initial, sanitize, Initial, Packet};

fn check_path(p: &str) {
    assert!(!p.is_empty());
    assert!(!p.starts_with('/'), "absolute: {p:?}");
    assert!(!p.contains('\0') && !p.contains('\\'), "{p:?}");
    for c in p.split('/') {
        assert!(
            !c.is_empty() && c != "." && c != "..",
            "component {c:?} in {p:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::parse(data) {
        let bytes = p.to_bytes();
        assert_eq!(
            Packet::parse(&bytes).as_ref(),
            Ok(&p),
            "emit → parse differs"
        );
    }
    match handle_initial(data) {
        Initial::Read(req) => check_path(&req.path),
        Initial::Reply(bytes, _) => {
            assert!(matches!(Packet::parse(&bytes), Ok(Packet::Error { .. })));
        }
        Initial::Drop(_) => {}
    }
    if let Ok(p) = sanitize(data) {
        check_path(&p);
        // Sanitising is idempotent.
        assert_eq!(sanitize(p.as_bytes()).as_deref(), Ok(p.as_str()));
    }
});
