//! Compiles the BPF C programs in `src/bpf/` with clang and generates their
//! libbpf-rs skeletons into `OUT_DIR` (the bpftop / scx layout), for the
//! architecture cargo builds for: the programs read function arguments the
//! way that architecture passes them.

use std::env;
use std::path::{Path, PathBuf};

use libbpf_cargo::SkeletonBuilder;

const PROGRAMS: &[&str] = &["strand"];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    // __TARGET_ARCH_* for bpf_tracing.h, and the Debian multiarch triple.
    let (bpf_arch, triple, debian) = match arch.as_str() {
        "x86_64" => ("x86", "x86_64-linux-gnu", "amd64"),
        "aarch64" => ("arm64", "aarch64-linux-gnu", "arm64"),
        other => panic!("strand-ebpf's BPF programs read the arguments of x86_64 and aarch64 only, not {other}"),
    };
    // The kernel's asm/types.h for that architecture: /usr/include/<triple>
    // (linux-libc-dev of the host, or :<arch>), or /usr/<triple>/include
    // (Debian's cross package linux-libc-dev-<arch>-cross).
    let candidates = [format!("/usr/include/{triple}"), format!("/usr/{triple}/include")];
    let include = candidates.iter().find(|d| Path::new(d).join("asm/types.h").exists()).unwrap_or_else(|| {
        panic!(
            "no asm/types.h for {arch} in {}: install linux-libc-dev (building on {arch}) or \
             linux-libc-dev-{debian}-cross (cross-building)",
            candidates.join(" or ")
        )
    });
    for name in PROGRAMS {
        let src = format!("src/bpf/{name}.bpf.c");
        SkeletonBuilder::new()
            .source(&src)
            // -mcpu=v3: atomic fetch-and-add (kernel 5.12+) for sequence numbers and ids.
            .clang_args([
                format!("-I{include}"),
                format!("-D__TARGET_ARCH_{bpf_arch}"),
                "-mcpu=v3".into(),
                "-Wall".into(),
                "-Werror".into(),
            ])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {src}: {e:#}"));
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-changed=src/bpf/strand.h");
}
