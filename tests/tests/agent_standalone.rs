//! The README's first command: the agent in standalone mode, as a process.

use std::process::Command;
use std::time::Duration;

use strand_tests::*;

#[test]
fn sigterm_flushes_every_batch_and_files_are_readable_by_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut agent = Proc::spawn(
        Command::new(bin("strand-agent"))
            .arg("--data-dir")
            .arg(&data)
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--simulate-gpus")
            .arg("3")
            .env("STRAND_LOG", "warn"),
        "strand-agent",
    );
    // Wait until it has sampled a few periods (metrics tell).
    let scraped = eventually(Duration::from_secs(20), || {
        std::process::Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("strand_agent_samples_total{source=\"nvml\"} 9"))
            .unwrap_or(false)
    });
    assert!(scraped, "the agent did not report 9 samples (3 GPUs × 3 periods) on /metrics");
    assert!(files(&data, ".parquet").is_empty(), "nothing is committed before rotation or shutdown");

    agent.signal(SIGTERM);
    let status = agent.wait(Duration::from_secs(20));
    assert!(status.success(), "agent exited with {status}");

    assert!(files(&data, ".tmp").is_empty(), "no temporary files remain");
    // One batch per table with rows: the samples, and the windows flushed at stop.
    let parquet = files(&data, ".parquet");
    let tables: Vec<String> = parquet
        .iter()
        .map(|p| p.strip_prefix(&data).unwrap().to_string_lossy().split('/').next().unwrap().to_string())
        .collect();
    assert_eq!(tables, ["gpu_samples", "windows"], "{parquet:?}");
    let rel = parquet[0].strip_prefix(&data).unwrap().to_string_lossy().to_string();
    assert!(rel.starts_with("gpu_samples/date="), "{rel}");
    assert!(rel.contains("/cluster_dir=default/node_dir="), "{rel}");

    let read = pyarrow_read(&parquet);
    assert_eq!(read[0].0, "gpu_samples");
    assert_eq!(read[1].0, "windows");
    // Every sample taken before SIGTERM is in the file: at least the 9 seen on /metrics.
    assert!(read[0].1 >= 9 && read[0].1 % 3 == 0, "rows: {}", read[0].1);
    let rows = strand_schemas::read_file::<strand_schemas::GpuSample>(&parquet[0]).unwrap();
    assert_eq!(rows.len() as i64, read[0].1);
    assert!(rows.iter().all(|r| r.reported_utilization_ratio.is_some()));
    // The open window of each GPU was flushed, from NVML and GPM alone.
    let windows = strand_schemas::read_file::<strand_schemas::Window>(&parquet[1]).unwrap();
    assert_eq!(windows.len() as i64, read[1].1);
    let mut gpus: Vec<i32> = windows.iter().map(|w| w.gpu_index).collect();
    gpus.sort_unstable();
    gpus.dedup();
    assert_eq!(gpus, [0, 1, 2], "a run may straddle a window boundary: one or two windows per GPU");
    assert!(
        windows.iter().all(|w| w.coverage == "nvml,gpm" && w.compute_ns.is_none()),
        "no kernel records: categories unmeasured, not zero"
    );
}

#[test]
fn a_bad_config_fails_at_start_naming_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, "[windows]\nperiod = \"10s\"\nlaunch_gap = \"50us\"\n[output]\nrotate_interval = \"soon\"\n")
        .unwrap();
    let out = Command::new(bin("strand-agent")).arg("--config").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&cfg.display().to_string()), "{err}");
    assert!(err.contains("rotate_interval") && err.contains("invalid duration \"soon\""), "{err}");

    let out = Command::new(bin("strand-agent")).args(["--cluster", "a/b", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("key `cluster`"));
}

#[test]
fn the_systemd_unit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd/strand-agent.service")).unwrap();
    // systemd-analyze checks that ExecStart exists: point it at the built binary.
    let unit = unit.replace("/usr/bin/strand-agent", &bin("strand-agent").display().to_string());
    let path = dir.path().join("strand-agent.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is installed (scripts/install-deps.sh)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("strand-agent.service"), "systemd-analyze verify: {err}");
}
