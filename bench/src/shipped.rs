//! Bytes an agent ships per node and day, with and without the full
//! `kernel_events` (issue 17's budget: an 8-GPU node running CUPTI at
//! 5,000+ kernels/s per GPU ships at most about 1 GB a day by default).
//!
//! CUPTI-like records (a training step's few hundred distinct kernels,
//! mangled names, several streams, launch times) go through the agent's
//! `WindowBuilder`, which makes the `windows` and `kernel_summaries` rows;
//! every table is written with the agent's Parquet settings and rotation
//! (a batch closes at 60 s or ~32 MiB). The other tables the agent ships
//! (NVML samples, NCCL calls, …) are not generated here: measure them with
//! `strand-sim` (docs/performance.md).
//!
//! ```text
//! cargo build --release -p strand-bench
//! target/release/strand-shipped-bench --gpus 8 --rate 5000 --seconds 300
//! ```

use std::sync::Arc;

use clap::Parser;
use strand_analysis::{WindowBuilder, WindowConfig};
use strand_schemas::{KernelEvent, KernelSummary, Table, TableWriter, Window};

#[derive(Parser, Debug)]
#[command(about = "Bytes shipped per node and day: kernel_events versus kernel_summaries")]
struct Args {
    /// GPUs of the node.
    #[arg(long, default_value_t = 8)]
    gpus: i32,
    /// Kernels per second per GPU.
    #[arg(long, default_value_t = 5000)]
    rate: i64,
    /// Distinct kernel names (a step of a large model has a few hundred).
    #[arg(long, default_value_t = 300)]
    names: usize,
    /// Simulated seconds (scaled to a day).
    #[arg(long, default_value_t = 300)]
    seconds: i64,
    /// Window length (the agent's `windows.period`).
    #[arg(long, default_value_t = 10)]
    window_s: i64,
}

/// The agent's batch rotation (`output.rotate_interval`, `rotate_bytes`).
const ROTATE_NS: i64 = 60_000_000_000;
const ROTATE_BYTES: u64 = 32 << 20;

/// One table's batches, rotated as the agent rotates them; counts the bytes.
struct Out<T: Table> {
    w: Option<TableWriter<T, Vec<u8>>>,
    opened_ns: i64,
    bytes: u64,
    rows: u64,
    files: u64,
}

impl<T: Table> Out<T> {
    fn new() -> Self {
        Self { w: None, opened_ns: 0, bytes: 0, rows: 0, files: 0 }
    }
    fn push(&mut self, rows: &[T], now_ns: i64) -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        if self.w.is_none() {
            self.w = Some(TableWriter::new(Vec::new())?);
            self.opened_ns = now_ns;
        }
        let w = self.w.as_mut().expect("opened above");
        w.write(rows)?;
        self.rows += rows.len() as u64;
        if w.approx_bytes() >= ROTATE_BYTES || now_ns - self.opened_ns >= ROTATE_NS {
            self.close()?;
        }
        Ok(())
    }
    fn close(&mut self) -> anyhow::Result<()> {
        if let Some(w) = self.w.take() {
            self.bytes += w.finish()?.len() as u64;
            self.files += 1;
        }
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(
        a.gpus > 0 && a.rate > 0 && a.names > 0 && a.seconds > 0 && a.window_s > 0,
        "all arguments must be positive"
    );
    let s_ns = 1_000_000_000i64;
    let cfg = WindowConfig {
        period_ns: a.window_s * s_ns,
        lateness_ns: 5 * s_ns,
        kernel_records_complete: true,
        max_buffered_rows: usize::MAX,
        ..WindowConfig::default()
    };
    let mut b = WindowBuilder::new(cfg, Arc::new(strand_kernels::Reducer::cpu()))?;
    // A step's kernels: mangled names of a few hundred GEMMs, attention,
    // elementwise and NCCL kernels, each with its own typical duration.
    let names: Vec<(Arc<str>, i64, &str)> = (0..a.names)
        .map(|i| {
            let (name, cat) = match i % 10 {
                0 => (format!("ncclDevKernel_AllReduce_Sum_bf16_RING_LL_{i}"), "communication"),
                1..=4 => (
                    format!("_ZN7cutlass7Kernel2I55cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_32x32_128x2_tn_align8EEvNT_6ParamsE{i}"),
                    "compute",
                ),
                5 | 6 => (format!("_ZN5flash20flash_fwd_kernel_implI23Flash_fwd_kernel_traitsILi128ELi64ELi64ELi4ELb0ELb0EN7cutlass10bfloat16_tEELb1ELb0ELb0ELb0ELb1ELb1ELb0ELb0EEEvRK16Flash_fwd_params{i}"), "compute"),
                _ => (format!("_ZN2at6native29vectorized_elementwise_kernelILi4ENS0_11FillFunctorIN3c108BFloat16EEENS_6detail5ArrayIPcLi1EEEEEviT0_T1_{i}"), "compute"),
            };
            (Arc::from(name.as_str()), 5_000 + (i as i64 * 7919) % 150_000, cat)
        })
        .collect();
    let (cluster, node) = (Arc::<str>::from("bench"), Arc::<str>::from("node-0001"));
    let uuids: Vec<Arc<str>> =
        (0..a.gpus).map(|g| Arc::from(format!("GPU-5173a1d0-0000-4000-8000-{g:012}").as_str())).collect();
    let job = Some("job-000042".to_string());
    let t_start = 1_767_571_200_000_000_000i64;
    let mut kernels = Out::<KernelEvent>::new();
    let mut summaries = Out::<KernelSummary>::new();
    let mut windows = Out::<Window>::new();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m
    };
    let mut corr = 0i64;
    let mut gpu_t: Vec<i64> = vec![t_start; a.gpus as usize];
    let started = std::time::Instant::now();
    // One simulated second at a time: every GPU's kernels of that second.
    for sec in 0..a.seconds {
        let sec_end = t_start + (sec + 1) * s_ns;
        let mut rows = Vec::with_capacity((a.rate * a.gpus as i64) as usize);
        for g in 0..a.gpus {
            let gap = (s_ns / a.rate).max(1);
            for _ in 0..a.rate {
                let (name, typical, cat) = &names[next(names.len() as u64) as usize];
                let dur = (typical * (80 + next(40) as i64) / 100).min(gap * 9 / 10).max(1_000);
                let start = gpu_t[g as usize] + next(gap.max(1) as u64 / 10 + 1) as i64;
                corr += 1;
                rows.push(KernelEvent {
                    cluster: cluster.clone(),
                    node: node.clone(),
                    pid: 4000 + g,
                    job_id: job.clone(),
                    device_id: g,
                    gpu_uuid: Some(uuids[g as usize].clone()),
                    gpu_index: Some(g),
                    start_ns: start,
                    end_ns: start + dur,
                    context_id: 1,
                    stream_id: 7 + next(4) as i64,
                    correlation_id: corr,
                    kind: "kernel".into(),
                    category: cat.to_string(),
                    name: name.clone(),
                    grid_x: Some(1 + next(1024) as i32),
                    grid_y: Some(1),
                    grid_z: Some(1),
                    block_x: Some(128 << next(2)),
                    block_y: Some(1),
                    block_z: Some(1),
                    bytes: None,
                    copy_kind: None,
                    launch_ns: Some(start - 5_000 - next(20_000) as i64),
                    launch_tid: Some(4000 + g),
                    collective: None,
                    source: "cupti".into(),
                });
                gpu_t[g as usize] = start + gap;
            }
            gpu_t[g as usize] = gpu_t[g as usize].max(sec_end - s_ns);
        }
        b.push_kernels(&rows);
        kernels.push(&rows, sec_end)?;
        drop(rows);
        let w = b.close_until(sec_end)?;
        windows.push(&w, sec_end)?;
        summaries.push(&b.take_kernel_summaries(), sec_end)?;
    }
    let end = t_start + a.seconds * s_ns;
    windows.push(&b.flush()?, end)?;
    summaries.push(&b.take_kernel_summaries(), end)?;
    kernels.close()?;
    summaries.close()?;
    windows.close()?;
    let day = 86_400.0 / a.seconds as f64;
    println!(
        "{} GPUs × {} kernels/s, {} names, {} s simulated ({:.1} s wall), {} s windows; per node and day:",
        a.gpus,
        a.rate,
        a.names,
        a.seconds,
        started.elapsed().as_secs_f64(),
        a.window_s
    );
    let line = |t: &str, rows: u64, bytes: u64, files: u64| {
        println!(
            "  {t:<17} {:>14.0} rows  {:>10.1} MB  ({:.1} bytes/row, {} files in the run)",
            rows as f64 * day,
            bytes as f64 * day / 1e6,
            bytes as f64 / rows.max(1) as f64,
            files
        );
    };
    line(KernelEvent::NAME, kernels.rows, kernels.bytes, kernels.files);
    line(KernelSummary::NAME, summaries.rows, summaries.bytes, summaries.files);
    line(Window::NAME, windows.rows, windows.bytes, windows.files);
    Ok(())
}
