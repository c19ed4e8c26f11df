//! Raw NVML readings → `gpu_samples` rows. A metric the GPU does not support
//! becomes null (never 0), with the reason logged once per GPU and metric.

use std::collections::HashSet;
use std::sync::Arc;

use strand_schemas::GpuSample;

use super::layer::{DeviceInfo, RawSample, Reading};

/// The strings stamped on every row of one GPU (shared, not copied per row).
#[derive(Clone, Copy)]
pub struct Identity<'a> {
    pub cluster: &'a Arc<str>,
    pub node: &'a Arc<str>,
    pub uuid: &'a Arc<str>,
    pub name: &'a Arc<str>,
}

/// Remembers which (GPU, metric) pairs were already reported.
#[derive(Default)]
pub struct Converter {
    reported: HashSet<(String, &'static str)>,
    /// Failed readings in the last conversion (for the error counter).
    pub failures: Vec<(&'static str, String)>,
}

fn to_i64<T: TryInto<i64>>(v: T) -> Option<i64> {
    v.try_into().ok()
}

fn vec_i64(v: Vec<u64>) -> Vec<i64> {
    v.into_iter().map(|x| i64::try_from(x).unwrap_or(i64::MAX)).collect()
}

impl Converter {
    fn take<T>(&mut self, gpu: &DeviceInfo, metric: &'static str, r: Reading<T>) -> Option<T> {
        match r {
            Reading::Ok(v) => Some(v),
            Reading::NotYet => None,
            Reading::Unsupported => {
                if self.reported.insert((gpu.uuid.clone(), metric)) {
                    tracing::info!(gpu = gpu.index, uuid = %gpu.uuid, metric, "not supported on this GPU; recorded as null");
                }
                None
            }
            Reading::Failed(e) => {
                if self.reported.insert((gpu.uuid.clone(), metric)) {
                    tracing::warn!(gpu = gpu.index, uuid = %gpu.uuid, metric, error = %e, "reading failed; recorded as null (logged once)");
                }
                self.failures.push((metric, e));
                None
            }
        }
    }

    /// Converts one GPU's readings taken at `ts_ns` (UTC).
    pub fn convert(&mut self, id: &Identity, gpu: &DeviceInfo, ts_ns: i64, raw: RawSample) -> GpuSample {
        let Identity { cluster, node, uuid, name } = *id;
        self.failures.clear();
        let pct = |v: f64| (v / 100.0).clamp(0.0, 1.0);
        let util = self.take(gpu, "utilization", raw.utilization);
        let g = raw.gpm;
        let memory = self.take(gpu, "memory_info", raw.memory);
        let ecc = self.take(gpu, "ecc_errors", raw.ecc);
        let n = raw.nvlink;
        GpuSample {
            cluster: cluster.clone(),
            node: node.clone(),
            ts_ns,
            gpu_index: gpu.index as i32,
            gpu_uuid: uuid.clone(),
            gpu_name: name.clone(),
            job_id: None,
            pids: self
                .take(gpu, "processes", raw.pids)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| i32::try_from(p).ok())
                .collect(),
            reported_utilization_ratio: util.map(|(g, _)| pct(g as f64)),
            memory_utilization_ratio: util.map(|(_, m)| pct(m as f64)),
            sm_active_ratio: self.take(gpu, "gpm.sm_util", g.sm_util).map(pct),
            sm_occupancy_ratio: self.take(gpu, "gpm.sm_occupancy", g.sm_occupancy).map(pct),
            tensor_active_ratio: self.take(gpu, "gpm.any_tensor_util", g.any_tensor_util).map(pct),
            dram_active_ratio: self.take(gpu, "gpm.dram_bw_util", g.dram_bw_util).map(pct),
            fp16_active_ratio: self.take(gpu, "gpm.fp16_util", g.fp16_util).map(pct),
            fp32_active_ratio: self.take(gpu, "gpm.fp32_util", g.fp32_util).map(pct),
            fp64_active_ratio: self.take(gpu, "gpm.fp64_util", g.fp64_util).map(pct),
            sm_clock_mhz: self.take(gpu, "sm_clock", raw.sm_clock_mhz).and_then(|v| i32::try_from(v).ok()),
            sm_clock_max_mhz: self.take(gpu, "sm_clock_max", raw.sm_clock_max_mhz).and_then(|v| i32::try_from(v).ok()),
            memory_clock_mhz: self.take(gpu, "memory_clock", raw.memory_clock_mhz).and_then(|v| i32::try_from(v).ok()),
            power_w: self.take(gpu, "power_usage", raw.power_mw).map(|mw| mw as f64 / 1000.0),
            power_limit_w: self.take(gpu, "power_limit", raw.power_limit_mw).map(|mw| mw as f64 / 1000.0),
            energy_mj_total: self.take(gpu, "total_energy", raw.energy_mj).and_then(to_i64),
            temperature_c: self.take(gpu, "temperature", raw.temperature_c).and_then(|v| i32::try_from(v).ok()),
            throttle_reasons: self.take(gpu, "throttle_reasons", raw.throttle_reasons).and_then(to_i64),
            memory_used_bytes: memory.and_then(|(u, _)| to_i64(u)),
            memory_total_bytes: memory.and_then(|(_, t)| to_i64(t)),
            pcie_tx_bytes_per_s: self.take(gpu, "pcie_tx", raw.pcie_tx_kbps).map(|k| k as i64 * 1024),
            pcie_rx_bytes_per_s: self.take(gpu, "pcie_rx", raw.pcie_rx_kbps).map(|k| k as i64 * 1024),
            pcie_replay_total: self.take(gpu, "pcie_replay", raw.pcie_replay).map(i64::from),
            nvlink_tx_bytes_total: self.take(gpu, "nvlink.tx_bytes", n.tx_bytes).map(vec_i64),
            nvlink_rx_bytes_total: self.take(gpu, "nvlink.rx_bytes", n.rx_bytes).map(vec_i64),
            nvlink_crc_errors_total: self.take(gpu, "nvlink.crc_errors", n.crc_errors).map(vec_i64),
            nvlink_replay_errors_total: self.take(gpu, "nvlink.replay_errors", n.replay_errors).map(vec_i64),
            nvlink_recovery_errors_total: self.take(gpu, "nvlink.recovery_errors", n.recovery_errors).map(vec_i64),
            ecc_corrected_total: ecc.and_then(|(c, _)| to_i64(c)),
            ecc_uncorrected_total: ecc.and_then(|(_, u)| to_i64(u)),
        }
    }
}
