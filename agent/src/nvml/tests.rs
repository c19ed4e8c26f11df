//! The NVML source over recorded samples: an H100 (GPM), an A100 (no GPM,
//! some metrics unsupported or failing) and an H100 that falls off the bus.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;

use super::layer::*;
use super::recorded::RecordedLayer;
use super::*;

const RECORDING: &str = include_str!("testdata/recorded.jsonl");

fn convert_period(period: usize) -> Vec<GpuSample> {
    let mut layer = RecordedLayer::parse("recorded.jsonl", RECORDING).unwrap();
    let devices = layer.devices();
    let mut conv = Converter::default();
    let (c, n): (Arc<str>, Arc<str>) = (Arc::from("c"), Arc::from("n"));
    let mut out = Vec::new();
    for p in 0..=period {
        out.clear();
        for d in &devices {
            if let Ok(raw) = layer.sample(d) {
                let (u, name) = (Arc::from(d.uuid.as_str()), Arc::from(d.name.as_str()));
                let id = super::convert::Identity { cluster: &c, node: &n, uuid: &u, name: &name };
                out.push(conv.convert(&id, d, p as i64, raw));
            }
        }
    }
    out
}

#[test]
fn units_are_converted_to_the_schema() {
    let rows = convert_period(1);
    let h = &rows[0];
    assert_eq!(h.reported_utilization_ratio, Some(0.98));
    assert_eq!(h.memory_utilization_ratio, Some(0.35));
    assert_eq!(h.sm_active_ratio, Some(0.625));
    assert_eq!(h.tensor_active_ratio, Some(0.41));
    assert_eq!(h.power_w, Some(512.345));
    assert_eq!(h.power_limit_w, Some(700.0));
    assert_eq!(h.pcie_tx_bytes_per_s, Some(1000 * 1024));
    assert_eq!(h.memory_used_bytes, Some(64424509440));
    assert_eq!(h.nvlink_crc_errors_total, Some(vec![0, 1]));
    assert_eq!(h.ecc_corrected_total, Some(2));
    assert_eq!(h.pids, vec![4242]);
    assert_eq!(h.gpu_name.as_ref(), "NVIDIA H100 80GB HBM3");
}

#[test]
fn unsupported_and_failed_metrics_are_null_never_zero() {
    let rows = convert_period(1);
    let a = &rows[1];
    assert_eq!(a.reported_utilization_ratio, Some(0.55));
    for (name, v) in [
        ("sm_active", a.sm_active_ratio),
        ("tensor_active", a.tensor_active_ratio),
        ("dram_active", a.dram_active_ratio),
        ("fp64_active", a.fp64_active_ratio),
    ] {
        assert_eq!(v, None, "A100 has no GPM: {name} must be null");
    }
    assert_eq!(a.energy_mj_total, None);
    assert_eq!(a.nvlink_tx_bytes_total, None);
    assert_eq!(a.nvlink_crc_errors_total, Some(vec![0; 12]));
    assert_eq!(a.ecc_corrected_total, None, "a failed ECC read is null");
    // The first GPM window of an H100 has no value yet: null, not 0.
    let first = convert_period(0);
    assert_eq!(first[0].sm_active_ratio, None);
    assert_eq!(first[0].reported_utilization_ratio, Some(0.97));
}

#[test]
fn a_bad_recording_names_file_and_line() {
    let e = RecordedLayer::parse("r.jsonl", "{\"devices\":[]}\n{\"samples\": 5}\n").err().unwrap();
    assert!(e.starts_with("r.jsonl:2:"), "{e}");
    assert!(RecordedLayer::parse("r.jsonl", "").err().unwrap().contains("empty recording"));
}

#[test]
fn the_source_survives_a_gpu_falling_off_the_bus_and_reports_events() {
    let mut layer = Box::new(RecordedLayer::parse("recorded.jsonl", RECORDING).unwrap());
    let devices = layer.devices();
    let ctx = Arc::new(SourceContext::new("c", "n", Some("job-7".into())));
    let metrics = AgentMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let (samples, mut srx) = RowSink::channel(64, metrics.dropped("gpu_samples", "backpressure"));
    let (events, mut erx) = RowSink::channel(64, metrics.dropped("gpu_events", "backpressure"));
    let (trigger, shutdown) = crate::shutdown::shutdown_pair();
    let handle = spawn(
        layer,
        devices,
        Duration::from_millis(100),
        ctx.clone(),
        NvmlSinks { samples, events },
        metrics.clone(),
        shutdown,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(650));
    trigger.trigger();
    handle.join().unwrap();

    let mut rows = Vec::new();
    while let Ok(batch) = srx.try_recv() {
        rows.extend(batch);
    }
    let mut evs = Vec::new();
    while let Ok(batch) = erx.try_recv() {
        evs.extend(batch);
    }
    let of = |i: i32| rows.iter().filter(|r| r.gpu_index == i).count();
    assert!(of(0) >= 5, "GPU 0 keeps being sampled: {} rows", of(0));
    assert_eq!(of(2), 2, "GPU 2 was sampled twice before it fell off the bus");
    assert_eq!(of(0), of(1));
    assert!(rows.iter().filter(|r| r.gpu_index == 1).all(|r| r.sm_active_ratio.is_none()));
    assert_eq!(rows.iter().find(|r| r.gpu_index == 0).unwrap().job_id.as_deref(), Some("job-7"));
    assert_eq!(ctx.gpu_index_of("GPU-bbbbbbbb-0000-4000-8000-000000000001"), Some(1));

    let lost: Vec<_> = evs.iter().filter(|e| e.kind == "gpu_lost").collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].gpu_index, Some(2));
    let xid: Vec<_> = evs.iter().filter(|e| e.kind == "xid").collect();
    assert_eq!(xid.len(), 1);
    assert_eq!(xid[0].xid, Some(79));
    assert_eq!(xid[0].gpu_uuid.as_deref(), Some("GPU-cccccccc-0000-4000-8000-000000000002"));
    assert!(xid[0].detail.as_deref().unwrap().contains("fallen off the bus"));

    // Gauges: the A100 has no SM-active series at all; the lost GPU's series are gone.
    let text = crate::metrics::render(&Mutex::new(registry));
    assert!(text.contains("strand_gpu_sm_active_ratio{gpu=\"0\""), "{text}");
    assert!(!text.contains("strand_gpu_sm_active_ratio{gpu=\"1\""), "{text}");
    assert!(!text.contains("strand_gpu_reported_utilization_ratio{gpu=\"2\""), "{text}");
    assert!(text.contains("strand_gpu_reported_utilization_ratio{gpu=\"1\""), "{text}");
    assert!(text.contains("strand_agent_errors_total{source=\"nvml\",kind=\"gpu_lost\"} 1"), "{text}");
}
