//! Link the binaries so that they weigh less in memory at start, on x86-64 GNU/Linux.
//!
//! - **Packed relative relocations (DT_RELR).** A position-independent Rust binary of this size
//!   carries 1.9 MB of `R_X86_64_RELATIVE` entries, which the dynamic loader reads at every
//!   start. Packed, the table is 28 KB, and `argo-drift diff` on one object peaks 1.4–1.9 MB lower
//!   (14.9 -> 13.5 MB under `/usr/bin/time -f %M`; 27.6 -> 25.4 MB on the 2,000-pair corpus). The
//!   1.8 MB of `.data.rel.ro` is still rewritten at start, as PIE needs; the binary stays
//!   position-independent (ASLR is kept). Needs binutils ≥ 2.38 or LLD to link (Debian 12's
//!   binutils is 2.40) and glibc ≥ 2.36 to run (Debian 12's, and the distroless cc-debian12 image
//!   the Dockerfile uses).
//! - **The code `diff` runs, placed together** (`link-order.txt`, made by
//!   `scripts/link-order.sh`). The kernel maps a program's code 64 KiB around each page it first
//!   runs, and counts every mapped page in the process's RSS. Placed by the compiler, the 0.9 MB
//!   of functions a `diff` run calls are spread over 20 MB of code, and a run mapped 5 MB of it;
//!   placed first, in the order file's order, they are mapped once. On the 2,000-pair corpus
//!   `diff` peaked at 16.3 MiB rather than 21.5 (kubectl form; 15.5 rather than 21.0 for JSON
//!   documents; 8.4 rather than 13.4 on empty input; `scripts/diff-ab.py`), in the same time.
//!   The functions the live controller calls follow (`scripts/link-order.sh --controller`): at
//!   10,000 objects its RSS after the live benchmark's writes was 53.6 MiB rather than 60.8.
//!   The names are those of one toolchain, `Cargo.lock` and features: the release profile builds
//!   the crates on the path in one code unit each (see Cargo.toml), so that they do not depend
//!   on the directory built in. Only LLD (the default linker of Rust ≥ 1.90 on x86-64 Linux)
//!   reads a symbol order file: with another linker, or a linker chosen by configuration, the
//!   file is not passed and the functions stay where the compiler put them. Names the binary no
//!   longer has are skipped; `scripts/link-order.sh` writes the file again.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let order =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("link-order.txt");
    let Some(rustc) = rust_lld_rustc() else {
        return;
    };
    let Ok(listed) = std::fs::read_to_string(&order) else {
        return;
    };
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    // The names are those of one toolchain: with another, few match, and the order is lost.
    let written_with = listed.lines().next().unwrap_or_default();
    if written_with.strip_prefix("# ") != Some(rustc.trim()) {
        println!(
            "cargo:warning=controller/link-order.txt was written with {}, this is {}: run scripts/link-order.sh (argo-drift diff weighs about 5 MiB more until then)",
            written_with.trim_start_matches("# "),
            rustc.trim()
        );
    }
}

/// The compiler's `--version` line when the binaries are linked by the LLD that Rust ships: the
/// default for x86_64-unknown-linux-gnu from Rust 1.90, unless a linker or linker flavour is
/// configured. `None` otherwise.
fn rust_lld_rustc() -> Option<String> {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" || std::env::var_os("RUSTC_LINKER").is_some() {
        return None;
    }
    // `-C linker=…`, `-C linker-flavor=…`, `-C linker-features=…`, `-C link-arg=-fuse-ld=…`.
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker") || flags.contains("fuse-ld") {
        return None;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()?;
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut numbers = version
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    ((major, minor) >= (1, 90)).then_some(version)
}
