//! `strand postmortem <run directory or files>`: where every GPU-second of a
//! training run went (DESIGN §1, ML engineer after a run).
//!
//! Inputs: a strand dataset directory (the agent's data directory, the
//! collector's dataset, or `strand import` output), strand Parquet files, or
//! PyTorch profiler (Kineto) traces (imported on the fly). Outputs, in
//! `--out`: `report.html` (self-contained, charts as inline SVG),
//! `summary.md`, `report.json` (every figure).
//!
//! It streams: every Parquet table is read row group by row group in time
//! order (ordered by the row groups' statistics) and fed to the same
//! `strand_analysis::WindowBuilder` the agent runs live; windows close as soon
//! as no later row group can touch them. Memory holds the rows within the
//! lateness horizon, plus per-GPU × per-bucket sums, not the run. Kineto
//! traces given directly are parsed one at a time (the JSON streams; the rows
//! of the trace being read are in memory) and their GPU records kept in the
//! builder's compact form (about 64 bytes each) until the end; for trace sets larger than memory, `strand
//! import kineto` them first and run the postmortem on the dataset.

pub mod html;
mod markdown;
mod report;

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::statistics::Statistics;
use strand_analysis::idle::StreamIdleTotals;
use strand_analysis::mfu::{PeakOverride, PeakTable};
use strand_analysis::sync_stall::BandwidthBaseline;
use strand_analysis::{GpuKey, WindowBuilder, WindowConfig};
use strand_kernels::{Backend, Reducer, Values};
use strand_schemas::parquet_io::{check_info, check_schema};
use strand_schemas::table::{META_TABLE, META_VERSION};
use strand_schemas::{
    CudaSyncCall, FileInfo, GpuSample, KernelEvent, NcclCall, ProcessEvent, SchemaVersion, Step, Table, Window,
};

pub use report::Report;

#[derive(clap::Args, Debug, Clone)]
pub struct PostmortemArgs {
    /// Run directory (strand dataset or a directory of Kineto traces) or
    /// files (`.parquet`, `.json`, `.json.gz`).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output directory for report.html, summary.md and report.json.
    #[arg(short, long, default_value = "postmortem")]
    pub out: PathBuf,
    /// Window length (default: about 150 windows over the run, rounded).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub window: Option<Duration>,
    /// Idle gaps shorter than this between kernels are launch gaps (HTA uses 30us).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "50us")]
    pub launch_gap: Duration,
    /// How far out of time order rows of different files may be (default: max(10 s, 2 windows)).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lateness: Option<Duration>,
    /// NVML sample period of the input (a sample describes the period before it).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub sample_period: Duration,
    /// Model FLOPs of one step on one rank (job config), for MFU when the
    /// steps carry none.
    #[arg(long)]
    pub flops_per_step: Option<f64>,
    /// Dtype the FLOPs are counted in: bf16, fp16, fp8, tf32, fp32, fp64.
    #[arg(long)]
    pub dtype: Option<String>,
    /// GPU product name when the input does not say (e.g. "NVIDIA H100 80GB HBM3").
    #[arg(long)]
    pub gpu_name: Option<String>,
    /// Peak dense FLOP/s per GPU for --dtype, overriding the built-in table.
    #[arg(long)]
    pub peak_flops: Option<f64>,
    /// Reduction backend: auto, gpu or cpu.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Kernels listed in "top kernels".
    #[arg(long, default_value_t = 20)]
    pub top_kernels: usize,
    /// Never draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// For Kineto inputs: keep only the GPU records Holistic Trace Analysis
    /// analyses (see `strand import kineto --hta-scope`).
    #[arg(long)]
    pub hta_scope: bool,
}

pub fn run(args: PostmortemArgs) -> anyhow::Result<()> {
    let report = postmortem(&args)?;
    write_outputs(&args.out, &report)?;
    eprintln!(
        "strand postmortem: {} GPUs, {} → {}",
        report.gpus.len(),
        html::fmt_duration(report.end_ns - report.start_ns),
        args.out.join("report.html").display()
    );
    Ok(())
}

/// Writes report.html, summary.md and report.json into `out`.
pub fn write_outputs(out: &Path, report: &Report) -> anyhow::Result<()> {
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    fs::write(out.join("report.json"), json).with_context(|| format!("cannot write {}", out.join("report.json").display()))?;
    fs::write(out.join("summary.md"), markdown::render(report)).with_context(|| format!("cannot write {}", out.join("summary.md").display()))?;
    fs::write(out.join("report.html"), html::render(report)).with_context(|| format!("cannot write {}", out.join("report.html").display()))?;
    Ok(())
}

/// One row group of one strand Parquet file, with its time range.
#[derive(Debug, Clone)]
struct Part {
    path: PathBuf,
    table: &'static str,
    row_group: usize,
    min_ts: i64,
    max_ts: i64,
    rows: u64,
}

/// Time columns (start, end) of each table, for ordering row groups.
fn time_columns(table: &str) -> Option<(&'static str, &'static str)> {
    Some(match table {
        "kernel_events" => ("start_ns", "end_ns"),
        "gpu_samples" => ("ts_ns", "ts_ns"),
        "nccl_calls" => ("enter_ns", "enter_ns"),
        "cuda_sync_calls" => ("enter_ns", "exit_ns"),
        "steps" => ("start_ns", "end_ns"),
        "process_events" => ("ts_ns", "ts_ns"),
        "windows" => ("start_ns", "end_ns"),
        _ => return None,
    })
}

/// Reads a file's footer: its table, version, schema, and each row group's time range.
fn scan_file(path: &Path) -> anyhow::Result<Vec<Part>> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).with_context(|| format!("{name}: not a readable Parquet file"))?;
    let meta = builder.metadata().clone();
    let kv = meta.file_metadata().key_value_metadata().map(|v| v.as_slice()).unwrap_or(&[]);
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    let Some(table) = get(META_TABLE) else { bail!("{name}: not a strand file (no `{META_TABLE}` in the Parquet metadata)") };
    let raw = get(META_VERSION).unwrap_or_default();
    let version = SchemaVersion::parse(&raw).with_context(|| format!("{name}: bad schema version {raw:?}"))?;
    let info = FileInfo { table: table.clone(), version, rows: meta.file_metadata().num_rows(), writer: None };
    let known = check_info(&name, &info, None)?;
    check_schema(&name, known, builder.schema())?;
    let Some((start_col, end_col)) = time_columns(known.name) else { return Ok(Vec::new()) };
    let cols = meta.file_metadata().schema_descr();
    let idx = |c: &str| (0..cols.num_columns()).find(|&i| cols.column(i).name() == c);
    let (si, ei) = (idx(start_col), idx(end_col));
    let mut parts = Vec::new();
    for rg in 0..meta.num_row_groups() {
        let g = meta.row_group(rg);
        let stat = |i: Option<usize>, min: bool| -> Option<i64> {
            match g.column(i?).statistics()? {
                Statistics::Int64(s) => if min { s.min_opt().copied() } else { s.max_opt().copied() },
                _ => None,
            }
        };
        parts.push(Part {
            path: path.to_path_buf(),
            table: known.name,
            row_group: rg,
            min_ts: stat(si, true).unwrap_or(i64::MIN),
            max_ts: stat(ei, false).unwrap_or(i64::MAX),
            rows: g.num_rows().max(0) as u64,
        });
    }
    Ok(parts)
}

fn read_part<T: Table>(p: &Part) -> anyhow::Result<Vec<T>> {
    let name = p.path.display().to_string();
    let file = File::open(&p.path).with_context(|| format!("{name}: cannot open"))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{name}: not a readable Parquet file"))?
        .with_row_groups(vec![p.row_group])
        .with_batch_size(8192)
        .build()
        .with_context(|| format!("{name}: cannot read row group {}", p.row_group))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("{name}: row group {}", p.row_group))?;
        rows.extend(T::from_batch(&batch).map_err(|d| anyhow::anyhow!("{name}: table `{}`: {d}", T::NAME))?);
    }
    Ok(rows)
}

fn read_all<T: Table>(parts: &[Part]) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    for p in parts.iter().filter(|p| p.table == T::NAME) {
        out.extend(read_part::<T>(p)?);
    }
    Ok(out)
}

fn is_trace(p: &Path) -> bool {
    let n = p.file_name().map(|s| s.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    n.ends_with(".json") || n.ends_with(".json.gz")
}

fn walk(dir: &Path, parquet: &mut Vec<PathBuf>, traces: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk(&p, parquet, traces)?;
        } else if p.extension().is_some_and(|e| e == "parquet") {
            parquet.push(p);
        } else if is_trace(&p) {
            traces.push(p);
        }
    }
    Ok(())
}

/// A window length that gives about `target` windows over `span`, rounded to 1-2-5.
fn auto_window(span_ns: i64, target: i64) -> i64 {
    let raw = (span_ns / target.max(1)).max(1_000_000);
    let mut unit = 1i64;
    while unit.saturating_mul(10) <= raw {
        unit *= 10;
    }
    for m in [1, 2, 5, 10] {
        if unit * m >= raw {
            return unit * m;
        }
    }
    unit * 10
}

#[derive(Default)]
struct KernelAgg {
    category: String,
    count: u64,
    total: i64,
    min: i64,
    max: i64,
}

/// Sums kernel durations by name, batch by batch, through the reducer.
fn aggregate_kernels(reducer: &Reducer, rows: &[KernelEvent], agg: &mut HashMap<Arc<str>, KernelAgg>) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut ids: HashMap<&Arc<str>, usize> = HashMap::new();
    let mut names: Vec<&KernelEvent> = Vec::new();
    let mut order: Vec<(usize, i64)> = Vec::with_capacity(rows.len());
    for k in rows {
        let id = *ids.entry(&k.name).or_insert_with(|| {
            names.push(k);
            names.len() - 1
        });
        order.push((id, (k.end_ns - k.start_ns).max(0)));
    }
    order.sort_unstable_by_key(|(id, _)| *id);
    let mut offsets = vec![0usize];
    let mut values = Vec::with_capacity(order.len());
    let mut cur = 0;
    for (id, d) in order {
        while cur < id {
            offsets.push(values.len());
            cur += 1;
        }
        values.push(d);
    }
    while offsets.len() < names.len() + 1 {
        offsets.push(values.len());
    }
    let stats = reducer.stats(Values { offsets: &offsets, values: &values })?;
    for (k, s) in names.iter().zip(stats) {
        let e = agg.entry(k.name.clone()).or_insert_with(|| KernelAgg { category: k.category.clone(), min: i64::MAX, ..Default::default() });
        e.count += s.count;
        e.total += s.sum;
        e.min = e.min.min(s.min.unwrap_or(i64::MAX));
        e.max = e.max.max(s.max.unwrap_or(0));
    }
    Ok(())
}

/// Kernel rows of a Kineto trace built at a time (about 5 MiB).
const TRACE_CHUNK_ROWS: usize = 16 * 1024;

/// Runs the whole postmortem and returns its figures.
///
/// Kineto traces are parsed one after the other straight into the window
/// builder (their rows are dropped as soon as they are in); Parquet row
/// groups follow in time order, with windows closed as they complete.
pub fn postmortem(args: &PostmortemArgs) -> anyhow::Result<Report> {
    let mut parquet = Vec::new();
    let mut traces = Vec::new();
    for input in &args.inputs {
        if input.is_dir() {
            walk(input, &mut parquet, &mut traces)?;
        } else if input.extension().is_some_and(|e| e == "parquet") {
            parquet.push(input.clone());
        } else if is_trace(input) {
            traces.push(input.clone());
        } else if !input.exists() {
            bail!("{}: no such file or directory", input.display());
        } else {
            bail!("{}: not a strand Parquet file (.parquet) or a Kineto trace (.json, .json.gz)", input.display());
        }
    }
    if parquet.is_empty() && traces.is_empty() {
        bail!(
            "no strand Parquet files or Kineto traces in {}",
            args.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let mut parts = Vec::new();
    for f in &parquet {
        parts.extend(scan_file(f)?);
    }

    let backend: Backend = args.backend.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let reducer = Arc::new(Reducer::new(backend)?);
    let sample_period_ns = i64::try_from(args.sample_period.as_nanos()).unwrap_or(1_000_000_000).max(1);
    let launch_gap_ns = i64::try_from(args.launch_gap.as_nanos()).unwrap_or(50_000);
    let mut overrides = Vec::new();
    if let Some(p) = args.peak_flops {
        let Some(dt) = &args.dtype else { bail!("--peak-flops needs --dtype") };
        overrides.push(PeakOverride { gpu: String::new(), dtype: dt.clone(), flops_per_s: p });
    }
    // The window length is set once the run's span is known (nothing closes before).
    let cfg = WindowConfig {
        period_ns: 10_000_000_000,
        lateness_ns: 0,
        launch_gap_ns,
        sample_period_ns,
        kernel_records_complete: true,
        trim_to_activity: true,
        peaks: PeakTable::new(overrides).map_err(|e| anyhow::anyhow!(e))?,
        default_dtype: args.dtype.clone(),
        default_gpu_name: args.gpu_name.clone(),
        max_buffered_rows: usize::MAX,
    };
    let mut b = WindowBuilder::new(cfg, reducer.clone()).map_err(|e| anyhow::anyhow!(e))?;
    let mut notes = Vec::new();
    let mut ranks: HashMap<GpuKey, i32> = HashMap::new();
    let mut kernels: HashMap<Arc<str>, KernelAgg> = HashMap::new();
    let mut span: Option<(i64, i64)> = None;
    let widen = |span: &mut Option<(i64, i64)>, lo: i64, hi: i64| {
        *span = Some(span.map_or((lo, hi), |(a, z)| (a.min(lo), z.max(hi))));
    };

    // Kineto traces, one at a time.
    let mut steps: Vec<Step> = Vec::new();
    let mut trace_calls: Vec<NcclCall> = Vec::new();
    let opts = crate::import::kineto::KinetoOptions { cluster: "kineto".into(), node: None, job_id: None, hta_scope: args.hta_scope };
    let mut out_of_scope = 0u64;
    for path in &traces {
        let t = crate::import::kineto::read_trace(path, &opts)?;
        for (dev, name) in &t.gpu_names {
            b.set_gpu_name(&GpuKey { node: Arc::from(t.node.as_str()), gpu_index: *dev }, name);
        }
        if let Some(r) = t.rank {
            for d in &t.devices {
                ranks.insert(GpuKey { node: Arc::from(t.node.as_str()), gpu_index: *d }, r);
            }
        }
        if let Some((lo, hi)) = t.kernel_span() {
            widen(&mut span, lo, hi);
        }
        // A few thousand rows at a time through one buffer: the rows of a big
        // trace never all exist at once.
        let mut rows = Vec::new();
        for at in (0..t.kernel_count()).step_by(TRACE_CHUNK_ROWS) {
            t.kernels_into(at..(at + TRACE_CHUNK_ROWS).min(t.kernel_count()), &mut rows);
            aggregate_kernels(&reducer, &rows, &mut kernels)?;
            b.push_kernels(&rows);
        }
        b.push_sync(&t.syncs);
        steps.extend(t.steps);
        trace_calls.extend(t.nccl);
        out_of_scope += t.out_of_scope;
    }
    if !traces.is_empty() {
        notes.push(format!("{} Kineto trace(s): {}", traces.len(), traces.iter().map(|t| t.display().to_string()).collect::<Vec<_>>().join(", ")));
    }
    if out_of_scope > 0 {
        notes.push(format!("--hta-scope: {out_of_scope} GPU records without a launching CPU call in the trace (or launched after the last profiler step) left out"));
    }

    // Pass 1: the small tables, whole.
    steps.extend(read_all::<Step>(&parts)?);
    let processes: Vec<ProcessEvent> = read_all(&parts)?;
    let mut baseline = BandwidthBaseline::default();
    baseline.observe_calls(&trace_calls);
    let mut calls_for_steps: Vec<NcclCall> = Vec::new();
    let has_steps: std::collections::HashSet<(Arc<str>, Option<i32>)> =
        steps.iter().filter(|s| s.phase == "step").map(|s| (s.node.clone(), s.pid)).collect();
    let rank_from_calls = |rows: &[NcclCall], ranks: &mut HashMap<GpuKey, i32>| {
        for c in rows {
            if let (Some(g), Some(r)) = (c.gpu_index, c.rank) {
                ranks.entry(GpuKey { node: c.node.clone(), gpu_index: g }).or_insert(r);
            }
        }
    };
    rank_from_calls(&trace_calls, &mut ranks);
    calls_for_steps.extend(trace_calls.iter().filter(|c| !has_steps.contains(&(c.node.clone(), Some(c.pid)))).cloned());
    for p in parts.iter().filter(|p| p.table == NcclCall::NAME) {
        let rows: Vec<NcclCall> = read_part(p)?;
        baseline.observe_calls(&rows);
        rank_from_calls(&rows, &mut ranks);
        calls_for_steps.extend(rows.into_iter().filter(|c| !has_steps.contains(&(c.node.clone(), Some(c.pid)))));
    }
    let inferred = strand_analysis::steps::infer_steps(&calls_for_steps);
    drop(calls_for_steps);
    if !inferred.is_empty() {
        notes.push(format!("{} steps inferred from the period of NCCL calls (no step markers for those ranks)", inferred.len()));
    }
    steps.extend(inferred);
    for s in &steps {
        if let (Some(g), Some(r)) = (s.gpu_index, s.rank) {
            ranks.insert(GpuKey { node: s.node.clone(), gpu_index: g }, r);
        }
    }
    if let Some(f) = args.flops_per_step {
        let mut n = 0;
        for s in steps.iter_mut().filter(|s| s.phase == "step" && s.model_flops.is_none()) {
            s.model_flops = Some(f);
            if s.dtype.is_none() {
                s.dtype = args.dtype.clone();
            }
            n += 1;
        }
        notes.push(format!("model FLOPs from --flops-per-step ({f:e} per step) on {n} steps"));
    }
    if steps.iter().all(|s| s.model_flops.is_none()) {
        notes.push("no model FLOPs (no step markers with flops, no --flops-per-step): MFU is not computed; the tensor-pipe estimate is shown where GPM data exists".into());
    }

    // The run's span and the windows.
    let big: Vec<&Part> = parts.iter().filter(|p| matches!(p.table, "kernel_events" | "gpu_samples" | "nccl_calls" | "cuda_sync_calls")).collect();
    for p in big.iter().filter(|p| matches!(p.table, "kernel_events" | "gpu_samples")) {
        if p.min_ts != i64::MIN && p.max_ts != i64::MAX {
            widen(&mut span, p.min_ts, p.max_ts);
        }
    }
    let windows_only = span.is_none();
    let (start, end) = match span {
        Some((s, e)) => (s, e.max(s + 1)),
        None => {
            let w: Vec<&Part> = parts.iter().filter(|p| p.table == Window::NAME).collect();
            match (w.iter().map(|p| p.min_ts).min(), w.iter().map(|p| p.max_ts).max()) {
                (Some(s), Some(e)) => (s, e.max(s + 1)),
                _ => bail!("no kernel_events, gpu_samples or windows rows in the input"),
            }
        }
    };
    let window_ns = match args.window {
        Some(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX).max(1),
        None => auto_window(end - start, 150),
    };
    let lateness_ns = match args.lateness {
        Some(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        None => (10_000_000_000i64).max(2 * window_ns).max(sample_period_ns),
    };
    b.set_timing(window_ns, lateness_ns).map_err(|e| anyhow::anyhow!(e))?;
    b.set_bandwidth_baseline(baseline);
    b.push_process(&processes);
    b.push_nccl(&trace_calls);
    drop(trace_calls);
    // Steps go in with the time-ordered rows, so the builder holds only the open ones.
    let mut steps_sorted: Vec<&Step> = steps.iter().collect();
    steps_sorted.sort_by_key(|s| s.start_ns);
    let mut next_step = 0usize;

    // Pass 2: the large tables, row group by row group in time order.
    let mut big: Vec<Part> = big.into_iter().cloned().collect();
    big.sort_by_key(|p| (p.min_ts, p.max_ts));
    let total_rows: u64 = big.iter().map(|p| p.rows).sum();
    let bar = progress_bar(total_rows, args.no_progress);
    let bucket_ns = {
        let n = ((end - start) / window_ns).max(1);
        window_ns * ((n + 299) / 300).max(1)
    };
    let mut agg = report::Aggregator::new(start.div_euclid(window_ns) * window_ns, end, bucket_ns);
    for i in 0..big.len() {
        let p = &big[i];
        match p.table {
            "kernel_events" => {
                let rows: Vec<KernelEvent> = read_part(p)?;
                aggregate_kernels(&reducer, &rows, &mut kernels)?;
                b.push_kernels(&rows);
            }
            "gpu_samples" => b.push_samples(&read_part::<GpuSample>(p)?),
            "nccl_calls" => b.push_nccl(&read_part::<NcclCall>(p)?),
            "cuda_sync_calls" => b.push_sync(&read_part::<CudaSyncCall>(p)?),
            _ => {}
        }
        bar.inc(p.rows);
        // No later row group holds anything before the next one's start.
        if let Some(next) = big.get(i + 1)
            && next.min_ts != i64::MIN {
                let upto = steps_sorted[next_step..].partition_point(|s| s.start_ns < next.min_ts) + next_step;
                b.push_steps(&steps_sorted[next_step..upto].iter().map(|s| (*s).clone()).collect::<Vec<_>>());
                next_step = upto;
                agg.add(&b.close_until(next.min_ts)?);
            }
    }
    b.push_steps(&steps_sorted[next_step..].iter().map(|s| (*s).clone()).collect::<Vec<_>>());
    agg.add(&b.flush()?);
    bar.finish_and_clear();
    if windows_only {
        for p in parts.iter().filter(|p| p.table == Window::NAME) {
            agg.add(&read_part::<Window>(p)?);
        }
        notes.push("no kernel records or NVML samples: the agent's `windows` rows are shown as they are".into());
    }
    let stats = b.stats();
    if stats.late_rows > 0 {
        notes.push(format!(
            "{} rows arrived more than the lateness allowance ({}) out of time order and were not counted; rerun with a larger --lateness",
            stats.late_rows,
            html::fmt_duration(lateness_ns)
        ));
    }
    if stats.unattributed_rows > 0 {
        notes.push(format!("{} rows without a GPU index were not counted", stats.unattributed_rows));
    }

    // Finish.
    let streams: HashMap<GpuKey, Vec<(i64, StreamIdleTotals)>> = b.stream_idle().into_iter().map(|(k, s)| (k, s.streams())).collect();
    let (gpus, run, buckets) = agg.finish(&ranks, &streams);
    let kernels_total_ns: i64 = kernels.values().map(|k| k.total).sum();
    let distinct_kernels = kernels.len();
    let mut top: Vec<(Arc<str>, KernelAgg)> = kernels.into_iter().collect();
    top.sort_by(|a, b| b.1.total.cmp(&a.1.total).then_with(|| a.0.cmp(&b.0)));
    let top_kernels = top
        .into_iter()
        .take(args.top_kernels)
        .map(|(n, k)| report::KernelRow {
            name: n.to_string(),
            category: k.category,
            count: k.count,
            total_ns: k.total,
            min_ns: if k.min == i64::MAX { 0 } else { k.min },
            max_ns: k.max,
            share: if kernels_total_ns > 0 { k.total as f64 / kernels_total_ns as f64 } else { 0.0 },
        })
        .collect();
    let checkpoints = steps
        .iter()
        .filter(|s| s.phase.starts_with("checkpoint"))
        .map(|s| (s.node.to_string(), s.rank, s.phase.clone(), s.start_ns, s.end_ns - s.start_ns))
        .collect();
    Ok(Report {
        strand_version: env!("CARGO_PKG_VERSION").to_string(),
        inputs: args.inputs.iter().map(|p| p.display().to_string()).collect(),
        window_ns,
        bucket_ns,
        launch_gap_ns,
        start_ns: gpus.iter().map(|g| g.start_ns).min().unwrap_or(start),
        end_ns: gpus.iter().map(|g| g.end_ns).max().unwrap_or(end),
        gpus,
        run,
        buckets,
        top_kernels,
        kernels_total_ns,
        distinct_kernels,
        steps: report::step_series(&steps),
        checkpoints,
        notes,
        stats: serde_json::to_value(stats)?,
    })
}

fn progress_bar(total: u64, disabled: bool) -> indicatif::ProgressBar {
    if disabled || total < 2_000_000 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} reading {bar:40} {human_pos}/{human_len} rows ({eta} left)")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

#[cfg(test)]
pub(crate) mod tests;

/// Test helpers shared with the import tests.
#[cfg(test)]
pub mod tests_support {
    pub use super::tests::kineto_dir;
}
