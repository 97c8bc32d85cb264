//! Path sanitising.

use crate::{sanitize, PathError};

#[test]
fn backslashes_become_slashes() {
    assert_eq!(
        sanitize("\\pxelinux.cfg\\default").as_deref(),
        Ok("pxelinux.cfg/default")
    );
    assert_eq!(sanitize("a\\b/c").as_deref(), Ok("a/b/c"));
}

#[test]
fn leading_slash_is_relative_to_root() {
    assert_eq!(sanitize("/ipxe.efi").as_deref(), Ok("ipxe.efi"));
    assert_eq!(sanitize("///boot//x").as_deref(), Ok("boot/x"));
}

#[test]
fn dot_and_empty_components_collapse() {
    assert_eq!(sanitize("./a/./b//c/.").as_deref(), Ok("a/b/c"));
    assert_eq!(sanitize("a/").as_deref(), Ok("a"));
}

#[test]
fn parent_components_are_refused() {
    for bad in [
        "../etc/passwd",
        "/../x",
        "a/../../b",
        "a/..",
        "..",
        "..\\windows",
        "a\\..\\b",
    ] {
        assert_eq!(sanitize(bad), Err(PathError::ParentComponent), "{bad:?}");
    }
    // Dots inside a name are fine.
    assert_eq!(sanitize("a..b/...").as_deref(), Ok("a..b/..."));
}

#[test]
fn control_characters_are_refused() {
    for bad in [&b"a\0b"[..], b"\x01x", b"x\x1f", b"x\x7f", b"a\nb", b"\t"] {
        assert_eq!(sanitize(bad), Err(PathError::ControlCharacter), "{bad:?}");
    }
}

#[test]
fn empty_names_are_refused() {
    for bad in ["", "/", "./", "//.//", "\\"] {
        assert_eq!(sanitize(bad), Err(PathError::Empty), "{bad:?}");
    }
}

#[test]
fn over_long_names_are_refused_after_normalisation() {
    let ok = "a".repeat(255);
    assert_eq!(sanitize(&ok).as_deref(), Ok(ok.as_str()));
    assert_eq!(sanitize("a".repeat(256)), Err(PathError::TooLong));
    // Long before normalisation but short after: fine.
    let padded = format!("{}x", "./".repeat(200));
    assert_eq!(sanitize(padded).as_deref(), Ok("x"));
}

#[test]
fn non_utf8_is_refused_and_utf8_kept() {
    assert_eq!(sanitize(b"\xff\xfe"), Err(PathError::NotUtf8));
    assert_eq!(sanitize("bôot/ïmg").as_deref(), Ok("bôot/ïmg"));
}

#[test]
fn path_errors_display() {
    for e in [
        PathError::Empty,
        PathError::TooLong,
        PathError::ParentComponent,
        PathError::ControlCharacter,
        PathError::NotUtf8,
    ] {
        assert!(!e.to_string().is_empty());
    }
}
