//! One injection client's connection: wire frames in, table rows out.
//!
//! Per connection it keeps the names the client defined (in the decoder),
//! the UUID of each CUDA device ordinal, the device of each context, and the
//! launching API call of recent correlation ids (for `launch_ns`,
//! `launch_tid` and the thread of synchronization records).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strand_inject::wire::{self, Activity, Connection, WireError};
use strand_schemas::clock::MonoToUtc;
use strand_schemas::tables::{CudaSyncCall, KernelEvent};

use crate::context::SourceContext;

/// API records remembered per connection, for records completing later.
const LAUNCHES_KEPT: usize = 1 << 16;
/// Frames a synchronization record waits for its API record.
const SYNC_WAIT_FRAMES: u32 = 2;
/// Synchronization records waiting at most (bounded memory).
const SYNC_PENDING_MAX: usize = 4096;

/// Rows and counts from one frame.
#[derive(Debug, Default)]
pub(crate) struct FrameRows {
    pub header: wire::Header,
    pub kernels: Vec<KernelEvent>,
    pub syncs: Vec<CudaSyncCall>,
    /// Records received, by `kind` label.
    pub received: [(&'static str, u64); 6],
    pub no_timestamp: u64,
    pub sync_without_thread: u64,
    pub frames_lost: u64,
}

#[derive(Debug, Clone, Copy)]
struct Launch {
    start: u64,
    /// Thread id in the client's pid namespace.
    tid: u32,
    name: u32,
    ret: u32,
    runtime: bool,
}

/// Host tids of a containerised process's threads (from `NSpid`).
#[derive(Debug)]
struct Tids {
    proc_root: PathBuf,
    pid: i32,
    /// The client's pid is ours: tids need no translation.
    same_namespace: bool,
    map: HashMap<u32, i32>,
    refreshed: Option<Instant>,
}

impl Tids {
    fn host_tid(&mut self, tid: u32) -> Option<i32> {
        if self.same_namespace {
            return i32::try_from(tid).ok();
        }
        if let Some(t) = self.map.get(&tid) {
            return Some(*t);
        }
        if self.refreshed.is_none_or(|r| r.elapsed() > Duration::from_secs(1)) {
            self.refreshed = Some(Instant::now());
            self.map = ns_tids(&self.proc_root, self.pid);
        }
        self.map.get(&tid).copied()
    }
}

/// Maps each thread of `pid` from its innermost-namespace tid to its tid in
/// the namespace of `proc_root` (`NSpid:` of `/proc/<pid>/task/*/status`).
pub(crate) fn ns_tids(proc_root: &Path, pid: i32) -> HashMap<u32, i32> {
    let mut map = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(proc_root.join(pid.to_string()).join("task")) else { return map };
    for task in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else { continue };
        if let Some(line) = status.lines().find_map(|l| l.strip_prefix("NSpid:")) {
            let ids: Vec<&str> = line.split_whitespace().collect();
            if let (Some(host), Some(inner)) =
                (ids.first().and_then(|v| v.parse().ok()), ids.last().and_then(|v| v.parse().ok()))
            {
                map.insert(inner, host);
            }
        }
    }
    map
}

/// State of one connection.
pub(crate) struct Session {
    ctx: Arc<SourceContext>,
    /// The client's pid in the agent's namespace (SO_PEERCRED).
    pid: i32,
    conn: Connection,
    devices: HashMap<u32, (Arc<str>, Option<i32>)>,
    contexts: HashMap<u32, u32>,
    launches: HashMap<u32, Launch>,
    launch_order: VecDeque<u32>,
    pending_syncs: VecDeque<(wire::Sync, u32)>,
    copy_names: HashMap<(u8, u8, u8, u8), Arc<str>>,
    /// Kernel names already classified (whether each is a communication kernel).
    comm_names: HashMap<Arc<str>, bool>,
    unknown: Arc<str>,
    tids: Tids,
}

impl Session {
    /// `pid`: the peer's pid as the agent sees it; `proc_root`: `/proc` but in tests.
    pub fn new(ctx: Arc<SourceContext>, pid: i32, proc_root: PathBuf) -> Self {
        Self {
            ctx,
            pid,
            conn: Connection::new(),
            devices: HashMap::new(),
            contexts: HashMap::new(),
            launches: HashMap::new(),
            launch_order: VecDeque::new(),
            pending_syncs: VecDeque::new(),
            copy_names: HashMap::new(),
            comm_names: HashMap::new(),
            unknown: Arc::from("(unknown)"),
            tids: Tids { proc_root, pid, same_namespace: false, map: HashMap::new(), refreshed: None },
        }
    }

    /// Decodes one frame into rows. On error nothing of the frame is used.
    pub fn frame(&mut self, bytes: &[u8]) -> Result<FrameRows, WireError> {
        let frame = self.conn.decode(bytes)?;
        self.tids.same_namespace = frame.header.pid as i64 == self.pid as i64;
        let clock = MonoToUtc::measure();
        self.ctx.note_gpu_pids(&[self.pid]);
        let job = self.ctx.job_of(self.pid);
        let mut out = FrameRows {
            header: frame.header,
            frames_lost: frame.frames_lost,
            received: [("kernel", 0), ("memcpy", 0), ("memset", 0), ("sync", 0), ("api", 0), ("device", 0)],
            ..FrameRows::default()
        };
        // Devices and API calls first: a record may arrive in the same frame as
        // the launch or device it refers to, in either order.
        for a in &frame.activities {
            match a {
                Activity::Device(d) => {
                    out.received[5].1 += 1;
                    let uuid: Arc<str> = Arc::from(gpu_uuid(&d.uuid));
                    let index = self.ctx.gpu_index_of(&uuid);
                    self.devices.insert(d.id, (uuid, index));
                }
                Activity::Api(api) => {
                    out.received[4].1 += 1;
                    self.remember(api);
                }
                Activity::Kernel(k) => {
                    self.contexts.insert(k.context_id, k.device_id);
                }
                Activity::Memcpy(m) => {
                    self.contexts.insert(m.context_id, m.device_id);
                }
                Activity::Memset(m) => {
                    self.contexts.insert(m.context_id, m.device_id);
                }
                Activity::Sync(_) => {}
            }
        }
        // Synchronization records held back for their API record.
        let waiting = std::mem::take(&mut self.pending_syncs);
        for (s, waited) in waiting {
            self.sync_row(s, waited + 1, &clock, &job, &mut out);
        }
        for a in &frame.activities {
            match a {
                Activity::Kernel(k) => {
                    out.received[0].1 += 1;
                    if k.start == 0 && k.end == 0 {
                        out.no_timestamp += 1;
                        continue;
                    }
                    let name = self.name(k.name);
                    let row = self.row(
                        RowFields {
                            start: k.start,
                            end: k.end,
                            device: k.device_id,
                            context: k.context_id,
                            stream: k.stream_id,
                            correlation: k.correlation_id,
                            kind: "kernel",
                            name,
                        },
                        &clock,
                        &job,
                    );
                    out.kernels.push(KernelEvent {
                        grid_x: Some(k.grid[0]),
                        grid_y: Some(k.grid[1]),
                        grid_z: Some(k.grid[2]),
                        block_x: Some(k.block[0]),
                        block_y: Some(k.block[1]),
                        block_z: Some(k.block[2]),
                        collective: nccl_collective(&row.name),
                        ..row
                    });
                }
                Activity::Memcpy(m) => {
                    out.received[1].1 += 1;
                    if m.start == 0 && m.end == 0 {
                        out.no_timestamp += 1;
                        continue;
                    }
                    let name = self.copy_name(m.copy_kind, m.src_kind, m.dst_kind);
                    let row = self.row(
                        RowFields {
                            start: m.start,
                            end: m.end,
                            device: m.device_id,
                            context: m.context_id,
                            stream: m.stream_id,
                            correlation: m.correlation_id,
                            kind: "memcpy",
                            name,
                        },
                        &clock,
                        &job,
                    );
                    out.kernels.push(KernelEvent {
                        bytes: Some(m.bytes.min(i64::MAX as u64) as i64),
                        copy_kind: copy_direction(m.copy_kind).map(str::to_string),
                        ..row
                    });
                }
                Activity::Memset(m) => {
                    out.received[2].1 += 1;
                    if m.start == 0 && m.end == 0 {
                        out.no_timestamp += 1;
                        continue;
                    }
                    let name = self.set_name(m.memory_kind);
                    let row = self.row(
                        RowFields {
                            start: m.start,
                            end: m.end,
                            device: m.device_id,
                            context: m.context_id,
                            stream: m.stream_id,
                            correlation: m.correlation_id,
                            kind: "memset",
                            name,
                        },
                        &clock,
                        &job,
                    );
                    out.kernels.push(KernelEvent { bytes: Some(m.bytes.min(i64::MAX as u64) as i64), ..row });
                }
                Activity::Sync(s) => {
                    out.received[3].1 += 1;
                    self.sync_row(*s, 0, &clock, &job, &mut out);
                }
                Activity::Api(_) | Activity::Device(_) => {}
            }
        }
        Ok(out)
    }

    /// Synchronization records still waiting when the connection ends.
    pub fn abandon(&mut self) -> u64 {
        let n = self.pending_syncs.len() as u64;
        self.pending_syncs.clear();
        n
    }

    fn remember(&mut self, api: &wire::Api) {
        let runtime = api.domain == wire::domain::RUNTIME;
        // A runtime call and the driver call inside it share the correlation
        // id; the runtime call is the one the program made.
        if let Some(old) = self.launches.get(&api.correlation_id) {
            if old.runtime && !runtime {
                return;
            }
        } else {
            self.launch_order.push_back(api.correlation_id);
            if self.launch_order.len() > LAUNCHES_KEPT
                && let Some(old) = self.launch_order.pop_front()
            {
                self.launches.remove(&old);
            }
        }
        self.launches.insert(
            api.correlation_id,
            Launch { start: api.start, tid: api.thread_id, name: api.name, ret: api.ret, runtime },
        );
    }

    fn name(&self, id: u32) -> Arc<str> {
        self.conn.name(id).cloned().unwrap_or_else(|| self.unknown.clone())
    }

    fn row(&mut self, f: RowFields, clock: &MonoToUtc, job: &Option<String>) -> KernelEvent {
        let (uuid, index) = match self.devices.get(&f.device) {
            Some((u, i)) => (Some(u.clone()), *i),
            None => (None, None),
        };
        let launch = self.launches.get(&f.correlation).copied();
        let launch_tid = launch.and_then(|l| self.tids.host_tid(l.tid));
        // The one classification (strand_schemas::comm_kernels), once per kernel name.
        let comm = f.kind == "kernel"
            && match self.comm_names.get(&f.name) {
                Some(c) => *c,
                None => {
                    let c = self.ctx.comm_kernels.is_communication(&f.name);
                    if self.comm_names.len() >= 65_536 {
                        self.comm_names.clear();
                    }
                    self.comm_names.insert(f.name.clone(), c);
                    c
                }
            };
        KernelEvent {
            cluster: self.ctx.cluster.clone(),
            node: self.ctx.node.clone(),
            pid: self.pid,
            job_id: job.clone(),
            device_id: f.device as i32,
            gpu_uuid: uuid,
            gpu_index: index,
            start_ns: clock.to_utc(f.start as i64),
            end_ns: clock.to_utc(f.end as i64),
            context_id: f.context as i64,
            stream_id: f.stream as i64,
            correlation_id: f.correlation as i64,
            kind: f.kind.to_string(),
            category: strand_schemas::category::classify_marked(f.kind, || comm).as_str().to_string(),
            name: f.name,
            grid_x: None,
            grid_y: None,
            grid_z: None,
            block_x: None,
            block_y: None,
            block_z: None,
            bytes: None,
            copy_kind: None,
            launch_ns: launch.map(|l| clock.to_utc(l.start as i64)),
            launch_tid,
            collective: None,
            source: "cupti".to_string(),
        }
    }

    fn sync_row(&mut self, s: wire::Sync, waited: u32, clock: &MonoToUtc, job: &Option<String>, out: &mut FrameRows) {
        // cudaStreamWaitEvent makes a stream wait, not the host: not a host sync call.
        const STREAM_WAIT_EVENT: u32 = 2;
        if s.sync_type == STREAM_WAIT_EVENT {
            return;
        }
        if s.start == 0 && s.end == 0 {
            out.no_timestamp += 1;
            return;
        }
        let Some(launch) = self.launches.get(&s.correlation_id).copied() else {
            if waited >= SYNC_WAIT_FRAMES || self.pending_syncs.len() >= SYNC_PENDING_MAX {
                out.sync_without_thread += 1;
            } else {
                self.pending_syncs.push_back((s, waited));
            }
            return;
        };
        let Some(tid) = self.tids.host_tid(launch.tid) else {
            out.sync_without_thread += 1;
            return;
        };
        let api = match self.conn.name(launch.name) {
            Some(n) => api_name(n).to_string(),
            None => sync_api_fallback(s.sync_type).to_string(),
        };
        let gpu_index = self.contexts.get(&s.context_id).and_then(|d| self.devices.get(d)).and_then(|(_, i)| *i);
        let (enter, exit) = (clock.to_utc(s.start as i64), clock.to_utc(s.end as i64));
        out.syncs.push(CudaSyncCall {
            cluster: self.ctx.cluster.clone(),
            node: self.ctx.node.clone(),
            pid: self.pid,
            tid,
            job_id: job.clone(),
            enter_ns: enter,
            exit_ns: exit,
            blocked_ns: exit - enter,
            api,
            handle: None,
            ret: Some(s.ret.unwrap_or(launch.ret) as i32),
            gpu_index,
            source: "cupti".to_string(),
        });
    }

    fn copy_name(&mut self, copy_kind: u8, src: u8, dst: u8) -> Arc<str> {
        self.copy_names
            .entry((0, copy_kind, src, dst))
            .or_insert_with(|| {
                Arc::from(format!("Memcpy {} ({} -> {})", copy_label(copy_kind), memory_label(src), memory_label(dst)))
            })
            .clone()
    }

    fn set_name(&mut self, memory_kind: u16) -> Arc<str> {
        let k = memory_kind.min(255) as u8;
        self.copy_names
            .entry((1, k, 0, 0))
            .or_insert_with(|| Arc::from(format!("Memset ({})", memory_label(k))))
            .clone()
    }
}

struct RowFields {
    start: u64,
    end: u64,
    device: u32,
    context: u32,
    stream: u32,
    correlation: u32,
    kind: &'static str,
    name: Arc<str>,
}

/// NVML's spelling of a GPU UUID: `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub(crate) fn gpu_uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("GPU-{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// `CUpti_ActivityMemcpyKind` as Kineto and Nsight label it.
fn copy_label(k: u8) -> &'static str {
    match k {
        1 => "HtoD",
        2 => "DtoH",
        3 => "HtoA",
        4 => "AtoH",
        5 => "AtoA",
        6 => "AtoD",
        7 => "DtoA",
        8 => "DtoD",
        9 => "HtoH",
        10 => "PtoP",
        _ => "Unknown",
    }
}

/// The `copy_kind` column (an array is device memory).
pub(crate) fn copy_direction(k: u8) -> Option<&'static str> {
    match k {
        1 | 3 => Some("HtoD"),
        2 | 4 => Some("DtoH"),
        5..=8 => Some("DtoD"),
        9 => Some("HtoH"),
        10 => Some("PtoP"),
        _ => None,
    }
}

/// `CUpti_ActivityMemoryKind` as Kineto labels it.
fn memory_label(k: u8) -> &'static str {
    match k {
        1 => "Pageable",
        2 => "Pinned",
        3 => "Device",
        4 => "Array",
        5 => "Managed",
        6 => "Device Static",
        7 => "Managed Static",
        _ => "Unknown",
    }
}

/// `cudaStreamSynchronize_v3020` → `cudaStreamSynchronize`,
/// `cuStreamSynchronize_ptsz` → `cuStreamSynchronize`.
pub(crate) fn api_name(raw: &str) -> &str {
    let mut s = raw;
    loop {
        let Some(i) = s.rfind('_') else { return s };
        let suffix = &s[i + 1..];
        let versioned = suffix.len() > 1 && suffix.starts_with('v') && suffix[1..].bytes().all(|b| b.is_ascii_digit());
        if versioned || suffix == "ptsz" || suffix == "ptds" {
            s = &s[..i];
        } else {
            return s;
        }
    }
}

fn sync_api_fallback(sync_type: u32) -> &'static str {
    match sync_type {
        1 => "cuEventSynchronize",
        3 => "cuStreamSynchronize",
        4 => "cuCtxSynchronize",
        _ => "unknown",
    }
}

/// The collective of an NCCL device kernel (`ncclDevKernel_AllReduce_Sum_bf16_RING_LL`
/// → `allreduce`); `None` for other kernels and NCCL's generic kernel.
pub(crate) fn nccl_collective(name: &str) -> Option<String> {
    let rest = ["ncclDevKernel_", "ncclKernel_"].iter().find_map(|m| name.find(m).map(|i| &name[i + m.len()..]))?;
    let op: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    match op.as_str() {
        "AllReduce" | "AllGather" | "ReduceScatter" | "Broadcast" | "Reduce" | "SendRecv" | "AllToAll" => {
            Some(op.to_ascii_lowercase())
        }
        _ => None,
    }
}
