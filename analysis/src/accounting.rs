//! The one accounting of GPU time (DESIGN §3–4 and §8a).
//!
//! Every door rolls `windows` rows up with [`GpuTime`]: the agent's
//! Prometheus totals, `strand postmortem`, `strand import` and `strand
//! report stranded`. It has the shape of DataFusion's `Accumulator`:
//! [`GpuTime::update`] adds one window, [`GpuTime::merge`] adds another
//! accumulator, [`GpuTime::state`] gives the state columns and
//! [`GpuTime::evaluate`] the figures. The fleet report's SQL
//! ([`gpu_time_sql`]) computes exactly the state columns in the engine, from
//! the same table of definitions ([`STATE`]), and strand merges and
//! evaluates them: one definition, whichever engine sums.
//!
//! Where the GPU-seconds went is one ordered list of exclusive categories,
//! [`LEAVES`]; for every window they add up to its length:
//!
//! | leaf | kernel records (`split_source = kernels`) | NVML only (`split_source = nvml`) |
//! |---|---|---|
//! | productive_compute | compute − hollow busy − wasted progress | |
//! | comm_transfer | comm_exposed − sync_stall | |
//! | comm_split_unknown | comm_exposed whose stall split is unknown | |
//! | memcpy_exposed | memcpy_exposed | |
//! | busy_unclassified | | reported busy − hollow busy |
//! | sync_stall, hollow_busy, wasted_progress | ghost compute | hollow busy |
//! | idle_host_bound … idle_other | the idle classes | idle_no_process, idle_other |
//! | unmeasured | | time without NVML samples |
//!
//! "compute" is always |∪C| (DESIGN §4); the compute that advanced the
//! workload is `productive_compute`. Ghost compute = sync stall + hollow
//! busy + wasted progress. Stranded = ghost + idle of held GPUs (all idle
//! but `idle_no_process`) + unallocatable GPUs (a fleet figure, added by
//! the report).
//!
//! Exact stalls: a window whose sync stall the agent estimated (or could not
//! estimate) takes the exact stall of its GPU's collectives that started in
//! its window cell, when the caller has one (`collective_stalls`), capped by
//! its exposed communication.

use serde::Serialize;
use strand_schemas::Window;

/// An exclusive category of GPU time, in presentation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Leaf {
    ProductiveCompute,
    CommTransfer,
    CommSplitUnknown,
    MemcpyExposed,
    BusyUnclassified,
    SyncStall,
    HollowBusy,
    WastedProgress,
    IdleHostBound,
    IdleLaunchGap,
    IdleIoBlocked,
    IdleNoProcess,
    IdleOther,
    Unmeasured,
}

/// What a leaf is part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Busy time that advanced the workload, or whose worth is unknown.
    Busy,
    /// Busy time that did not advance the workload.
    Ghost,
    Idle,
    /// No source measured it.
    Unmeasured,
}

/// Every leaf, in the one order every door shows them.
pub const LEAVES: [Leaf; 14] = [
    Leaf::ProductiveCompute,
    Leaf::CommTransfer,
    Leaf::CommSplitUnknown,
    Leaf::MemcpyExposed,
    Leaf::BusyUnclassified,
    Leaf::SyncStall,
    Leaf::HollowBusy,
    Leaf::WastedProgress,
    Leaf::IdleHostBound,
    Leaf::IdleLaunchGap,
    Leaf::IdleIoBlocked,
    Leaf::IdleNoProcess,
    Leaf::IdleOther,
    Leaf::Unmeasured,
];

impl Leaf {
    /// The name in JSON, Prometheus labels and docs.
    pub fn name(self) -> &'static str {
        match self {
            Leaf::ProductiveCompute => "productive_compute",
            Leaf::CommTransfer => "comm_transfer",
            Leaf::CommSplitUnknown => "comm_split_unknown",
            Leaf::MemcpyExposed => "memcpy_exposed",
            Leaf::BusyUnclassified => "busy_unclassified",
            Leaf::SyncStall => "sync_stall",
            Leaf::HollowBusy => "hollow_busy",
            Leaf::WastedProgress => "wasted_progress",
            Leaf::IdleHostBound => "idle_host_bound",
            Leaf::IdleLaunchGap => "idle_launch_gap",
            Leaf::IdleIoBlocked => "idle_io_blocked",
            Leaf::IdleNoProcess => "idle_no_process",
            Leaf::IdleOther => "idle_other",
            Leaf::Unmeasured => "unmeasured",
        }
    }

    /// Words for people (reports' legends).
    pub fn label(self) -> &'static str {
        match self {
            Leaf::ProductiveCompute => "productive compute",
            Leaf::CommTransfer => "comm transfer",
            Leaf::CommSplitUnknown => "comm (split unknown)",
            Leaf::MemcpyExposed => "memcpy exposed",
            Leaf::BusyUnclassified => "busy (no kernel records)",
            Leaf::SyncStall => "ghost: sync stall",
            Leaf::HollowBusy => "ghost: hollow busy",
            Leaf::WastedProgress => "ghost: wasted progress",
            Leaf::IdleHostBound => "idle: host bound",
            Leaf::IdleLaunchGap => "idle: launch gap",
            Leaf::IdleIoBlocked => "idle: I/O blocked",
            Leaf::IdleNoProcess => "idle: no process",
            Leaf::IdleOther => "idle: other",
            Leaf::Unmeasured => "unmeasured",
        }
    }

    pub fn group(self) -> Group {
        match self {
            Leaf::SyncStall | Leaf::HollowBusy | Leaf::WastedProgress => Group::Ghost,
            Leaf::IdleHostBound | Leaf::IdleLaunchGap | Leaf::IdleIoBlocked | Leaf::IdleNoProcess | Leaf::IdleOther => {
                Group::Idle
            }
            Leaf::Unmeasured => Group::Unmeasured,
            _ => Group::Busy,
        }
    }

    /// Paid for and yielding no progress (DESIGN §3): ghost compute and the
    /// idle time of GPUs some process held.
    pub fn stranded(self) -> bool {
        matches!(self.group(), Group::Ghost | Group::Idle) && self != Leaf::IdleNoProcess
    }

    /// The chart colour (the same in every report).
    pub fn colour(self) -> &'static str {
        match self {
            Leaf::ProductiveCompute => "#2e7d32",
            Leaf::CommTransfer => "#1565c0",
            Leaf::CommSplitUnknown => "#5c6bc0",
            Leaf::MemcpyExposed => "#f9a825",
            Leaf::BusyUnclassified => "#81c784",
            Leaf::SyncStall => "#c62828",
            Leaf::HollowBusy => "#ef6c00",
            Leaf::WastedProgress => "#ad1457",
            Leaf::IdleHostBound => "#6a1b9a",
            Leaf::IdleLaunchGap => "#9575cd",
            Leaf::IdleIoBlocked => "#5d4037",
            Leaf::IdleNoProcess => "#eceff1",
            Leaf::IdleOther => "#b0bec5",
            Leaf::Unmeasured => "#ffffff",
        }
    }
}

/// Whether a state column sums integers (nanoseconds, counts) or floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
}

/// A value of one window for one state column.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    Float(f64),
}

/// What a state column sums, per window: the Rust function and the SQL
/// expression over `windows w` joined with the exact stalls `e` (one row per
/// window cell, column `stall_ns`). The two sit side by side so they cannot
/// drift apart unseen; `strand-fleet`'s tests run the SQL against `update`.
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub sql: &'static str,
    pub eval: fn(&Window, Option<i64>) -> Value,
}

const LEN_SQL: &str = "(w.end_ns - w.start_ns)";

fn len(w: &Window) -> i64 {
    w.end_ns - w.start_ns
}

fn z(v: Option<i64>) -> i64 {
    v.unwrap_or(0)
}

fn is_source(w: &Window, s: &str) -> bool {
    w.split_source.as_deref() == Some(s)
}

/// The exact stall replaces the window's own one: when the window's stall
/// was estimated or unknown, its exposed communication is known, and the
/// caller has an exact figure for its cell.
fn exact_applies(w: &Window, exact: Option<i64>) -> bool {
    exact.is_some() && w.sync_stall_estimated != Some(false) && w.comm_exposed_ns.is_some()
}
macro_rules! exact_applies_sql {
    () => {
        "(e.stall_ns IS NOT NULL AND COALESCE(w.sync_stall_estimated, TRUE) AND w.comm_exposed_ns IS NOT NULL)"
    };
}

/// The window's sync stall after the exact replacement.
pub fn sync_stall(w: &Window, exact: Option<i64>) -> Option<i64> {
    match exact {
        Some(e) if exact_applies(w, exact) => Some(e.clamp(0, z(w.comm_exposed_ns))),
        _ => w.sync_stall_ns,
    }
}
macro_rules! stall_sql {
    () => {
        concat!(
            "CASE WHEN ",
            exact_applies_sql!(),
            " THEN CASE WHEN e.stall_ns < 0 THEN 0 WHEN e.stall_ns < w.comm_exposed_ns THEN e.stall_ns ELSE w.comm_exposed_ns END \
         ELSE w.sync_stall_ns END"
        )
    };
}

/// The state columns, in order. Their names are the SQL result's columns.
pub const STATE: &[Column] = &[
    Column { name: "windows", kind: Kind::Int, sql: "1", eval: |_, _| Value::Int(1) },
    Column { name: "powered_ns", kind: Kind::Int, sql: LEN_SQL, eval: |w, _| Value::Int(len(w)) },
    Column {
        name: "kernels_ns",
        kind: Kind::Int,
        sql: "CASE WHEN w.split_source = 'kernels' THEN w.end_ns - w.start_ns ELSE 0 END",
        eval: |w, _| Value::Int(if is_source(w, "kernels") { len(w) } else { 0 }),
    },
    Column {
        name: "nvml_ns",
        kind: Kind::Int,
        sql: "CASE WHEN w.split_source = 'nvml' THEN w.end_ns - w.start_ns ELSE 0 END",
        eval: |w, _| Value::Int(if is_source(w, "nvml") { len(w) } else { 0 }),
    },
    Column {
        name: "compute_ns",
        kind: Kind::Int,
        sql: "COALESCE(w.compute_ns, 0)",
        eval: |w, _| Value::Int(z(w.compute_ns)),
    },
    Column {
        name: "productive_compute_ns",
        kind: Kind::Int,
        sql: "CASE WHEN w.split_source = 'kernels' THEN COALESCE(w.compute_ns, 0) - COALESCE(w.hollow_busy_ns, 0) ELSE 0 END",
        eval: |w, _| Value::Int(if is_source(w, "kernels") { z(w.compute_ns) - z(w.hollow_busy_ns) } else { 0 }),
    },
    Column { name: "comm_ns", kind: Kind::Int, sql: "COALESCE(w.comm_ns, 0)", eval: |w, _| Value::Int(z(w.comm_ns)) },
    Column {
        name: "comm_overlapped_ns",
        kind: Kind::Int,
        sql: "COALESCE(w.comm_overlapped_ns, 0)",
        eval: |w, _| Value::Int(z(w.comm_overlapped_ns)),
    },
    Column {
        name: "comm_exposed_ns",
        kind: Kind::Int,
        sql: "COALESCE(w.comm_exposed_ns, 0)",
        eval: |w, _| Value::Int(z(w.comm_exposed_ns)),
    },
    Column {
        name: "sync_stall_ns",
        kind: Kind::Int,
        sql: concat!("COALESCE(", stall_sql!(), ", 0)"),
        eval: |w, e| Value::Int(z(sync_stall(w, e))),
    },
    Column {
        name: "sync_stall_estimated_ns",
        kind: Kind::Int,
        sql: concat!(
            "CASE WHEN ",
            exact_applies_sql!(),
            " THEN 0 ",
            "WHEN w.sync_stall_estimated THEN COALESCE(w.sync_stall_ns, 0) ELSE 0 END"
        ),
        eval: |w, e| {
            Value::Int(if !exact_applies(w, e) && w.sync_stall_estimated == Some(true) {
                z(w.sync_stall_ns)
            } else {
                0
            })
        },
    },
    Column {
        name: "comm_transfer_ns",
        kind: Kind::Int,
        sql: concat!(
            "CASE WHEN (",
            stall_sql!(),
            ") IS NULL THEN 0 ELSE COALESCE(w.comm_exposed_ns, 0) - (",
            stall_sql!(),
            ") END"
        ),
        eval: |w, e| Value::Int(sync_stall(w, e).map_or(0, |s| z(w.comm_exposed_ns) - s)),
    },
    Column {
        name: "comm_split_unknown_ns",
        kind: Kind::Int,
        sql: concat!("CASE WHEN (", stall_sql!(), ") IS NULL THEN COALESCE(w.comm_exposed_ns, 0) ELSE 0 END"),
        eval: |w, e| Value::Int(if sync_stall(w, e).is_none() { z(w.comm_exposed_ns) } else { 0 }),
    },
    Column {
        name: "memcpy_exposed_ns",
        kind: Kind::Int,
        sql: "COALESCE(w.memcpy_exposed_ns, 0)",
        eval: |w, _| Value::Int(z(w.memcpy_exposed_ns)),
    },
    Column {
        name: "busy_unclassified_ns",
        kind: Kind::Int,
        sql: "CASE WHEN w.split_source = 'nvml' THEN COALESCE(w.reported_busy_ns, 0) - COALESCE(w.hollow_busy_ns, 0) ELSE 0 END",
        eval: |w, _| Value::Int(if is_source(w, "nvml") { z(w.reported_busy_ns) - z(w.hollow_busy_ns) } else { 0 }),
    },
    Column {
        name: "hollow_busy_ns",
        kind: Kind::Int,
        sql: "CASE WHEN w.split_source IS NULL THEN 0 ELSE COALESCE(w.hollow_busy_ns, 0) END",
        eval: |w, _| Value::Int(if w.split_source.is_some() { z(w.hollow_busy_ns) } else { 0 }),
    },
    Column { name: "idle_ns", kind: Kind::Int, sql: "COALESCE(w.idle_ns, 0)", eval: |w, _| Value::Int(z(w.idle_ns)) },
    Column {
        name: "idle_host_bound_ns",
        kind: Kind::Int,
        sql: "COALESCE(w.idle_host_bound_ns, 0)",
        eval: |w, _| Value::Int(z(w.idle_host_bound_ns)),
    },
    Column {
        name: "idle_launch_gap_ns",
        kind: Kind::Int,
        sql: "COALESCE(w.idle_launch_gap_ns, 0)",
        eval: |w, _| Value::Int(z(w.idle_launch_gap_ns)),
    },
    Column {
        name: "idle_io_blocked_ns",
        kind: Kind::Int,
        sql: "COALESCE(w.idle_io_blocked_ns, 0)",
        eval: |w, _| Value::Int(z(w.idle_io_blocked_ns)),
    },
    Column {
        name: "idle_no_process_ns",
        kind: Kind::Int,
        sql: "COALESCE(w.idle_no_process_ns, 0)",
        eval: |w, _| Value::Int(z(w.idle_no_process_ns)),
    },
    Column {
        name: "idle_other_ns",
        kind: Kind::Int,
        sql: "COALESCE(w.idle_other_ns, 0)",
        eval: |w, _| Value::Int(z(w.idle_other_ns)),
    },
    Column {
        name: "unmeasured_ns",
        kind: Kind::Int,
        sql: "CASE WHEN w.split_source = 'kernels' THEN 0 \
              WHEN w.split_source = 'nvml' THEN (w.end_ns - w.start_ns) - COALESCE(w.reported_busy_ns, 0) - COALESCE(w.idle_ns, 0) \
              ELSE w.end_ns - w.start_ns END",
        eval: |w, _| {
            Value::Int(match w.split_source.as_deref() {
                Some("kernels") => 0,
                Some("nvml") => len(w) - z(w.reported_busy_ns) - z(w.idle_ns),
                _ => len(w),
            })
        },
    },
    Column {
        name: "reported_busy_ns",
        kind: Kind::Int,
        sql: "COALESCE(w.reported_busy_ns, 0)",
        eval: |w, _| Value::Int(z(w.reported_busy_ns)),
    },
    Column {
        name: "reported_ns",
        kind: Kind::Int,
        sql: "CASE WHEN w.reported_utilization_ratio IS NULL THEN 0 ELSE w.end_ns - w.start_ns END",
        eval: |w, _| Value::Int(if w.reported_utilization_ratio.is_some() { len(w) } else { 0 }),
    },
    Column {
        name: "host_sync_blocked_ns",
        kind: Kind::Int,
        sql: "COALESCE(w.host_sync_blocked_ns, 0)",
        eval: |w, _| Value::Int(z(w.host_sync_blocked_ns)),
    },
    Column {
        name: "kernel_count",
        kind: Kind::Int,
        sql: "COALESCE(w.kernel_count, 0)",
        eval: |w, _| Value::Int(z(w.kernel_count)),
    },
    Column {
        name: "model_flops",
        kind: Kind::Float,
        sql: "CASE WHEN w.model_flops IS NOT NULL AND w.peak_flops_per_s IS NOT NULL THEN w.model_flops ELSE 0.0 END",
        eval: |w, _| {
            Value::Float(match (w.model_flops, w.peak_flops_per_s) {
                (Some(f), Some(_)) => f,
                _ => 0.0,
            })
        },
    },
    Column {
        name: "peak_flop_budget",
        kind: Kind::Float,
        sql: "CASE WHEN w.model_flops IS NOT NULL AND w.peak_flops_per_s IS NOT NULL \
              THEN w.peak_flops_per_s * CAST(w.end_ns - w.start_ns AS DOUBLE) * 1e-9 ELSE 0.0 END",
        eval: |w, _| {
            Value::Float(match (w.model_flops, w.peak_flops_per_s) {
                (Some(_), Some(p)) => p * len(w) as f64 * 1e-9,
                _ => 0.0,
            })
        },
    },
    Column {
        name: "tensor_estimate_weighted",
        kind: Kind::Float,
        sql: "COALESCE(w.tensor_estimate * CAST(w.end_ns - w.start_ns AS DOUBLE), 0.0)",
        eval: |w, _| Value::Float(w.tensor_estimate.map_or(0.0, |e| e * len(w) as f64)),
    },
    Column {
        name: "tensor_estimate_ns",
        kind: Kind::Int,
        sql: "CASE WHEN w.tensor_estimate IS NULL THEN 0 ELSE w.end_ns - w.start_ns END",
        eval: |w, _| Value::Int(if w.tensor_estimate.is_some() { len(w) } else { 0 }),
    },
    Column {
        name: "sm_active_weighted",
        kind: Kind::Float,
        sql: "COALESCE(w.sm_active_ratio * CAST(w.end_ns - w.start_ns AS DOUBLE), 0.0)",
        eval: |w, _| Value::Float(w.sm_active_ratio.map_or(0.0, |e| e * len(w) as f64)),
    },
    Column {
        name: "sm_active_ns",
        kind: Kind::Int,
        sql: "CASE WHEN w.sm_active_ratio IS NULL THEN 0 ELSE w.end_ns - w.start_ns END",
        eval: |w, _| Value::Int(if w.sm_active_ratio.is_some() { len(w) } else { 0 }),
    },
];

/// Index of a state column by name (for code that reads one figure).
fn col(name: &str) -> usize {
    STATE.iter().position(|c| c.name == name).unwrap_or_else(|| panic!("no accounting column {name}"))
}

/// The accumulator: sums of the state columns over some windows. It
/// serializes as its [`Figures`].
#[derive(Debug, Clone, PartialEq)]
pub struct GpuTime {
    ints: Vec<i64>,
    floats: Vec<f64>,
    /// Wasted progress moved from productive compute (a job figure, see
    /// [`GpuTime::add_wasted`]).
    wasted_ns: i64,
}

impl Serialize for GpuTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.evaluate().serialize(s)
    }
}

impl Default for GpuTime {
    fn default() -> Self {
        Self { ints: vec![0; STATE.len()], floats: vec![0.0; STATE.len()], wasted_ns: 0 }
    }
}

impl GpuTime {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one window; `exact` is the exact sync stall of its GPU's
    /// collectives that started in its window cell, when known.
    pub fn update(&mut self, w: &Window, exact: Option<i64>) {
        for (i, c) in STATE.iter().enumerate() {
            match (c.eval)(w, exact) {
                Value::Int(v) => self.ints[i] += v,
                Value::Float(v) => self.floats[i] += v,
            }
        }
    }

    /// Adds another accumulator's state.
    pub fn merge(&mut self, o: &GpuTime) {
        for i in 0..STATE.len() {
            self.ints[i] += o.ints[i];
            self.floats[i] += o.floats[i];
        }
        self.wasted_ns += o.wasted_ns;
    }

    /// Adds one state row as an engine computed it (`get(column)` gives the
    /// sum for that column's name; integer columns as i64).
    pub fn merge_state(&mut self, mut get: impl FnMut(&str, Kind) -> Value) {
        for (i, c) in STATE.iter().enumerate() {
            match get(c.name, c.kind) {
                Value::Int(v) => self.ints[i] += v,
                Value::Float(v) => self.floats[i] += v,
            }
        }
    }

    /// The state columns: (name, value).
    pub fn state(&self) -> Vec<(&'static str, Value)> {
        STATE
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    c.name,
                    match c.kind {
                        Kind::Int => Value::Int(self.ints[i]),
                        Kind::Float => Value::Float(self.floats[i]),
                    },
                )
            })
            .collect()
    }

    /// One integer state column by name.
    pub fn int(&self, name: &str) -> i64 {
        self.ints[col(name)]
    }

    fn float(&self, name: &str) -> f64 {
        self.floats[col(name)]
    }

    /// Moves `ns` of the productive compute to ghost compute, kind wasted
    /// progress (work after the last checkpoint of a run that then failed;
    /// docs/goodput.md). At most the productive compute there is.
    pub fn add_wasted(&mut self, ns: i64) {
        let room = self.int("productive_compute_ns") - self.wasted_ns;
        self.wasted_ns += ns.clamp(0, room.max(0));
    }

    pub fn wasted_ns(&self) -> i64 {
        self.wasted_ns
    }

    /// Nanoseconds of one leaf.
    pub fn leaf(&self, l: Leaf) -> i64 {
        let i = |n| self.int(n);
        match l {
            Leaf::ProductiveCompute => i("productive_compute_ns") - self.wasted_ns,
            Leaf::CommTransfer => i("comm_transfer_ns"),
            Leaf::CommSplitUnknown => i("comm_split_unknown_ns"),
            Leaf::MemcpyExposed => i("memcpy_exposed_ns"),
            Leaf::BusyUnclassified => i("busy_unclassified_ns"),
            Leaf::SyncStall => i("sync_stall_ns"),
            Leaf::HollowBusy => i("hollow_busy_ns"),
            Leaf::WastedProgress => self.wasted_ns,
            Leaf::IdleHostBound => i("idle_host_bound_ns"),
            Leaf::IdleLaunchGap => i("idle_launch_gap_ns"),
            Leaf::IdleIoBlocked => i("idle_io_blocked_ns"),
            Leaf::IdleNoProcess => i("idle_no_process_ns"),
            Leaf::IdleOther => i("idle_other_ns"),
            Leaf::Unmeasured => i("unmeasured_ns"),
        }
    }

    /// Sum of the leaves of one group.
    pub fn group(&self, g: Group) -> i64 {
        LEAVES.iter().filter(|l| l.group() == g).map(|l| self.leaf(*l)).sum()
    }

    /// Ghost compute: sync stall + hollow busy + wasted progress.
    pub fn ghost_ns(&self) -> i64 {
        self.group(Group::Ghost)
    }

    /// Stranded time this accounting sees (unallocatable GPUs are added by the fleet report).
    pub fn stranded_ns(&self) -> i64 {
        LEAVES.iter().filter(|l| l.stranded()).map(|l| self.leaf(*l)).sum()
    }

    pub fn powered_ns(&self) -> i64 {
        self.int("powered_ns")
    }

    /// Powered time that some process held (powered − idle with no process).
    pub fn held_ns(&self) -> i64 {
        self.powered_ns() - self.leaf(Leaf::IdleNoProcess)
    }

    /// MFU over these windows: Σ model FLOPs ÷ Σ (T × peak).
    pub fn mfu(&self) -> Option<f64> {
        let b = self.float("peak_flop_budget");
        (b > 0.0).then(|| self.float("model_flops") / b)
    }

    /// The tensor-pipe estimate (not MFU), time-weighted.
    pub fn tensor_estimate(&self) -> Option<f64> {
        let ns = self.int("tensor_estimate_ns");
        (ns > 0).then(|| self.float("tensor_estimate_weighted") / ns as f64)
    }

    pub fn sm_active(&self) -> Option<f64> {
        let ns = self.int("sm_active_ns");
        (ns > 0).then(|| self.float("sm_active_weighted") / ns as f64)
    }

    /// Reported utilization (NVML), time-weighted.
    pub fn reported_utilization(&self) -> Option<f64> {
        let ns = self.int("reported_ns");
        (ns > 0).then(|| self.int("reported_busy_ns") as f64 / ns as f64)
    }

    /// comm_overlapped / |∪M|.
    pub fn overlap_ratio(&self) -> Option<f64> {
        let c = self.int("comm_ns");
        (c > 0).then(|| self.int("comm_overlapped_ns") as f64 / c as f64)
    }

    /// Share of the time with kernel records that at least one kernel, copy
    /// or set ran (what reported utilization should equal, DESIGN §4).
    pub fn busy_ratio(&self) -> Option<f64> {
        let k = self.int("kernels_ns");
        (k > 0).then(|| {
            self.int("compute_ns") as f64 / k as f64
                + (self.int("comm_exposed_ns") + self.int("memcpy_exposed_ns")) as f64 / k as f64
        })
    }

    /// `ns` as a share of the powered time.
    pub fn share(&self, ns: i64) -> Option<f64> {
        let p = self.powered_ns();
        (p > 0).then(|| ns as f64 / p as f64)
    }

    /// Powered time some source split into busy and idle.
    pub fn measured_ns(&self) -> i64 {
        self.powered_ns() - self.leaf(Leaf::Unmeasured)
    }

    /// Spreads a job's wasted progress over its accumulators (GPUs, or GPU ×
    /// bucket rows) in proportion to their productive compute, to the
    /// nanosecond (largest remainder), so that every door that splits a job
    /// the same way gets the same figures.
    pub fn apportion_wasted(parts: &mut [&mut GpuTime], wasted_ns: i64) {
        let rooms: Vec<i64> = parts.iter().map(|p| (p.leaf(Leaf::ProductiveCompute)).max(0)).collect();
        let total: i128 = rooms.iter().map(|&r| i128::from(r)).sum();
        let wasted = i128::from(wasted_ns.max(0)).min(total);
        if total == 0 || wasted == 0 {
            return;
        }
        let mut shares: Vec<i128> = rooms.iter().map(|&r| wasted * i128::from(r) / total).collect();
        let mut left = wasted - shares.iter().sum::<i128>();
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(wasted * i128::from(rooms[i]) % total), i));
        for i in order {
            if left == 0 {
                break;
            }
            if shares[i] < i128::from(rooms[i]) {
                shares[i] += 1;
                left -= 1;
            }
        }
        for (p, s) in parts.iter_mut().zip(shares) {
            p.add_wasted(s as i64);
        }
    }

    /// Where the time split came from: `kernels`, `nvml`, both (`kernels+nvml`) or `none`.
    pub fn split_source(&self) -> &'static str {
        match (self.int("kernels_ns") > 0, self.int("nvml_ns") > 0) {
            (true, true) => "kernels+nvml",
            (true, false) => "kernels",
            (false, true) => "nvml",
            (false, false) => "none",
        }
    }

    /// The figures, for JSON.
    pub fn evaluate(&self) -> Figures {
        let gpu_s = |ns: i64| ns as f64 * 1e-9;
        Figures {
            powered_s: gpu_s(self.powered_ns()),
            held_s: gpu_s(self.held_ns()),
            kernel_records_s: gpu_s(self.int("kernels_ns")),
            nvml_only_s: gpu_s(self.int("nvml_ns")),
            split_source: self.split_source(),
            leaves_s: LEAVES.iter().map(|l| (l.name(), gpu_s(self.leaf(*l)))).collect(),
            leaves_ns: LEAVES.iter().map(|l| (l.name(), self.leaf(*l))).collect(),
            model_flops: self.float("model_flops"),
            state: self.state().into_iter().collect(),
            compute_s: gpu_s(self.int("compute_ns")),
            comm_exposed_s: gpu_s(self.int("comm_exposed_ns")),
            memcpy_exposed_s: gpu_s(self.int("memcpy_exposed_ns")),
            idle_s: gpu_s(self.group(Group::Idle)),
            ghost_s: gpu_s(self.ghost_ns()),
            stranded_s: gpu_s(self.stranded_ns()),
            sync_stall_estimated_s: gpu_s(self.int("sync_stall_estimated_ns")),
            reported_busy_s: gpu_s(self.int("reported_busy_ns")),
            host_sync_blocked_s: gpu_s(self.int("host_sync_blocked_ns")),
            reported_utilization: self.reported_utilization(),
            sm_active: self.sm_active(),
            mfu: self.mfu(),
            tensor_estimate: self.tensor_estimate(),
            overlap_ratio: self.overlap_ratio(),
            kernel_count: self.int("kernel_count"),
        }
    }
}

/// [`GpuTime`]'s figures, in GPU-seconds and ratios (JSON of every report).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub powered_s: f64,
    pub held_s: f64,
    /// Time whose split comes from kernel records (CUPTI, Kineto).
    pub kernel_records_s: f64,
    /// Time whose split comes from NVML utilization alone.
    pub nvml_only_s: f64,
    pub split_source: &'static str,
    /// The leaves, in [`LEAVES`] order.
    pub leaves_s: Vec<(&'static str, f64)>,
    /// The same, exactly (integer nanoseconds): what every door must agree on.
    pub leaves_ns: Vec<(&'static str, i64)>,
    /// Σ model FLOPs of the windows with a known peak (the numerator of MFU).
    pub model_flops: f64,
    /// The accumulator's state columns (what the fleet SQL returns), exactly.
    pub state: std::collections::BTreeMap<&'static str, Value>,
    /// compute = |∪C| (DESIGN §4), over the time with kernel records.
    pub compute_s: f64,
    pub comm_exposed_s: f64,
    pub memcpy_exposed_s: f64,
    pub idle_s: f64,
    pub ghost_s: f64,
    pub stranded_s: f64,
    /// Part of the sync stall that is still an estimate (peers missing).
    pub sync_stall_estimated_s: f64,
    pub reported_busy_s: f64,
    pub host_sync_blocked_s: f64,
    pub reported_utilization: Option<f64>,
    pub sm_active: Option<f64>,
    pub mfu: Option<f64>,
    /// Tensor-pipe estimate: an estimate, not MFU.
    pub tensor_estimate: Option<f64>,
    pub overlap_ratio: Option<f64>,
    pub kernel_count: i64,
}

/// The fleet report's GPU-time query: the state columns per GPU, job and
/// trend bucket, with the exact stalls of `collective_stalls` joined per
/// window cell. `{{window_ns}}` and `{{bucket_ns}}` are the report's
/// parameters. `collector/fleet/sql/gpu_time.sql` is this text (checked by a test).
pub fn gpu_time_sql() -> String {
    let mut s = String::from(
        "-- Where every GPU-second went, per GPU, job and trend bucket: the state columns of the\n\
         -- one accounting (analysis/src/accounting.rs, GENERATED from it: do not edit by hand).\n\
         -- Windows whose sync stall the agent estimated take the exact one of their window cell.\n\
         WITH e AS (\n\
         \x20 SELECT cluster, node, gpu_index, start_ns - start_ns % {{window_ns}} AS wstart, SUM(stall_ns) AS stall_ns\n\
         \x20 FROM collective_stalls\n\
         \x20 WHERE gpu_index IS NOT NULL\n\
         \x20 GROUP BY cluster, node, gpu_index, start_ns - start_ns % {{window_ns}}\n\
         )\n\
         SELECT w.cluster AS cluster, w.node AS node, w.gpu_index AS gpu_index, w.gpu_uuid AS gpu_uuid,\n\
         \x20      COALESCE(w.gpu_name, 'unknown') AS gpu_name, COALESCE(w.job_id, '') AS job_id,\n\
         \x20      w.start_ns - w.start_ns % {{bucket_ns}} AS bucket_ns",
    );
    for c in STATE {
        s.push_str(&format!(",\n       SUM({}) AS {}", c.sql, c.name));
    }
    s.push_str(
        "\nFROM windows w\n\
         LEFT JOIN e\n\
         \x20 ON e.cluster = w.cluster AND e.node = w.node AND e.gpu_index = w.gpu_index\n\
         \x20 AND e.wstart = w.start_ns - w.start_ns % {{window_ns}}\n\
         GROUP BY w.cluster, w.node, w.gpu_index, w.gpu_uuid, COALESCE(w.gpu_name, 'unknown'), COALESCE(w.job_id, ''),\n\
         \x20        w.start_ns - w.start_ns % {{bucket_ns}}\n",
    );
    s
}

/// The window cell of a time for the exact-stall join (as the SQL computes it).
pub fn window_cell(t_ns: i64, window_ns: i64) -> i64 {
    t_ns - t_ns % window_ns.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A 10 µs window with nothing measured but its split source.
    fn window(source: Option<&str>) -> Window {
        Window {
            cluster: Arc::from("c"),
            node: Arc::from("n"),
            gpu_index: 0,
            gpu_uuid: Arc::from("GPU-0"),
            gpu_name: None,
            job_id: None,
            start_ns: 1_000,
            end_ns: 11_000,
            coverage: String::new(),
            split_source: source.map(str::to_string),
            compute_ns: None,
            comm_exposed_ns: None,
            memcpy_exposed_ns: None,
            idle_ns: None,
            comm_transfer_ns: None,
            sync_stall_ns: None,
            sync_stall_estimated: None,
            comm_ns: None,
            comm_overlapped_ns: None,
            overlap_ratio: None,
            idle_host_bound_ns: None,
            idle_launch_gap_ns: None,
            idle_io_blocked_ns: None,
            idle_no_process_ns: None,
            idle_other_ns: None,
            host_sync_blocked_ns: None,
            kernel_count: None,
            reported_utilization_ratio: None,
            reported_busy_ns: None,
            sm_active_ratio: None,
            tensor_active_ratio: None,
            dram_active_ratio: None,
            hollow_busy_ns: None,
            wasted_progress_ns: None,
            ghost_ns: None,
            model_flops: None,
            peak_flops_per_s: None,
            dtype: None,
            mfu: None,
            tensor_estimate: None,
        }
    }

    fn sum_of_leaves(g: &GpuTime) -> i64 {
        LEAVES.iter().map(|l| g.leaf(*l)).sum()
    }

    #[test]
    fn the_leaves_add_up_to_the_window_whatever_measured_it() {
        // Kernel records: compute 5000 (hollow 300 of it), comm_exposed 2000 (stall 500), memcpy 1000, idle 2000.
        let mut k = window(Some("kernels"));
        (k.compute_ns, k.comm_exposed_ns, k.memcpy_exposed_ns, k.idle_ns) =
            (Some(5000), Some(2000), Some(1000), Some(2000));
        (k.sync_stall_ns, k.sync_stall_estimated, k.hollow_busy_ns) = (Some(500), Some(false), Some(300));
        (k.idle_host_bound_ns, k.idle_launch_gap_ns, k.idle_io_blocked_ns, k.idle_no_process_ns, k.idle_other_ns) =
            (Some(500), Some(500), Some(0), Some(0), Some(1000));
        // NVML only: 60 % busy over 8 of 10 µs sampled, hollow 1000, 1200 ns idle without a process.
        let mut n = window(Some("nvml"));
        (n.reported_busy_ns, n.idle_ns, n.hollow_busy_ns, n.idle_no_process_ns, n.idle_other_ns) =
            (Some(4800), Some(3200), Some(1000), Some(1200), Some(2000));
        // Nothing measured.
        let none = window(None);
        for (w, busy) in [(&k, 8000), (&n, 4800), (&none, 0)] {
            let mut g = GpuTime::new();
            g.update(w, None);
            assert_eq!(sum_of_leaves(&g), 10_000, "{:?}", w.split_source);
            assert_eq!(g.group(Group::Busy) + g.group(Group::Ghost), busy);
        }
        let mut g = GpuTime::new();
        g.update(&k, None);
        assert_eq!((g.leaf(Leaf::ProductiveCompute), g.leaf(Leaf::CommTransfer), g.ghost_ns()), (4700, 1500, 800));
        // Wasted progress moves from productive compute, never below zero.
        g.add_wasted(1000);
        assert_eq!(
            (g.leaf(Leaf::ProductiveCompute), g.leaf(Leaf::WastedProgress), sum_of_leaves(&g)),
            (3700, 1000, 10_000)
        );
        g.add_wasted(1_000_000);
        assert_eq!((g.leaf(Leaf::ProductiveCompute), sum_of_leaves(&g)), (0, 10_000));
        // Stranded: ghost + idle of a held GPU.
        let mut h = GpuTime::new();
        h.update(&n, None);
        assert_eq!(h.stranded_ns(), 1000 + 2000);
        assert_eq!(h.split_source(), "nvml");
    }

    #[test]
    fn an_estimated_stall_gives_way_to_the_exact_one_capped_by_exposed_comm() {
        let mut w = window(Some("kernels"));
        (w.compute_ns, w.comm_exposed_ns, w.idle_ns, w.idle_other_ns) =
            (Some(6000), Some(3000), Some(1000), Some(1000));
        (w.memcpy_exposed_ns, w.sync_stall_ns, w.sync_stall_estimated) = (Some(0), Some(2000), Some(true));
        let run = |w: &Window, exact| {
            let mut g = GpuTime::new();
            g.update(w, exact);
            (g.leaf(Leaf::SyncStall), g.leaf(Leaf::CommTransfer), g.int("sync_stall_estimated_ns"), sum_of_leaves(&g))
        };
        assert_eq!(run(&w, None), (2000, 1000, 2000, 10_000));
        assert_eq!(run(&w, Some(700)), (700, 2300, 0, 10_000));
        assert_eq!(run(&w, Some(9000)), (3000, 0, 0, 10_000));
        // An exact window keeps its own figure.
        w.sync_stall_estimated = Some(false);
        assert_eq!(run(&w, Some(700)).0, 2000);
        // Unknown split: counted as such, never as transfer.
        (w.sync_stall_ns, w.sync_stall_estimated) = (None, None);
        let mut g = GpuTime::new();
        g.update(&w, None);
        assert_eq!((g.leaf(Leaf::CommSplitUnknown), g.leaf(Leaf::CommTransfer), g.leaf(Leaf::SyncStall)), (3000, 0, 0));
    }

    #[test]
    fn merging_equals_updating_with_everything() {
        let mut a = window(Some("kernels"));
        (a.compute_ns, a.idle_ns, a.idle_other_ns, a.model_flops, a.peak_flops_per_s) =
            (Some(4000), Some(6000), Some(6000), Some(2e9), Some(1e15));
        let mut b = window(Some("nvml"));
        (b.reported_busy_ns, b.idle_ns, b.idle_other_ns, b.gpu_uuid) =
            (Some(5000), Some(5000), Some(5000), Arc::from("x"));
        let mut all = GpuTime::new();
        all.update(&a, None);
        all.update(&b, None);
        let (mut x, mut y) = (GpuTime::new(), GpuTime::new());
        x.update(&a, None);
        y.update(&b, None);
        x.merge(&y);
        assert_eq!(x, all);
        // A state read back column by column merges to the same.
        let state = all.state();
        let mut z = GpuTime::new();
        z.merge_state(|name, _| state.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).expect("column"));
        assert_eq!(z, all);
        assert_eq!(all.mfu(), Some(2e9 / (1e15 * 10_000.0 * 1e-9)));
    }

    #[test]
    fn the_sql_names_every_state_column_once() {
        let sql = gpu_time_sql();
        for c in STATE {
            let n =
                sql.matches(&format!(") AS {},", c.name)).count() + sql.matches(&format!(") AS {}\n", c.name)).count();
            assert_eq!(n, 1, "{}", c.name);
        }
        assert!(!sql.contains(" / "), "DuckDB's `/` divides floats, DataFusion's integers: never divide");
    }
}
