//! Link settings of `strand` on x86-64 Linux; both only shape how the binary
//! is laid out and loaded, never what it does.
//!
//! Position-dependent: the binary carries DataFusion and Arrow, whose vtables
//! and static tables make ~240,000 relative relocations in a PIE: the loader
//! reads 5.7 MB of relocation records and dirties 4 MB of relocated data at
//! every start. Measured on `strand postmortem` of a small Kineto trace
//! (docs/performance.md): 10.9 ms → 3.7 ms wall and 20.6 → 13.5 MiB peak RSS.
//! The cost is ASLR of the main image (libraries, heap and stack stay
//! randomized), as in Go's default builds of dcgm-exporter and Prometheus.
//! `strand-agent` stays PIE. `STRAND_PIE=1` keeps a PIE.
//!
//! Hot text (release builds): the functions listed in `hot-text.txt` (those
//! `postmortem` and `import` run, found by `scripts/hot-text.sh`) go into one
//! output section ahead of `.text`. Scattered over ~95 MB of code they made
//! ~7 MiB resident (the kernel maps 64 KiB around each page fault); together,
//! ~1 MiB: peak RSS of a small postmortem 11.7 → 5.7 MiB. Names missing from
//! the binary (a stale list) match nothing, and those functions stay where
//! they were. `STRAND_HOT_TEXT=0` leaves the layout alone (as does linking
//! with mold, which takes no linker scripts).

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=STRAND_PIE");
    println!("cargo:rerun-if-env-changed=STRAND_HOT_TEXT");
    println!("cargo:rerun-if-changed=hot-text.txt");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let linux_x86_64 = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    if !linux_x86_64 {
        return;
    }
    if std::env::var_os("STRAND_PIE").is_none() {
        println!("cargo:rustc-link-arg-bin=strand=-no-pie");
    }
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    // mold takes no linker scripts.
    let mold = std::env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("mold"));
    if release
        && !mold
        && std::env::var("STRAND_HOT_TEXT").as_deref() != Ok("0")
        && let Some(script) = hot_text_script()
    {
        println!("cargo:rustc-link-arg-bin=strand=-Wl,-T,{}", script.display());
    }
}

/// Writes the linker script fragment (GNU ld and lld both take `INSERT`).
fn hot_text_script() -> Option<PathBuf> {
    let list = std::fs::read_to_string("hot-text.txt").ok()?;
    let mut script = String::from("SECTIONS\n{\n  .text.strand_hot :\n  {\n");
    for name in list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        // Symbol characters only (and the list's `.llvm.*`): anything else
        // would be read as script syntax.
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'.' | b'*')) {
            println!("cargo:warning=hot-text.txt: skipping {name:?} (not a symbol name)");
            continue;
        }
        // `#[cold]` functions are in `.text.unlikely.<name>`.
        let _ = writeln!(script, "    *(.text.{name} .text.unlikely.{name})");
    }
    script.push_str("  }\n}\nINSERT BEFORE .text;\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR")?).join("hot-text.ld");
    std::fs::write(&out, script).ok()?;
    Some(out)
}
