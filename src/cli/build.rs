//! Code layout of the release `rackboot` binary.
//!
//! A process keeps resident every code page it ran, and the kernel maps the 64 KiB around each
//! page that faults in. Start-up and a boot storm run about 2 MiB of the binary's 10 MiB of
//! machine code, scattered over all of it, so about 6.6 MiB of code stayed resident. Linked
//! with `link/hot-functions.txt` (the functions a boot storm runs, listed by `make
//! hot-functions`), lld places those functions first and together.
//!
//! Only for release builds on x86_64 Linux with rustc 1.90 or later (its default linker there
//! is lld; the option is lld's), and not when the build chooses its own linker.
//! `RACKBOOT_LINK_ORDER=0` turns it off. A function the file names that the binary no longer
//! has is skipped; one the file does not name is placed as without the file.

use std::env;
use std::path::Path;
use std::process::Command;

const HOT: &str = "link/hot-functions.txt";

fn main() {
    println!("cargo:rerun-if-changed={HOT}");
    println!("cargo:rerun-if-env-changed=RACKBOOT_LINK_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    if skip().is_some() {
        return;
    }
    let dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let file = Path::new(&dir).join(HOT);
    if !file.is_file() {
        println!(
            "cargo:warning={} is missing: default code layout",
            file.display()
        );
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=rackboot=-Wl,--symbol-ordering-file={}",
        file.display()
    );
    println!("cargo:rustc-link-arg-bin=rackboot=-Wl,--no-warn-symbol-ordering");
}

/// Why the default layout is kept, if it is.
fn skip() -> Option<&'static str> {
    if env::var("RACKBOOT_LINK_ORDER").as_deref() == Ok("0") {
        return Some("RACKBOOT_LINK_ORDER=0");
    }
    if env::var("PROFILE").as_deref() != Ok("release") {
        return Some("not a release build");
    }
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return Some("not x86_64 Linux (glibc)");
    }
    if env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        || env::var("CARGO_ENCODED_RUSTFLAGS")
            .unwrap_or_default()
            .split('\u{1f}')
            .any(|f| f.contains("linker") || f.contains("fuse-ld"))
    {
        return Some("the build chooses its linker");
    }
    if rustc_minor().is_none_or(|m| m < 90) {
        return Some("rustc before 1.90 links with the system linker");
    }
    None
}

/// The minor version of the rustc that builds this crate (`rustc 1.95.0 (...)` → 95).
fn rustc_minor() -> Option<u32> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    version.split('.').nth(1)?.parse().ok()
}
