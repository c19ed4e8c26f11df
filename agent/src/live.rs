//! Live windows (DESIGN §4 per GPU per window) from the rows on their way to
//! the spool: the writers hand every batch to [`Live`] before writing it, the
//! NCCL calls of eBPF first meet their CUPTI kernels ([`NcclJoiner`]), steps
//! are inferred from NCCL periodicity where no markers come, and finished
//! windows go to the `windows` table and to Prometheus.
//!
//! The figures themselves are `strand_analysis::WindowBuilder`: the same code
//! the postmortem runs offline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strand_analysis::steps::StepInferrer;
use strand_analysis::{GpuTime, LEAVES, WindowBuilder, WindowConfig};
use strand_schemas::clock::utc_now_ns;
use strand_schemas::*;
use tokio::sync::mpsc;

use crate::context::SourceContext;
use crate::gpu_metrics::{SeriesLabels, Workload};
use crate::metrics::SourceLabels;
use crate::nccl_join::NcclJoiner;
use crate::sink::RowSink;

type FloatCounter = Counter<f64, std::sync::atomic::AtomicU64>;
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RankLabels {
    pub gpu: String,
    pub uuid: String,
    pub node: String,
    pub comm: String,
    pub rank: String,
    pub nranks: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CollectiveLabels {
    pub gpu: String,
    pub uuid: String,
    pub node: String,
    pub comm: String,
    pub rank: String,
    pub op: String,
}

/// What the live windows export.
#[derive(Clone, Default)]
pub struct LiveMetrics {
    seconds: Family<SeriesLabels, FloatCounter>,
    mfu: Family<SeriesLabels, FloatGauge>,
    tensor_estimate: Family<SeriesLabels, FloatGauge>,
    /// The labels of each GPU's MFU and tensor-estimate series, to drop them when the workload changes.
    window_series: Arc<Mutex<HashMap<String, SeriesLabels>>>,
    rank: Family<RankLabels, Gauge>,
    /// Each GPU's rank series: its largest communicator.
    ranks: Arc<Mutex<HashMap<String, RankLabels>>>,
    bus_bytes: Family<CollectiveLabels, FloatCounter>,
    kernel_seconds: Family<CollectiveLabels, FloatCounter>,
    calls: Family<CollectiveLabels, Counter>,
    windows: Counter,
    unused_rows: Family<SourceLabels, Counter>,
    nccl_join: Family<SourceLabels, Counter>,
}

impl LiveMetrics {
    pub fn register(r: &mut Registry) -> Self {
        let m = Self::default();
        r.register(
            "strand_gpu_time_seconds",
            "GPU time by category of the one accounting (productive_compute, comm_transfer, sync_stall, hollow_busy, idle_*, …; they add up to the windows' length), from closed windows",
            m.seconds.clone(),
        );
        r.register(
            "strand_gpu_mfu_ratio",
            "MFU of the last closed window (needs model FLOPs from markers)",
            m.mfu.clone(),
        );
        r.register(
            "strand_gpu_tensor_estimate_ratio",
            "Tensor-pipe estimate of the last closed window (tensor active × SM clock / max): an estimate, not MFU",
            m.tensor_estimate.clone(),
        );
        r.register(
            "strand_gpu_nccl_rank_info",
            "1 for the GPU's rank in its largest NCCL communicator (labels comm, rank, nranks; join on node, uuid)",
            m.rank.clone(),
        );
        r.register(
            "strand_nccl_bus_bytes",
            "Bus bytes of NCCL collectives (nccl-tests' busbw convention: algorithm bytes × bus factor), by GPU, communicator, rank and operation; ÷ strand_nccl_kernel_seconds_total = bus bandwidth",
            m.bus_bytes.clone(),
        );
        r.register(
            "strand_nccl_kernel_seconds",
            "Device time of the NCCL kernels of those collectives (CUPTI), sync stall included as in nccl-tests",
            m.kernel_seconds.clone(),
        );
        r.register(
            "strand_nccl_collectives",
            "NCCL collectives joined with their kernels, by GPU, communicator, rank and operation",
            m.calls.clone(),
        );
        r.register("strand_agent_windows", "Decomposition windows closed", m.windows.clone());
        r.register(
            "strand_agent_window_unused_rows",
            "Rows the live windows could not use: late (window already closed), overflow (buffer bound), unattributed (no GPU)",
            m.unused_rows.clone(),
        );
        r.register(
            "strand_agent_nccl_calls_joined",
            "NCCL calls by outcome of the join with their CUPTI kernels",
            m.nccl_join.clone(),
        );
        m
    }

    /// Counts the collectives of NCCL calls that were joined with their kernels.
    pub fn observe_nccl(&self, node: &str, rows: &[NcclCall]) {
        for c in rows {
            let (Some(uuid), Some(gpu), Some(hash), Some(rank), Some(nranks), Some(start), Some(end)) =
                (&c.gpu_uuid, c.gpu_index, c.comm_hash, c.rank, c.nranks, c.kernel_start_ns, c.kernel_end_ns)
            else {
                continue;
            };
            if !strand_analysis::collective::is_collective(&c.op) || end < start {
                continue;
            }
            let comm = format!("{:016x}", hash as u64);
            let l = CollectiveLabels {
                gpu: gpu.to_string(),
                uuid: uuid.to_string(),
                node: node.to_string(),
                comm: comm.clone(),
                rank: rank.to_string(),
                op: c.op.clone(),
            };
            self.calls.get_or_create(&l).inc();
            self.kernel_seconds.get_or_create(&l).inc_by((end - start) as f64 * 1e-9);
            if let Some((factor, alg)) =
                c.bytes.filter(|b| *b > 0).and_then(|b| strand_analysis::collective::bus_factor(&c.op, nranks, b))
            {
                self.bus_bytes.get_or_create(&l).inc_by(alg * factor);
            }
            let r = RankLabels {
                gpu: l.gpu,
                uuid: l.uuid,
                node: l.node,
                comm,
                rank: rank.to_string(),
                nranks: nranks.to_string(),
            };
            let Ok(mut ranks) = self.ranks.lock() else { continue };
            let larger = ranks.get(uuid.as_ref()).is_none_or(|old| {
                old.nranks.parse::<i32>().unwrap_or(0) < nranks || (old.comm == r.comm && old.rank != r.rank)
            });
            if larger {
                if let Some(old) = ranks.insert(uuid.to_string(), r.clone()) {
                    self.rank.remove(&old);
                }
                self.rank.get_or_create(&r).set(1);
            }
        }
    }

    /// Sets a per-GPU window gauge, dropping the GPU's series of an earlier workload.
    fn set_window_gauges(&self, labels: SeriesLabels, mfu: Option<f64>, tensor_estimate: Option<f64>) {
        if let Ok(mut m) = self.window_series.lock()
            && let Some(old) = m.insert(labels.uuid.clone(), labels.clone())
            && old != labels
        {
            self.mfu.remove(&old);
            self.tensor_estimate.remove(&old);
        }
        for (family, v) in [(&self.mfu, mfu), (&self.tensor_estimate, tensor_estimate)] {
            match v {
                Some(v) => {
                    family.get_or_create(&labels).set(v);
                }
                None => {
                    family.remove(&labels);
                }
            }
        }
    }
}

/// The live analysis shared by the writers' observers and the window task.
pub struct Live {
    builder: Mutex<WindowBuilder>,
    joiner: Mutex<NcclJoiner>,
    steps: Mutex<StepInferrer>,
    metrics: LiveMetrics,
    ctx: Arc<SourceContext>,
}

/// Moves a counter up to a cumulative value.
fn bump(c: &Counter, to: u64) {
    let now = c.get();
    if to > now {
        c.inc_by(to - now);
    }
}

impl Live {
    pub fn new(
        cfg: WindowConfig,
        reducer: Arc<strand_kernels::Reducer>,
        join_hold: Duration,
        ctx: Arc<SourceContext>,
        metrics: LiveMetrics,
    ) -> Result<Self, String> {
        Ok(Self {
            builder: Mutex::new(WindowBuilder::new(cfg, reducer).map_err(|e| e.to_string())?),
            joiner: Mutex::new(NcclJoiner::new(join_hold.as_nanos() as i64, 200_000)),
            steps: Mutex::new(StepInferrer::new(4096)),
            metrics,
            ctx,
        })
    }

    pub fn on_kernels(&self, rows: &[KernelEvent]) {
        if let Ok(mut j) = self.joiner.lock() {
            j.push_kernels(rows, utc_now_ns());
        }
        if let Ok(mut b) = self.builder.lock() {
            b.push_kernels(rows);
        }
    }

    pub fn on_samples(&self, rows: &[GpuSample]) {
        if let Ok(mut j) = self.joiner.lock() {
            j.push_samples(rows);
        }
        if let Ok(mut b) = self.builder.lock() {
            b.push_samples(rows);
        }
    }

    /// NCCL calls after the join, on their way to the spool.
    pub fn on_nccl(&self, rows: &[NcclCall]) {
        self.metrics.observe_nccl(&self.ctx.node, rows);
        if let Ok(mut s) = self.steps.lock() {
            s.push(rows);
        }
        if let Ok(mut b) = self.builder.lock() {
            b.push_nccl(rows);
        }
    }

    pub fn on_sync(&self, rows: &[CudaSyncCall]) {
        if let Ok(mut b) = self.builder.lock() {
            b.push_sync(rows);
        }
    }

    pub fn on_steps(&self, rows: &[Step]) {
        if let Ok(mut s) = self.steps.lock() {
            for r in rows.iter().filter(|r| r.source == "marker") {
                if let Some(pid) = r.pid {
                    s.has_markers(&r.node, pid);
                }
            }
        }
        if let Ok(mut b) = self.builder.lock() {
            b.push_steps(rows);
        }
    }

    pub fn on_process(&self, rows: &[ProcessEvent]) {
        if let Ok(mut b) = self.builder.lock() {
            b.push_process(rows);
        }
    }

    /// Windows that ended before `now − lateness` (all of them when `flush`),
    /// with their kernel summaries.
    pub(crate) fn close(&self, flush: bool) -> (Vec<Window>, Vec<KernelSummary>) {
        let Ok(mut b) = self.builder.lock() else { return Default::default() };
        let result = if flush { b.flush() } else { b.close_until(utc_now_ns()) };
        let summaries = b.take_kernel_summaries();
        let stats = b.stats();
        drop(b);
        let u = |k: &str| self.metrics.unused_rows.get_or_create(&SourceLabels { source: k.into() }).clone();
        bump(&u("late"), stats.late_rows);
        bump(&u("overflow"), stats.overflow_rows);
        bump(&u("unattributed"), stats.unattributed_rows);
        match result {
            Ok(windows) => {
                for w in &windows {
                    self.export(w);
                }
                (windows, summaries)
            }
            Err(e) => {
                tracing::warn!("live windows: reduction failed ({e}); these windows are lost");
                (Vec::new(), summaries)
            }
        }
    }

    fn export(&self, w: &Window) {
        // The window's job, else whoever holds the GPU now; the pod from the kubelet.
        let pod = self.ctx.pod_of(&w.gpu_uuid);
        let workload = Workload::new(w.job_id.clone(), pod.as_ref());
        let series = |extra: Vec<(&'static str, String)>| SeriesLabels {
            gpu: w.gpu_index.to_string(),
            uuid: w.gpu_uuid.to_string(),
            node: self.ctx.node.to_string(),
            workload: workload.clone(),
            extra,
        };
        // The one accounting: the same leaves as every report, adding up to the window.
        let mut t = GpuTime::new();
        t.update(w, None);
        for leaf in LEAVES {
            let ns = t.leaf(leaf);
            if ns > 0 {
                let l = series(vec![("category", leaf.name().into())]);
                self.metrics.seconds.get_or_create(&l).inc_by(ns as f64 * 1e-9);
            }
        }
        self.metrics.set_window_gauges(series(Vec::new()), w.mfu, w.tensor_estimate);
        self.metrics.windows.inc();
    }

    fn update_join_metrics(&self, j: &NcclJoiner) {
        let c = |k: &str| self.metrics.nccl_join.get_or_create(&SourceLabels { source: k.into() }).clone();
        bump(&c("joined"), j.stats.joined);
        bump(&c("unjoined"), j.stats.unjoined);
        bump(&c("no_cupti"), j.stats.passed_through);
    }
}

/// Joins eBPF's NCCL calls with their kernels and forwards them to the
/// `nccl_calls` writer; flushes and stops when the eBPF source is gone.
pub async fn run_join(live: Arc<Live>, mut rx: mpsc::Receiver<Vec<NcclCall>>, out: RowSink<NcclCall>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            rows = rx.recv() => match rows {
                Some(rows) => {
                    if let Ok(mut j) = live.joiner.lock() {
                        j.push_calls(rows, utc_now_ns());
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                let ready = live.joiner.lock().map(|mut j| { let r = j.drain(utc_now_ns()); live.update_join_metrics(&j); r }).unwrap_or_default();
                out.send(ready);
            }
        }
    }
    let rest = live.joiner.lock().map(|mut j| j.flush()).unwrap_or_default();
    out.send(rest);
}

/// Closes windows once a second until `done` fires (all other writers have
/// handed over their rows); then flushes every open window.
pub async fn run_windows(
    live: Arc<Live>,
    windows: RowSink<Window>,
    summaries: RowSink<KernelSummary>,
    steps: RowSink<Step>,
    done: tokio::sync::oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(done);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let inferred = live.steps.lock().map(|mut s| s.poll()).unwrap_or_default();
                steps.send(inferred);
                let (closed, kernels) = tokio::task::block_in_place(|| live.close(false));
                windows.send(closed);
                summaries.send(kernels);
            }
            _ = &mut done => break,
        }
    }
    let inferred = live.steps.lock().map(|mut s| s.poll()).unwrap_or_default();
    steps.send(inferred);
    let (closed, kernels) = tokio::task::block_in_place(|| live.close(true));
    windows.send(closed);
    summaries.send(kernels);
}
