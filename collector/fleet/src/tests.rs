//! Simulated fleets whose answer is known (issue 8, "Must show"): each
//! test injects faults at known times and checks the findings' figures
//! against the injected truth; a clean fleet must give no finding.

use std::path::Path;

use strand_analysis::accounting::Leaf;
use strand_analysis::findings::Thresholds;
use strand_kernels::Reducer;
use strand_sim::{Fault, SimConfig};

use crate::analyze::{Options, analyze};
use crate::report::{Report, build};
use crate::sql::{Rows, SqlParams};
use crate::stalls::StallOptions;
use crate::{Dataset, TimeRange};

const T0: i64 = 1_767_571_200_000_000_000; // 2026-01-05T00:00:00Z
const S: i64 = 1_000_000_000;
const H: i64 = 3600 * S;

/// A small fleet for tests: `nodes` nodes, 1 hour, NVML sampled every 10 s (the figures do not depend on it).
fn fleet(nodes: usize) -> SimConfig {
    let mut cfg = SimConfig::base(nodes, T0, H);
    cfg.sample_ns = 10 * S;
    cfg
}

fn options(dir: &Path, store: bool) -> Options {
    Options {
        data: dir.to_str().unwrap().to_string(),
        range: TimeRange::new(T0, T0 + H),
        clusters: vec![],
        nodes: vec![],
        jobs: vec![],
        params: SqlParams { window_ns: 10 * S, bucket_ns: 600 * S, alloc_ns: 60 * S, bw_bucket_ns: 300 * S },
        thresholds: Thresholds::default(),
        stall: StallOptions::default(),
        store,
        memory_limit: Some(256 << 20),
        dump_dir: None,
        from_results: None,
        engine: Default::default(),
        created_ns: T0 + 2 * H,
        timeout: None,
    }
}

async fn report_of(cfg: &SimConfig, store: bool) -> (tempfile::TempDir, Report) {
    let dir = tempfile::tempdir().unwrap();
    strand_sim::write(cfg, dir.path(), 2).unwrap();
    let opts = options(dir.path(), store);
    let a = analyze(&opts, &Reducer::cpu(), &mut |_, _, _| {}).await.unwrap();
    let r = build(&opts, a, 0.0).unwrap();
    (dir, r)
}

fn kinds(r: &Report) -> Vec<String> {
    let mut k: Vec<String> = r.findings.iter().map(|f| f.kind.clone()).collect();
    k.sort();
    k
}

fn fig(f: &crate::report::ReportFinding, name: &str) -> f64 {
    f.figures
        .get(name)
        .and_then(|v| v.as_f64())
        .unwrap_or_else(|| panic!("finding {} has no figure {name}: {}", f.kind, f.figures))
}

fn close(actual: f64, expected: f64, rel: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= rel * expected.abs(),
        "{what}: {actual} is not within {:.1}% of {expected}",
        rel * 100.0
    );
}

#[tokio::test]
async fn a_clean_fleet_has_no_findings_and_its_hours_add_up() {
    let mut cfg = fleet(5);
    cfg.jobs.push(cfg.job("big", vec![0, 1], true));
    cfg.jobs.push(cfg.job("small", vec![2], false));
    let mut short = cfg.job("short", vec![3], true);
    short.end_ns = T0 + H / 2; // ends cleanly halfway; node 3 is then free, node 4 always
    cfg.jobs.push(short);
    let (_dir, r) = report_of(&cfg, false).await;
    assert!(r.findings.is_empty(), "false positives: {:#?}", r.findings.iter().map(|f| &f.summary).collect::<Vec<_>>());
    let t = &r.totals;
    close(t.powered_gpu_h, 5.0 * 8.0, 1e-9, "powered GPU-hours");
    let parts: f64 = t.leaves_gpu_h.iter().map(|c| c.1).sum();
    close(parts, t.powered_gpu_h, 1e-9, "categories add up to powered");
    // The free node and the half hour after `short` ended: no process, not held.
    close(t.leaf(Leaf::IdleNoProcess), 8.0 + 4.0, 1e-6, "no-process GPU-hours");
    assert_eq!(t.unallocatable_gpu_h, 0.0, "whole free nodes are not stranded by topology");
    assert_eq!(r.jobs.len(), 3);
    assert!(r.jobs.iter().all(|j| j.failures.is_empty() && j.goodput.is_some_and(|g| g > 0.9)), "{:#?}", r.jobs);
    // Checkpoints are found with markers and, without them, from the processes' writes.
    let small = r.jobs.iter().find(|j| j.job_id == "small").unwrap();
    assert_eq!((small.checkpoint_source, small.checkpoints), ("inferred", 5));
    let big = r.jobs.iter().find(|j| j.job_id == "big").unwrap();
    assert_eq!((big.checkpoint_source, big.checkpoints), ("marker", 5));
}

#[tokio::test]
async fn a_rank_made_late_is_named_the_straggler_with_the_stall_it_caused() {
    let mut cfg = fleet(3);
    cfg.jobs.push(cfg.job("late", vec![0, 1], true));
    cfg.jobs.push(cfg.job("fine", vec![2], false));
    let delay = 10_000_000; // 10 ms
    cfg.faults.push(Fault::Straggler { job: 0, rank: 13, delay_ns: delay });
    let (dir, r) = report_of(&cfg, true).await;
    assert_eq!(kinds(&r), ["straggler"], "{:#?}", r.findings.iter().map(|f| &f.summary).collect::<Vec<_>>());
    let f = &r.findings[0];
    assert_eq!((f.rank, f.node.as_deref(), f.comm_hash), (Some(13), Some("node-0001"), Some(cfg.comm_hash(0, 0))));
    // One allreduce per step: 1 h − 20 s startup − 5 saves of 20 s, in steps of 5 s.
    let instances = ((H - 20 * S - 5 * 20 * S) / cfg.step_ns) as f64;
    close(fig(f, "instances"), instances, 1e-9, "instances");
    close(fig(f, "last_share"), 1.0, 1e-9, "share last");
    // Its lead over the second-latest rank is the delay minus the jitter of at most 0.2 ms.
    close(fig(f, "mean_lateness_ms"), delay as f64 / 1e6, 0.02, "mean lateness");
    close(fig(f, "caused_stall_gpu_s"), instances * 15.0 * delay as f64 * 1e-9, 0.02, "stall caused on 15 peers");
    // The report counts the exact stalls (the agents' were estimates for this 2-node job).
    let exact_h = f.gpu_seconds.unwrap() / 3600.0;
    let stall = r.totals.leaf(Leaf::SyncStall);
    assert!(stall >= exact_h * 0.95 && stall < exact_h * 1.05, "{stall} vs {exact_h}");
    assert_eq!(r.estimated_stall_gpu_h, 0.0);

    // Stored: collective_stalls and findings, and a second run replaces them.
    let count = |table: &'static str| {
        let d = dir.path().to_str().unwrap().to_string();
        async move {
            let ds = Dataset::open(&d).await.unwrap();
            let b = ds.sql(&format!("SELECT count(*) AS n FROM {table}")).await.unwrap().collect().await.unwrap();
            Rows::new(table, b).i64_req("n").unwrap()[0]
        }
    };
    let stalls = count("collective_stalls").await;
    assert_eq!(stalls as f64, instances * (16.0 + 8.0), "every rank of both jobs' allreduces");
    assert_eq!(count("findings").await, 1);
    let opts = options(dir.path(), true);
    analyze(&opts, &Reducer::cpu(), &mut |_, _, _| {}).await.unwrap();
    assert_eq!(
        (count("collective_stalls").await, count("findings").await),
        (stalls, 1),
        "re-running must not duplicate"
    );
}

#[tokio::test]
async fn rising_link_counters_are_flagged() {
    let mut cfg = fleet(2);
    cfg.jobs.push(cfg.job("j", vec![0, 1], false));
    cfg.faults.push(Fault::NvlinkErrors { node: 1, gpu: 2, link: 7, per_hour: 40, from_ns: T0 + H / 2 });
    cfg.faults.push(Fault::NicErrors { node: 0, device: 3, per_hour: 30, from_ns: T0 });
    let (_dir, r) = report_of(&cfg, false).await;
    assert_eq!(
        kinds(&r),
        ["link_errors", "link_errors"],
        "{:#?}",
        r.findings.iter().map(|f| &f.summary).collect::<Vec<_>>()
    );
    let gpu = r.findings.iter().find(|f| f.scope == "gpu").unwrap();
    assert_eq!((gpu.node.as_deref(), gpu.figures["gpu_index"].as_i64()), (Some("node-0001"), Some(2)));
    // 40 per hour from the half hour to the last sample in the range (T0 + 3590 s).
    let last = 3590 * S;
    assert_eq!(gpu.figures["increase"]["nvlink_crc_errors[link 7]"].as_i64(), Some((last - H / 2) * 40 / H));
    let nic = r.findings.iter().find(|f| f.scope == "node").unwrap();
    assert_eq!((nic.node.as_deref(), nic.figures["device"].as_str()), (Some("node-0000"), Some("mlx5_3")));
    // 30 per hour; the first sample (T0 + 10 s) still reads 0.
    assert_eq!(nic.figures["counters"]["symbol_error"].as_i64(), Some(last * 30 / H));
}

#[tokio::test]
async fn a_degraded_bus_bandwidth_is_flagged_against_the_fleets_own_baseline() {
    let mut cfg = fleet(8);
    for j in 0..4 {
        cfg.jobs.push(cfg.job(&format!("j{j}"), vec![2 * j, 2 * j + 1], j % 2 == 0));
    }
    let factor = 0.3;
    cfg.faults.push(Fault::SlowBus { job: 2, factor, from_ns: T0 + H / 2 });
    let (_dir, r) = report_of(&cfg, false).await;
    // One finding per message size class the job sends (two), both on job 2's communicator.
    assert_eq!(
        kinds(&r),
        ["bus_bandwidth_collapse", "bus_bandwidth_collapse"],
        "{:#?}",
        r.findings.iter().map(|f| &f.summary).collect::<Vec<_>>()
    );
    for f in &r.findings {
        assert_eq!((f.comm_hash, f.job_id.as_deref()), (Some(cfg.comm_hash(2, 0)), Some("j2")));
        close(fig(f, "ratio"), factor, 0.02, "bandwidth ratio");
        // The healthy bus bandwidth is the simulator's, recovered from the exact transfer times.
        close(fig(f, "baseline_bus_bw_gbps"), cfg.bus_bw / 1e9, 0.01, "baseline");
        assert!(
            f.start_ns >= T0 + H / 2 && f.start_ns < T0 + H / 2 + 10 * S,
            "starts when the link degraded: {}",
            f.start_ns - T0
        );
    }
}

#[tokio::test]
async fn checkpoints_a_crash_and_a_restart_give_the_right_recovery_figures() {
    let mut cfg = fleet(4);
    // Two identical jobs: one with workload markers, one where checkpoints
    // are inferred from the GPUs idling while the processes write.
    for (i, markers) in [(0usize, true), (1, false)] {
        let mut j = cfg.job(&format!("run{i}"), vec![2 * i, 2 * i + 1], markers);
        j.checkpoint_ns = 30 * S;
        cfg.jobs.push(j);
        cfg.faults.push(Fault::Crash {
            job: i,
            at_ns: T0 + 1500 * S,
            downtime_ns: 120 * S,
            xid: (i == 0).then_some(79),
        });
    }
    let (_dir, r) = report_of(&cfg, false).await;
    // Timeline (s from T0): startup [0,20); steps [20,620); save [620,650) holds the last step;
    // steps [650,1250); save [1250,1280); steps [1280,1500); crash at 1500; down [1500,1620);
    // restore [1620,1650); steps [1650,2250); save [2250,2280); steps [2280,2880); save [2880,2910);
    // steps [2910,3510); save [3510,3540); steps to 3600.
    let (startup, save, down_end, restore) = (20.0, 30.0, 1620.0, 30.0);
    let saves = 5.0;
    let last_ckpt_end = 1280.0; // the restart resumes after the step saved at 1250
    for j in &r.jobs {
        // run0's XID (1 s before the processes die) is its first failure signal.
        let crash = if j.job_id == "run0" { 1499.0 } else { 1500.0 };
        let (down, wasted) = (down_end - crash, crash - last_ckpt_end);
        let productive = 3600.0 - startup - saves * save - restore - down - wasted;
        let b = &j.badput;
        assert_eq!(j.failures.len(), 1, "{}", j.job_id);
        let f = &j.failures[0];
        assert_eq!(f.ts_ns, T0 + (crash * 1e9) as i64);
        close(f.downtime_s.unwrap(), down + restore, 1e-9, "downtime to the first kernel");
        close(j.mttr_s.unwrap(), down + restore, 1e-9, "MTTR");
        close(b.startup_s, startup, 1e-9, "startup");
        close(b.checkpoint_save_s, saves * save, 1e-9, "checkpoint save");
        close(j.checkpoint_share, saves * save / 3600.0, 1e-9, "checkpoint share");
        close(b.checkpoint_restore_s, restore, 1e-9, "restore");
        close(b.recovery_s, down, 1e-9, "recovery");
        close(b.wasted_progress_s, wasted, 1e-9, "wasted progress");
        close(f.wasted_s, wasted, 1e-9, "wasted wall time of this failure");
        // Compute lost: the steps between the checkpoint and the failure, 16 GPUs × 4.5 s per 5 s step
        // (+ jitter; windows are prorated, so run0's XID second cuts its last window).
        close(f.wasted_gpu_s, (crash - last_ckpt_end) / 5.0 * 16.0 * 4.5, 1e-3, "wasted GPU-seconds");
        close(b.other_s, 0.0, 1e-9, "other");
        close(j.goodput.unwrap(), productive / 3600.0, 1e-9, "goodput (ETTR)");
        // Young: sqrt(2 · 30 s · MTBF), MTBF = 1 h / 1 failure.
        close(j.young_interval_s.unwrap(), (2.0 * save * 3600.0f64).sqrt(), 1e-9, "Young's interval");
        close(j.checkpoint_interval_s.unwrap(), (3510.0 - 620.0) / 4.0, 1e-9, "observed interval");
    }
    assert_eq!(r.jobs.iter().map(|j| j.checkpoint_source).collect::<Vec<_>>(), ["marker", "inferred"]);
    assert_eq!(kinds(&r), ["goodput", "goodput", "restart", "restart", "wasted_progress", "wasted_progress"]);
    let restart = r.findings.iter().find(|f| f.kind == "restart" && f.job_id.as_deref() == Some("run0")).unwrap();
    let signals: Vec<&str> = restart.figures["signals"].as_array().unwrap().iter().filter_map(|s| s.as_str()).collect();
    assert_eq!(signals, ["xid 79", "exit code 1", "exit signal 15"]);
    // The lost compute is ghost compute in the report.
    let lost: f64 = r.jobs.iter().map(|j| j.wasted_gpu_s).sum::<f64>() / 3600.0;
    close(r.totals.leaf(Leaf::WastedProgress), lost, 1e-6, "ghost wasted progress");
}

#[tokio::test]
async fn free_gpus_the_job_shapes_cannot_use_are_topology_stranded() {
    let mut cfg = fleet(4);
    cfg.jobs.push(cfg.job("wide", vec![2, 3], false)); // 8 GPUs on 2 nodes: two (job, node) shapes of 8
    let mut four = cfg.job("four", vec![0], false);
    four.gpus_per_node = 4;
    let mut two = cfg.job("two", vec![0], false);
    (two.first_gpu, two.gpus_per_node) = (4, 2);
    cfg.jobs.extend([four, two]);
    let (_dir, r) = report_of(&cfg, false).await;
    assert_eq!(kinds(&r), ["topology_stranded"], "{:#?}", r.findings.iter().map(|f| &f.summary).collect::<Vec<_>>());
    // Node 0 has 2 free GPUs; shapes {8: 2/4, 4: 1/4, 2: 1/4}; a job needs more than 2 with p = 3/4.
    // Node 1 is wholly free: not stranded by topology.
    let expected = 2.0 * 0.75 * 1.0;
    close(r.totals.unallocatable_gpu_h, expected, 0.02, "unallocatable GPU-hours");
    let node0 = r.by_node.iter().find(|s| s.key == "sim/node-0000").unwrap();
    close(node0.hours.unallocatable_gpu_h, expected, 0.02, "on node 0");
}

#[tokio::test]
async fn filters_keep_one_job_and_bad_options_are_refused() {
    let mut cfg = fleet(2);
    cfg.jobs.push(cfg.job("a", vec![0], false));
    cfg.jobs.push(cfg.job("b", vec![1], false));
    let dir = tempfile::tempdir().unwrap();
    strand_sim::write(&cfg, dir.path(), 2).unwrap();
    let mut opts = options(dir.path(), false);
    opts.jobs = vec!["b".into()];
    let a = analyze(&opts, &Reducer::cpu(), &mut |_, _, _| {}).await.unwrap();
    let r = build(&opts, a, 0.0).unwrap();
    assert_eq!(r.by_job.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(), ["sim/b"]);
    close(r.totals.powered_gpu_h, 8.0, 1e-9, "one node's GPUs");
    opts.store = true;
    let err = analyze(&opts, &Reducer::cpu(), &mut |_, _, _| {}).await.err().unwrap();
    assert!(format!("{err:#}").contains("--store"), "{err:#}");
    // A window period that is not the agents' would silently miss the exact stalls.
    let mut opts = options(dir.path(), false);
    opts.params.window_ns = 7 * S;
    let err = analyze(&opts, &Reducer::cpu(), &mut |_, _, _| {}).await.err().unwrap();
    assert!(format!("{err:#}").contains("windows in this range are 10s long, but --window is 7s"), "{err:#}");
}

#[tokio::test]
async fn costly_checkpoints_and_cascading_restarts_are_flagged() {
    let mut cfg = fleet(2);
    // Job 0 saves 20 s after every 2 minutes of steps: 25 saves, 500 s of 3600.
    let mut often = cfg.job("often", vec![0], true);
    often.checkpoint_every_ns = Some(120 * S);
    cfg.jobs.push(often);
    // Job 1 fails three times within the hour.
    cfg.jobs.push(cfg.job("flaky", vec![1], false));
    for at in [900, 1800, 2700] {
        cfg.faults.push(Fault::Crash { job: 1, at_ns: T0 + at * S, downtime_ns: 60 * S, xid: None });
    }
    let (_dir, r) = report_of(&cfg, false).await;
    let of = |job: &str| {
        let mut k: Vec<&str> =
            r.findings.iter().filter(|f| f.job_id.as_deref() == Some(job)).map(|f| f.kind.as_str()).collect();
        k.sort();
        k
    };
    assert_eq!(of("often"), ["checkpoint_cost", "goodput"]);
    let f = r.findings.iter().find(|f| f.kind == "checkpoint_cost" && f.job_id.as_deref() == Some("often")).unwrap();
    close(fig(f, "checkpoint_share"), 25.0 * 20.0 / 3600.0, 1e-9, "checkpoint share");
    // Three failures in 30 minutes: a cascade; Young's interval for MTBF = 1200 s is far below the observed one.
    assert_eq!(
        of("flaky"),
        [
            "checkpoint_cost",
            "goodput",
            "recovery_collapse",
            "restart",
            "restart",
            "restart",
            "wasted_progress",
            "wasted_progress",
            "wasted_progress"
        ]
    );
    let flaky = r.jobs.iter().find(|j| j.job_id == "flaky").unwrap();
    close(flaky.young_interval_s.unwrap(), (2.0 * 20.0 * 1200.0f64).sqrt(), 1e-9, "Young's interval");
    close(flaky.mttr_s.unwrap(), 60.0 + 30.0, 1e-9, "MTTR (downtime + restore)");
}

#[tokio::test]
async fn communication_not_hidden_by_compute_is_flagged_per_job() {
    let mut cfg = fleet(2);
    // A slow interconnect: each step computes 1.2 s, then moves 256 MiB (or 32 MiB) at 0.15 GB/s of bus bandwidth.
    (cfg.compute_ns, cfg.bus_bw) = (1_200_000_000, 0.15e9);
    cfg.jobs.push(cfg.job("slow", vec![0, 1], true));
    let (_dir, r) = report_of(&cfg, false).await;
    assert_eq!(
        kinds(&r),
        ["exposed_communication"],
        "{:#?}",
        r.findings.iter().map(|f| &f.summary).collect::<Vec<_>>()
    );
    let transfer = |bytes: f64| bytes * 2.0 * 15.0 / 16.0 / cfg.bus_bw;
    // 348 windows of two steps (1 h − 20 s startup − 5 saves of 20 s), over the time with
    // kernel records: those 348 windows (startup and saves run no kernel, NVML splits them).
    let expected = (transfer(cfg.bytes as f64) + transfer(cfg.bytes as f64 / 8.0)) * 348.0 / 3480.0;
    close(fig(&r.findings[0], "exposed_share"), expected, 0.01, "exposed communication share");
}

#[tokio::test]
async fn a_slow_node_is_named_even_though_no_single_rank_stands_out() {
    let mut cfg = fleet(3);
    cfg.jobs.push(cfg.job("wide", vec![0, 1, 2], false));
    let delay = 10_000_000;
    cfg.faults.push(Fault::SlowNode { job: 0, node_pos: 1, delay_ns: delay });
    let (_dir, r) = report_of(&cfg, false).await;
    assert_eq!(kinds(&r), ["straggler"], "{:#?}", r.findings.iter().map(|f| &f.summary).collect::<Vec<_>>());
    let f = &r.findings[0];
    assert_eq!((f.node.as_deref(), f.rank, f.comm_hash), (Some("node-0001"), None, Some(cfg.comm_hash(0, 0))));
    let instances = ((H - 20 * S - 5 * 20 * S) / cfg.step_ns) as f64;
    close(fig(f, "last_share"), 1.0, 1e-9, "share last");
    close(fig(f, "mean_lateness_ms"), delay as f64 / 1e6, 0.02, "lead over the other nodes");
    // The 16 ranks of the other two nodes wait for it at every allreduce.
    close(
        fig(f, "caused_stall_gpu_s"),
        instances * 16.0 * delay as f64 * 1e-9,
        0.02,
        "stall caused on the other nodes",
    );
}

#[tokio::test]
async fn the_default_deployment_nvml_only_shows_what_it_can_see_and_no_ettr_finding() {
    // NVML on every node, no CUPTI, no markers: no kernel records and no step source.
    let mut cfg = fleet(3);
    cfg.jobs.push(cfg.job("a", vec![0, 1], false));
    cfg.jobs.push(cfg.job("b", vec![2], false));
    cfg.nvml_only = vec![0, 1, 2];
    let (_dir, r) = report_of(&cfg, false).await;
    let t = &r.totals;
    close(t.powered_gpu_h, 24.0, 1e-9, "powered");
    close(t.nvml_only_gpu_h, 24.0, 1e-9, "all of it split by NVML");
    assert_eq!(t.kernel_records_gpu_h, 0.0);
    // Reported busy splits into hollow busy (reported − SM active) and the rest; the
    // startup and checkpoint windows (utilization 0) are idle.
    assert!(t.leaf(Leaf::BusyUnclassified) > 0.0 && t.leaf(Leaf::HollowBusy) > 0.0, "{:?}", t.leaves_gpu_h);
    close(
        t.leaf(Leaf::HollowBusy) / (t.leaf(Leaf::HollowBusy) + t.leaf(Leaf::BusyUnclassified)),
        (0.93 - 0.85) / 0.93,
        1e-6,
        "hollow share of busy",
    );
    assert!(t.idle_gpu_h > 0.0 && t.stranded_gpu_h > t.leaf(Leaf::HollowBusy), "idle of held GPUs is stranded too");
    assert_eq!(t.compute_gpu_h, 0.0, "compute is unknown, shown as none, never guessed");
    // No step source: ETTR unknown, and no goodput finding from missing data.
    assert!(r.jobs.iter().all(|j| j.goodput.is_none() && j.step_source.is_none()), "{:#?}", r.jobs);
    assert!(!kinds(&r).iter().any(|k| k == "goodput"), "{:?}", kinds(&r));
    let md = crate::report::markdown_for_tests(&r);
    assert!(md.contains("unknown (no step source)"), "{md}");
}

/// Rewrites every `n`-th Parquet file under `root` (from the `first`) as
/// schema version 1 wrote it: points in time as `Int64`, version `1.0`.
fn rewrite_as_version_1(root: &Path, first: usize, n: usize) -> usize {
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use strand_schemas::SchemaVersion;
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut rewritten = 0;
    for path in files.iter().skip(first).step_by(n) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
        let kv = builder.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
        let table = kv.iter().find(|e| e.key == "strand.table").and_then(|e| e.value.clone()).unwrap();
        let v1 = strand_schemas::table::int64_times(builder.schema());
        let batches: Vec<_> = builder.build().unwrap().map(|b| b.unwrap()).collect();
        let props = strand_schemas::parquet_io::writer_properties(&v1, &table, SchemaVersion::new(1, 0));
        let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), v1.clone(), Some(props)).unwrap();
        for b in batches {
            let cols =
                b.columns().iter().zip(v1.fields()).map(|(c, f)| arrow::compute::cast(c, f.data_type()).unwrap());
            w.write(&arrow::record_batch::RecordBatch::try_new(v1.clone(), cols.collect()).unwrap()).unwrap();
        }
        w.close().unwrap();
        rewritten += 1;
    }
    rewritten
}

/// Every result of the report's SQL (`--dump-sql`), lines sorted per file.
fn dumped(dir: &Path) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines.sort();
            (e.file_name().to_string_lossy().to_string(), lines)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_report_gives_the_same_answer_over_schema_1_schema_2_and_mixed_files() {
    let mut cfg = fleet(3);
    cfg.jobs.push(cfg.job("late", vec![0, 1], true));
    cfg.faults.push(Fault::Straggler { job: 0, rank: 13, delay_ns: 10_000_000 });
    let mut answers = Vec::new();
    for (what, first, n) in [("schema 2", 0, 0), ("schema 1", 0, 1), ("mixed", 1, 2)] {
        let dir = tempfile::tempdir().unwrap();
        strand_sim::write(&cfg, dir.path(), 2).unwrap();
        if n > 0 {
            assert!(rewrite_as_version_1(dir.path(), first, n) > 0, "{what}");
        }
        let dump = dir.path().join("dump");
        let mut opts = options(dir.path(), false);
        opts.dump_dir = Some(dump.clone());
        let a = analyze(&opts, &Reducer::cpu(), &mut |_, _, _| {}).await.unwrap();
        let r = build(&opts, a, 0.0).unwrap();
        let findings: Vec<String> =
            r.findings.iter().map(|f| format!("{} {} {}", f.kind, f.summary, f.figures)).collect();
        answers.push((what, dumped(&dump), findings));
    }
    assert!(answers[0].1.iter().any(|(_, lines)| !lines.is_empty()), "the SQL returned rows");
    assert_eq!(answers[0].2.len(), 1, "the straggler is found: {:?}", answers[0].2);
    for (what, dump, findings) in &answers[1..] {
        assert!(dump == &answers[0].1, "{what}: the SQL results differ from schema 2's");
        assert_eq!(findings, &answers[0].2, "{what}: the findings differ from schema 2's");
    }
}

/// The report without its timings (they differ from run to run).
fn without_timings(r: &Report) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap();
    v.as_object_mut().unwrap().remove("timings");
    v.as_object_mut().unwrap().remove("elapsed_s");
    v
}

/// `--from-results`: the report rendered from the SQL results and stall
/// statistics written to disk (by strand here; by Spark in
/// tests/tests/reports.rs) is the report, finding for finding; a missing
/// result is an error naming it, never an empty result.
#[tokio::test]
async fn a_report_from_written_results_is_the_report_and_a_missing_one_is_an_error() {
    let mut cfg = fleet(3);
    cfg.jobs.push(cfg.job("late", vec![0, 1], true));
    cfg.faults.push(Fault::Straggler { job: 0, rank: 13, delay_ns: 10_000_000 });
    let dir = tempfile::tempdir().unwrap();
    strand_sim::write(&cfg, dir.path(), 2).unwrap();
    let results = dir.path().join("results");
    let mut opts = options(dir.path(), false);
    opts.dump_dir = Some(results.clone());
    let direct = build(&opts, analyze(&opts, &Reducer::cpu(), &mut |_, _, _| {}).await.unwrap(), 0.0).unwrap();
    assert!(!direct.findings.is_empty() && direct.stalls.rows_written > 0);

    let mut from = options(Path::new("/nonexistent"), false);
    from.from_results = Some(results.clone());
    let again = build(&from, analyze(&from, &Reducer::cpu(), &mut |_, _, _| {}).await.unwrap(), 0.0).unwrap();
    assert_eq!(without_timings(&again), without_timings(&direct));

    // Results of another range, or of another trend bucket, are not this report.
    let mut other = options(Path::new("/nonexistent"), false);
    other.from_results = Some(results.clone());
    other.range.end_ns -= 600 * S;
    let err = analyze(&other, &Reducer::cpu(), &mut |_, _, _| {}).await.err().unwrap();
    assert!(format!("{err:#}").contains("were computed for"), "{err:#}");
    let mut other = options(Path::new("/nonexistent"), false);
    other.from_results = Some(results.clone());
    other.params.bucket_ns *= 2;
    let err = analyze(&other, &Reducer::cpu(), &mut |_, _, _| {}).await.err().unwrap();
    assert!(format!("{err:#}").contains("give the same --from, --to, --window and --bucket"), "{err:#}");

    std::fs::remove_file(results.join("stragglers.jsonl")).unwrap();
    let err = analyze(&from, &Reducer::cpu(), &mut |_, _, _| {}).await.err().unwrap();
    assert!(format!("{err:#}").contains("no result of query stragglers"), "{err:#}");
    std::fs::write(results.join("stragglers.jsonl"), "{\"cluster\": \"c\", \"ra").unwrap();
    let err = analyze(&from, &Reducer::cpu(), &mut |_, _, _| {}).await.err().unwrap();
    assert!(format!("{err:#}").contains("cannot read the result of query stragglers"), "{err:#}");
    std::fs::remove_file(results.join("stalls.json")).unwrap();
    let err = analyze(&from, &Reducer::cpu(), &mut |_, _, _| {}).await.err().unwrap();
    assert!(format!("{err:#}").contains("--stalls-only --store"), "{err:#}");
    std::fs::remove_file(results.join("params.json")).unwrap();
    let err = analyze(&from, &Reducer::cpu(), &mut |_, _, _| {}).await.err().unwrap();
    assert!(format!("{err:#}").contains("no params.json in"), "{err:#}");
}

/// `--stalls-only` prepares a run of the SQL by another engine, which reads
/// compacted hours only: a range still holding landed batches is refused.
#[tokio::test]
async fn the_stall_pass_for_another_engine_refuses_a_range_not_compacted_yet() {
    let mut cfg = fleet(2);
    cfg.jobs.push(cfg.job("a", vec![0, 1], true));
    let dir = tempfile::tempdir().unwrap();
    strand_sim::write(&cfg, dir.path(), 2).unwrap();
    let opts = options(dir.path(), true);
    let stats = crate::analyze::stall_pass(&opts, &Reducer::cpu(), &mut |_, _, _| {}).await.unwrap();
    assert!(stats.rows_written > 0);
    let node = dir.path().join("windows/date=2026-01-05/cluster_dir=sim/node_dir=node-0000");
    let landing = dir.path().join("_landing/windows/date=2026-01-05/hour=00/cluster_dir=sim/node_dir=node-0000");
    std::fs::create_dir_all(landing.parent().unwrap()).unwrap();
    std::fs::rename(&node, &landing).unwrap();
    let err = crate::analyze::stall_pass(&opts, &Reducer::cpu(), &mut |_, _, _| {}).await.err().unwrap();
    assert!(format!("{err:#}").contains("not compacted yet (1 windows)"), "{err:#}");
}

/// Text that comes from the data (node names, job ids, finding summaries,
/// filters) is escaped in stranded.html: it never reaches the page as markup.
#[tokio::test]
async fn hostile_text_from_the_data_comes_out_of_stranded_html_escaped() {
    const BAD: &str = "<script>alert(1)</script>\"&";
    const ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;";
    let mut cfg = fleet(2);
    cfg.jobs.push(cfg.job("a", vec![0], true));
    let (_dir, mut r) = report_of(&cfg, false).await;
    r.title = BAD.into();
    r.filters.insert("node".into(), vec![BAD.into()]);
    r.by_node[0].key = BAD.into();
    r.by_job[0].key = BAD.into();
    r.by_cluster[0].key = BAD.into();
    r.jobs[0].job_id = BAD.into();
    r.notes.push(BAD.into());
    r.findings.push(strand_analysis::findings::FindingView {
        finding_id: BAD.into(),
        code: BAD.into(),
        kind: BAD.into(),
        scope: BAD.into(),
        severity: BAD.into(),
        cluster: BAD.into(),
        node: Some(BAD.into()),
        gpu_uuid: None,
        job_id: Some(BAD.into()),
        comm_hash: None,
        rank: None,
        start_ns: T0,
        end_ns: T0 + H,
        summary: BAD.into(),
        gpu_seconds: None,
        figures: serde_json::json!({ "node": BAD }),
        evidence: serde_json::json!({ "query": BAD }),
    });
    let html = crate::report::html_for_tests(&r);
    assert!(!html.contains("<script") && !html.contains("</script>"), "raw markup from the data");
    // Title and h1, the filter, the finding's class, severity, code, kind, scope and summary,
    // the slices in their charts and tables, the job, the note.
    let n = html.matches(ESCAPED).count();
    assert!(n >= 14, "{n} escaped copies:\n{html}");
}

/// The trend bucket cuts the range in about 24, in whole 10 minutes, never
/// under 10 minutes; a given bucket wins.
#[test]
fn the_default_trend_bucket_follows_the_range() {
    let bucket = |hours: i64, given: Option<i64>| SqlParams::new(T0, T0 + hours * H, 10 * S, given).bucket_ns;
    assert_eq!(bucket(1, None), 600 * S);
    assert_eq!(bucket(24, None), 3600 * S);
    assert_eq!(bucket(7 * 24, None), 7 * 3600 * S);
    assert_eq!(bucket(5, None), 1200 * S, "5 h / 24 = 12.5 min, rounded up to 20");
    assert_eq!(bucket(24, Some(60 * S)), 60 * S);
}

/// The range filter written to `params.json` for Spark and DuckDB selects
/// exactly the rows strand's own filter selects, for every table and every
/// start/end around the range's edges (a missing end included).
#[tokio::test]
async fn the_range_filter_outside_engines_get_is_the_one_strand_applies() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, RecordBatch};
    use datafusion::prelude::SessionContext;

    let range = TimeRange::new(100, 200);
    let edges = [None, Some(50), Some(99), Some(100), Some(150), Some(199), Some(200), Some(250)];
    for t in strand_schemas::all_tables() {
        let (start, end) = t.time;
        let (mut starts, mut ends) = (Vec::new(), Vec::new());
        for a in edges.iter().flatten() {
            for b in edges {
                starts.push(Some(*a));
                ends.push(b);
            }
        }
        let ids = Int64Array::from_iter_values(0..starts.len() as i64);
        let mut cols: Vec<(&str, ArrayRef)> = vec![("id", Arc::new(ids)), (start, Arc::new(Int64Array::from(starts)))];
        if end != start {
            cols.push((end, Arc::new(Int64Array::from(ends))));
        }
        let ctx = SessionContext::new();
        ctx.register_batch("t", RecordBatch::try_from_iter(cols).unwrap()).unwrap();
        let ids = |batches: Vec<RecordBatch>| {
            let mut v: Vec<i64> = Rows::new("t", batches).i64_req("id").unwrap();
            v.sort_unstable();
            v
        };
        let by_expr = ctx.table("t").await.unwrap().filter(crate::dataset::range_filter(t, range)).unwrap();
        let by_expr = ids(by_expr.collect().await.unwrap());
        let sql = format!("SELECT id FROM t WHERE {}", crate::dataset::range_filter_sql(t, range));
        let by_sql = ids(ctx.sql(&sql).await.unwrap().collect().await.unwrap());
        assert!(!by_expr.is_empty(), "{}", t.name);
        assert_eq!(by_sql, by_expr, "{}: {sql}", t.name);
    }
}
