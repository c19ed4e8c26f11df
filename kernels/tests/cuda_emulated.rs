//! Runs the CUDA kernels themselves without a GPU: `cuda_emu/emu.h` stands in
//! for the CUDA built-ins (a thread per CUDA thread, barriers for
//! `__syncthreads` and warp shuffles), and `cuda_emu/check_kernels.cpp` checks
//! every kernel of `src/gpu/kernels.cu` against a plain reference on random
//! inputs, and the device bucketing against `LogBuckets::bucket`.
//!
//! Needs a C++20 compiler (`$CXX`, else `c++`); skips, saying so, without one.
//! It checks kernel logic only: not the GPU memory model, not cudarc, not speed.

use std::path::{Path, PathBuf};
use std::process::Command;
use strand_kernels::LogBuckets;

fn bucket_table(path: &Path) {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut lines = String::new();
    for sub in [0u32, 1, 4, 7, 8] {
        let b = LogBuckets::new(sub).unwrap();
        let mut vals = vec![i64::MIN, -1, 0, 1, 2, 3, 15, 16, 17, 255, 256, 257, i64::MAX, i64::MAX - 1, 1 << 62];
        vals.extend((0..200).map(|_| rng.i64(..)));
        for _ in 0..200 {
            let bits = rng.u32(1..63);
            vals.push(rng.i64(0..1 << bits));
        }
        for v in vals {
            lines.push_str(&format!("{sub} {v} {}\n", b.bucket(v)));
        }
    }
    std::fs::write(path, lines).unwrap();
}

#[test]
fn every_kernel_matches_its_reference_on_the_cpu_stand_in() {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cuda_emu");
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cuda_emu/check_kernels.cpp");
    let exe = dir.join("check_kernels");
    let built = Command::new(&cxx).args(["-std=c++20", "-O1", "-pthread", "-o"]).arg(&exe).arg(&src).output();
    match built {
        Err(e) => {
            eprintln!("skipped: no C++ compiler ({cxx}: {e})");
            return;
        }
        Ok(o) if !o.status.success() => {
            let err = String::from_utf8_lossy(&o.stderr);
            // An old compiler without <barrier> is a skip; an error in our code is a failure.
            if err.contains("barrier: No such file") || err.contains("unrecognized command-line option '-std=c++20'") {
                eprintln!("skipped: {cxx} has no C++20 support");
                return;
            }
            panic!("building the kernel checks failed:\n{err}");
        }
        Ok(_) => {}
    }
    let table = dir.join("buckets.txt");
    bucket_table(&table);
    let seed = fastrand::u64(..).to_string();
    let run = Command::new(&exe).arg(&table).arg(&seed).output().unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    eprintln!("{out}");
    assert!(run.status.success(), "kernel checks failed (seed {seed}):\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(out.contains("all kernels match their references"));
}
