//! Every cargo-fuzz target (fuzz/) runs for a bounded time from its seeds
//! and must find nothing: the collector's upload check, the Kineto importer
//! and its JSON splitter, the agent's wire decoder. Built with stable rustc:
//! without a sanitizer cargo-fuzz passes no unstable flag (libFuzzer's
//! coverage needs only LLVM's sancov pass; a panic is the finding). `STRAND_FUZZ_SECS` sets the time per target
//! (default 45). Skips, saying why, only where cargo-fuzz is not installed
//! (scripts/install-deps.sh --test installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use strand_schemas::{GpuSample, KernelEvent, NcclCall, Table, all_tables, to_parquet_bytes};

/// Every target. ingest_check meets the parquet crate's decoder panics on
/// corrupt page data within seconds; `strand_schemas::Batches` turns each
/// into an error for that file, so only a panic that escapes it fails here
/// (docs/fuzzing.md).
const TARGETS: &[&str] = &["ingest_check", "kineto_import", "json_split", "wire_decoder"];

/// cargo-fuzz builds with one codegen unit by default: the arrow and parquet
/// crates then optimise on one core. 16 halves the build on CI's 2 cores, for
/// slightly slower runs, which a bounded CI run can afford.
const CODEGEN_UNITS: &str = "16";

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// `cargo fuzz …` in fuzz/, on stable, without the outer cargo's settings.
fn cargo_fuzz() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("fuzz").current_dir(fuzz_dir());
    for var in ["CARGO_TARGET_DIR", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Valid uploads as ingest_check reads them: the table's index in
/// `all_tables()`, then a strand Parquet file of that table.
fn write_ingest_seeds(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let index = |name: &str| all_tables().iter().position(|t| t.name == name).unwrap() as u8;
    let seeds = [
        ("gpu_samples", to_parquet_bytes(&(0..20).map(GpuSample::example).collect::<Vec<_>>()).unwrap()),
        ("kernel_events", to_parquet_bytes(&(0..20).map(KernelEvent::example).collect::<Vec<_>>()).unwrap()),
        ("nccl_calls", to_parquet_bytes(&(0..5).map(NcclCall::example).collect::<Vec<_>>()).unwrap()),
    ];
    for (table, bytes) in seeds {
        let mut data = vec![index(table)];
        data.extend_from_slice(&bytes);
        std::fs::write(dir.join(table), data).unwrap();
    }
}

#[test]
fn fuzz_targets_find_nothing_in_bounded_runs() {
    match cargo_fuzz().arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => {
            eprintln!("SKIP: cargo-fuzz is not installed (scripts/install-deps.sh --test installs it)");
            return;
        }
    }
    let secs: u64 = std::env::var("STRAND_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(45);
    let seeds = Command::new("python3").arg("seeds.py").current_dir(fuzz_dir()).status().expect("python3 runs");
    assert!(seeds.success(), "fuzz/seeds.py failed");
    write_ingest_seeds(&fuzz_dir().join("corpus/ingest_check"));

    let build = cargo_fuzz()
        .args(["build", "--sanitizer", "none", "--codegen-units", CODEGEN_UNITS])
        .output()
        .expect("cargo fuzz runs");
    assert!(build.status.success(), "cargo fuzz build failed:\n{}", String::from_utf8_lossy(&build.stderr));

    let mut failed = Vec::new();
    for target in TARGETS {
        let out = cargo_fuzz()
            .args(["run", target, "--sanitizer", "none", "--codegen-units", CODEGEN_UNITS, "--"])
            .arg(format!("-max_total_time={secs}"))
            // A slow input is a finding (a hang), as is one over 2 GB.
            .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
            .output()
            .expect("cargo fuzz runs");
        let log = String::from_utf8_lossy(&out.stderr);
        let stats: Vec<&str> =
            log.lines().filter(|l| l.starts_with("stat::number_of_executed_units") || l.contains("DONE")).collect();
        eprintln!("{target}: {} {}", out.status, stats.join(" "));
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- {target} ---\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            failed.push(*target);
        }
    }
    assert!(failed.is_empty(), "fuzz targets found a crash, hang or leak (inputs under fuzz/artifacts/): {failed:?}");
}
