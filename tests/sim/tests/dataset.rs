//! The simulated dataset is what agents write: raw rows, and windows made of
//! them by the agent's WindowBuilder that add up, split by kernel records on
//! CUPTI nodes and by NVML on the others.

use strand_schemas::{KernelEvent, Window, read_file};

fn files(dir: &std::path::Path, table: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join(table)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn windows_come_from_raw_rows_and_add_up_on_cupti_and_nvml_only_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strand-sim"))
        .args(["--nodes", "2", "--hours", "0.25", "--nvml-only", "1", "--kernels", "--threads", "1", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let windows: Vec<Window> =
        files(dir.path(), "windows").iter().flat_map(|f| read_file::<Window>(f).unwrap()).collect();
    let kernels: Vec<KernelEvent> =
        files(dir.path(), "kernel_events").iter().flat_map(|f| read_file::<KernelEvent>(f).unwrap()).collect();
    assert!(
        !kernels.is_empty() && kernels.iter().all(|k| &*k.node == "node-0000"),
        "kernel records only from the CUPTI node"
    );
    // 2 nodes × 8 GPUs × 90 windows of 10 s.
    assert_eq!(windows.len(), 2 * 8 * 90);
    for w in &windows {
        let t = w.end_ns - w.start_ns;
        match (&*w.node, w.split_source.as_deref()) {
            ("node-0000", Some("kernels")) => {
                let sum = w.compute_ns.unwrap()
                    + w.comm_exposed_ns.unwrap()
                    + w.memcpy_exposed_ns.unwrap()
                    + w.idle_ns.unwrap();
                assert_eq!(sum, t);
            }
            ("node-0001", Some("nvml")) => {
                assert_eq!(w.compute_ns, None, "no kernel records: compute unknown, not 0");
                assert_eq!(w.reported_busy_ns.unwrap() + w.idle_ns.unwrap(), t, "NVML covers the whole window");
            }
            // CUPTI node windows without kernels (startup, saves): NVML splits them.
            ("node-0000", Some("nvml")) => assert!(w.kernel_count.is_none()),
            other => panic!("window of {other:?}"),
        }
        let mut g = strand_analysis::GpuTime::new();
        g.update(w, None);
        assert_eq!(strand_analysis::LEAVES.iter().map(|l| g.leaf(*l)).sum::<i64>(), t, "the leaves add up");
    }
}
