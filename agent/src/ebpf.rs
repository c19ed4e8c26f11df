//! eBPF source: NCCL calls, CUDA synchronize calls and process exec/exit from
//! `strand-ebpf`, drained on a timer (no wake-up per event) on its own thread.
//! Its parts (`nccl`, `cuda_sync`, `exec`, `exit`, `proc_scan`) are the
//! tracer's, each up or down on its own (`docs/ebpf.md`, "Parts").

use anyhow::Context as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strand_ebpf::{Output, Stats, Tracer, TracerConfig};
use strand_schemas::{CudaSyncCall, NcclCall, ProcessEvent};

use crate::config::Config;
use crate::context::SourceContext;
use crate::metrics::{ErrorLabels, SourceLabels};
use crate::sink::RowSink;
use crate::source::{Report, Running, Source, StartContext, State};

/// Prometheus view of the tracer's cumulative stats.
#[derive(Clone, Default)]
pub struct EbpfMetrics {
    events: Family<SourceLabels, Counter>,
    lost: Family<SourceLabels, Counter>,
    problems: Family<ErrorLabels, Counter>,
    library_files: Gauge,
    probes: Gauge,
}

impl EbpfMetrics {
    pub fn register(r: &mut Registry) -> Self {
        let m = Self::default();
        r.register("strand_ebpf_events", "Records read from the BPF ring buffers, by source", m.events.clone());
        r.register("strand_ebpf_lost_events", "Records lost because a ring buffer was full, by source", m.lost.clone());
        r.register(
            "strand_ebpf_problems",
            "Counted problems and skipped inputs of the tracer, by reason (docs/ebpf.md)",
            m.problems.clone(),
        );
        r.register(
            "strand_ebpf_library_files",
            "Library files (device+inode) with uprobes attached",
            m.library_files.clone(),
        );
        r.register("strand_ebpf_probes", "Uprobes attached", m.probes.clone());
        m
    }

    /// Moves the counters up to the tracer's cumulative `stats`.
    fn update(&self, s: &Stats) {
        let bump = |c: Counter, to: u64| {
            let now = c.get();
            if to > now {
                c.inc_by(to - now);
            }
        };
        for (source, st) in [("nccl", &s.nccl), ("cuda_sync", &s.cuda_sync), ("process", &s.process)] {
            let l = SourceLabels { source: source.into() };
            bump(self.events.get_or_create(&l).clone(), st.events);
            bump(self.lost.get_or_create(&l).clone(), st.lost);
        }
        for (reason, n) in &s.errors {
            bump(
                self.problems.get_or_create(&ErrorLabels { source: "ebpf".into(), kind: (*reason).into() }).clone(),
                *n,
            );
        }
        self.library_files.set(s.library_files as i64);
        self.probes.set(s.probes_attached as i64);
    }
}

pub struct EbpfSinks {
    pub nccl: RowSink<NcclCall>,
    pub sync: RowSink<CudaSyncCall>,
    pub process: RowSink<ProcessEvent>,
}

const SOURCE: &str = "ebpf";
const PARTS: &[&str] = &["nccl", "cuda_sync", "exec", "exit", "proc_scan"];

/// The eBPF source (`strand-ebpf`): one part per program group, each up or
/// down on its own.
pub struct EbpfSource {
    metrics: EbpfMetrics,
}

impl EbpfSource {
    pub fn new(registry: &mut Registry) -> Self {
        Self { metrics: EbpfMetrics::register(registry) }
    }
}

/// The tracer's settings from the agent's configuration.
fn tracer_config(cfg: &Config, cluster: &str, node: &str) -> anyhow::Result<TracerConfig> {
    let mut t = TracerConfig::new(cluster, node);
    t.process_hooks = cfg.ebpf.hooks().map_err(anyhow::Error::msg)?;
    Ok(t)
}

/// Every part down for the one reason the tracer could not start.
fn all_down(why: &str) -> Vec<Report> {
    PARTS
        .iter()
        .map(|p| Report::new(SOURCE, p, State::Down, format!("{why}: no NCCL or CUDA synchronize calls")))
        .collect()
}

impl Source for EbpfSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn parts(&self) -> &'static [&'static str] {
        PARTS
    }

    fn enabled(&self, cfg: &Config) -> (bool, &'static str) {
        (cfg.ebpf.enabled, "ebpf.enabled")
    }

    fn check(&self, cfg: &Config) -> Vec<Report> {
        let t = match tracer_config(cfg, &cfg.cluster, &cfg.node_name()) {
            Ok(t) => t,
            Err(e) => return all_down(&format!("{e:#}")),
        };
        match Tracer::check(&t) {
            Ok(parts) => parts.iter().map(|p| Report::from((SOURCE, p))).collect(),
            Err(e) => all_down(&e.to_string()),
        }
    }

    fn start(self: Box<Self>, cx: &mut StartContext) -> anyhow::Result<Vec<Running>> {
        let sinks = EbpfSinks {
            nccl: cx.ebpf_nccl.take().context("the eBPF source starts once")?,
            sync: cx.sinks.cuda_sync_calls.clone(),
            process: cx.sinks.process_events.clone(),
        };
        let t = tracer_config(&cx.cfg, &cx.ctx.cluster, &cx.ctx.node)?;
        let mut tracer = match Tracer::start(t) {
            Ok(t) => t,
            Err(e) => {
                for r in all_down(&e.to_string()) {
                    cx.health.report(r);
                }
                return Ok(Vec::new());
            }
        };
        for p in tracer.parts() {
            cx.health.report(Report::from((SOURCE, p)));
        }
        let (ctx, metrics, health, shutdown, poll) =
            (cx.ctx.clone(), self.metrics, cx.health.clone(), cx.shutdown.clone(), cx.cfg.ebpf.poll_interval);
        let handle = std::thread::Builder::new().name("strand-ebpf".into()).spawn(move || {
            let mut out = Output::default();
            loop {
                let stopping = shutdown.is_triggered();
                if let Err(e) = tracer.poll(&mut out) {
                    tracing::warn!("eBPF poll: {e}");
                }
                deliver(&ctx, &sinks, &mut out);
                let stats = tracer.stats();
                metrics.update(&stats);
                for (part, n) in &stats.part_errors {
                    health.errors_to(SOURCE, part, *n);
                }
                if stopping {
                    break;
                }
                std::thread::sleep(poll);
            }
        })?;
        Ok(vec![Running::Thread(handle)])
    }
}

/// Stamps job ids, notes GPU processes, hands the rows on.
fn deliver(ctx: &SourceContext, sinks: &EbpfSinks, out: &mut Output) {
    let mut pids: Vec<i32> =
        out.nccl_calls.iter().map(|r| r.pid).chain(out.cuda_sync_calls.iter().map(|r| r.pid)).collect();
    pids.sort_unstable();
    pids.dedup();
    ctx.note_gpu_pids(&pids);
    let mut nccl = std::mem::take(&mut out.nccl_calls);
    for r in &mut nccl {
        r.job_id = ctx.job_of(r.pid);
    }
    let mut sync = std::mem::take(&mut out.cuda_sync_calls);
    for r in &mut sync {
        r.job_id = ctx.job_of(r.pid);
    }
    let mut procs = std::mem::take(&mut out.process_events);
    for r in &mut procs {
        if r.job_id.is_none() && r.kind != "exit" {
            r.job_id = ctx.job_of(r.pid);
        }
    }
    sinks.nccl.send(nccl);
    sinks.sync.send(sync);
    sinks.process.send(procs);
}
