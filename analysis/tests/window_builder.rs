//! The streaming window builder on synthetic timelines with known answers.

use std::sync::Arc;

use strand_analysis::{WindowBuilder, WindowConfig};
use strand_kernels::Reducer;
use strand_schemas::{GpuSample, KernelEvent, NcclCall, Step, Table, Window};

const MS: i64 = 1_000_000;

fn kernel(gpu: i32, stream: i64, start: i64, end: i64, name: &str, launch: Option<i64>) -> KernelEvent {
    let mut k = KernelEvent::example(1);
    k.cluster = Arc::from("c");
    k.node = Arc::from("n1");
    k.pid = 100 + gpu;
    k.gpu_index = Some(gpu);
    k.gpu_uuid = Some(Arc::from(format!("GPU-{gpu}").as_str()));
    k.stream_id = stream;
    k.start_ns = start;
    k.end_ns = end;
    k.kind = if name.starts_with("Memcpy") { "memcpy".into() } else { "kernel".into() };
    k.name = Arc::from(name);
    k.category = strand_schemas::category::classify(&k.kind, name).as_str().into();
    k.launch_ns = launch;
    k.launch_tid = Some(7);
    k.source = "cupti".into();
    k
}

fn builder(period: i64, lateness: i64) -> WindowBuilder {
    let cfg =
        WindowConfig { period_ns: period, lateness_ns: lateness, launch_gap_ns: 50_000, ..WindowConfig::default() };
    WindowBuilder::new(cfg, Arc::new(Reducer::cpu())).unwrap()
}

fn sum4(w: &Window) -> i64 {
    w.compute_ns.unwrap() + w.comm_exposed_ns.unwrap() + w.memcpy_exposed_ns.unwrap() + w.idle_ns.unwrap()
}

#[test]
fn out_of_order_records_across_windows_give_exact_categories() {
    let mut b = builder(100 * MS, 50 * MS);
    // GPU 0, windows [0,100ms) and [100,200ms):
    //   compute [10,60) stream 1 and [40,130) stream 2 (crosses the boundary)
    //   comm    [120,170) — overlapped by compute on [120,130)
    //   copy    [165,180) — exposed on [170,180)
    // pushed in reverse order, in two batches.
    let mut rows = [
        kernel(0, 1, 10 * MS, 60 * MS, "gemm", Some(5 * MS)),
        kernel(0, 2, 40 * MS, 130 * MS, "attn", Some(5 * MS)),
        kernel(0, 3, 120 * MS, 170 * MS, "ncclDevKernel_AllReduce_Sum_bf16_RING_LL", Some(110 * MS)),
        kernel(0, 1, 165 * MS, 180 * MS, "Memcpy DtoH", Some(100 * MS)),
    ];
    rows.reverse();
    b.push_kernels(&rows[..2]);
    assert!(b.close_until(120 * MS).unwrap().is_empty(), "window [0,100) is still within the lateness allowance");
    b.push_kernels(&rows[2..]);
    let w = b.close_until(150 * MS).unwrap();
    assert_eq!(w.len(), 1);
    let w0 = &w[0];
    assert_eq!((w0.start_ns, w0.end_ns), (0, 100 * MS));
    assert_eq!(w0.compute_ns, Some(90 * MS));
    assert_eq!(w0.idle_ns, Some(10 * MS));
    assert_eq!(w0.kernel_count, Some(2));
    assert_eq!(w0.coverage, "cupti");
    let w = b.flush().unwrap();
    assert_eq!(w.len(), 1);
    let w1 = &w[0];
    assert_eq!(w1.compute_ns, Some(30 * MS));
    assert_eq!(w1.comm_ns, Some(50 * MS));
    assert_eq!(w1.comm_overlapped_ns, Some(10 * MS));
    assert_eq!(w1.comm_exposed_ns, Some(40 * MS));
    assert_eq!(w1.memcpy_exposed_ns, Some(10 * MS));
    assert_eq!(w1.idle_ns, Some(20 * MS));
    assert_eq!(w1.overlap_ratio, Some(0.2));
    assert_eq!(sum4(w0), 100 * MS);
    assert_eq!(sum4(w1), 100 * MS);
    // Idle of w1: [180,200) with no kernel after it → other.
    assert_eq!(w1.idle_other_ns, Some(20 * MS));
    // No NCCL call records: the comm split is unknown, not zero.
    assert_eq!((w1.sync_stall_ns, w1.comm_transfer_ns), (None, None));
}

#[test]
fn late_records_are_dropped_and_counted() {
    let mut b = builder(100 * MS, 0);
    b.push_kernels(&[kernel(0, 1, 10 * MS, 20 * MS, "gemm", None)]);
    assert_eq!(b.close_until(100 * MS).unwrap().len(), 1);
    b.push_kernels(&[kernel(0, 1, 30 * MS, 40 * MS, "gemm", None)]);
    assert_eq!(b.stats().late_rows, 1);
    let w = b.flush().unwrap();
    assert!(w.is_empty(), "nothing after the closed window: {w:?}");
}

#[test]
fn buffered_rows_are_bounded() {
    let cfg = WindowConfig { max_buffered_rows: 3, ..WindowConfig::default() };
    let mut b = WindowBuilder::new(cfg, Arc::new(Reducer::cpu())).unwrap();
    let rows: Vec<_> = (0..4).map(|i| kernel(0, 1, i * MS, i * MS + 1, "k", None)).collect();
    b.push_kernels(&rows[..2]);
    b.push_kernels(&rows[2..]);
    let s = b.stats();
    assert_eq!((s.buffered_rows, s.overflow_rows), (2, 2));
}

fn nccl(gpu: i32, seq: i64, start: i64, end: i64, bytes: i64) -> NcclCall {
    let mut c = NcclCall::example(2);
    c.cluster = Arc::from("c");
    c.node = Arc::from("n1");
    c.pid = 100 + gpu;
    c.op = "allreduce".into();
    c.comm_hash = Some(0x5eed);
    c.comm_name = None;
    c.rank = Some(gpu);
    c.nranks = Some(4);
    c.seq = Some(seq);
    c.bytes = Some(bytes);
    c.gpu_index = Some(gpu);
    c.kernel_start_ns = Some(start);
    c.kernel_end_ns = Some(end);
    c.enter_ns = start - 1000;
    c.source = "ebpf".into();
    c
}

#[test]
fn a_collective_whose_last_rank_arrives_late_stalls_every_other_rank_by_the_delay() {
    let mut b = builder(100 * MS, 10 * MS);
    // Four ranks on this node; rank 3 starts its allreduce 30 ms late; the
    // transfer itself takes 20 ms after the last arrival.
    let late = 30 * MS;
    let mut kernels = Vec::new();
    let mut calls = Vec::new();
    for gpu in 0..4 {
        let start = if gpu == 3 { 10 * MS + late } else { 10 * MS };
        let end = 10 * MS + late + 20 * MS;
        kernels.push(kernel(gpu, 9, start, end, "ncclDevKernel_AllReduce_Sum_bf16_RING_LL", Some(start - MS)));
        calls.push(nccl(gpu, 0, start, end, 64 << 20));
    }
    calls.reverse(); // the last rank's record arrives first
    b.push_kernels(&kernels);
    b.push_nccl(&calls);
    let mut w = b.flush().unwrap();
    w.sort_by_key(|w| w.gpu_index);
    assert_eq!(w.len(), 4);
    for win in &w[..3] {
        assert_eq!(win.comm_exposed_ns, Some(50 * MS));
        assert_eq!(win.sync_stall_ns, Some(late), "gpu {}", win.gpu_index);
        assert_eq!(win.comm_transfer_ns, Some(20 * MS));
        assert_eq!(win.sync_stall_estimated, Some(false));
        assert_eq!(win.ghost_ns, Some(late));
        assert!(win.coverage.contains("ebpf") && win.coverage.contains("cupti"), "{}", win.coverage);
    }
    assert_eq!((w[3].sync_stall_ns, w[3].comm_transfer_ns), (Some(0), Some(20 * MS)));
}

#[test]
fn a_collective_with_missing_peers_is_estimated_and_flagged() {
    let mut b = builder(100 * MS, 10 * MS);
    // Only two of four ranks here; seq 0 is fast (10 ms, the baseline), seq 1 takes 40 ms.
    for (seq, start, dur) in [(0, 10 * MS, 10 * MS), (1, 50 * MS, 40 * MS)] {
        for gpu in 0..2 {
            b.push_kernels(&[kernel(gpu, 9, start, start + dur, "ncclDevKernel_AllReduce", None)]);
            b.push_nccl(&[nccl(gpu, seq, start, start + dur, 8 << 20)]);
        }
    }
    let w = b.flush().unwrap();
    for win in &w {
        assert_eq!(win.sync_stall_estimated, Some(true));
        assert_eq!(win.sync_stall_ns, Some(30 * MS), "40 ms observed − 10 ms at the best bandwidth");
        assert_eq!(win.comm_exposed_ns, Some(50 * MS));
    }
}

fn sample(gpu: i32, ts: i64, rep: f64, sm: Option<f64>, pids: Vec<i32>) -> GpuSample {
    let mut s = GpuSample::example(3);
    s.cluster = Arc::from("c");
    s.node = Arc::from("n1");
    s.gpu_index = gpu;
    s.gpu_uuid = Arc::from("GPU-0");
    s.gpu_name = Arc::from("NVIDIA H100 80GB HBM3");
    s.ts_ns = ts;
    s.reported_utilization_ratio = Some(rep);
    s.sm_active_ratio = sm;
    s.tensor_active_ratio = sm.map(|x| x / 2.0);
    s.sm_clock_mhz = Some(1000);
    s.sm_clock_max_mhz = Some(2000);
    s.pids = pids;
    s
}

#[test]
fn samples_give_reported_busy_hollow_busy_and_the_tensor_estimate() {
    let cfg =
        WindowConfig { period_ns: 1000 * MS, lateness_ns: 0, sample_period_ns: 500 * MS, ..WindowConfig::default() };
    let mut b = WindowBuilder::new(cfg, Arc::new(Reducer::cpu())).unwrap();
    // Two samples cover [0,500) and [500,1000): reported 1.0 and 0.6, SM active 0.4 and 0.6.
    b.push_samples(&[sample(0, 500 * MS, 1.0, Some(0.4), vec![100]), sample(0, 1000 * MS, 0.6, Some(0.6), vec![100])]);
    // A communication kernel [100,300) is not hollow: hollow = 0.6 × (500 − 200) + 0 = 180 ms.
    b.push_kernels(&[
        kernel(0, 9, 100 * MS, 300 * MS, "ncclKernel_AllReduce", None),
        kernel(0, 1, 300 * MS, 900 * MS, "gemm", None),
    ]);
    let w = b.close_until(1000 * MS).unwrap();
    assert_eq!(w.len(), 1);
    let w = &w[0];
    assert_eq!(w.reported_busy_ns, Some(800 * MS));
    assert!((w.reported_utilization_ratio.unwrap() - 0.8).abs() < 1e-12);
    assert!((w.sm_active_ratio.unwrap() - 0.5).abs() < 1e-12);
    assert_eq!(w.hollow_busy_ns, Some(180 * MS));
    // tensor active 0.2/0.3 at half clock → estimate 0.125.
    assert!((w.tensor_estimate.unwrap() - 0.125).abs() < 1e-12);
    assert_eq!(w.coverage, "nvml,gpm,cupti");
    assert_eq!(w.mfu, None, "no model FLOPs, no MFU");
    assert_eq!(w.gpu_name.as_deref(), Some("NVIDIA H100 80GB HBM3"));
}

#[test]
fn mfu_from_marker_steps_prorated_over_windows() {
    let mut b = builder(1000 * MS, 0);
    b.push_samples(&[sample(0, 1000 * MS, 1.0, None, vec![100]), sample(0, 2000 * MS, 1.0, None, vec![100])]);
    // One 1.5 s step from 0.5 s to 2 s with 1.4844e15 FLOPs (bf16 on an H100: peak 989.5 TF/s).
    let mut st = Step::example(4);
    st.cluster = Arc::from("c");
    st.node = Arc::from("n1");
    st.pid = Some(100);
    st.gpu_index = None; // resolved through the pid seen in samples
    st.phase = "step".into();
    st.start_ns = 500 * MS;
    st.end_ns = 2000 * MS;
    st.model_flops = Some(1.4843e15);
    st.dtype = Some("bf16".into());
    st.source = "marker".into();
    b.push_steps(&[st]);
    let w = b.flush().unwrap();
    assert_eq!(w.len(), 2);
    let flops = 1.4843e15;
    assert!((w[0].model_flops.unwrap() - flops / 3.0).abs() < 1.0);
    assert!((w[1].model_flops.unwrap() - flops * 2.0 / 3.0).abs() < 1.0);
    assert_eq!(w[1].peak_flops_per_s, Some(989.5e12));
    assert!((w[1].mfu.unwrap() - flops * 2.0 / 3.0 / 989.5e12).abs() < 1e-9);
    assert!(w[0].coverage.contains("markers"));
}

#[test]
fn idle_without_a_process_and_during_checkpoints() {
    let cfg =
        WindowConfig { period_ns: 1000 * MS, lateness_ns: 0, sample_period_ns: 250 * MS, ..WindowConfig::default() };
    let mut b = WindowBuilder::new(cfg, Arc::new(Reducer::cpu())).unwrap();
    b.push_samples(&[
        sample(0, 250 * MS, 0.5, None, vec![100]),
        sample(0, 500 * MS, 0.0, None, vec![100]),
        sample(0, 750 * MS, 0.0, None, vec![]),
        sample(0, 1000 * MS, 0.0, None, vec![]),
    ]);
    let mut exit = strand_schemas::ProcessEvent::example(5);
    exit.node = Arc::from("n1");
    exit.kind = "exit".into();
    exit.pid = 100;
    exit.ts_ns = 600 * MS;
    b.push_process(&[exit]);
    let mut ck = Step::example(6);
    ck.node = Arc::from("n1");
    ck.pid = Some(100);
    ck.gpu_index = Some(0);
    ck.phase = "checkpoint_save".into();
    ck.start_ns = 300 * MS;
    ck.end_ns = 450 * MS;
    ck.model_flops = None;
    ck.source = "marker".into();
    b.push_steps(&[ck]);
    b.push_kernels(&[kernel(0, 1, 0, 200 * MS, "gemm", Some(0))]);
    let w = b.close_until(1000 * MS).unwrap();
    let w = &w[0];
    assert_eq!(w.idle_ns, Some(800 * MS));
    assert_eq!(w.idle_no_process_ns, Some(400 * MS), "from the exit at 600 ms");
    assert_eq!(w.idle_io_blocked_ns, Some(150 * MS));
    assert_eq!(w.idle_other_ns, Some(250 * MS));
    assert_eq!(w.idle_host_bound_ns, None, "no kernel ends a gap: launch times unknown");
    assert_eq!(
        w.idle_launch_gap_ns.unwrap()
            + w.idle_io_blocked_ns.unwrap()
            + w.idle_no_process_ns.unwrap()
            + w.idle_other_ns.unwrap(),
        w.idle_ns.unwrap()
    );
}

#[test]
fn without_kernel_records_nvml_splits_the_window_into_reported_busy_and_idle() {
    let mut b = builder(1000 * MS, 0);
    b.push_samples(&[sample(0, 1000 * MS, 0.0, None, vec![])]);
    let w = b.close_until(1000 * MS).unwrap();
    assert_eq!(
        (w[0].idle_ns, w[0].idle_no_process_ns, w[0].split_source.as_deref()),
        (Some(1000 * MS), Some(1000 * MS), Some("nvml"))
    );
    // Busy per NVML but no kernel records: the kernel categories are not
    // measured, the split into reported busy and idle is, and says so.
    let mut b = builder(1000 * MS, 0);
    b.push_samples(&[sample(0, 1000 * MS, 0.7, None, vec![1])]);
    let w = &b.close_until(1000 * MS).unwrap()[0];
    assert_eq!(
        (w.compute_ns, w.reported_busy_ns, w.idle_ns, w.idle_other_ns),
        (None, Some(700 * MS), Some(300 * MS), Some(300 * MS))
    );
    assert_eq!(
        (w.idle_host_bound_ns, w.idle_launch_gap_ns, w.coverage.as_str(), w.split_source.as_deref()),
        (None, None, "nvml", Some("nvml"))
    );
    let mut t = strand_analysis::GpuTime::new();
    t.update(w, None);
    assert_eq!(
        (t.leaf(strand_analysis::Leaf::BusyUnclassified), t.leaf(strand_analysis::Leaf::IdleOther)),
        (700 * MS, 300 * MS)
    );
}

#[test]
fn rows_of_gpus_without_windows_do_not_pile_up() {
    // Collectives of a GPU that has neither kernel records nor samples: their
    // stall intervals are resolved, find no window, and are let go.
    let mut b = builder(100 * MS, 0);
    for seq in 0..50 {
        b.push_nccl(&[nccl(5, seq, seq * MS, seq * MS + MS / 2, 1 << 20)]);
    }
    assert!(b.close_until(1000 * MS).unwrap().is_empty());
    assert_eq!(b.stats().buffered_rows, 0);
}

/// The kernel summary counts every record once, in the window that first
/// used it: summed over windows it is the aggregate of the records, however
/// they were batched and whatever window boundaries they cross.
#[test]
fn kernel_summaries_add_up_to_the_records_once_each() {
    use std::collections::BTreeMap;
    let mut b = builder(100 * MS, 50 * MS);
    let names = ["gemm", "attn", "ncclDevKernel_AllReduce_Sum_bf16_RING_LL", "Memcpy DtoH"];
    let mut rows = Vec::new();
    let mut rng = 7u64;
    for i in 0..2000i64 {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let start = i * 250_000 + (rng >> 40) as i64 % 100_000;
        let dur = 10_000 + (rng >> 20) as i64 % (30 * MS); // some cross a window boundary
        rows.push(kernel((i % 2) as i32, i % 3, start, start + dur, names[(rng >> 60) as usize % 4], None));
    }
    let mut expect: BTreeMap<(i32, String), (i64, i64, i64, i64)> = BTreeMap::new();
    for k in &rows {
        let e = expect.entry((k.gpu_index.unwrap(), k.name.to_string())).or_insert((0, 0, i64::MAX, 0));
        let d = k.end_ns - k.start_ns;
        *e = (e.0 + 1, e.1 + d, e.2.min(d), e.3.max(d));
    }
    let mut got: BTreeMap<(i32, String), (i64, i64, i64, i64)> = BTreeMap::new();
    let mut windows = 0;
    for (n, chunk) in rows.chunks(300).enumerate() {
        b.push_kernels(chunk);
        windows += b.close_until(chunk[0].start_ns + n as i64 * MS).unwrap().len();
        for s in b.take_kernel_summaries() {
            assert!(s.start_ns < s.end_ns && s.end_ns - s.start_ns <= 100 * MS);
            let e = got.entry((s.gpu_index, s.name.to_string())).or_insert((0, 0, i64::MAX, 0));
            *e = (e.0 + s.count, e.1 + s.total_ns, e.2.min(s.min_ns), e.3.max(s.max_ns));
        }
    }
    windows += b.flush().unwrap().len();
    for s in b.take_kernel_summaries() {
        let e = got.entry((s.gpu_index, s.name.to_string())).or_insert((0, 0, i64::MAX, 0));
        *e = (e.0 + s.count, e.1 + s.total_ns, e.2.min(s.min_ns), e.3.max(s.max_ns));
        assert_eq!(
            s.category,
            if s.name.starts_with("nccl") {
                "communication"
            } else if s.name.starts_with("Memcpy") {
                "copy"
            } else {
                "compute"
            }
        );
    }
    assert!(windows > 10);
    assert_eq!(b.stats().late_rows, 0);
    assert_eq!(got, expect);
    assert!(b.take_kernel_summaries().is_empty(), "rows are taken once");
}
