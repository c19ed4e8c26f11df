//! InfiniBand / RoCE port counters from sysfs (`/sys/class/infiniband`),
//! for the link-error and congestion findings of ai.01.

use std::path::Path;
use std::sync::Arc;

use strand_schemas::NicSample;

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn counter(port: &Path, name: &str) -> Option<i64> {
    read_trim(&port.join("counters").join(name))?.parse::<u64>().ok().and_then(|v| i64::try_from(v).ok())
}

/// `"400 Gb/sec (4X NDR)"` → 400.0
fn parse_rate(s: &str) -> Option<f64> {
    s.split_whitespace().next()?.parse().ok()
}

const ROOT: &str = "/sys/class/infiniband";

/// The InfiniBand source: one part, `counters`; off where the host has no
/// InfiniBand device.
pub struct InfinibandSource;

fn ib_report() -> crate::source::Report {
    use crate::source::{Report, State};
    match std::fs::read_dir(ROOT) {
        Ok(d) => Report::new("infiniband", "counters", State::Up, format!("{} device(s) under {ROOT}", d.count())),
        Err(_) => Report::new("infiniband", "counters", State::Off, format!("no InfiniBand device ({ROOT} absent)")),
    }
}

impl crate::source::Source for InfinibandSource {
    fn name(&self) -> &'static str {
        "infiniband"
    }

    fn parts(&self) -> &'static [&'static str] {
        &["counters"]
    }

    fn enabled(&self, cfg: &crate::config::Config) -> (bool, &'static str) {
        (cfg.nvml.infiniband, "nvml.infiniband")
    }

    fn check(&self, _cfg: &crate::config::Config) -> Vec<crate::source::Report> {
        vec![ib_report()]
    }

    fn start(self: Box<Self>, cx: &mut crate::source::StartContext) -> anyhow::Result<Vec<crate::source::Running>> {
        let report = ib_report();
        let off = report.state == crate::source::State::Off;
        cx.health.report(report);
        if off {
            return Ok(Vec::new());
        }
        let (sink, ctx, period, mut sd) =
            (cx.sinks.nic_samples.clone(), cx.ctx.clone(), cx.cfg.nvml.period, cx.shutdown.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period.max(std::time::Duration::from_secs(1)));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        sink.send(sample(Path::new(ROOT), &ctx.cluster, &ctx.node, strand_schemas::clock::utc_now_ns()));
                    }
                    _ = sd.wait() => break,
                }
            }
        });
        Ok(vec![crate::source::Running::Task(task)])
    }
}

/// Reads every port of every HCA under `root` (normally `/sys/class/infiniband`).
/// Missing counters are null; an absent root gives no rows.
pub fn sample(root: &Path, cluster: &Arc<str>, node: &Arc<str>, ts_ns: i64) -> Vec<NicSample> {
    let mut out = Vec::new();
    let Ok(devices) = std::fs::read_dir(root) else { return out };
    let mut devices: Vec<_> = devices.filter_map(|d| d.ok()).collect();
    devices.sort_by_key(|d| d.file_name());
    for dev in devices {
        let Ok(ports) = std::fs::read_dir(dev.path().join("ports")) else { continue };
        let mut ports: Vec<_> = ports.filter_map(|p| p.ok()).collect();
        ports.sort_by_key(|p| p.file_name());
        for port in ports {
            let Some(num) = port.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            let p = port.path();
            out.push(NicSample {
                cluster: cluster.clone(),
                node: node.clone(),
                ts_ns,
                device: dev.file_name().to_string_lossy().into_owned(),
                port: num,
                link_layer: read_trim(&p.join("link_layer")),
                state: read_trim(&p.join("state")),
                rate_gbps: read_trim(&p.join("rate")).as_deref().and_then(parse_rate),
                symbol_error_total: counter(&p, "symbol_error"),
                link_downed_total: counter(&p, "link_downed"),
                link_error_recovery_total: counter(&p, "link_error_recovery"),
                port_rcv_errors_total: counter(&p, "port_rcv_errors"),
                port_xmit_discards_total: counter(&p, "port_xmit_discards"),
                port_xmit_wait_total: counter(&p, "port_xmit_wait"),
                // Data counters count 4-byte words.
                port_xmit_bytes_total: counter(&p, "port_xmit_data").map(|w| w.saturating_mul(4)),
                port_rcv_bytes_total: counter(&p, "port_rcv_data").map(|w| w.saturating_mul(4)),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ports_and_counters_from_a_sysfs_tree() {
        let dir = tempfile::tempdir().unwrap();
        let port = dir.path().join("mlx5_0/ports/1");
        std::fs::create_dir_all(port.join("counters")).unwrap();
        std::fs::write(port.join("state"), "4: ACTIVE\n").unwrap();
        std::fs::write(port.join("rate"), "400 Gb/sec (4X NDR)\n").unwrap();
        std::fs::write(port.join("link_layer"), "InfiniBand\n").unwrap();
        for (n, v) in
            [("symbol_error", "3"), ("link_downed", "1"), ("port_xmit_wait", "123456"), ("port_xmit_data", "1000")]
        {
            std::fs::write(port.join("counters").join(n), format!("{v}\n")).unwrap();
        }
        let rows = sample(dir.path(), &Arc::from("c"), &Arc::from("n"), 5);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.device.as_str(), r.port), ("mlx5_0", 1));
        assert_eq!(r.rate_gbps, Some(400.0));
        assert_eq!(r.state.as_deref(), Some("4: ACTIVE"));
        assert_eq!(r.symbol_error_total, Some(3));
        assert_eq!(r.link_downed_total, Some(1));
        assert_eq!(r.port_xmit_wait_total, Some(123456));
        assert_eq!(r.port_xmit_bytes_total, Some(4000));
        assert_eq!(r.port_rcv_errors_total, None, "a missing counter is null");
        assert!(sample(&dir.path().join("absent"), &Arc::from("c"), &Arc::from("n"), 5).is_empty());
    }
}
