//! The `strand-agent` command line as an operator meets it: `check` on a host,
//! `wrap` around a workload.
//!
//! These tests also make `cargo test --workspace` build the `strand-agent`
//! binary itself (cargo builds a package's binaries only for that package's
//! integration tests), which the end-to-end tests in `tests/` run.

use std::process::Command;

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strand-agent"));
    c.env_remove("STRAND_CONFIG").env_remove("CUDA_INJECTION64_PATH").env("STRAND_LOG", "warn");
    c
}

const SOURCES: [&str; 7] = ["NVML", "GPM", "CUPTI injection", "eBPF", "perf events", "GPU reductions", "collector"];

#[test]
fn check_lists_every_source_with_a_status_and_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent().arg("check").arg("--data-dir").arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "check failed: {}\n{}", stdout, String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("SOURCE") && lines[0].contains("STATUS"), "no header: {stdout}");
    for source in SOURCES {
        let row = lines
            .iter()
            .find(|l| l.starts_with(source) && l[source.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("{source} is missing from `check`:\n{stdout}"));
        let rest: Vec<&str> = row[source.len()..].split_whitespace().collect();
        assert!(matches!(rest.first(), Some(&"ok") | Some(&"no")), "{source}: status is not ok/no: {row}");
        assert!(rest.len() > 1, "{source}: no detail says why: {row}");
    }
    // Where NVML cannot load (no driver: this machine, CI), the row says what that disables.
    let nvml = lines.iter().find(|l| l.starts_with("NVML ")).unwrap();
    if nvml.split_whitespace().nth(1) == Some("no") {
        assert!(nvml.contains("no GPU counters"), "NVML row does not say what is lost: {nvml}");
        let gpm = lines.iter().find(|l| l.starts_with("GPM ")).unwrap();
        assert!(gpm.contains("no"), "GPM cannot work without NVML: {gpm}");
    }
    // Standalone: no collector configured means the batches stay on the node.
    let collector = lines.iter().find(|l| l.starts_with("collector ")).unwrap();
    assert!(collector.contains("standalone"), "{collector}");
}

#[test]
fn check_names_the_collector_it_would_ship_to_and_refuses_one_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let url = "http://collector.example:7070";
    let out = agent().args(["check", "--collector", url]).arg("--data-dir").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a collector without a token must be refused at start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("collector.token_file"), "the error must name the missing key: {stderr}");

    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, format!("[collector]\nurl = \"{url}\"\ntoken_file = \"{}\"\n", token.display())).unwrap();
    let out = agent().arg("check").arg("--config").arg(&config).arg("--data-dir").arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let collector = stdout.lines().find(|l| l.starts_with("collector ")).unwrap_or_default();
    assert!(collector.contains(url), "{stdout}");
}

#[test]
fn wrap_runs_the_workload_with_the_injection_library_and_keeps_its_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cmd, lib) = wrap_with_fake_library(dir.path());
    let out = cmd
        .arg("--data-dir")
        .arg(dir.path())
        .args(["wrap", "--", "sh", "-c", "echo \"$CUDA_INJECTION64_PATH|$STRAND_CUPTI_SOCKET\"; exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "wrap must hand back the workload's exit status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (injection, socket) = stdout.trim().split_once('|').expect("the workload printed both variables");
    assert_eq!(injection, std::fs::canonicalize(&lib).unwrap().display().to_string());
    assert_eq!(socket, dir.path().join("cupti.sock").display().to_string());
    // Nobody listens yet: wrap says so instead of failing silently later.
    assert!(String::from_utf8_lossy(&out.stderr).contains("no agent is listening"));
}

#[test]
fn wrap_names_a_workload_it_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cmd, _) = wrap_with_fake_library(dir.path());
    let out = cmd.args(["wrap", "--", "/nonexistent/train.py"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/train.py") && stderr.contains("No such file"), "{stderr}");
}

/// The agent command with `STRAND_INJECT_LIB` pointing at a stand-in file in
/// `dir` (wrap only hands the path on; nothing loads it here).
fn wrap_with_fake_library(dir: &std::path::Path) -> (std::process::Command, std::path::PathBuf) {
    let lib = dir.join("libstrand_inject.so");
    std::fs::write(&lib, b"not loaded by this test").unwrap();
    let mut cmd = agent();
    cmd.env("STRAND_INJECT_LIB", &lib);
    (cmd, lib)
}
