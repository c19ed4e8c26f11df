//! The postmortem's figures ([`Report`], serialized as `report.json`): the
//! one accounting (`strand_analysis::GpuTime`) per GPU, per time bucket and
//! for the run, the findings, and what the charts need.

use std::collections::BTreeMap;

use serde::Serialize;
use strand_analysis::GpuTime;
use strand_analysis::collective::MatchStats;
use strand_analysis::findings::{FindingView, JobRecovery};
use strand_schemas::Step;

/// HTA's idle time breakdown (per stream, summed) of one GPU.
#[derive(Debug, Clone, Serialize)]
pub struct StreamView {
    pub stream: i64,
    pub host_wait_ns: i64,
    pub kernel_wait_ns: i64,
    pub other_ns: i64,
    pub kernels: u64,
}

/// One GPU of the run.
#[derive(Debug, Clone, Serialize)]
pub struct GpuReport {
    pub node: String,
    pub gpu_index: i32,
    pub gpu_uuid: String,
    pub gpu_name: Option<String>,
    pub rank: Option<i32>,
    /// Kernel, copy and set records of the GPU in the input, each once
    /// (`time.kernel_window_overlaps` counts a record once per window it overlaps).
    pub kernel_records: u64,
    pub job_id: Option<String>,
    pub coverage: Vec<String>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub time: GpuTime,
    /// Per time bucket (the run's buckets), `None` where the GPU had no window.
    pub timeline: Vec<Option<GpuTime>>,
    /// HTA's per-stream idle view (built windows only).
    pub streams: Vec<StreamView>,
    pub stream_idle_total: StreamView,
}

/// Kernels grouped by name.
#[derive(Debug, Clone, Serialize)]
pub struct KernelRow {
    pub name: String,
    pub category: String,
    pub count: u64,
    pub total_ns: i64,
    pub min_ns: i64,
    pub max_ns: i64,
    /// Share of all kernel time (sum of durations, overlaps counted twice).
    pub share: f64,
}

/// Step times of one rank.
#[derive(Debug, Clone, Serialize)]
pub struct StepSeries {
    pub node: String,
    pub rank: Option<i32>,
    pub pid: Option<i32>,
    pub source: String,
    /// (step number, start, duration ns, model FLOPs).
    pub steps: Vec<(Option<i64>, i64, i64, Option<f64>)>,
    pub median_ns: Option<i64>,
}

/// Everything the postmortem reports. Serialized as `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub strand_version: String,
    pub inputs: Vec<String>,
    /// The job the run was limited to (`--job`).
    pub job: Option<String>,
    /// `recorded` (the input's `windows` rows, as the agent exported them) or `built` (from the raw rows here).
    pub windows_source: &'static str,
    pub window_ns: i64,
    pub bucket_ns: i64,
    pub launch_gap_ns: i64,
    pub start_ns: i64,
    pub end_ns: i64,
    /// The findings engine's findings, most severe first.
    pub findings: Vec<FindingView>,
    pub gpus: Vec<GpuReport>,
    pub run: GpuTime,
    pub buckets: Vec<GpuTime>,
    /// Per job: goodput, badput, checkpoints, failures (docs/goodput.md).
    pub jobs: Vec<JobRecovery>,
    /// What the collective matcher did.
    pub collectives: MatchStats,
    pub top_kernels: Vec<KernelRow>,
    /// Kernel, copy and set records in the input, each once.
    pub kernel_records: u64,
    pub kernels_total_ns: i64,
    pub distinct_kernels: usize,
    pub steps: Vec<StepSeries>,
    pub checkpoints: Vec<(String, Option<i32>, String, i64, i64)>,
    pub notes: Vec<String>,
    pub stats: serde_json::Value,
    /// The run's timeline (`strand export trace`) written next to the report, by its file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<String>,
}

/// Step series per (node, pid, source) from `steps` rows of phase `step`.
pub fn step_series(steps: &[Step]) -> Vec<StepSeries> {
    let mut by: BTreeMap<(String, Option<i32>, String), StepSeries> = BTreeMap::new();
    for s in steps.iter().filter(|s| s.phase == "step") {
        let e = by.entry((s.node.to_string(), s.pid, s.source.clone())).or_insert_with(|| StepSeries {
            node: s.node.to_string(),
            rank: s.rank,
            pid: s.pid,
            source: s.source.clone(),
            steps: Vec::new(),
            median_ns: None,
        });
        e.steps.push((s.step, s.start_ns, s.end_ns - s.start_ns, s.model_flops));
    }
    let mut out: Vec<StepSeries> = by.into_values().collect();
    for s in &mut out {
        s.steps.sort_by_key(|x| x.1);
        let mut d: Vec<i64> = s.steps.iter().map(|x| x.2).collect();
        d.sort_unstable();
        s.median_ns = d.get(d.len() / 2).copied();
    }
    out.sort_by_key(|s| (s.rank.unwrap_or(i32::MAX), s.node.clone(), s.pid));
    out
}
