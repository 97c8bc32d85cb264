//! Code layout of the release `rackboot` binary.
//!
//! A process keeps resident every code page it ran, and the kernel maps the 64 KiB around each
//! page that faults in. Start-up and a boot storm run about 2 MiB of the binary's 10 MiB of
//! machine code, scattered over all of it, so about 6.6 MiB of code stayed resident. Linked
//! with `link/hot-functions.txt` (the functions a boot storm runs, listed by `make
//! hot-functions`), lld places those functions first and together.
//!
//! Only for release builds for x86_64 Linux (glibc), and only if the linker this build uses
//! takes lld's `--symbol-ordering-file`: a one-line program is linked with it first (rustup's
//! rustc 1.90 and later link with lld there; GNU ld, and distributions' rustc that use it, do
//! not take the option). `RACKBOOT_LINK_ORDER=0` turns it off. A function the file names that
//! the binary no longer has is skipped; one the file does not name is placed as without it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const HOT: &str = "link/hot-functions.txt";

fn main() {
    println!("cargo:rerun-if-changed={HOT}");
    println!("cargo:rerun-if-env-changed=RACKBOOT_LINK_ORDER");
    if env::var("RACKBOOT_LINK_ORDER").as_deref() == Ok("0")
        || env::var("PROFILE").as_deref() != Ok("release")
        || env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
    {
        return;
    }
    let file = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(HOT);
    if !file.is_file() {
        println!(
            "cargo:warning={} is missing: default code layout",
            file.display()
        );
        return;
    }
    let args = [
        format!("-Wl,--symbol-ordering-file={}", file.display()),
        "-Wl,--no-warn-symbol-ordering".to_string(),
    ];
    if let Err(why) = probe(&args) {
        println!("cargo:warning=default code layout: the linker does not take lld's --symbol-ordering-file ({why})");
        return;
    }
    for a in args {
        println!("cargo:rustc-link-arg-bin=rackboot={a}");
    }
}

/// Link a one-line program with `link_args`, with this build's rustc, target, flags and linker.
fn probe(link_args: &[String]) -> Result<(), String> {
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let src = out.join("layout_probe.rs");
    std::fs::write(&src, "fn main() {}\n").map_err(|e| e.to_string())?;
    let mut cmd = Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()));
    cmd.arg("--crate-type=bin")
        .arg("--target")
        .arg(env::var("TARGET").unwrap_or_default())
        .arg("-o")
        .arg(out.join("layout_probe"))
        .arg(&src);
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    cmd.args(flags.split('\u{1f}').filter(|f| !f.is_empty()));
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        cmd.arg("-C").arg(format!("linker={linker}"));
    }
    for a in link_args {
        cmd.arg("-C").arg(format!("link-arg={a}"));
    }
    let done = cmd.output().map_err(|e| e.to_string())?;
    if done.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&done.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("unrecognized") || l.contains("unknown"))
        .or_else(|| err.lines().find(|l| l.starts_with("error")))
        .unwrap_or("the probe did not link");
    Err(line.trim().chars().take(200).collect())
}
