//! NVML source: every GPU's counters each period → `gpu_samples`, GPU events
//! as they happen → `gpu_events`, and the per-GPU Prometheus gauges.
//!
//! NVML calls block, so the source runs on its own thread. Between samples
//! it waits on the NVML event set, which is how XID errors arrive promptly
//! without a second thread.

pub(crate) mod convert;
pub mod layer;
pub mod real;
pub mod recorded;

use std::sync::Arc;
use std::time::{Duration, Instant};

use strand_schemas::clock::utc_now_ns;
use strand_schemas::{GpuEvent, GpuSample};

use crate::context::SourceContext;
use crate::gpu_metrics::{GpuIdentity, Workload};
use crate::metrics::{AgentMetrics, SourceLabels};
use crate::shutdown::Shutdown;
use crate::sink::RowSink;
pub use convert::Converter;
use layer::{DeviceInfo, GpuLayer, RawEvent};

struct Gpu {
    info: DeviceInfo,
    uuid: Arc<str>,
    name: Arc<str>,
    alive: bool,
}

/// Where the source sends its rows.
pub struct NvmlSinks {
    pub samples: RowSink<GpuSample>,
    pub events: RowSink<GpuEvent>,
}

/// The NVML source: per-GPU counters and GPU events. One part, `counters`
/// (GPM support is a property of the GPU, said in the detail, not a failure).
pub struct NvmlSource;

const PARTS: &[&str] = &["counters"];

impl crate::source::Source for NvmlSource {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn parts(&self) -> &'static [&'static str] {
        PARTS
    }

    fn enabled(&self, cfg: &crate::config::Config) -> (bool, &'static str) {
        (cfg.nvml.enabled, "nvml.enabled")
    }

    fn check(&self, _cfg: &crate::config::Config) -> Vec<crate::source::Report> {
        use crate::source::{Report, State};
        let report = match real::NvmlLayer::open() {
            Ok(mut layer) => {
                let devices = layer.devices();
                let gpm: Vec<String> =
                    devices.iter().filter(|d| layer.gpm_supported(d.index)).map(|d| d.index.to_string()).collect();
                let gpm = if gpm.is_empty() {
                    "no GPU supports GPM (Hopper or newer): SM/tensor/DRAM activity null".to_string()
                } else {
                    format!("GPM on GPU(s) {}", gpm.join(","))
                };
                let state = if devices.is_empty() { State::Down } else { State::Up };
                Report::new("nvml", "counters", state, format!("{}; {} GPU(s); {gpm}", layer.describe(), devices.len()))
            }
            Err(e) => {
                Report::new("nvml", "counters", State::Down, format!("{e}: no GPU counters, GPM metrics or XID events"))
            }
        };
        vec![report]
    }

    fn start(self: Box<Self>, cx: &mut crate::source::StartContext) -> anyhow::Result<Vec<crate::source::Running>> {
        use crate::source::{Report, Running, State};
        let (mut layer, how): (Box<dyn GpuLayer>, String) = if let Some(n) = cx.opts.simulate_gpus {
            (Box::new(recorded::RecordedLayer::synthetic(n)), format!("{n} simulated GPU(s)"))
        } else if let Some(path) = &cx.opts.nvml_replay {
            (
                Box::new(recorded::RecordedLayer::from_file(path).map_err(anyhow::Error::msg)?),
                format!("replaying {}", path.display()),
            )
        } else {
            match real::NvmlLayer::open() {
                Ok(l) => (Box::new(l), String::new()),
                Err(e) => {
                    cx.health.report(Report::new(
                        "nvml",
                        "counters",
                        State::Down,
                        format!(
                            "{e}: GPU counters, GPM metrics and XID events are off; the other sources keep running"
                        ),
                    ));
                    return Ok(Vec::new());
                }
            }
        };
        // Enumerate before readiness, so a broken driver shows at start.
        let devices = layer.devices();
        cx.gpu_count = devices.len();
        let detail = if how.is_empty() { format!("{}; {} GPU(s)", layer.describe(), devices.len()) } else { how };
        let state = if devices.is_empty() { State::Down } else { State::Up };
        cx.health.report(Report::new("nvml", "counters", state, detail));
        let sinks = NvmlSinks { samples: cx.sinks.gpu_samples.clone(), events: cx.sinks.gpu_events.clone() };
        let h =
            spawn(layer, devices, cx.cfg.nvml.period, cx.ctx.clone(), sinks, cx.metrics.clone(), cx.shutdown.clone())?;
        Ok(vec![Running::Thread(h)])
    }
}

/// Runs the sampling loop over `devices` (from `layer.devices()`) on a
/// dedicated thread until shutdown.
pub fn spawn(
    mut layer: Box<dyn GpuLayer>,
    devices: Vec<DeviceInfo>,
    period: Duration,
    ctx: Arc<SourceContext>,
    sinks: NvmlSinks,
    metrics: AgentMetrics,
    shutdown: Shutdown,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("strand-nvml".into()).spawn(move || {
        let driver_version = layer.driver_version().unwrap_or_default();
        let mut gpus: Vec<Gpu> = devices
            .into_iter()
            .map(|info| {
                metrics.gpu.add(GpuIdentity {
                    index: info.index,
                    uuid: info.uuid.clone(),
                    node: ctx.node.to_string(),
                    model: info.name.clone(),
                    pci_bus_id: info.pci_bus_id.clone(),
                    driver_version: driver_version.clone(),
                });
                Gpu { uuid: Arc::from(info.uuid.as_str()), name: Arc::from(info.name.as_str()), info, alive: true }
            })
            .collect();
        ctx.set_gpus(gpus.iter().map(|g| (g.info.uuid.clone(), g.info.index as i32)));
        tracing::info!("nvml: sampling {} GPU(s) every {:?} ({})", gpus.len(), period, layer.describe());
        let mut conv = Converter::default();
        let mut next = Instant::now();
        while !shutdown.is_triggered() {
            let rows = sample_all(layer.as_mut(), &mut gpus, &mut conv, &ctx, &sinks, &metrics);
            sinks.samples.send(rows);
            next += period;
            // Wait for events until the next sample is due (or shutdown).
            loop {
                let now = Instant::now();
                if now >= next || shutdown.is_triggered() {
                    break;
                }
                let wait = (next - now).min(Duration::from_millis(200));
                let events = layer.wait_events(wait.as_millis() as u32);
                if !events.is_empty() {
                    for e in &events {
                        if let (Some(index), Some(xid)) = (e.index, e.xid) {
                            metrics.gpu.xid(index, xid);
                        }
                    }
                    sinks.events.send(events.into_iter().map(|e| event_row(&ctx, &gpus, e)).collect());
                }
            }
            if Instant::now() > next + period {
                // Fell behind (suspended, overloaded): skip missed periods rather than burst.
                next = Instant::now();
            }
        }
    })
}

fn sample_all(
    layer: &mut dyn GpuLayer,
    gpus: &mut [Gpu],
    conv: &mut Converter,
    ctx: &SourceContext,
    sinks: &NvmlSinks,
    metrics: &AgentMetrics,
) -> Vec<GpuSample> {
    let mut rows = Vec::with_capacity(gpus.len());
    for gpu in gpus.iter_mut().filter(|g| g.alive) {
        let ts = utc_now_ns();
        match layer.sample(&gpu.info) {
            Ok(raw) => {
                let id = convert::Identity { cluster: &ctx.cluster, node: &ctx.node, uuid: &gpu.uuid, name: &gpu.name };
                let mut row = conv.convert(&id, &gpu.info, ts, raw);
                for (metric, _) in conv.failures.drain(..) {
                    metrics.error("nvml", metric);
                }
                row.job_id = row.pids.iter().find_map(|&p| ctx.job_of(p));
                ctx.note_gpu_pids(&row.pids);
                let workload = Workload::new(row.job_id.clone(), ctx.pod_of(&gpu.info.uuid).as_ref());
                metrics.gpu.update(gpu.info.index, row.clone(), workload);
                rows.push(row);
            }
            Err(gone) => {
                gpu.alive = false;
                tracing::error!(gpu = gpu.info.index, uuid = %gpu.info.uuid, "{}; no more samples from this GPU", gone.0);
                metrics.error("nvml", "gpu_lost");
                metrics.gpu.lost(gpu.info.index);
                sinks.events.send(vec![GpuEvent {
                    cluster: ctx.cluster.clone(),
                    node: ctx.node.clone(),
                    ts_ns: ts,
                    gpu_index: Some(gpu.info.index as i32),
                    gpu_uuid: Some(gpu.uuid.clone()),
                    kind: "gpu_lost".into(),
                    xid: None,
                    value: None,
                    pid: None,
                    job_id: None,
                    detail: Some(gone.0),
                }]);
            }
        }
    }
    metrics.samples.get_or_create(&SourceLabels { source: "nvml".into() }).inc_by(rows.len() as u64);
    rows
}

fn event_row(ctx: &SourceContext, gpus: &[Gpu], e: RawEvent) -> GpuEvent {
    let gpu = gpus.iter().find(|g| Some(g.info.index) == e.index);
    let detail = e.xid.map(|x| format!("XID {x}: {}", xid_description(x)));
    GpuEvent {
        cluster: ctx.cluster.clone(),
        node: ctx.node.clone(),
        ts_ns: utc_now_ns(),
        gpu_index: e.index.map(|i| i as i32),
        gpu_uuid: gpu.map(|g| g.uuid.clone()).or_else(|| e.uuid.as_deref().map(Arc::from)),
        kind: e.kind,
        xid: e.xid.and_then(|x| i64::try_from(x).ok()),
        value: e.value.and_then(|v| i64::try_from(v).ok()),
        pid: None,
        job_id: None,
        detail,
    }
}

/// The XIDs an operator most often meets (NVIDIA's XID catalog).
pub fn xid_description(xid: u64) -> &'static str {
    match xid {
        13 => "graphics engine exception",
        31 => "GPU memory page fault",
        43 => "GPU stopped processing",
        45 => "preemptive cleanup after an earlier error",
        48 => "double-bit ECC error",
        63 => "ECC page retirement or row remapping recorded",
        64 => "ECC page retirement or row remapping failure",
        74 => "NVLink error",
        79 => "GPU has fallen off the bus",
        92 => "high single-bit ECC error rate",
        94 => "contained ECC error",
        95 => "uncontained ECC error",
        119 | 120 => "GSP error",
        _ => "see NVIDIA's XID catalog",
    }
}

#[cfg(test)]
mod tests;
