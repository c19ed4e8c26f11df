//! Postmortem tests on the real Kineto traces (`../shared/data/kineto`) and
//! on synthetic datasets: the figures equal a direct recount of the imported
//! rows, the reports render, broken inputs are refused by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strand_analysis::Leaf;
use strand_analysis::accounting::Group;
use strand_schemas::{KernelEvent, read_file};

use super::*;
use crate::run::auto_window;

pub use crate::tests_support::kineto_dir;

fn args(inputs: Vec<PathBuf>, _out: &Path) -> PostmortemOptions {
    PostmortemOptions {
        run: RunOptions {
            inputs,
            job: None,
            window_ns: None,
            launch_gap_ns: 30_000,
            lateness_ns: None,
            sample_period_ns: 1_000_000_000,
            kineto: crate::kineto::KinetoOptions { cluster: "kineto".into(), ..Default::default() },
            flops_per_step: None,
            dtype: None,
            gpu_name: None,
            peaks: Default::default(),
            progress: false,
            comm_kernels: Default::default(),
        },
        backend: strand_kernels::Backend::Cpu,
        top_kernels: 10,
        thresholds: Default::default(),
    }
}

/// Every Parquet file under `dir`.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
}

fn merged(mut v: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    v.retain(|(s, e)| e > s);
    v.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (s, e) in v {
        match out.last_mut() {
            Some(l) if s <= l.1 => l.1 = l.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn len(v: &[(i64, i64)]) -> i64 {
    v.iter().map(|(s, e)| e - s).sum()
}

fn intersect(a: &[(i64, i64)], b: &[(i64, i64)]) -> i64 {
    let (mut i, mut j, mut t) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let (lo, hi) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if hi > lo {
            t += hi - lo;
        }
        if a[i].1 < b[j].1 { i += 1 } else { j += 1 }
    }
    t
}

fn kernels_of(dir: &Path) -> Vec<KernelEvent> {
    let mut files = Vec::new();
    walk(&dir.join("kernel_events"), &mut files);
    files.iter().flat_map(|f| read_file::<KernelEvent>(f).unwrap()).collect()
}

#[test]
fn figures_on_real_traces_equal_a_direct_recount() {
    let data = kineto_dir();
    let traces: Vec<PathBuf> = [
        "nccl_2rank_a100_rank0",
        "sampled_world128_rank0",
        "sampled_world128_rank1",
        "alexnet_single_gpu",
        "event_sync_multi_stream",
    ]
    .iter()
    .map(|n| data.join(format!("{n}.json.gz")))
    .collect();
    let tmp = tempfile::tempdir().unwrap();
    // Import once to recount from the rows; the postmortem imports on its own.
    crate::import::import_kineto(&crate::import::ImportOptions {
        traces: traces.clone(),
        out: tmp.path().join("ds"),
        cluster: "kineto".into(),
        node: None,
        job: None,
        hta_scope: false,
        comm_kernels: Default::default(),
        max_json_value: None,
        window_ns: 10_000_000_000,
        launch_gap_ns: 30_000,
        backend: strand_kernels::Backend::Cpu,
    })
    .unwrap();
    let rows = kernels_of(&tmp.path().join("ds"));
    let report = postmortem(&args(traces, &tmp.path().join("pm"))).unwrap();
    let mut by_gpu: BTreeMap<(String, i32), Vec<&KernelEvent>> = BTreeMap::new();
    for k in &rows {
        by_gpu.entry((k.node.to_string(), k.gpu_index.unwrap())).or_default().push(k);
    }
    assert_eq!(report.gpus.len(), by_gpu.len(), "one GPU per rank trace here");
    for g in &report.gpus {
        let ks = &by_gpu[&(g.node.clone(), g.gpu_index)];
        let iv = |cat: &str| merged(ks.iter().filter(|k| k.category == cat).map(|k| (k.start_ns, k.end_ns)).collect());
        let (c, m) = (iv("compute"), iv("communication"));
        let all = merged(ks.iter().map(|k| (k.start_ns, k.end_ns)).collect());
        let cm = merged(c.iter().chain(m.iter()).copied().collect());
        let first = ks.iter().map(|k| k.start_ns).min().unwrap();
        let last = ks.iter().map(|k| k.end_ns).max().unwrap();
        let t = &g.time;
        let label = format!("{} gpu {}", g.node, g.gpu_index);
        assert_eq!((g.start_ns, g.end_ns), (first, last), "{label}: the run of a GPU is its first to last activity");
        assert_eq!(t.powered_ns(), last - first, "{label}");
        assert_eq!(g.kernel_records, ks.len() as u64, "{label}: each record counted once");
        assert!(t.int("kernel_count") >= ks.len() as i64, "{label}: per-window counts count a spanning record twice");
        assert_eq!(t.int("kernels_ns"), last - first, "{label}: kernel records split all of it");
        assert_eq!(t.int("compute_ns"), len(&c), "{label}");
        assert_eq!(t.int("comm_ns"), len(&m), "{label}");
        assert_eq!(t.int("comm_exposed_ns"), len(&cm) - len(&c), "{label}");
        assert_eq!(t.int("memcpy_exposed_ns"), len(&all) - len(&cm), "{label}");
        assert_eq!(t.int("idle_ns"), t.powered_ns() - len(&all), "{label}");
        assert_eq!(t.int("comm_overlapped_ns"), intersect(&m, &c), "{label}");
        assert_eq!(t.group(Group::Idle), t.int("idle_ns"), "{label}: idle classes add up");
        assert_eq!(
            strand_analysis::LEAVES.iter().map(|l| t.leaf(*l)).sum::<i64>(),
            t.powered_ns(),
            "{label}: the leaves add up"
        );
        // HTA's per-stream view, recounted: gaps between consecutive records of a stream.
        let mut streams: BTreeMap<i64, Vec<&&KernelEvent>> = BTreeMap::new();
        for k in ks {
            streams.entry(k.stream_id).or_default().push(k);
        }
        let (mut host, mut kw, mut other) = (0, 0, 0);
        for v in streams.values_mut() {
            v.sort_by_key(|k| (k.start_ns, k.end_ns));
            for w in v.windows(2) {
                let gap = w[1].start_ns - w[0].end_ns;
                if gap <= 0 {
                    continue;
                }
                if w[1].launch_ns.is_some_and(|l| l > w[0].end_ns) {
                    host += gap;
                } else if gap < 30_000 {
                    kw += gap;
                } else {
                    other += gap;
                }
            }
        }
        let s = &g.stream_idle_total;
        assert_eq!((s.host_wait_ns, s.kernel_wait_ns, s.other_ns), (host, kw, other), "{label}: per-stream idle");
    }
    assert_eq!(report.kernel_records, rows.len() as u64);
    // The run totals are the sums over GPUs.
    assert_eq!(report.run.powered_ns(), report.gpus.iter().map(|g| g.time.powered_ns()).sum::<i64>());
    // Kineto steps became step series; the traces without NCCL metadata have no comm split.
    assert!(report.steps.iter().any(|s| s.source == "kineto" && s.steps.len() == 3));
    let nccl = report
        .gpus
        .iter()
        .find(|g| g.node == "nccl_2rank_a100_rank0" && g.time.int("comm_ns") > 0)
        .expect("the NCCL trace has communication");
    assert!(nccl.time.int("sync_stall_estimated_ns") > 0, "one rank of two: the split is estimated");
}

#[test]
fn reports_render_self_contained_and_without_broken_numbers() {
    let data = kineto_dir();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pm");
    let report = postmortem(&args(vec![data.join("nccl_2rank_a100_rank0.json.gz")], &out)).unwrap();
    write_outputs(&out, &report).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for bad in ["NaN", "inf\"", "src=", "href=", "<script", "http://", "https://"] {
        assert!(!html.contains(bad), "report.html contains {bad:?}");
    }
    assert!(html.matches("<svg").count() >= 6, "every chart is inline SVG");
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("| compute (") && md.contains("## Top kernels by time") && md.contains("## Findings"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["gpus"][0]["time"]["powered_s"], serde_json::json!(report.gpus[0].time.powered_ns() as f64 * 1e-9));
    assert!(json["buckets"].as_array().unwrap().len() > 10);
}

#[test]
fn mfu_from_job_config_flops() {
    let data = kineto_dir();
    let tmp = tempfile::tempdir().unwrap();
    let mut a = args(vec![data.join("nccl_2rank_a100_rank0.json.gz")], &tmp.path().join("pm"));
    // 3 profiler steps of 1e12 FLOPs each in fp32 on the trace's A100 (19.5 TFLOP/s).
    a.run.dtype = Some("fp32".into());
    a.run.flops_per_step = Some(1e12);
    let r = postmortem(&a).unwrap();
    let t = &r.run;
    let state = t.state();
    let flops = match state.iter().find(|(n, _)| *n == "model_flops").unwrap().1 {
        strand_analysis::accounting::Value::Float(f) => f,
        v => panic!("{v:?}"),
    };
    let steps = &r.steps[0];
    // Steps outside the GPU's active span contribute only their overlapping part.
    assert!(flops > 0.0 && flops <= 3e12 + 1.0, "{flops}");
    let expected = flops / (19.5e12 * t.powered_ns() as f64 * 1e-9);
    assert!((t.mfu().unwrap() - expected).abs() < 1e-9, "{:?} vs {expected}", t.mfu());
    assert_eq!(steps.steps.len(), 3);
}

#[test]
fn broken_inputs_are_refused_by_name() {
    let data = kineto_dir();
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(data.join("sampled_world128_rank0.json.gz")).unwrap();
    let truncated = tmp.path().join("truncated.json.gz");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let e = format!("{:#}", postmortem(&args(vec![truncated.clone()], &tmp.path().join("o1"))).unwrap_err());
    assert!(e.contains("truncated.json.gz: truncated: the gzip stream ends early"), "{e}");
    // Whole gzip, cut JSON inside.
    let json = {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&good[..]), &mut s).unwrap();
        s
    };
    let cut = tmp.path().join("cut.json");
    std::fs::write(&cut, &json[..json.len() / 3]).unwrap();
    let e = format!("{:#}", postmortem(&args(vec![cut], &tmp.path().join("o1b"))).unwrap_err());
    assert!(e.contains("cut.json: truncated: the trace ends before the JSON does (line"), "{e}");
    let mut corrupt = good.clone();
    for b in corrupt[100..400].iter_mut() {
        *b ^= 0x5a;
    }
    let corrupt_path = tmp.path().join("corrupt.json.gz");
    std::fs::write(&corrupt_path, &corrupt).unwrap();
    let e = format!("{:#}", postmortem(&args(vec![corrupt_path], &tmp.path().join("o2"))).unwrap_err());
    assert!(e.contains("corrupt.json.gz"), "{e}");
    let v2 = tmp.path().join("v2.json");
    std::fs::write(&v2, r#"{"schemaVersion": 2, "traceEvents": []}"#).unwrap();
    let e = format!("{:#}", postmortem(&args(vec![v2], &tmp.path().join("o3"))).unwrap_err());
    assert!(e.contains("v2.json: Kineto schemaVersion 2 is not supported"), "{e}");
    let junk = tmp.path().join("junk.parquet");
    std::fs::write(&junk, b"PAR1 not really").unwrap();
    let e = format!("{:#}", postmortem(&args(vec![junk], &tmp.path().join("o4"))).unwrap_err());
    assert!(e.contains("junk.parquet"), "{e}");
    let e = format!("{:#}", postmortem(&args(vec![tmp.path().join("missing")], &tmp.path().join("o5"))).unwrap_err());
    assert!(e.contains("missing: no such file or directory"), "{e}");
}

#[test]
fn exact_sync_stall_across_ranks_from_parquet() {
    // Two ranks on two nodes, one allreduce; rank 1 is 3 ms late. Written as
    // the agent would, then read back by the postmortem.
    use std::sync::Arc;
    use strand_schemas::{NcclCall, Table};
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    const MS: i64 = 1_000_000;
    let t0 = 1_735_689_600_000_000_000i64;
    for rank in 0..2 {
        let node = format!("n{rank}");
        let start = t0 + 10 * MS + rank as i64 * 3 * MS;
        let end = t0 + 20 * MS;
        let mut k = KernelEvent::example(1);
        k.node = Arc::from(node.as_str());
        k.gpu_index = Some(0);
        k.start_ns = start;
        k.end_ns = end;
        k.kind = "kernel".into();
        k.name = Arc::from("ncclDevKernel_AllReduce_Sum_f32_RING_LL");
        k.category = "communication".into();
        k.source = "cupti".into();
        let mut c = k.clone();
        c.name = Arc::from("gemm");
        c.category = "compute".into();
        c.start_ns = t0;
        c.end_ns = t0 + 5 * MS;
        let mut n = NcclCall::example(2);
        n.node = k.node.clone();
        n.op = "allreduce".into();
        n.comm_hash = Some(77);
        n.seq = Some(0);
        n.rank = Some(rank);
        n.nranks = Some(2);
        n.gpu_index = Some(0);
        n.bytes = Some(1 << 20);
        n.enter_ns = start - MS;
        n.kernel_start_ns = Some(start);
        n.kernel_end_ns = Some(end);
        strand_schemas::hive::write_partitioned(&ds, "c", &node, "b", &[k, c], |k| k.start_ns).unwrap();
        strand_schemas::hive::write_partitioned(&ds, "c", &node, "b", &[n], |n| n.enter_ns).unwrap();
    }
    let r = postmortem(&args(vec![ds], &tmp.path().join("pm"))).unwrap();
    let stall: Vec<_> = r
        .gpus
        .iter()
        .map(|g| (g.node.clone(), g.time.leaf(Leaf::SyncStall), g.time.int("sync_stall_estimated_ns")))
        .collect();
    assert_eq!(stall, vec![("n0".to_string(), 3 * MS, 0), ("n1".to_string(), 0, 0)]);
    assert_eq!(KernelEvent::NAME, "kernel_events");
}

#[test]
fn auto_windows_are_round() {
    assert_eq!(auto_window(435_586_000, 150), 5_000_000);
    assert_eq!(auto_window(3600 * 1_000_000_000, 150), 50_000_000_000);
    assert_eq!(auto_window(10, 150), 1_000_000);
}

/// Writes a Kineto trace (as JSON) to `path`.
pub(crate) fn write_trace(path: &Path, trace: &serde_json::Value) {
    std::fs::write(path, serde_json::to_vec(trace).unwrap()).unwrap();
}

/// A kernel of every communication library of the table, with the names
/// Kineto gives them (demangled), and one of an in-house library named with
/// `--comm-kernel`: communication in the import's rows and in the
/// postmortem, whose split into transfer and stall is unknown (no collective
/// identity, one rank), never counted as compute.
#[test]
fn kernels_of_every_communication_library_are_communication_in_the_import_and_the_postmortem() {
    const NAMES: &[&str] = &[
        "ncclDevKernel_Generic(ncclDevKernelArgsStorage<4096ul>)",
        "mscclKernel_Sum_float_LL(ncclDevComm*, mscclAlgo*, mscclWork*)",
        "void mscclpp::executionKernel<__half>(int, __half*, __half*, __half*, unsigned int, unsigned long, mscclpp::DeviceExecutionPlan*, unsigned int, unsigned int)",
        "void rdxn_on_stream_kernel<float, (rdxn_ops_t)4>(int, float*, float const*, unsigned long, int)",
        "void deep_ep::intranode::dispatch<8, 768, 8192>(int4*, float*, int*, long*, float*, int*, int*, int4 const*, float const*, long const*, float const*, bool const*, int const*, int, int, int, int, int, int, int, int, void**, int, int, int)",
        "void deep_ep::internode_ll::combine<false, 7168, 9, 8>(void*, void*, int*, void*, void const*, long const*, float const*, int const*, int*, int*, long*, int*, int, int*, int, int, int, int, int, int, int, int, int, int, bool)",
        "void (anonymous namespace)::multimem_all_reduce_kernel<float, 16>(float*, unsigned long, unsigned int**, unsigned long, unsigned long)",
        "void vllm::cross_device_reduce_1stage<__nv_bfloat16, 8>(vllm::RankData*, vllm::RankSignals, vllm::Signal*, __nv_bfloat16*, int, int)",
        "void tensorrt_llm::kernels::ar_fusion::allreduce_fusion_kernel_oneshot_lamport<(tensorrt_llm::kernels::ar_fusion::AllReduceFusionPattern)1, __nv_bfloat16, 8, true, true>(tensorrt_llm::kernels::ar_fusion::AllReduceFusionParams<__nv_bfloat16>)",
        "void userbuffers_fp16_sum_inplace_gpu_rr_rs<8>(int, int, int, int, int, int, int, void**, int, unsigned long)",
        "void allreduce_kernel_vec32<NvlsSumOps<float> >(ucc_tl_cuda_nvls_control_t*, ucc_tl_cuda_nvls_control_t*, unsigned int, unsigned long, unsigned int*, unsigned long, unsigned int, unsigned int)",
        "acme_allreduce_bf16(void*)",
    ];
    const GEMM: &str = "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64";
    let mut events = Vec::new();
    // One kernel of each library, back to back, 5 µs each, then a GEMM, each launched.
    for (i, name) in NAMES.iter().chain([&GEMM]).enumerate() {
        let ts = 100 + 5 * i as i64;
        events
            .push(serde_json::json!({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 2,
            "ts": ts - 50, "dur": 1, "args": {"correlation": i}}));
        events
            .push(serde_json::json!({"ph": "X", "cat": "kernel", "name": name, "pid": 0, "tid": 7, "ts": ts, "dur": 5,
            "args": {"device": 0, "stream": 7, "correlation": i}}));
    }
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("libs.json");
    write_trace(&trace, &serde_json::json!({"schemaVersion": 1, "traceEvents": events}));
    let comm = std::sync::Arc::new(
        strand_schemas::comm_kernels::CommKernels::with_patterns(&["^acme_allreduce".to_string()]).unwrap(),
    );
    crate::import::import_kineto(&crate::import::ImportOptions {
        traces: vec![trace.clone()],
        out: tmp.path().join("ds"),
        cluster: "kineto".into(),
        node: None,
        job: None,
        hta_scope: false,
        comm_kernels: comm.clone(),
        max_json_value: None,
        window_ns: 10_000_000_000,
        launch_gap_ns: 30_000,
        backend: strand_kernels::Backend::Cpu,
    })
    .unwrap();
    let rows = kernels_of(&tmp.path().join("ds"));
    assert_eq!(rows.len(), NAMES.len() + 1);
    for k in &rows {
        let want = if &*k.name == GEMM { "compute" } else { "communication" };
        assert_eq!(k.category, want, "{}", k.name);
    }
    let mut a = args(vec![trace], &tmp.path().join("pm"));
    a.run.comm_kernels = comm;
    let r = postmortem(&a).unwrap();
    let t = &r.gpus[0].time;
    let comm_ns = 5_000 * NAMES.len() as i64;
    assert_eq!((t.int("comm_ns"), t.int("comm_exposed_ns"), t.int("compute_ns")), (comm_ns, comm_ns, 5_000));
    assert_eq!(t.leaf(Leaf::CommSplitUnknown), comm_ns, "no collective identity, one rank: split unknown");
    assert_eq!((t.leaf(Leaf::CommTransfer), t.leaf(Leaf::SyncStall)), (0, 0), "never guessed");
    // Without the in-house pattern, its kernel is compute.
    let r = postmortem(&args(vec![tmp.path().join("libs.json")], &tmp.path().join("pm2"))).unwrap();
    assert_eq!(r.gpus[0].time.int("comm_ns"), comm_ns - 5_000);
}

/// The collective metadata a Kineto kernel record of newer PyTorch carries.
const COLLECTIVE_ARGS: &[&str] = &[
    "Collective name",
    "In msg nelems",
    "Out msg nelems",
    "Group size",
    "dtype",
    "In split size",
    "Out split size",
    "Process Group Name",
    "Process Group Description",
    "Process Group Ranks",
    "Seq",
];

/// The real 2-rank NCCL trace as older PyTorch writes it (no collective
/// metadata on the kernels), as rank `rank`.
pub(crate) fn without_collective_metadata(rank: i64) -> serde_json::Value {
    let gz = std::fs::read(kineto_dir().join("nccl_2rank_a100_rank0.json.gz")).unwrap();
    let mut v: serde_json::Value = serde_json::from_reader(flate2::read::GzDecoder::new(&gz[..])).unwrap();
    for e in v["traceEvents"].as_array_mut().unwrap() {
        if let Some(args) = e.get_mut("args").and_then(|a| a.as_object_mut()) {
            args.retain(|k, _| !COLLECTIVE_ARGS.contains(&k.as_str()));
        }
    }
    v["distributedInfo"] = serde_json::json!({"backend": "nccl", "rank": rank, "world_size": 2});
    v
}

/// The NCCL kernel events of a trace, in time order (indices into `traceEvents`).
pub(crate) fn nccl_kernels(v: &serde_json::Value) -> Vec<usize> {
    let ev = v["traceEvents"].as_array().unwrap();
    let mut idx: Vec<usize> = (0..ev.len())
        .filter(|&i| ev[i]["cat"] == "kernel" && ev[i]["name"].as_str().is_some_and(|n| n.starts_with("nccl")))
        .collect();
    idx.sort_by(|a, b| ev[*a]["ts"].as_f64().partial_cmp(&ev[*b]["ts"].as_f64()).unwrap());
    idx
}

/// Two ranks of a real NCCL job whose kernels carry no collective metadata
/// (older PyTorch): rank 1 arrives 100 µs late at one all-reduce. Its
/// kernels are matched with rank 0's by their order; rank 0's sync stall is
/// exactly rank 1's lateness, the instances say `matched_by = order`, and all
/// communication time is split. With one kernel missing on rank 1 the match
/// is refused, said in a note, and the split is unknown instead.
#[test]
fn ranks_without_collective_metadata_are_matched_by_order_and_a_late_rank_stalls_its_peer_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let r0 = without_collective_metadata(0);
    assert!(!serde_json::to_string(&r0).unwrap().contains("Collective name"));
    let mut r1 = without_collective_metadata(1);
    let nccl = nccl_kernels(&r0);
    assert_eq!(nccl.len(), 21);
    // An all-reduce whose first 100 µs on rank 0 no other GPU record overlaps: rank 1 starts it 100 µs later.
    let ev0 = r0["traceEvents"].as_array().unwrap();
    let others: Vec<(f64, f64)> = ev0
        .iter()
        .filter(|e| matches!(e["cat"].as_str(), Some("kernel" | "gpu_memcpy" | "gpu_memset")))
        .filter(|e| !e["name"].as_str().unwrap_or("").starts_with("nccl"))
        .map(|e| (e["ts"].as_f64().unwrap(), e["ts"].as_f64().unwrap() + e["dur"].as_f64().unwrap()))
        .collect();
    let late = *nccl
        .iter()
        .find(|&&i| {
            let (ts, dur) = (ev0[i]["ts"].as_f64().unwrap(), ev0[i]["dur"].as_f64().unwrap());
            dur > 300.0 && others.iter().all(|(s, e)| *e <= ts || *s >= ts + 200.0)
        })
        .expect("an all-reduce with exposed time");
    let e = &mut r1["traceEvents"][late];
    e["ts"] = serde_json::json!(e["ts"].as_f64().unwrap() + 100.0);
    e["dur"] = serde_json::json!(e["dur"].as_f64().unwrap() - 100.0);
    let corr = ev0[late]["args"]["correlation"].as_i64().unwrap();
    let (p0, p1) = (tmp.path().join("rank0.json"), tmp.path().join("rank1.json"));
    write_trace(&p0, &r0);
    write_trace(&p1, &r1);

    // The matched instances, as the postmortem's matcher builds them.
    let opts = crate::kineto::KinetoOptions { cluster: "kineto".into(), ..Default::default() };
    let table = strand_schemas::comm_kernels::CommKernels::default();
    let mut records = Vec::new();
    let mut late_start = Vec::new();
    for p in [&p0, &p1] {
        let t = crate::kineto::read_trace(p, &opts).unwrap();
        assert!(t.nccl.is_empty(), "no call has a collective identity");
        let ks: Vec<KernelEvent> = t.kernels().into_iter().filter(|k| k.category == "communication").collect();
        assert_eq!(ks.len(), 21);
        late_start.push(ks.iter().find(|k| k.correlation_id == corr).unwrap().start_ns);
        for k in &ks {
            let m = table.lookup(&k.name).unwrap();
            records.extend(strand_analysis::collective::CollectiveRecord::from_kernel(k, &m, t.rank, None));
        }
    }
    let lateness = late_start[1] - late_start[0];
    assert!((99_999..=100_001).contains(&lateness), "{lateness}");
    let mut stats = strand_analysis::collective::MatchStats::default();
    let (ordered, refused) = strand_analysis::collective::order_by_position(records, &mut stats);
    assert!(refused.is_empty(), "{refused:?}");
    let rows =
        strand_analysis::collective::match_all(&strand_kernels::Reducer::cpu(), &[], &ordered, &mut stats).unwrap();
    assert_eq!(rows.len(), 42, "21 instances of 2 ranks");
    assert!(rows.iter().all(|r| r.matched_by.as_deref() == Some("order")));
    let stalled: Vec<(String, i64)> =
        rows.iter().filter(|r| r.stall_ns > 0).map(|r| (r.node.to_string(), r.stall_ns)).collect();
    assert_eq!(stalled, [("rank0".to_string(), lateness)]);

    // The postmortem: rank 0 stalls exactly that long, rank 1 not at all, nothing is unknown.
    let r = postmortem(&args(vec![p0.clone(), p1.clone()], &tmp.path().join("pm"))).unwrap();
    let by_node = |r: &Report, n: &str| r.gpus.iter().find(|g| g.node == n).unwrap().time.clone();
    let (t0, t1) = (by_node(&r, "rank0"), by_node(&r, "rank1"));
    assert_eq!((t0.leaf(Leaf::SyncStall), t0.int("sync_stall_estimated_ns")), (lateness, 0), "{:?}", r.notes);
    assert_eq!(t1.leaf(Leaf::SyncStall), 0);
    for t in [&t0, &t1] {
        assert_eq!(t.leaf(Leaf::CommSplitUnknown), 0);
        assert_eq!(t.leaf(Leaf::CommTransfer) + t.leaf(Leaf::SyncStall), t.int("comm_exposed_ns"));
    }
    assert_eq!(r.collectives.order_kinds_matched, 2, "the all-reduce and the broadcast kernels");
    assert!(r.notes.iter().any(|n| n.contains("matched_by = order")), "{:?}", r.notes);

    // Rank 1 lost one all-reduce: refused, said, and nothing is guessed.
    r1["traceEvents"].as_array_mut().unwrap().remove(late);
    write_trace(&p1, &r1);
    let r = postmortem(&args(vec![p0, p1], &tmp.path().join("pm2"))).unwrap();
    assert!(
        r.notes.iter().any(|n| n.contains("ncclKernel_AllReduce") && n.contains("not matched by order")),
        "{:?}",
        r.notes
    );
    let t0 = by_node(&r, "rank0");
    assert_eq!(t0.leaf(Leaf::SyncStall), 0);
    assert!(t0.leaf(Leaf::CommSplitUnknown) > 0);
}

/// One rank's trace (older category names) with one profiler step, one
/// launched kernel and one whose launch is not in the trace.
fn one_step_trace(rank: i64, step: i64) -> serde_json::Value {
    serde_json::json!({"schemaVersion": 1, "distributedInfo": {"rank": rank, "world_size": 2}, "traceEvents": [
        {"ph": "X", "cat": "Operator", "name": format!("ProfilerStep#{step}"), "pid": 5, "tid": 6, "ts": 0, "dur": 100},
        {"ph": "X", "cat": "Runtime", "name": "cudaLaunchKernel", "pid": 5, "tid": 6, "ts": 10, "dur": 2, "args": {"correlation": 1}},
        {"ph": "X", "cat": "Kernel", "name": "gemm", "pid": 0, "tid": 7, "ts": 20, "dur": 10, "args": {"device": 0, "stream": 7, "correlation": 1}},
        {"ph": "X", "cat": "Kernel", "name": "gemm", "pid": 0, "tid": 7, "ts": 40, "dur": 10, "args": {"device": 0, "stream": 7, "correlation": 2}}
    ]})
}

/// `--hta-scope` leaves out GPU records without a launch only when the
/// analysed set has two or more distinct `ProfilerStep#` names over all its
/// ranks, as HTA does: each rank alone keeps both kernels, the two ranks
/// together (steps #1 and #2) keep the launched one. A trace whose every
/// record is left out is refused with an error naming the filter.
#[test]
fn hta_scope_drops_records_without_a_launch_only_with_two_step_names_over_the_set() {
    let tmp = tempfile::tempdir().unwrap();
    let (p0, p1) = (tmp.path().join("r0.json"), tmp.path().join("r1.json"));
    write_trace(&p0, &one_step_trace(0, 1));
    write_trace(&p1, &one_step_trace(1, 2));
    let scoped = |inputs: Vec<PathBuf>, out: &str| {
        let mut a = args(inputs, &tmp.path().join(out));
        a.run.kineto.hta_scope = true;
        postmortem(&a)
    };
    let busy = |r: &Report| r.gpus.iter().map(|g| g.time.int("compute_ns")).collect::<Vec<_>>();
    let alone = scoped(vec![p0.clone()], "a").unwrap();
    assert_eq!(busy(&alone), [20_000], "one step name: nothing left out");
    assert!(alone.notes.iter().any(|n| n.contains("1 distinct profiler step")), "{:?}", alone.notes);
    let set = scoped(vec![p0.clone(), p1.clone()], "b").unwrap();
    assert_eq!(busy(&set), [10_000, 10_000], "two step names over the set: launched records only");
    assert!(set.notes.iter().any(|n| n.contains("--hta-scope: 2 GPU records")), "{:?}", set.notes);
    // Without --hta-scope every record counts.
    let all = postmortem(&args(vec![p0, p1.clone()], &tmp.path().join("c"))).unwrap();
    assert_eq!(busy(&all), [20_000, 20_000]);
    // Nothing launched, in a set with two step names: the error names the filter.
    let mut bare = one_step_trace(0, 3);
    bare["traceEvents"].as_array_mut().unwrap().remove(1);
    let p2 = tmp.path().join("bare.json");
    write_trace(&p2, &bare);
    let mut a = args(vec![p2], &tmp.path().join("d"));
    a.run.kineto.hta_scope = true;
    // One trace, one step: kept.
    assert!(postmortem(&a).is_ok());
    let mut twice = bare.clone();
    twice["traceEvents"].as_array_mut().unwrap().push(
        serde_json::json!({"ph": "X", "cat": "Operator", "name": "ProfilerStep#4", "pid": 5, "tid": 6, "ts": 100, "dur": 10}),
    );
    let p3 = tmp.path().join("bare2.json");
    write_trace(&p3, &twice);
    let mut a = args(vec![p3], &tmp.path().join("e"));
    a.run.kineto.hta_scope = true;
    let e = format!("{:#}", postmortem(&a).unwrap_err());
    assert!(e.contains("--hta-scope left out all 2 GPU records of") && e.contains("bare2.json"), "{e}");
}

#[test]
fn hostile_parquet_is_refused_by_name_before_decoding() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, (bytes, says)) in [
        (strand_schemas::hostile::row_group_bomb(), "2147483647"),
        (strand_schemas::hostile::schema_depth_bomb(500), "deeper than 32 levels"),
        (strand_schemas::hostile::footer_length(0xFFFF_FFF0), "declares 4294967280 bytes of metadata"),
        (strand_schemas::hostile::page_size_bomb(100, i32::MAX), "too large to decode"),
    ]
    .into_iter()
    .enumerate()
    {
        let path = tmp.path().join(format!("bomb{i}.parquet"));
        std::fs::write(&path, bytes).unwrap();
        let e = format!("{:#}", postmortem(&args(vec![path.clone()], &tmp.path().join("o"))).unwrap_err());
        assert!(e.contains(&path.display().to_string()) && e.contains(says), "{e}");
    }
}

#[test]
fn a_symlink_loop_in_a_data_directory_is_read_once() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    let rows: Vec<KernelEvent> = (0..50).map(strand_schemas::Table::example).collect();
    let file = ds.join("kernel_events/date=2024-01-01/cluster=c/node=n/b1.parquet");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, strand_schemas::to_parquet_bytes(&rows).unwrap()).unwrap();
    let reducer = Arc::new(strand_kernels::Reducer::new(strand_kernels::Backend::Cpu).unwrap());
    let count = |opts: &PostmortemOptions| {
        let run = crate::run::read(&opts.run, &reducer, |_| Ok(())).unwrap();
        run.kernels.values().map(|k| k.count).sum::<u64>()
    };
    let once = count(&args(vec![ds.clone()], tmp.path()));
    assert_eq!(once, 50);
    // A link to the data directory's parent, inside it, and the directory named twice.
    std::os::unix::fs::symlink(tmp.path(), ds.join("kernel_events/loop")).unwrap();
    assert_eq!(count(&args(vec![ds.clone(), ds.clone(), tmp.path().to_path_buf()], tmp.path())), once);
}

#[test]
fn the_same_node_from_two_datasets_is_refused_not_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<KernelEvent> = (0..10).map(strand_schemas::Table::example).collect();
    let (c, n) = (rows[0].cluster.to_string(), rows[0].node.to_string());
    for run in ["run1", "run2"] {
        let file = tmp.path().join(format!("{run}/kernel_events/date=2024-01-01/cluster={c}/node={n}/b.parquet"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, strand_schemas::to_parquet_bytes(&rows).unwrap()).unwrap();
    }
    let e = format!(
        "{:#}",
        postmortem(&args(vec![tmp.path().join("run1"), tmp.path().join("run2")], tmp.path())).unwrap_err()
    );
    assert!(e.contains("run1") && e.contains("run2") && e.contains(&format!("both hold node {n:?}")), "{e}");
}

/// Where the full `kernel_events` stayed on the nodes (the agent's default),
/// the postmortem's top kernels come from `kernel_summaries` and are the same
/// figures as from the full records.
#[test]
fn top_kernels_from_the_summary_equal_those_from_the_full_records() {
    let data = kineto_dir();
    let traces: Vec<PathBuf> =
        ["nccl_2rank_a100_rank0", "alexnet_single_gpu"].iter().map(|n| data.join(format!("{n}.json.gz"))).collect();
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    crate::import::import_kineto(&crate::import::ImportOptions {
        traces,
        out: ds.clone(),
        cluster: "kineto".into(),
        node: None,
        job: None,
        hta_scope: false,
        comm_kernels: Default::default(),
        max_json_value: None,
        window_ns: 10_000_000_000,
        launch_gap_ns: 30_000,
        backend: strand_kernels::Backend::Cpu,
    })
    .unwrap();
    let mut opts = args(vec![ds.clone()], &tmp.path().join("pm"));
    opts.top_kernels = usize::MAX;
    let full = postmortem(&opts).unwrap();
    assert!(full.top_kernels.len() > 20, "the traces have many kernels");
    std::fs::remove_dir_all(ds.join("kernel_events")).unwrap();
    let summed = postmortem(&opts).unwrap();
    let rows = |r: &Report| -> Vec<(String, String, u64, i64, i64, i64)> {
        r.top_kernels
            .iter()
            .map(|k| (k.name.clone(), k.category.clone(), k.count, k.total_ns, k.min_ns, k.max_ns))
            .collect()
    };
    assert_eq!(rows(&summed), rows(&full));
    assert_eq!(summed.kernel_records, full.kernel_records);
    assert_eq!(summed.kernels_total_ns, full.kernels_total_ns);
    let per_gpu =
        |r: &Report| r.gpus.iter().map(|g| (g.node.clone(), g.gpu_index, g.kernel_records)).collect::<Vec<_>>();
    assert_eq!(per_gpu(&summed), per_gpu(&full));
    assert!(summed.notes.iter().any(|n| n.contains("kernel_summaries")));
    assert!(!full.notes.iter().any(|n| n.contains("kernel_summaries")));
}

/// Text that comes from the input (job id, node name, kernel name, finding
/// summary, notes, the timeline's file name) is escaped in report.html: it
/// never reaches the page as markup.
#[test]
fn hostile_text_from_the_input_comes_out_of_report_html_escaped() {
    const BAD: &str = "<script>alert(1)</script>\"&";
    const ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;";
    let data = kineto_dir();
    let tmp = tempfile::tempdir().unwrap();
    let mut report = postmortem(&args(vec![data.join("nccl_2rank_a100_rank0.json.gz")], tmp.path())).unwrap();
    report.job = Some(BAD.into());
    report.gpus[0].node = BAD.into();
    report.top_kernels[0].name = BAD.into();
    if let Some(s) = report.steps.first_mut() {
        s.node = BAD.into();
    }
    report.notes.push(BAD.into());
    report.timeline = Some(BAD.into());
    report.findings.push(strand_analysis::findings::FindingView {
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
        rank: Some(0),
        start_ns: report.start_ns,
        end_ns: report.end_ns,
        summary: BAD.into(),
        gpu_seconds: None,
        figures: serde_json::json!({}),
        evidence: serde_json::json!({ "query": BAD }),
    });
    let html = html::render(&report);
    assert!(!html.contains("<script") && !html.contains("</script>"), "raw markup from the input");
    // h1, the finding's class, severity, kind, summary and query, the kernel's
    // tooltip and label, the node in its tooltips, the step table, the note, the link.
    let n = html.matches(ESCAPED).count();
    assert!(n >= 12, "{n} escaped copies:\n{html}");
}
