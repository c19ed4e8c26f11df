//! The hardware edge: what the NVML source asks of a GPU layer, and the raw
//! readings it gets back. The real layer calls NVML; the recorded layer
//! replays samples (tests, benchmarks, `--simulate-gpus`). Everything above
//! this trait is the same code in both cases.

use serde::{Deserialize, Serialize};

/// One metric as read from the hardware.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(Default)]
pub enum Reading<T> {
    Ok(T),
    /// The GPU or driver does not provide it (stays null, logged once per GPU).
    #[default]
    Unsupported,
    /// Not available yet (GPM needs two samples); stays null, not logged.
    NotYet,
    /// The call failed; stays null, counted as an error.
    Failed(String),
}

/// A GPU as enumerated at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    /// PCI bus id, `00000000:18:00.0`; empty when unknown.
    #[serde(default)]
    pub pci_bus_id: String,
}

/// GPM metrics (Hopper and newer), in percent as NVML returns them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GpmReadings {
    pub sm_util: Reading<f64>,
    pub sm_occupancy: Reading<f64>,
    pub any_tensor_util: Reading<f64>,
    pub dram_bw_util: Reading<f64>,
    pub fp16_util: Reading<f64>,
    pub fp32_util: Reading<f64>,
    pub fp64_util: Reading<f64>,
}

/// NVLink counters, one element per link.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NvlinkReadings {
    pub tx_bytes: Reading<Vec<u64>>,
    pub rx_bytes: Reading<Vec<u64>>,
    pub crc_errors: Reading<Vec<u64>>,
    pub replay_errors: Reading<Vec<u64>>,
    pub recovery_errors: Reading<Vec<u64>>,
}

/// Everything read from one GPU in one period, in NVML's own units.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawSample {
    /// `utilization.gpu` and `utilization.memory`, percent.
    pub utilization: Reading<(u32, u32)>,
    pub gpm: GpmReadings,
    pub sm_clock_mhz: Reading<u32>,
    pub sm_clock_max_mhz: Reading<u32>,
    pub memory_clock_mhz: Reading<u32>,
    pub power_mw: Reading<u32>,
    pub power_limit_mw: Reading<u32>,
    pub energy_mj: Reading<u64>,
    pub temperature_c: Reading<u32>,
    pub throttle_reasons: Reading<u64>,
    /// Used and total bytes.
    pub memory: Reading<(u64, u64)>,
    /// KB/s, as NVML reports PCIe throughput.
    pub pcie_tx_kbps: Reading<u32>,
    pub pcie_rx_kbps: Reading<u32>,
    pub pcie_replay: Reading<u32>,
    pub nvlink: NvlinkReadings,
    /// Corrected and uncorrected ECC errors (volatile).
    pub ecc: Reading<(u64, u64)>,
    pub pids: Reading<Vec<u32>>,
}

/// A GPU event (XID, ECC, clocks, power source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawEvent {
    pub index: Option<u32>,
    pub uuid: Option<String>,
    pub kind: String,
    pub xid: Option<u64>,
    pub value: Option<u64>,
}

/// The GPU has gone (fell off the bus, driver unloaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGone(pub String);

/// What the NVML source needs from the hardware.
pub trait GpuLayer: Send {
    /// Library and driver version, for logs and `check`.
    fn describe(&self) -> String;
    /// The driver's version, when known (`strand_gpu_info`).
    fn driver_version(&self) -> Option<String>;
    fn devices(&mut self) -> Vec<DeviceInfo>;
    /// Reads every metric of one GPU. `Err` when the GPU is gone.
    fn sample(&mut self, device: &DeviceInfo) -> Result<RawSample, DeviceGone>;
    /// Waits up to `timeout_ms` for GPU events.
    fn wait_events(&mut self, timeout_ms: u32) -> Vec<RawEvent>;
}
