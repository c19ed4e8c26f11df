//! `strand-agent run`: start the sources, the per-table writers, the metrics
//! endpoint and (with a collector) the uploader; stop cleanly on SIGTERM.
//!
//! Data flows one way: sources → row sinks → (live windows) → batch writers
//! → spool → uploader → collector.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use strand_schemas::*;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::context::SourceContext;
use crate::metrics::AgentMetrics;
use crate::shutdown::{Shutdown, shutdown_pair};
use crate::sink::RowSink;
use crate::source::{Health, Running, StartContext};
use crate::spool::Spool;
use crate::writer::{self, BatchWriter, Observer, Rotation};

/// Options that are not configuration: test and benchmark hooks.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replace NVML by N simulated GPUs (demos, benchmarks).
    pub simulate_gpus: Option<u32>,
    /// Replace NVML by a recording (tests).
    pub nvml_replay: Option<PathBuf>,
}

/// Pending batches a sink may hold before it drops (and counts) rows.
const SINK_CAPACITY: usize = 1024;

/// One row sink per table; sources clone what they need.
#[derive(Clone)]
pub struct Sinks {
    pub gpu_samples: RowSink<GpuSample>,
    pub gpu_events: RowSink<GpuEvent>,
    pub kernel_events: RowSink<KernelEvent>,
    pub nccl_calls: RowSink<NcclCall>,
    pub cuda_sync_calls: RowSink<CudaSyncCall>,
    pub process_events: RowSink<ProcessEvent>,
    pub steps: RowSink<Step>,
    pub windows: RowSink<Window>,
    pub kernel_summaries: RowSink<KernelSummary>,
    pub nic_samples: RowSink<NicSample>,
    pub process_samples: RowSink<ProcessSample>,
}

struct Writers {
    handles: Vec<JoinHandle<()>>,
}

fn start_writer<T: Table>(
    spool: &Arc<Spool>,
    rotation: Rotation,
    metrics: &AgentMetrics,
    first_ns: fn(&T) -> i64,
    observer: Option<Observer<T>>,
    shutdown: &Shutdown,
    writers: &mut Writers,
) -> RowSink<T> {
    let (sink, rx) = RowSink::channel(SINK_CAPACITY, metrics.dropped(T::NAME, "backpressure"));
    let w = BatchWriter::<T>::new(spool.clone(), rotation, metrics.clone());
    writers.handles.push(tokio::spawn(writer::run(rx, w, first_ns, observer, shutdown.clone())));
    sink
}

pub async fn run(cfg: Config, opts: RunOptions) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM while the sources start (systemd stopping a
    // unit that is still starting) then stops the agent cleanly, not by the
    // signal's default action.
    let stop = StopSignals::install();
    let node = cfg.node_name();
    let comm_kernels = Arc::new(cfg.comm_kernel_table().map_err(anyhow::Error::msg)?);
    let ctx =
        Arc::new(SourceContext::new(&cfg.cluster, &node, cfg.job_id.clone()).with_comm_kernels(comm_kernels.clone()));
    let metrics = AgentMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let health = Health::register(&mut registry);
    let sources = crate::source::all(&mut registry);
    let live_metrics = crate::live::LiveMetrics::register(&mut registry);
    let (trigger, shutdown) = shutdown_pair();
    // The windows and steps writers stop last: the final windows are flushed
    // only after every other table's rows reached the live windows.
    let (late_trigger, late_shutdown) = shutdown_pair();

    let backend: strand_kernels::Backend = cfg.kernels.backend.parse().map_err(anyhow::Error::msg)?;
    let reducer = Arc::new(strand_kernels::Reducer::new(backend).context("kernels.backend")?);
    let window_cfg = strand_analysis::WindowConfig {
        period_ns: cfg.windows.period.as_nanos() as i64,
        lateness_ns: cfg.windows.lateness.as_nanos() as i64,
        launch_gap_ns: cfg.windows.launch_gap.as_nanos() as i64,
        sample_period_ns: cfg.nvml.period.as_nanos() as i64,
        peaks: strand_analysis::mfu::PeakTable::new(cfg.windows.peak_flops.clone()).map_err(anyhow::Error::msg)?,
        default_dtype: cfg.windows.default_dtype.clone(),
        comm_kernels,
        ..Default::default()
    };
    let live = Arc::new(
        crate::live::Live::new(window_cfg, reducer, cfg.windows.nccl_join_hold, ctx.clone(), live_metrics)
            .map_err(anyhow::Error::msg)?,
    );

    let (mut spool, recovery) =
        Spool::open(&cfg.data_dir, &cfg.cluster, &node, cfg.output.quota_bytes, metrics.clone())
            .with_context(|| format!("cannot open the data directory {}", cfg.data_dir.display()))?;
    if !(cfg.collector.kernel_events && cfg.collector.url.is_some()) {
        spool.set_keep_local(vec![crate::spool::KeepLocal {
            table: KernelEvent::NAME.into(),
            max_bytes: cfg.output.kernel_events_max_bytes,
            max_age: cfg.output.kernel_events_max_age,
        }]);
    }
    let spool = Arc::new(spool);
    tracing::info!(
        "data directory {}: {} complete batch file(s) ({} bytes) kept from earlier runs",
        cfg.data_dir.display(),
        recovery.complete_files,
        recovery.complete_bytes
    );

    let rotation = Rotation { interval: cfg.output.rotate_interval, bytes: cfg.output.rotate_bytes };
    let mut writers = Writers { handles: Vec::new() };
    let mut last_writers = Writers { handles: Vec::new() };
    let w = &mut writers;
    // Every batch is shown to the live windows before it is written.
    fn observe<T: Table>(live: &Arc<crate::live::Live>, f: fn(&crate::live::Live, &[T])) -> Option<Observer<T>> {
        let live = live.clone();
        Some(Box::new(move |rows: &[T]| f(&live, rows)))
    }
    use crate::live::Live;
    let sinks = Sinks {
        gpu_samples: start_writer(
            &spool,
            rotation,
            &metrics,
            |r: &GpuSample| r.ts_ns,
            observe(&live, Live::on_samples),
            &shutdown,
            w,
        ),
        gpu_events: start_writer(&spool, rotation, &metrics, |r: &GpuEvent| r.ts_ns, None, &shutdown, w),
        kernel_events: start_writer(
            &spool,
            rotation,
            &metrics,
            |r: &KernelEvent| r.start_ns,
            observe(&live, Live::on_kernels),
            &shutdown,
            w,
        ),
        nccl_calls: start_writer(
            &spool,
            rotation,
            &metrics,
            |r: &NcclCall| r.enter_ns,
            observe(&live, Live::on_nccl),
            &shutdown,
            w,
        ),
        cuda_sync_calls: start_writer(
            &spool,
            rotation,
            &metrics,
            |r: &CudaSyncCall| r.enter_ns,
            observe(&live, Live::on_sync),
            &shutdown,
            w,
        ),
        process_events: start_writer(
            &spool,
            rotation,
            &metrics,
            |r: &ProcessEvent| r.ts_ns,
            observe(&live, Live::on_process),
            &shutdown,
            w,
        ),
        steps: start_writer(
            &spool,
            rotation,
            &metrics,
            |r: &Step| r.start_ns,
            observe(&live, Live::on_steps),
            &late_shutdown,
            &mut last_writers,
        ),
        windows: start_writer(
            &spool,
            rotation,
            &metrics,
            |r: &Window| r.start_ns,
            None,
            &late_shutdown,
            &mut last_writers,
        ),
        kernel_summaries: start_writer(
            &spool,
            rotation,
            &metrics,
            |r: &KernelSummary| r.start_ns,
            None,
            &late_shutdown,
            &mut last_writers,
        ),
        nic_samples: start_writer(&spool, rotation, &metrics, |r: &NicSample| r.ts_ns, None, &shutdown, w),
        process_samples: start_writer(&spool, rotation, &metrics, |r: &ProcessSample| r.ts_ns, None, &shutdown, w),
    };
    // eBPF's NCCL calls meet their CUPTI kernels before the nccl_calls writer.
    let (ebpf_nccl, ebpf_nccl_rx) = RowSink::channel(SINK_CAPACITY, metrics.dropped(NcclCall::NAME, "backpressure"));
    let join_task = tokio::spawn(crate::live::run_join(live.clone(), ebpf_nccl_rx, sinks.nccl_calls.clone()));
    let (windows_done, windows_done_rx) = tokio::sync::oneshot::channel();
    let windows_task = tokio::spawn(crate::live::run_windows(
        live.clone(),
        sinks.windows.clone(),
        sinks.kernel_summaries.clone(),
        sinks.steps.clone(),
        windows_done_rx,
    ));

    let registry = Arc::new(Mutex::new(registry));
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    if !cfg.metrics.listen.is_empty() {
        let addr: std::net::SocketAddr = cfg.metrics.listen.parse().with_context(|| {
            format!("metrics.listen {:?} is not an address like 127.0.0.1:9464", cfg.metrics.listen)
        })?;
        // Bind now so a taken port fails the start with a clear message.
        let listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!("cannot listen on {addr} for /metrics (set metrics.listen, or --metrics-listen \"\" to disable)")
        })?;
        listener.set_nonblocking(true)?;
        let (reg, sd, dir) = (registry.clone(), shutdown.clone(), cfg.data_dir.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(listener, reg, dir, sd).await {
                tracing::error!("metrics endpoint stopped: {e}");
            }
        }));
        tracing::info!("metrics on http://{addr}/metrics");
    }

    // Every source starts the same way and reports its parts through `health`.
    let mut cx = StartContext {
        cfg: cfg.clone(),
        opts,
        ctx: ctx.clone(),
        sinks: sinks.clone(),
        ebpf_nccl: Some(ebpf_nccl),
        metrics: metrics.clone(),
        health: health.clone(),
        shutdown: shutdown.clone(),
        gpu_count: 0,
    };
    let mut threads = Vec::new();
    for source in sources {
        let (enabled, key) = source.enabled(&cfg);
        // Simulated or replayed GPUs stand in for NVML whatever the config says.
        let stand_in = source.name() == "nvml" && (cx.opts.simulate_gpus.is_some() || cx.opts.nvml_replay.is_some());
        if !enabled && !stand_in {
            for r in crate::source::off(source.as_ref(), key) {
                health.report(r);
            }
            continue;
        }
        let name = source.name();
        for running in source.start(&mut cx).with_context(|| format!("starting the {name} source"))? {
            match running {
                Running::Thread(t) => threads.push(t),
                Running::Task(t) => tasks.push(t),
            }
        }
    }
    // Whatever a source did not take (eBPF off) must not hold the join open.
    drop(cx.ebpf_nccl.take());
    let gpu_count = cx.gpu_count;
    drop(cx);

    let mut shipping = None;
    if let Some(url) = &cfg.collector.url {
        let token_file =
            cfg.collector.token_file.as_ref().context("collector.token_file is required with collector.url")?;
        let token = std::fs::read_to_string(token_file)
            .with_context(|| format!("cannot read collector.token_file {}", token_file.display()))?
            .trim()
            .to_string();
        anyhow::ensure!(!token.is_empty(), "collector.token_file {} is empty", token_file.display());
        let client = crate::uploader::client(cfg.collector.ca_file.as_deref())?;
        let target = crate::uploader::Target { url: url.clone(), token };
        tasks.push(tokio::spawn(crate::uploader::run(
            spool.clone(),
            client.clone(),
            target.clone(),
            metrics.clone(),
            shutdown.clone(),
        )));
        shipping = Some((client, target));
        tracing::info!("shipping batches to {url}");
    }

    // systemd: ready, status and watchdog.
    crate::systemd::notify(&format!("READY=1\nSTATUS=sampling {gpu_count} GPU(s); data in {}", cfg.data_dir.display()));
    if let Some(every) = crate::systemd::watchdog_interval() {
        let mut sd = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => crate::systemd::notify("WATCHDOG=1"),
                    _ = sd.wait() => break,
                }
            }
        }));
    }
    tracing::info!("strand-agent running: cluster {}, node {}, {} GPU(s)", cfg.cluster, node, gpu_count);

    stop.wait().await;
    tracing::info!("stopping: flushing open batches");
    crate::systemd::notify("STOPPING=1");
    trigger.trigger();

    // Sources first, so their last rows reach the writers; then the writers.
    // Sources first, then the NCCL join, then the table writers (their
    // observers feed the live windows), then the last windows, then their writers.
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    for t in tasks {
        let _ = t.await;
    }
    let _ = join_task.await;
    drop(sinks);
    for h in writers.handles {
        let _ = h.await;
    }
    let _ = windows_done.send(());
    let _ = windows_task.await;
    late_trigger.trigger();
    for h in last_writers.handles {
        let _ = h.await;
    }
    if let Some((client, target)) = shipping {
        crate::uploader::drain(&spool, &client, &target, &metrics, Duration::from_secs(10)).await;
    }
    match metrics.write_lost.get() {
        0 => tracing::info!("stopped; every batch is committed in {}", cfg.data_dir.display()),
        lost => tracing::error!(
            "stopped; {lost} rows could not be written to {} and are lost (full or failing storage: see the errors above and strand_agent_rows_dropped{{reason=\"write_error\"}}); every other batch is committed",
            cfg.data_dir.display()
        ),
    }
    Ok(())
}

/// SIGTERM and SIGINT, caught from the start of `run` on.
struct StopSignals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl StopSignals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(term), Ok(int)) => Self(Some((term, int))),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cannot catch SIGTERM/SIGINT ({e}): a signal stops the agent without flushing");
                Self(None)
            }
        }
    }

    async fn wait(self) {
        let Some((mut term, mut int)) = self.0 else {
            // Without signal handlers there is no clean stop; wait forever.
            return std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
