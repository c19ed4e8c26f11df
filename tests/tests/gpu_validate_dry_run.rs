//! The dry run of the GPU validation (issue 19, docs/gpu-validation.md): on a
//! machine without a GPU, `bench/gpu/validate.sh --dry-run` runs every check's
//! CPU-side setup with the binaries `cargo test` built, checks what a device
//! call would carry, and says per check what it needs. A broken script, a
//! missing binary, or a GPU test reported "ok" without a GPU fails here, in
//! CI, instead of during the few minutes a GPU is lent.
//!
//! The folder is made by `bench/gpu/pack.sh --link-from <cargo's profile dir>`:
//! links to the debug binaries, which never travel. Its size is therefore not
//! the carried size: the dry run checks the working tree plus the room kept for
//! the release pack (`PACK_RESERVE` in bench/gpu/common.py) against the 64 MiB
//! limit; `bench/gpu/pack.sh` measures the release folder itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use strand_tests::*;

const CHECKS: [&str; 6] = ["nvml", "cupti", "nccl", "mfu", "reductions", "agent_cost"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a script to completion (at most `timeout`); returns (success, stdout and stderr).
fn run(cmd: &mut Command, name: &str, dir: &Path, timeout: Duration) -> (bool, String) {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let err = file.try_clone().expect("log file");
    let mut p = Proc::spawn(cmd.stdout(Stdio::from(file)).stderr(Stdio::from(err)), name);
    let status = p.wait(timeout);
    (status.success(), std::fs::read_to_string(&log).unwrap_or_default())
}

/// The folder of binaries, linked from where cargo put this test's siblings.
fn pack(dir: &Path) -> PathBuf {
    let profile_dir = bin("strand-agent").parent().expect("profile dir").to_path_buf();
    let pack = dir.join("pack");
    let (ok, out) = run(
        Command::new("bash")
            .arg(root().join("bench/gpu/pack.sh"))
            .arg("--link-from")
            .arg(&profile_dir)
            .arg("--out")
            .arg(&pack),
        "pack",
        dir,
        Duration::from_secs(60),
    );
    assert!(
        ok,
        "pack.sh --link-from failed (run `cargo test --workspace`, which builds every binary it links):\n{out}"
    );
    assert!(out.contains("profile debug"), "{out}");
    pack
}

fn validate(pack: &Path, dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("bench/gpu/validate.sh"))
        .arg("--dry-run")
        .arg("--bin")
        .arg(pack)
        .args(args)
        .env("OUT", dir.join(format!("{name}-out")))
        .env("WORK", dir.join(format!("{name}-work")))
        .env("STRAND_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd, name, dir, Duration::from_secs(180))
}

#[test]
fn the_dry_run_sets_up_every_check_and_says_what_each_needs() {
    let dir = tempfile::tempdir().unwrap();
    let pack = pack(dir.path());
    let (ok, out) = validate(&pack, dir.path(), "dry", &[], &[]);
    assert!(ok, "validate.sh --dry-run failed:\n{out}");

    // One line per check: its setup worked, and what it needs.
    for c in CHECKS {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{c}: dry run: ")))
            .unwrap_or_else(|| panic!("no line for {c}:\n{out}"));
        assert!(line.contains("setup ok; needs ") && line.contains("GPU"), "{line}");
    }
    // The size of what travels, and the binaries it found.
    let carry = out.lines().find(|l| l.starts_with("carry: ")).unwrap_or_else(|| panic!("no carry line:\n{out}"));
    assert!(carry.contains("working tree") && carry.ends_with("fits"), "{carry}");
    assert!(out.contains("binary strand-agent: ") && out.contains("binary gpu_equals_cpu: "), "{out}");
    // Each setup's own log: the hash checker agrees with NCCL's known answers;
    // the GPU test is reported ignored with its reason; wrap points at the pack.
    let log = |c: &str| std::fs::read_to_string(dir.path().join(format!("dry-work/dry-{c}.log"))).unwrap_or_default();
    assert!(log("nccl").contains("check_nccl self-test: ok"), "{}", log("nccl"));
    assert!(log("reductions").contains("ignored, needs a GPU"), "{}", log("reductions"));
    assert!(log("cupti").contains("InitializeInjection exported"), "{}", log("cupti"));

    // The report has every check, none claiming a GPU result; the MFU analysis ran
    // whole against an agent simulating its GPU, and passed.
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("dry-out/results.json")).unwrap()).unwrap();
    let checks = doc["checks"].as_array().unwrap();
    assert_eq!(checks.len(), CHECKS.len());
    for c in checks {
        let want = if c["check"] == "mfu" { "dry run: pass against a simulated GPU" } else { "not run (dry run)" };
        assert_eq!(c["status"], want, "{c}");
    }
    let md = std::fs::read_to_string(dir.path().join("dry-out/results.md")).unwrap();
    assert!(md.contains("## Dry run") && md.contains("not run (dry run)"), "{md}");
}

#[test]
fn the_dry_run_fails_when_the_carry_would_not_fit_or_a_binary_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let pack = pack(dir.path());
    let (ok, out) =
        validate(&pack, dir.path(), "small", &["--only", "nccl"], &[("STRAND_CARRY_LIMIT_BYTES", "1000000")]);
    assert!(!ok, "a 1 MB carry limit must fail the dry run:\n{out}");
    assert!(out.lines().any(|l| l.starts_with("carry: ") && l.ends_with("TOO LARGE")), "{out}");

    std::fs::remove_file(pack.join("gpu_probe")).unwrap();
    let (ok, out) = validate(&pack, dir.path(), "missing", &["--only", "nccl"], &[]);
    assert!(!ok, "a missing binary must fail the dry run:\n{out}");
    assert!(out.contains("binary gpu_probe: MISSING"), "{out}");
}
