//! Writes a synthetic training run as a strand dataset (Hive layout), for the
//! postmortem's speed and memory benchmark (`bench/speed_memory.py`):
//!
//! ```text
//! cargo run --release -p strand-analysis --example synth_run -- OUT GPUS SECONDS [STEP_MS]
//! ```
//!
//! Every GPU is one rank of one data-parallel job (8 GPUs per node): each
//! step runs back-to-back compute kernels, then an allreduce per bucket on a
//! second stream (rank 3 starts its collectives 2 ms late, so the others
//! stall), a copy, and a host-bound gap before the next step. One NVML sample
//! per second, one `steps` row per step with its model FLOPs. Files hold 60 s
//! each and are written in time order, as the agent writes them.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use strand_schemas::{GpuSample, KernelEvent, NcclCall, Step, Table, TableWriter};

const MS: i64 = 1_000_000;
const US: i64 = 1_000;
const T0: i64 = 1_735_689_600_000_000_000; // 2025-01-01T00:00:00Z

struct Files {
    out: PathBuf,
}

impl Files {
    fn writer<T: Table>(&self, node: &str, part: usize) -> TableWriter<T, fs::File> {
        let dir =
            self.out.join(T::NAME).join("date=2025-01-01").join("cluster_dir=synth").join(format!("node_dir={node}"));
        fs::create_dir_all(&dir).expect("create the output directory");
        let f = fs::File::create(dir.join(format!("part-{part:05}.parquet"))).expect("create a file");
        TableWriter::new(f).expect("writer")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: synth_run OUT GPUS SECONDS [STEP_MS]");
        std::process::exit(2);
    }
    let out = PathBuf::from(&args[1]);
    let gpus: i32 = args[2].parse().expect("GPUS");
    let seconds: i64 = args[3].parse().expect("SECONDS");
    let step_ns: i64 = args.get(4).map_or(500, |s| s.parse().expect("STEP_MS")) * MS;
    let files = Files { out: out.clone() };
    let file_ns = 60_000 * MS;
    let end = T0 + seconds * 1_000 * MS;
    let mut rows = 0u64;
    let mut part = 0usize;
    let mut t_file = T0;
    let mut step_no = 0i64;
    let mut seq = 0i64;
    while t_file < end {
        let t_file_end = (t_file + file_ns).min(end);
        for node_i in 0..(gpus + 7) / 8 {
            let node = format!("synth-{node_i:03}");
            let node_a: Arc<str> = Arc::from(node.as_str());
            let mut kw = files.writer::<KernelEvent>(&node, part);
            let mut nw = files.writer::<NcclCall>(&node, part);
            let mut sw = files.writer::<GpuSample>(&node, part);
            let mut stw = files.writer::<Step>(&node, part);
            let mut kernels = Vec::with_capacity(64 * 1024);
            let mut calls = Vec::new();
            let mut steps = Vec::new();
            let mut t = t_file;
            let mut local_step = step_no;
            let mut local_seq = seq;
            while t + step_ns <= t_file_end {
                for g in (node_i * 8)..((node_i * 8 + 8).min(gpus)) {
                    let gi = g % 8;
                    let k = |start: i64, dur: i64, stream: i64, name: &str, launch: i64| {
                        let mut e = KernelEvent::example(0);
                        e.cluster = Arc::from("synth");
                        e.node = node_a.clone();
                        e.pid = 1000 + g;
                        e.job_id = Some("synth-job".into());
                        e.device_id = gi;
                        e.gpu_uuid = Some(Arc::from(format!("GPU-synth-{g:04}").as_str()));
                        e.gpu_index = Some(gi);
                        e.start_ns = start;
                        e.end_ns = start + dur;
                        e.stream_id = stream;
                        e.kind = if name.starts_with("Memcpy") { "memcpy".into() } else { "kernel".into() };
                        e.category = strand_schemas::category::classify(&e.kind, name).as_str().into();
                        e.name = Arc::from(name);
                        e.launch_ns = Some(launch);
                        e.launch_tid = Some(1000 + g);
                        e.source = "cupti".into();
                        e
                    };
                    // Forward and backward: 300 compute kernels of ~1 ms with 4 µs launch gaps.
                    let mut c = t + 2 * MS;
                    for i in 0..300 {
                        let d = 900 * US + (i % 7) * 30 * US;
                        kernels.push(k(
                            c,
                            d,
                            7,
                            if i % 3 == 0 { "sm90_xmma_gemm_bf16bf16_bf16f32" } else { "flash_fwd_kernel" },
                            c - 50 * US,
                        ));
                        c += d + 4 * US;
                    }
                    // Four bucket allreduces on stream 13 during the last third; rank 3 is late.
                    for b in 0..4i64 {
                        let base = t + 200 * MS + b * 30 * MS;
                        let start = if g % 8 == 3 { base + 2 * MS } else { base };
                        let kend = base + 2 * MS + 8 * MS;
                        kernels.push(k(
                            start,
                            kend - start,
                            13,
                            "ncclDevKernel_AllReduce_Sum_bf16_RING_LL",
                            start - 100 * US,
                        ));
                        let mut call = NcclCall::example(0);
                        call.cluster = Arc::from("synth");
                        call.node = node_a.clone();
                        call.pid = 1000 + g;
                        call.tid = 1000 + g;
                        call.job_id = Some("synth-job".into());
                        call.enter_ns = start - 100 * US;
                        call.exit_ns = Some(start - 90 * US);
                        call.op = "allreduce".into();
                        call.bytes = Some(64 << 20);
                        call.comm_hash = Some(0x5717_0001);
                        call.comm_name = None;
                        call.rank = Some(g);
                        call.nranks = Some(gpus);
                        call.seq = Some(local_seq + b);
                        call.gpu_index = Some(gi);
                        call.kernel_start_ns = Some(start);
                        call.kernel_end_ns = Some(kend);
                        call.source = "ebpf".into();
                        calls.push(call);
                    }
                    // Optimizer copy, then a host-bound gap to the next step.
                    kernels.push(k(c + 20 * US, 2 * MS, 7, "Memcpy DtoD (Device -> Device)", c));
                    let mut s = Step::example(0);
                    s.cluster = Arc::from("synth");
                    s.node = node_a.clone();
                    s.job_id = Some("synth-job".into());
                    s.pid = Some(1000 + g);
                    s.rank = Some(g);
                    s.gpu_index = Some(gi);
                    s.phase = "step".into();
                    s.step = Some(local_step);
                    s.start_ns = t;
                    s.end_ns = t + step_ns;
                    s.model_flops = Some(2.0e14);
                    s.dtype = Some("bf16".into());
                    s.source = "marker".into();
                    steps.push(s);
                }
                local_step += 1;
                local_seq += 4;
                t += step_ns;
                if kernels.len() >= 60_000 {
                    rows += kernels.len() as u64;
                    kw.write(&kernels).expect("write kernels");
                    kernels.clear();
                }
            }
            rows += kernels.len() as u64;
            kw.write(&kernels).expect("write kernels");
            nw.write(&calls).expect("write calls");
            stw.write(&steps).expect("write steps");
            let mut samples = Vec::new();
            let mut ts = t_file + 1_000 * MS;
            while ts <= t_file_end {
                for g in (node_i * 8)..((node_i * 8 + 8).min(gpus)) {
                    let mut s = GpuSample::example(0);
                    s.cluster = Arc::from("synth");
                    s.node = node_a.clone();
                    s.ts_ns = ts;
                    s.gpu_index = g % 8;
                    s.gpu_uuid = Arc::from(format!("GPU-synth-{g:04}").as_str());
                    s.gpu_name = Arc::from("NVIDIA H100 80GB HBM3");
                    s.job_id = Some("synth-job".into());
                    s.pids = vec![1000 + g];
                    s.reported_utilization_ratio = Some(0.98);
                    s.sm_active_ratio = Some(0.71);
                    s.tensor_active_ratio = Some(0.42);
                    s.sm_clock_mhz = Some(1755);
                    s.sm_clock_max_mhz = Some(1980);
                    samples.push(s);
                }
                ts += 1_000 * MS;
            }
            sw.write(&samples).expect("write samples");
            for w in [kw.finish().map(drop), nw.finish().map(drop), sw.finish().map(drop), stw.finish().map(drop)] {
                w.expect("finish a file");
            }
            if node_i == (gpus + 7) / 8 - 1 {
                step_no = local_step;
                seq = local_seq;
            }
        }
        part += 1;
        t_file = t_file_end;
    }
    println!("{rows} kernel rows in {}", out.display());
}
