//! Links `strand` as a position-dependent executable on x86-64 Linux.
//!
//! The binary carries DataFusion and Arrow, whose vtables and static tables
//! make ~240,000 relative relocations in a PIE: the loader reads 5.7 MB of
//! relocation records and dirties 4 MB of relocated data at every start.
//! Measured on `strand postmortem` of a small Kineto trace (docs/performance.md):
//! 10.9 ms → 3.7 ms wall and 20.6 → 13.5 MiB peak RSS. The cost is ASLR of the
//! main image (libraries, heap and stack stay randomized), as in Go's default
//! builds of dcgm-exporter and Prometheus. `strand-agent` stays PIE.

fn main() {
    let linux_x86_64 = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    if linux_x86_64 && std::env::var_os("STRAND_PIE").is_none() {
        println!("cargo:rustc-link-arg-bin=strand=-no-pie");
    }
    println!("cargo:rerun-if-env-changed=STRAND_PIE");
}
