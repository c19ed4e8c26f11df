//! One run's inputs, read the same way for `strand postmortem` and `strand
//! import kineto`: strand Parquet (a dataset directory or files) and
//! PyTorch profiler (Kineto) traces, into the tables every door writes.
//!
//! Windows: where the input holds `windows` rows (the agent's or an earlier
//! import's), those are the run's windows, so the postmortem shows exactly
//! the figures the agent exported and the fleet report reads. Otherwise the
//! windows are built here with `strand_analysis::WindowBuilder`, the code the
//! agent runs live, from the kernel, sample, NCCL, sync and step rows.
//!
//! Memory: Parquet row groups are read in time order and windows close as
//! soon as no later row group can touch them; Kineto traces are parsed one
//! at a time and their GPU records kept in the builder's compact form (about
//! 64 bytes each) until the end. The small tables (calls, steps, process
//! events) are held whole.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use parquet::file::statistics::Statistics;
use strand_analysis::accounting::window_cell;
use strand_analysis::collective::{self, BandwidthBaseline, CollectiveRecord, MatchStats};
use strand_analysis::idle::StreamIdleTotals;
use strand_analysis::{BuilderStats, GpuKey, WindowBuilder, WindowConfig};
use strand_kernels::{Reducer, Values};
use strand_schemas::category::Category;
use strand_schemas::comm_kernels::{CommKernels, CommMatch};
use strand_schemas::{
    CollectiveStall, CudaSyncCall, GpuEvent, GpuSample, KernelEvent, KernelSummary, NcclCall, ProcessEvent,
    ProcessSample, ReadLimits, Step, Table, Window, layout, open_builder,
};

use crate::kineto::{self, KinetoOptions, KinetoTrace};

/// How a run is read and its windows built.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub inputs: Vec<PathBuf>,
    /// Only rows of this job (`job_id`).
    pub job: Option<String>,
    /// Window length when windows are built (default: about 150 over the run).
    pub window_ns: Option<i64>,
    pub launch_gap_ns: i64,
    /// How far out of time order rows of different files may be (default: max(10 s, 2 windows)).
    pub lateness_ns: Option<i64>,
    pub sample_period_ns: i64,
    /// Labels of Kineto rows.
    pub kineto: KinetoOptions,
    /// Model FLOPs of one step on one rank, for steps that carry none.
    pub flops_per_step: Option<f64>,
    pub dtype: Option<String>,
    pub gpu_name: Option<String>,
    pub peaks: strand_analysis::mfu::PeakTable,
    pub progress: bool,
    /// Which kernels are communication (the built-in table and the user's
    /// patterns): the Kineto reader and the windows use it, and it
    /// classifies the rows of Parquet inputs again.
    pub comm_kernels: Arc<CommKernels>,
}

/// Kernels grouped by name.
#[derive(Debug, Clone, Default)]
pub struct KernelAgg {
    pub category: String,
    pub count: u64,
    pub total: i64,
    pub min: i64,
    pub max: i64,
}

/// Everything one run holds, as the doors need it.
#[derive(Default)]
pub struct Run {
    pub windows: Vec<Window>,
    /// The windows were read from the input (the agent's), not built here.
    pub recorded_windows: bool,
    /// Length of the windows (the most common one, for recorded windows).
    pub window_ns: i64,
    pub lateness_ns: i64,
    pub calls: Vec<NcclCall>,
    pub steps: Vec<Step>,
    pub processes: Vec<ProcessEvent>,
    pub gpu_events: Vec<GpuEvent>,
    pub process_samples: Vec<ProcessSample>,
    pub kernels: HashMap<Arc<str>, KernelAgg>,
    pub ranks: HashMap<GpuKey, i32>,
    pub streams: HashMap<GpuKey, Vec<(i64, StreamIdleTotals)>>,
    pub span: Option<(i64, i64)>,
    pub notes: Vec<String>,
    pub stats: BuilderStats,
    /// Kernel, copy and set records per GPU (each record once).
    pub kernel_records: HashMap<GpuKey, u64>,
    /// Communication kernels of the traces that no call gives a collective
    /// identity, numbered by order across ranks (`collective::order_by_position`):
    /// the postmortem matches them with the calls.
    pub ordered: Vec<CollectiveRecord>,
    /// What the order numbering did.
    pub order_stats: MatchStats,
    /// `kernel_summaries` of the windows built here (import writes them).
    pub kernel_summaries: Vec<KernelSummary>,
}

/// The run's collectives through the one matcher, with each GPU window's
/// exact sync stall: what the postmortem's accounting and the timeline's
/// counters both add to a window.
pub struct Matched {
    pub stalls: Vec<CollectiveStall>,
    pub stats: MatchStats,
    exact: HashMap<(Arc<str>, Arc<str>, i32, i64), i64>,
    window_ns: i64,
}

impl Matched {
    /// The exact sync stall of window `w`, where a matched instance starts in it.
    pub fn exact_stall(&self, w: &Window) -> Option<i64> {
        self.exact
            .get(&(w.cluster.clone(), w.node.clone(), w.gpu_index, window_cell(w.start_ns, self.window_ns)))
            .copied()
    }
}

impl Run {
    /// Matches the run's calls and ordered records across ranks.
    pub fn matched(&self, reducer: &Reducer) -> anyhow::Result<Matched> {
        let mut stats = self.order_stats.clone();
        let stalls = collective::match_all(reducer, &self.calls, &self.ordered, &mut stats)?;
        let window_ns = self.window_ns.max(1);
        let mut exact: HashMap<(Arc<str>, Arc<str>, i32, i64), i64> = HashMap::new();
        for s in &stalls {
            if let Some(g) = s.gpu_index {
                *exact
                    .entry((s.cluster.clone(), s.node.clone(), g, window_cell(s.start_ns, window_ns)))
                    .or_default() += s.stall_ns;
            }
        }
        Ok(Matched { stalls, stats, exact, window_ns })
    }
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

/// Reads a file's footer through the bounded reader (footer and page
/// headers checked within the default limits before anything is decoded):
/// its table, version, schema, and each row group's time range.
fn scan_file(path: &Path) -> anyhow::Result<Vec<Part>> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let (info, _, builder) = open_builder(&name, file, None, &ReadLimits::default())?;
    let meta = builder.metadata().clone();
    let known = strand_schemas::table_info(&info.table)
        .ok_or_else(|| anyhow::anyhow!("{name}: unknown table `{}`", info.table))?;
    let (start_col, end_col) = known.time;
    let cols = meta.file_metadata().schema_descr();
    let idx = |c: &str| (0..cols.num_columns()).find(|&i| cols.column(i).name() == c);
    let (si, ei) = (idx(start_col), idx(end_col));
    let mut parts = Vec::new();
    for rg in 0..meta.num_row_groups() {
        let g = meta.row_group(rg);
        let stat = |i: Option<usize>, min: bool| -> Option<i64> {
            match g.column(i?).statistics()? {
                Statistics::Int64(s) => {
                    if min {
                        s.min_opt().copied()
                    } else {
                        s.max_opt().copied()
                    }
                }
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
    let (_, _, builder) = open_builder(&name, file, Some(p.table), &ReadLimits::default())?;
    let reader = builder
        .with_row_groups(vec![p.row_group])
        .build()
        .with_context(|| format!("{name}: cannot read row group {}", p.row_group))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("{name}: row group {}", p.row_group))?;
        rows.extend(T::from_batch(&batch).map_err(|d| anyhow::anyhow!("{name}: table `{}`: {d}", T::NAME))?);
    }
    Ok(rows)
}

/// Rows of one job (or all, without a job filter).
trait JobRow {
    fn job(&self) -> Option<&str>;
}
macro_rules! job_row {
    ($($t:ty),*) => { $(impl JobRow for $t { fn job(&self) -> Option<&str> { self.job_id.as_deref() } })* };
}
job_row!(
    KernelEvent,
    KernelSummary,
    NcclCall,
    CudaSyncCall,
    Step,
    Window,
    GpuSample,
    ProcessEvent,
    GpuEvent,
    ProcessSample
);

fn keep<T: JobRow>(job: &Option<String>, rows: Vec<T>) -> Vec<T> {
    match job {
        None => rows,
        Some(j) => rows.into_iter().filter(|r| r.job() == Some(j.as_str())).collect(),
    }
}

fn read_all<T: Table + JobRow>(parts: &[Part], job: &Option<String>) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    for p in parts.iter().filter(|p| p.table == T::NAME) {
        out.extend(keep(job, read_part::<T>(p)?));
    }
    Ok(out)
}

/// A Hive-layout file's dataset root, cluster and node
/// (`<root>/<table>/date=…/cluster_dir=<c>/node_dir=<n>/<batch>.parquet`).
fn hive_identity(file: &Path) -> Option<(PathBuf, String, String)> {
    let real = fs::canonicalize(file).ok()?;
    let node_dir = real.parent()?;
    let node = layout::dir_value(node_dir.file_name()?.to_str()?, layout::NODE_KEY)?.to_string();
    let cluster_dir = node_dir.parent()?;
    let cluster = layout::dir_value(cluster_dir.file_name()?.to_str()?, layout::CLUSTER_KEY)?.to_string();
    let date_dir = cluster_dir.parent()?;
    date_dir.file_name()?.to_str()?.strip_prefix("date=")?;
    let root = date_dir.parent()?.parent()?.to_path_buf();
    Some((root, cluster, node))
}

fn is_trace(p: &Path) -> bool {
    let n = p.file_name().map(|s| s.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    n.ends_with(".json") || n.ends_with(".json.gz")
}

/// The run's files: each real file once (canonical paths), through
/// symbolic links but never around a loop.
#[derive(Default)]
struct Files {
    parquet: Vec<PathBuf>,
    traces: Vec<PathBuf>,
    seen: HashSet<PathBuf>,
}

impl Files {
    fn add_file(&mut self, p: &Path) -> anyhow::Result<()> {
        let real = fs::canonicalize(p).with_context(|| format!("{}: cannot resolve", p.display()))?;
        if !self.seen.insert(real) {
            return Ok(());
        }
        if p.extension().is_some_and(|e| e == "parquet") {
            self.parquet.push(p.to_path_buf());
        } else if is_trace(p) {
            self.traces.push(p.to_path_buf());
        }
        Ok(())
    }

    fn walk(&mut self, dir: &Path, depth: usize) -> anyhow::Result<()> {
        let real = fs::canonicalize(dir).with_context(|| format!("{}: cannot resolve", dir.display()))?;
        if !self.seen.insert(real) {
            return Ok(()); // a directory reached twice (a link to a parent): read it once
        }
        if depth > 64 {
            bail!("{}: directories nested deeper than 64 levels", dir.display());
        }
        let mut entries: Vec<_> = fs::read_dir(dir)
            .with_context(|| format!("{}: cannot list", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                continue; // staging files and hidden directories
            }
            if p.is_dir() {
                self.walk(&p, depth + 1)?;
            } else if !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('_')) {
                // `_…` files are a dataset's bookkeeping (the fleet report's `_stalls.json`).
                self.add_file(&p)?;
            }
        }
        Ok(())
    }
}

/// A window length that gives about `target` windows over `span`, rounded to 1-2-5.
pub fn auto_window(span_ns: i64, target: i64) -> i64 {
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

/// Sums kernel durations by name, batch by batch, through the reducer.
fn aggregate_kernels(
    reducer: &Reducer,
    comm: &CommKernels,
    rows: &[KernelEvent],
    agg: &mut HashMap<Arc<str>, KernelAgg>,
) -> anyhow::Result<()> {
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
        let e = agg.entry(k.name.clone()).or_insert_with(|| KernelAgg {
            category: comm.classify_row(&k.kind, &k.name, Category::parse(&k.category)).as_str().to_string(),
            min: i64::MAX,
            ..Default::default()
        });
        e.count += s.count;
        e.total += s.sum;
        e.min = e.min.min(s.min.unwrap_or(i64::MAX));
        e.max = e.max.max(s.max.unwrap_or(0));
    }
    Ok(())
}

/// The figures of [`aggregate_kernels`] from `kernel_summaries` rows:
/// counts and totals add, minimum and maximum combine.
fn aggregate_summaries(
    comm: &CommKernels,
    rows: &[KernelSummary],
    agg: &mut HashMap<Arc<str>, KernelAgg>,
    counts: &mut HashMap<GpuKey, u64>,
) {
    for s in rows {
        let count = s.count.max(0) as u64;
        let e = agg.entry(s.name.clone()).or_insert_with(|| KernelAgg {
            category: comm.classify_row("kernel", &s.name, Category::parse(&s.category)).as_str().to_string(),
            min: i64::MAX,
            ..Default::default()
        });
        e.count += count;
        e.total += s.total_ns;
        e.min = e.min.min(s.min_ns);
        e.max = e.max.max(s.max_ns);
        *counts.entry(GpuKey { node: s.node.clone(), gpu_index: s.gpu_index }).or_default() += count;
    }
}

/// Counts records per GPU.
fn count_records(rows: &[KernelEvent], counts: &mut HashMap<GpuKey, u64>) {
    let mut last: Option<(GpuKey, u64)> = None;
    for k in rows {
        let Some(g) = k.gpu_index else { continue };
        match &mut last {
            Some((key, n)) if key.gpu_index == g && key.node == k.node => *n += 1,
            _ => {
                if let Some((key, n)) = last.take() {
                    *counts.entry(key).or_default() += n;
                }
                last = Some((GpuKey { node: k.node.clone(), gpu_index: g }, 1));
            }
        }
    }
    if let Some((key, n)) = last {
        *counts.entry(key).or_default() += n;
    }
}

/// Kernel rows of a Kineto trace built at a time (about 5 MiB).
const TRACE_CHUNK_ROWS: usize = 16 * 1024;

/// The most common window length (recorded windows).
fn common_length(windows: &[Window]) -> Option<i64> {
    let mut n: BTreeMap<i64, usize> = BTreeMap::new();
    for w in windows {
        *n.entry(w.end_ns - w.start_ns).or_default() += 1;
    }
    n.into_iter().max_by_key(|(len, c)| (*c, *len)).map(|(len, _)| len)
}

/// The `kernel_events` rows of the run's strand Parquet files, row group by
/// row group (those of Kineto traces come through [`read`]'s `on_trace`):
/// for `strand export trace`, which needs each kernel, not their sums.
pub fn for_each_parquet_kernels(
    opts: &RunOptions,
    mut f: impl FnMut(Vec<KernelEvent>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let files = collect_files(&opts.inputs)?;
    for path in &files.parquet {
        for p in scan_file(path)?.iter().filter(|p| p.table == KernelEvent::NAME) {
            f(keep(&opts.job, read_part::<KernelEvent>(p)?))?;
        }
    }
    Ok(())
}

/// The inputs' files: directories walked, files checked by kind.
fn collect_files(inputs: &[PathBuf]) -> anyhow::Result<Files> {
    let mut files = Files::default();
    for input in inputs {
        if input.is_dir() {
            files.walk(input, 0)?;
        } else if input.extension().is_some_and(|e| e == "parquet") || is_trace(input) {
            files.add_file(input)?;
        } else if !input.exists() {
            bail!("{}: no such file or directory", input.display());
        } else {
            bail!("{}: not a strand Parquet file (.parquet) or a Kineto trace (.json, .json.gz)", input.display());
        }
    }
    if files.parquet.is_empty() && files.traces.is_empty() {
        bail!(
            "no strand Parquet files or Kineto traces in {}",
            inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(files)
}

/// Reads a run. `on_trace` sees every Kineto trace once, as it is parsed
/// (import writes its rows then; the trace is dropped right after).
pub fn read(
    opts: &RunOptions,
    reducer: &Arc<Reducer>,
    mut on_trace: impl FnMut(&KinetoTrace) -> anyhow::Result<()>,
) -> anyhow::Result<Run> {
    let files = collect_files(&opts.inputs)?;

    // Two traces that would be one node would merge into one GPU: refuse.
    if opts.kineto.node.is_none() {
        let mut nodes: HashMap<String, &Path> = HashMap::new();
        for t in &files.traces {
            let node = kineto::node_name(t);
            if let Some(other) = nodes.insert(node.clone(), t) {
                bail!(
                    "{} and {} would both be node {node:?} (traces are named after their file): rename one, or read them in separate runs",
                    other.display(),
                    t.display()
                );
            }
        }
    } else if files.traces.len() > 1 {
        bail!(
            "a node name for every trace merges {} traces into one node: give no node name, so each trace is its own",
            files.traces.len()
        );
    }
    // One node's files from two datasets (two runs) would merge into one
    // node and one set of GPUs: refuse.
    let mut owners: HashMap<(String, String), PathBuf> = HashMap::new();
    for f in &files.parquet {
        let Some((root, cluster, node)) = hive_identity(f) else { continue };
        if let Some(other) = owners.get(&(cluster.clone(), node.clone()))
            && *other != root
        {
            bail!(
                "{} and {} both hold node {node:?} of cluster {cluster:?}: reading them together would merge two runs into one node; read them in separate runs",
                other.display(),
                root.display()
            );
        }
        owners.insert((cluster, node), root);
    }
    let mut parts = Vec::new();
    for f in &files.parquet {
        parts.extend(scan_file(f)?);
    }
    let job = &opts.job;
    // The small tables, whole.
    let mut run = Run {
        steps: read_all::<Step>(&parts, job)?,
        processes: read_all::<ProcessEvent>(&parts, job)?,
        gpu_events: read_all::<GpuEvent>(&parts, job)?,
        process_samples: read_all::<ProcessSample>(&parts, job)?,
        ..Run::default()
    };
    for p in parts.iter().filter(|p| p.table == NcclCall::NAME) {
        run.calls.extend(keep(job, read_part::<NcclCall>(p)?));
    }

    // Recorded windows: the run's figures are the agent's.
    let recorded: Vec<Window> = read_all::<Window>(&parts, job)?;
    let kernel_parts: Vec<&Part> = parts.iter().filter(|p| p.table == KernelEvent::NAME).collect();
    if !recorded.is_empty() && files.traces.is_empty() {
        run.window_ns = common_length(&recorded).unwrap_or(1);
        run.span = Some((
            recorded.iter().map(|w| w.start_ns).min().unwrap_or(0),
            recorded.iter().map(|w| w.end_ns).max().unwrap_or(0),
        ));
        run.windows = recorded;
        run.recorded_windows = true;
        // Imported traces' communication kernels that no call identifies:
        // matched by order, as when the traces themselves are read.
        let called: HashSet<(Arc<str>, i32, i64)> =
            run.calls.iter().filter_map(|c| Some((c.node.clone(), c.gpu_index?, c.kernel_start_ns?))).collect();
        let ranks = trace_ranks(&run.steps);
        let mut comm_records = Vec::new();
        for p in &kernel_parts {
            let rows = keep(job, read_part::<KernelEvent>(p)?);
            aggregate_kernels(reducer, &opts.comm_kernels, &rows, &mut run.kernels)?;
            count_records(&rows, &mut run.kernel_records);
            for k in rows.iter().filter(|k| k.source == "kineto" && k.category == "communication") {
                if k.gpu_index.is_some_and(|g| called.contains(&(k.node.clone(), g, k.start_ns))) {
                    continue;
                }
                if let Some(m) = opts.comm_kernels.lookup(&k.name) {
                    comm_records.extend(CollectiveRecord::from_kernel(k, &m, ranks.get(&k.node).copied(), None));
                }
            }
        }
        if kernel_parts.is_empty() {
            // The agent keeps full kernel records on the node by default: the
            // same figures come from its per-window summary.
            let summaries = read_all::<KernelSummary>(&parts, job)?;
            if !summaries.is_empty() {
                run.notes
                    .push("top kernels from `kernel_summaries` (the full `kernel_events` stayed on the nodes)".into());
            }
            aggregate_summaries(&opts.comm_kernels, &summaries, &mut run.kernels, &mut run.kernel_records);
        }
        number_by_order(&mut run, comm_records);
        finish_steps(opts, &mut run);
        return Ok(run);
    }

    // Built windows. The length is set once the run's span is known (nothing closes before).
    let cfg = WindowConfig {
        period_ns: 10_000_000_000,
        lateness_ns: 0,
        launch_gap_ns: opts.launch_gap_ns,
        sample_period_ns: opts.sample_period_ns,
        kernel_records_complete: true,
        trim_to_activity: true,
        peaks: opts.peaks.clone(),
        default_dtype: opts.dtype.clone(),
        default_gpu_name: opts.gpu_name.clone(),
        max_buffered_rows: usize::MAX,
        comm_kernels: opts.comm_kernels.clone(),
    };
    let mut b = WindowBuilder::new(cfg, reducer.clone())?;
    let widen = |span: &mut Option<(i64, i64)>, lo: i64, hi: i64| {
        *span = Some(span.map_or((lo, hi), |(a, z)| (a.min(lo), z.max(hi))));
    };
    // Kineto traces, one at a time. With HTA's scope, whether records without
    // a launch are left out depends on the steps of the whole set: a trace
    // waits until the set is known to have two step names, or to the end.
    let mut out_of_scope = 0u64;
    let mut syncs: Vec<CudaSyncCall> = Vec::new();
    let mut trace_calls: Vec<NcclCall> = Vec::new();
    let mut comm_records: Vec<CollectiveRecord> = Vec::new();
    let mut comm_names: HashMap<Arc<str>, Option<CommMatch>> = HashMap::new();
    let mut ingest = |t: KinetoTrace| -> anyhow::Result<()> {
        if t.skipped_events > 0 {
            tracing::warn!("{}: skipped {} GPU records with a negative duration", t.file.display(), t.skipped_events);
        }
        on_trace(&t)?;
        for (dev, name) in &t.gpu_names {
            b.set_gpu_name(&GpuKey { node: Arc::from(t.node.as_str()), gpu_index: *dev }, name);
        }
        if let Some(r) = t.rank {
            for d in &t.devices {
                run.ranks.insert(GpuKey { node: Arc::from(t.node.as_str()), gpu_index: *d }, r);
            }
        }
        if let Some((lo, hi)) = t.kernel_span() {
            widen(&mut run.span, lo, hi);
        }
        // Kernels that a call of the trace gives a collective identity.
        let called: HashSet<(i32, i64)> =
            t.nccl.iter().filter_map(|c| Some((c.gpu_index?, c.kernel_start_ns?))).collect();
        // A few thousand rows at a time through one buffer: the rows of a big
        // trace never all exist at once.
        let mut rows = Vec::new();
        for at in (0..t.kernel_count()).step_by(TRACE_CHUNK_ROWS) {
            t.kernels_into(at..(at + TRACE_CHUNK_ROWS).min(t.kernel_count()), &mut rows);
            aggregate_kernels(reducer, &opts.comm_kernels, &rows, &mut run.kernels)?;
            count_records(&rows, &mut run.kernel_records);
            b.push_kernels(&rows);
            for k in rows.iter().filter(|k| k.category == "communication") {
                if k.gpu_index.is_some_and(|g| called.contains(&(g, k.start_ns))) {
                    continue;
                }
                let m = comm_names.entry(k.name.clone()).or_insert_with(|| opts.comm_kernels.lookup(&k.name));
                if let Some(r) = m.as_ref().and_then(|m| CollectiveRecord::from_kernel(k, m, t.rank, None)) {
                    comm_records.push(r);
                }
            }
        }
        out_of_scope += t.out_of_scope;
        syncs.extend(t.syncs);
        run.steps.extend(t.steps);
        trace_calls.extend(t.nccl);
        Ok(())
    };
    let kopts = KinetoOptions { hta_scope: false, comm_kernels: opts.comm_kernels.clone(), ..opts.kineto.clone() };
    let mut set_steps: HashSet<i64> = HashSet::new();
    let mut waiting: Vec<KinetoTrace> = Vec::new();
    for path in &files.traces {
        let t = kineto::read_trace(path, &kopts)?;
        if !opts.kineto.hta_scope {
            ingest(t)?;
            continue;
        }
        set_steps.extend(t.step_names.iter().copied());
        waiting.push(t);
        if set_steps.len() >= 2 {
            for mut t in waiting.drain(..) {
                t.apply_hta_scope(set_steps.len());
                ingest(t)?;
            }
        }
    }
    for mut t in waiting.drain(..) {
        t.apply_hta_scope(set_steps.len());
        ingest(t)?;
    }
    if opts.kineto.hta_scope && !files.traces.is_empty() && set_steps.len() < 2 {
        run.notes.push(format!(
            "--hta-scope: the traces have {} distinct profiler step(s) over all ranks; as HTA does, no GPU record was left out for lack of a launch (that needs two or more)",
            set_steps.len()
        ));
    }
    // Communication kernels without a collective identity: matched by their order across the traces' ranks.
    number_by_order(&mut run, comm_records);
    b.push_collectives(&run.ordered, "kineto");
    b.push_sync(&syncs);
    drop(syncs);
    run.calls.extend(trace_calls.iter().cloned());
    if !files.traces.is_empty() {
        run.notes.push(format!(
            "{} Kineto trace(s): {}",
            files.traces.len(),
            files.traces.iter().map(|t| t.display().to_string()).collect::<Vec<_>>().join(", ")
        ));
    }
    if out_of_scope > 0 {
        run.notes.push(format!("--hta-scope: {out_of_scope} GPU records without a launching CPU call in the trace (or launched after the last profiler step) left out"));
    }
    finish_steps(opts, &mut run);

    // The run's span and the window length.
    let big: Vec<&Part> = parts
        .iter()
        .filter(|p| matches!(p.table, "kernel_events" | "gpu_samples" | "nccl_calls" | "cuda_sync_calls"))
        .collect();
    for p in big.iter().filter(|p| matches!(p.table, "kernel_events" | "gpu_samples")) {
        if p.min_ts != i64::MIN && p.max_ts != i64::MAX {
            widen(&mut run.span, p.min_ts, p.max_ts);
        }
    }
    let Some((start, end)) = run.span else {
        if out_of_scope > 0 {
            bail!(
                "--hta-scope left out all {out_of_scope} GPU records of {}: none was launched by a CPU call found in its trace (runtime events joined by correlation id) before the trace's last profiler step ended, which is what HTA analyses; without --hta-scope strand counts every GPU record",
                files.traces.iter().map(|t| t.display().to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        bail!("no kernel_events, gpu_samples or windows rows in the input")
    };
    let end = end.max(start + 1);
    run.span = Some((start, end));
    run.window_ns = opts.window_ns.unwrap_or_else(|| auto_window(end - start, 150)).max(1);
    run.lateness_ns = opts.lateness_ns.unwrap_or((10_000_000_000i64).max(2 * run.window_ns).max(opts.sample_period_ns));
    b.set_timing(run.window_ns, run.lateness_ns)?;
    let mut baseline = BandwidthBaseline::default();
    baseline.observe_calls(&run.calls);
    b.set_bandwidth_baseline(baseline);
    b.push_process(&run.processes);
    // NCCL calls of the traces go in whole; those of Parquet with their row groups below.
    b.push_nccl(&trace_calls);
    drop(trace_calls);
    let mut steps_sorted: Vec<&Step> = run.steps.iter().collect();
    steps_sorted.sort_by_key(|s| s.start_ns);
    let mut next_step = 0usize;

    // The large tables, row group by row group in time order.
    let mut big: Vec<Part> = big.into_iter().cloned().collect();
    big.sort_by_key(|p| (p.min_ts, p.max_ts));
    let total_rows: u64 = big.iter().map(|p| p.rows).sum();
    let bar = progress_bar(total_rows, !opts.progress);
    for i in 0..big.len() {
        let p = &big[i];
        match p.table {
            "kernel_events" => {
                let rows: Vec<KernelEvent> = keep(job, read_part(p)?);
                aggregate_kernels(reducer, &opts.comm_kernels, &rows, &mut run.kernels)?;
                count_records(&rows, &mut run.kernel_records);
                b.push_kernels(&rows);
            }
            "gpu_samples" => b.push_samples(&keep(job, read_part::<GpuSample>(p)?)),
            "nccl_calls" => b.push_nccl(&keep(job, read_part::<NcclCall>(p)?)),
            "cuda_sync_calls" => b.push_sync(&keep(job, read_part::<CudaSyncCall>(p)?)),
            _ => {}
        }
        bar.inc(p.rows);
        // No later row group holds anything before the next one's start.
        if let Some(next) = big.get(i + 1)
            && next.min_ts != i64::MIN
        {
            let upto = steps_sorted[next_step..].partition_point(|s| s.start_ns < next.min_ts) + next_step;
            b.push_steps(&steps_sorted[next_step..upto].iter().map(|s| (*s).clone()).collect::<Vec<_>>());
            next_step = upto;
            run.windows.extend(b.close_until(next.min_ts)?);
            run.kernel_summaries.extend(b.take_kernel_summaries());
        }
    }
    b.push_steps(&steps_sorted[next_step..].iter().map(|s| (*s).clone()).collect::<Vec<_>>());
    run.windows.extend(b.flush()?);
    run.kernel_summaries.extend(b.take_kernel_summaries());
    bar.finish_and_clear();
    run.stats = b.stats();
    if run.stats.late_rows > 0 {
        run.notes.push(format!(
            "{} rows arrived more than the lateness allowance ({}) out of time order and were not counted; rerun with a larger --lateness",
            run.stats.late_rows,
            strand_render::fmt_duration(run.lateness_ns)
        ));
    }
    if run.stats.unattributed_rows > 0 {
        run.notes.push(format!("{} rows without a GPU index were not counted", run.stats.unattributed_rows));
    }
    run.streams = b.stream_idle().into_iter().map(|(k, s)| (k, s.streams())).collect();
    Ok(run)
}

/// Numbers communication kernels without a collective identity by their
/// order across ranks (`collective::order_by_position`), says what it did
/// in the run's notes, and keeps the matched ones in `run.ordered`.
fn number_by_order(run: &mut Run, records: Vec<CollectiveRecord>) {
    let (mut ordered, refusals) = collective::order_by_position(records, &mut run.order_stats);
    let (unmatched, libs) = collective::unmatched_libraries(&ordered);
    let refusals: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    run.notes.extend(collective::order_notes(&run.order_stats, &refusals, unmatched, &libs));
    ordered.retain(|r| r.instance_key().is_some());
    run.ordered = ordered;
}

/// Each imported trace's rank (its `distributedInfo`), as its steps carry
/// it: node → rank, for nodes whose Kineto steps name one rank.
fn trace_ranks(steps: &[Step]) -> HashMap<Arc<str>, i32> {
    let mut seen: HashMap<Arc<str>, Option<i32>> = HashMap::new();
    for s in steps.iter().filter(|s| s.source == "kineto") {
        let Some(r) = s.rank else { continue };
        seen.entry(s.node.clone()).and_modify(|x| *x = x.filter(|x| *x == r)).or_insert(Some(r));
    }
    seen.into_iter().filter_map(|(n, r)| Some((n, r?))).collect()
}

/// Steps: inferred from NCCL periodicity for ranks without markers or
/// profiler steps; FLOPs from the job config; ranks from calls and steps.
fn finish_steps(opts: &RunOptions, run: &mut Run) {
    for c in &run.calls {
        if let (Some(g), Some(r)) = (c.gpu_index, c.rank) {
            run.ranks.entry(GpuKey { node: c.node.clone(), gpu_index: g }).or_insert(r);
        }
    }
    let has_steps: HashSet<(Arc<str>, Option<i32>)> =
        run.steps.iter().filter(|s| s.phase == "step").map(|s| (s.node.clone(), s.pid)).collect();
    let without: Vec<NcclCall> =
        run.calls.iter().filter(|c| !has_steps.contains(&(c.node.clone(), Some(c.pid)))).cloned().collect();
    let inferred = strand_analysis::steps::infer_steps(&without);
    if !inferred.is_empty() {
        run.notes.push(format!(
            "{} steps inferred from the period of NCCL calls (no step markers for those ranks)",
            inferred.len()
        ));
    }
    run.steps.extend(inferred);
    for s in &run.steps {
        if let (Some(g), Some(r)) = (s.gpu_index, s.rank) {
            run.ranks.insert(GpuKey { node: s.node.clone(), gpu_index: g }, r);
        }
    }
    if let Some(f) = opts.flops_per_step {
        let mut n = 0;
        for s in run.steps.iter_mut().filter(|s| s.phase == "step" && s.model_flops.is_none()) {
            s.model_flops = Some(f);
            if s.dtype.is_none() {
                s.dtype = opts.dtype.clone();
            }
            n += 1;
        }
        run.notes.push(format!("model FLOPs from --flops-per-step ({f:e} per step) on {n} steps"));
    }
    if run.steps.iter().all(|s| s.model_flops.is_none()) && !run.recorded_windows {
        run.notes.push("no model FLOPs (no step markers with flops, no --flops-per-step): MFU is not computed; the tensor-pipe estimate is shown where GPM data exists".into());
    }
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
