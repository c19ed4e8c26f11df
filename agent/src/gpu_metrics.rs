//! Per-GPU Prometheus metrics, rendered at each scrape from the last NVML
//! sample of every GPU (a [`Collector`], not a set of gauges kept by hand):
//! a counter keeps the driver's own cumulative value, resets included; a
//! GPU that is lost or whose workload changed leaves no stale series; a
//! metric the GPU does not support has no series at all (never a 0 that
//! looks like a measurement).
//!
//! Labels follow dcgm-exporter's conventions where they exist:
//! - identity `gpu`, `uuid`, `node` on every series;
//! - `strand_gpu_info{gpu,uuid,node,model,pci_bus_id,driver_version} 1`;
//! - workload `job_id`, `pod`, `namespace`, `container` on every
//!   measurement, when known (SLURM or cgroups; the kubelet's pod-resources
//!   API). An unknown one is absent, never empty.
//!
//! docs/metrics.md lists every family with its dcgm-exporter counterpart.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use strand_schemas::GpuSample;

/// Who a GPU is, as enumerated at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuIdentity {
    pub index: u32,
    pub uuid: String,
    pub node: String,
    pub model: String,
    pub pci_bus_id: String,
    pub driver_version: String,
}

/// The workload holding a GPU, when known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Workload {
    pub job_id: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub container: Option<String>,
}

/// A Kubernetes container holding a GPU (from the kubelet's pod-resources API).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PodRef {
    pub pod: String,
    pub namespace: String,
    pub container: String,
}

impl Workload {
    pub fn new(job_id: Option<String>, pod: Option<&PodRef>) -> Self {
        Self {
            job_id,
            pod: pod.map(|p| p.pod.clone()),
            namespace: pod.map(|p| p.namespace.clone()),
            container: pod.map(|p| p.container.clone()),
        }
    }

    /// The labels of the known parts, in a fixed order.
    pub fn labels(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [("job_id", &self.job_id), ("pod", &self.pod), ("namespace", &self.namespace), ("container", &self.container)]
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (k, v)))
    }
}

/// Labels of a per-GPU series kept in a `Family`: the identity, the
/// workload (known parts only) and the family's own labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesLabels {
    pub gpu: String,
    pub uuid: String,
    pub node: String,
    pub workload: Workload,
    pub extra: Vec<(&'static str, String)>,
}

impl prometheus_client::encoding::EncodeLabelSet for SeriesLabels {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelSetEncoder) -> std::fmt::Result {
        let mut v: Vec<(&str, &str)> = vec![("gpu", &self.gpu), ("uuid", &self.uuid), ("node", &self.node)];
        v.extend(self.workload.labels());
        v.extend(self.extra.iter().map(|(k, x)| (*k, x.as_str())));
        v.as_slice().encode(encoder)
    }
}

/// NVML clock-event ("throttle") reasons, by bit (nvml.h `nvmlClocksEventReason*`).
pub const THROTTLE_REASONS: [(u64, &str); 9] = [
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
];

#[derive(Debug, Clone, Default)]
struct GpuState {
    id: GpuIdentity,
    up: bool,
    workload: Workload,
    sample: Option<GpuSample>,
    /// XID errors seen, by XID.
    xid: BTreeMap<u64, u64>,
}

/// Every GPU's last reading; cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct GpuCollector {
    gpus: Mutex<BTreeMap<u32, GpuState>>,
}

type Labels = Vec<(&'static str, String)>;

fn identity(id: &GpuIdentity) -> Labels {
    vec![("gpu", id.index.to_string()), ("uuid", id.uuid.clone()), ("node", id.node.clone())]
}

fn measurement(s: &GpuState) -> Labels {
    let mut l = identity(&s.id);
    l.extend(s.workload.labels().map(|(k, v)| (k, v.to_string())));
    l
}

/// A gauge family: `value` gives each GPU's value or `None` (no series).
struct Gauge {
    name: &'static str,
    help: &'static str,
    value: fn(&GpuSample) -> Option<f64>,
}

/// A counter family of the driver's cumulative values.
struct Counter {
    name: &'static str,
    help: &'static str,
    value: fn(&GpuSample) -> Option<f64>,
}

const GAUGES: &[Gauge] = &[
    Gauge {
        name: "strand_gpu_reported_utilization_ratio",
        help: "NVML utilization.gpu: share of time at least one kernel ran (0-1)",
        value: |s| s.reported_utilization_ratio,
    },
    Gauge {
        name: "strand_gpu_memory_utilization_ratio",
        help: "NVML utilization.memory: share of time device memory was read or written (0-1)",
        value: |s| s.memory_utilization_ratio,
    },
    Gauge {
        name: "strand_gpu_sm_active_ratio",
        help: "GPM SM_UTIL: SM active (0-1, Hopper and newer)",
        value: |s| s.sm_active_ratio,
    },
    Gauge { name: "strand_gpu_sm_occupancy_ratio", help: "GPM SM_OCCUPANCY (0-1)", value: |s| s.sm_occupancy_ratio },
    Gauge {
        name: "strand_gpu_tensor_active_ratio",
        help: "GPM ANY_TENSOR_UTIL: tensor active (0-1)",
        value: |s| s.tensor_active_ratio,
    },
    Gauge {
        name: "strand_gpu_dram_active_ratio",
        help: "GPM DRAM_BW_UTIL: DRAM active (0-1)",
        value: |s| s.dram_active_ratio,
    },
    Gauge { name: "strand_gpu_fp16_active_ratio", help: "GPM FP16_UTIL (0-1)", value: |s| s.fp16_active_ratio },
    Gauge { name: "strand_gpu_fp32_active_ratio", help: "GPM FP32_UTIL (0-1)", value: |s| s.fp32_active_ratio },
    Gauge { name: "strand_gpu_fp64_active_ratio", help: "GPM FP64_UTIL (0-1)", value: |s| s.fp64_active_ratio },
    Gauge {
        name: "strand_gpu_sm_clock_hertz",
        help: "Current SM clock",
        value: |s| s.sm_clock_mhz.map(|m| m as f64 * 1e6),
    },
    Gauge {
        name: "strand_gpu_sm_clock_max_hertz",
        help: "Maximum SM clock",
        value: |s| s.sm_clock_max_mhz.map(|m| m as f64 * 1e6),
    },
    Gauge {
        name: "strand_gpu_memory_clock_hertz",
        help: "Current memory clock",
        value: |s| s.memory_clock_mhz.map(|m| m as f64 * 1e6),
    },
    Gauge { name: "strand_gpu_power_watts", help: "Power draw", value: |s| s.power_w },
    Gauge { name: "strand_gpu_power_limit_watts", help: "Enforced power limit", value: |s| s.power_limit_w },
    Gauge {
        name: "strand_gpu_temperature_celsius",
        help: "GPU temperature",
        value: |s| s.temperature_c.map(f64::from),
    },
    Gauge {
        name: "strand_gpu_memory_used_bytes",
        help: "Device memory in use",
        value: |s| s.memory_used_bytes.map(|b| b as f64),
    },
    Gauge {
        name: "strand_gpu_memory_total_bytes",
        help: "Device memory in total",
        value: |s| s.memory_total_bytes.map(|b| b as f64),
    },
    Gauge {
        name: "strand_gpu_pcie_tx_bytes_per_second",
        help: "PCIe transmit throughput (NVML's 20 ms sample)",
        value: |s| s.pcie_tx_bytes_per_s.map(|b| b as f64),
    },
    Gauge {
        name: "strand_gpu_pcie_rx_bytes_per_second",
        help: "PCIe receive throughput (NVML's 20 ms sample)",
        value: |s| s.pcie_rx_bytes_per_s.map(|b| b as f64),
    },
    Gauge {
        name: "strand_gpu_throttle_reasons",
        help: "NVML clock-event reasons bitmask; 0 = not throttled (strand_gpu_throttle has one series per reason)",
        value: |s| s.throttle_reasons.map(|b| b as f64),
    },
    Gauge {
        name: "strand_gpu_processes",
        help: "Processes holding a context on the GPU",
        value: |s| Some(s.pids.len() as f64),
    },
];

const COUNTERS: &[Counter] = &[
    Counter {
        name: "strand_gpu_energy_joules",
        help: "Energy consumed since the driver was loaded",
        value: |s| s.energy_mj_total.map(|mj| mj as f64 / 1000.0),
    },
    Counter {
        name: "strand_gpu_pcie_replays",
        help: "PCIe replay counter (link-level retransmissions)",
        value: |s| s.pcie_replay_total.map(|n| n as f64),
    },
];

impl GpuCollector {
    /// A GPU found at start: its info series and `strand_gpu_up 1`.
    pub fn add(&self, id: GpuIdentity) {
        if let Ok(mut g) = self.gpus.lock() {
            g.insert(id.index, GpuState { id, up: true, ..Default::default() });
        }
    }

    /// The last sample of GPU `index`, and who holds it.
    pub fn update(&self, index: u32, sample: GpuSample, workload: Workload) {
        if let Ok(mut g) = self.gpus.lock()
            && let Some(s) = g.get_mut(&index)
        {
            s.sample = Some(sample);
            s.workload = workload;
        }
    }

    /// The GPU is gone: `strand_gpu_up 0`, and no more measurements.
    pub fn lost(&self, index: u32) {
        if let Ok(mut g) = self.gpus.lock()
            && let Some(s) = g.get_mut(&index)
        {
            s.up = false;
            s.sample = None;
        }
    }

    /// Counts an XID error of GPU `index`.
    pub fn xid(&self, index: u32, xid: u64) {
        if let Ok(mut g) = self.gpus.lock()
            && let Some(s) = g.get_mut(&index)
        {
            *s.xid.entry(xid).or_default() += 1;
        }
    }
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, series: &[(Labels, f64)]) -> std::fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in series {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, series: &[(Labels, f64)]) -> std::fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn with(mut l: Labels, extra: &[(&'static str, String)]) -> Labels {
    l.extend_from_slice(extra);
    l
}

impl Collector for GpuCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let Ok(gpus) = self.gpus.lock().map(|g| g.values().cloned().collect::<Vec<_>>()) else { return Ok(()) };
        if gpus.is_empty() {
            return Ok(());
        }
        let mut m = enc.encode_descriptor(
            "strand_gpu",
            "A GPU of this node: model, PCI bus id and driver version (join on gpu, uuid, node)",
            None,
            MetricType::Info,
        )?;
        for s in &gpus {
            let l = with(
                identity(&s.id),
                &[
                    ("model", s.id.model.clone()),
                    ("pci_bus_id", s.id.pci_bus_id.clone()),
                    ("driver_version", s.id.driver_version.clone()),
                ],
            );
            m.encode_info(&l)?;
        }
        let up: Vec<_> = gpus.iter().map(|s| (identity(&s.id), if s.up { 1.0 } else { 0.0 })).collect();
        gauge(
            &mut enc,
            "strand_gpu_up",
            "1 while NVML answers for the GPU, 0 once it is lost (fell off the bus)",
            &up,
        )?;

        let sampled: Vec<(&GpuState, &GpuSample)> =
            gpus.iter().filter_map(|s| s.sample.as_ref().map(|x| (s, x))).collect();
        for g in GAUGES {
            let series: Vec<_> =
                sampled.iter().filter_map(|(s, x)| (g.value)(x).map(|v| (measurement(s), v))).collect();
            gauge(&mut enc, g.name, g.help, &series)?;
        }
        let throttle: Vec<_> = sampled
            .iter()
            .filter_map(|(s, x)| x.throttle_reasons.map(|bits| (s, bits as u64)))
            .flat_map(|(s, bits)| {
                THROTTLE_REASONS.iter().map(move |(bit, reason)| {
                    (with(measurement(s), &[("reason", reason.to_string())]), if bits & bit != 0 { 1.0 } else { 0.0 })
                })
            })
            .collect();
        gauge(&mut enc, "strand_gpu_throttle", "1 while NVML reports this clock-event (throttle) reason", &throttle)?;

        for c in COUNTERS {
            let series: Vec<_> =
                sampled.iter().filter_map(|(s, x)| (c.value)(x).map(|v| (measurement(s), v))).collect();
            counter(&mut enc, c.name, c.help, &series)?;
        }
        let ecc: Vec<_> = sampled
            .iter()
            .flat_map(|(s, x)| {
                [("corrected", x.ecc_corrected_total), ("uncorrected", x.ecc_uncorrected_total)]
                    .into_iter()
                    .filter_map(|(t, v)| v.map(|v| (with(measurement(s), &[("type", t.to_string())]), v as f64)))
            })
            .collect();
        counter(&mut enc, "strand_gpu_ecc_errors", "ECC errors since the driver was loaded (volatile), by type", &ecc)?;
        let per_link = |f: fn(&GpuSample) -> &Option<Vec<i64>>, extra: &[(&'static str, String)]| {
            sampled
                .iter()
                .flat_map(|(s, x)| {
                    f(x).iter()
                        .flatten()
                        .enumerate()
                        .map(|(link, v)| (with(with(measurement(s), &[("link", link.to_string())]), extra), *v as f64))
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        counter(
            &mut enc,
            "strand_gpu_nvlink_tx_bytes",
            "NVLink data bytes sent, by link",
            &per_link(|x| &x.nvlink_tx_bytes_total, &[]),
        )?;
        counter(
            &mut enc,
            "strand_gpu_nvlink_rx_bytes",
            "NVLink data bytes received, by link",
            &per_link(|x| &x.nvlink_rx_bytes_total, &[]),
        )?;
        let mut errors = per_link(|x| &x.nvlink_crc_errors_total, &[("type", "crc".into())]);
        errors.extend(per_link(|x| &x.nvlink_replay_errors_total, &[("type", "replay".into())]));
        errors.extend(per_link(|x| &x.nvlink_recovery_errors_total, &[("type", "recovery".into())]));
        counter(
            &mut enc,
            "strand_gpu_nvlink_errors",
            "NVLink errors by link and type: crc (flit and data CRC), replay, recovery",
            &errors,
        )?;
        // XID errors counted from the first one seen; every GPU has a series
        // (0 until one comes) so that increase() sees the first.
        let xid: Vec<_> = gpus
            .iter()
            .flat_map(|s| {
                let mut v = vec![(with(identity(&s.id), &[("xid", "none".into())]), 0.0)];
                v.extend(s.xid.iter().map(|(x, n)| (with(identity(&s.id), &[("xid", x.to_string())]), *n as f64)));
                v
            })
            .collect();
        counter(
            &mut enc,
            "strand_gpu_xid_errors",
            "XID errors reported by the driver since the agent started, by XID (xid=\"none\" stays 0: a baseline for increase())",
            &xid,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;
    use std::sync::Arc;

    fn sample() -> GpuSample {
        use crate::nvml::layer::{DeviceInfo, RawSample};
        let a: Arc<str> = Arc::from("x");
        let id = crate::nvml::convert::Identity { cluster: &a, node: &a, uuid: &a, name: &a };
        let info = DeviceInfo { index: 0, uuid: "GPU-1".into(), name: "x".into(), pci_bus_id: String::new() };
        let mut s = crate::nvml::Converter::default().convert(&id, &info, 0, RawSample::default());
        s.reported_utilization_ratio = Some(0.9);
        s.energy_mj_total = Some(5_000_000);
        s.throttle_reasons = Some(0x4 | 0x40);
        s.ecc_corrected_total = Some(3);
        s.ecc_uncorrected_total = Some(0);
        s.nvlink_crc_errors_total = Some(vec![1, 2]);
        s.nvlink_replay_errors_total = Some(vec![0, 4]);
        s.nvlink_tx_bytes_total = Some(vec![10, 20]);
        s.pids = vec![7];
        s
    }

    fn render(c: &Arc<GpuCollector>) -> String {
        let mut r = Registry::default();
        r.register_collector(Box::new(c.clone()));
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &r).unwrap();
        s
    }

    #[test]
    fn families_have_their_types_labels_and_no_made_up_values() {
        let c = Arc::new(GpuCollector::default());
        let id = GpuIdentity {
            index: 0,
            uuid: "GPU-1".into(),
            node: "n1".into(),
            model: "NVIDIA H100".into(),
            pci_bus_id: "00000000:18:00.0".into(),
            driver_version: "580.1".into(),
        };
        c.add(id.clone());
        c.add(GpuIdentity { index: 1, uuid: "GPU-2".into(), ..id });
        let pod = PodRef { pod: "train-0".into(), namespace: "ml".into(), container: "main".into() };
        c.update(0, sample(), Workload::new(Some("4711".into()), Some(&pod)));
        c.xid(0, 79);
        c.xid(0, 79);
        let t = render(&c);
        let who = r#"gpu="0",uuid="GPU-1",node="n1",job_id="4711",pod="train-0",namespace="ml",container="main""#;
        assert!(t.contains("# TYPE strand_gpu info\n"), "{t}");
        assert!(t.contains(r#"strand_gpu_info{gpu="0",uuid="GPU-1",node="n1",model="NVIDIA H100",pci_bus_id="00000000:18:00.0",driver_version="580.1"} 1"#), "{t}");
        assert!(t.contains("# TYPE strand_gpu_energy_joules counter\n"), "{t}");
        assert!(t.contains(&format!("strand_gpu_energy_joules_total{{{who}}} 5000")), "{t}");
        assert!(t.contains(&format!("strand_gpu_reported_utilization_ratio{{{who}}} 0.9")), "{t}");
        assert!(!t.contains("strand_gpu_sm_active_ratio"), "unsupported: no series at all: {t}");
        assert!(t.contains(&format!("strand_gpu_throttle{{{who},reason=\"sw_power_cap\"}} 1")), "{t}");
        assert!(t.contains(&format!("strand_gpu_throttle{{{who},reason=\"hw_thermal_slowdown\"}} 1")), "{t}");
        assert!(t.contains(&format!("strand_gpu_throttle{{{who},reason=\"gpu_idle\"}} 0")), "{t}");
        assert!(t.contains(&format!("strand_gpu_ecc_errors_total{{{who},type=\"corrected\"}} 3")), "{t}");
        assert!(t.contains(&format!("strand_gpu_nvlink_errors_total{{{who},link=\"1\",type=\"replay\"}} 4")), "{t}");
        assert!(t.contains(r#"strand_gpu_xid_errors_total{gpu="0",uuid="GPU-1",node="n1",xid="79"} 2"#), "{t}");
        assert!(t.contains(r#"strand_gpu_xid_errors_total{gpu="1",uuid="GPU-2",node="n1",xid="none"} 0"#), "{t}");
        assert!(t.contains(r#"strand_gpu_up{gpu="1",uuid="GPU-2",node="n1"} 1"#), "{t}");
        assert!(!t.contains(r#"strand_gpu_power_watts"#), "{t}");

        // A new workload replaces the old labels; a lost GPU keeps only its identity.
        c.update(0, sample(), Workload::new(None, None));
        c.lost(1);
        let t = render(&c);
        assert!(!t.contains("job_id="), "{t}");
        assert!(t.contains(r#"strand_gpu_energy_joules_total{gpu="0",uuid="GPU-1",node="n1"} 5000"#), "{t}");
        assert!(t.contains(r#"strand_gpu_up{gpu="1",uuid="GPU-2",node="n1"} 0"#), "{t}");
        assert!(!t.contains(r#"strand_gpu_processes{gpu="1""#), "{t}");
    }
}
