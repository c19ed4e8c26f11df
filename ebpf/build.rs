//! Compiles the BPF C programs in `src/bpf/` with clang and generates their
//! libbpf-rs skeletons into `OUT_DIR` (the bpftop / scx layout).

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const PROGRAMS: &[&str] = &["strand"];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for name in PROGRAMS {
        let src = format!("src/bpf/{name}.bpf.c");
        SkeletonBuilder::new()
            .source(&src)
            // Debian puts asm/types.h under the multiarch directory.
            // -mcpu=v3: atomic fetch-and-add (kernel 5.12+) for sequence numbers and ids.
            .clang_args(["-I/usr/include/x86_64-linux-gnu", "-mcpu=v3", "-Wall", "-Werror"])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {src}: {e:#}"));
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-changed=src/bpf/strand.h");
}
