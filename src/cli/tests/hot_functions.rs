//! The list the release link orders code by (`link/hot-functions.txt`, see `build.rs`): lld
//! reads one symbol name per line, and a name it does not know is skipped without a word, so a
//! damaged list would silently undo the layout.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

fn list() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/link/hot-functions.txt");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn one_plain_symbol_name_per_line_without_repeats() {
    let text = list();
    let mut seen = HashSet::new();
    for (i, name) in text.lines().enumerate() {
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.$".contains(c))
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "line {}: {name:?} is not a symbol name",
            i + 1
        );
        assert!(seen.insert(name), "line {}: {name} again", i + 1);
    }
    assert!(text.ends_with('\n'));
}

#[test]
fn the_boot_path_is_listed() {
    let text = list();
    assert!(
        text.lines().count() > 500,
        "too few functions for start-up and a storm"
    );
    // Mangled paths: each service's shell and its sans-IO core.
    for part in [
        "8rackboot",
        "15rackboot_server4dhcp",
        "15rackboot_server4tftp",
        "15rackboot_server9boot_http",
        "13rackboot_tftp",
        "13rackboot_dhcp",
        "13rackboot_ipxe",
        "14rackboot_store",
    ] {
        assert!(text.contains(part), "no function of {part} is listed");
    }
}
