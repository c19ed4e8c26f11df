//! The postmortem's figures: `windows` rows (from `strand-analysis`) summed
//! per GPU and per time bucket, plus kernel, step and stream figures. This
//! is the JSON file; the HTML and Markdown render it and compute nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use strand_analysis::GpuKey;
use strand_analysis::idle::StreamIdleTotals;
use strand_schemas::{Step, Window};

/// A sum of an optional column: `None` when no window measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sum(pub Option<i64>);

impl Sum {
    fn add(&mut self, v: Option<i64>) {
        if let Some(v) = v {
            self.0 = Some(self.0.unwrap_or(0) + v);
        }
    }
}

/// DESIGN §4 totals over a set of windows, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Σ T of the windows.
    pub window_ns: i64,
    /// Σ T of the windows whose categories were measured (kernel records).
    pub measured_ns: i64,
    pub compute_ns: Sum,
    pub comm_exposed_ns: Sum,
    pub memcpy_exposed_ns: Sum,
    pub idle_ns: Sum,
    pub comm_ns: Sum,
    pub comm_overlapped_ns: Sum,
    pub comm_transfer_ns: Sum,
    pub sync_stall_ns: Sum,
    /// Windows whose sync stall was estimated (peers missing).
    pub sync_stall_estimated_windows: u64,
    pub sync_stall_exact_windows: u64,
    /// Σ T of windows with communication but no sync-stall figure.
    pub comm_split_unknown_ns: i64,
    pub idle_host_bound_ns: Sum,
    pub idle_launch_gap_ns: Sum,
    pub idle_io_blocked_ns: Sum,
    pub idle_no_process_ns: Sum,
    pub idle_other_ns: Sum,
    pub host_sync_blocked_ns: Sum,
    pub kernel_count: Sum,
    pub reported_busy_ns: Sum,
    /// Σ T of windows with a reported utilization.
    pub reported_ns: i64,
    pub hollow_busy_ns: Sum,
    pub ghost_ns: Sum,
    pub model_flops: Option<f64>,
    /// Σ T × peak over windows with model FLOPs and a known peak.
    pub peak_flop_budget: Option<f64>,
    /// Σ tensor estimate × T and the T it covers.
    pub tensor_estimate_weighted: f64,
    pub tensor_estimate_ns: i64,
    pub sm_active_weighted: f64,
    pub sm_active_ns: i64,
}

impl Totals {
    pub fn add(&mut self, w: &Window) {
        let t = w.end_ns - w.start_ns;
        self.window_ns += t;
        if w.compute_ns.is_some() {
            self.measured_ns += t;
        }
        self.compute_ns.add(w.compute_ns);
        self.comm_exposed_ns.add(w.comm_exposed_ns);
        self.memcpy_exposed_ns.add(w.memcpy_exposed_ns);
        self.idle_ns.add(w.idle_ns);
        self.comm_ns.add(w.comm_ns);
        self.comm_overlapped_ns.add(w.comm_overlapped_ns);
        // The comm split only where there was communication: a window without
        // any must not make an unknown split look like a zero stall.
        if w.comm_ns.unwrap_or(0) > 0 {
            self.comm_transfer_ns.add(w.comm_transfer_ns);
            self.sync_stall_ns.add(w.sync_stall_ns);
        }
        match w.sync_stall_estimated {
            Some(true) => self.sync_stall_estimated_windows += 1,
            Some(false) if w.comm_ns.unwrap_or(0) > 0 => self.sync_stall_exact_windows += 1,
            _ => {}
        }
        if w.comm_ns.unwrap_or(0) > 0 && w.sync_stall_ns.is_none() {
            self.comm_split_unknown_ns += t;
        }
        self.idle_host_bound_ns.add(w.idle_host_bound_ns);
        self.idle_launch_gap_ns.add(w.idle_launch_gap_ns);
        self.idle_io_blocked_ns.add(w.idle_io_blocked_ns);
        self.idle_no_process_ns.add(w.idle_no_process_ns);
        self.idle_other_ns.add(w.idle_other_ns);
        self.host_sync_blocked_ns.add(w.host_sync_blocked_ns);
        self.kernel_count.add(w.kernel_count);
        self.reported_busy_ns.add(w.reported_busy_ns);
        if w.reported_utilization_ratio.is_some() {
            self.reported_ns += t;
        }
        self.hollow_busy_ns.add(w.hollow_busy_ns);
        self.ghost_ns.add(w.ghost_ns);
        if let (Some(f), Some(p)) = (w.model_flops, w.peak_flops_per_s) {
            *self.model_flops.get_or_insert(0.0) += f;
            *self.peak_flop_budget.get_or_insert(0.0) += p * t as f64 * 1e-9;
        }
        if let Some(e) = w.tensor_estimate {
            self.tensor_estimate_weighted += e * t as f64;
            self.tensor_estimate_ns += t;
        }
        if let Some(s) = w.sm_active_ratio {
            self.sm_active_weighted += s * t as f64;
            self.sm_active_ns += t;
        }
    }

    /// MFU over these windows: Σ model FLOPs ÷ Σ (T × peak).
    pub fn mfu(&self) -> Option<f64> {
        match (self.model_flops, self.peak_flop_budget) {
            (Some(f), Some(b)) if b > 0.0 => Some(f / b),
            _ => None,
        }
    }

    pub fn tensor_estimate(&self) -> Option<f64> {
        (self.tensor_estimate_ns > 0).then(|| self.tensor_estimate_weighted / self.tensor_estimate_ns as f64)
    }

    pub fn sm_active(&self) -> Option<f64> {
        (self.sm_active_ns > 0).then(|| self.sm_active_weighted / self.sm_active_ns as f64)
    }

    /// Reported utilization (NVML), time-weighted.
    pub fn reported_utilization(&self) -> Option<f64> {
        (self.reported_ns > 0).then(|| self.reported_busy_ns.0.unwrap_or(0) as f64 / self.reported_ns as f64)
    }

    /// Share of measured time at least one kernel, copy or set ran (what
    /// reported utilization should equal, DESIGN §4).
    pub fn busy_ratio(&self) -> Option<f64> {
        (self.measured_ns > 0).then(|| 1.0 - self.idle_ns.0.unwrap_or(0) as f64 / self.measured_ns as f64)
    }

    /// comm_overlapped / |∪M|.
    pub fn overlap_ratio(&self) -> Option<f64> {
        match (self.comm_overlapped_ns.0, self.comm_ns.0) {
            (Some(o), Some(c)) if c > 0 => Some(o as f64 / c as f64),
            _ => None,
        }
    }

    /// `part` as a share of the measured time.
    pub fn share(&self, part: Sum) -> Option<f64> {
        (self.measured_ns > 0).then(|| part.0.unwrap_or(0) as f64 / self.measured_ns as f64)
    }
}

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
    pub job_id: Option<String>,
    pub coverage: Vec<String>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub totals: Totals,
    /// Per time bucket (the run's buckets), `None` where the GPU had no window.
    pub timeline: Vec<Option<Totals>>,
    /// HTA's per-stream idle view.
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
    pub window_ns: i64,
    pub bucket_ns: i64,
    pub launch_gap_ns: i64,
    pub start_ns: i64,
    pub end_ns: i64,
    pub gpus: Vec<GpuReport>,
    pub run: Totals,
    pub buckets: Vec<Totals>,
    pub top_kernels: Vec<KernelRow>,
    pub kernels_total_ns: i64,
    pub distinct_kernels: usize,
    pub steps: Vec<StepSeries>,
    pub checkpoints: Vec<(String, Option<i32>, String, i64, i64)>,
    pub notes: Vec<String>,
    pub stats: serde_json::Value,
}

/// Collects windows as they come out of the builder; memory is bounded by
/// GPUs × buckets.
pub struct Aggregator {
    pub start_ns: i64,
    pub bucket_ns: i64,
    pub buckets: usize,
    gpus: BTreeMap<GpuKey, GpuAgg>,
    run_buckets: Vec<Totals>,
}

struct GpuAgg {
    uuid: Arc<str>,
    name: Option<Arc<str>>,
    job: Option<String>,
    coverage: std::collections::BTreeSet<String>,
    start: i64,
    end: i64,
    totals: Totals,
    timeline: Vec<Option<Totals>>,
}

impl Aggregator {
    pub fn new(start_ns: i64, end_ns: i64, bucket_ns: i64) -> Self {
        let bucket_ns = bucket_ns.max(1);
        let buckets = (((end_ns - start_ns).max(1) + bucket_ns - 1) / bucket_ns) as usize;
        Self { start_ns, bucket_ns, buckets: buckets.max(1), gpus: BTreeMap::new(), run_buckets: vec![Totals::default(); buckets.max(1)] }
    }

    fn bucket(&self, t: i64) -> usize {
        (((t - self.start_ns).max(0) / self.bucket_ns) as usize).min(self.buckets - 1)
    }

    pub fn add(&mut self, windows: &[Window]) {
        for w in windows {
            let b = self.bucket(w.start_ns);
            let key = GpuKey { node: w.node.clone(), gpu_index: w.gpu_index };
            let n = self.buckets;
            let g = self.gpus.entry(key).or_insert_with(|| GpuAgg {
                uuid: w.gpu_uuid.clone(),
                name: None,
                job: None,
                coverage: Default::default(),
                start: w.start_ns,
                end: w.end_ns,
                totals: Totals::default(),
                timeline: vec![None; n],
            });
            if w.gpu_name.is_some() {
                g.name = w.gpu_name.clone();
            }
            if w.job_id.is_some() {
                g.job = w.job_id.clone();
            }
            if !w.gpu_uuid.is_empty() {
                g.uuid = w.gpu_uuid.clone();
            }
            for c in w.coverage.split(',').filter(|c| !c.is_empty()) {
                g.coverage.insert(c.to_string());
            }
            g.start = g.start.min(w.start_ns);
            g.end = g.end.max(w.end_ns);
            g.totals.add(w);
            g.timeline[b].get_or_insert_with(Totals::default).add(w);
            self.run_buckets[b].add(w);
        }
    }

    /// Finishes the per-GPU part of the report.
    pub fn finish(
        self,
        ranks: &HashMap<GpuKey, i32>,
        streams: &HashMap<GpuKey, Vec<(i64, StreamIdleTotals)>>,
    ) -> (Vec<GpuReport>, Totals, Vec<Totals>) {
        let mut run = Totals::default();
        let mut gpus = Vec::new();
        for (key, g) in self.gpus {
            let mut t = g.totals.clone();
            // Run totals: sum of the GPUs' totals.
            merge(&mut run, &t);
            let sv: Vec<StreamView> = streams
                .get(&key)
                .map(|v| {
                    v.iter()
                        .map(|(s, x)| StreamView { stream: *s, host_wait_ns: x.host_wait_ns, kernel_wait_ns: x.kernel_wait_ns, other_ns: x.other_ns, kernels: x.kernels })
                        .collect()
                })
                .unwrap_or_default();
            let total = StreamView {
                stream: -1,
                host_wait_ns: sv.iter().map(|s| s.host_wait_ns).sum(),
                kernel_wait_ns: sv.iter().map(|s| s.kernel_wait_ns).sum(),
                other_ns: sv.iter().map(|s| s.other_ns).sum(),
                kernels: sv.iter().map(|s| s.kernels).sum(),
            };
            t.window_ns = g.totals.window_ns;
            gpus.push(GpuReport {
                node: key.node.to_string(),
                gpu_index: key.gpu_index,
                gpu_uuid: g.uuid.to_string(),
                gpu_name: g.name.map(|n| n.to_string()),
                rank: ranks.get(&key).copied(),
                job_id: g.job,
                coverage: g.coverage.into_iter().collect(),
                start_ns: g.start,
                end_ns: g.end,
                totals: t,
                timeline: g.timeline,
                streams: sv,
                stream_idle_total: total,
            });
        }
        gpus.sort_by_key(|g| (g.rank.unwrap_or(i32::MAX), g.node.clone(), g.gpu_index));
        (gpus, run, self.run_buckets)
    }
}

fn merge(into: &mut Totals, t: &Totals) {
    let add = |a: &mut Sum, b: Sum| a.add(b.0);
    into.window_ns += t.window_ns;
    into.measured_ns += t.measured_ns;
    add(&mut into.compute_ns, t.compute_ns);
    add(&mut into.comm_exposed_ns, t.comm_exposed_ns);
    add(&mut into.memcpy_exposed_ns, t.memcpy_exposed_ns);
    add(&mut into.idle_ns, t.idle_ns);
    add(&mut into.comm_ns, t.comm_ns);
    add(&mut into.comm_overlapped_ns, t.comm_overlapped_ns);
    add(&mut into.comm_transfer_ns, t.comm_transfer_ns);
    add(&mut into.sync_stall_ns, t.sync_stall_ns);
    into.sync_stall_estimated_windows += t.sync_stall_estimated_windows;
    into.sync_stall_exact_windows += t.sync_stall_exact_windows;
    into.comm_split_unknown_ns += t.comm_split_unknown_ns;
    add(&mut into.idle_host_bound_ns, t.idle_host_bound_ns);
    add(&mut into.idle_launch_gap_ns, t.idle_launch_gap_ns);
    add(&mut into.idle_io_blocked_ns, t.idle_io_blocked_ns);
    add(&mut into.idle_no_process_ns, t.idle_no_process_ns);
    add(&mut into.idle_other_ns, t.idle_other_ns);
    add(&mut into.host_sync_blocked_ns, t.host_sync_blocked_ns);
    add(&mut into.kernel_count, t.kernel_count);
    add(&mut into.reported_busy_ns, t.reported_busy_ns);
    into.reported_ns += t.reported_ns;
    add(&mut into.hollow_busy_ns, t.hollow_busy_ns);
    add(&mut into.ghost_ns, t.ghost_ns);
    if let Some(f) = t.model_flops {
        *into.model_flops.get_or_insert(0.0) += f;
    }
    if let Some(b) = t.peak_flop_budget {
        *into.peak_flop_budget.get_or_insert(0.0) += b;
    }
    into.tensor_estimate_weighted += t.tensor_estimate_weighted;
    into.tensor_estimate_ns += t.tensor_estimate_ns;
    into.sm_active_weighted += t.sm_active_weighted;
    into.sm_active_ns += t.sm_active_ns;
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
