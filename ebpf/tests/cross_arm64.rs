//! strand-ebpf builds for arm64 (Grace Hopper hosts): `cargo check
//! --target aarch64-unknown-linux-gnu -p strand-ebpf`, which compiles the BPF
//! programs for arm64's argument passing and libbpf with the cross compiler.
//!
//! Needs what `scripts/install-deps.sh --test` installs: Debian's
//! gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, linux-libc-dev-arm64-cross,
//! and the Rust standard library for the target (`rustup target add`).
//! Its own target directory (`target/aarch64-check`) keeps it from
//! invalidating the host build; the first run takes a few minutes.

use std::path::PathBuf;
use std::process::Command;

const TARGET: &str = "aarch64-unknown-linux-gnu";

#[test]
fn the_crate_and_its_bpf_programs_build_for_arm64() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc).args(["--print", "sysroot"]).output().expect("rustc --print sysroot");
    let lib = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim()).join("lib/rustlib").join(TARGET);
    assert!(
        lib.is_dir(),
        "no Rust standard library for {TARGET} ({}): run scripts/install-deps.sh --test",
        lib.display()
    );
    let gcc = Command::new("aarch64-linux-gnu-gcc").arg("--version").output();
    assert!(
        gcc.is_ok_and(|o| o.status.success()),
        "no aarch64-linux-gnu-gcc (Debian's gcc-aarch64-linux-gnu): run scripts/install-deps.sh --test"
    );

    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target"))
        .join("aarch64-check");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["check", "--target", TARGET, "-p", "strand-ebpf", "--target-dir"])
        .arg(&target_dir)
        .current_dir(&manifest)
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "aarch64-linux-gnu-gcc")
        .env("CC_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-gcc")
        .output()
        .expect("running cargo check");
    assert!(out.status.success(), "cargo check --target {TARGET} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    // The BPF object of the arm64 build is in its skeleton.
    let skel = std::fs::read_dir(target_dir.join(TARGET).join("debug/build"))
        .expect("build dir")
        .filter_map(Result::ok)
        .map(|e| e.path().join("out/strand.skel.rs"))
        .find(|p| p.exists())
        .expect("an arm64 skeleton");
    assert!(std::fs::metadata(&skel).expect("skeleton").len() > 10_000, "{}", skel.display());
}
