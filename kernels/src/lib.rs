//! Batch reductions of DESIGN §7, with a GPU backend (CUDA C compiled at run
//! time by NVRTC through `cudarc`) and a CPU backend that returns the same
//! results.
//!
//! Every operation works on rows grouped by *segment* (for example one GPU ×
//! one window): segment `s` owns rows `offsets[s]..offsets[s + 1]`, so
//! `offsets.len() == segments + 1`, `offsets[0] == 0` and the last offset is
//! the row count. Within a segment rows may come in any order.
//!
//! # Operations
//!
//! | method | result per segment / group |
//! |---|---|
//! | [`Reducer::stats`] | count, wrapping sum, min, max |
//! | [`Reducer::union_length`] | `|∪ [start, end)|` |
//! | [`Reducer::intersection_length`] | `|(∪a) ∩ (∪b)|` |
//! | [`Reducer::histogram`] | log-bucketed counts ([`LogBuckets`]); [`Histogram::quantile`] |
//! | [`Reducer::max_per_group`] | latest start per collective instance |
//! | [`Reducer::sync_stall`] | DESIGN §4 stall of every row |
//!
//! # Exactness
//!
//! Integer results (nanosecond lengths, counts, sums, maxima, bucket counts)
//! are exact and identical on both backends: both use integer arithmetic
//! only, and sums wrap modulo 2⁶⁴ the same way (a sum only wraps when the true
//! value does not fit an `i64`). The only floating-point result is
//! [`Histogram::quantile`], computed on the host from exact counts; its error
//! bound is documented there.
//!
//! # Backend selection
//!
//! `kernels.backend = auto | gpu | cpu` ([`Backend`], [`ReducerConfig`]).
//! `auto` runs a batch on the GPU only when one is usable and the batch has at
//! least [`gpu::AUTO_MIN_ROWS`] rows (provisional, see there); otherwise on
//! the CPU, and a missing GPU is logged once, with the reason, when the
//! reducer is made. Probing never panics.
//!
//! # Device memory
//!
//! One call uses at most about [`gpu::DEFAULT_DEVICE_BUDGET`] of device memory
//! ([`Reducer::with_device_budget`]): inputs go over in chunks. Unions and
//! intersections keep whole segments in a chunk; a single segment too large
//! for the budget is computed on the CPU (logged at debug level).
//!
//! # Checking the GPU path
//!
//! On a GPU machine: `cargo test --release -p strand-kernels --test
//! gpu_equals_cpu -- --ignored` and `bench/kernels_bench.sh`, or all of it
//! prebuilt in one run: `bench/gpu/validate.sh` (docs/gpu-validation.md).

use std::str::FromStr;

use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray};

pub mod cpu;
pub mod gpu;

/// Which implementation runs the reductions (`kernels.backend` in config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The GPU when one is usable and the batch is large enough to pay for
    /// the transfer; otherwise the CPU.
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Backend::Auto),
            "gpu" => Ok(Backend::Gpu),
            "cpu" => Ok(Backend::Cpu),
            other => Err(format!("unknown kernels backend {other:?}; expected auto, gpu or cpu")),
        }
    }
}

/// Why an input was refused or the GPU could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelsError {
    #[error("bad input: {0}")]
    Input(String),
    #[error("GPU backend unavailable: {0}")]
    GpuUnavailable(String),
    #[error("GPU error: {0}")]
    Gpu(String),
}

/// Intervals `[start, end)` grouped by segment. Empty intervals (`end <= start`)
/// contribute nothing.
#[derive(Debug, Clone, Copy)]
pub struct Intervals<'a> {
    pub offsets: &'a [usize],
    pub start: &'a [i64],
    pub end: &'a [i64],
}

/// Values grouped by segment.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    pub offsets: &'a [usize],
    pub values: &'a [i64],
}

fn check_offsets(offsets: &[usize], rows: usize) -> Result<usize, KernelsError> {
    let Some((&first, rest)) = offsets.split_first() else {
        return Err(KernelsError::Input("offsets must hold at least one element (0)".into()));
    };
    if first != 0 {
        return Err(KernelsError::Input(format!("offsets[0] must be 0, got {first}")));
    }
    let mut prev = first;
    for (i, &o) in rest.iter().enumerate() {
        if o < prev {
            return Err(KernelsError::Input(format!("offsets must not decrease: offsets[{}] = {o} < {prev}", i + 1)));
        }
        prev = o;
    }
    if prev != rows {
        return Err(KernelsError::Input(format!("last offset is {prev} but there are {rows} rows")));
    }
    Ok(offsets.len() - 1)
}

impl Intervals<'_> {
    /// Checks shape; returns the number of segments.
    pub fn validate(&self) -> Result<usize, KernelsError> {
        if self.start.len() != self.end.len() {
            return Err(KernelsError::Input(format!(
                "start has {} rows but end has {}",
                self.start.len(),
                self.end.len()
            )));
        }
        check_offsets(self.offsets, self.start.len())
    }
}

/// Refuses an Arrow column with nulls: a reduction cannot guess a missing timestamp.
fn no_nulls(name: &str, a: &dyn Array) -> Result<(), KernelsError> {
    match a.null_count() {
        0 => Ok(()),
        n => Err(KernelsError::Input(format!("column {name} has {n} nulls; filter or fill them first"))),
    }
}

impl<'a> Intervals<'a> {
    /// Borrows Arrow columns of i64 nanoseconds (`Int64`, `Timestamp(ns)` or
    /// `Duration(ns)` arrays) without copying; refuses nulls and bad shapes.
    pub fn from_arrow<S, E>(
        offsets: &'a [usize],
        start: &'a PrimitiveArray<S>,
        end: &'a PrimitiveArray<E>,
    ) -> Result<Self, KernelsError>
    where
        S: ArrowPrimitiveType<Native = i64>,
        E: ArrowPrimitiveType<Native = i64>,
    {
        no_nulls("start", start)?;
        no_nulls("end", end)?;
        let iv = Intervals { offsets, start: start.values(), end: end.values() };
        iv.validate()?;
        Ok(iv)
    }
}

impl<'a> Values<'a> {
    /// Borrows an Arrow column of i64 values (`Int64`, `Timestamp(ns)`,
    /// `Duration(ns)`) without copying; refuses nulls and bad shapes.
    pub fn from_arrow<T: ArrowPrimitiveType<Native = i64>>(
        offsets: &'a [usize],
        values: &'a PrimitiveArray<T>,
    ) -> Result<Self, KernelsError> {
        no_nulls("values", values)?;
        let v = Values { offsets, values: values.values() };
        v.validate()?;
        Ok(v)
    }
}

/// Offsets of the runs of equal keys, for rows already grouped by segment
/// (e.g. sorted by GPU and window): `[a, a, b, c, c]` gives `[0, 2, 3, 5]`.
pub fn segment_offsets<K: PartialEq>(keys: &[K]) -> Vec<usize> {
    let mut offsets = vec![0];
    for i in 1..keys.len() {
        if keys[i] != keys[i - 1] {
            offsets.push(i);
        }
    }
    if !keys.is_empty() {
        offsets.push(keys.len());
    }
    offsets
}

impl Values<'_> {
    /// Checks shape; returns the number of segments.
    pub fn validate(&self) -> Result<usize, KernelsError> {
        check_offsets(self.offsets, self.values.len())
    }
}

/// Sum, minimum, maximum and count of one segment. `min`/`max` are `None`
/// for an empty segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub count: u64,
    pub sum: i64,
    pub min: Option<i64>,
    pub max: Option<i64>,
}

/// Log-bucketed histogram layout with exact integer bucketing (the same on
/// CPU and GPU): values `<= 0` go to bucket 0; a value `v >= 1` with highest
/// set bit `e` goes to an exact bucket when `v < 2^sub_bits`, otherwise to
/// bucket `(e - sub_bits + 1) * 2^sub_bits + m`, where `m` are the `sub_bits`
/// bits after the leading one. Relative bucket width is at most `2^-sub_bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBuckets {
    pub sub_bits: u32,
}

impl LogBuckets {
    /// 16 sub-buckets per power of two: ±3.2% around the bucket midpoint.
    pub const DEFAULT: LogBuckets = LogBuckets { sub_bits: 4 };

    pub fn new(sub_bits: u32) -> Result<Self, KernelsError> {
        if sub_bits > 8 {
            return Err(KernelsError::Input(format!("sub_bits must be 0..=8, got {sub_bits}")));
        }
        Ok(Self { sub_bits })
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        let sub = 1usize << self.sub_bits;
        (64 - self.sub_bits as usize) * sub
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bucket of `v`. The GPU computes the same (`log_bucket` in kernels.cu).
    pub fn bucket(&self, v: i64) -> usize {
        if v <= 0 {
            return 0;
        }
        let v = v as u64;
        let e = 63 - v.leading_zeros();
        if e < self.sub_bits {
            return v as usize;
        }
        let m = (v >> (e - self.sub_bits)) & ((1u64 << self.sub_bits) - 1);
        ((e - self.sub_bits + 1) as usize) << self.sub_bits | m as usize
    }

    /// Smallest value in bucket `b` (bucket 0 holds every value `<= 0`: its bound is 0).
    pub fn lower_bound(&self, b: usize) -> i64 {
        let sub = 1usize << self.sub_bits;
        if b < sub {
            return b as i64;
        }
        let e = (b >> self.sub_bits) as u32 + self.sub_bits - 1;
        let m = (b & (sub - 1)) as u64;
        ((1u64 << e) | (m << (e - self.sub_bits))) as i64
    }

    /// One past the largest value in bucket `b`.
    pub fn upper_bound(&self, b: usize) -> i64 {
        if b + 1 >= self.len() { i64::MAX } else { self.lower_bound(b + 1) }
    }
}

/// Per-segment bucket counts; `counts[s * buckets.len() + b]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    pub buckets: LogBuckets,
    pub segments: usize,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn segment(&self, s: usize) -> &[u64] {
        let n = self.buckets.len();
        &self.counts[s * n..(s + 1) * n]
    }

    /// The `q`-quantile (0..=1) of segment `s`, as the midpoint of the bucket
    /// holding it: within `2^-(sub_bits+1)` relative error of the true value
    /// for values above `2^sub_bits`, exact below. `None` when the segment is empty.
    pub fn quantile(&self, s: usize, q: f64) -> Option<f64> {
        let counts = self.segment(s);
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, &c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let lo = self.buckets.lower_bound(b) as f64;
                let hi = self.buckets.upper_bound(b) as f64;
                return Some(if hi - lo <= 1.0 { lo } else { (lo + hi - 1.0) / 2.0 });
            }
        }
        None
    }
}

/// Runs reductions on the chosen backend.
///
/// With [`Backend::Auto`] a batch runs on the GPU when one is usable and the
/// batch has at least [`Reducer::min_gpu_rows`] rows; if the GPU then fails,
/// the batch is redone on the CPU and the failure logged. The GPU is looked
/// for at the first batch that large (probing the driver and NVRTC costs a few
/// milliseconds, more than a small postmortem's reductions). With
/// [`Backend::Gpu`] the GPU is opened at once, every batch runs there and
/// failures are returned.
pub struct Reducer {
    requested: Backend,
    /// Set at construction (`Cpu`, `Gpu`) or at the first large batch (`Auto`).
    gpu: std::sync::OnceLock<Option<gpu::Gpu>>,
    /// Device memory cap, applied when the GPU is opened.
    budget: Option<usize>,
    /// Smallest batch (rows) for which `Auto` uses the GPU.
    pub min_gpu_rows: usize,
    /// Threads of the CPU backend (1 unless [`Reducer::with_cpu_threads`]).
    cpu_threads: usize,
}

impl Reducer {
    /// A reducer that always runs on the CPU.
    pub fn cpu() -> Self {
        Self {
            requested: Backend::Cpu,
            gpu: std::sync::OnceLock::from(None),
            budget: None,
            min_gpu_rows: usize::MAX,
            cpu_threads: 1,
        }
    }

    /// `Gpu` fails when no GPU is usable; `Auto` falls back to the CPU (at
    /// its first large batch) and logs one line saying why.
    pub fn new(backend: Backend) -> Result<Self, KernelsError> {
        match backend {
            Backend::Cpu => Ok(Self::cpu()),
            Backend::Gpu => {
                let g = gpu::Gpu::open()?;
                tracing::info!("kernels: GPU backend on {}", g.description());
                Ok(Self {
                    requested: backend,
                    gpu: std::sync::OnceLock::from(Some(g)),
                    budget: None,
                    min_gpu_rows: 0,
                    cpu_threads: 1,
                })
            }
            Backend::Auto => Ok(Self {
                requested: backend,
                gpu: std::sync::OnceLock::new(),
                budget: None,
                min_gpu_rows: gpu::AUTO_MIN_ROWS,
                cpu_threads: 1,
            }),
        }
    }

    /// The GPU, opening it on first use under `Auto`.
    fn gpu(&self) -> Option<&gpu::Gpu> {
        self.gpu
            .get_or_init(|| match gpu::Gpu::open() {
                Ok(g) => {
                    let g = match self.budget {
                        Some(b) => g.with_budget(b),
                        None => g,
                    };
                    tracing::info!(
                        "kernels: GPU backend on {} for batches of at least {} rows, CPU below",
                        g.description(),
                        self.min_gpu_rows
                    );
                    Some(g)
                }
                Err(e) => {
                    tracing::info!("kernels: using the CPU backend ({e})");
                    None
                }
            })
            .as_ref()
    }

    /// A reducer from the `kernels` config section.
    pub fn from_config(config: &ReducerConfig) -> Result<Self, KernelsError> {
        let mut r = Self::new(config.backend)?;
        if let Some(rows) = config.min_gpu_rows {
            r = r.with_min_gpu_rows(rows);
        }
        if let Some(bytes) = config.device_budget_bytes {
            r = r.with_device_budget(bytes);
        }
        if let Some(n) = config.cpu_threads {
            r = r.with_cpu_threads(n);
        }
        Ok(r)
    }

    /// Overrides the `Auto` threshold (rows); no effect on the CPU backend.
    pub fn with_min_gpu_rows(mut self, rows: usize) -> Self {
        if self.requested != Backend::Cpu {
            self.min_gpu_rows = rows;
        }
        self
    }

    /// Caps the device memory one call uses (default
    /// [`gpu::DEFAULT_DEVICE_BUDGET`]); larger inputs are processed in chunks.
    pub fn with_device_budget(mut self, bytes: usize) -> Self {
        self.budget = Some(bytes);
        // An opened GPU takes it now; an unopened one when it opens.
        if let Some(slot) = self.gpu.get_mut() {
            *slot = slot.take().map(|g| g.with_budget(bytes));
        }
        self
    }

    /// Lets the CPU backend split segment-keyed operations (stats, unions,
    /// intersections, histograms) over `threads` threads; 0 means every
    /// hardware thread. The default is 1: the agent shares its node with the
    /// workload, while postmortems and fleet reports may want every core.
    /// Results do not depend on the thread count.
    pub fn with_cpu_threads(mut self, threads: usize) -> Self {
        self.cpu_threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        self
    }

    pub fn cpu_threads(&self) -> usize {
        self.cpu_threads
    }

    pub fn requested(&self) -> Backend {
        self.requested
    }

    /// The GPU in use (model, architecture), if any (under `Auto`, this looks for it).
    pub fn gpu_description(&self) -> Option<&str> {
        self.gpu().map(|g| g.description())
    }

    /// The GPU, when this batch size should run there.
    fn gpu_for(&self, rows: usize) -> Option<&gpu::Gpu> {
        if rows < self.min_gpu_rows {
            return None;
        }
        self.gpu()
    }

    /// Whether a batch of `rows` rows runs on the GPU.
    pub fn uses_gpu(&self, rows: usize) -> bool {
        self.gpu_for(rows).is_some()
    }

    /// Runs `on_gpu` when this batch belongs there, else `on_cpu`. Under
    /// `Auto`, a GPU failure is logged and the batch redone on the CPU.
    fn run<T>(
        &self,
        rows: usize,
        on_gpu: impl FnOnce(&gpu::Gpu) -> Result<T, KernelsError>,
        on_cpu: impl FnOnce() -> T,
    ) -> Result<T, KernelsError> {
        let Some(g) = self.gpu_for(rows) else { return Ok(on_cpu()) };
        match on_gpu(g) {
            Err(e) if self.requested == Backend::Auto => {
                tracing::warn!("kernels: GPU reduction of {rows} rows failed, redone on the CPU: {e}");
                Ok(on_cpu())
            }
            r => r,
        }
    }

    pub fn stats(&self, v: Values) -> Result<Vec<Stats>, KernelsError> {
        v.validate()?;
        let t = self.cpu_threads;
        self.run(
            v.values.len(),
            |g| g.stats(v),
            || cpu::by_segments(v.offsets, t, |r| cpu::stats(Values { offsets: &v.offsets[r.start..=r.end], ..v })),
        )
    }

    /// Length of the union of each segment's intervals.
    pub fn union_length(&self, iv: Intervals) -> Result<Vec<i64>, KernelsError> {
        iv.validate()?;
        let t = self.cpu_threads;
        self.run(
            iv.start.len(),
            |g| g.union_length(iv),
            || {
                cpu::by_segments(iv.offsets, t, |r| {
                    cpu::union_length(Intervals { offsets: &iv.offsets[r.start..=r.end], ..iv })
                })
            },
        )
    }

    /// Length of `(∪a) ∩ (∪b)` per segment; `a` and `b` have the same segments.
    pub fn intersection_length(&self, a: Intervals, b: Intervals) -> Result<Vec<i64>, KernelsError> {
        let (na, nb) = (a.validate()?, b.validate()?);
        if na != nb {
            return Err(KernelsError::Input(format!("a has {na} segments but b has {nb}")));
        }
        let t = self.cpu_threads;
        let on_cpu = || {
            // Balance threads by the rows of both sides.
            let both: Vec<usize> =
                if t > 1 { a.offsets.iter().zip(b.offsets).map(|(x, y)| x + y).collect() } else { vec![0; na + 1] };
            cpu::by_segments(&both, t, |r| {
                let (ao, bo) = (&a.offsets[r.start..=r.end], &b.offsets[r.start..=r.end]);
                cpu::intersection_length(Intervals { offsets: ao, ..a }, Intervals { offsets: bo, ..b })
            })
        };
        self.run(a.start.len() + b.start.len(), |g| g.intersection_length(a, b), on_cpu)
    }

    pub fn histogram(&self, v: Values, buckets: LogBuckets) -> Result<Histogram, KernelsError> {
        v.validate()?;
        let t = self.cpu_threads;
        self.run(
            v.values.len(),
            |g| g.histogram(v, buckets),
            || Histogram {
                buckets,
                segments: v.offsets.len() - 1,
                counts: cpu::by_segments(v.offsets, t, |r| {
                    cpu::histogram(Values { offsets: &v.offsets[r.start..=r.end], ..v }, buckets).counts
                }),
            },
        )
    }

    /// Maximum of `values` per group (`group[i] < groups`): the latest start of
    /// each collective instance across its ranks. `None` for an empty group.
    pub fn max_per_group(
        &self,
        group: &[u32],
        values: &[i64],
        groups: usize,
    ) -> Result<Vec<Option<i64>>, KernelsError> {
        check_groups(group, values.len(), groups)?;
        self.run(values.len(), |g| g.max_per_group(group, values, groups), || cpu::max_per_group(group, values, groups))
    }

    /// DESIGN §4 sync stall of every row: `min(duration, max start of its group − start)`.
    pub fn sync_stall(
        &self,
        group: &[u32],
        start: &[i64],
        duration: &[i64],
        groups: usize,
    ) -> Result<Vec<i64>, KernelsError> {
        check_groups(group, start.len(), groups)?;
        if duration.len() != start.len() {
            return Err(KernelsError::Input(format!(
                "start has {} rows but duration has {}",
                start.len(),
                duration.len()
            )));
        }
        self.run(
            start.len(),
            |g| g.sync_stall(group, start, duration, groups),
            || cpu::sync_stall(group, start, duration, groups),
        )
    }
}

/// The `kernels` section of the agent's and collector's config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReducerConfig {
    /// `auto | gpu | cpu` (see [`Backend`]'s `FromStr`).
    pub backend: Backend,
    /// Overrides [`gpu::AUTO_MIN_ROWS`].
    pub min_gpu_rows: Option<usize>,
    /// Overrides [`gpu::DEFAULT_DEVICE_BUDGET`].
    pub device_budget_bytes: Option<usize>,
    /// Threads of the CPU backend; 0 = every hardware thread (default 1).
    pub cpu_threads: Option<usize>,
}

fn check_groups(group: &[u32], rows: usize, groups: usize) -> Result<(), KernelsError> {
    if group.len() != rows {
        return Err(KernelsError::Input(format!("group has {} rows but values have {rows}", group.len())));
    }
    if let Some((i, g)) = group.iter().enumerate().find(|(_, g)| **g as usize >= groups) {
        return Err(KernelsError::Input(format!("group[{i}] = {g} is not below the group count {groups}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small batches under `Auto` never pay for the driver probe; the first
    /// batch at the threshold looks for the GPU, once.
    #[test]
    fn auto_looks_for_the_gpu_only_at_the_first_large_batch() {
        let r = Reducer::new(Backend::Auto).unwrap();
        let iv = Intervals { offsets: &[0, 2], start: &[0, 5], end: &[10, 20] };
        assert_eq!(r.union_length(iv).unwrap(), vec![20]);
        assert!(!r.uses_gpu(r.min_gpu_rows - 1));
        assert!(r.gpu.get().is_none(), "a small batch probed the GPU");
        let found = r.uses_gpu(r.min_gpu_rows);
        assert!(r.gpu.get().is_some(), "a large batch did not look for the GPU");
        assert_eq!(found, r.gpu_description().is_some());
        assert!(Reducer::cpu().gpu.get().is_some_and(|g| g.is_none()), "the CPU reducer never probes");
        let cpu = Reducer::cpu().with_device_budget(1 << 20);
        assert!(cpu.gpu.get().is_some_and(|g| g.is_none()), "a device budget made the CPU reducer probe");
    }

    #[test]
    fn union_and_intersection_of_a_known_timeline() {
        // Segment 0: [0,10) [5,15) nested [6,7) touching [15,20) empty [30,30) → union 20.
        // Segment 1: empty segment.
        // Segment 2: single interval.
        let offsets = [0, 5, 5, 6];
        let start = [0, 5, 6, 15, 30, 100];
        let end = [10, 15, 7, 20, 30, 101];
        let r = Reducer::cpu();
        let a = Intervals { offsets: &offsets, start: &start, end: &end };
        assert_eq!(r.union_length(a).unwrap(), vec![20, 0, 1]);
        let bo = [0, 1, 2, 2];
        let b = Intervals { offsets: &bo, start: &[8, 0], end: &[16, 5] };
        assert_eq!(r.intersection_length(a, b).unwrap(), vec![8, 0, 0]);
    }

    #[test]
    fn sync_stall_waits_for_the_last_rank_but_never_longer_than_the_kernel() {
        let r = Reducer::cpu();
        // One collective, three ranks start at 0, 40, 100; durations 200, 200, 100.
        let stall = r.sync_stall(&[0, 0, 0], &[0, 40, 100], &[200, 30, 100], 1).unwrap();
        assert_eq!(stall, vec![100, 30, 0]);
    }

    #[test]
    fn bad_shapes_are_refused_with_a_reason() {
        let r = Reducer::cpu();
        let e = r.union_length(Intervals { offsets: &[0, 3], start: &[1, 2], end: &[3, 4] }).unwrap_err();
        assert_eq!(e.to_string(), "bad input: last offset is 3 but there are 2 rows");
        let e = r.max_per_group(&[0, 5], &[1, 2], 2).unwrap_err();
        assert_eq!(e.to_string(), "bad input: group[1] = 5 is not below the group count 2");
    }

    #[test]
    fn a_reducer_can_be_shared_between_threads() {
        // Compile-time guard: the agent and the collector keep one reducer in an Arc.
        fn shareable<T: Send + Sync>() {}
        shareable::<Reducer>();
    }

    #[test]
    fn arrow_columns_are_borrowed_and_nulls_refused() {
        use arrow_array::{Int64Array, TimestampNanosecondArray};
        let start = TimestampNanosecondArray::from(vec![0, 5, 100]);
        let end = Int64Array::from(vec![10, 20, 101]);
        let offsets = segment_offsets(&["gpu0", "gpu0", "gpu1"]);
        assert_eq!(offsets, vec![0, 2, 3]);
        let iv = Intervals::from_arrow(&offsets, &start, &end).unwrap();
        assert_eq!(Reducer::cpu().union_length(iv).unwrap(), vec![20, 1]);
        let with_null = Int64Array::from(vec![Some(1), None, Some(3)]);
        let e = Values::from_arrow(&offsets, &with_null).unwrap_err();
        assert_eq!(e.to_string(), "bad input: column values has 1 nulls; filter or fill them first");
        let e = Values::from_arrow(&[0, 2], &end).unwrap_err();
        assert_eq!(e.to_string(), "bad input: last offset is 2 but there are 3 rows");
        assert_eq!(segment_offsets::<u32>(&[]), vec![0]);
    }

    #[test]
    fn log_buckets_bound_every_value() {
        let b = LogBuckets::DEFAULT;
        for v in [1i64, 2, 15, 16, 17, 31, 32, 1000, 123_456_789, i64::MAX] {
            let k = b.bucket(v);
            assert!(b.lower_bound(k) <= v && v < b.upper_bound(k) || v == i64::MAX, "{v} in bucket {k}");
        }
        assert_eq!(b.bucket(0), 0);
        assert_eq!(b.bucket(-5), 0);
        assert!(b.bucket(i64::MAX) < b.len());
    }
}
