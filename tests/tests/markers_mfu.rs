//! MFU end to end (issue 6): the Python markers client tells a running agent
//! the model FLOPs of each step; the agent's window must show the MFU they
//! imply against the GPU's peak, and the steps table the markers.

use std::process::Command;
use std::time::Duration;

use strand_schemas::clock::utc_now_ns;
use strand_schemas::{Step, Window, read_file};
use strand_tests::*;

const MS: i64 = 1_000_000;
/// Peak dense bf16 FLOP/s of an H100 SXM (strand-analysis's table; the
/// simulated GPUs are "NVIDIA H100 80GB HBM3").
const H100_BF16: f64 = 989.5e12;

/// Equal up to the rounding of a float printed by Python and parsed back.
fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| ((a - b) / b).abs() < 1e-12)
}

fn python_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../python")
}

#[test]
fn step_markers_with_flops_give_the_window_its_mfu() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = agent_config(dir.path(), &data, "[ebpf]\nenabled = false\n[cupti]\nenabled = false\n");
    let socket = data.join("markers.sock");
    let mut agent = simulated_agent(&cfg, &socket);

    // Three 0.5 s steps inside the window [t0, t0 + 2 s), then a checkpoint.
    // MFU = 3 · F / (2 s · peak) = 0.4 for F below.
    let period = 2_000 * MS;
    let t0 = (utc_now_ns() / period + 1) * period;
    let flops = 0.4 * H100_BF16 * 2.0 / 3.0;
    let script = format!(
        r#"
import time
from strand_markers import Markers
m = Markers(socket_path={socket:?}, gpu_index=0, rank=0)
while time.time_ns() < {start}:
    time.sleep(0.001)
for s in range(3):
    with m.step(s, flops={flops}, dtype="bf16"):
        time.sleep(0.5)
with m.checkpoint(2, kind="save"):
    time.sleep(0.05)
assert m.dropped == 0, m.dropped
print(m.sent)
"#,
        socket = socket.display().to_string(),
        start = t0 + 100 * MS,
    );
    let out = Command::new("python3").arg("-c").arg(&script).env("PYTHONPATH", python_dir()).output().unwrap();
    assert!(out.status.success(), "markers client: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "8", "8 messages sent, none dropped");

    std::thread::sleep(Duration::from_nanos((t0 + period + 3_000 * MS - utc_now_ns()).max(0) as u64 + 1_500_000_000));
    agent.signal(SIGTERM);
    assert!(agent.wait(Duration::from_secs(30)).success());

    let steps: Vec<Step> =
        files(&data.join("steps"), ".parquet").iter().flat_map(|f| read_file::<Step>(f).unwrap()).collect();
    let marked: Vec<&Step> = steps.iter().filter(|s| s.phase == "step" && s.source == "marker").collect();
    assert_eq!(marked.len(), 3, "{steps:?}");
    for (i, s) in marked.iter().enumerate() {
        assert_eq!(s.step, Some(i as i64));
        assert!(close(s.model_flops, flops), "{:?}", s.model_flops);
        assert_eq!(s.dtype.as_deref(), Some("bf16"));
        assert!((s.end_ns - s.start_ns - 500 * MS).abs() < 100 * MS, "a 0.5 s step: {} ns", s.end_ns - s.start_ns);
    }
    assert_eq!(steps.iter().filter(|s| s.phase == "checkpoint_save").count(), 1);

    let windows: Vec<Window> =
        files(&data.join("windows"), ".parquet").iter().flat_map(|f| read_file::<Window>(f).unwrap()).collect();
    let w = windows.iter().find(|w| w.start_ns == t0 && w.gpu_index == 0).expect("the window of the steps");
    assert!(w.coverage.contains("markers"), "{}", w.coverage);
    assert!(close(w.model_flops, 3.0 * flops), "{:?}", w.model_flops);
    assert_eq!(w.peak_flops_per_s, Some(H100_BF16));
    let mfu = w.mfu.expect("MFU from the markers' FLOPs");
    assert!(close(Some(mfu), 0.4), "MFU {mfu}");
}

#[test]
fn the_python_client_unit_tests_pass() {
    let out = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s"])
        .arg(python_dir())
        .arg("-v")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
