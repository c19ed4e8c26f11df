//! `strand report stranded`: how much paid GPU capacity is stranded, where
//! and why. One JSON document ([`Report`]) rendered as a self-contained HTML
//! page ([`html`]) and Markdown ([`markdown`]).
//!
//! Every figure is the one accounting (`strand_analysis::accounting`) rolled
//! up per cluster, node, GPU model, job and trend bucket; [`Breakdown`] only
//! puts its leaves in GPU-hours beside the fleet's own figure,
//! unallocatable GPUs. Stranded = ghost + idle of held GPUs + unallocatable.

mod html;
mod markdown;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use strand_analysis::GpuTime;
use strand_analysis::accounting::{Group, LEAVES, Leaf};
use strand_analysis::findings::{FindingView, JobRecovery, Thresholds};
use strand_kernels::Reducer;
use strand_schemas::clock::rfc3339;

use crate::analyze::{self, Analysis, Options};
use crate::inputs::GpuTimeRow;
use crate::sql::SqlParams;
use crate::stalls::StallStats;

/// Runs the analysis and builds the report; `progress` sees (stage, done, total).
pub async fn stranded(opts: &Options, reducer: &Reducer, progress: analyze::Progress<'_>) -> anyhow::Result<Report> {
    let started = std::time::Instant::now();
    let analysis = analyze::analyze(opts, reducer, progress).await?;
    build(opts, analysis, started.elapsed().as_secs_f64())
}

/// Writes stranded.json, stranded.md and stranded.html into `out`.
pub fn write(report: &Report, out: &Path, top: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let write = |name: &str, text: String| -> anyhow::Result<()> {
        let p = out.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
    };
    write("stranded.json", serde_json::to_string_pretty(report)?)?;
    write("stranded.md", markdown::render(report, top))?;
    write("stranded.html", html::render(report, top))?;
    Ok(())
}

#[cfg(test)]
pub fn markdown_for_tests(r: &Report) -> String {
    markdown::render(r, 20)
}

#[cfg(test)]
pub fn html_for_tests(r: &Report) -> String {
    html::render(r, 20)
}

/// GPU-hours of one slice of the fleet: the accounting's figures in hours,
/// and the unallocatable GPUs the fleet adds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Breakdown {
    pub powered_gpu_h: f64,
    /// Powered time whose split came from kernel records (CUPTI or Kineto).
    pub kernel_records_gpu_h: f64,
    /// Powered time split by NVML utilization alone.
    pub nvml_only_gpu_h: f64,
    /// Held by a process (powered − idle with no process).
    pub held_gpu_h: f64,
    /// NVML reported busy (utilization × time).
    pub reported_busy_gpu_h: f64,
    /// compute = |∪C| (DESIGN §4), where kernel records split the time.
    pub compute_gpu_h: f64,
    /// The leaves of the accounting, in its one order (`<leaf>` → GPU-hours).
    pub leaves_gpu_h: Vec<(&'static str, f64)>,
    /// The same in integer nanoseconds: exactly what the postmortem gives for the same windows.
    pub leaves_ns: Vec<(&'static str, i64)>,
    pub ghost_gpu_h: f64,
    pub idle_gpu_h: f64,
    /// Free GPUs on partly used nodes that the workload's job shapes cannot use (FGD); part of idle_no_process.
    pub unallocatable_gpu_h: f64,
    /// Ghost + idle of held GPUs + unallocatable.
    pub stranded_gpu_h: f64,
}

impl Breakdown {
    pub fn of(t: &GpuTime, unallocatable_gpu_h: f64) -> Self {
        let h = |ns: i64| ns as f64 / 3.6e12;
        Self {
            powered_gpu_h: h(t.powered_ns()),
            kernel_records_gpu_h: h(t.int("kernels_ns")),
            nvml_only_gpu_h: h(t.int("nvml_ns")),
            held_gpu_h: h(t.held_ns()),
            reported_busy_gpu_h: h(t.int("reported_busy_ns")),
            compute_gpu_h: h(t.int("compute_ns")),
            leaves_gpu_h: LEAVES.iter().map(|l| (l.name(), h(t.leaf(*l)))).collect(),
            leaves_ns: LEAVES.iter().map(|l| (l.name(), t.leaf(*l))).collect(),
            ghost_gpu_h: h(t.ghost_ns()),
            idle_gpu_h: h(t.group(Group::Idle)),
            unallocatable_gpu_h,
            stranded_gpu_h: h(t.stranded_ns()) + unallocatable_gpu_h,
        }
    }

    /// GPU-hours of one leaf.
    pub fn leaf(&self, l: Leaf) -> f64 {
        self.leaves_gpu_h.iter().find(|(n, _)| *n == l.name()).map_or(0.0, |(_, v)| *v)
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
pub type ReportFinding = FindingView;

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
    /// GPU-hours of sync stall that stayed an agent estimate (no complete instance found).
    pub estimated_stall_gpu_h: f64,
    pub notes: Vec<String>,
    pub timings: Vec<(String, usize, f64)>,
    pub elapsed_s: f64,
}

/// One row's accounting with its keys, for the slices.
struct Row<'a> {
    r: &'a GpuTimeRow,
    time: GpuTime,
}

fn slices<K: Ord + Clone + ToString + std::hash::Hash>(
    rows: &[Row],
    key: impl Fn(&GpuTimeRow) -> Option<K>,
    extra: &HashMap<K, f64>,
) -> Vec<Slice> {
    let mut acc: BTreeMap<K, (GpuTime, std::collections::HashSet<Arc<str>>)> = BTreeMap::new();
    for x in rows {
        if let Some(k) = key(x.r) {
            let e = acc.entry(k).or_default();
            e.0.merge(&x.time);
            e.1.insert(x.r.gpu_uuid.clone());
        }
    }
    let mut out: Vec<Slice> = acc
        .into_iter()
        .map(|(k, (t, gpus))| {
            let un = extra.get(&k).copied().unwrap_or(0.0);
            Slice { key: k.to_string(), gpus: gpus.len(), hours: Breakdown::of(&t, un) }
        })
        .collect();
    out.sort_by(|a, b| b.hours.stranded_gpu_h.total_cmp(&a.hours.stranded_gpu_h).then(a.key.cmp(&b.key)));
    out
}

/// Builds the report from the analysis.
pub fn build(opts: &Options, a: Analysis, elapsed_s: f64) -> anyhow::Result<Report> {
    // Each job's wasted progress moves from productive compute to ghost, over its rows.
    let mut rows: Vec<Row> = a.gpu_time.iter().map(|r| Row { r, time: r.time.clone() }).collect();
    for j in &a.jobs {
        let wasted = (j.wasted_gpu_s * 1e9).round() as i64;
        let mut parts: Vec<&mut GpuTime> = rows
            .iter_mut()
            .filter(|x| *x.r.cluster == *j.cluster && *x.r.job_id == *j.job_id)
            .map(|x| &mut x.time)
            .collect();
        GpuTime::apportion_wasted(&mut parts, wasted);
    }
    // Unallocatable capacity is a node figure: per node, cluster, model (the node's) and bucket.
    let mut node_model: HashMap<(Arc<str>, Arc<str>), Arc<str>> = HashMap::new();
    for x in &rows {
        node_model.entry((x.r.cluster.clone(), x.r.node.clone())).or_insert_with(|| x.r.gpu_name.clone());
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
    let mut total = GpuTime::new();
    for x in &rows {
        total.merge(&x.time);
    }
    let totals = Breakdown::of(&total, un_total);
    let by_cluster = slices(&rows, |r| Some(r.cluster.to_string()), &un_cluster);
    let by_gpu_model = slices(&rows, |r| Some(r.gpu_name.to_string()), &un_model);
    let by_node = slices(&rows, |r| Some(format!("{}/{}", r.cluster, r.node)), &un_node);
    let by_job =
        slices(&rows, |r| (!r.job_id.is_empty()).then(|| format!("{}/{}", r.cluster, r.job_id)), &HashMap::new());
    let mut trends: Vec<TrendPoint> = slices(&rows, |r| Some(r.bucket_ns), &un_bucket)
        .into_iter()
        .map(|s| {
            let b: i64 = s.key.parse().unwrap_or(0);
            TrendPoint { bucket_ns: b, bucket: rfc3339(b), hours: s.hours }
        })
        .collect();
    trends.sort_by_key(|t| t.bucket_ns);
    let estimated_stall_gpu_h = total.int("sync_stall_estimated_ns") as f64 / 3.6e12;

    let findings: Vec<ReportFinding> = a.findings.iter().map(FindingView::from).collect();
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
    if a.stall_stats.matched.instances_incomplete > 0 {
        notes.push(format!(
            "{} collective instances lacked a rank (peer data missing); their stalls stay agent estimates.",
            a.stall_stats.matched.instances_incomplete
        ));
    }
    notes.extend(a.stall_stats.order_notes());
    if totals.nvml_only_gpu_h > 0.0 {
        notes.push(format!(
            "{:.1} of {:.1} powered GPU-hours had no kernel records (no CUPTI or trace): NVML utilization split them into busy and idle, and GPM into hollow busy where it exists; their busy time is not split into compute and communication.",
            totals.nvml_only_gpu_h, totals.powered_gpu_h
        ));
    }
    let unmeasured = totals.leaf(Leaf::Unmeasured);
    if unmeasured > 0.0 {
        notes.push(format!("{unmeasured:.1} powered GPU-hours had neither kernel records nor NVML samples: unmeasured, not counted as idle."));
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
        estimated_stall_gpu_h,
        notes,
        timings: a.timings,
        elapsed_s,
    })
}

/// The recoverable capacity estimate, with its assumption per kind.
fn recoverable(
    findings: &[ReportFinding],
    jobs: &[JobRecovery],
    totals: &Breakdown,
    min_failures: usize,
) -> Vec<Recoverable> {
    let sum =
        |kind: &str| findings.iter().filter(|f| f.kind == kind).filter_map(|f| f.gpu_seconds).sum::<f64>() / 3600.0;
    let mut out = vec![
        Recoverable {
            kind: "straggler".into(),
            gpu_h: sum("straggler"),
            assumption: "fixing the straggling rank removes the stall it alone causes on its peers".into(),
        },
        Recoverable {
            kind: "bus_bandwidth_collapse".into(),
            gpu_h: sum("bus_bandwidth_collapse"),
            assumption: "restoring the class baseline bandwidth shortens those transfers".into(),
        },
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
    out.push(Recoverable {
        kind: "checkpoint_cost".into(),
        gpu_h: ckpt,
        assumption:
            "checkpointing at Young's interval where it is longer than the observed one (MTBF from enough failures)"
                .into(),
    });
    let wasted: f64 = jobs.iter().map(|j| j.wasted_gpu_s).sum::<f64>() / 3600.0 / 2.0;
    out.push(Recoverable {
        kind: "wasted_progress".into(),
        gpu_h: wasted,
        assumption: "half the work lost to failures, as checkpoints at Young's interval would halve it on average"
            .into(),
    });
    out.retain(|r| r.gpu_h > 0.0);
    out
}
