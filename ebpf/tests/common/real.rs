//! NVIDIA's real NCCL and CUDA runtime from their PyPI wheels, and the C
//! drivers of `tests/real/` that call them. Shared by `tests/real_libs.rs`
//! and the probe benchmark (`#[path]`-included).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::wheels::{self, Wheel};

fn real_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real").join(name)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// One NCCL release from a wheel: the library, its header, its driver.
pub struct RealNccl {
    pub version: String,
    pub lib: PathBuf,
    pub driver: PathBuf,
}

/// Fetches `package==version` (`nvidia-nccl-cu12`, `nvidia-nccl-cu13`) and
/// builds `tests/real/nccl_driver.c` against its `nccl.h` into `dir`.
/// `None` (after saying so) when the package registry is unreachable.
pub fn nccl(package: &str, version: &str, dir: &Path) -> Option<RealNccl> {
    let root = match wheels::fetch(package, version) {
        Wheel::Ready(d) => d,
        Wheel::Unreachable(why) => {
            wheels::skip(&format!("{package} {version}"), &why);
            return None;
        }
    };
    let lib = wheels::find(&root, "libnccl.so.2").unwrap_or_else(|| panic!("no libnccl.so.2 in {package} {version}"));
    let header = wheels::find(&root, "nccl.h").unwrap_or_else(|| panic!("no nccl.h in {package} {version}"));
    let include = header.parent().expect("nccl.h has a directory");
    let driver = dir.join(format!("nccl_driver-{version}"));
    run(Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-I"])
        .arg(real_src("stub"))
        .arg("-I")
        .arg(include)
        .arg("-o")
        .arg(&driver)
        .arg(real_src("nccl_driver.c"))
        .arg("-ldl"));
    Some(RealNccl { version: version.to_string(), lib, driver })
}

/// One CUDA runtime from a wheel and its driver.
pub struct RealCudart {
    pub version: String,
    pub lib: PathBuf,
    pub driver: PathBuf,
}

/// Fetches `package==version` (`nvidia-cuda-runtime-cu12`,
/// `nvidia-cuda-runtime`), finds `file` (`libcudart.so.12`) in it and builds
/// `tests/real/cudart_driver.c` into `dir`.
pub fn cudart(package: &str, version: &str, file: &str, dir: &Path) -> Option<RealCudart> {
    let root = match wheels::fetch(package, version) {
        Wheel::Ready(d) => d,
        Wheel::Unreachable(why) => {
            wheels::skip(&format!("{package} {version}"), &why);
            return None;
        }
    };
    let lib = wheels::find(&root, file).unwrap_or_else(|| panic!("no {file} in {package} {version}"));
    let driver = dir.join(format!("cudart_driver-{version}"));
    run(Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&driver)
        .arg(real_src("cudart_driver.c"))
        .arg("-ldl"));
    Some(RealCudart { version: version.to_string(), lib, driver })
}

/// NCCL's own commHash of `id_hex` for `version`, from the getHash of that
/// release's source (`tests/real/nccl_src/v<version>-1.h`), compiled here.
pub fn nccl_source_hash(version: &str, id_hex: &str, dir: &Path) -> u64 {
    let slice = real_src("nccl_src").join(format!("v{version}-1.h"));
    assert!(
        slice.exists(),
        "no NCCL source for {version}: add its tag to tests/real/nccl_src/extract.sh and run it ({})",
        slice.display()
    );
    let bin = dir.join(format!("nccl_hash-{version}"));
    if !bin.exists() {
        run(Command::new("c++")
            .args(["-O2", "-Wall", "-Werror"])
            .arg(format!("-DNCCL_SLICE=\"{}\"", slice.display()))
            .arg("-o")
            .arg(&bin)
            .arg(real_src("nccl_src/nccl_hash.cc")));
    }
    let out = Command::new(&bin).arg(id_hex).output().expect("nccl_hash");
    assert!(out.status.success(), "nccl_hash {version} failed");
    u64::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 16).expect("nccl_hash prints hex")
}

/// Runs a driver to its end; its stdout lines and whether it succeeded.
pub fn run_driver(driver: &Path, args: &[&std::ffi::OsStr]) -> Vec<String> {
    let out = Command::new(driver).args(args).output().unwrap_or_else(|e| panic!("{}: {e}", driver.display()));
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}{}",
        driver.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Nanoseconds per call from a driver's `bench` line.
pub fn bench_ns(lines: &[String]) -> f64 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("bench ").and_then(|l| l.split("ns_per_call=").nth(1)))
        .and_then(|v| v.trim().parse().ok())
        .expect("a bench line")
}
