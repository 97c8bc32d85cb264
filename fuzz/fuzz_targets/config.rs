//! `rackboot.toml` / `check-config`: any text. Nothing panics; every problem names a line inside
//! the file; a file that parses survives serialise → parse unchanged; validation of what parsed
//! agrees with `check_source`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot_config::{check_source, parse_source, Config};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count().max(1);
    let problems = check_source(text);
    for p in &problems {
        if let Some(l) = p.line {
            assert!(
                l >= 1 && l <= lines + 1,
                "problem on line {l} of {lines}: {p}"
            );
        }
        assert!(!p.key.is_empty(), "problem without a key: {p:?}");
    }
    if let Ok(raw) = parse_source(text) {
        let valid = Config::try_from(&raw).is_ok();
        assert_eq!(
            valid,
            problems.is_empty(),
            "check_source disagrees: {problems:?}"
        );
        if let Ok(again) = toml::to_string(&raw) {
            let back =
                parse_source(&again).unwrap_or_else(|p| panic!("re-parse of {again:?}: {p:?}"));
            assert_eq!(back, raw, "serialise → parse changed the config");
        }
    }
});
