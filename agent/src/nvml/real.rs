//! The GPU layer backed by NVML (`libnvidia-ml.so.1`, loaded at run time).

use std::collections::HashMap;

use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, PcieUtilCounter, TemperatureSensor};
use nvml_wrapper::enum_wrappers::nv_link::ErrorCounter;
use nvml_wrapper::enums::gpm::GpmMetricId;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::event::EventSet;
use nvml_wrapper::gpm::GpmSample;
use nvml_wrapper::{Device, Nvml};

use super::layer::*;

/// Field ids of per-link NVLink throughput (data bytes), from nvml.h.
const FI_NVLINK_THROUGHPUT_DATA_TX: u32 = 138;
const FI_NVLINK_THROUGHPUT_DATA_RX: u32 = 139;
const NVLINK_MAX_LINKS: u32 = 18;

pub struct NvmlLayer {
    /// NVML lives as long as the agent; leaking it lets devices, GPM samples
    /// and the event set borrow it for `'static`.
    nvml: &'static Nvml,
    devices: HashMap<u32, Device<'static>>,
    gpm_prev: HashMap<u32, GpmSample<'static>>,
    gpm_supported: HashMap<u32, bool>,
    events: Option<EventSet<'static>>,
    uuid_of: HashMap<u32, String>,
}

fn reading<T>(r: Result<T, NvmlError>) -> Reading<T> {
    match r {
        Ok(v) => Reading::Ok(v),
        Err(NvmlError::NotSupported | NvmlError::FunctionNotFound) => Reading::Unsupported,
        Err(e) => Reading::Failed(e.to_string()),
    }
}

fn gone(r: &Reading<(u32, u32)>) -> bool {
    matches!(r, Reading::Failed(e) if e.contains("lost") || e.contains("GpuLost"))
}

impl NvmlLayer {
    /// Loads NVML. The error says what failed to load.
    pub fn open() -> Result<Self, String> {
        let nvml = Nvml::init().map_err(|e| format!("NVML could not be loaded ({e})"))?;
        let nvml: &'static Nvml = Box::leak(Box::new(nvml));
        Ok(Self {
            nvml,
            devices: HashMap::new(),
            gpm_prev: HashMap::new(),
            gpm_supported: HashMap::new(),
            events: None,
            uuid_of: HashMap::new(),
        })
    }

    /// Whether GPU `index` (already enumerated) supports GPM.
    pub fn gpm_supported(&self, index: u32) -> bool {
        self.devices.get(&index).is_some_and(|d| d.gpm_support().unwrap_or(false))
    }

    fn nvlink(&self, dev: &Device<'static>) -> NvlinkReadings {
        let mut active = Vec::new();
        for link in 0..NVLINK_MAX_LINKS {
            match dev.link_wrapper_for(link).is_active() {
                Ok(true) => active.push(link),
                Ok(false) => {}
                Err(_) => break,
            }
        }
        if active.is_empty() {
            return NvlinkReadings::default(); // every field Unsupported
        }
        let counter = |c: ErrorCounter| -> Reading<Vec<u64>> {
            let mut out = Vec::with_capacity(active.len());
            for &l in &active {
                match dev.link_wrapper_for(l).error_counter(c) {
                    Ok(v) => out.push(v),
                    Err(e) => return reading::<Vec<u64>>(Err(e)),
                }
            }
            Reading::Ok(out)
        };
        let crc = match (counter(ErrorCounter::DlCrcFlit), counter(ErrorCounter::DlCrcData)) {
            (Reading::Ok(a), Reading::Ok(b)) => Reading::Ok(a.iter().zip(&b).map(|(x, y)| x + y).collect()),
            (a, _) => a,
        };
        NvlinkReadings {
            tx_bytes: self.link_field(dev, &active, FI_NVLINK_THROUGHPUT_DATA_TX),
            rx_bytes: self.link_field(dev, &active, FI_NVLINK_THROUGHPUT_DATA_RX),
            crc_errors: crc,
            replay_errors: counter(ErrorCounter::DlReplay),
            recovery_errors: counter(ErrorCounter::DlRecovery),
        }
    }

    /// Per-link field values need `scopeId` = link, which the safe wrapper
    /// does not set; call `nvmlDeviceGetFieldValues` directly. NVML reports
    /// these throughput counters in KiB.
    fn link_field(&self, dev: &Device<'static>, links: &[u32], field: u32) -> Reading<Vec<u64>> {
        use nvml_wrapper_sys::bindings::{nvmlFieldValue_t, nvmlReturn_enum_NVML_SUCCESS};
        let Ok(sym) = self.nvml.lib().nvmlDeviceGetFieldValues.as_ref() else {
            return Reading::Unsupported;
        };
        let mut values: Vec<nvmlFieldValue_t> = links
            .iter()
            .map(|&l| {
                // SAFETY: a zeroed nvmlFieldValue_t is a valid request once fieldId/scopeId are set.
                let mut v: nvmlFieldValue_t = unsafe { std::mem::zeroed() };
                v.fieldId = field;
                v.scopeId = l;
                v
            })
            .collect();
        // SAFETY: the handle is valid while NVML is loaded (forever); `values` outlives the call.
        let ret = unsafe { sym(dev.handle(), values.len() as i32, values.as_mut_ptr()) };
        if ret != nvmlReturn_enum_NVML_SUCCESS {
            return Reading::Unsupported;
        }
        let mut out = Vec::with_capacity(values.len());
        for v in &values {
            if v.nvmlReturn != nvmlReturn_enum_NVML_SUCCESS {
                return Reading::Unsupported;
            }
            // SAFETY: throughput fields are unsigned long long (valueType 3).
            out.push(unsafe { v.value.ullVal }.saturating_mul(1024));
        }
        Reading::Ok(out)
    }

    fn gpm(&mut self, index: u32, dev: &Device<'static>) -> GpmReadings {
        let supported = *self.gpm_supported.entry(index).or_insert_with(|| dev.gpm_support().unwrap_or(false));
        if !supported {
            return GpmReadings::default();
        }
        let now = match dev.gpm_sample() {
            Ok(s) => s,
            Err(e) => {
                let f = Reading::Failed(format!("gpm_sample: {e}"));
                return GpmReadings {
                    sm_util: f.clone(),
                    sm_occupancy: f.clone(),
                    any_tensor_util: f.clone(),
                    dram_bw_util: f.clone(),
                    fp16_util: f.clone(),
                    fp32_util: f.clone(),
                    fp64_util: f,
                };
            }
        };
        let Some(prev) = self.gpm_prev.insert(index, now) else {
            let n = Reading::NotYet;
            return GpmReadings {
                sm_util: n.clone(),
                sm_occupancy: n.clone(),
                any_tensor_util: n.clone(),
                dram_bw_util: n.clone(),
                fp16_util: n.clone(),
                fp32_util: n.clone(),
                fp64_util: n,
            };
        };
        let ids = [
            GpmMetricId::SmUtil,
            GpmMetricId::SmOccupancy,
            GpmMetricId::AnyTensorUtil,
            GpmMetricId::DramBwUtil,
            GpmMetricId::Fp16Util,
            GpmMetricId::Fp32Util,
            GpmMetricId::Fp64Util,
        ];
        let Some(now) = self.gpm_prev.get(&index) else { return GpmReadings::default() };
        let results = nvml_wrapper::gpm::gpm_metrics_get(self.nvml, &prev, now, &ids);
        let _ = prev.free();
        let mut r: Vec<Reading<f64>> = match results {
            Ok(v) => v.into_iter().map(|m| reading(m.map(|m| m.value))).collect(),
            Err(e) => vec![Reading::Failed(format!("gpm_metrics_get: {e}")); ids.len()],
        };
        r.resize(ids.len(), Reading::Unsupported);
        let mut it = r.into_iter();
        let mut next = || it.next().unwrap_or(Reading::Unsupported);
        GpmReadings {
            sm_util: next(),
            sm_occupancy: next(),
            any_tensor_util: next(),
            dram_bw_util: next(),
            fp16_util: next(),
            fp32_util: next(),
            fp64_util: next(),
        }
    }
}

impl GpuLayer for NvmlLayer {
    fn describe(&self) -> String {
        let driver = self.nvml.sys_driver_version().unwrap_or_else(|_| "?".into());
        format!("NVML, driver {driver}")
    }

    fn driver_version(&self) -> Option<String> {
        self.nvml.sys_driver_version().ok()
    }

    fn devices(&mut self) -> Vec<DeviceInfo> {
        let count = self.nvml.device_count().unwrap_or(0);
        let mut out = Vec::new();
        let mut events = self.nvml.create_event_set().ok();
        for index in 0..count {
            let Ok(dev) = self.nvml.device_by_index(index) else { continue };
            let uuid = dev.uuid().unwrap_or_else(|_| format!("GPU-index-{index}"));
            let name = dev.name().unwrap_or_else(|_| "unknown".into());
            let pci_bus_id = dev.pci_info().map(|p| p.bus_id).unwrap_or_default();
            if let Some(set) = events.take() {
                let wanted = nvml_wrapper::bitmasks::event::EventTypes::CRITICAL_XID_ERROR
                    | nvml_wrapper::bitmasks::event::EventTypes::SINGLE_BIT_ECC_ERROR
                    | nvml_wrapper::bitmasks::event::EventTypes::DOUBLE_BIT_ECC_ERROR
                    | nvml_wrapper::bitmasks::event::EventTypes::POWER_SOURCE_CHANGE;
                let supported = dev.supported_event_types().map(|s| s & wanted).unwrap_or(wanted);
                events = match dev.register_events(supported, set) {
                    Ok(set) => Some(set),
                    Err(e) => {
                        tracing::info!(gpu = index, "GPU events not available ({e}); XID errors will not be recorded");
                        self.nvml.create_event_set().ok()
                    }
                };
            }
            self.uuid_of.insert(index, uuid.clone());
            self.devices.insert(index, dev);
            out.push(DeviceInfo { index, uuid, name, pci_bus_id });
        }
        self.events = events;
        out
    }

    fn sample(&mut self, info: &DeviceInfo) -> Result<RawSample, DeviceGone> {
        // `Device` is not Clone; take it out while `self` is borrowed mutably for GPM.
        let Some(dev) = self.devices.remove(&info.index) else {
            return Err(DeviceGone(format!("GPU {} is not enumerated", info.index)));
        };
        let sample = self.sample_device(info, &dev);
        self.devices.insert(info.index, dev);
        sample
    }

    fn wait_events(&mut self, timeout_ms: u32) -> Vec<RawEvent> {
        self.wait_events_impl(timeout_ms)
    }
}

impl NvmlLayer {
    fn sample_device(&mut self, info: &DeviceInfo, dev: &Device<'static>) -> Result<RawSample, DeviceGone> {
        let utilization = reading(dev.utilization_rates().map(|u| (u.gpu, u.memory)));
        if gone(&utilization) {
            return Err(DeviceGone(format!("GPU {} ({}) is lost", info.index, info.uuid)));
        }
        let pids = match (dev.running_compute_processes(), dev.running_graphics_processes()) {
            (Ok(c), Ok(g)) => {
                let mut p: Vec<u32> = c.iter().chain(g.iter()).map(|p| p.pid).collect();
                p.sort_unstable();
                p.dedup();
                Reading::Ok(p)
            }
            (Err(e), _) | (_, Err(e)) => reading(Err(e)),
        };
        let memory = reading(dev.memory_info().map(|m| (m.used, m.total)));
        let ecc = match (
            dev.total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile),
            dev.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile),
        ) {
            (Ok(c), Ok(u)) => Reading::Ok((c, u)),
            (Err(e), _) | (_, Err(e)) => reading(Err(e)),
        };
        Ok(RawSample {
            utilization,
            gpm: self.gpm(info.index, dev),
            sm_clock_mhz: reading(dev.clock_info(Clock::SM)),
            sm_clock_max_mhz: reading(dev.max_clock_info(Clock::SM)),
            memory_clock_mhz: reading(dev.clock_info(Clock::Memory)),
            power_mw: reading(dev.power_usage()),
            power_limit_mw: reading(dev.enforced_power_limit()),
            energy_mj: reading(dev.total_energy_consumption()),
            temperature_c: reading(dev.temperature(TemperatureSensor::Gpu)),
            throttle_reasons: reading(dev.current_throttle_reasons().map(|t| t.bits())),
            memory,
            pcie_tx_kbps: reading(dev.pcie_throughput(PcieUtilCounter::Send)),
            pcie_rx_kbps: reading(dev.pcie_throughput(PcieUtilCounter::Receive)),
            pcie_replay: reading(dev.pcie_replay_counter()),
            nvlink: self.nvlink(dev),
            ecc,
            pids,
        })
    }

    fn wait_events_impl(&mut self, timeout_ms: u32) -> Vec<RawEvent> {
        let Some(set) = self.events.as_ref() else {
            std::thread::sleep(std::time::Duration::from_millis(timeout_ms as u64));
            return Vec::new();
        };
        use nvml_wrapper::bitmasks::event::EventTypes;
        use nvml_wrapper::enums::event::XidError;
        let mut out = Vec::new();
        let mut timeout = timeout_ms;
        while let Ok(ev) = set.wait(timeout) {
            timeout = 0; // drain what is queued, then return
            let index = ev.device.index().ok();
            let uuid = index.and_then(|i| self.uuid_of.get(&i).cloned());
            let t = ev.event_type;
            let kind = if t.contains(EventTypes::CRITICAL_XID_ERROR) {
                "xid"
            } else if t.contains(EventTypes::DOUBLE_BIT_ECC_ERROR) {
                "ecc_double_bit"
            } else if t.contains(EventTypes::SINGLE_BIT_ECC_ERROR) {
                "ecc_single_bit"
            } else if t.contains(EventTypes::POWER_SOURCE_CHANGE) {
                "power_source"
            } else {
                "other"
            };
            let xid = match ev.event_data {
                Some(XidError::Value(v)) => Some(v),
                _ => None,
            };
            out.push(RawEvent { index, uuid, kind: kind.into(), xid, value: Some(t.bits()) });
        }
        out
    }
}
