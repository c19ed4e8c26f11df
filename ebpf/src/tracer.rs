//! The tracer: loads the BPF programs, finds and probes GPU libraries,
//! and turns ring-buffer records into `nccl_calls`, `cuda_sync_calls` and
//! `process_events` rows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libbpf_rs::skel::Skel;
use libbpf_rs::{Link, MapCore, MapFlags, RingBuffer, RingBufferBuilder, UprobeOpts};
use strand_schemas::clock::MonoToUtc;
use strand_schemas::{CudaSyncCall, NcclCall, ProcessEvent};
use tracing::{debug, info, warn};

use crate::capability;
use crate::elf::Elf;
use crate::events::*;
use crate::load;
use crate::nccl::{self, NcclVersion};
use crate::parts::{Part, PartState, PartStatus, ProcessHook};
use crate::procfs::{self, LibKind, LibSet};
use crate::skel::{self, types};

/// Settings of a [`Tracer`].
#[derive(Debug, Clone)]
pub struct TracerConfig {
    pub cluster: Arc<str>,
    pub node: Arc<str>,
    /// Ring buffer for NCCL records, bytes (a power of two, at least a page).
    pub nccl_ring_bytes: u32,
    /// Ring buffer for CUDA synchronize records, bytes.
    pub cuda_ring_bytes: u32,
    /// Ring buffer for process exec/exit records, bytes.
    pub proc_ring_bytes: u32,
    /// How often [`Tracer::poll`] rescans `/proc` for new library files.
    pub rescan_period: Duration,
    /// Libraries to probe at start even if no process maps them yet.
    pub extra_libraries: Vec<PathBuf>,
    /// Where the host's `/proc` is (`/host/proc` when the agent runs in a container).
    pub proc_root: PathBuf,
    /// Most library files probed at once (each costs ~40 uprobes).
    pub max_library_files: usize,
    /// Kernel hooks that follow process exec and exit (`exec`/`exit` rows,
    /// calls cut by a thread's exit), tried in this order for each of the
    /// two. Empty: none, new processes are found by the `/proc` scan only.
    pub process_hooks: Vec<ProcessHook>,
}

impl TracerConfig {
    pub fn new(cluster: impl Into<Arc<str>>, node: impl Into<Arc<str>>) -> Self {
        Self {
            cluster: cluster.into(),
            node: node.into(),
            nccl_ring_bytes: 4 << 20,
            cuda_ring_bytes: 1 << 20,
            proc_ring_bytes: 256 << 10,
            rescan_period: Duration::from_secs(5),
            extra_libraries: Vec::new(),
            proc_root: PathBuf::from("/proc"),
            max_library_files: 64,
            process_hooks: vec![ProcessHook::BtfTracepoint, ProcessHook::Tracepoint],
        }
    }

    fn validate(&self) -> Result<(), EbpfError> {
        check_ring("nccl_ring_bytes", self.nccl_ring_bytes)?;
        check_ring("cuda_ring_bytes", self.cuda_ring_bytes)?;
        check_ring("proc_ring_bytes", self.proc_ring_bytes)?;
        for (i, h) in self.process_hooks.iter().enumerate() {
            if self.process_hooks[..i].contains(h) {
                return Err(EbpfError::Config(format!("process_hooks lists {:?} twice", h.name())));
            }
        }
        Ok(())
    }
}

/// Rows finished since the last [`Tracer::poll`]. The agent fills `job_id`,
/// `gpu_index`, `gpu_uuid` and the kernel times; this crate leaves them `None`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Output {
    pub nccl_calls: Vec<NcclCall>,
    pub cuda_sync_calls: Vec<CudaSyncCall>,
    pub process_events: Vec<ProcessEvent>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.nccl_calls.is_empty() && self.cuda_sync_calls.is_empty() && self.process_events.is_empty()
    }
}

/// Records received and lost for one source, since the tracer started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Records read from the ring buffer.
    pub events: u64,
    /// Records the kernel side dropped: ring buffer full, or its state map full.
    pub lost: u64,
}

/// Counters for Prometheus, all cumulative since [`Tracer::start`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub nccl: SourceStats,
    pub cuda_sync: SourceStats,
    pub process: SourceStats,
    /// Library files (device, inode) probed.
    pub library_files: u64,
    /// Uprobes attached (an entry and a return probe per function).
    pub probes_attached: u64,
    /// Counted problems and skipped inputs, by reason (see `docs/ebpf.md`).
    pub errors: BTreeMap<&'static str, u64>,
    /// Failures by part (`Part::name`): a part that did not start, library
    /// files that could not be probed, `/proc` that could not be read.
    pub part_errors: BTreeMap<&'static str, u64>,
    /// Entries into each probed function (nested calls included), by name:
    /// proof that a probe fires even for calls that make no row.
    pub calls: BTreeMap<&'static str, u64>,
}

/// A probed library file (see [`Tracer::library_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryFile {
    /// Path it was attached through (`/proc/<pid>/root/...` for files found in maps).
    pub path: PathBuf,
    /// `nccl`, `cudart` or `cuda`.
    pub kind: &'static str,
    /// NCCL release from the library's version string.
    pub nccl_version: Option<String>,
    /// Uprobes attached to it.
    pub probes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// Missing privileges or kernel features; the text names them.
    #[error("eBPF tracing unavailable: {0}")]
    Unavailable(String),
    #[error("invalid tracer config: {0}")]
    Config(String),
    #[error("loading the BPF programs: {0}")]
    Load(#[source] libbpf_rs::Error),
    #[error("attaching {what}: {source}")]
    Attach {
        what: String,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("draining the {source_name} ring buffer: {source}")]
    Ring {
        source_name: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
}

/// A probed function and the library kind exporting it.
struct ProbeSpec {
    symbol: &'static str,
    kind: LibKind,
}

const PROBES: &[ProbeSpec] = &[
    ProbeSpec { symbol: "ncclAllReduce", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclBroadcast", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclBcast", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclReduce", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclAllGather", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclReduceScatter", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclAlltoAll", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclSend", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclRecv", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclGroupStart", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclGroupEnd", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclCommInitRank", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclCommInitRankConfig", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclCommInitAll", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclCommSplit", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclCommDestroy", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclCommAbort", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclGetUniqueId", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclGetVersion", kind: LibKind::Nccl },
    ProbeSpec { symbol: "ncclCommGrow", kind: LibKind::Nccl },
    ProbeSpec { symbol: "cudaStreamSynchronize", kind: LibKind::Cudart },
    ProbeSpec { symbol: "cudaDeviceSynchronize", kind: LibKind::Cudart },
    ProbeSpec { symbol: "cudaEventSynchronize", kind: LibKind::Cudart },
    ProbeSpec { symbol: "cuStreamSynchronize", kind: LibKind::Cuda },
    ProbeSpec { symbol: "cuCtxSynchronize", kind: LibKind::Cuda },
    ProbeSpec { symbol: "cuEventSynchronize", kind: LibKind::Cuda },
];

/// Functions that only some releases export: their absence is not counted.
const OPTIONAL: &[&str] = &["ncclAlltoAll", "ncclCommInitRankConfig", "ncclCommSplit", "ncclCommGrow", "ncclCommAbort"];

/// How long after exec a process that is not (yet) a GPU process keeps its
/// exec record, so that a late `dlopen` still yields an `exec` row.
const EXEC_WATCH: Duration = Duration::from_secs(120);
/// Most processes remembered between rescans.
const MAX_PIDS: usize = 1 << 16;
/// Newest NCCL minor release whose hashing was read from its source.
const NEWEST_HASHED: (u32, u32) = (nccl::NEWEST_CHECKED.major, nccl::NEWEST_CHECKED.minor);

/// A probed library file, identified by (device, inode).
struct LibFile {
    kind: LibKind,
    path: PathBuf,
    version: Option<NcclVersion>,
    links: Vec<Link>,
}

type FileKey = (u64, u64);

#[derive(Debug, Clone)]
struct ExecInfo {
    ts_mono: i64,
    ppid: i32,
    comm: String,
    filename: String,
    seen: Instant,
}

#[derive(Debug, Default)]
struct PidState {
    libs: LibSet,
    nccl_files: Vec<FileKey>,
    /// An `exec` or `running` row was written: a known GPU process.
    reported: bool,
    exec: Option<ExecInfo>,
    /// (starttime, vsize) when the maps were last read.
    fingerprint: Option<(u64, u64)>,
    /// From `ncclGetVersion`, for libraries without a version string.
    nccl_version: Option<NcclVersion>,
    exe: Option<String>,
    /// Consecutive rescans that did not find the process.
    missing_scans: u8,
    /// Its maps were read, or tried, on first sight of one of its records.
    first_scan_done: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CommInfo {
    hash: Option<u64>,
    rank: Option<i32>,
    nranks: Option<i32>,
}

/// Names of the `calls` map's slots (src/bpf/strand.h: CALL_CUDA, NR_CALLS).
fn call_name(idx: u32) -> Option<&'static str> {
    if idx >= CALL_CUDA {
        return cuda_api_name(idx - CALL_CUDA);
    }
    PROBES.iter().find(|p| p.kind == LibKind::Nccl && nccl_op_of(p.symbol) == Some(idx)).map(|p| p.symbol)
}

/// `enum nccl_op` of an NCCL probe (the order of [`PROBES`], from 1).
fn nccl_op_of(symbol: &str) -> Option<u32> {
    PROBES.iter().filter(|p| p.kind == LibKind::Nccl).position(|p| p.symbol == symbol).map(|i| i as u32 + 1)
}

struct Rings {
    proc: RingBuffer<'static>,
    nccl: RingBuffer<'static>,
    cuda: RingBuffer<'static>,
}

/// Traces NCCL and CUDA synchronize calls of every process on the node.
///
/// `Send`: it may move between threads, but [`Tracer::poll`] takes
/// `&mut self`, so one thread at a time drives it.
pub struct Tracer {
    // Fields drop in order: ring buffers and links before the BPF object.
    rings: Rings,
    /// Held only so that the exec/exit hooks stay attached.
    _hook_links: Vec<Link>,
    exit_hooked: bool,
    parts: Vec<PartStatus>,
    part_errors: BTreeMap<Part, u64>,
    libs: HashMap<FileKey, LibFile>,
    skel: skel::StrandSkel<'static>,
    sink: Arc<Mutex<Vec<Record>>>,
    cfg: TracerConfig,
    pids: HashMap<i32, PidState>,
    comms: HashMap<(i32, u64), CommInfo>,
    events: [u64; 3],
    errors: BTreeMap<&'static str, u64>,
    probes_attached: u64,
    last_rescan: Instant,
    self_pid: i32,
    logged_once: HashSet<String>,
    /// Rows made outside `poll` (processes found at start), returned by the next poll.
    carry: Output,
    /// Processes seen calling a GPU library in this batch, not yet reported.
    to_report: Vec<i32>,
}

fn check_ring(name: &str, bytes: u32) -> Result<(), EbpfError> {
    if bytes < 4096 || !bytes.is_power_of_two() {
        return Err(EbpfError::Config(format!("{name} = {bytes}: must be a power of two of at least 4096")));
    }
    Ok(())
}

impl Tracer {
    /// Loads the programs, attaches the exec/exit hooks, scans `/proc` and
    /// probes every GPU library file found. A part that cannot run is left
    /// off, with the reason in [`Tracer::parts`]; the tracer fails only when
    /// BPF cannot be used at all ([`EbpfError::Unavailable`] names what is
    /// missing: privileges, kernel) or the programs do not load.
    pub fn start(cfg: TracerConfig) -> Result<Tracer, EbpfError> {
        cfg.validate()?;
        let cap = capability::capability();
        if !cap.usable {
            return Err(EbpfError::Unavailable(cap.reason));
        }
        for w in &cap.warnings {
            warn!("ebpf: {w}");
        }
        let loaded = load::load(&cfg)?;

        let sink: Arc<Mutex<Vec<Record>>> = Arc::default();
        let ring = |map: &libbpf_rs::MapMut<'_>| -> Result<RingBuffer<'static>, EbpfError> {
            let sink = Arc::clone(&sink);
            let mut b = RingBufferBuilder::new();
            b.add(map, move |data: &[u8]| {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(Record::decode(data));
                0
            })
            .map_err(EbpfError::Load)?;
            b.build().map_err(EbpfError::Load)
        };
        let skel = loaded.skel;
        let rings =
            Rings { proc: ring(&skel.maps.proc_rb)?, nccl: ring(&skel.maps.nccl_rb)?, cuda: ring(&skel.maps.cuda_rb)? };

        let mut parts = loaded.parts;
        parts.push(load::proc_scan_status(&cfg.proc_root, cfg.rescan_period));
        let mut tracer = Tracer {
            rings,
            _hook_links: loaded.hook_links,
            exit_hooked: loaded.exit_hooked,
            parts,
            part_errors: BTreeMap::new(),
            libs: HashMap::new(),
            skel,
            sink,
            cfg,
            pids: HashMap::new(),
            comms: HashMap::new(),
            events: [0; 3],
            errors: BTreeMap::new(),
            probes_attached: 0,
            last_rescan: Instant::now(),
            self_pid: std::process::id() as i32,
            logged_once: HashSet::new(),
            carry: Output::default(),
            to_report: Vec::new(),
        };
        // Logged at debug only: the caller reports the parts (the agent logs each once).
        for p in tracer.parts.clone() {
            debug!("ebpf {}: {:?}: {}", p.part, p.state, p.detail);
            if p.state == PartState::Down {
                tracer.count_part(p.part);
            }
        }
        for path in tracer.cfg.extra_libraries.clone() {
            tracer.attach_extra(&path)?;
        }
        // Rows of processes found running; the first poll returns them.
        let mut out = Output::default();
        tracer.rescan(&mut out, true);
        tracer.carry = out;
        info!("ebpf tracer started: {} library files, {} probes", tracer.libs.len(), tracer.probes_attached);
        Ok(tracer)
    }

    /// What [`Tracer::start`] would run with `cfg`, found by doing it: loads
    /// the programs, attaches the exec/exit hooks and a uprobe pair (to this
    /// process only), lists `/proc`, then detaches and unloads everything.
    /// For `strand-agent check`.
    pub fn check(cfg: &TracerConfig) -> Result<Vec<PartStatus>, EbpfError> {
        cfg.validate()?;
        let cap = capability::capability();
        if !cap.usable {
            return Err(EbpfError::Unavailable(cap.reason));
        }
        let loaded = load::load(cfg)?;
        let mut parts = loaded.parts.clone();
        parts.push(load::proc_scan_status(&cfg.proc_root, cfg.rescan_period));
        drop(loaded);
        Ok(parts)
    }

    /// Every part, whether it runs, and how or why not.
    pub fn parts(&self) -> &[PartStatus] {
        &self.parts
    }
}

impl Tracer {
    /// Drains the ring buffers without blocking, rescans `/proc` when
    /// `rescan_period` has passed, and appends the finished rows to `out`.
    /// Call it on a timer (every 100–250 ms): the kernel side never wakes
    /// user space per record.
    pub fn poll(&mut self, out: &mut Output) -> Result<(), EbpfError> {
        let carry = std::mem::take(&mut self.carry);
        out.nccl_calls.extend(carry.nccl_calls);
        out.cuda_sync_calls.extend(carry.cuda_sync_calls);
        out.process_events.extend(carry.process_events);

        // Process records first: an exit drained here was written after every
        // call of its process, and those calls are then in the rings drained next.
        for (part, source_name) in [(Part::Exec, "process"), (Part::Nccl, "nccl"), (Part::CudaSync, "cuda_sync")] {
            let rb = match part {
                Part::Exec => &self.rings.proc,
                Part::Nccl => &self.rings.nccl,
                _ => &self.rings.cuda,
            };
            if let Err(source) = rb.consume() {
                self.count_part(part);
                return Err(EbpfError::Ring { source_name, source });
            }
        }
        let records = std::mem::take(&mut *self.sink.lock().unwrap_or_else(|e| e.into_inner()));
        let clock = MonoToUtc::measure();

        let mut execd = Vec::new();
        for r in &records {
            match r {
                Record::Exec(e) => {
                    self.events[2] += 1;
                    execd.push(self.on_exec(e));
                }
                Record::Exit(_) => self.events[2] += 1,
                Record::NcclCall(_) | Record::NcclInit(_) | Record::NcclVersion(_) => self.events[0] += 1,
                Record::CudaSync(_) => self.events[1] += 1,
                Record::Malformed => self.count("event_malformed"),
            }
        }
        // The dynamic loader has mapped the new programs' libraries by now.
        for pid in execd.into_iter().flatten() {
            self.scan_pid(pid, &clock, out);
        }
        for r in &records {
            match r {
                Record::NcclVersion(v) => self.on_nccl_version(v),
                Record::NcclInit(i) => self.on_nccl_init(i, &clock, out),
                Record::NcclCall(c) => self.on_nccl_call(c, &clock, out),
                Record::CudaSync(c) => self.on_cuda_sync(c, &clock, out),
                _ => {}
            }
        }
        for pid in std::mem::take(&mut self.to_report) {
            self.report(pid, &clock, out);
        }
        for r in &records {
            if let Record::Exit(e) = r {
                self.on_exit(e, &clock, out);
            }
        }
        if self.last_rescan.elapsed() >= self.cfg.rescan_period {
            self.rescan(out, false);
        }
        Ok(())
    }

    /// Events and losses per source, probes, and counted problems.
    pub fn stats(&self) -> Stats {
        let mut lost = [0u64; NR_COUNTERS as usize];
        for (i, slot) in lost.iter_mut().enumerate() {
            if let Ok(Some(per_cpu)) = self.skel.maps.lost.lookup_percpu(&(i as u32).to_ne_bytes(), MapFlags::ANY) {
                *slot = per_cpu
                    .iter()
                    .filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_ne_bytes))
                    .sum();
            }
        }
        let mut calls = BTreeMap::new();
        for idx in 0..NR_CALLS {
            let Some(name) = call_name(idx) else { continue };
            if let Ok(Some(per_cpu)) = self.skel.maps.calls.lookup_percpu(&idx.to_ne_bytes(), MapFlags::ANY) {
                let n: u64 = per_cpu
                    .iter()
                    .filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_ne_bytes))
                    .sum();
                if n > 0 {
                    calls.insert(name, n);
                }
            }
        }
        let src = |events: u64, a: u32, b: u32| SourceStats { events, lost: lost[a as usize] + lost[b as usize] };
        Stats {
            nccl: src(self.events[0], SRC_NCCL, SRC_NCCL_STATE),
            cuda_sync: src(self.events[1], SRC_CUDA, SRC_CUDA_STATE),
            process: src(self.events[2], SRC_PROC, SRC_TRACKED),
            library_files: self.libs.len() as u64,
            probes_attached: self.probes_attached,
            errors: self.errors.clone(),
            part_errors: self.part_errors.iter().map(|(p, n)| (p.name(), *n)).collect(),
            calls,
        }
    }

    fn count(&mut self, reason: &'static str) {
        *self.errors.entry(reason).or_default() += 1;
    }

    fn count_part(&mut self, part: Part) {
        *self.part_errors.entry(part).or_default() += 1;
    }

    /// Logs a problem once per distinct text (bounded), then only counts it.
    fn warn_once(&mut self, text: String) {
        if self.logged_once.len() < 1024 && self.logged_once.insert(text.clone()) {
            warn!("ebpf: {text}");
        }
    }

    fn on_exec(&mut self, e: &types::proc_exec) -> Option<i32> {
        let pid = e.pid as i32;
        if !self.pids.contains_key(&pid) && self.pids.len() >= MAX_PIDS {
            self.count("pid_table_full");
            return None;
        }
        // A new program image: the communicators of the old one are gone.
        self.forget_comms(pid);
        let exec = ExecInfo {
            ts_mono: e.ts_ns as i64,
            ppid: e.ppid as i32,
            comm: c_string(&e.comm),
            filename: c_string(&e.filename),
            seen: Instant::now(),
        };
        self.pids.insert(pid, PidState { exec: Some(exec), ..PidState::default() });
        Some(pid)
    }

    fn on_exit(&mut self, e: &types::proc_exit, clock: &MonoToUtc, out: &mut Output) {
        let pid = e.pid as i32;
        let st = self.pids.remove(&pid).unwrap_or_default();
        let (exit_code, signal) = exit_status(e.exit_code);
        out.process_events.push(ProcessEvent {
            cluster: self.cfg.cluster.clone(),
            node: self.cfg.node.clone(),
            ts_ns: clock.to_utc(e.ts_ns as i64),
            pid,
            ppid: Some(e.ppid as i32),
            job_id: None,
            kind: "exit".to_string(),
            comm: Some(c_string(&e.comm)),
            exe: st.exe.or(st.exec.map(|x| x.filename)),
            exit_code,
            signal,
            gpu_libraries: st.libs.names(),
        });
        self.forget_comms(pid);
    }

    /// Drops what is known of the communicators of `pid`, here and in BPF.
    fn forget_comms(&mut self, pid: i32) {
        let keys: Vec<_> = self.comms.keys().filter(|(p, _)| *p == pid).copied().collect();
        for (p, comm) in keys {
            self.comms.remove(&(p, comm));
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&(p as u32).to_ne_bytes());
            key[8..].copy_from_slice(&comm.to_ne_bytes());
            // Absent when it was destroyed already: nothing to do.
            let _ = self.skel.maps.comms.delete(&key);
        }
    }

    /// Notes that `pid` called into a GPU library. Its `exec` or `running`
    /// row is written once the whole batch is read (see [`Tracer::poll`]),
    /// so that it lists every library the batch showed.
    fn note_gpu(&mut self, pid: i32, kind: LibKind, clock: &MonoToUtc, out: &mut Output) {
        if !self.pids.contains_key(&pid) && self.pids.len() >= MAX_PIDS {
            self.count("pid_table_full");
            return;
        }
        let st = self.pids.entry(pid).or_default();
        st.libs.insert(kind);
        if st.reported {
            return;
        }
        let first_sight = st.fingerprint.is_none() && !st.first_scan_done;
        st.first_scan_done = true;
        if !self.to_report.contains(&pid) {
            self.to_report.push(pid);
        }
        if first_sight {
            // Read its maps while it may still be alive: its other
            // libraries and the file that gives its NCCL version.
            self.scan_pid(pid, clock, out);
        }
    }

    fn report(&mut self, pid: i32, clock: &MonoToUtc, out: &mut Output) {
        let root = self.cfg.proc_root.clone();
        let Some(st) = self.pids.get_mut(&pid) else { return };
        if st.reported {
            return;
        }
        st.reported = true;
        let event = match st.exec.take() {
            Some(x) => {
                st.exe = Some(x.filename.clone());
                ProcessEvent {
                    cluster: self.cfg.cluster.clone(),
                    node: self.cfg.node.clone(),
                    ts_ns: clock.to_utc(x.ts_mono),
                    pid,
                    ppid: Some(x.ppid),
                    job_id: None,
                    kind: "exec".to_string(),
                    comm: Some(x.comm),
                    exe: Some(x.filename),
                    exit_code: None,
                    signal: None,
                    gpu_libraries: st.libs.names(),
                }
            }
            None => {
                let stat = procfs::read_stat(&root, pid);
                st.exe = procfs::read_exe(&root, pid);
                ProcessEvent {
                    cluster: self.cfg.cluster.clone(),
                    node: self.cfg.node.clone(),
                    ts_ns: strand_schemas::clock::utc_now_ns(),
                    pid,
                    ppid: stat.as_ref().map(|s| s.ppid),
                    job_id: None,
                    kind: "running".to_string(),
                    comm: stat.map(|s| s.comm),
                    exe: st.exe.clone(),
                    exit_code: None,
                    signal: None,
                    gpu_libraries: st.libs.names(),
                }
            }
        };
        out.process_events.push(event);
        // Its exit is reported from now on (probe hits also do this in BPF).
        let key = (pid as u32).to_ne_bytes();
        let one = 1u32.to_ne_bytes();
        if self.skel.maps.tracked.update(&key, &one, MapFlags::ANY).is_err() {
            self.count("tracked_map_full");
        }
    }

    /// Scans all of `/proc`; forgets processes that are gone.
    fn rescan(&mut self, out: &mut Output, initial: bool) {
        self.last_rescan = Instant::now();
        let clock = MonoToUtc::measure();
        let root = self.cfg.proc_root.clone();
        let pids = match procfs::list_pids(&root) {
            Ok(p) => p,
            Err(e) => {
                self.count("proc_unreadable");
                self.count_part(Part::ProcScan);
                self.warn_once(format!("cannot list {}: {e}", root.display()));
                return;
            }
        };
        for &pid in &pids {
            self.scan_pid(pid, &clock, out);
        }
        let alive: HashSet<i32> = pids.into_iter().collect();
        let gone: Vec<i32> = self.pids.keys().filter(|p| !alive.contains(p)).copied().collect();
        let tracking = self.exit_hooked;
        for pid in gone {
            if let Some(st) = self.pids.get_mut(&pid)
                && st.reported
                && tracking
            {
                // Its exit record may still be on the way; give it one rescan.
                st.missing_scans += 1;
                if st.missing_scans < 2 {
                    continue;
                }
                self.count("exit_missed");
            }
            self.pids.remove(&pid);
            self.forget_comms(pid);
        }
        for st in self.pids.values_mut() {
            if st.exec.as_ref().is_some_and(|x| x.seen.elapsed() > EXEC_WATCH) {
                st.exec = None;
            }
        }
        if initial {
            debug!("ebpf: initial scan found {} processes", self.pids.len());
        }
    }

    /// Reads the maps of `pid` when they may have changed, probes new GPU
    /// library files, and reports the process once it maps one.
    fn scan_pid(&mut self, pid: i32, clock: &MonoToUtc, out: &mut Output) {
        if pid == self.self_pid {
            return;
        }
        let root = self.cfg.proc_root.clone();
        let Some(stat) = procfs::read_stat(&root, pid) else { return };
        let fp = (stat.starttime, stat.vsize);
        if !self.pids.contains_key(&pid) && self.pids.len() >= MAX_PIDS {
            self.count("pid_table_full");
            return;
        }
        let st = self.pids.entry(pid).or_default();
        if let Some(old) = st.fingerprint {
            if old.0 != fp.0 {
                // The pid was reused by another process.
                *st = PidState::default();
            } else if old == fp
                || (st.reported
                    && st.libs.contains(LibKind::Nccl)
                    && st.libs.contains(LibKind::Cudart)
                    && st.libs.contains(LibKind::Cuda))
            {
                return;
            }
        }
        let maps = match procfs::read_maps(&root, pid) {
            Ok(m) => m,
            // Gone between the two reads.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => return,
            Err(e) => {
                // Not retried until the process changes (e.g. a protected init).
                if let Some(st) = self.pids.get_mut(&pid) {
                    st.fingerprint = Some(fp);
                }
                self.count("maps_unreadable");
                self.warn_once(format!("cannot read /proc/{pid}/maps: {e}"));
                return;
            }
        };
        let (mappings, malformed) = procfs::gpu_mappings(&maps);
        if malformed > 0 {
            *self.errors.entry("maps_malformed_line").or_default() += malformed;
        }
        let mut libs = LibSet::default();
        let mut nccl_files = Vec::new();
        for (kind, m) in mappings {
            let path = procfs::path_in(&root, pid, &m.path);
            let key = self.attach_file(Some(kind), &path);
            libs.insert(kind);
            if kind == LibKind::Nccl
                && let Some(key) = key
            {
                nccl_files.push(key);
            }
        }
        let Some(st) = self.pids.get_mut(&pid) else { return };
        st.fingerprint = Some(fp);
        st.libs = st.libs.union(libs);
        for key in nccl_files {
            if !st.nccl_files.contains(&key) {
                st.nccl_files.push(key);
            }
        }
        if !st.libs.is_empty() && !st.reported {
            self.report(pid, clock, out);
        }
    }

    fn attach_extra(&mut self, path: &Path) -> Result<(), EbpfError> {
        std::fs::metadata(path).map_err(|source| EbpfError::Io { path: path.to_path_buf(), source })?;
        let kind = path.to_str().and_then(LibKind::from_path);
        self.attach_file(kind, path);
        Ok(())
    }

    /// Probes a library file once per (device, inode); returns its key.
    /// `kind` is guessed from the exported symbols when the name does not tell.
    fn attach_file(&mut self, kind: Option<LibKind>, path: &Path) -> Option<FileKey> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.count("library_unreadable");
                self.warn_once(format!("cannot stat library {}: {e}", path.display()));
                return None;
            }
        };
        let key = (meta.dev(), meta.ino());
        if self.libs.contains_key(&key) {
            return Some(key);
        }
        if self.libs.len() >= self.cfg.max_library_files {
            self.count("library_limit");
            self.warn_once(format!(
                "not probing {}: already {} library files (max_library_files)",
                path.display(),
                self.libs.len()
            ));
            return None;
        }
        let elf = match Elf::open(path) {
            Ok(e) => e,
            Err(e) => {
                self.count("library_not_elf");
                self.warn_once(format!("cannot probe {}: {e}", path.display()));
                return None;
            }
        };
        let wanted: Vec<&str> = PROBES.iter().map(|p| p.symbol).collect();
        let offsets = match elf.function_offsets(&wanted) {
            Ok(o) => o,
            Err(e) => {
                self.count("library_no_dynsym");
                self.warn_once(format!("cannot probe {}: {e}", path.display()));
                return None;
            }
        };
        let kind = kind.or_else(|| {
            [
                ("ncclAllReduce", LibKind::Nccl),
                ("cudaStreamSynchronize", LibKind::Cudart),
                ("cuStreamSynchronize", LibKind::Cuda),
            ]
            .into_iter()
            .find(|(s, _)| offsets.contains_key(*s))
            .map(|(_, k)| k)
        });
        let Some(kind) = kind else {
            self.count("library_unknown_kind");
            self.warn_once(format!("{} exports none of the probed functions", path.display()));
            return None;
        };
        let version = if kind == LibKind::Nccl {
            match elf.rodata_version_after(b"NCCL version ") {
                Ok(Some(s)) => NcclVersion::parse(&s),
                _ => None,
            }
        } else {
            None
        };
        if kind == LibKind::Nccl && version.is_none() {
            self.count("nccl_version_string_missing");
        }

        let mut links = Vec::new();
        let mut missing = Vec::new();
        for spec in PROBES.iter().filter(|p| p.kind == kind) {
            let Some(&offset) = offsets.get(spec.symbol) else {
                if !OPTIONAL.contains(&spec.symbol) {
                    missing.push(spec.symbol);
                }
                continue;
            };
            for (prefix, retprobe) in [("enter_", false), ("exit_", true)] {
                let name = format!("{prefix}{}", spec.symbol);
                let Some(prog) = self.skel.object().progs_mut().find(|p| p.name() == name.as_str()) else {
                    self.count("program_missing");
                    continue;
                };
                let opts = UprobeOpts { retprobe, ..UprobeOpts::default() };
                match prog.attach_uprobe_with_opts(-1, path, offset as usize, opts) {
                    Ok(link) => links.push(link),
                    Err(e) => {
                        self.count("attach_failed");
                        self.count_part(if kind == LibKind::Nccl { Part::Nccl } else { Part::CudaSync });
                        self.warn_once(format!("cannot attach {name} to {}: {e}", path.display()));
                    }
                }
            }
        }
        for symbol in &missing {
            self.count("symbol_missing");
            self.warn_once(format!("{} does not export {symbol}: not probed", path.display()));
        }
        self.probes_attached += links.len() as u64;
        info!(
            "ebpf: probing {} ({}{}), {} probes",
            path.display(),
            kind.name(),
            version.map(|v| format!(" {v}")).unwrap_or_default(),
            links.len()
        );
        self.libs.insert(key, LibFile { kind, path: path.to_path_buf(), version, links });
        Some(key)
    }

    /// The library files probed, for `strand-agent check` and tests.
    pub fn library_files(&self) -> Vec<LibraryFile> {
        let mut v: Vec<_> = self
            .libs
            .values()
            .map(|l| LibraryFile {
                path: l.path.clone(),
                kind: l.kind.name(),
                nccl_version: l.version.map(|v| v.to_string()),
                probes: l.links.len(),
            })
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    fn on_nccl_version(&mut self, v: &types::nccl_version) {
        if let Some(version) = NcclVersion::from_code(v.version) {
            self.pids.entry(v.pid as i32).or_default().nccl_version = Some(version);
        }
    }

    /// The NCCL release `pid` runs, when it is known without guessing: the
    /// version of the libnccl file(s) it maps, else what its ncclGetVersion
    /// returned, else the version every probed libnccl file shares.
    fn nccl_version_of(&mut self, pid: i32) -> Option<NcclVersion> {
        let st = self.pids.get(&pid);
        let mapped: HashSet<Option<NcclVersion>> = st
            .map(|s| s.nccl_files.iter().filter_map(|k| self.libs.get(k)).map(|l| l.version).collect())
            .unwrap_or_default();
        let from_call = st.and_then(|s| s.nccl_version);
        let all: HashSet<Option<NcclVersion>> =
            self.libs.values().filter(|l| l.kind == LibKind::Nccl).map(|l| l.version).collect();
        let only = |set: &HashSet<Option<NcclVersion>>| match set.iter().collect::<Vec<_>>().as_slice() {
            [Some(v)] => Some(*v),
            _ => None,
        };
        let v = only(&mapped).or(from_call).or_else(|| only(&all));
        if v.is_none() {
            self.count("nccl_version_unknown");
        }
        let v = v?;
        if (v.major, v.minor) > NEWEST_HASHED {
            self.count("nccl_version_unsupported");
            self.warn_once(format!(
                "NCCL {v} is newer than {}: its commHash scheme is unverified, communicator hashes left null",
                nccl::NEWEST_CHECKED
            ));
            return None;
        }
        Some(v)
    }

    fn nccl_row(&self, pid: i32, tid: i32, op: &str, enter: i64, exit: Option<i64>) -> NcclCall {
        NcclCall {
            cluster: self.cfg.cluster.clone(),
            node: self.cfg.node.clone(),
            pid,
            tid,
            job_id: None,
            enter_ns: enter,
            exit_ns: exit,
            op: op.to_string(),
            count: None,
            datatype: None,
            bytes: None,
            redop: None,
            root: None,
            peer: None,
            comm_ptr: None,
            comm_hash: None,
            comm_name: None,
            rank: None,
            nranks: None,
            seq: None,
            stream: None,
            ret: None,
            group_id: None,
            color: None,
            key: None,
            new_comm_ptr: None,
            gpu_index: None,
            gpu_uuid: None,
            kernel_start_ns: None,
            kernel_end_ns: None,
            source: "ebpf".to_string(),
        }
    }

    fn on_nccl_init(&mut self, r: &types::nccl_init, clock: &MonoToUtc, out: &mut Output) {
        let Some(op) = nccl::op_name(r.op) else {
            self.count("event_malformed");
            return;
        };
        let (pid, tid) = (r.pid as i32, r.tid as i32);
        self.note_gpu(pid, LibKind::Nccl, clock, out);
        let unfinished = r.flags & F_UNFINISHED != 0;
        let hash =
            if r.flags & F_UID != 0 { self.nccl_version_of(pid).map(|v| nccl::comm_hash(v, &r.uid)) } else { None };
        let init_all = r.op == OP_INIT_ALL;
        let ncomms = (r.ncomms as usize).min(r.comms.len());
        for (i, &comm) in r.comms[..ncomms].iter().enumerate() {
            if comm != 0 {
                let rank = if init_all { Some(i as i32) } else { Some(r.rank) };
                self.comms.insert((pid, comm), CommInfo { hash, rank, nranks: Some(r.nranks) });
            }
        }
        let exit = (!unfinished).then(|| clock.to_utc(r.exit_ns as i64));
        let mut row = self.nccl_row(pid, tid, op, clock.to_utc(r.enter_ns as i64), exit);
        row.comm_hash = hash.map(|h| h as i64);
        row.rank = (!init_all).then_some(r.rank);
        row.nranks = Some(r.nranks);
        row.ret = (!unfinished).then_some(r.ret);
        row.group_id = (r.group_id != 0).then_some(r.group_id as i64);
        row.new_comm_ptr = r.comms[..ncomms].first().filter(|&&c| c != 0).map(|&c| c as i64);
        out.nccl_calls.push(row);
    }

    fn on_nccl_call(&mut self, r: &types::nccl_call, clock: &MonoToUtc, out: &mut Output) {
        let Some(op) = nccl::op_name(r.op) else {
            self.count("event_malformed");
            return;
        };
        let (pid, tid) = (r.pid as i32, r.tid as i32);
        self.note_gpu(pid, LibKind::Nccl, clock, out);
        let unfinished = r.flags & F_UNFINISHED != 0;
        let exit = (!unfinished).then(|| clock.to_utc(r.exit_ns as i64));
        let mut row = self.nccl_row(pid, tid, op, clock.to_utc(r.enter_ns as i64), exit);
        row.ret = (!unfinished).then_some(r.ret);
        row.group_id = (r.group_id != 0).then_some(r.group_id as i64);

        let data_op = r.op <= OP_ALLTOALL || r.op == OP_SEND || r.op == OP_RECV;
        let mut identity = None;
        if data_op {
            let count = i64::try_from(r.count).ok();
            row.count = count;
            match nccl::datatype(r.datatype) {
                Some((name, size)) => {
                    row.datatype = Some(name.to_string());
                    row.bytes = count.and_then(|c| c.checked_mul(size));
                }
                None => self.count("nccl_datatype_unknown"),
            }
            if matches!(r.op, 1 | OP_REDUCE | 6) {
                row.redop = nccl::redop(r.redop).map(str::to_string);
            }
            if matches!(r.op, OP_BROADCAST | OP_BCAST | OP_REDUCE) {
                row.root = Some(r.root_peer);
            }
            if matches!(r.op, OP_SEND | OP_RECV) {
                row.peer = Some(r.root_peer);
            }
            row.stream = Some(r.stream as i64);
            row.comm_ptr = Some(r.comm as i64);
            row.seq = (r.flags & F_COMM_KNOWN != 0).then_some(r.seq as i64);
            identity = self.comms.get(&(pid, r.comm)).copied();
        } else if r.op == OP_DESTROY || r.op == OP_ABORT {
            row.comm_ptr = Some(r.comm as i64);
            identity = self.comms.get(&(pid, r.comm)).copied();
            if !unfinished {
                self.comms.remove(&(pid, r.comm));
            }
        } else if r.op == OP_SPLIT {
            row.comm_ptr = Some(r.comm as i64);
            row.color = Some(r.color);
            row.key = Some(r.key);
            row.new_comm_ptr = (r.new_comm != 0).then_some(r.new_comm as i64);
            if r.new_comm == 0 && r.color != -1 && !unfinished && (r.ret == 0 || r.ret == 7) {
                // Inside a group or non-blocking, NCCL writes the child after
                // the call returns: that child stays unidentified.
                self.count("nccl_split_child_deferred");
            }
            let parent = self.comms.get(&(pid, r.comm)).and_then(|c| c.hash);
            let hash = match parent {
                Some(parent) => self.nccl_version_of(pid).and_then(|v| {
                    // From 2.24 the hash takes NCCL's split counter, valid only
                    // when every split of the parent was seen.
                    let counted = r.flags & F_SPLIT_COUNT != 0 || (v.major, v.minor) < (2, 24);
                    counted.then(|| nccl::split_hash(v, parent, r.split_count, r.color)).flatten()
                }),
                None => None,
            };
            // Rank and size in the child are decided by all ranks' colors and
            // keys, which one process does not see: left unknown.
            let child = CommInfo { hash, rank: None, nranks: None };
            if r.new_comm != 0 {
                self.comms.insert((pid, r.new_comm), child);
            }
            identity = Some(child);
        }
        if let Some(id) = identity {
            row.comm_hash = id.hash.map(|h| h as i64);
            row.rank = id.rank;
            row.nranks = id.nranks;
        }
        if row.comm_ptr.is_some() && row.comm_hash.is_none() {
            self.count("nccl_rows_without_comm_hash");
        }
        out.nccl_calls.push(row);
    }

    fn on_cuda_sync(&mut self, r: &types::cuda_sync, clock: &MonoToUtc, out: &mut Output) {
        let Some(api) = cuda_api_name(r.api) else {
            self.count("event_malformed");
            return;
        };
        let pid = r.pid as i32;
        let kind = if r.api <= 3 { LibKind::Cudart } else { LibKind::Cuda };
        self.note_gpu(pid, kind, clock, out);
        if r.flags & F_UNFINISHED != 0 {
            // cuda_sync_calls.exit_ns is required: a call cut by the thread's
            // exit is counted, not written.
            self.count("cuda_sync_unfinished");
            return;
        }
        let (enter, exit) = (clock.to_utc(r.enter_ns as i64), clock.to_utc(r.exit_ns as i64));
        out.cuda_sync_calls.push(CudaSyncCall {
            cluster: self.cfg.cluster.clone(),
            node: self.cfg.node.clone(),
            pid,
            tid: r.tid as i32,
            job_id: None,
            enter_ns: enter,
            exit_ns: exit,
            blocked_ns: exit - enter,
            api: api.to_string(),
            handle: (r.flags & F_HANDLE != 0).then_some(r.handle as i64),
            ret: Some(r.ret),
            gpu_index: None,
            source: "ebpf".to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn tracer_is_send() {
        assert_send::<Tracer>();
    }

    #[test]
    fn call_slots_name_every_probe() {
        for p in PROBES {
            let idx = match p.kind {
                LibKind::Nccl => nccl_op_of(p.symbol).expect("numbered"),
                _ => CALL_CUDA + (1..=6).find(|a| cuda_api_name(*a) == Some(p.symbol)).expect("a cuda_api"),
            };
            assert!(idx < NR_CALLS, "{}", p.symbol);
            assert_eq!(call_name(idx), Some(p.symbol));
        }
        // The NCCL order of PROBES is the numbering of enum nccl_op: follow
        // NCCL_PROBE(symbol, OP_NAME) in the program to OP_NAME = n in the header.
        let (c, h) = (include_str!("bpf/strand.bpf.c"), include_str!("bpf/strand.h"));
        for p in PROBES.iter().filter(|p| p.kind == LibKind::Nccl) {
            let probe = format!("NCCL_PROBE({}, ", p.symbol);
            let line = c.lines().find(|l| l.starts_with(&probe)).expect("a NCCL_PROBE line");
            let name = line[probe.len()..].trim_end_matches(')');
            let value = h
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{name} = ")))
                .and_then(|v| v.trim_end_matches(',').parse::<u32>().ok());
            assert_eq!(value, nccl_op_of(p.symbol), "{} is {name}", p.symbol);
        }
    }

    #[test]
    fn duplicate_hooks_are_refused() {
        let mut cfg = TracerConfig::new("c", "n");
        assert!(cfg.validate().is_ok());
        cfg.process_hooks = vec![ProcessHook::Tracepoint, ProcessHook::Tracepoint];
        assert!(matches!(cfg.validate(), Err(EbpfError::Config(m)) if m.contains("twice")));
    }

    #[test]
    fn config_checks_ring_sizes() {
        assert!(check_ring("x", 4096).is_ok());
        assert!(check_ring("x", 4 << 20).is_ok());
        assert!(check_ring("x", 4095).is_err());
        assert!(check_ring("x", 3 << 20).is_err());
    }

    #[test]
    fn every_probe_has_its_programs() {
        let src = include_str!("bpf/strand.bpf.c");
        for p in PROBES {
            let macro_ = if p.kind == LibKind::Nccl { "NCCL_PROBE" } else { "CUDA_PROBE" };
            assert!(src.contains(&format!("{macro_}({},", p.symbol)), "no BPF program for {}", p.symbol);
        }
    }
}
