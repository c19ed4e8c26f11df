//! PyTorch profiler (Kineto) JSON traces → strand rows (DESIGN §5.6).
//!
//! What is taken from a trace (`schemaVersion` 1):
//!
//! | trace events | strand table |
//! |---|---|
//! | `kernel`, `gpu_memcpy`, `gpu_memset` (older PyTorch: `Kernel`, `Memcpy`, `Memset`) | `kernel_events`, with the launching `cuda_runtime` / `cuda_driver` call (older: `Runtime`) joined by `correlation` (`launch_ns`, `launch_tid`, `pid`) |
//! | NCCL kernels carrying `Collective name` etc. | `nccl_calls` (process group name as `comm_name`, rank from `distributedInfo` and `Process Group Ranks`, `seq` from `Seq` or the order of the group's collectives) |
//! | `cudaStreamSynchronize`, `cudaDeviceSynchronize`, `cudaEventSynchronize` and the driver equivalents | `cuda_sync_calls` |
//! | `ProfilerStep#N` annotations (`user_annotation`, `cpu_op`, older `Operator`) | `steps` (`source = "kineto"`) |
//!
//! Not taken: `cuda_sync` events drawn on GPU lanes (they are the host's
//! synchronize calls, already taken from the runtime events, not GPU work),
//! `gpu_user_annotation` spans, flows, CPU operators.
//!
//! Times: `ts`/`dur` are microseconds with up to three decimals; when the
//! trace has `baseTimeNanoseconds`, `ts` counts from it. Both become UTC
//! nanoseconds (`base + round(ts × 1000)`), exact to 1 ns for every trace
//! Kineto writes.
//!
//! The trace is parsed as a stream (`traceEvents` is never held as JSON);
//! the GPU and launch records of one trace are held until the end of the file
//! because the metadata that dates and ranks them may come after them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use strand_schemas::category::{Category, classify_marked};
use strand_schemas::comm_kernels::CommKernels;
use strand_schemas::{CudaSyncCall, KernelEvent, NcclCall, Step};

#[doc(hidden)] // Public for the fuzz target (fuzz/fuzz_targets/json_split.rs).
pub mod json_split;

use json_split::{Pos, SplitError, Splitter};

/// Kineto `schemaVersion` values this importer reads.
pub const SUPPORTED_SCHEMA_VERSIONS: &[i64] = &[1];

/// The labels and time base shared by a trace's kernel rows.
#[derive(Debug, Default)]
struct RowContext {
    cluster: Arc<str>,
    node: Arc<str>,
    job: Option<String>,
    /// Nanoseconds added to the trace's times.
    base_ns: i64,
    /// The process of records without a launch.
    main_pid: i32,
}

impl KinetoTrace {
    /// How many `kernel_events` rows the trace has.
    pub fn kernel_count(&self) -> usize {
        self.gpu.len()
    }

    /// Earliest start and latest end of the kernel rows.
    pub fn kernel_span(&self) -> Option<(i64, i64)> {
        let lo = self.gpu.iter().map(|g| g.rec.ts).min()?;
        let hi = self.gpu.iter().map(|g| g.rec.ts + g.rec.dur).max()?;
        Some((self.row_ctx.base_ns + lo, self.row_ctx.base_ns + hi))
    }

    /// Every `kernel_events` row.
    pub fn kernels(&self) -> Vec<KernelEvent> {
        let mut rows = Vec::new();
        self.kernels_into(0..self.gpu.len(), &mut rows);
        rows
    }

    /// Rows `range` (in record order) into `out`, which is cleared first, so
    /// that a caller can go through a big trace with one small buffer.
    pub fn kernels_into(&self, range: std::ops::Range<usize>, out: &mut Vec<KernelEvent>) {
        out.clear();
        out.reserve(range.len());
        let x = &self.row_ctx;
        for (r, launch) in self.gpu[range.clone()].iter().zip(&self.gpu_launch[range]) {
            let GpuRec { rec: g, name, coll, .. } = r;
            let start = x.base_ns + g.ts;
            let kind = g.kind.as_str();
            out.push(KernelEvent {
                cluster: x.cluster.clone(),
                node: x.node.clone(),
                pid: launch.map(|l| l.pid).unwrap_or(x.main_pid),
                job_id: x.job.clone(),
                device_id: g.device,
                gpu_uuid: None,
                gpu_index: Some(g.device),
                start_ns: start,
                end_ns: start + g.dur,
                context_id: g.context,
                stream_id: g.stream,
                correlation_id: g.correlation.unwrap_or(0),
                kind: kind.to_string(),
                category: r.category().as_str().to_string(),
                name: name.clone(),
                grid_x: g.grid.map(|d| d[0]),
                grid_y: g.grid.map(|d| d[1]),
                grid_z: g.grid.map(|d| d[2]),
                block_x: g.block.map(|d| d[0]),
                block_y: g.block.map(|d| d[1]),
                block_z: g.block.map(|d| d[2]),
                bytes: if g.kind == GpuKind::Kernel { None } else { g.bytes },
                copy_kind: (g.kind == GpuKind::Memcpy).then(|| copy_kind(name)).flatten(),
                launch_ns: launch.map(|l| x.base_ns + l.ts),
                launch_tid: launch.map(|l| l.tid),
                collective: coll.as_ref().map(|m| m.op.clone()),
                source: "kineto".into(),
            });
        }
    }
}

/// Why a trace could not be imported. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum KinetoError {
    #[error("{file}: cannot open: {source}")]
    Open { file: String, source: std::io::Error },
    #[error(
        "{file}: truncated: the trace ends before the JSON does (line {line}, column {column}); was the file copied while the profiler was still writing it?"
    )]
    Truncated { file: String, line: usize, column: usize },
    #[error(
        "{file}: truncated: the gzip stream ends early; was the file copied while the profiler was still writing it?"
    )]
    TruncatedGzip { file: String },
    #[error("{file}: cannot decompress: {detail}")]
    Decompress { file: String, detail: String },
    #[error("{file}: malformed JSON at line {line}, column {column}: {detail}")]
    Json { file: String, line: usize, column: usize, detail: String },
    #[error("{file}: not a Kineto trace: {detail}")]
    NotKineto { file: String, detail: String },
    #[error("{file}: Kineto schemaVersion {found} is not supported (strand reads version {supported})")]
    Version { file: String, found: String, supported: String },
    #[error("{file}: traceEvents[{index}] ({cat} {name:?}): {detail}")]
    Event { file: String, index: usize, cat: String, name: String, detail: String },
    #[error(
        "{file}: {event}: ts {ts} ns + dur {dur} ns after the base time {base} ns is not a time (past the year 2262 or before 1677); is `ts` or `baseTimeNanoseconds` damaged?"
    )]
    Time { file: String, event: String, base: i64, ts: i64, dur: i64 },
    #[error(
        "{file}: the JSON value at line {line}, column {column} is longer than {limit} bytes; strand refuses it rather than hold it in memory (raise --max-json-value if the trace is genuine)"
    )]
    ValueTooLarge { file: String, line: usize, column: usize, limit: usize },
}

/// How imported rows are labelled.
#[derive(Debug, Clone, Default)]
pub struct KinetoOptions {
    pub cluster: String,
    /// Node name; default the trace's file name without `.json[.gz]` (Kineto
    /// names files after the host and process), so traces never collide.
    pub node: Option<String>,
    pub job_id: Option<String>,
    /// Keep only what Holistic Trace Analysis analyses: GPU records whose
    /// launching CPU call is in the trace and, when there are two or more
    /// profiler steps, was made before the last step ended. By default
    /// strand keeps every GPU record (the GPU was busy either way). On one
    /// trace the trace is the analysed set; for several, read them without
    /// and call [`KinetoTrace::apply_hta_scope`] with the set's step count.
    pub hta_scope: bool,
    /// Which kernels are communication (the built-in table and the user's patterns).
    pub comm_kernels: Arc<CommKernels>,
    /// The longest single JSON value (one event, one top-level value) read;
    /// a longer one is an error. `None`: [`json_split::DEFAULT_MAX_VALUE`].
    pub max_value_bytes: Option<usize>,
}

/// The node a trace's rows are filed under when none is given: its file
/// name without `.json[.gz]` (Kineto names files after host and process).
pub fn node_name(path: &Path) -> String {
    let name = path.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    name.trim_end_matches(".gz").trim_end_matches(".json").to_string()
}

/// The rows of one trace, and what it says about itself.
#[derive(Debug, Default)]
pub struct KinetoTrace {
    pub file: PathBuf,
    pub node: String,
    pub rank: Option<i32>,
    pub world_size: Option<i32>,
    /// CUDA device → product name (`deviceProperties`).
    pub gpu_names: BTreeMap<i32, String>,
    /// CUDA devices with GPU records.
    pub devices: Vec<i32>,
    /// The `kernel_events` rows, kept compact: [`KinetoTrace::kernels`] and
    /// [`KinetoTrace::kernels_into`] build them (a row is several times the
    /// size of the record it comes from).
    gpu: Vec<GpuRec>,
    /// The launch of each record of `gpu`.
    gpu_launch: Vec<Option<Launch>>,
    /// What every row carries.
    row_ctx: RowContext,
    pub nccl: Vec<NcclCall>,
    pub syncs: Vec<CudaSyncCall>,
    pub steps: Vec<Step>,
    /// GPU records dropped because their duration was negative.
    pub skipped_events: u64,
    /// GPU records left out by `hta_scope`.
    pub out_of_scope: u64,
    /// Distinct `ProfilerStep#` numbers of the trace.
    pub step_names: Vec<i64>,
    /// End of the trace's last profiler step (trace time).
    last_step_end: Option<i64>,
}

// ---------------------------------------------------------------------------
// Lenient scalar types: Kineto writes some fields as numbers in one version
// and strings in another; a field of an unexpected shape reads as absent.

#[derive(Debug, Default, Clone, Copy)]
struct LaxI64(Option<i64>);

impl<'de> Deserialize<'de> for LaxI64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LaxI64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E>(self, v: i64) -> Result<LaxI64, E> {
                Ok(LaxI64(Some(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<LaxI64, E> {
                Ok(LaxI64(i64::try_from(v).ok()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<LaxI64, E> {
                Ok(LaxI64(v.is_finite().then_some(v as i64)))
            }
            fn visit_str<E>(self, v: &str) -> Result<LaxI64, E> {
                Ok(LaxI64(v.trim().parse().ok()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<LaxI64, E> {
                Ok(LaxI64(None))
            }
            fn visit_unit<E>(self) -> Result<LaxI64, E> {
                Ok(LaxI64(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<LaxI64, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LaxI64(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<LaxI64, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LaxI64(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A time in microseconds (a JSON number, or a string holding one) read
/// exactly to nanoseconds from its text: `1712195495505582.988` is
/// 1712195495505582988 ns, which an `f64` cannot hold. Anything else is `None`.
#[derive(Debug, Default, Clone, Copy)]
struct LaxMicros(Option<i64>);

impl<'de> Deserialize<'de> for LaxMicros {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de serde_json::value::RawValue>::deserialize(d)?;
        let text = raw.get();
        let text = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(inner) => inner.trim(),
            None => text,
        };
        Ok(LaxMicros(micros_text_to_ns(text)))
    }
}

#[derive(Debug, Default, Clone)]
struct LaxStr<'a>(Option<Cow<'a, str>>);

impl<'a> LaxStr<'a> {
    fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
    fn owned(&self) -> Option<String> {
        self.0.as_ref().map(|s| s.to_string())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LaxStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = LaxStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<LaxStr<'a>, E> {
                Ok(LaxStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<LaxStr<'a>, E> {
                Ok(LaxStr(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_string<E>(self, v: String) -> Result<LaxStr<'a>, E> {
                Ok(LaxStr(Some(Cow::Owned(v))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<LaxStr<'a>, E> {
                Ok(LaxStr(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<LaxStr<'a>, E> {
                Ok(LaxStr(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<LaxStr<'a>, E> {
                Ok(LaxStr(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E>(self, v: bool) -> Result<LaxStr<'a>, E> {
                Ok(LaxStr(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_unit<E>(self) -> Result<LaxStr<'a>, E> {
                Ok(LaxStr(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<LaxStr<'a>, A::Error> {
                // Lists (e.g. `Process Group Ranks` in some versions) as "[a, b]".
                let mut parts = Vec::new();
                while let Some(LaxStr(x)) = a.next_element::<LaxStr>()? {
                    parts.push(x.map(|c| c.into_owned()).unwrap_or_default());
                }
                Ok(LaxStr(Some(Cow::Owned(format!("[{}]", parts.join(", "))))))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<LaxStr<'a>, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LaxStr(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Debug, Default, Clone)]
struct LaxDims(Option<[i32; 3]>);

impl<'de> Deserialize<'de> for LaxDims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LaxDims;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("[x, y, z]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<LaxDims, A::Error> {
                let mut v = Vec::new();
                while let Some(LaxI64(x)) = a.next_element::<LaxI64>()? {
                    v.push(x.and_then(|x| i32::try_from(x).ok()));
                }
                Ok(LaxDims(match v.as_slice() {
                    [Some(x), Some(y), Some(z)] => Some([*x, *y, *z]),
                    _ => None,
                }))
            }
            fn visit_i64<E>(self, _: i64) -> Result<LaxDims, E> {
                Ok(LaxDims(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<LaxDims, E> {
                Ok(LaxDims(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<LaxDims, E> {
                Ok(LaxDims(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<LaxDims, E> {
                Ok(LaxDims(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<LaxDims, E> {
                Ok(LaxDims(None))
            }
            fn visit_unit<E>(self) -> Result<LaxDims, E> {
                Ok(LaxDims(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<LaxDims, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LaxDims(None))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// The event shapes read.

#[derive(Debug, Default, Deserialize)]
struct RawArgs<'a> {
    #[serde(default)]
    device: LaxI64,
    #[serde(default)]
    stream: LaxI64,
    #[serde(default)]
    correlation: LaxI64,
    #[serde(default)]
    context: LaxI64,
    #[serde(default)]
    grid: LaxDims,
    #[serde(default)]
    block: LaxDims,
    #[serde(default)]
    bytes: LaxI64,
    #[serde(default, borrow, rename = "Collective name")]
    collective: LaxStr<'a>,
    #[serde(default, rename = "In msg nelems")]
    in_nelems: LaxI64,
    #[serde(default, rename = "Group size")]
    group_size: LaxI64,
    #[serde(default, borrow)]
    dtype: LaxStr<'a>,
    #[serde(default, borrow, rename = "Process Group Name")]
    pg_name: LaxStr<'a>,
    #[serde(default, borrow, rename = "Process Group Ranks")]
    pg_ranks: LaxStr<'a>,
    #[serde(default, rename = "Seq")]
    seq: LaxI64,
    #[serde(default, rename = "Src Rank")]
    src_rank: LaxI64,
    #[serde(default, rename = "Dst Rank")]
    dst_rank: LaxI64,
}

#[derive(Debug, Default, Deserialize)]
struct RawEvent<'a> {
    #[serde(default, borrow)]
    ph: LaxStr<'a>,
    #[serde(default, borrow)]
    cat: LaxStr<'a>,
    #[serde(default, borrow)]
    name: LaxStr<'a>,
    #[serde(default)]
    pid: LaxI64,
    #[serde(default)]
    tid: LaxI64,
    #[serde(default)]
    ts: LaxMicros,
    #[serde(default)]
    dur: LaxMicros,
    #[serde(default, borrow)]
    args: Option<RawArgs<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawDistInfo {
    #[serde(default)]
    rank: LaxI64,
    #[serde(default)]
    world_size: LaxI64,
}

#[derive(Debug, Deserialize)]
struct RawDevice<'a> {
    #[serde(default)]
    id: LaxI64,
    #[serde(default, borrow)]
    name: LaxStr<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GpuKind {
    Kernel,
    Memcpy,
    Memset,
}

impl GpuKind {
    fn of(cat: &str) -> Option<Self> {
        match cat {
            "kernel" | "Kernel" => Some(GpuKind::Kernel),
            "gpu_memcpy" | "Memcpy" => Some(GpuKind::Memcpy),
            "gpu_memset" | "Memset" => Some(GpuKind::Memset),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            GpuKind::Kernel => "kernel",
            GpuKind::Memcpy => "memcpy",
            GpuKind::Memset => "memset",
        }
    }
}

#[derive(Debug)]
struct CollMeta {
    op: String,
    nelems: Option<i64>,
    group_size: Option<i32>,
    dtype: Option<String>,
    pg_name: Option<String>,
    pg_ranks: Option<Vec<i32>>,
    seq: Option<i64>,
    peer: Option<i32>,
}

#[derive(Debug)]
struct GpuRec {
    /// Times in nanoseconds from the trace's base time.
    rec: QuickGpu,
    name: Arc<str>,
    /// The name holds a communication-kernel marker (worked out once per name).
    comm: bool,
    coll: Option<Box<CollMeta>>,
}

impl GpuRec {
    /// The record's `kernel_events.category`.
    fn category(&self) -> Category {
        classify_marked(self.rec.kind.as_str(), || self.comm)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Launch {
    /// Nanoseconds from the trace's base time.
    ts: i64,
    dur: i64,
    pid: i32,
    tid: i32,
}

#[derive(Debug)]
struct SyncRec {
    api: &'static str,
    launch: Launch,
}

#[derive(Debug)]
struct StepRec {
    step: i64,
    launch: Launch,
}

/// What the event stream leaves behind for the final pass.
#[derive(Debug, Default)]
struct Collected {
    gpu: Vec<GpuRec>,
    /// (correlation id, launch) in trace order; sorted by id at the end
    /// (ids mostly rise, so a vector and one sort beat a hash map's regrowth).
    launches: Vec<(i64, Launch)>,
    syncs: Vec<SyncRec>,
    steps: Vec<StepRec>,
    /// Distinct GPU record names, each with its communication-kernel test.
    names: HashMap<String, (Arc<str>, bool), foldhash::fast::RandomState>,
    /// The table of communication kernels.
    comm: Arc<CommKernels>,
    cpu_pids: HashMap<i32, u64>,
    skipped: u64,
    /// First error inside an event (reported with the file name).
    error: Option<(usize, String, String, String)>,
}

const SYNC_APIS: &[&str] = &[
    "cudaStreamSynchronize",
    "cudaDeviceSynchronize",
    "cudaEventSynchronize",
    "cuStreamSynchronize",
    "cuCtxSynchronize",
    "cuEventSynchronize",
];

impl Collected {
    fn intern(&mut self, s: &str) -> (Arc<str>, bool) {
        if let Some((a, comm)) = self.names.get(s) {
            return (a.clone(), *comm);
        }
        let a: Arc<str> = Arc::from(s);
        let comm = self.comm.is_communication(s);
        self.names.insert(s.to_string(), (a.clone(), comm));
        (a, comm)
    }

    fn gpu_record(&mut self, r: QuickGpu, name: &str, coll: Option<Box<CollMeta>>) {
        if r.dur < 0 {
            self.skipped += 1;
            return;
        }
        let (name, comm) = self.intern(name);
        self.gpu.push(GpuRec { rec: r, name, comm, coll });
    }

    /// A host runtime or driver call: the launch of its correlated GPU
    /// records, or a synchronize call.
    fn launch(&mut self, launch: Launch, correlation: Option<i64>, name: &str) {
        *self.cpu_pids.entry(launch.pid).or_default() += 1;
        if let Some(c) = correlation {
            self.launches.push((c, launch));
        }
        if let Some(api) = SYNC_APIS.iter().find(|a| **a == name) {
            self.syncs.push(SyncRec { api, launch });
        }
    }

    fn event(&mut self, index: usize, e: RawEvent) {
        if self.error.is_some() || e.ph.as_deref() != Some("X") {
            return;
        }
        let cat = e.cat.as_deref().unwrap_or_default();
        let name = e.name.as_deref().unwrap_or_default();
        let fail = |this: &mut Self, detail: &str, cat: &str, name: &str| {
            this.error = Some((index, cat.to_string(), name.to_string(), detail.to_string()));
        };
        if let Some(kind) = GpuKind::of(cat) {
            let rec = match gpu_of_raw(&e, kind) {
                Ok(Some(rec)) => rec,
                Ok(None) => {
                    self.skipped += 1;
                    return;
                }
                Err(detail) => return fail(self, detail, cat, name),
            };
            let args = e.args.as_ref();
            let coll = args.filter(|a| kind == GpuKind::Kernel && a.collective.0.is_some()).map(|a| {
                Box::new(CollMeta {
                    op: normalize_collective(a.collective.as_deref().unwrap_or_default()),
                    nelems: a.in_nelems.0,
                    group_size: a.group_size.0.and_then(|g| i32::try_from(g).ok()),
                    dtype: a.dtype.owned(),
                    pg_name: a.pg_name.owned(),
                    pg_ranks: a.pg_ranks.as_deref().and_then(parse_ranks),
                    seq: a.seq.0,
                    peer: a.dst_rank.0.or(a.src_rank.0).and_then(|p| i32::try_from(p).ok()),
                })
            });
            self.gpu_record(rec, name, coll);
            return;
        }
        let Some(launch) = launch_of_raw(&e) else { return };
        match cat {
            "cuda_runtime" | "cuda_driver" | "Runtime" => {
                self.launch(launch, e.args.as_ref().and_then(|a| a.correlation.0), name)
            }
            "user_annotation" | "cpu_op" | "Operator" => {
                if let Some(n) = name.strip_prefix("ProfilerStep#").and_then(|n| n.trim().parse::<i64>().ok()) {
                    self.steps.push(StepRec { step: n, launch });
                }
            }
            _ => {}
        }
    }
}

/// A GPU record from the full parser; `Ok(None)` for a negative duration
/// (skipped and counted), `Err` names a missing field.
fn gpu_of_raw(e: &RawEvent, kind: GpuKind) -> Result<Option<QuickGpu>, &'static str> {
    let ts = e.ts.0.ok_or("missing or non-numeric `ts`")?;
    let dur = e.dur.0.ok_or("missing or non-numeric `dur`")?;
    if dur < 0 {
        return Ok(None);
    }
    let args = e.args.as_ref();
    let arg = |f: fn(&RawArgs) -> Option<i64>| args.and_then(f);
    Ok(Some(QuickGpu {
        kind,
        ts,
        dur,
        device: arg(|a| a.device.0).or(e.pid.0).and_then(|d| i32::try_from(d).ok()).unwrap_or(0),
        stream: arg(|a| a.stream.0).or(e.tid.0).unwrap_or(0),
        correlation: arg(|a| a.correlation.0),
        context: arg(|a| a.context.0).unwrap_or(0),
        grid: args.and_then(|a| a.grid.0),
        block: args.and_then(|a| a.block.0),
        bytes: arg(|a| a.bytes.0),
    }))
}

/// A host call from the full parser: `ts`, `pid` and `tid` are required.
fn launch_of_raw(e: &RawEvent) -> Option<Launch> {
    let (Some(ts), Some(pid), Some(tid)) = (e.ts.0, e.pid.0, e.tid.0) else { return None };
    Some(Launch { ts, dur: e.dur.0.unwrap_or(0).max(0), pid: pid as i32, tid: tid as i32 })
}

/// Microseconds as a JSON number → nanoseconds. Exact for every integer
/// number of microseconds below 2^53 (epoch-based traces) and, to 1 ns, for
/// the small relative times of traces with `baseTimeNanoseconds`.
fn us_to_ns(us: f64) -> Option<i64> {
    if !us.is_finite() || us.abs() >= 9.0e15 {
        return None;
    }
    let whole = us.trunc();
    Some(whole as i64 * 1000 + ((us - whole) * 1000.0).round() as i64)
}

/// Microseconds as Kineto writes them (`1712867402368034`,
/// `4458676522690.655`) → nanoseconds, exact from the decimal text.
fn micros_text_to_ns(t: &str) -> Option<i64> {
    micros_to_ns(t.as_bytes())
}

/// [`micros_text_to_ns`] on bytes, without allocating (it runs for every
/// timestamp of a trace).
fn micros_to_ns(t: &[u8]) -> Option<i64> {
    let (neg, body) = match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, t),
    };
    if body.iter().any(|&b| b == b'e' || b == b'E') {
        return us_to_ns(std::str::from_utf8(t).ok()?.parse().ok()?);
    }
    let (int, frac) = match memchr::memchr(b'.', body) {
        Some(p) => (&body[..p], &body[p + 1..]),
        None => (body, &[][..]),
    };
    if (int.is_empty() && frac.is_empty()) || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let mut whole: i64 = 0;
    for &b in int {
        whole = whole.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    let d = |i: usize| frac.get(i).map_or(0, |&b| i64::from(b - b'0'));
    let sub = d(0) * 100 + d(1) * 10 + d(2) + i64::from(d(3) >= 5);
    let ns = whole.checked_mul(1000)?.checked_add(sub)?;
    Some(if neg { -ns } else { ns })
}

/// A JSON integer token as `i64`; `None` for anything else (`5.0`, `"5"`, overflow).
fn int_of(t: &[u8]) -> Option<i64> {
    let (neg, digits) = match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, t),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(b - b'0'))?;
    }
    if neg { Some(n) } else { n.checked_neg() }
}

/// `all_gather_into_tensor_coalesced` → `allgather`, `_reduce_scatter_base` → `reducescatter`, ….
pub fn normalize_collective(s: &str) -> String {
    let l = s.to_ascii_lowercase().replace(['_', ' ', '-'], "");
    for (key, op) in [
        ("allreduce", "allreduce"),
        ("allgather", "allgather"),
        ("reducescatter", "reducescatter"),
        ("alltoall", "alltoall"),
        ("broadcast", "broadcast"),
        ("reduce", "reduce"),
        ("send", "send"),
        ("recv", "recv"),
        ("gather", "gather"),
        ("scatter", "scatter"),
        ("barrier", "barrier"),
    ] {
        if l.contains(key) {
            return op.to_string();
        }
    }
    l
}

fn parse_ranks(s: &str) -> Option<Vec<i32>> {
    let inner = s.trim().strip_prefix('[')?.strip_suffix(']')?;
    if inner.trim().is_empty() {
        return Some(Vec::new());
    }
    inner.split(',').map(|x| x.trim().parse().ok()).collect()
}

/// Bytes per element of a PyTorch dtype name as Kineto writes it, and the
/// `ncclDataType_t`-style name strand stores.
fn dtype_info(s: &str) -> Option<(i64, &'static str)> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "float" | "float32" => (4, "float32"),
        "double" | "float64" => (8, "float64"),
        "half" | "float16" => (2, "float16"),
        "bfloat16" => (2, "bfloat16"),
        "int" | "int32" => (4, "int32"),
        "long" | "int64" => (8, "int64"),
        "byte" | "uint8" | "bool" => (1, "uint8"),
        "char" | "int8" => (1, "int8"),
        "float8_e4m3fn" | "float8_e4m3fnuz" => (1, "fp8_e4m3"),
        "float8_e5m2" | "float8_e5m2fnuz" => (1, "fp8_e5m2"),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Streaming top level.

#[derive(Default)]
struct Header {
    schema_version: Option<Option<String>>,
    rank: Option<i64>,
    world_size: Option<i64>,
    devices: Vec<(Option<i64>, Option<String>)>,
    base_ns: Option<i64>,
    saw_events: bool,
}

/// Values of `"cat"` that mark an event worth parsing; events named
/// `ProfilerStep#…` are parsed too. Every other event (CPU operators, flows,
/// metadata) is skipped unparsed. A key `"cat"` inside `args` can only add a
/// parse, never lose an event: every occurrence is checked.
const WANTED_CATS: &[&[u8]] = &[
    b"kernel\"",
    b"Kernel\"",
    b"gpu_memcpy\"",
    b"gpu_memset\"",
    b"Memcpy\"",
    b"Memset\"",
    b"cuda_runtime\"",
    b"cuda_driver\"",
    b"Runtime\"",
];

/// What kind of event a slice holds, judged without parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    No,
    /// A host runtime/driver call (parsed by [`quick_launch`] when it can).
    Launch,
    /// A GPU record (parsed by [`quick_gpu`] when it can).
    Gpu,
    Other,
}

/// Substring searchers for the keys the fast paths read, built once.
mod keys {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    macro_rules! keys {
        ($($id:ident = $pat:literal;)*) => { $(pub static $id: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new($pat));)* };
    }
    keys! {
        PH = b"\"ph\""; CAT = b"\"cat\""; NAME = b"\"name\""; TS = b"\"ts\""; DUR = b"\"dur\"";
        PID = b"\"pid\""; TID = b"\"tid\""; DEVICE = b"\"device\""; STREAM = b"\"stream\"";
        CORRELATION = b"\"correlation\""; CONTEXT = b"\"context\""; GRID = b"\"grid\""; BLOCK = b"\"block\"";
        BYTES = b"\"bytes\""; COLLECTIVE = b"\"Collective name\""; STEP = b"\"ProfilerStep#";
    }
}

fn worth_parsing(event: &[u8]) -> Wanted {
    let mut wanted = Wanted::No;
    // Steps are `ProfilerStep#N` host events of these categories.
    let mut maybe_step = false;
    for at in keys::CAT.find_iter(event) {
        // Skip `:` and whitespace to the value's opening quote.
        let rest = &event[at + 5..];
        let Some(q) = rest.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b':')) else { continue };
        if rest[q] == b'"'
            && (rest[q + 1..].starts_with(b"cpu_op\"")
                || rest[q + 1..].starts_with(b"user_annotation\"")
                || rest[q + 1..].starts_with(b"Operator\""))
        {
            maybe_step = true;
        }
        if rest[q] == b'"'
            && let Some(w) = WANTED_CATS.iter().find(|w| rest[q + 1..].starts_with(w))
        {
            let launch = w.starts_with(b"cuda_") || w.starts_with(b"Runtime");
            wanted = match (wanted, launch) {
                (Wanted::No, true) => Wanted::Launch,
                (Wanted::No, false) => Wanted::Gpu,
                // Two categories: leave it to the full parser.
                _ => Wanted::Other,
            };
        }
    }
    if wanted == Wanted::No && maybe_step {
        // Any `"name"` whose value is a step name (one per event, as a rule);
        // a name with escapes is sent to the full parser when the event has
        // `"ProfilerStep#` anywhere.
        let name = &keys::NAME;
        let step = name.find_iter(event).any(|at| match value_at(&event[at + name.needle().len()..]) {
            Some(v) => v.starts_with(b"ProfilerStep#"),
            None => keys::STEP.find(event).is_some(),
        });
        if step {
            return Wanted::Other;
        }
    }
    wanted
}

/// The raw value after `"key":` (first occurrence): a number token, or a
/// string without escapes. `None` when absent or not that simple.
fn quick_value<'a>(ev: &'a [u8], key: &memchr::memmem::Finder<'static>) -> Option<&'a [u8]> {
    let at = key.find(ev)? + key.needle().len();
    value_at(&ev[at..])
}

/// The raw value after a key (`rest` starts right after its closing quote).
fn value_at(rest: &[u8]) -> Option<&[u8]> {
    let q = rest.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))?;
    let rest = rest[q..].strip_prefix(b":")?;
    let q = rest.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))?;
    let rest = &rest[q..];
    if let Some(s) = rest.strip_prefix(b"\"") {
        let end = memchr::memchr2(b'"', b'\\', s)?;
        return (s[end] == b'"').then(|| &s[..end]);
    }
    let end = rest.iter().position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))?;
    Some(&rest[..end])
}

/// A runtime/driver call read without `serde_json`: `ts`, `dur`, `pid`,
/// `tid`, `name` and `args.correlation` (the keys of these events occur once
/// each). `None` sends the event to the full parser.
fn quick_launch(ev: &[u8]) -> Option<(Launch, Option<i64>, &str)> {
    if quick_value(ev, &keys::PH)? != b"X" {
        return None;
    }
    let ts = micros_to_ns(quick_value(ev, &keys::TS)?)?;
    let dur = micros_to_ns(quick_value(ev, &keys::DUR)?)?;
    let pid = int_of(quick_value(ev, &keys::PID)?)?;
    let tid = int_of(quick_value(ev, &keys::TID)?)?;
    let name = std::str::from_utf8(quick_value(ev, &keys::NAME)?).ok()?;
    let corr = match quick_value(ev, &keys::CORRELATION) {
        Some(v) => Some(int_of(v)?),
        None => None,
    };
    Some((Launch { ts, dur: dur.max(0), pid: pid as i32, tid: tid as i32 }, corr, name))
}

/// The fields of a GPU record.
#[derive(Debug, Clone, Copy, PartialEq)]
struct QuickGpu {
    kind: GpuKind,
    ts: i64,
    dur: i64,
    device: i32,
    stream: i64,
    correlation: Option<i64>,
    context: i64,
    grid: Option<[i32; 3]>,
    block: Option<[i32; 3]>,
    bytes: Option<i64>,
}

/// `[x, y, z]` after `"key":`.
fn quick_dims(ev: &[u8], key: &memchr::memmem::Finder<'static>) -> Option<Option<[i32; 3]>> {
    let Some(at) = key.find(ev) else { return Some(None) };
    let rest = &ev[at + key.needle().len()..];
    let open = memchr::memchr(b'[', rest)?;
    let close = memchr::memchr(b']', &rest[open..])? + open;
    let inner = std::str::from_utf8(&rest[open + 1..close]).ok()?;
    let v: Vec<i32> = inner.split(',').map(|x| x.trim().parse().ok()).collect::<Option<_>>()?;
    Some(<[i32; 3]>::try_from(v).ok())
}

/// A GPU record (kernel, copy, set) read without `serde_json`, when it is
/// plain: not a collective (those carry metadata for the full parser), name
/// without escapes, numeric fields. `None` sends it to the full parser.
fn quick_gpu(ev: &[u8]) -> Option<(QuickGpu, &str)> {
    if keys::COLLECTIVE.find(ev).is_some() {
        return None;
    }
    let text = |f: &memchr::memmem::Finder<'static>| -> Option<&str> { std::str::from_utf8(quick_value(ev, f)?).ok() };
    let int = |f: &memchr::memmem::Finder<'static>| -> Option<Option<i64>> {
        match quick_value(ev, f) {
            None => Some(None),
            Some(v) => Some(Some(int_of(v)?)),
        }
    };
    if text(&keys::PH)? != "X" {
        return None;
    }
    let kind = GpuKind::of(text(&keys::CAT)?)?;
    let name = text(&keys::NAME)?;
    let ts = micros_to_ns(quick_value(ev, &keys::TS)?)?;
    let dur = micros_to_ns(quick_value(ev, &keys::DUR)?)?;
    let device = int(&keys::DEVICE)?.or(int(&keys::PID)?).and_then(|d| i32::try_from(d).ok()).unwrap_or(0);
    let stream = int(&keys::STREAM)?.or(int(&keys::TID)?).unwrap_or(0);
    let rec = QuickGpu {
        kind,
        ts,
        dur,
        device,
        stream,
        correlation: int(&keys::CORRELATION)?,
        context: int(&keys::CONTEXT)?.unwrap_or(0),
        grid: quick_dims(ev, &keys::GRID)?,
        block: quick_dims(ev, &keys::BLOCK)?,
        bytes: int(&keys::BYTES)?,
    };
    Some((rec, name))
}

/// Reads one trace (`.json` or gzip-compressed `.json.gz`, detected by content).
pub fn read_trace(path: &Path, opts: &KinetoOptions) -> Result<KinetoTrace, KinetoError> {
    let file = path.display().to_string();
    let f = File::open(path).map_err(|source| KinetoError::Open { file: file.clone(), source })?;
    let mut r = BufReader::with_capacity(256 * 1024, f);
    let gz = {
        use std::io::BufRead;
        let buf = r.fill_buf().map_err(|source| KinetoError::Open { file: file.clone(), source })?;
        buf.len() >= 2 && buf[..2] == [0x1f, 0x8b]
    };
    if gz {
        read_trace_from(flate2::read::MultiGzDecoder::new(r), &file, path, opts)
    } else {
        read_trace_from(r, &file, path, opts)
    }
}

/// What the splitting thread hands to the parsing thread.
enum Msg {
    Value(String, Vec<u8>, Pos),
    /// Events, concatenated: (index in `traceEvents`, position, byte range).
    Events(Vec<u8>, Vec<(usize, Pos, std::ops::Range<usize>)>),
    Done(Result<bool, SplitError<()>>),
}

/// Bytes of events handed over at a time.
const BATCH: usize = 256 * 1024;

/// Reads a trace from any reader; `file` names it in errors. Two threads: one
/// reads (and decompresses) and splits the input into events; this one skips
/// those not needed and parses the rest.
pub fn read_trace_from(
    reader: impl Read + Send,
    file: &str,
    path: &Path,
    opts: &KinetoOptions,
) -> Result<KinetoTrace, KinetoError> {
    let max_value = opts.max_value_bytes.unwrap_or(json_split::DEFAULT_MAX_VALUE);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(4);
        // Spent batches come back for reuse: no fresh pages per batch.
        let (spent_tx, spent_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        scope.spawn(move || {
            let fresh = || match spent_rx.try_recv() {
                Ok(mut b) => {
                    b.clear();
                    b
                }
                Err(_) => Vec::with_capacity(BATCH + 64 * 1024),
            };
            let mut batch = fresh();
            let mut index = Vec::new();
            let vtx = tx.clone();
            let r = Splitter::new(reader).with_max_value(max_value).run(
                "traceEvents",
                |key, bytes, at| {
                    if matches!(
                        key,
                        "schemaVersion"
                            | "distributedInfo"
                            | "deviceProperties"
                            | "baseTimeNanoseconds"
                            | "traceEvents"
                    ) {
                        vtx.send(Msg::Value(key.to_string(), bytes.to_vec(), at)).map_err(|_| ())?;
                    }
                    Ok(())
                },
                |i, bytes, at| {
                    // Every event goes over; the parsing thread sorts them
                    // (worth_parsing), which balances the two threads.
                    let s = batch.len();
                    batch.extend_from_slice(bytes);
                    index.push((i, at, s..batch.len()));
                    if batch.len() >= BATCH {
                        let b = std::mem::replace(&mut batch, fresh());
                        tx.send(Msg::Events(b, std::mem::take(&mut index))).map_err(|_| ())?;
                    }
                    Ok(())
                },
            );
            if !batch.is_empty() {
                let _ = tx.send(Msg::Events(batch, index));
            }
            let _ = tx.send(Msg::Done(r));
        });
        parse_messages(rx, spent_tx, file, path, opts)
    })
}

fn parse_messages(
    rx: std::sync::mpsc::Receiver<Msg>,
    spent: std::sync::mpsc::SyncSender<Vec<u8>>,
    file: &str,
    path: &Path,
    opts: &KinetoOptions,
) -> Result<KinetoTrace, KinetoError> {
    let mut c = Collected { comm: opts.comm_kernels.clone(), ..Collected::default() };
    let mut h = Header::default();
    let mut result = None;
    for msg in rx.iter() {
        match msg {
            Msg::Value(key, bytes, at) => match key.as_str() {
                "schemaVersion" => {
                    let v: LaxStr = serde_json::from_slice(&bytes).map_err(|e| value_error(file, at, &e))?;
                    h.schema_version = Some(v.owned());
                }
                "distributedInfo" => {
                    if let Ok(Some(d)) = serde_json::from_slice::<Option<RawDistInfo>>(&bytes) {
                        h.rank = d.rank.0;
                        h.world_size = d.world_size.0;
                    }
                }
                "deviceProperties" => {
                    if let Ok(Some(v)) = serde_json::from_slice::<Option<Vec<RawDevice>>>(&bytes) {
                        h.devices = v.into_iter().map(|d| (d.id.0, d.name.owned())).collect();
                    }
                }
                "baseTimeNanoseconds" => {
                    h.base_ns = serde_json::from_slice::<LaxI64>(&bytes).map_err(|e| value_error(file, at, &e))?.0;
                }
                "traceEvents" => {
                    return Err(KinetoError::NotKineto {
                        file: file.to_string(),
                        detail: "`traceEvents` is not an array".into(),
                    });
                }
                _ => {}
            },
            Msg::Events(bytes, index) => {
                for (i, at, range) in index {
                    let ev = &bytes[range];
                    let kind = worth_parsing(ev);
                    if kind == Wanted::No {
                        continue;
                    }
                    if kind == Wanted::Launch
                        && let Some((launch, corr, name)) = quick_launch(ev)
                    {
                        c.launch(launch, corr, name);
                        continue;
                    }
                    if kind == Wanted::Gpu
                        && let Some((rec, name)) = quick_gpu(ev)
                    {
                        c.gpu_record(rec, name, None);
                        continue;
                    }
                    let e: RawEvent = serde_json::from_slice(ev).map_err(|e| value_error(file, at, &e))?;
                    c.event(i, e);
                }
                let _ = spent.try_send(bytes);
            }
            Msg::Done(r) => result = Some(r),
        }
    }
    match result {
        Some(Ok(found)) => h.saw_events |= found,
        Some(Err(SplitError::Callback(()))) | None => {
            return Err(KinetoError::Decompress {
                file: file.to_string(),
                detail: "the reading thread stopped early".into(),
            });
        }
        Some(Err(SplitError::Io(e))) => return Err(io_error(file, e)),
        Some(Err(SplitError::Truncated(p))) => {
            return Err(KinetoError::Truncated { file: file.to_string(), line: p.line, column: p.column });
        }
        Some(Err(SplitError::Syntax(p, detail))) => {
            return Err(KinetoError::Json { file: file.to_string(), line: p.line, column: p.column, detail });
        }
        Some(Err(SplitError::TooLarge(p, limit))) => {
            return Err(KinetoError::ValueTooLarge { file: file.to_string(), line: p.line, column: p.column, limit });
        }
        Some(Err(SplitError::NotObject(p))) => {
            return Err(KinetoError::NotKineto {
                file: file.to_string(),
                detail: format!("the top level is not a JSON object (line {}, column {})", p.line, p.column),
            });
        }
    }
    check_and_finish(c, h, file, path, opts)
}

fn io_error(file: &str, e: std::io::Error) -> KinetoError {
    let detail = e.to_string();
    if e.kind() == std::io::ErrorKind::UnexpectedEof || detail.contains("unexpected end of file") {
        KinetoError::TruncatedGzip { file: file.to_string() }
    } else {
        KinetoError::Decompress { file: file.to_string(), detail }
    }
}

fn strip_position(s: &str) -> String {
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// A `serde_json` error inside a value that starts at `at`, as a position in the file.
fn value_error(file: &str, at: Pos, e: &serde_json::Error) -> KinetoError {
    let line = at.line + e.line().saturating_sub(1);
    let column = if e.line() <= 1 { at.column + e.column().saturating_sub(1) } else { e.column() };
    KinetoError::Json { file: file.to_string(), line, column, detail: strip_position(&e.to_string()) }
}

fn check_and_finish(
    mut c: Collected,
    h: Header,
    file: &str,
    path: &Path,
    opts: &KinetoOptions,
) -> Result<KinetoTrace, KinetoError> {
    if let Some((index, cat, name, detail)) = c.error.take() {
        return Err(KinetoError::Event { file: file.to_string(), index, cat, name, detail });
    }
    if !h.saw_events {
        return Err(KinetoError::NotKineto { file: file.to_string(), detail: "no `traceEvents` array".into() });
    }
    if let Some(v) = &h.schema_version {
        let ok =
            v.as_deref().and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| SUPPORTED_SCHEMA_VERSIONS.contains(&v));
        if !ok {
            return Err(KinetoError::Version {
                file: file.to_string(),
                found: v.clone().unwrap_or_else(|| "null".into()),
                supported: SUPPORTED_SCHEMA_VERSIONS.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "),
            });
        }
    } else {
        tracing::warn!("{file}: no schemaVersion; reading it as Kineto version 1");
    }
    check_times(&c, h.base_ns.unwrap_or(0), file)?;
    Ok(finish(c, h, path, opts))
}

/// Every time the rows will carry (base + ts, base + ts + dur) fits in i64
/// nanoseconds: `finish` adds them unchecked.
fn check_times(c: &Collected, base: i64, file: &str) -> Result<(), KinetoError> {
    let fits = |ts: i64, dur: i64| base.checked_add(ts).and_then(|t| t.checked_add(dur)).is_some();
    let err = |event: String, ts: i64, dur: i64| KinetoError::Time { file: file.to_string(), event, base, ts, dur };
    for g in &c.gpu {
        if !fits(g.rec.ts, g.rec.dur) {
            return Err(err(
                format!("GPU record {:?} (device {}, stream {})", g.name, g.rec.device, g.rec.stream),
                g.rec.ts,
                g.rec.dur,
            ));
        }
    }
    for (corr, l) in &c.launches {
        if !fits(l.ts, l.dur) {
            return Err(err(format!("launch with correlation {corr} (pid {}, tid {})", l.pid, l.tid), l.ts, l.dur));
        }
    }
    for s in &c.syncs {
        if !fits(s.launch.ts, s.launch.dur) {
            return Err(err(
                format!("{} (pid {}, tid {})", s.api, s.launch.pid, s.launch.tid),
                s.launch.ts,
                s.launch.dur,
            ));
        }
    }
    for s in &c.steps {
        if !fits(s.launch.ts, s.launch.dur) {
            return Err(err(format!("ProfilerStep#{}", s.step), s.launch.ts, s.launch.dur));
        }
    }
    Ok(())
}

fn finish(mut c: Collected, h: Header, path: &Path, opts: &KinetoOptions) -> KinetoTrace {
    let base = h.base_ns.unwrap_or(0);
    let ns = |t: i64| base + t;
    let rank = h.rank.and_then(|r| i32::try_from(r).ok());
    let world_size = h.world_size.and_then(|r| i32::try_from(r).ok());
    let node = opts.node.clone().unwrap_or_else(|| node_name(path));
    let cluster: Arc<str> = Arc::from(opts.cluster.as_str());
    let node_a: Arc<str> = Arc::from(node.as_str());
    let job = opts.job_id.clone();
    let main_pid = c.cpu_pids.iter().max_by_key(|(p, n)| (**n, -**p)).map(|(p, _)| *p).unwrap_or(0);
    let gpu_names: BTreeMap<i32, String> =
        h.devices.iter().filter_map(|(id, name)| Some((i32::try_from((*id)?).ok()?, name.clone()?))).collect();
    let mut devices: Vec<i32> = c.gpu.iter().map(|g| g.rec.device).collect();
    devices.sort_unstable();
    devices.dedup();
    let only_device = (devices.len() == 1).then(|| devices[0]);

    let mut step_names: Vec<i64> = c.steps.iter().map(|s| s.step).collect();
    step_names.sort_unstable();
    step_names.dedup();
    let last_step_end = c.steps.iter().map(|s| s.launch.ts + s.launch.dur).max();
    // A stable sort keeps repeated ids in trace order; the last one wins.
    if !c.launches.is_sorted_by_key(|(id, _)| *id) {
        c.launches.sort_by_key(|(id, _)| *id);
    }
    let launches = &c.launches;
    let launch_of = |id: i64| {
        let after = launches.partition_point(|(k, _)| *k <= id);
        launches[..after].last().filter(|(k, _)| *k == id).map(|(_, l)| *l)
    };
    let gpu_launch: Vec<Option<Launch>> = c.gpu.iter().map(|r| r.rec.correlation.and_then(launch_of)).collect();
    let syncs = c
        .syncs
        .iter()
        .map(|s| CudaSyncCall {
            cluster: cluster.clone(),
            node: node_a.clone(),
            pid: s.launch.pid,
            tid: s.launch.tid,
            job_id: job.clone(),
            enter_ns: ns(s.launch.ts),
            exit_ns: ns(s.launch.ts) + s.launch.dur,
            blocked_ns: s.launch.dur,
            api: s.api.to_string(),
            handle: None,
            ret: None,
            gpu_index: only_device,
            source: "kineto".into(),
        })
        .collect();
    let steps = c
        .steps
        .iter()
        .map(|s| Step {
            cluster: cluster.clone(),
            node: node_a.clone(),
            job_id: job.clone(),
            pid: Some(s.launch.pid),
            rank,
            gpu_index: only_device,
            phase: "step".into(),
            step: Some(s.step),
            start_ns: ns(s.launch.ts),
            end_ns: ns(s.launch.ts) + s.launch.dur,
            model_flops: None,
            tokens: None,
            dtype: None,
            source: "kineto".into(),
        })
        .collect();
    let mut t = KinetoTrace {
        out_of_scope: 0,
        devices,
        file: path.to_path_buf(),
        node,
        rank,
        world_size,
        gpu_names,
        gpu: c.gpu,
        gpu_launch,
        row_ctx: RowContext { cluster, node: node_a, job, base_ns: base, main_pid },
        nccl: Vec::new(),
        syncs,
        steps,
        skipped_events: c.skipped,
        step_names,
        last_step_end,
    };
    if opts.hta_scope {
        // On its own: the trace is the analysed set.
        let n = t.step_names.len();
        t.apply_hta_scope(n);
    } else {
        t.nccl = t.calls();
    }
    t
}

impl KinetoTrace {
    /// Keeps only what Holistic Trace Analysis analyses
    /// (`Trace._filter_irrelevant_gpu_kernels` with the last step included):
    /// when the analysed set of traces has two or more distinct
    /// `ProfilerStep#` names over all its ranks (`set_step_names`), GPU
    /// records whose launching CPU call is not in the trace, or started after
    /// this trace's last profiler step ended, are left out (all of them when
    /// this trace has no step); with fewer, nothing is. The `nccl_calls` of
    /// the trace are built from what is kept.
    pub fn apply_hta_scope(&mut self, set_step_names: usize) {
        if set_step_names >= 2 {
            let end = self.last_step_end;
            let keep: Vec<bool> =
                self.gpu_launch.iter().map(|l| l.is_some_and(|l| end.is_some_and(|e| l.ts <= e))).collect();
            let before = self.gpu.len();
            let mut it = keep.iter();
            self.gpu.retain(|_| *it.next().unwrap_or(&false));
            let mut it = keep.iter();
            self.gpu_launch.retain(|_| *it.next().unwrap_or(&false));
            self.out_of_scope += (before - self.gpu.len()) as u64;
            if self.out_of_scope > 0 {
                tracing::info!(
                    "{}: {} GPU records outside HTA's scope left out",
                    self.file.display(),
                    self.out_of_scope
                );
            }
        }
        self.nccl = self.calls();
    }

    /// The `nccl_calls` rows: one per communication kernel with collective
    /// metadata (`Collective name`), numbered per process group in kernel
    /// order where the trace has no `Seq`.
    fn calls(&self) -> Vec<NcclCall> {
        let x = &self.row_ctx;
        let ns = |t: i64| x.base_ns + t;
        let mut nccl = Vec::new();
        for (r, launch) in self.gpu.iter().zip(&self.gpu_launch) {
            let GpuRec { rec: g, coll, .. } = r;
            let (Some(m), Category::Communication) = (coll, r.category()) else { continue };
            let start = ns(g.ts);
            let end = start + g.dur;
            let dt = m.dtype.as_deref().and_then(dtype_info);
            let rank_in_comm = match (&m.pg_ranks, self.rank) {
                (Some(ranks), Some(r)) if !ranks.is_empty() => ranks.iter().position(|x| *x == r).map(|p| p as i32),
                (_, r) => r,
            };
            nccl.push(NcclCall {
                cluster: x.cluster.clone(),
                node: x.node.clone(),
                pid: launch.map(|l| l.pid).unwrap_or(x.main_pid),
                tid: launch.map(|l| l.tid).unwrap_or(0),
                job_id: x.job.clone(),
                enter_ns: launch.map(|l| ns(l.ts)).unwrap_or(start),
                exit_ns: Some(launch.map(|l| ns(l.ts) + l.dur).unwrap_or(start)),
                op: m.op.clone(),
                count: m.nelems,
                datatype: dt.map(|d| d.1.to_string()).or_else(|| m.dtype.clone()),
                bytes: match (m.nelems, dt) {
                    (Some(n), Some((size, _))) => Some(n * size),
                    _ => None,
                },
                redop: None,
                root: None,
                peer: m.peer,
                comm_ptr: None,
                comm_hash: None,
                comm_name: m.pg_name.clone(),
                rank: rank_in_comm,
                nranks: m.group_size.or(m.pg_ranks.as_ref().map(|r| r.len() as i32)).or(self.world_size),
                seq: m.seq,
                stream: Some(g.stream),
                ret: None,
                group_id: None,
                color: None,
                key: None,
                new_comm_ptr: None,
                gpu_index: Some(g.device),
                gpu_uuid: None,
                kernel_start_ns: Some(start),
                kernel_end_ns: Some(end),
                source: "kineto".into(),
            });
        }
        // Without `Seq`, number each group's collectives in kernel order: the same
        // collective has the same number on every rank when all traces cover the
        // same steps (the profiler schedule does that).
        if nccl.iter().any(|c| c.seq.is_none()) {
            nccl.sort_by_key(|c| c.kernel_start_ns);
            let mut next: HashMap<Option<String>, i64> = HashMap::new();
            for call in nccl.iter_mut().filter(|c| strand_analysis::collective::is_collective(&c.op)) {
                let n = next.entry(call.comm_name.clone()).or_default();
                if call.seq.is_none() {
                    call.seq = Some(*n);
                }
                *n += 1;
            }
        }
        nccl
    }
}

/// `Memcpy HtoD (Pageable -> Device)` → `HtoD`.
fn copy_kind(name: &str) -> Option<String> {
    ["HtoD", "DtoH", "DtoD", "HtoH", "PtoP"].iter().find(|k| name.contains(*k)).map(|k| k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<KinetoTrace, KinetoError> {
        read_trace_from(
            json.as_bytes(),
            "t.json",
            Path::new("t.json"),
            &KinetoOptions { cluster: "c".into(), ..Default::default() },
        )
    }

    #[test]
    fn one_huge_json_value_is_refused_past_the_limit() {
        use std::io::Write;
        // A gzip trace of a few KB holding one 64 MiB string.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(br#"{"schemaVersion": 1, "traceEvents": [{"ph": "X", "cat": "kernel", "name": ""#).unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&chunk).unwrap();
        }
        gz.write_all(br#"", "ts": 1, "dur": 1}]}"#).unwrap();
        let bytes = gz.finish().unwrap();
        assert!(bytes.len() < 1 << 20, "{}", bytes.len());
        let opts = KinetoOptions { cluster: "c".into(), max_value_bytes: Some(8 << 20), ..Default::default() };
        let e = read_trace_from(
            flate2::read::MultiGzDecoder::new(&bytes[..]),
            "bomb.json.gz",
            Path::new("bomb.json.gz"),
            &opts,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("bomb.json.gz: the JSON value at line 1, column 38 is longer than 8388608 bytes"), "{e}");
    }

    #[test]
    fn times_past_the_i64_limit_are_an_error_naming_the_file_and_event() {
        for (event, says) in [
            (
                r#"{"ph": "X", "cat": "kernel", "name": "gemm", "pid": 0, "tid": 7, "ts": 9223372036854775, "dur": 10, "args": {"device": 0, "stream": 7}}"#,
                "t.json: GPU record \"gemm\" (device 0, stream 7): ts 9223372036854775000 ns + dur 10000 ns",
            ),
            (
                r#"{"ph": "X", "cat": "user_annotation", "name": "ProfilerStep#3", "pid": 77, "tid": 78, "ts": 9223372036854775, "dur": 100}"#,
                "t.json: ProfilerStep#3: ts 9223372036854775000 ns + dur 100000 ns",
            ),
        ] {
            let e = read(&format!(
                r#"{{"schemaVersion": 1, "traceEvents": [{event}], "baseTimeNanoseconds": 1700000000000000000}}"#
            ))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
            assert!(e.contains(says) && e.contains("is not a time"), "{e}");
        }
        // Near the limit but inside it, without a base time: read.
        let t = read(
            r#"{"schemaVersion": 1, "traceEvents": [{"ph": "X", "cat": "kernel", "name": "gemm", "pid": 0, "tid": 7, "ts": 9223372036854, "dur": 10, "args": {"device": 0, "stream": 7}}]}"#,
        )
        .unwrap();
        assert_eq!(t.kernel_count(), 1);
    }

    #[test]
    fn kernels_launches_collectives_syncs_and_steps() {
        let t = read(
            r#"{"schemaVersion": 1, "traceEvents": [
              {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 77, "tid": 78, "ts": 99.5, "dur": 3, "args": {"correlation": 5}},
              {"ph": "X", "cat": "kernel", "name": "gemm", "pid": 0, "tid": 7, "ts": 100.25, "dur": 10.001, "args": {"device": 0, "stream": 7, "correlation": 5, "context": 1, "grid": [4, 2, 1], "block": [128, 1, 1]}},
              {"ph": "X", "cat": "kernel", "name": "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "pid": 0, "tid": 9, "ts": 120, "dur": 30,
               "args": {"device": 0, "stream": 9, "correlation": 6, "Collective name": "allreduce", "In msg nelems": 1024, "Group size": 4, "dtype": "BFloat16",
                        "Process Group Name": "0", "Process Group Ranks": "[0, 1, 2, 3]", "Seq": 17}},
              {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoH (Device -> Pageable)", "pid": 0, "tid": 7, "ts": 160, "dur": 2, "args": {"device": 0, "stream": 7, "bytes": 4096}},
              {"ph": "X", "cat": "cuda_runtime", "name": "cudaStreamSynchronize", "pid": 77, "tid": 78, "ts": 150, "dur": 15, "args": {"correlation": 9}},
              {"ph": "X", "cat": "user_annotation", "name": "ProfilerStep#3", "pid": 77, "tid": 78, "ts": 90, "dur": 100},
              {"ph": "X", "cat": "cuda_sync", "name": "Stream Sync", "pid": 0, "tid": 7, "ts": 150, "dur": 15, "args": {"stream": 7}},
              {"ph": "s", "id": 5, "pid": 77, "tid": 78, "ts": 99.5, "cat": "ac2g", "name": "ac2g"}
            ], "distributedInfo": {"rank": 2, "world_size": 4}, "deviceProperties": [{"id": 0, "name": "NVIDIA H100 80GB HBM3"}],
               "baseTimeNanoseconds": 1700000000000000000}"#,
        )
        .unwrap();
        let base = 1_700_000_000_000_000_000i64;
        assert_eq!((t.rank, t.world_size, t.node.as_str()), (Some(2), Some(4), "t"));
        assert_eq!(t.gpu_names.get(&0).map(|s| s.as_str()), Some("NVIDIA H100 80GB HBM3"));
        assert_eq!(t.kernel_count(), 3, "cuda_sync lanes are not GPU work");
        let kernels = t.kernels();
        let k = &kernels[0];
        assert_eq!((k.start_ns, k.end_ns), (base + 100_250, base + 110_251));
        assert_eq!((k.launch_ns, k.launch_tid, k.pid), (Some(base + 99_500), Some(78), 77));
        assert_eq!((k.grid_x, k.grid_y, k.block_x, k.category.as_str()), (Some(4), Some(2), Some(128), "compute"));
        let n = &kernels[1];
        assert_eq!((n.category.as_str(), n.collective.as_deref()), ("communication", Some("allreduce")));
        let m = &kernels[2];
        assert_eq!(
            (m.kind.as_str(), m.copy_kind.as_deref(), m.bytes, m.category.as_str()),
            ("memcpy", Some("DtoH"), Some(4096), "copy")
        );
        assert_eq!(t.nccl.len(), 1);
        let c = &t.nccl[0];
        assert_eq!(
            (c.op.as_str(), c.bytes, c.datatype.as_deref(), c.rank, c.nranks, c.seq),
            ("allreduce", Some(2048), Some("bfloat16"), Some(2), Some(4), Some(17))
        );
        assert_eq!(
            (c.kernel_start_ns, c.comm_name.as_deref(), c.gpu_index),
            (Some(base + 120_000), Some("0"), Some(0))
        );
        assert_eq!(t.syncs.len(), 1);
        assert_eq!(
            (t.syncs[0].api.as_str(), t.syncs[0].blocked_ns, t.syncs[0].tid),
            ("cudaStreamSynchronize", 15_000, 78)
        );
        assert_eq!(t.steps.len(), 1);
        assert_eq!(
            (t.steps[0].step, t.steps[0].start_ns, t.steps[0].rank, t.steps[0].source.as_str()),
            (Some(3), base + 90_000, Some(2), "kineto")
        );
    }

    #[test]
    fn launches_join_by_correlation_in_any_order_and_rows_come_out_the_same_in_pieces() {
        let t = read(
            r#"{"schemaVersion": 1, "traceEvents": [
            {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 11, "ts": 10, "dur": 2, "args": {"correlation": 9}},
            {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 11, "ts": 20, "dur": 2, "args": {"correlation": 5}},
            {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 2, "tid": 22, "ts": 30, "dur": 2, "args": {"correlation": 9}},
            {"ph": "X", "cat": "kernel", "name": "a", "pid": 0, "tid": 7, "ts": 40, "dur": 5, "args": {"device": 0, "stream": 7, "correlation": 9}},
            {"ph": "X", "cat": "kernel", "name": "b", "pid": 0, "tid": 7, "ts": 50, "dur": 5, "args": {"device": 0, "stream": 7, "correlation": 5}},
            {"ph": "X", "cat": "kernel", "name": "c", "pid": 0, "tid": 7, "ts": 60, "dur": 5, "args": {"device": 0, "stream": 7, "correlation": 4}}
        ]}"#,
        )
        .unwrap();
        let all = t.kernels();
        // A repeated correlation id: the later launch is the one (as a map insert would have it).
        assert_eq!((all[0].pid, all[0].launch_tid, all[0].launch_ns), (2, Some(22), Some(30_000)));
        assert_eq!((all[1].pid, all[1].launch_tid, all[1].launch_ns), (1, Some(11), Some(20_000)));
        assert_eq!((all[2].launch_tid, all[2].launch_ns), (None, None), "no launch with correlation 4");
        assert_eq!(t.kernel_span(), Some((40_000, 65_000)));
        let mut pieces = Vec::new();
        let mut buf = Vec::new();
        for at in 0..t.kernel_count() {
            t.kernels_into(at..at + 1, &mut buf);
            pieces.append(&mut buf);
        }
        assert_eq!(pieces, all);
    }

    /// A trace as older PyTorch writes it: categories `Kernel`, `Runtime`,
    /// `Operator`, `Memcpy`, `Memset`. Launches join, steps are read, and
    /// HTA's scope keeps what was launched (and leaves out what was not)
    /// only when the analysed set has two or more step names, as HTA does.
    #[test]
    fn older_category_names_are_read_and_hta_scope_needs_two_step_names() {
        const OLD: &str = r#"{"schemaVersion": 1, "traceEvents": [
          {"ph": "X", "cat": "Operator", "name": "ProfilerStep#1", "pid": 5, "tid": 6, "ts": 0, "dur": 50},
          {"ph": "X", "cat": "Runtime", "name": "cudaLaunchKernel", "pid": 5, "tid": 6, "ts": 10, "dur": 2, "args": {"correlation": 1}},
          {"ph": "X", "cat": "Kernel", "name": "gemm", "pid": 0, "tid": 7, "ts": 20, "dur": 10, "args": {"device": 0, "stream": 7, "correlation": 1}},
          {"ph": "X", "cat": "Runtime", "name": "cudaMemcpyAsync", "pid": 5, "tid": 6, "ts": 30, "dur": 2, "args": {"correlation": 2}},
          {"ph": "X", "cat": "Memcpy", "name": "Memcpy DtoH (Device -> Pinned)", "pid": 0, "tid": 7, "ts": 35, "dur": 4, "args": {"device": 0, "stream": 7, "correlation": 2, "bytes": 64}},
          {"ph": "X", "cat": "Memset", "name": "Memset (Device)", "pid": 0, "tid": 7, "ts": 40, "dur": 1, "args": {"device": 0, "stream": 7, "correlation": 3}},
          {"ph": "X", "cat": "Kernel", "name": "ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm*, unsigned long, ncclWork*)", "pid": 0, "tid": 9, "ts": 45, "dur": 10, "args": {"device": 0, "stream": 9, "correlation": 4}}
        ]}"#;
        let t = read(OLD).unwrap();
        assert_eq!(t.kernel_count(), 4, "Kernel, Memcpy and Memset records are GPU records");
        let k = t.kernels();
        let kinds: Vec<(&str, &str, Option<i64>)> =
            k.iter().map(|k| (k.kind.as_str(), k.category.as_str(), k.launch_ns)).collect();
        assert_eq!(
            kinds,
            [
                ("kernel", "compute", Some(10_000)),
                ("memcpy", "copy", Some(30_000)),
                ("memset", "copy", None),
                ("kernel", "communication", None)
            ]
        );
        assert_eq!((t.step_names.clone(), t.steps.len()), (vec![1], 1), "an `Operator` ProfilerStep# is a step");
        // One trace, one step name: HTA filters nothing, neither does strand.
        let opts = KinetoOptions { cluster: "c".into(), hta_scope: true, ..Default::default() };
        let t = read_trace_from(OLD.as_bytes(), "t.json", Path::new("t.json"), &opts).unwrap();
        assert_eq!((t.kernel_count(), t.out_of_scope), (4, 0));
        // The same trace in a set with two step names over its ranks: what no launch made is left out.
        let mut t = read(OLD).unwrap();
        t.apply_hta_scope(2);
        assert_eq!((t.kernel_count(), t.out_of_scope), (2, 2));
        assert!(t.kernels().iter().all(|k| k.launch_ns.is_some()));
    }

    #[test]
    fn broken_traces_are_named_and_explained() {
        let e = read(r#"{"schemaVersion": 1, "traceEvents": [{"ph": "X", "cat": "kernel", "#).unwrap_err().to_string();
        assert!(e.starts_with("t.json: truncated"), "{e}");
        let e = read(r#"{"schemaVersion": 1, "traceEvents": [}"#).unwrap_err().to_string();
        assert!(e.starts_with("t.json: malformed JSON at line 1, column"), "{e}");
        let e = read(r#"{"schemaVersion": 7, "traceEvents": []}"#).unwrap_err().to_string();
        assert_eq!(e, "t.json: Kineto schemaVersion 7 is not supported (strand reads version 1)");
        let e = read(r#"{"schemaVersion": 1, "events": []}"#).unwrap_err().to_string();
        assert_eq!(e, "t.json: not a Kineto trace: no `traceEvents` array");
        let e = read(r#"[1, 2]"#).unwrap_err().to_string();
        assert!(e.starts_with("t.json: not a Kineto trace"), "{e}");
        let e = read(r#"{"traceEvents": [{"ph": "X"}, {"ph": "X", "cat": "kernel", "name": "k", "ts": 1}]}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "t.json: traceEvents[1] (kernel \"k\"): missing or non-numeric `dur`");
    }

    #[test]
    fn microseconds_become_exact_nanoseconds() {
        assert_eq!(micros_text_to_ns("1712867402368034"), Some(1_712_867_402_368_034_000));
        assert_eq!(micros_text_to_ns("4458676522690.655"), Some(4_458_676_522_690_655));
        assert_eq!(micros_text_to_ns("1712867402368034.1239"), Some(1_712_867_402_368_034_124));
        assert_eq!(micros_text_to_ns("-2.5"), Some(-2500));
        assert_eq!(micros_text_to_ns("1.5e3"), Some(1_500_000));
        assert_eq!(micros_text_to_ns("x"), None);
        assert_eq!((int_of(b"-5"), int_of(b"0"), int_of(b"17")), (Some(-5), Some(0), Some(17)));
        assert_eq!((int_of(b"9223372036854775807"), int_of(b"-9223372036854775808")), (Some(i64::MAX), Some(i64::MIN)));
        for bad in [&b"9223372036854775808"[..], b"5.0", b"", b"-", b"1e3", b"\"5\""] {
            assert_eq!(int_of(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(us_to_ns(1712867402368034.0), Some(1_712_867_402_368_034_000));
        assert_eq!(us_to_ns(4458676522690.655), Some(4_458_676_522_690_655));
    }

    #[test]
    fn collective_names_and_rank_lists() {
        assert_eq!(normalize_collective("all_gather_into_tensor_coalesced"), "allgather");
        assert_eq!(normalize_collective("_reduce_scatter_base"), "reducescatter");
        assert_eq!(normalize_collective("allreduce_coalesced"), "allreduce");
        assert_eq!(normalize_collective("all_to_all"), "alltoall");
        assert_eq!(parse_ranks("[0, 1, 2]"), Some(vec![0, 1, 2]));
        assert_eq!(parse_ranks("[]"), Some(vec![]));
        assert_eq!(parse_ranks("0,1"), None);
    }

    /// The fast paths (`quick_gpu`, `quick_launch`) must read every record
    /// of the real traces exactly as the full parser does.
    #[test]
    fn fast_paths_agree_with_the_full_parser_on_real_traces() {
        let dir = crate::tests_support::kineto_dir();
        let (mut gpu, mut launches, mut steps) = (0usize, 0usize, 0usize);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().ends_with(".json.gz") {
                continue;
            }
            let r = flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap());
            Splitter::new(r)
                .run(
                    "traceEvents",
                    |_, _, _| Ok::<(), ()>(()),
                    |i, ev, _| {
                        let kind = worth_parsing(ev);
                        let raw: RawEvent = serde_json::from_slice(ev).unwrap();
                        let name = raw.name.as_deref().unwrap_or_default();
                        // Nothing the full parser would use is skipped.
                        let cat = raw.cat.as_deref().unwrap_or_default();
                        let used = GpuKind::of(cat).is_some()
                            || matches!(cat, "cuda_runtime" | "cuda_driver" | "Runtime")
                            || (matches!(cat, "cpu_op" | "user_annotation" | "Operator")
                                && name.starts_with("ProfilerStep#"));
                        assert!(!used || kind != Wanted::No, "{}: event {i} ({cat} {name}) skipped", path.display());
                        steps += usize::from(used && name.starts_with("ProfilerStep#"));
                        if kind == Wanted::Gpu
                            && let Some((rec, quick_name)) = quick_gpu(ev)
                        {
                            let full = gpu_of_raw(&raw, GpuKind::of(raw.cat.as_deref().unwrap()).unwrap());
                            let full = full.unwrap().unwrap_or(QuickGpu { dur: rec.dur, ..rec });
                            assert_eq!((rec, quick_name), (full, name), "{}: event {i}", path.display());
                            gpu += 1;
                        }
                        if kind == Wanted::Launch
                            && let Some((launch, corr, quick_name)) = quick_launch(ev)
                        {
                            let full = launch_of_raw(&raw).unwrap();
                            let full_corr = raw.args.as_ref().and_then(|a| a.correlation.0);
                            assert_eq!(
                                (launch, corr, quick_name),
                                (full, full_corr, name),
                                "{}: event {i}",
                                path.display()
                            );
                            launches += 1;
                        }
                        Ok(())
                    },
                )
                .unwrap();
        }
        assert!(
            gpu > 1_000 && launches > 1_000 && steps > 0,
            "too few records compared: {gpu} GPU, {launches} launches, {steps} steps"
        );
    }
}
