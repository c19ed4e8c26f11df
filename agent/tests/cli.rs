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

/// Every part `check` reports, by source.
const PARTS: [(&str, &str); 14] = [
    ("nvml", "counters"),
    ("cupti", "receiver"),
    ("cupti", "injection"),
    ("ebpf", "nccl"),
    ("ebpf", "cuda_sync"),
    ("ebpf", "exec"),
    ("ebpf", "exit"),
    ("ebpf", "proc_scan"),
    ("perf", "counters"),
    ("markers", "socket"),
    ("infiniband", "counters"),
    ("kubernetes", "pod_resources"),
    ("kernels", "reductions"),
    ("collector", "shipping"),
];

#[test]
fn check_lists_every_part_with_a_state_and_a_reason_and_fails_when_one_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent().arg("check").arg("--data-dir").arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.ends_with('\n'), "the table ends with a newline: {stdout:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("SOURCE") && lines[0].contains("PART") && lines[0].contains("STATUS"),
        "no header: {stdout}"
    );
    let mut down = Vec::new();
    for (source, part) in PARTS {
        let row = lines
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&source) && f.get(1) == Some(&part))
            .unwrap_or_else(|| panic!("{source} {part} is missing from `check`:\n{stdout}"));
        assert!(matches!(row[2], "up" | "down" | "off"), "{source} {part}: state is not up/down/off: {row:?}");
        assert!(row.len() > 3, "{source} {part}: no detail says how or why: {row:?}");
        if row[2] == "down" {
            down.push(format!("{source} {part}"));
        }
    }
    assert_eq!(lines.len(), PARTS.len() + 1, "{stdout}");
    // Exit status: failure exactly when an enabled part is down, and stderr names them.
    if down.is_empty() {
        assert!(out.status.success(), "{stdout}{stderr}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(stderr.contains(&format!("cannot run: {}", down.join(", "))), "{stderr}");
    }
    // Where NVML cannot load (no driver: this machine, CI), the row says what that disables.
    let nvml = lines.iter().find(|l| l.starts_with("nvml ")).unwrap();
    if nvml.split_whitespace().nth(2) == Some("down") {
        assert!(nvml.contains("no GPU counters"), "NVML row does not say what is lost: {nvml}");
    }
    // Not a Kubernetes node: the pod-resources part is off and says why.
    let kube = lines.iter().find(|l| l.starts_with("kubernetes ")).unwrap();
    if !std::path::Path::new("/var/lib/kubelet/pod-resources/kubelet.sock").exists() {
        assert!(kube.contains(" off ") && kube.contains("not a Kubernetes node"), "{kube}");
    }
    // Standalone: no collector configured means the batches stay on the node.
    let collector = lines.iter().find(|l| l.starts_with("collector ")).unwrap();
    assert!(collector.contains("standalone"), "{collector}");
}

#[test]
fn check_reports_a_source_the_config_turns_off_as_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[nvml]\nenabled = false\n[ebpf]\nenabled = false\n").unwrap();
    let out = agent().arg("check").arg("--config").arg(&config).arg("--data-dir").arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let off: Vec<&str> = stdout.lines().filter(|l| l.split_whitespace().nth(2) == Some("off")).collect();
    for (source, key) in [("nvml", "nvml.enabled"), ("ebpf", "ebpf.enabled")] {
        let rows: Vec<&&str> = off.iter().filter(|l| l.starts_with(&format!("{source} "))).collect();
        assert!(!rows.is_empty() && rows.iter().all(|l| l.contains(&format!("({key} = false)"))), "{stdout}");
    }
    assert_eq!(off.iter().filter(|l| l.starts_with("ebpf ")).count(), 5, "{stdout}");
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
    let collector = stdout.lines().find(|l| l.starts_with("collector ")).unwrap_or_default();
    assert!(collector.contains(url) && collector.split_whitespace().nth(2) == Some("up"), "{stdout}");
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
