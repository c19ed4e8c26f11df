//! eBPF source: NCCL calls, CUDA synchronize calls and process exec/exit from
//! `strand-ebpf`, drained on a timer (no wake-up per event) on its own thread.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strand_ebpf::{Output, Stats, Tracer, TracerConfig};
use strand_schemas::{CudaSyncCall, NcclCall, ProcessEvent};

use crate::context::SourceContext;
use crate::metrics::{ErrorLabels, SourceLabels};
use crate::shutdown::Shutdown;
use crate::sink::RowSink;

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

/// Starts the tracer on its own thread, or says once why it cannot run and
/// returns `None` (the other sources keep running).
pub fn spawn(
    ctx: Arc<SourceContext>,
    poll: Duration,
    sinks: EbpfSinks,
    metrics: EbpfMetrics,
    shutdown: Shutdown,
) -> Option<std::thread::JoinHandle<()>> {
    let cap = strand_ebpf::capability();
    if !cap.usable {
        tracing::warn!(
            "eBPF tracing unavailable ({}): no NCCL or CUDA synchronize calls; the other sources keep running",
            cap.reason
        );
        return None;
    }
    for w in &cap.warnings {
        tracing::info!("eBPF: {w}");
    }
    let mut tracer = match Tracer::start(TracerConfig::new(ctx.cluster.clone(), ctx.node.clone())) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(
                "eBPF tracer could not start ({e}): no NCCL or CUDA synchronize calls; the other sources keep running"
            );
            return None;
        }
    };
    let spawned = std::thread::Builder::new().name("strand-ebpf".into()).spawn(move || {
        let mut out = Output::default();
        loop {
            let stopping = shutdown.is_triggered();
            if let Err(e) = tracer.poll(&mut out) {
                tracing::warn!("eBPF poll: {e}");
            }
            deliver(&ctx, &sinks, &mut out);
            metrics.update(&tracer.stats());
            if stopping {
                break;
            }
            std::thread::sleep(poll);
        }
    });
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!("eBPF thread could not start: {e}");
            None
        }
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
