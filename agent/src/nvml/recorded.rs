//! A GPU layer that replays recorded samples (tests) or synthesizes them
//! (`--simulate-gpus N`, benchmarks). Only the hardware is fake: the source,
//! conversion and everything downstream are the real code.
//!
//! Recording format (JSON lines): the first line lists the devices,
//! `{"devices":[{"index":0,"uuid":"GPU-…","name":"…"}]}`; each further line
//! is one period, `{"samples":{"0":{…RawSample…}}, "events":[…]}`. A device
//! missing from a period's samples has fallen off the bus. The last period
//! repeats once the recording is exhausted.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::layer::*;

#[derive(Debug, Clone, Deserialize, Default)]
struct Period {
    #[serde(default)]
    samples: HashMap<u32, RawSample>,
    #[serde(default)]
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct Header {
    devices: Vec<DeviceInfo>,
}

enum Script {
    Recorded { periods: Vec<Period>, pos: HashMap<u32, usize>, events_at: usize },
    Synthetic { started: Instant },
}

pub struct RecordedLayer {
    devices: Vec<DeviceInfo>,
    script: Script,
    gone: Vec<u32>,
}

impl RecordedLayer {
    /// Reads a recording; errors name the file and line.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&path.display().to_string(), &text)
    }

    pub fn parse(name: &str, text: &str) -> Result<Self, String> {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let (_, first) = lines.next().ok_or_else(|| format!("{name}: empty recording"))?;
        let header: Header = serde_json::from_str(first).map_err(|e| format!("{name}:1: device list: {e}"))?;
        let mut periods = Vec::new();
        for (i, line) in lines {
            periods.push(serde_json::from_str::<Period>(line).map_err(|e| format!("{name}:{}: {e}", i + 1))?);
        }
        if periods.is_empty() {
            return Err(format!("{name}: no sample periods after the device list"));
        }
        Ok(Self {
            devices: header.devices,
            script: Script::Recorded { periods, pos: HashMap::new(), events_at: 0 },
            gone: Vec::new(),
        })
    }

    /// `n` H100-like GPUs with a slowly varying load and every metric supported.
    pub fn synthetic(n: u32) -> Self {
        let devices = (0..n)
            .map(|i| DeviceInfo {
                index: i,
                uuid: format!("GPU-5173a1d0-0000-4000-8000-{i:012x}"),
                name: "NVIDIA H100 80GB HBM3 (simulated)".into(),
                pci_bus_id: format!("00000000:{:02X}:00.0", 0x18 + i),
            })
            .collect();
        Self { devices, script: Script::Synthetic { started: Instant::now() }, gone: Vec::new() }
    }

    fn synthetic_sample(started: Instant, index: u32) -> RawSample {
        let t = started.elapsed().as_secs_f64() + index as f64 * 7.0;
        let busy = 0.75 + 0.2 * (t / 30.0).sin();
        let pct = |x: f64| (x * 100.0).clamp(0.0, 100.0);
        let links = 18usize;
        let bytes = (t * 4.0e9) as u64;
        RawSample {
            utilization: Reading::Ok((pct(busy) as u32, pct(busy * 0.4) as u32)),
            gpm: GpmReadings {
                sm_util: Reading::Ok(pct(busy * 0.6)),
                sm_occupancy: Reading::Ok(pct(busy * 0.3)),
                any_tensor_util: Reading::Ok(pct(busy * 0.35)),
                dram_bw_util: Reading::Ok(pct(busy * 0.45)),
                fp16_util: Reading::Ok(pct(busy * 0.05)),
                fp32_util: Reading::Ok(pct(busy * 0.1)),
                fp64_util: Reading::Ok(0.0),
            },
            sm_clock_mhz: Reading::Ok(1980),
            sm_clock_max_mhz: Reading::Ok(1980),
            memory_clock_mhz: Reading::Ok(2619),
            power_mw: Reading::Ok((200_000.0 + 450_000.0 * busy) as u32),
            power_limit_mw: Reading::Ok(700_000),
            energy_mj: Reading::Ok((t * 500_000.0) as u64),
            temperature_c: Reading::Ok(40 + (busy * 30.0) as u32),
            throttle_reasons: Reading::Ok(0),
            memory: Reading::Ok((60 << 30, 80 << 30)),
            pcie_tx_kbps: Reading::Ok(1_000),
            pcie_rx_kbps: Reading::Ok(2_000),
            pcie_replay: Reading::Ok(0),
            nvlink: NvlinkReadings {
                tx_bytes: Reading::Ok(vec![bytes; links]),
                rx_bytes: Reading::Ok(vec![bytes; links]),
                crc_errors: Reading::Ok(vec![0; links]),
                replay_errors: Reading::Ok(vec![0; links]),
                recovery_errors: Reading::Ok(vec![0; links]),
            },
            ecc: Reading::Ok((0, 0)),
            pids: Reading::Ok(vec![]),
        }
    }
}

impl GpuLayer for RecordedLayer {
    fn describe(&self) -> String {
        match self.script {
            Script::Recorded { .. } => format!("recorded samples of {} GPU(s)", self.devices.len()),
            Script::Synthetic { .. } => format!("{} simulated GPU(s)", self.devices.len()),
        }
    }

    fn driver_version(&self) -> Option<String> {
        Some(match self.script {
            Script::Recorded { .. } => "recorded".into(),
            Script::Synthetic { .. } => "simulated".into(),
        })
    }

    fn devices(&mut self) -> Vec<DeviceInfo> {
        self.devices.clone()
    }

    fn sample(&mut self, device: &DeviceInfo) -> Result<RawSample, DeviceGone> {
        if self.gone.contains(&device.index) {
            return Err(DeviceGone(format!("GPU {} has fallen off the bus", device.index)));
        }
        match &mut self.script {
            Script::Synthetic { started } => Ok(Self::synthetic_sample(*started, device.index)),
            Script::Recorded { periods, pos, .. } => {
                let p = pos.entry(device.index).or_insert(0);
                let period = &periods[(*p).min(periods.len() - 1)];
                *p += 1;
                match period.samples.get(&device.index) {
                    Some(s) => Ok(s.clone()),
                    None => {
                        self.gone.push(device.index);
                        Err(DeviceGone(format!("GPU {} has fallen off the bus", device.index)))
                    }
                }
            }
        }
    }

    fn wait_events(&mut self, timeout_ms: u32) -> Vec<RawEvent> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms as u64);
        let out = match &mut self.script {
            Script::Recorded { periods, events_at, pos } => {
                // Events of a period are delivered once its samples were read.
                let done = pos.values().copied().max().unwrap_or(0);
                let mut out = Vec::new();
                while *events_at < done.min(periods.len()) {
                    out.extend(periods[*events_at].events.iter().cloned());
                    *events_at += 1;
                }
                out
            }
            Script::Synthetic { .. } => Vec::new(),
        };
        if out.is_empty() {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        }
        out
    }
}
