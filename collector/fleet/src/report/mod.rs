//! `strand report stranded`: how much paid GPU capacity is stranded, where
//! and why (issue 8 item 4). One JSON document ([`Report`]) rendered as a
//! self-contained HTML page ([`html`]) and Markdown ([`markdown`]).
//!
//! Accounting (docs/goodput.md, "GPU-time accounting"): every powered
//! GPU-second of a window is exactly one of productive compute, ghost compute
//! (sync stall, hollow busy, wasted progress), communication transfer,
//! exposed memcpy, or idle (host bound, launch gap, I/O blocked, no process,
//! other). Stranded = idle of held GPUs + ghost + unallocatable.

mod html;
mod markdown;
pub mod svg;

#[cfg(test)]
pub use html::categories as html_categories;

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Serialize;
use strand_kernels::{Backend, Reducer};

use crate::dataset::TimeRange;
use crate::fleet::ai17::JobRecovery;
use crate::fleet::findings::Thresholds;
use crate::fleet::sql::{Rows, SqlParams};
use crate::fleet::stalls::{StallOptions, StallStats};
use crate::fleet::{self, Analysis, Options};

#[derive(clap::Subcommand, Debug)]
pub enum ReportCommand {
    /// The stranded-capacity report: GPU-hours powered, held, busy, compute,
    /// ghost and idle per cluster, node, GPU model and job; ai.01 and ai.17
    /// findings with their evidence; recoverable capacity; trends.
    Stranded(StrandedArgs),
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  strand report stranded --data /srv/strand --last 24h
  strand report stranded --data s3://bucket/strand --from 2026-01-05T00:00:00Z --to 2026-01-06T00:00:00Z --cluster a100
  strand report stranded --data /srv/strand --last 1h --store     # also store collective_stalls and findings")]
pub struct StrandedArgs {
    /// The dataset: a directory, file:// URL or s3://bucket/prefix.
    #[arg(long, env = "STRAND_DATA", default_value = "strand-data")]
    pub data: String,
    /// Start (RFC 3339, e.g. 2026-01-05T00:00:00Z, or UTC nanoseconds).
    #[arg(long)]
    pub from: Option<String>,
    /// End, exclusive (same forms).
    #[arg(long)]
    pub to: Option<String>,
    /// The last DURATION up to now (e.g. 24h), instead of --from/--to.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub last: Option<String>,
    /// Only these clusters (repeatable).
    #[arg(long)]
    pub cluster: Vec<String>,
    /// Only these nodes (repeatable).
    #[arg(long)]
    pub node: Vec<String>,
    /// Only these jobs (repeatable).
    #[arg(long)]
    pub job: Vec<String>,
    /// Directory for stranded.html, stranded.md and stranded.json.
    #[arg(short, long, default_value = "strand-report")]
    pub out: PathBuf,
    /// Also write collective_stalls and findings into the dataset (local directory; whole fleet only).
    #[arg(long)]
    pub store: bool,
    /// The agents' window period (`windows.period`).
    #[arg(long, default_value = "10s")]
    pub window: String,
    /// Trend bucket (default: the range cut in about 24, at least 10 minutes).
    #[arg(long)]
    pub bucket: Option<String>,
    /// DataFusion memory pool (e.g. 4GiB); above it queries spill to disk.
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// Exact-stall work unit (divides an hour): shorter holds fewer rows at once, longer rereads less.
    #[arg(long, default_value = "10m")]
    pub stall_chunk: String,
    /// Reductions backend: auto, gpu or cpu.
    #[arg(long, default_value = "auto")]
    pub kernels: String,
    /// Findings shown in full in HTML and Markdown (all are in the JSON).
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Write every report query's result as JSON lines into this directory (engine comparison).
    #[arg(long, hide = true)]
    pub dump_sql: Option<PathBuf>,
}

pub async fn run(cmd: ReportCommand) -> anyhow::Result<()> {
    match cmd {
        ReportCommand::Stranded(args) => stranded(args).await,
    }
}

fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ns) = s.parse::<i64>() {
        return Ok(ns);
    }
    let t = humantime::parse_rfc3339_weak(s).with_context(|| format!("bad time {s:?}: use RFC 3339 (2026-01-05T00:00:00Z) or UTC nanoseconds"))?;
    let d = t.duration_since(std::time::UNIX_EPOCH).context("time before 1970")?;
    Ok(d.as_nanos() as i64)
}

fn parse_duration(what: &str, s: &str) -> anyhow::Result<i64> {
    let d = humantime::parse_duration(s).with_context(|| format!("bad {what} {s:?} (e.g. 10s, 1h)"))?;
    let ns = d.as_nanos() as i64;
    if ns <= 0 {
        bail!("{what} must be positive");
    }
    Ok(ns)
}

fn parse_bytes(s: &str) -> anyhow::Result<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("bad size {s:?} (e.g. 4GiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => bail!("bad size unit {other:?} in {s:?} (use MiB or GiB)"),
    };
    Ok((n * mult) as usize)
}

/// Builds the analysis options from the command line.
pub fn options(args: &StrandedArgs, now_ns: i64) -> anyhow::Result<Options> {
    let (start_ns, end_ns) = match (&args.last, &args.from, &args.to) {
        (Some(d), _, _) => (now_ns - parse_duration("--last", d)?, now_ns),
        (None, Some(f), Some(t)) => (parse_time(f)?, parse_time(t)?),
        _ => bail!("give the range as --from and --to, or --last"),
    };
    if end_ns <= start_ns {
        bail!("the range is empty: --to must be after --from");
    }
    let window_ns = parse_duration("--window", &args.window)?;
    let bucket_ns = match &args.bucket {
        Some(b) => parse_duration("--bucket", b)?,
        None => {
            let ten_min = 600_000_000_000i64;
            (((end_ns - start_ns) / 24 + ten_min - 1) / ten_min * ten_min).max(ten_min)
        }
    };
    Ok(Options {
        data: args.data.clone(),
        range: TimeRange::new(start_ns, end_ns),
        clusters: args.cluster.clone(),
        nodes: args.node.clone(),
        jobs: args.job.clone(),
        params: SqlParams { window_ns, bucket_ns, alloc_ns: 60_000_000_000, bw_bucket_ns: 300_000_000_000 },
        thresholds: Thresholds::default(),
        stall: StallOptions { chunk_ns: parse_duration("--stall-chunk", &args.stall_chunk)?, ..StallOptions::default() },
        store: args.store,
        memory_limit: args.memory_limit.as_deref().map(parse_bytes).transpose()?,
        dump_dir: args.dump_sql.clone(),
        created_ns: now_ns,
    })
}

async fn stranded(args: StrandedArgs) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as i64;
    let opts = options(&args, now)?;
    let backend: Backend = args.kernels.parse().map_err(|e: String| anyhow::anyhow!("--kernels: {e}"))?;
    let reducer = Reducer::new(backend)?.with_cpu_threads(0);
    let bar = progress_bar();
    let mut progress = |stage: &str, done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_message(stage.to_string());
            b.set_length(total);
            b.set_position(done);
        }
    };
    let started = std::time::Instant::now();
    let analysis = fleet::analyze(&opts, &reducer, &mut progress).await?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = build(&opts, analysis, started.elapsed().as_secs_f64())?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let write = |name: &str, text: String| -> anyhow::Result<()> {
        let p = args.out.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
    };
    write("stranded.json", serde_json::to_string_pretty(&report)?)?;
    write("stranded.md", markdown::render(&report, args.top))?;
    write("stranded.html", html::render(&report, args.top))?;
    eprintln!(
        "strand report: {:.1} GPU-hours powered, {:.1} stranded ({:.0}%), {} findings; wrote {}/stranded.{{html,md,json}} in {:.1} s",
        report.totals.powered_gpu_h,
        report.totals.stranded_gpu_h,
        100.0 * report.totals.stranded_gpu_h / report.totals.powered_gpu_h.max(1e-9),
        report.findings.len(),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(1);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {pos}/{len} [{elapsed}]") {
        b.set_style(style);
    }
    b.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(b)
}

/// GPU-hours of one slice of the fleet, by category.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Breakdown {
    pub powered_gpu_h: f64,
    /// Powered time with a kernel-level decomposition (CUPTI or Kineto).
    pub measured_gpu_h: f64,
    /// Held by a process (powered − idle with no process).
    pub held_gpu_h: f64,
    /// NVML reported busy (utilization × time).
    pub reported_busy_gpu_h: f64,
    /// Compute that advanced the workload: compute − hollow busy − wasted progress.
    pub compute_gpu_h: f64,
    pub comm_transfer_gpu_h: f64,
    pub memcpy_exposed_gpu_h: f64,
    pub ghost_sync_stall_gpu_h: f64,
    pub ghost_hollow_busy_gpu_h: f64,
    pub ghost_wasted_progress_gpu_h: f64,
    pub idle_host_bound_gpu_h: f64,
    pub idle_launch_gap_gpu_h: f64,
    pub idle_io_blocked_gpu_h: f64,
    pub idle_no_process_gpu_h: f64,
    pub idle_other_gpu_h: f64,
    /// Free GPUs on partly used nodes that the workload's job shapes cannot use (FGD); part of idle_no_process.
    pub unallocatable_gpu_h: f64,
    /// Idle of held GPUs + ghost + unallocatable.
    pub stranded_gpu_h: f64,
}

impl Breakdown {
    pub fn ghost_gpu_h(&self) -> f64 {
        self.ghost_sync_stall_gpu_h + self.ghost_hollow_busy_gpu_h + self.ghost_wasted_progress_gpu_h
    }
    pub fn idle_gpu_h(&self) -> f64 {
        self.idle_host_bound_gpu_h + self.idle_launch_gap_gpu_h + self.idle_io_blocked_gpu_h + self.idle_no_process_gpu_h + self.idle_other_gpu_h
    }
    fn add(&mut self, o: &Breakdown) {
        self.powered_gpu_h += o.powered_gpu_h;
        self.measured_gpu_h += o.measured_gpu_h;
        self.held_gpu_h += o.held_gpu_h;
        self.reported_busy_gpu_h += o.reported_busy_gpu_h;
        self.compute_gpu_h += o.compute_gpu_h;
        self.comm_transfer_gpu_h += o.comm_transfer_gpu_h;
        self.memcpy_exposed_gpu_h += o.memcpy_exposed_gpu_h;
        self.ghost_sync_stall_gpu_h += o.ghost_sync_stall_gpu_h;
        self.ghost_hollow_busy_gpu_h += o.ghost_hollow_busy_gpu_h;
        self.ghost_wasted_progress_gpu_h += o.ghost_wasted_progress_gpu_h;
        self.idle_host_bound_gpu_h += o.idle_host_bound_gpu_h;
        self.idle_launch_gap_gpu_h += o.idle_launch_gap_gpu_h;
        self.idle_io_blocked_gpu_h += o.idle_io_blocked_gpu_h;
        self.idle_no_process_gpu_h += o.idle_no_process_gpu_h;
        self.idle_other_gpu_h += o.idle_other_gpu_h;
        self.unallocatable_gpu_h += o.unallocatable_gpu_h;
        self.stranded_gpu_h += o.stranded_gpu_h;
    }
    fn finish(&mut self) {
        self.stranded_gpu_h = (self.idle_gpu_h() - self.idle_no_process_gpu_h) + self.ghost_gpu_h() + self.unallocatable_gpu_h;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Slice {
    pub key: String,
    /// GPUs seen in the slice.
    pub gpus: usize,
    #[serde(flatten)]
    pub hours: Breakdown,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrendPoint {
    pub bucket_ns: i64,
    pub bucket: String,
    #[serde(flatten)]
    pub hours: Breakdown,
}

/// A finding as the report shows it (figures and evidence parsed).
#[derive(Debug, Clone, Serialize)]
pub struct ReportFinding {
    pub finding_id: String,
    pub code: String,
    pub kind: String,
    pub scope: String,
    pub severity: String,
    pub cluster: String,
    pub node: Option<String>,
    pub gpu_uuid: Option<String>,
    pub job_id: Option<String>,
    pub comm_hash: Option<i64>,
    pub rank: Option<i32>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub summary: String,
    pub gpu_seconds: Option<f64>,
    pub figures: serde_json::Value,
    pub evidence: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recoverable {
    pub kind: String,
    pub gpu_h: f64,
    pub assumption: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub title: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub start: String,
    pub end: String,
    pub filters: BTreeMap<String, Vec<String>>,
    pub params: SqlParams,
    pub thresholds: Thresholds,
    pub totals: Breakdown,
    pub by_cluster: Vec<Slice>,
    pub by_gpu_model: Vec<Slice>,
    pub by_node: Vec<Slice>,
    pub by_job: Vec<Slice>,
    pub trends: Vec<TrendPoint>,
    pub findings: Vec<ReportFinding>,
    pub findings_by_kind: BTreeMap<String, usize>,
    pub jobs: Vec<JobRecovery>,
    pub job_shapes: BTreeMap<i64, f64>,
    pub recoverable: Vec<Recoverable>,
    pub recoverable_gpu_h: f64,
    pub stalls: StallStats,
    /// Windows whose sync stall stayed an agent estimate (no complete instance found).
    pub estimated_windows_left: i64,
    pub notes: Vec<String>,
    pub timings: Vec<(String, usize, f64)>,
    pub elapsed_s: f64,
}

pub fn rfc3339(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

struct GpuRow {
    cluster: Arc<str>,
    node: Arc<str>,
    gpu: Arc<str>,
    model: Arc<str>,
    job: Arc<str>,
    bucket: i64,
    h: Breakdown,
    compute_raw: f64,
}

fn gpu_rows(rows: &Rows, wasted: &HashMap<(Arc<str>, String), f64>) -> anyhow::Result<(Vec<GpuRow>, i64)> {
    let s = |n: &str| rows.str_req(n);
    let i = |n: &str| rows.i64_req(n);
    let (cluster, node, gpu, model, job, bucket) = (s("cluster")?, s("node")?, s("gpu_uuid")?, s("gpu_name")?, s("job_id")?, i("bucket_ns")?);
    let cols = [
        "powered_ns", "measured_ns", "reported_busy_ns", "compute_ns", "comm_exposed_ns", "memcpy_exposed_ns", "idle_ns", "idle_host_bound_ns",
        "idle_launch_gap_ns", "idle_io_blocked_ns", "idle_no_process_ns", "idle_other_ns", "hollow_busy_ns", "sync_stall_ns", "estimated_windows_left",
    ];
    let v: Vec<Vec<i64>> = cols.iter().map(|c| i(c)).collect::<anyhow::Result<_>>()?;
    let h = |ns: i64| ns as f64 / 3.6e12;
    // Wasted progress of a job, spread over its rows by their compute.
    let mut job_compute: HashMap<(Arc<str>, Arc<str>), f64> = HashMap::new();
    for r in 0..rows.len() {
        *job_compute.entry((cluster[r].clone(), job[r].clone())).or_default() += v[3][r] as f64;
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut estimated_left = 0;
    for r in 0..rows.len() {
        let [powered, measured, busy, compute, exposed, memcpy, idle, hb, lg, io, np, other, hollow, stall, est] = std::array::from_fn(|k| v[k][r]);
        estimated_left += est;
        let total = job_compute.get(&(cluster[r].clone(), job[r].clone())).copied().unwrap_or(0.0);
        let wasted_s = wasted.get(&(cluster[r].clone(), job[r].to_string())).copied().unwrap_or(0.0);
        let wasted_h = if total > 0.0 { wasted_s / 3600.0 * compute as f64 / total } else { 0.0 };
        let hollow_h = h(hollow.min(compute));
        let classified = hb + lg + io + np + other;
        let mut b = Breakdown {
            powered_gpu_h: h(powered),
            measured_gpu_h: h(measured),
            held_gpu_h: h(powered - np),
            reported_busy_gpu_h: h(busy),
            compute_gpu_h: (h(compute) - hollow_h - wasted_h).max(0.0),
            comm_transfer_gpu_h: h((exposed - stall).max(0)),
            memcpy_exposed_gpu_h: h(memcpy),
            ghost_sync_stall_gpu_h: h(stall.min(exposed)),
            ghost_hollow_busy_gpu_h: hollow_h,
            ghost_wasted_progress_gpu_h: wasted_h.min(h(compute) - hollow_h).max(0.0),
            idle_host_bound_gpu_h: h(hb),
            idle_launch_gap_gpu_h: h(lg),
            idle_io_blocked_gpu_h: h(io),
            idle_no_process_gpu_h: h(np),
            // Idle the agent did not classify counts as other.
            idle_other_gpu_h: h(other + (idle - classified).max(0)),
            unallocatable_gpu_h: 0.0,
            stranded_gpu_h: 0.0,
        };
        b.finish();
        out.push(GpuRow { cluster: cluster[r].clone(), node: node[r].clone(), gpu: gpu[r].clone(), model: model[r].clone(), job: job[r].clone(), bucket: bucket[r], h: b, compute_raw: compute as f64 });
    }
    Ok((out, estimated_left))
}

fn slices<K: Ord + Clone + ToString + std::hash::Hash>(rows: &[GpuRow], key: impl Fn(&GpuRow) -> Option<K>, extra: &HashMap<K, f64>) -> Vec<Slice> {
    let mut acc: BTreeMap<K, (Breakdown, std::collections::HashSet<Arc<str>>)> = BTreeMap::new();
    for r in rows {
        if let Some(k) = key(r) {
            let e = acc.entry(k).or_default();
            e.0.add(&r.h);
            e.1.insert(r.gpu.clone());
        }
    }
    for (k, gpu_h) in extra {
        acc.entry(k.clone()).or_default().0.unallocatable_gpu_h += gpu_h;
    }
    let mut out: Vec<Slice> = acc
        .into_iter()
        .map(|(k, (mut h, gpus))| {
            h.finish();
            Slice { key: k.to_string(), gpus: gpus.len(), hours: h }
        })
        .collect();
    out.sort_by(|a, b| b.hours.stranded_gpu_h.total_cmp(&a.hours.stranded_gpu_h).then(a.key.cmp(&b.key)));
    out
}

/// Builds the report from the analysis.
pub fn build(opts: &Options, a: Analysis, elapsed_s: f64) -> anyhow::Result<Report> {
    let wasted = crate::fleet::ai17::wasted_by_job(&a.jobs);
    let (rows, estimated_windows_left) = gpu_rows(&a.gpu_time, &wasted)?;
    let _ = rows.iter().map(|r| r.compute_raw).sum::<f64>();
    // Unallocatable capacity is a node figure: per node, cluster, model (the node's) and bucket.
    let mut node_model: HashMap<(Arc<str>, Arc<str>), Arc<str>> = HashMap::new();
    for r in &rows {
        node_model.entry((r.cluster.clone(), r.node.clone())).or_insert_with(|| r.model.clone());
    }
    let mut un_node: HashMap<String, f64> = HashMap::new();
    let mut un_cluster: HashMap<String, f64> = HashMap::new();
    let mut un_model: HashMap<String, f64> = HashMap::new();
    let mut un_bucket: HashMap<i64, f64> = HashMap::new();
    let mut un_total = 0.0;
    for ((c, n, b), s) in &a.topology.per_node {
        let h = s / 3600.0;
        *un_node.entry(format!("{c}/{n}")).or_default() += h;
        *un_cluster.entry(c.to_string()).or_default() += h;
        let model = node_model.get(&(c.clone(), n.clone())).map_or("unknown".to_string(), |m| m.to_string());
        *un_model.entry(model).or_default() += h;
        *un_bucket.entry(*b).or_default() += h;
        un_total += h;
    }
    let mut totals = Breakdown::default();
    for r in &rows {
        totals.add(&r.h);
    }
    totals.unallocatable_gpu_h = un_total;
    totals.finish();
    let by_cluster = slices(&rows, |r| Some(r.cluster.to_string()), &un_cluster);
    let by_gpu_model = slices(&rows, |r| Some(r.model.to_string()), &un_model);
    let by_node = slices(&rows, |r| Some(format!("{}/{}", r.cluster, r.node)), &un_node);
    let by_job = slices(&rows, |r| (!r.job.is_empty()).then(|| format!("{}/{}", r.cluster, r.job)), &HashMap::new());
    let trends = slices(&rows, |r| Some(r.bucket), &un_bucket)
        .into_iter()
        .map(|s| {
            let b: i64 = s.key.parse().unwrap_or(0);
            TrendPoint { bucket_ns: b, bucket: rfc3339(b), hours: s.hours }
        })
        .collect::<Vec<_>>();
    let mut trends = trends;
    trends.sort_by_key(|t| t.bucket_ns);

    let findings: Vec<ReportFinding> = a
        .findings
        .iter()
        .map(|f| ReportFinding {
            finding_id: f.finding_id.clone(),
            code: f.code.clone(),
            kind: f.kind.clone(),
            scope: f.scope.clone(),
            severity: f.severity.clone(),
            cluster: f.cluster.to_string(),
            node: f.node.as_deref().map(str::to_string),
            gpu_uuid: f.gpu_uuid.as_deref().map(str::to_string),
            job_id: f.job_id.clone(),
            comm_hash: f.comm_hash,
            rank: f.rank,
            start_ns: f.start_ns,
            end_ns: f.end_ns,
            summary: f.summary.clone(),
            gpu_seconds: f.gpu_seconds,
            figures: serde_json::from_str(&f.figures).unwrap_or(serde_json::Value::Null),
            evidence: serde_json::from_str(&f.evidence).unwrap_or(serde_json::Value::Null),
        })
        .collect();
    let mut findings_by_kind = BTreeMap::new();
    for f in &findings {
        *findings_by_kind.entry(format!("{} {}", f.code, f.kind)).or_insert(0) += 1;
    }
    let recoverable = recoverable(&findings, &a.jobs, &totals, opts.thresholds.young_min_failures);
    let recoverable_gpu_h = recoverable.iter().map(|r| r.gpu_h).sum();
    let mut filters = BTreeMap::new();
    for (k, v) in [("cluster", &opts.clusters), ("node", &opts.nodes), ("job", &opts.jobs)] {
        if !v.is_empty() {
            filters.insert(k.to_string(), v.clone());
        }
    }
    let mut notes = vec![
        "Ghost compute: sync stall (exact across nodes where every rank was seen, else the agent's estimate), hollow busy, wasted progress.".to_string(),
        format!("Unallocatable: FGD fragmentation over the job shapes seen in the range (GPUs per job per node): {:?}.", a.topology.shapes),
    ];
    if a.stall_stats.instances_incomplete > 0 {
        notes.push(format!("{} collective instances lacked a rank (peer data missing); their stalls stay agent estimates.", a.stall_stats.instances_incomplete));
    }
    if totals.measured_gpu_h + 1e-9 < totals.powered_gpu_h {
        notes.push(format!(
            "{:.1} of {:.1} powered GPU-hours had no kernel-level decomposition (no CUPTI or trace): they show as idle other.",
            totals.powered_gpu_h - totals.measured_gpu_h,
            totals.powered_gpu_h
        ));
    }
    Ok(Report {
        title: "Stranded GPU capacity".into(),
        start_ns: opts.range.start_ns,
        end_ns: opts.range.end_ns,
        start: rfc3339(opts.range.start_ns),
        end: rfc3339(opts.range.end_ns),
        filters,
        params: opts.params,
        thresholds: opts.thresholds.clone(),
        totals,
        by_cluster,
        by_gpu_model,
        by_node,
        by_job,
        trends,
        findings,
        findings_by_kind,
        jobs: a.jobs,
        job_shapes: a.topology.shapes.clone(),
        recoverable,
        recoverable_gpu_h,
        stalls: a.stall_stats,
        estimated_windows_left,
        notes,
        timings: a.timings,
        elapsed_s,
    })
}

/// The recoverable capacity estimate, with its assumption per kind.
fn recoverable(findings: &[ReportFinding], jobs: &[JobRecovery], totals: &Breakdown, min_failures: usize) -> Vec<Recoverable> {
    let sum = |kind: &str| findings.iter().filter(|f| f.kind == kind).filter_map(|f| f.gpu_seconds).sum::<f64>() / 3600.0;
    let mut out = vec![
        Recoverable { kind: "straggler".into(), gpu_h: sum("straggler"), assumption: "fixing the straggling rank removes the stall it alone causes on its peers".into() },
        Recoverable { kind: "bus_bandwidth_collapse".into(), gpu_h: sum("bus_bandwidth_collapse"), assumption: "restoring the class baseline bandwidth shortens those transfers".into() },
        Recoverable {
            kind: "topology_stranded".into(),
            gpu_h: totals.unallocatable_gpu_h,
            assumption: "packing jobs onto fewer nodes frees whole nodes that the job shapes can use".into(),
        },
    ];
    // Checkpoints: saving at Young's interval instead of the observed one.
    let ckpt: f64 = jobs
        .iter()
        .filter(|j| j.mtbf_failures >= min_failures)
        .filter_map(|j| {
            let (i, y) = (j.checkpoint_interval_s?, j.young_interval_s?);
            (y > i).then(|| j.badput.checkpoint_save_s * (1.0 - i / y) * j.gpus as f64 / 3600.0)
        })
        .sum();
    out.push(Recoverable { kind: "checkpoint_cost".into(), gpu_h: ckpt, assumption: "checkpointing at Young's interval where it is longer than the observed one (MTBF from enough failures)".into() });
    let wasted: f64 = jobs.iter().map(|j| j.wasted_gpu_s).sum::<f64>() / 3600.0 / 2.0;
    out.push(Recoverable { kind: "wasted_progress".into(), gpu_h: wasted, assumption: "half the work lost to failures, as checkpoints at Young's interval would halve it on average".into() });
    out.retain(|r| r.gpu_h > 0.0);
    out
}
