//! The streaming window builder: rows in as they arrive, finished `windows`
//! rows (DESIGN §4 per GPU and window) out when a window closes.
//!
//! ```text
//! let mut b = WindowBuilder::new(WindowConfig::default(), reducer)?;
//! b.push_kernels(&kernels);   // any order, any batch size
//! b.push_samples(&samples);
//! b.push_nccl(&calls);        // needs kernel_start_ns/kernel_end_ns and gpu_index
//! b.push_sync(&syncs);
//! b.push_steps(&steps);
//! b.push_process(&events);
//! let windows = b.close_until(now_ns)?; // every window ending ≤ now − lateness
//! ...
//! let last = b.flush()?;      // end of input / shutdown
//! ```
//!
//! Windows are aligned to multiples of `period_ns` since the Unix epoch, per
//! GPU (`node`, `gpu_index`). A window closes once `now − lateness_ns` passes
//! its end; records that arrive for a closed window are dropped and counted
//! ([`BuilderStats::late_rows`]). Memory is bounded: only rows of open
//! windows are held, and at most `max_buffered_rows` of them (beyond that new
//! rows are dropped and counted in [`BuilderStats::overflow_rows`]).
//!
//! All windows closing in one call are decomposed in one batch of reducer
//! calls ([`crate::decompose::DecomposeBatch`]), so the GPU backend sees large
//! batches.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use strand_kernels::{KernelsError, Reducer};
use strand_schemas::category::Category;
use strand_schemas::comm_kernels::CommKernels;
use strand_schemas::{CudaSyncCall, GpuSample, KernelEvent, KernelSummary, NcclCall, ProcessEvent, Step, Window};

use crate::collective::{BandwidthBaseline, CollectiveRecord, StallMatcher};
use crate::decompose::{DecomposeBatch, Segmented};
use crate::idle::{Activity, BlockedThreads, IdleClasses, IdleInput, StreamIdle, classify_idle, merge_in_place};
use crate::mfu::{PeakTable, mfu, tensor_estimate};
use crate::{AnalysisError, GpuKey};

/// How windows are cut and judged.
#[derive(Debug, Clone)]
pub struct WindowConfig {
    /// Window length (agent `windows.period`, default 10 s).
    pub period_ns: i64,
    /// How long after a window's end its records may still arrive.
    pub lateness_ns: i64,
    /// Idle gaps shorter than this between back-to-back kernels are launch gaps
    /// (agent `windows.launch_gap`, default 50 µs; HTA uses 30 µs).
    pub launch_gap_ns: i64,
    /// An NVML sample at `ts` describes `(ts − sample_period_ns, ts]`.
    pub sample_period_ns: i64,
    /// Kernel records are complete wherever a GPU has any (a Kineto trace, or a
    /// run where every process was profiled): a window without kernels is
    /// idle, not unmeasured.
    pub kernel_records_complete: bool,
    /// Offline: a GPU's first window starts at its first activity and its last
    /// (at [`WindowBuilder::flush`]) ends at its last, as in HTA.
    pub trim_to_activity: bool,
    pub peaks: PeakTable,
    /// Dtype of the model FLOPs when the steps do not say (job config).
    pub default_dtype: Option<String>,
    /// GPU product name when no sample gives one (offline traces).
    pub default_gpu_name: Option<String>,
    /// Bound on buffered rows of all tables together.
    pub max_buffered_rows: usize,
    /// Which kernels are communication: the built-in table and the user's
    /// patterns. Rows are classified again with it (a row stored as
    /// communication stays so), so every door counts the same kernels.
    pub comm_kernels: Arc<CommKernels>,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            period_ns: 10_000_000_000,
            lateness_ns: 5_000_000_000,
            launch_gap_ns: 50_000,
            sample_period_ns: 1_000_000_000,
            kernel_records_complete: false,
            trim_to_activity: false,
            peaks: PeakTable::default(),
            default_dtype: None,
            default_gpu_name: None,
            max_buffered_rows: 4_000_000,
            comm_kernels: Arc::new(CommKernels::builtin()),
        }
    }
}

impl WindowConfig {
    pub fn validate(&self) -> Result<(), AnalysisError> {
        if self.period_ns <= 0 {
            return Err(AnalysisError::WindowConfig(format!(
                "window period must be positive, got {} ns",
                self.period_ns
            )));
        }
        if self.lateness_ns < 0 || self.launch_gap_ns < 0 || self.sample_period_ns <= 0 {
            return Err(AnalysisError::WindowConfig(
                "lateness and launch gap must be ≥ 0 and the sample period > 0".into(),
            ));
        }
        Ok(())
    }
}

/// Counters of what the builder did not use; the agent exports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BuilderStats {
    /// Rows that arrived after their window closed.
    pub late_rows: u64,
    /// Rows refused because `max_buffered_rows` were held.
    pub overflow_rows: u64,
    /// Rows without a GPU (`gpu_index` unknown), or with an inverted interval.
    pub unattributed_rows: u64,
    /// Rows held now.
    pub buffered_rows: usize,
    pub windows: u64,
    pub exact_collectives: u64,
    pub estimated_collectives: u64,
}

// Source bits for `coverage`, in the documented order.
const NVML: u8 = 1;
const GPM: u8 = 2;
const CUPTI: u8 = 4;
const EBPF: u8 = 8;
const MARKERS: u8 = 16;
const KINETO: u8 = 32;
const SOURCE_NAMES: [(u8, &str); 6] =
    [(NVML, "nvml"), (GPM, "gpm"), (CUPTI, "cupti"), (EBPF, "ebpf"), (MARKERS, "markers"), (KINETO, "kineto")];

fn source_bit(s: &str) -> u8 {
    match s {
        "cupti" => CUPTI,
        "ebpf" => EBPF,
        "kineto" => KINETO,
        "marker" | "markers" => MARKERS,
        "nvml" => NVML,
        _ => 0,
    }
}

/// `coverage` string of a set of source bits.
pub fn coverage_string(bits: u8) -> String {
    SOURCE_NAMES.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| *n).collect::<Vec<_>>().join(",")
}

#[derive(Debug, Clone, Copy)]
struct Act {
    start: i64,
    end: i64,
    cat: Category,
    stream: i64,
    launch: Option<i64>,
    pid: i32,
    tid: Option<i32>,
    src: u8,
    /// Already fed to the per-stream view.
    fed: bool,
    /// The record's job ([`WindowBuilder::job_index`]; 0: none).
    job: u32,
    /// The record's name ([`WindowBuilder::name_index`]).
    name: u32,
}

#[derive(Debug, Clone)]
struct Sample {
    ts: i64,
    rep: Option<f64>,
    sm: Option<f64>,
    tensor: Option<f64>,
    dram: Option<f64>,
    tensor_est: Option<f64>,
    pids: Vec<i32>,
    /// The job holding the GPU at the sample ([`WindowBuilder::job_index`]; 0: none).
    job: u32,
}

#[derive(Debug, Clone, Copy)]
struct Stall {
    start: i64,
    end: i64,
    stall_ns: Option<i64>,
    estimated: bool,
}

#[derive(Debug, Clone)]
struct Phase {
    node: Arc<str>,
    pid: Option<i32>,
    gpu_index: Option<i32>,
    checkpoint: bool,
    start: i64,
    end: i64,
    flops: Option<f64>,
    dtype: Option<String>,
    src: u8,
}

#[derive(Debug, Clone, Copy)]
struct SyncLite {
    pid: i32,
    tid: i32,
    gpu_index: Option<i32>,
    start: i64,
    end: i64,
    src: u8,
}

#[derive(Debug, Default)]
struct GpuState {
    cluster: Option<Arc<str>>,
    uuid: Option<Arc<str>>,
    name: Option<Arc<str>>,
    job_id: Option<String>,
    acts: Vec<Act>,
    samples: Vec<Sample>,
    stalls: Vec<Stall>,
    /// Start of the next window to emit.
    next_start: Option<i64>,
    first_activity: Option<i64>,
    last_activity: Option<i64>,
    last_data: Option<i64>,
    first_data: Option<i64>,
    prev_busy_end: Option<i64>,
    streams: Option<StreamIdle>,
    /// Kernel sources ever seen (a window of `kernel_records_complete` input
    /// without kernels still names them).
    kernel_src: u8,
    nccl_src: u8,
}

/// Everything about one window except the reducer's results.
struct Pending {
    key: GpuKey,
    t0: i64,
    t1: i64,
    idle: IdleClasses,
    kernel_count: i64,
    categories_known: bool,
    coverage: u8,
    stall_known: bool,
    stall_estimated: bool,
    samples: SampleAgg,
    hollow_segments: std::ops::Range<usize>,
    host_sync_blocked_ns: i64,
    model_flops: Option<f64>,
    dtype: Option<String>,
    /// The job of the window's latest sample, else of its latest kernel.
    job: Option<u32>,
}

#[derive(Default)]
struct SampleAgg {
    covered_ns: i64,
    rep_weighted: f64,
    rep_ns: i64,
    sm: (f64, i64),
    tensor: (f64, i64),
    dram: (f64, i64),
    tensor_est: (f64, i64),
    /// NVML-only split: idle (1 − utilization) in samples without a process, and inside checkpoints.
    idle_no_process: f64,
    idle_io_blocked: f64,
}

impl SampleAgg {
    fn add(acc: &mut (f64, i64), v: Option<f64>, ns: i64) {
        if let Some(v) = v {
            acc.0 += v * ns as f64;
            acc.1 += ns;
        }
    }
    fn mean(acc: (f64, i64)) -> Option<f64> {
        (acc.1 > 0).then(|| acc.0 / acc.1 as f64)
    }
}

/// The streaming window builder (see the module documentation).
pub struct WindowBuilder {
    cfg: WindowConfig,
    reducer: Arc<Reducer>,
    gpus: BTreeMap<GpuKey, GpuState>,
    matcher: StallMatcher,
    pid_gpu: HashMap<(Arc<str>, i32), i32>,
    syncs: Vec<(Arc<str>, SyncLite)>,
    exits: Vec<(Arc<str>, i32, i64)>,
    phases: Vec<Phase>,
    /// Every window ending at or before this has been emitted.
    closed_until: i64,
    stats: BuilderStats,
    /// Job ids seen, by index − 1 (rows carry the index; 0 is no job).
    jobs: Vec<String>,
    job_ids: HashMap<String, u32>,
    /// Kernel names already classified (whether each is communication).
    comm_names: HashMap<Arc<str>, bool>,
    /// Kernel names seen, by index (acts carry the index).
    names: Vec<Arc<str>>,
    name_ids: HashMap<Arc<str>, u32>,
    /// `kernel_summaries` rows of closed windows, until taken.
    summaries: Vec<KernelSummary>,
}

/// Past this many distinct kernel names, new names are summarised as one.
const MAX_NAMES: usize = 65_536;
/// The name of the kernels beyond [`MAX_NAMES`] in `kernel_summaries`.
pub const OTHER_KERNELS: &str = "(other kernels)";

/// Per window: (name index, job index, category) → (count, total, min, max).
type SummaryAcc = BTreeMap<(u32, u32, Category), (i64, i64, i64, i64)>;

fn floor_to(t: i64, period: i64) -> i64 {
    t.div_euclid(period).saturating_mul(period)
}

fn overlap(a0: i64, a1: i64, b0: i64, b1: i64) -> i64 {
    (a1.min(b1) - a0.max(b0)).max(0)
}

impl WindowBuilder {
    pub fn new(cfg: WindowConfig, reducer: Arc<Reducer>) -> Result<Self, AnalysisError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            reducer,
            gpus: BTreeMap::new(),
            matcher: StallMatcher::default(),
            pid_gpu: HashMap::new(),
            syncs: Vec::new(),
            exits: Vec::new(),
            phases: Vec::new(),
            closed_until: i64::MIN,
            stats: BuilderStats::default(),
            jobs: Vec::new(),
            job_ids: HashMap::new(),
            comm_names: HashMap::new(),
            names: vec![Arc::from(OTHER_KERNELS)],
            name_ids: HashMap::new(),
            summaries: Vec::new(),
        })
    }

    /// The index acts carry for a kernel name (0: beyond [`MAX_NAMES`]).
    fn name_index(&mut self, name: &Arc<str>) -> u32 {
        if let Some(&i) = self.name_ids.get(name) {
            return i;
        }
        if self.names.len() > MAX_NAMES {
            return 0;
        }
        let i = self.names.len() as u32;
        self.names.push(name.clone());
        self.name_ids.insert(name.clone(), i);
        i
    }

    /// The `kernel_summaries` rows of the windows closed so far (since the
    /// last call): every kernel record the builder used, once, grouped by
    /// GPU, window, name, job and category. The one place the summary is
    /// computed; the agent and import write these rows next to `windows`.
    pub fn take_kernel_summaries(&mut self) -> Vec<KernelSummary> {
        std::mem::take(&mut self.summaries)
    }

    /// The category of a kernel row, with the configured table of
    /// communication kernels (one lookup per distinct name).
    fn category_of(&mut self, k: &KernelEvent) -> Category {
        let stored = Category::parse(&k.category);
        if matches!(k.kind.as_str(), "memcpy" | "memset")
            || matches!(stored, Some(Category::Communication | Category::Copy))
        {
            return self.cfg.comm_kernels.classify_row(&k.kind, &k.name, stored);
        }
        if let Some(&comm) = self.comm_names.get(&k.name) {
            return if comm { Category::Communication } else { Category::Compute };
        }
        let comm = self.cfg.comm_kernels.is_communication(&k.name);
        if self.comm_names.len() >= 65_536 {
            self.comm_names.clear();
        }
        self.comm_names.insert(k.name.clone(), comm);
        if comm { Category::Communication } else { Category::Compute }
    }

    pub fn config(&self) -> &WindowConfig {
        &self.cfg
    }

    /// Sets the bandwidth baseline for sync-stall estimates (offline tools
    /// observe every call of the run first).
    pub fn set_bandwidth_baseline(&mut self, b: BandwidthBaseline) {
        self.matcher.baseline = b;
    }

    /// Changes the window length and the lateness allowance; only before the
    /// first window was emitted (offline tools learn the run's span first).
    pub fn set_timing(&mut self, period_ns: i64, lateness_ns: i64) -> Result<(), AnalysisError> {
        if self.stats.windows > 0 || self.gpus.values().any(|g| g.next_start.is_some()) {
            return Err(AnalysisError::WindowConfig(
                "the window length cannot change after windows were emitted".into(),
            ));
        }
        let cfg = WindowConfig { period_ns, lateness_ns, ..self.cfg.clone() };
        cfg.validate()?;
        self.cfg = cfg;
        Ok(())
    }

    /// Names a GPU's product when no NVML sample does (offline traces); used
    /// for the peak FLOP/s.
    pub fn set_gpu_name(&mut self, key: &GpuKey, name: &str) {
        let g = self.gpu(key);
        if g.name.is_none() {
            g.name = Some(Arc::from(name));
        }
    }

    pub fn stats(&self) -> BuilderStats {
        let mut s = self.stats;
        s.buffered_rows = self.buffered();
        s.exact_collectives = self.matcher.stats.instances_exact;
        s.estimated_collectives = self.matcher.stats.estimated_records;
        s
    }

    fn buffered(&self) -> usize {
        self.gpus.values().map(|g| g.acts.len() + g.samples.len() + g.stalls.len()).sum::<usize>()
            + self.syncs.len()
            + self.exits.len()
            + self.phases.len()
            + self.matcher.pending_records()
    }

    /// Whether `n` more rows fit; counts them as overflow when not.
    fn admit(&mut self, n: usize) -> bool {
        if self.buffered() + n > self.cfg.max_buffered_rows {
            self.stats.overflow_rows += n as u64;
            return false;
        }
        true
    }

    /// The index rows carry for a job (0: none). Bounded: past 65,536 jobs
    /// new ones are not told apart (the window falls back to the GPU's job).
    fn job_index(&mut self, job: Option<&str>) -> u32 {
        let Some(j) = job else { return 0 };
        if let Some(&i) = self.job_ids.get(j) {
            return i;
        }
        if self.jobs.len() >= 65_536 {
            return 0;
        }
        self.jobs.push(j.to_string());
        let i = self.jobs.len() as u32;
        self.job_ids.insert(j.to_string(), i);
        i
    }

    fn gpu(&mut self, key: &GpuKey) -> &mut GpuState {
        self.gpus.entry(key.clone()).or_default()
    }

    fn remember_pid(&mut self, node: &Arc<str>, pid: i32, gpu_index: i32) {
        if self.pid_gpu.len() > 65_536 {
            self.pid_gpu.clear();
        }
        self.pid_gpu.insert((node.clone(), pid), gpu_index);
    }

    /// Kernel, copy and set records (`kernel_events`). Rows need `gpu_index`.
    pub fn push_kernels(&mut self, rows: &[KernelEvent]) {
        if !self.admit(rows.len()) {
            return;
        }
        for k in rows {
            let Some(gi) = k.gpu_index else {
                self.stats.unattributed_rows += 1;
                continue;
            };
            if k.end_ns < k.start_ns {
                self.stats.unattributed_rows += 1;
                continue;
            }
            if k.end_ns <= self.closed_until && k.end_ns > k.start_ns {
                self.stats.late_rows += 1;
                continue;
            }
            let cat = self.category_of(k);
            let key = GpuKey { node: k.node.clone(), gpu_index: gi };
            self.remember_pid(&k.node, k.pid, gi);
            let g = self.gpu(&key);
            g.cluster.get_or_insert_with(|| k.cluster.clone());
            if let Some(u) = &k.gpu_uuid {
                g.uuid.get_or_insert_with(|| u.clone());
            }
            let job = self.job_index(k.job_id.as_deref());
            let name = self.name_index(&k.name);
            let g = self.gpu(&key);
            if k.job_id.is_some() {
                g.job_id = k.job_id.clone();
            }
            let src = source_bit(&k.source);
            g.kernel_src |= src;
            g.first_activity = Some(g.first_activity.map_or(k.start_ns, |f| f.min(k.start_ns)));
            g.last_activity = Some(g.last_activity.map_or(k.end_ns, |l| l.max(k.end_ns)));
            g.first_data = Some(g.first_data.map_or(k.start_ns, |f| f.min(k.start_ns)));
            g.last_data = Some(g.last_data.map_or(k.end_ns, |l| l.max(k.end_ns)));
            g.acts.push(Act {
                start: k.start_ns,
                end: k.end_ns,
                cat,
                stream: k.stream_id,
                launch: k.launch_ns,
                pid: k.pid,
                tid: k.launch_tid,
                src,
                fed: false,
                job,
                name,
            });
        }
    }

    /// NVML samples (`gpu_samples`).
    pub fn push_samples(&mut self, rows: &[GpuSample]) {
        if !self.admit(rows.len()) {
            return;
        }
        let sp = self.cfg.sample_period_ns;
        for s in rows {
            if s.ts_ns <= self.closed_until {
                self.stats.late_rows += 1;
                continue;
            }
            let key = GpuKey { node: s.node.clone(), gpu_index: s.gpu_index };
            for &p in &s.pids {
                self.remember_pid(&s.node, p, s.gpu_index);
            }
            let job = self.job_index(s.job_id.as_deref());
            let g = self.gpu(&key);
            g.cluster.get_or_insert_with(|| s.cluster.clone());
            g.uuid = Some(s.gpu_uuid.clone());
            g.name = Some(s.gpu_name.clone());
            if s.job_id.is_some() {
                g.job_id = s.job_id.clone();
            }
            g.first_data = Some(g.first_data.map_or(s.ts_ns - sp, |f| f.min(s.ts_ns - sp)));
            g.last_data = Some(g.last_data.map_or(s.ts_ns, |l| l.max(s.ts_ns)));
            g.samples.push(Sample {
                ts: s.ts_ns,
                rep: s.reported_utilization_ratio,
                sm: s.sm_active_ratio,
                tensor: s.tensor_active_ratio,
                dram: s.dram_active_ratio,
                tensor_est: tensor_estimate(s.tensor_active_ratio, s.sm_clock_mhz, s.sm_clock_max_mhz),
                pids: s.pids.clone(),
                job,
            });
        }
    }

    /// NCCL calls (`nccl_calls`): collectives with their kernel times, for
    /// the sync-stall split.
    pub fn push_nccl(&mut self, rows: &[NcclCall]) {
        if !self.admit(rows.len()) {
            return;
        }
        for c in rows {
            if let (Some(gi), pid) = (c.gpu_index, c.pid) {
                self.remember_pid(&c.node, pid, gi);
            }
            let Some(r) = CollectiveRecord::from_call(c) else { continue };
            let (Some(gpu), Some((_, end))) = (r.gpu(), r.kernel) else { continue };
            if end <= self.closed_until {
                self.stats.late_rows += 1;
                continue;
            }
            let src = source_bit(&c.source);
            self.gpu(&gpu).nccl_src |= src;
            self.matcher.push(r);
        }
    }

    /// Collective records built elsewhere: communication kernels that
    /// [`crate::collective::order_by_position`] numbered across ranks
    /// (`source`: where their kernels came from, e.g. `kineto`). Records that
    /// were not numbered get no stall, so their kernels stay unidentified.
    pub fn push_collectives(&mut self, rows: &[CollectiveRecord], source: &str) {
        if !self.admit(rows.len()) {
            return;
        }
        let src = source_bit(source);
        for r in rows.iter().filter(|r| r.instance_key().is_some()) {
            let (Some(gpu), Some((_, end))) = (r.gpu(), r.kernel) else { continue };
            if end <= self.closed_until {
                self.stats.late_rows += 1;
                continue;
            }
            self.gpu(&gpu).nccl_src |= src;
            self.matcher.push(r.clone());
        }
    }

    /// CUDA synchronize calls (`cuda_sync_calls`).
    pub fn push_sync(&mut self, rows: &[CudaSyncCall]) {
        if !self.admit(rows.len()) {
            return;
        }
        for s in rows {
            if s.exit_ns <= self.closed_until {
                self.stats.late_rows += 1;
                continue;
            }
            self.syncs.push((
                s.node.clone(),
                SyncLite {
                    pid: s.pid,
                    tid: s.tid,
                    gpu_index: s.gpu_index,
                    start: s.enter_ns,
                    end: s.exit_ns,
                    src: source_bit(&s.source),
                },
            ));
        }
    }

    /// Steps and checkpoints (`steps`): model FLOPs for MFU, checkpoints for io_blocked.
    pub fn push_steps(&mut self, rows: &[Step]) {
        if !self.admit(rows.len()) {
            return;
        }
        for s in rows {
            if s.end_ns <= self.closed_until {
                self.stats.late_rows += 1;
                continue;
            }
            if s.end_ns < s.start_ns {
                self.stats.unattributed_rows += 1;
                continue;
            }
            self.phases.push(Phase {
                node: s.node.clone(),
                pid: s.pid,
                gpu_index: s.gpu_index,
                checkpoint: s.phase.starts_with("checkpoint"),
                start: s.start_ns,
                end: s.end_ns,
                flops: s.model_flops,
                dtype: s.dtype.clone(),
                src: source_bit(&s.source),
            });
        }
    }

    /// Process exec/exit events: an exit sharpens when a GPU lost its last process.
    pub fn push_process(&mut self, rows: &[ProcessEvent]) {
        if !self.admit(rows.len()) {
            return;
        }
        for e in rows.iter().filter(|e| e.kind == "exit") {
            if e.ts_ns > self.closed_until {
                self.exits.push((e.node.clone(), e.pid, e.ts_ns));
            }
        }
    }

    /// Emits every window that ends at or before `now_ns − lateness_ns`.
    pub fn close_until(&mut self, now_ns: i64) -> Result<Vec<Window>, KernelsError> {
        self.close(now_ns.saturating_sub(self.cfg.lateness_ns), false)
    }

    /// Emits every remaining window (end of input, or shutdown).
    pub fn flush(&mut self) -> Result<Vec<Window>, KernelsError> {
        self.close(i64::MAX, true)
    }

    /// Per-stream idle totals (HTA's view) of every GPU so far.
    pub fn stream_idle(&self) -> Vec<(GpuKey, &StreamIdle)> {
        self.gpus.iter().filter_map(|(k, g)| g.streams.as_ref().map(|s| (k.clone(), s))).collect()
    }

    /// First and last activity of a GPU, when it had any.
    pub fn activity_span(&self, key: &GpuKey) -> Option<(i64, i64)> {
        let g = self.gpus.get(key)?;
        Some((g.first_activity?, g.last_activity?))
    }

    fn gpu_of(&self, node: &Arc<str>, pid: Option<i32>, gpu_index: Option<i32>) -> Option<i32> {
        gpu_index.or_else(|| pid.and_then(|p| self.pid_gpu.get(&(node.clone(), p)).copied()))
    }

    /// The windows of one GPU to emit now (its buffers sorted). Stretches
    /// without any data are skipped, except inside the activity span of
    /// `kernel_records_complete` input, where no kernel means idle.
    fn spans_to_emit(&self, g: &GpuState, watermark: i64, flushing: bool) -> Vec<(i64, i64)> {
        let p = self.cfg.period_ns;
        let sp = self.cfg.sample_period_ns;
        let trim = self.cfg.trim_to_activity;
        // Trim to activity only where there is activity (NVML-only GPUs keep their data span).
        let trim = trim && g.first_activity.is_some();
        let (first, last) = if trim { (g.first_activity, g.last_activity) } else { (g.first_data, g.last_data) };
        let (Some(first), Some(last)) = (first, last) else { return Vec::new() };
        let complete = self.cfg.kernel_records_complete;
        let (fa, la) = (g.first_activity.unwrap_or(i64::MAX), g.last_activity.unwrap_or(i64::MIN));
        let mut w = g.next_start.unwrap_or_else(|| floor_to(first, p));
        let mut out = Vec::new();
        let (mut ai, mut max_end) = (0usize, i64::MIN);
        loop {
            let end = w.saturating_add(p);
            if (!flushing && end > watermark) || (flushing && w >= last) {
                break;
            }
            while ai < g.acts.len() && g.acts[ai].start < end {
                max_end = max_end.max(g.acts[ai].end);
                ai += 1;
            }
            let si = g.samples.partition_point(|s| s.ts <= w);
            let has_sample = g.samples.get(si).is_some_and(|s| s.ts - sp < end);
            let has_act = max_end > w;
            let in_span = complete && w < la && end > fa;
            if has_act || has_sample || in_span {
                let (mut s, mut e) = (w, end);
                if trim {
                    s = s.max(first);
                    if flushing {
                        e = e.min(last);
                    }
                }
                if e > s {
                    out.push((s, e));
                }
                w = end;
                continue;
            }
            // Nothing here: jump to the window of the next data.
            let next_act = g.acts.get(ai).map(|a| a.start);
            let next_sample = g.samples.get(si).map(|s| s.ts - sp);
            let next = match (next_act, next_sample) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => break,
            };
            w = floor_to(next, p).max(end);
        }
        out
    }

    fn close(&mut self, watermark: i64, flushing: bool) -> Result<Vec<Window>, KernelsError> {
        // 1. Resolve collectives whose windows are closing.
        let stalls = if flushing {
            self.matcher.flush(&self.reducer)?
        } else {
            self.matcher.resolve(&self.reducer, watermark)?
        };
        for s in stalls {
            let g = self.gpu(&s.gpu);
            g.stalls.push(Stall {
                start: s.kernel_start,
                end: s.kernel_end,
                stall_ns: s.stall_ns,
                estimated: s.estimated,
            });
        }

        // 2. Shared inputs: blocked host threads, checkpoints, steps.
        let mut blocked: BlockedThreads = HashMap::new();
        for (_, s) in &self.syncs {
            blocked.entry((s.pid, s.tid)).or_default().push((s.start, s.end));
        }
        for v in blocked.values_mut() {
            merge_in_place(v);
        }

        // Shared rows attributed to their GPU once per call.
        let mut phases_by_gpu: HashMap<GpuKey, Vec<usize>> = HashMap::new();
        for (i, ph) in self.phases.iter().enumerate() {
            if let Some(gi) = self.gpu_of(&ph.node, ph.pid, ph.gpu_index) {
                phases_by_gpu.entry(GpuKey { node: ph.node.clone(), gpu_index: gi }).or_default().push(i);
            }
        }
        let mut syncs_by_gpu: HashMap<GpuKey, Vec<usize>> = HashMap::new();
        for (i, (n, s)) in self.syncs.iter().enumerate() {
            if let Some(gi) = self.gpu_of(n, Some(s.pid), s.gpu_index) {
                syncs_by_gpu.entry(GpuKey { node: n.clone(), gpu_index: gi }).or_default().push(i);
            }
        }

        let mut batch = DecomposeBatch::default();
        let mut hollow_a = Segmented::new();
        let mut hollow_b = Segmented::new();
        let mut hollow_w: Vec<f64> = Vec::new();
        let mut hollow_len: Vec<i64> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut summaries: Vec<(GpuKey, i64, i64, SummaryAcc)> = Vec::new();
        let sp = self.cfg.sample_period_ns;
        let keys: Vec<GpuKey> = self.gpus.keys().cloned().collect();

        for key in keys {
            {
                let g = self.gpus.get_mut(&key).expect("key from the map");
                g.acts.sort_unstable_by_key(|a| (a.start, a.end));
                g.samples.sort_unstable_by_key(|s| s.ts);
                g.stalls.sort_unstable_by_key(|s| s.start);
            }
            let spans = self.spans_to_emit(&self.gpus[&key], watermark, flushing);
            if spans.is_empty() {
                continue;
            }
            // Inputs of this GPU attributed from shared rows.
            let mut io: Vec<(i64, i64)> = Vec::new();
            let mut steps: Vec<&Phase> = Vec::new();
            let mut phase_src = 0u8;
            for &i in phases_by_gpu.get(&key).map(|v| v.as_slice()).unwrap_or(&[]) {
                let ph = &self.phases[i];
                if ph.checkpoint {
                    io.push((ph.start, ph.end));
                } else {
                    steps.push(ph);
                }
                phase_src |= ph.src;
            }
            merge_in_place(&mut io);
            let syncs: Vec<SyncLite> =
                syncs_by_gpu.get(&key).map(|v| v.iter().map(|&i| self.syncs[i].1).collect()).unwrap_or_default();
            let exits: Vec<(i32, i64)> =
                self.exits.iter().filter(|(n, _, _)| *n == key.node).map(|(_, p, t)| (*p, *t)).collect();

            let cfg = &self.cfg;
            let g = self.gpus.get_mut(&key).expect("key from the map");
            let no_process = no_process_intervals(&g.samples, &exits, sp);
            let streams = g.streams.get_or_insert_with(|| StreamIdle::new(cfg.launch_gap_ns));
            let gpu_has_kernels = !g.acts.is_empty() || g.first_activity.is_some();

            let mut p = 0usize;
            let mut active: Vec<Act> = Vec::new();
            for &(t0, t1) in &spans {
                active.retain(|a| a.end > t0);
                let mut kernel_count = 0i64;
                let mut summary = SummaryAcc::new();
                while p < g.acts.len() && g.acts[p].start < t1 {
                    let a = &mut g.acts[p];
                    if !a.fed {
                        streams.push(a.stream, a.start, a.end, a.launch);
                        a.fed = true;
                        let d = a.end - a.start;
                        let e = summary.entry((a.name, a.job, a.cat)).or_insert((0, 0, i64::MAX, i64::MIN));
                        *e = (e.0 + 1, e.1 + d, e.2.min(d), e.3.max(d));
                    }
                    if a.end > t0 || (a.end == a.start && a.start >= t0) {
                        active.push(*a);
                    }
                    p += 1;
                }
                let mut coverage = 0u8;
                batch.begin_window(t0, t1);
                let mut activities: Vec<Activity> = Vec::with_capacity(active.len() + 1);
                let mut kernel_job: Option<u32> = None;
                for a in &active {
                    kernel_job = Some(a.job);
                    if a.end > t0 || a.start >= t0 {
                        kernel_count += 1;
                    }
                    coverage |= a.src;
                    batch.add(a.cat, a.start, a.end);
                    activities.push(Activity {
                        start: a.start,
                        end: a.end,
                        launch_ns: a.launch,
                        pid: a.pid,
                        launch_tid: a.tid,
                    });
                }
                if let Some(next) = g.acts[p..].iter().find(|a| a.end > a.start) {
                    activities.push(Activity {
                        start: next.start,
                        end: next.end,
                        launch_ns: next.launch,
                        pid: next.pid,
                        launch_tid: next.tid,
                    });
                }
                // Sync stalls of collectives overlapping the window.
                let (mut stall_known, mut stall_est) = (false, false);
                for s in g.stalls.iter().take_while(|s| s.start < t1).filter(|s| s.end > t0) {
                    // The kernel has a collective identity: its exposed time is split, known or not.
                    batch.add_identified(s.start, s.end);
                    if let Some(st) = s.stall_ns {
                        stall_known = true;
                        stall_est |= s.estimated;
                        batch.add_stall(s.start, s.start + st);
                    }
                }
                if stall_known {
                    coverage |= g.nccl_src;
                }
                // Samples covering part of the window.
                let mut agg = SampleAgg::default();
                let seg_start = hollow_w.len();
                let first_sample = g.samples.partition_point(|s| s.ts <= t0);
                let mut sample_job: Option<u32> = None;
                for s in g.samples[first_sample..].iter().take_while(|s| s.ts - sp < t1) {
                    let ns = overlap(s.ts - sp, s.ts, t0, t1);
                    if ns == 0 {
                        continue;
                    }
                    sample_job = Some(s.job);
                    coverage |= NVML;
                    agg.covered_ns += ns;
                    if let Some(r) = s.rep {
                        agg.rep_weighted += r * ns as f64;
                        agg.rep_ns += ns;
                        let idle = (1.0 - r).max(0.0);
                        if s.pids.is_empty() {
                            agg.idle_no_process += idle * ns as f64;
                        } else {
                            let (a0, a1) = ((s.ts - sp).max(t0), s.ts.min(t1));
                            let in_io: i64 = io.iter().map(|&(a, b)| overlap(a, b, a0, a1)).sum();
                            agg.idle_io_blocked += idle * in_io as f64;
                        }
                    }
                    if s.sm.is_some() || s.tensor.is_some() {
                        coverage |= GPM;
                    }
                    SampleAgg::add(&mut agg.sm, s.sm, ns);
                    SampleAgg::add(&mut agg.tensor, s.tensor, ns);
                    SampleAgg::add(&mut agg.dram, s.dram, ns);
                    SampleAgg::add(&mut agg.tensor_est, s.tensor_est, ns);
                    if let (Some(r), Some(sm)) = (s.rep, s.sm) {
                        // Hollow busy: (reported − SM active)⁺ outside communication kernels.
                        let (a0, a1) = ((s.ts - sp).max(t0), s.ts.min(t1));
                        hollow_a.push(a0, a1);
                        hollow_a.close_segment();
                        for m in active.iter().filter(|a| a.cat == Category::Communication) {
                            let (m0, m1) = (m.start.max(a0), m.end.min(a1));
                            if m1 > m0 {
                                hollow_b.push(m0, m1);
                            }
                        }
                        hollow_b.close_segment();
                        hollow_w.push((r - sm).max(0.0));
                        hollow_len.push(a1 - a0);
                    }
                }
                // The split comes from kernel records where the window has any
                // (or the input is known to hold them all), else from NVML.
                let categories_known = kernel_count > 0 || (cfg.kernel_records_complete && gpu_has_kernels);
                if categories_known && kernel_count == 0 {
                    coverage |= g.kernel_src;
                }
                let idle = if categories_known {
                    classify_idle(&IdleInput {
                        t0,
                        t1,
                        activities: &activities,
                        prev_busy_end: g.prev_busy_end,
                        launch_gap_ns: cfg.launch_gap_ns,
                        no_process: &no_process,
                        io_blocked: &io,
                        blocked: &blocked,
                    })
                } else {
                    IdleClasses::default()
                };
                let host_sync_blocked_ns: i64 = syncs.iter().map(|s| overlap(s.start, s.end, t0, t1)).sum();
                // Model FLOPs of the steps, prorated by overlap.
                let mut flops: Option<f64> = None;
                let mut dtype: Option<String> = None;
                for st in &steps {
                    let ov = overlap(st.start, st.end, t0, t1);
                    if let Some(f) = st.flops {
                        let share = if st.end > st.start {
                            ov as f64 / (st.end - st.start) as f64
                        } else if st.start >= t0 && st.start < t1 {
                            1.0
                        } else {
                            0.0
                        };
                        if share > 0.0 {
                            *flops.get_or_insert(0.0) += f * share;
                            if dtype.is_none() {
                                dtype = st.dtype.clone();
                            }
                        }
                    }
                    if ov > 0 {
                        coverage |= st.src;
                    }
                }
                if io.iter().any(|&(a, b)| overlap(a, b, t0, t1) > 0) {
                    coverage |= phase_src;
                }
                for s in syncs.iter().filter(|s| overlap(s.start, s.end, t0, t1) > 0) {
                    coverage |= s.src;
                }
                if let Some(e) = active.iter().filter(|a| a.start < t1).map(|a| a.end).max() {
                    g.prev_busy_end = Some(g.prev_busy_end.map_or(e, |x| x.max(e)));
                }
                if !summary.is_empty() {
                    summaries.push((key.clone(), t0, t1, summary));
                }
                pending.push(Pending {
                    key: key.clone(),
                    t0,
                    t1,
                    idle,
                    kernel_count,
                    categories_known,
                    coverage,
                    stall_known,
                    stall_estimated: stall_est,
                    samples: agg,
                    hollow_segments: seg_start..hollow_w.len(),
                    host_sync_blocked_ns,
                    model_flops: flops,
                    dtype: dtype.or_else(|| cfg.default_dtype.clone()),
                    // A job named by the samples (NVML attribution), else by the kernels;
                    // no job when the rows say none.
                    job: match (sample_job, kernel_job) {
                        (Some(j), _) | (_, Some(j)) if j != 0 => Some(j),
                        (Some(_), _) | (_, Some(_)) => Some(0),
                        _ => None,
                    },
                });
            }
            // Retire what no later window needs.
            let (_, last_t1) = *spans.last().expect("spans is not empty");
            g.next_start = Some(floor_to(last_t1 - 1, cfg.period_ns) + cfg.period_ns);
            let keep_from = g.next_start.unwrap_or(last_t1);
            g.acts.retain(|a| a.end > keep_from || (a.start >= keep_from));
            g.samples.retain(|s| s.ts > keep_from);
            g.stalls.retain(|s| s.end > keep_from);
        }
        // Shared rows no open window needs. GPUs share the grid, so every GPU
        // has closed up to `closed` (or has no data before it).
        let closed = if flushing { i64::MAX } else { floor_to(watermark, self.cfg.period_ns).max(self.closed_until) };
        self.closed_until = closed;
        // Rows of GPUs that emitted nothing this time (e.g. collectives of a GPU
        // without kernel records or samples) must not pile up either.
        for g in self.gpus.values_mut() {
            g.acts.retain(|a| a.end > closed || a.start >= closed);
            g.samples.retain(|s| s.ts > closed);
            g.stalls.retain(|s| s.end > closed);
        }
        self.syncs.retain(|(_, s)| s.end > closed);
        self.exits.retain(|(_, _, t)| *t > closed.saturating_sub(self.cfg.sample_period_ns));
        self.phases.retain(|p| p.end > closed);
        if flushing {
            for g in self.gpus.values_mut() {
                g.acts.clear();
                g.samples.clear();
                g.stalls.clear();
            }
        }

        for (key, t0, t1, acc) in summaries {
            let g = &self.gpus[&key];
            for ((name, job, cat), (count, total, min, max)) in acc {
                self.summaries.push(KernelSummary {
                    cluster: g.cluster.clone().unwrap_or_else(|| Arc::from("")),
                    node: key.node.clone(),
                    gpu_index: key.gpu_index,
                    gpu_uuid: g.uuid.clone(),
                    job_id: job.checked_sub(1).and_then(|i| self.jobs.get(i as usize).cloned()),
                    start_ns: t0,
                    end_ns: t1,
                    name: self.names[name as usize].clone(),
                    category: cat.as_str().to_string(),
                    count,
                    total_ns: total,
                    min_ns: min,
                    max_ns: max,
                });
            }
        }

        // 3. One batch of reducer calls for every window.
        let decomp = batch.run(&self.reducer)?;
        let hollow_i = if hollow_w.is_empty() {
            Vec::new()
        } else {
            self.reducer.intersection_length(hollow_a.as_intervals(), hollow_b.as_intervals())?
        };

        let mut out = Vec::with_capacity(pending.len());
        for (w, d) in pending.into_iter().zip(decomp) {
            let g = &self.gpus[&w.key];
            let known = w.categories_known;
            let opt = |v: i64| known.then_some(v);
            let hollow = (!w.hollow_segments.is_empty()).then(|| {
                w.hollow_segments
                    .clone()
                    .map(|i| hollow_w[i] * (hollow_len[i] - hollow_i[i]) as f64)
                    .sum::<f64>()
                    .round() as i64
            });
            let (sync_stall, transfer, estimated) = if !known {
                (None, None, None)
            } else if d.comm_ns == 0 {
                (Some(0), Some(0), Some(false))
            } else if w.stall_known {
                (Some(d.sync_stall_ns), Some(d.comm_transfer_ns()), Some(w.stall_estimated))
            } else {
                (None, None, None)
            };
            let gpu_name = g.name.clone().or_else(|| self.cfg.default_gpu_name.as_deref().map(Arc::from));
            let peak = match (&gpu_name, &w.dtype) {
                (Some(n), Some(dt)) => self.cfg.peaks.peak(n, dt),
                _ => None,
            };
            let s = &w.samples;
            let reported_busy = (s.rep_ns > 0).then(|| s.rep_weighted.round() as i64);
            // One split of the window's time (accounting.rs): kernel records, else NVML.
            let split_source = if known {
                Some("kernels")
            } else if s.rep_ns > 0 {
                Some("nvml")
            } else {
                None
            };
            // Hollow busy is part of compute where kernel records split the time.
            let hollow = if known { hollow.map(|h| h.min(d.compute_ns)) } else { hollow.filter(|_| s.rep_ns > 0) };
            let (idle, idle_classes) = if known {
                (
                    Some(d.idle_ns),
                    [
                        (w.idle.launch_known).then_some(w.idle.host_bound_ns),
                        Some(w.idle.launch_gap_ns),
                        Some(w.idle.io_blocked_ns),
                        Some(w.idle.no_process_ns),
                        // The classes add up to idle exactly (checked in tests); any
                        // rounding from mixed sources lands in `other`.
                        Some(w.idle.other_ns + (d.idle_ns - w.idle.total())),
                    ],
                )
            } else if let Some(busy) = reported_busy {
                // NVML only: idle = sampled time − reported busy; no kernel gaps to
                // classify, so only no_process, io_blocked and other.
                let idle = (s.rep_ns - busy).max(0);
                let np = (s.idle_no_process.round() as i64).clamp(0, idle);
                let io = (s.idle_io_blocked.round() as i64).clamp(0, idle - np);
                (Some(idle), [None, None, Some(io), Some(np), Some(idle - np - io)])
            } else {
                (None, [None; 5])
            };
            let ghost = match (sync_stall, hollow) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
            };
            out.push(Window {
                cluster: g.cluster.clone().unwrap_or_else(|| Arc::from("")),
                node: w.key.node.clone(),
                gpu_index: w.key.gpu_index,
                gpu_uuid: g.uuid.clone().unwrap_or_else(|| Arc::from("")),
                gpu_name,
                job_id: match w.job {
                    Some(0) => None,
                    Some(i) => self.jobs.get(i as usize - 1).cloned(),
                    None => g.job_id.clone(),
                },
                start_ns: w.t0,
                end_ns: w.t1,
                coverage: coverage_string(w.coverage),
                split_source: split_source.map(str::to_string),
                compute_ns: opt(d.compute_ns),
                comm_exposed_ns: opt(d.comm_exposed_ns),
                memcpy_exposed_ns: opt(d.memcpy_exposed_ns),
                idle_ns: idle,
                comm_transfer_ns: transfer,
                sync_stall_ns: sync_stall,
                sync_stall_estimated: estimated,
                comm_unidentified_ns: opt(d.comm_unidentified_ns),
                comm_ns: opt(d.comm_ns),
                comm_overlapped_ns: opt(d.comm_overlapped_ns),
                overlap_ratio: if known { d.overlap_ratio() } else { None },
                idle_host_bound_ns: idle_classes[0],
                idle_launch_gap_ns: idle_classes[1],
                idle_io_blocked_ns: idle_classes[2],
                idle_no_process_ns: idle_classes[3],
                idle_other_ns: idle_classes[4],
                host_sync_blocked_ns: Some(w.host_sync_blocked_ns),
                kernel_count: opt(w.kernel_count),
                reported_utilization_ratio: (s.rep_ns > 0).then(|| s.rep_weighted / s.rep_ns as f64),
                reported_busy_ns: reported_busy,
                sm_active_ratio: SampleAgg::mean(s.sm),
                tensor_active_ratio: SampleAgg::mean(s.tensor),
                dram_active_ratio: SampleAgg::mean(s.dram),
                hollow_busy_ns: hollow,
                wasted_progress_ns: None,
                ghost_ns: ghost,
                model_flops: w.model_flops,
                peak_flops_per_s: peak,
                dtype: w.dtype.clone(),
                mfu: mfu(w.model_flops, w.t1 - w.t0, peak),
                tensor_estimate: SampleAgg::mean(s.tensor_est),
            });
        }
        self.stats.windows += out.len() as u64;
        Ok(out)
    }
}

/// Times no process held the GPU: the spans of samples whose `pids` is
/// empty, each starting at the exit of the last holder when that is known.
fn no_process_intervals(samples: &[Sample], exits: &[(i32, i64)], sp: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut prev: Option<&Sample> = None;
    for s in samples {
        if s.pids.is_empty() {
            let mut start = s.ts - sp;
            if let Some(p) = prev.filter(|p| !p.pids.is_empty())
                && let Some(t) = exits
                    .iter()
                    .filter(|(pid, t)| p.pids.contains(pid) && *t > p.ts && *t <= s.ts)
                    .map(|(_, t)| *t)
                    .max()
            {
                start = t;
            }
            out.push((start, s.ts));
        }
        prev = Some(s);
    }
    merge_in_place(&mut out);
    out
}
