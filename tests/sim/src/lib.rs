//! A fleet simulator for tests and benchmarks (`strand-sim`). Product code
//! never depends on it.
//!
//! It writes real strand Parquet files in Hive layout for a fleet of nodes
//! running training jobs with faults injected at known times, so tests can
//! check the findings against the injected truth. It emits what agents
//! emit: raw rows (`kernel_events` of the CUPTI nodes, `nccl_calls`,
//! `gpu_samples`, `steps`, `process_events`, …), and `windows` made of them
//! by the agent's own `strand_analysis::WindowBuilder`, per node, as the
//! live agent does. Nodes listed in `nvml_only` run without CUPTI (the
//! default deployment): no kernel records, NCCL calls without kernel times.
//! Everything is aligned to the window grid: steps of `step_ns` (two per
//! window by default), checkpoint saves, restores, startups and downtimes
//! of whole windows.
//!
//! Per step, rank r computes for `compute_ns + d_r` (d_r = seeded jitter,
//! plus a straggler's delay), then joins one allreduce: its kernel starts at
//! `s_r` and ends when the last rank has arrived plus the transfer time
//! `bytes · 2(n−1)/n ÷ bus bandwidth`. So rank r's exact stall is
//! `max s − s_r`.

use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use strand_analysis::{WindowBuilder, WindowConfig};
use strand_schemas::protocol::{batch_path, utc_date};
use strand_schemas::{
    GpuEvent, GpuSample, KernelEvent, NcclCall, NicSample, ProcessEvent, ProcessSample, Step, Table, Window,
};

/// One training job.
#[derive(Debug, Clone)]
pub struct SimJob {
    pub id: String,
    /// Indices of its nodes; global rank = position × gpus_per_node + local GPU.
    pub nodes: Vec<usize>,
    pub first_gpu: usize,
    pub gpus_per_node: usize,
    /// Allocation start and end (window-aligned).
    pub start_ns: i64,
    pub end_ns: i64,
    pub startup_ns: i64,
    /// Save a checkpoint after this much step time.
    pub checkpoint_every_ns: Option<i64>,
    pub checkpoint_ns: i64,
    pub restore_ns: i64,
    /// Rank 0 sends workload markers (steps and checkpoints).
    pub markers: bool,
}

/// A fault injected at a known time.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Rank `rank` of job `job` arrives `delay_ns` late at every collective.
    Straggler { job: usize, rank: i32, delay_ns: i64 },
    /// Every rank of the job's `node_pos`-th node arrives `delay_ns` late at every collective.
    SlowNode { job: usize, node_pos: usize, delay_ns: i64 },
    /// Job `job`'s collectives reach `factor` × the normal bus bandwidth from `from_ns`.
    SlowBus { job: usize, factor: f64, from_ns: i64 },
    /// NVLink `link` of GPU `gpu` on `node` counts CRC errors from `from_ns`, `per_hour`.
    NvlinkErrors { node: usize, gpu: usize, link: usize, per_hour: i64, from_ns: i64 },
    /// InfiniBand port `device` of `node` counts symbol errors from `from_ns`, `per_hour`.
    NicErrors { node: usize, device: usize, per_hour: i64, from_ns: i64 },
    /// Job `job` fails at `at_ns` (window-aligned), stays down `downtime_ns`, then restarts.
    Crash { job: usize, at_ns: i64, downtime_ns: i64, xid: Option<i64> },
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub cluster: String,
    pub nodes: usize,
    pub gpus_per_node: usize,
    pub gpu_name: String,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub window_ns: i64,
    /// NVML sample period.
    pub sample_ns: i64,
    /// NIC and process sample period.
    pub slow_sample_ns: i64,
    pub step_ns: i64,
    pub compute_ns: i64,
    pub jitter_ns: i64,
    /// Allreduce bytes per rank (every other step sends an eighth).
    pub bytes: i64,
    /// Healthy bus bandwidth, bytes/s.
    pub bus_bw: f64,
    pub jobs: Vec<SimJob>,
    pub faults: Vec<Fault>,
    pub seed: u64,
    /// Nodes without CUPTI (NVML and eBPF only, the default deployment).
    pub nvml_only: Vec<usize>,
    /// Also write the CUPTI nodes' `kernel_events` (the fleet report never reads them).
    pub write_kernels: bool,
}

pub const NVLINKS: usize = 18;
pub const NICS: usize = 8;
/// Bytes a process writes per second while saving a checkpoint (reads while restoring).
pub const CHECKPOINT_BYTES_PER_S: i64 = 200_000_000;

impl SimConfig {
    /// A clean fleet: `nodes` nodes of 8 GPUs for `hours`, packed with
    /// full-node jobs of 1–16 nodes (a few nodes left free), checkpoints every
    /// 10 minutes, markers on every other job.
    pub fn fleet(nodes: usize, hours: f64, start_ns: i64) -> Self {
        let duration_ns = (hours * 3.6e12) as i64;
        let mut cfg = Self::base(nodes, start_ns, duration_ns);
        let sizes = [16usize, 8, 4, 2, 1, 8, 4, 2];
        let mut next = 0;
        let mut i = 0;
        while next < nodes {
            let size = sizes[i % sizes.len()].min((nodes / 4).max(1)).min(nodes - next);
            // Every seventh slot leaves a node free (idle capacity that topology does not strand).
            if nodes >= 8 && i % 7 == 6 {
                next += 1;
                i += 1;
                continue;
            }
            cfg.jobs.push(cfg.job(&format!("job-{i:04}"), (next..next + size).collect(), i % 2 == 0));
            next += size;
            i += 1;
        }
        cfg
    }

    /// Defaults with no jobs.
    pub fn base(nodes: usize, start_ns: i64, duration_ns: i64) -> Self {
        Self {
            cluster: "sim".into(),
            nodes,
            gpus_per_node: 8,
            gpu_name: "NVIDIA H100 80GB HBM3".into(),
            start_ns,
            duration_ns,
            window_ns: 10_000_000_000,
            sample_ns: 1_000_000_000,
            slow_sample_ns: 10_000_000_000,
            step_ns: 5_000_000_000,
            compute_ns: 4_500_000_000,
            jitter_ns: 200_000,
            bytes: 256 << 20,
            bus_bw: 40e9,
            jobs: Vec::new(),
            faults: Vec::new(),
            seed: 1,
            nvml_only: Vec::new(),
            write_kernels: false,
        }
    }

    /// A full-node job over the whole simulated time.
    pub fn job(&self, id: &str, nodes: Vec<usize>, markers: bool) -> SimJob {
        SimJob {
            id: id.into(),
            nodes,
            first_gpu: 0,
            gpus_per_node: self.gpus_per_node,
            start_ns: self.start_ns,
            end_ns: self.start_ns + self.duration_ns,
            startup_ns: 2 * self.window_ns,
            checkpoint_every_ns: Some(600_000_000_000),
            checkpoint_ns: 2 * self.window_ns,
            restore_ns: 3 * self.window_ns,
            markers,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        let w = self.window_ns;
        if w <= 0 || w % self.step_ns != 0 || self.start_ns % w != 0 || self.duration_ns % w != 0 {
            bail!(
                "simulator: the window must be a multiple of the step, and start and duration multiples of the window"
            );
        }
        for j in &self.jobs {
            for d in
                [j.start_ns, j.end_ns, j.startup_ns, j.checkpoint_ns, j.restore_ns, j.checkpoint_every_ns.unwrap_or(w)]
            {
                if d % w != 0 {
                    bail!("simulator: job {} has a time that is not a multiple of the window", j.id);
                }
            }
            if j.first_gpu + j.gpus_per_node > self.gpus_per_node || j.nodes.iter().any(|n| *n >= self.nodes) {
                bail!("simulator: job {} does not fit the fleet", j.id);
            }
        }
        for f in &self.faults {
            if let Fault::Crash { at_ns, downtime_ns, .. } = f
                && (at_ns % w != 0 || downtime_ns % w != 0)
            {
                bail!("simulator: crash times must be multiples of the window");
            }
        }
        Ok(())
    }

    pub fn node_name(&self, n: usize) -> String {
        format!("node-{n:04}")
    }

    /// The commHash of a job's communicator in one incarnation (a restart makes a new one).
    pub fn comm_hash(&self, job: usize, incarnation: u32) -> i64 {
        mix(self.seed ^ 0xc0ff_ee00 ^ ((job as u64) << 20) ^ u64::from(incarnation)) as i64
    }
}

/// SplitMix64: deterministic per-event randomness, the same on every node.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SegKind {
    Startup,
    /// Steps `first..first + n`; collectives from `seq0`.
    Steps {
        first: i64,
        seq0: i64,
    },
    Save {
        step: i64,
    },
    Restore {
        step: i64,
    },
    Down,
}

#[derive(Debug, Clone, Copy)]
pub struct Seg {
    pub kind: SegKind,
    pub start: i64,
    pub end: i64,
    pub incarnation: u32,
}

/// A job's timeline: what its GPUs do when, and its failures.
pub fn schedule(cfg: &SimConfig, job_idx: usize) -> (Vec<Seg>, Vec<i64>) {
    let j = &cfg.jobs[job_idx];
    let mut crashes: Vec<(i64, i64)> = cfg
        .faults
        .iter()
        .filter_map(|f| match f {
            Fault::Crash { job, at_ns, downtime_ns, .. } if *job == job_idx => Some((*at_ns, *downtime_ns)),
            _ => None,
        })
        .collect();
    crashes.sort();
    let mut segs = Vec::new();
    let mut failures = Vec::new();
    let mut t = j.start_ns;
    let mut inc = 0u32;
    let push = |segs: &mut Vec<Seg>, kind, start, end, inc| {
        if end > start {
            segs.push(Seg { kind, start, end, incarnation: inc });
        }
    };
    push(&mut segs, SegKind::Startup, t, (t + j.startup_ns).min(j.end_ns), inc);
    t += j.startup_ns;
    let (mut step, mut seq, mut saved): (i64, i64, Option<i64>) = (0, 0, None);
    let mut since = 0i64;
    let mut ci = 0;
    while t < j.end_ns {
        let crash = crashes.get(ci).copied().filter(|c| c.0 >= t);
        let until_ckpt = j.checkpoint_every_ns.map_or(i64::MAX, |e| t + (e - since));
        let stop = until_ckpt.min(j.end_ns).min(crash.map_or(i64::MAX, |c| c.0));
        let n = (stop - t) / cfg.step_ns;
        push(&mut segs, SegKind::Steps { first: step, seq0: seq }, t, t + n * cfg.step_ns, inc);
        step += n;
        seq += n;
        since += n * cfg.step_ns;
        t += n * cfg.step_ns;
        if t >= j.end_ns {
            break;
        }
        if let Some((at, down)) = crash.filter(|c| c.0 == t) {
            failures.push(at);
            ci += 1;
            push(&mut segs, SegKind::Down, t, (t + down).min(j.end_ns), inc);
            t += down;
            inc += 1;
            seq = 0;
            since = 0;
            if let Some(k) = saved {
                push(&mut segs, SegKind::Restore { step: k }, t.min(j.end_ns), (t + j.restore_ns).min(j.end_ns), inc);
                t += j.restore_ns;
                step = k + 1;
            } else {
                step = 0;
            }
            continue;
        }
        if t == until_ckpt {
            push(&mut segs, SegKind::Save { step: step - 1 }, t, (t + j.checkpoint_ns).min(j.end_ns), inc);
            saved = Some(step - 1);
            t += j.checkpoint_ns;
            since = 0;
        }
    }
    (segs, failures)
}

struct JobRt {
    segs: Vec<Seg>,
    failures: Vec<i64>,
    nranks: i32,
    straggler: Option<(i32, i64)>,
    slow_node: Option<(usize, i64)>,
    slow: Option<(f64, i64)>,
    xid: Option<i64>,
}

/// Writes the simulated fleet under `root` and returns the rows written.
pub fn write(cfg: &SimConfig, root: &Path, threads: usize) -> anyhow::Result<u64> {
    cfg.validate()?;
    let jobs: Vec<JobRt> = (0..cfg.jobs.len())
        .map(|i| {
            let (segs, failures) = schedule(cfg, i);
            let j = &cfg.jobs[i];
            JobRt {
                segs,
                failures,
                nranks: (j.nodes.len() * j.gpus_per_node) as i32,
                straggler: cfg.faults.iter().find_map(|f| match f {
                    Fault::Straggler { job, rank, delay_ns } if *job == i => Some((*rank, *delay_ns)),
                    _ => None,
                }),
                slow_node: cfg.faults.iter().find_map(|f| match f {
                    Fault::SlowNode { job, node_pos, delay_ns } if *job == i => Some((*node_pos, *delay_ns)),
                    _ => None,
                }),
                slow: cfg.faults.iter().find_map(|f| match f {
                    Fault::SlowBus { job, factor, from_ns } if *job == i => Some((*factor, *from_ns)),
                    _ => None,
                }),
                xid: cfg.faults.iter().find_map(|f| match f {
                    Fault::Crash { job, xid, .. } if *job == i => *xid,
                    _ => None,
                }),
            }
        })
        .collect();
    let threads = threads.max(1);
    let total = std::sync::atomic::AtomicU64::new(0);
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if n >= cfg.nodes {
                            return Ok(());
                        }
                        let rows = node(cfg, &jobs, n, root)?;
                        total.fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("simulator thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(total.into_inner())
}

/// One table of one node: rows buffered and written in parts of a bounded
/// size, each part atomically (`strand_schemas::hive`).
struct Out<T: Table> {
    dir: std::path::PathBuf,
    date: String,
    cluster: String,
    node: String,
    buf: Vec<T>,
    part: usize,
    rows: u64,
}

const PART_ROWS: usize = 1 << 18;

impl<T: Table> Out<T> {
    fn new(root: &Path, cfg: &SimConfig, node: &str) -> Self {
        Self {
            dir: root.to_path_buf(),
            date: utc_date(cfg.start_ns),
            cluster: cfg.cluster.clone(),
            node: node.to_string(),
            buf: Vec::new(),
            part: 0,
            rows: 0,
        }
    }
    fn push(&mut self, r: T) -> anyhow::Result<()> {
        self.buf.push(r);
        if self.buf.len() >= PART_ROWS {
            self.write()?;
        }
        Ok(())
    }
    fn write(&mut self) -> anyhow::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let id = format!("sim-{}-{:04}", self.node, self.part);
        let path = self.dir.join(batch_path(T::NAME, &self.date, &self.cluster, &self.node, &id));
        self.rows += strand_schemas::hive::write_file(&path, &self.buf)?;
        self.buf.clear();
        self.part += 1;
        Ok(())
    }
    fn finish(mut self) -> anyhow::Result<u64> {
        self.write()?;
        Ok(self.rows)
    }
}

/// What one GPU does in a window.
struct GpuState<'a> {
    job: Option<(usize, &'a SimJob, &'a JobRt, i32)>,
    seg: Option<Seg>,
}

/// Name of the simulated NCCL all-reduce kernel (as CUPTI reports it).
const ALLREDUCE_KERNEL: &str = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)";
const GEMM_KERNEL: &str = "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize256x128x64_warpgroupsize2x1x1";

fn node(cfg: &SimConfig, jobs: &[JobRt], n: usize, root: &Path) -> anyhow::Result<u64> {
    let name = cfg.node_name(n);
    let cluster: Arc<str> = Arc::from(cfg.cluster.as_str());
    let node: Arc<str> = Arc::from(name.as_str());
    let gpu_name: Arc<str> = Arc::from(cfg.gpu_name.as_str());
    let cupti = !cfg.nvml_only.contains(&n);
    let mut windows = Out::<Window>::new(root, cfg, &name);
    let mut samples = Out::<GpuSample>::new(root, cfg, &name);
    let mut calls = Out::<NcclCall>::new(root, cfg, &name);
    let mut kernels = Out::<KernelEvent>::new(root, cfg, &name);
    let mut nics = Out::<NicSample>::new(root, cfg, &name);
    let mut psamples = Out::<ProcessSample>::new(root, cfg, &name);
    let mut pevents = Out::<ProcessEvent>::new(root, cfg, &name);
    let mut gevents = Out::<GpuEvent>::new(root, cfg, &name);
    let mut steps = Out::<Step>::new(root, cfg, &name);
    let uuid = |g: usize| -> Arc<str> { Arc::from(format!("GPU-{:08x}-{n:04}-{g:02}", cfg.seed as u32)) };
    let uuids: Vec<Arc<str>> = (0..cfg.gpus_per_node).map(uuid).collect();
    let (t0, t1) = (cfg.start_ns, cfg.start_ns + cfg.duration_ns);
    // The agent's live windows, as `strand-agent` builds them on this node.
    let wcfg = WindowConfig {
        period_ns: cfg.window_ns,
        lateness_ns: 0,
        sample_period_ns: cfg.sample_ns,
        ..WindowConfig::default()
    };
    let mut builder = WindowBuilder::new(wcfg, Arc::new(strand_kernels::Reducer::cpu()))?;
    // Which job holds each GPU of this node.
    let holders: Vec<Option<(usize, &SimJob, &JobRt, i32)>> = (0..cfg.gpus_per_node)
        .map(|g| {
            cfg.jobs.iter().enumerate().find_map(|(i, j)| {
                let pos = j.nodes.iter().position(|x| *x == n)?;
                (g >= j.first_gpu && g < j.first_gpu + j.gpus_per_node)
                    .then(|| (i, j, &jobs[i], (pos * j.gpus_per_node + g - j.first_gpu) as i32))
            })
        })
        .collect();
    let state_at = |g: usize, t: i64| -> GpuState<'_> {
        match holders[g] {
            Some((i, j, rt, rank)) if t >= j.start_ns && t < j.end_ns => GpuState {
                job: Some((i, j, rt, rank)),
                seg: rt.segs.iter().find(|s| t >= s.start && t < s.end).copied(),
            },
            _ => GpuState { job: None, seg: None },
        }
    };
    let pid_of = |ji: usize, inc: u32, g: usize| 10_000 + (ji as i32) * 1000 + (inc as i32) * 100 + g as i32;
    // Per-step figures of one rank: (compute, allreduce kernel start, end, bytes).
    let step_fig = |ji: usize, j: &SimJob, rt: &JobRt, rank: i32, inc: u32, step: i64, seq: i64, t: i64| {
        let delay = |r: i32| {
            let d = (mix(cfg.seed ^ ((ji as u64) << 48) ^ (u64::from(inc) << 40) ^ ((seq as u64) << 16) ^ r as u64)
                % cfg.jitter_ns.max(1) as u64) as i64;
            d + rt.straggler.filter(|s| s.0 == r).map_or(0, |s| s.1)
                + rt.slow_node.filter(|s| s.0 == r as usize / j.gpus_per_node).map_or(0, |s| s.1)
        };
        let max_d = (0..rt.nranks).map(delay).max().unwrap_or(0);
        let bytes = if step % 2 == 0 { cfg.bytes } else { cfg.bytes / 8 };
        let n = f64::from(rt.nranks);
        let bw = cfg.bus_bw * rt.slow.filter(|s| t >= s.1).map_or(1.0, |s| s.0);
        let transfer = if rt.nranks > 1 { (bytes as f64 * 2.0 * (n - 1.0) / n / bw * 1e9).round() as i64 } else { 0 };
        let s_r = t + cfg.compute_ns + delay(rank);
        let last = t + cfg.compute_ns + max_d;
        (cfg.compute_ns + delay(rank), s_r, last + transfer, bytes)
    };
    let kernel =
        |g: usize, ji: usize, j: &SimJob, inc: u32, start: i64, end: i64, name: &str, category: &str, corr: i64| {
            KernelEvent {
                cluster: cluster.clone(),
                node: node.clone(),
                pid: pid_of(ji, inc, g),
                job_id: Some(j.id.clone()),
                device_id: g as i32,
                gpu_uuid: Some(uuids[g].clone()),
                gpu_index: Some(g as i32),
                start_ns: start,
                end_ns: end,
                context_id: 1,
                stream_id: if category == "communication" { 13 } else { 7 },
                correlation_id: corr,
                kind: "kernel".into(),
                category: category.into(),
                name: Arc::from(name),
                grid_x: None,
                grid_y: None,
                grid_z: None,
                block_x: None,
                block_y: None,
                block_z: None,
                bytes: None,
                copy_kind: None,
                launch_ns: Some(start - 20_000),
                launch_tid: Some(pid_of(ji, inc, g)),
                collective: (category == "communication").then(|| "allreduce".to_string()),
                source: "cupti".into(),
            }
        };
    let mut rows = 0u64;

    // Markers of phases, process events, XIDs: known up front, into the builder first.
    let mut phases: Vec<Step> = Vec::new();
    let mut exits: Vec<ProcessEvent> = Vec::new();
    for (ji, j) in cfg.jobs.iter().enumerate() {
        let Some(pos) = j.nodes.iter().position(|x| *x == n) else { continue };
        let rt = &jobs[ji];
        for seg in &rt.segs {
            if j.markers && pos == 0 {
                let pid = pid_of(ji, seg.incarnation, j.first_gpu);
                match seg.kind {
                    SegKind::Save { step } => {
                        phases.push(step_row(&cluster, &node, j, pid, "checkpoint_save", step, seg.start, seg.end))
                    }
                    SegKind::Restore { step } => {
                        phases.push(step_row(&cluster, &node, j, pid, "checkpoint_restore", step, seg.start, seg.end))
                    }
                    _ => {}
                }
            }
        }
        // Processes start with each incarnation and end at a failure or the allocation's end.
        let mut starts: Vec<(u32, i64)> = vec![(0, j.start_ns)];
        for seg in &rt.segs {
            if seg.incarnation > 0 && !starts.iter().any(|s| s.0 == seg.incarnation) {
                starts.push((seg.incarnation, seg.start));
            }
        }
        for (inc, start) in &starts {
            let end = rt.failures.get(*inc as usize).copied();
            for g in j.first_gpu..j.first_gpu + j.gpus_per_node {
                let pid = pid_of(ji, *inc, g);
                let rank = (pos * j.gpus_per_node + g - j.first_gpu) as i32;
                exits.push(proc_event(&cluster, &node, j, pid, *start, "exec", None, None));
                match end {
                    // The first rank dies with an error, torchrun kills the others.
                    Some(tf) if rank == 0 => exits.push(proc_event(&cluster, &node, j, pid, tf, "exit", Some(1), None)),
                    Some(tf) => {
                        exits.push(proc_event(&cluster, &node, j, pid, tf + 2_000_000_000, "exit", None, Some(15)))
                    }
                    None if j.end_ns < t1 => {
                        exits.push(proc_event(&cluster, &node, j, pid, j.end_ns, "exit", Some(0), None))
                    }
                    None => {}
                }
            }
        }
        if let Some(xid) = rt.xid
            && pos == 0
        {
            for tf in &rt.failures {
                gevents.push(GpuEvent {
                    cluster: cluster.clone(),
                    node: node.clone(),
                    ts_ns: tf - 1_000_000_000,
                    gpu_index: Some(j.first_gpu as i32),
                    gpu_uuid: Some(uuids[j.first_gpu].clone()),
                    kind: "xid".into(),
                    xid: Some(xid),
                    value: None,
                    pid: None,
                    job_id: Some(j.id.clone()),
                    detail: Some(format!("Xid {xid}")),
                })?;
            }
        }
    }

    builder.push_steps(&phases);
    builder.push_process(&exits);
    for p in phases {
        steps.push(p)?;
    }
    for e in exits {
        pevents.push(e)?;
    }

    // Kernels and NCCL calls of each window, into the files and the builder.
    let mut w = t0;
    let mut win_kernels: Vec<KernelEvent> = Vec::new();
    let mut win_calls: Vec<NcclCall> = Vec::new();
    while w < t1 {
        for (g, gpu_uuid) in uuids.iter().enumerate() {
            let st = state_at(g, w);
            let (Some((ji, j, rt, rank)), Some(seg)) = (st.job, st.seg) else { continue };
            let SegKind::Steps { first, seq0 } = seg.kind else { continue };
            let mut t = w;
            while t < w + cfg.window_ns {
                let k = (t - seg.start) / cfg.step_ns;
                let (step, seq) = (first + k, seq0 + k);
                let (c, ks, ke, bytes) = step_fig(ji, j, rt, rank, seg.incarnation, step, seq, t);
                if cupti {
                    win_kernels.push(kernel(g, ji, j, seg.incarnation, t, t + c, GEMM_KERNEL, "compute", 2 * seq));
                    if rt.nranks > 1 {
                        win_kernels.push(kernel(
                            g,
                            ji,
                            j,
                            seg.incarnation,
                            ks,
                            ke,
                            ALLREDUCE_KERNEL,
                            "communication",
                            2 * seq + 1,
                        ));
                    }
                }
                if rt.nranks > 1 {
                    let mut call = nccl_row(
                        &cluster,
                        &node,
                        j,
                        rank,
                        rt.nranks,
                        g,
                        gpu_uuid,
                        pid_of(ji, seg.incarnation, g),
                        cfg.comm_hash(ji, seg.incarnation),
                        seq,
                        bytes,
                        ks,
                        ke,
                    );
                    if !cupti {
                        // eBPF alone: the call without its kernel's device times.
                        (call.kernel_start_ns, call.kernel_end_ns) = (None, None);
                    }
                    win_calls.push(call);
                }
                if j.markers && rank == 0 {
                    let st =
                        step_row(&cluster, &node, j, pid_of(ji, seg.incarnation, g), "step", step, t, t + cfg.step_ns);
                    builder.push_steps(std::slice::from_ref(&st));
                    steps.push(st)?;
                }
                t += cfg.step_ns;
            }
        }
        builder.push_kernels(&win_kernels);
        builder.push_nccl(&win_calls);
        if cfg.write_kernels {
            for k in win_kernels.drain(..) {
                kernels.push(k)?;
            }
        }
        win_kernels.clear();
        for c in win_calls.drain(..) {
            calls.push(c)?;
        }
        // NVML samples of the window.
        for ts in (1..=cfg.window_ns / cfg.sample_ns).map(|i| w + i * cfg.sample_ns) {
            for (g, gpu_uuid) in uuids.iter().enumerate() {
                let s = sample(cfg, n, g, ts, &state_at(g, ts - 1), &cluster, &node, gpu_uuid, &gpu_name, &pid_of);
                builder.push_samples(std::slice::from_ref(&s));
                samples.push(s)?;
            }
        }
        w += cfg.window_ns;
        // Phases and exits are known up front; windows close as the agent closes them.
        if (w - t0) % (60 * cfg.window_ns) == 0 || w >= t1 {
            for x in builder.close_until(w)? {
                windows.push(x)?;
            }
        }
    }

    // NIC and process samples.
    let mut t = t0 + cfg.slow_sample_ns;
    while t <= t1 {
        for d in 0..NICS {
            let sym = cfg
                .faults
                .iter()
                .find_map(|f| match f {
                    Fault::NicErrors { node: fnode, device, per_hour, from_ns }
                        if *fnode == n && *device == d && t >= *from_ns =>
                    {
                        Some(((t - from_ns) as i128 * i128::from(*per_hour) / 3_600_000_000_000i128) as i64)
                    }
                    _ => None,
                })
                .unwrap_or(0);
            let elapsed = (t - t0) / 1_000_000_000;
            nics.push(NicSample {
                cluster: cluster.clone(),
                node: node.clone(),
                ts_ns: t,
                device: format!("mlx5_{d}"),
                port: 1,
                link_layer: Some("InfiniBand".into()),
                state: Some("4: ACTIVE".into()),
                rate_gbps: Some(400.0),
                symbol_error_total: Some(sym),
                link_downed_total: Some(0),
                link_error_recovery_total: Some(0),
                port_rcv_errors_total: Some(0),
                port_xmit_discards_total: Some(0),
                port_xmit_wait_total: Some(elapsed * 1000),
                port_xmit_bytes_total: Some(elapsed * 1_000_000_000),
                port_rcv_bytes_total: Some(elapsed * 1_000_000_000),
            })?;
        }
        for g in 0..cfg.gpus_per_node {
            let st = state_at(g, t - 1);
            let (Some((ji, j, _, _)), Some(seg)) = (st.job, st.seg) else { continue };
            if seg.kind == SegKind::Down {
                continue;
            }
            let io = CHECKPOINT_BYTES_PER_S * cfg.slow_sample_ns / 1_000_000_000;
            psamples.push(ProcessSample {
                cluster: cluster.clone(),
                node: node.clone(),
                ts_ns: t,
                interval_ns: cfg.slow_sample_ns,
                pid: pid_of(ji, seg.incarnation, g),
                job_id: Some(j.id.clone()),
                comm: Some("python".into()),
                threads: 40,
                cpu_ns: cfg.slow_sample_ns,
                context_switches: Some(1000),
                cycles: None,
                instructions: None,
                read_bytes: Some(if matches!(seg.kind, SegKind::Restore { .. }) { io } else { 0 }),
                write_bytes: Some(if matches!(seg.kind, SegKind::Save { .. }) { io } else { 1_000_000 }),
            })?;
        }
        t += cfg.slow_sample_ns;
    }

    for x in builder.flush()? {
        windows.push(x)?;
    }
    rows += windows.finish()?
        + samples.finish()?
        + calls.finish()?
        + nics.finish()?
        + psamples.finish()?
        + kernels.finish()?;
    rows += pevents.finish()? + gevents.finish()? + steps.finish()?;
    Ok(rows)
}

/// One NVML sample of GPU `g` of node `n` at `t`.
#[allow(clippy::too_many_arguments)]
fn sample(
    cfg: &SimConfig,
    n: usize,
    g: usize,
    t: i64,
    st: &GpuState,
    cluster: &Arc<str>,
    node: &Arc<str>,
    gpu_uuid: &Arc<str>,
    gpu_name: &Arc<str>,
    pid_of: &dyn Fn(usize, u32, usize) -> i32,
) -> GpuSample {
    let nvlink_fault = |g: usize, t: i64| -> (usize, i64) {
        cfg.faults
            .iter()
            .find_map(|f| match f {
                Fault::NvlinkErrors { node: fnode, gpu, link, per_hour, from_ns }
                    if *fnode == n && *gpu == g && t >= *from_ns =>
                {
                    Some((*link, (t - from_ns) as i128 * i128::from(*per_hour) / 3_600_000_000_000i128))
                }
                _ => None,
            })
            .map_or((usize::MAX, 0), |(l, c)| (l, c as i64))
    };
    let busy = matches!(st.seg, Some(Seg { kind: SegKind::Steps { .. }, .. }));
    let has_proc = st.job.is_some() && !matches!(st.seg, Some(Seg { kind: SegKind::Down, .. }));
    let (link, extra) = nvlink_fault(g, t);
    let base = (n * 100 + g) as i64;
    let crc: Vec<i64> = (0..NVLINKS).map(|l| base + if l == link { extra } else { 0 }).collect();
    GpuSample {
        cluster: cluster.clone(),
        node: node.clone(),
        ts_ns: t,
        gpu_index: g as i32,
        gpu_uuid: gpu_uuid.clone(),
        gpu_name: gpu_name.clone(),
        job_id: st.job.map(|j| j.1.id.clone()),
        pids: if has_proc {
            vec![pid_of(st.job.map_or(0, |j| j.0), st.seg.map_or(0, |s| s.incarnation), g)]
        } else {
            Vec::new()
        },
        reported_utilization_ratio: Some(if busy { 0.93 } else { 0.0 }),
        memory_utilization_ratio: None,
        sm_active_ratio: Some(if busy { 0.85 } else { 0.0 }),
        sm_occupancy_ratio: None,
        tensor_active_ratio: Some(if busy { 0.5 } else { 0.0 }),
        dram_active_ratio: None,
        fp16_active_ratio: None,
        fp32_active_ratio: None,
        fp64_active_ratio: None,
        sm_clock_mhz: Some(1980),
        sm_clock_max_mhz: Some(1980),
        memory_clock_mhz: None,
        power_w: Some(if busy { 650.0 } else { 90.0 }),
        power_limit_w: Some(700.0),
        energy_mj_total: None,
        temperature_c: Some(60),
        throttle_reasons: Some(0),
        memory_used_bytes: None,
        memory_total_bytes: None,
        pcie_tx_bytes_per_s: None,
        pcie_rx_bytes_per_s: None,
        pcie_replay_total: Some(base),
        nvlink_tx_bytes_total: None,
        nvlink_rx_bytes_total: None,
        nvlink_crc_errors_total: Some(crc),
        nvlink_replay_errors_total: Some(vec![0; NVLINKS]),
        nvlink_recovery_errors_total: Some(vec![0; NVLINKS]),
        ecc_corrected_total: Some(0),
        ecc_uncorrected_total: Some(0),
    }
}

#[allow(clippy::too_many_arguments)]
fn nccl_row(
    cluster: &Arc<str>,
    node: &Arc<str>,
    j: &SimJob,
    rank: i32,
    nranks: i32,
    g: usize,
    uuid: &Arc<str>,
    pid: i32,
    comm_hash: i64,
    seq: i64,
    bytes: i64,
    ks: i64,
    ke: i64,
) -> NcclCall {
    NcclCall {
        cluster: cluster.clone(),
        node: node.clone(),
        pid,
        tid: pid,
        job_id: Some(j.id.clone()),
        enter_ns: ks - 30_000,
        exit_ns: Some(ks - 15_000),
        op: "allreduce".into(),
        count: Some(bytes / 2),
        datatype: Some("bfloat16".into()),
        bytes: Some(bytes),
        redop: Some("sum".into()),
        root: None,
        peer: None,
        comm_ptr: Some(0x7f00_0000),
        comm_hash: Some(comm_hash),
        comm_name: None,
        rank: Some(rank),
        nranks: Some(nranks),
        seq: Some(seq),
        stream: Some(7),
        ret: Some(0),
        group_id: None,
        color: None,
        key: None,
        new_comm_ptr: None,
        gpu_index: Some(g as i32),
        gpu_uuid: Some(uuid.clone()),
        kernel_start_ns: Some(ks),
        kernel_end_ns: Some(ke),
        source: "ebpf".into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn step_row(
    cluster: &Arc<str>,
    node: &Arc<str>,
    j: &SimJob,
    pid: i32,
    phase: &str,
    step: i64,
    start: i64,
    end: i64,
) -> Step {
    Step {
        cluster: cluster.clone(),
        node: node.clone(),
        job_id: Some(j.id.clone()),
        pid: Some(pid),
        rank: Some(0),
        gpu_index: Some(j.first_gpu as i32),
        phase: phase.into(),
        step: Some(step),
        start_ns: start,
        end_ns: end,
        model_flops: None,
        tokens: None,
        dtype: None,
        source: "marker".into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn proc_event(
    cluster: &Arc<str>,
    node: &Arc<str>,
    j: &SimJob,
    pid: i32,
    ts: i64,
    kind: &str,
    code: Option<i32>,
    signal: Option<i32>,
) -> ProcessEvent {
    ProcessEvent {
        cluster: cluster.clone(),
        node: node.clone(),
        ts_ns: ts,
        pid,
        ppid: Some(1),
        job_id: Some(j.id.clone()),
        kind: kind.into(),
        comm: Some("python".into()),
        exe: None,
        exit_code: code,
        signal,
        gpu_libraries: Some("nccl,cudart,cuda".into()),
    }
}

/// A demo fleet: one fault of each kind in the first jobs.
pub fn with_demo_faults(mut cfg: SimConfig) -> SimConfig {
    let h = cfg.duration_ns;
    let n = cfg.jobs.len();
    cfg.faults.push(Fault::Straggler { job: 0, rank: 3, delay_ns: 20_000_000 });
    if n > 1 {
        cfg.faults.push(Fault::SlowBus { job: 1, factor: 0.3, from_ns: cfg.start_ns + h / 2 });
    }
    if n > 2 {
        cfg.faults.push(Fault::Crash {
            job: 2,
            at_ns: cfg.start_ns + (h / 2 / cfg.window_ns) * cfg.window_ns,
            downtime_ns: 120_000_000_000,
            xid: Some(79),
        });
    }
    if n > 3 && cfg.jobs[3].nodes.len() > 1 {
        cfg.faults.push(Fault::SlowNode { job: 3, node_pos: 1, delay_ns: 5_000_000 });
    }
    cfg.faults.push(Fault::NvlinkErrors { node: 0, gpu: 1, link: 4, per_hour: 50, from_ns: cfg.start_ns });
    cfg.faults.push(Fault::NicErrors { node: cfg.nodes - 1, device: 2, per_hour: 20, from_ns: cfg.start_ns });
    cfg
}
