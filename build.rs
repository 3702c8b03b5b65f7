//! Link options for release builds of the `toolq` binary, which cut a
//! worker's resident memory by more than a third without changing its code.
//!
//! - `link/hot-text.txt` lists the functions a worker runs, hottest first
//!   (`scripts/hot-text.sh` records them). The linker puts them together at
//!   the front of `.text`. Otherwise the 2.5 MB of code a worker runs is
//!   spread over the binary's 18 MB, and the kernel maps the 64 KB around
//!   every page it faults in, so most of the binary becomes resident.
//! - `-z pack-relative-relocs` stores the binary's relocations in 22 KB
//!   instead of 1.3 MB, which the loader reads in full at every start. The
//!   binary then needs glibc 2.36 or later, so it is only used when the
//!   build host has that glibc (a native build links against it anyway).
//!
//! Both options are passed only to a linker known to take them: the LLD that
//! rustc 1.90 and later link x86_64 Linux binaries with, when the build
//! names no linker of its own. Any other build links as before.
//!
//! The list is recorded from `cargo build-static` (`.cargo/config.toml`),
//! the build with glibc linked in: `--target` gives its functions other
//! names than a plain `cargo build --release`, and the list holds glibc's
//! functions too. So only a static build is laid out by it; any other
//! release build says so and links unordered.

use std::env;
use std::path::Path;
use std::process::Command;

const HOT_TEXT: &str = "link/hot-text.txt";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={HOT_TEXT}");
    if !links_with_rustc_lld() {
        return;
    }
    if host_glibc_at_least(2, 36) {
        link_arg("-z,pack-relative-relocs");
    }
    if !var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static")
    {
        println!(
            "cargo:warning={HOT_TEXT} lists the functions of `cargo build-static`, not of this \
             build, so this binary's code is not laid out and a worker keeps about 6 MB more \
             of it resident; build with `cargo build-static` for the binary a fleet runs"
        );
        return;
    }
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join(HOT_TEXT);
    if let Ok(text) = std::fs::read_to_string(&order) {
        // A listed function the binary no longer has is skipped in silence:
        // the list only orders, it never adds or removes code.
        link_arg(&format!("--symbol-ordering-file={}", order.display()));
        link_arg("--no-warn-symbol-ordering");
        warn_if_stale(&text);
    }
}

fn var(name: &str) -> String {
    env::var(name).unwrap_or_default()
}

fn link_arg(arg: &str) {
    println!("cargo:rustc-link-arg-bin=toolq=-Wl,{arg}");
}

/// A release build for x86_64 Linux, on that host, by a rustc that links
/// with its own LLD, and no linker named by the build.
fn links_with_rustc_lld() -> bool {
    let target = var("TARGET");
    if var("PROFILE") != "release"
        || target != "x86_64-unknown-linux-gnu"
        || var("HOST") != target
        || env::var_os("RUSTC_LINKER").is_some()
    {
        return false;
    }
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    if flags.contains("linker")
        || flags.contains("fuse-ld")
        || flags.contains("link-self-contained")
    {
        return false;
    }
    rustc_version().is_some_and(|(major, minor)| (major, minor) >= (1, 90))
}

/// `rustc 1.95.0 (59807616e 2026-04-14)` → (1, 95).
fn rustc_version() -> Option<(u32, u32)> {
    let line = rustc_line()?;
    let version = line.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn rustc_line() -> Option<String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("-V").output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `getconf GNU_LIBC_VERSION` prints `glibc 2.36`; no glibc, no answer.
fn host_glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

/// Symbol names carry a hash of the compiler (and of every dependency's
/// version), so another rustc renames the listed functions and the list
/// stops ordering them: the binary works as before and takes more memory.
/// Say so. (A `Cargo.lock` the list was not recorded for fails
/// `ops/check.sh` instead, where CI sees it.)
fn warn_if_stale(text: &str) {
    let recorded = text
        .lines()
        .find_map(|l| l.strip_prefix("# rustc:"))
        .map(str::trim);
    let rustc = rustc_line().unwrap_or_default();
    if recorded != Some(rustc.as_str()) {
        println!(
            "cargo:warning={HOT_TEXT} was recorded with {}, not {rustc}, so it orders few of \
             this build's functions and a worker takes more memory; record it again with \
             `bash scripts/hot-text.sh`",
            recorded.unwrap_or("an unknown rustc")
        );
    }
}
