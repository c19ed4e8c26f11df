//! Agent configuration: embedded defaults, then a TOML file, then CLI flags.
//!
//! Every section has defaults that work out of the box (the README's first
//! command runs with none of this file). An invalid file or value fails at
//! start with the file, the key and the reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Cluster name stamped on every row.
    pub cluster: String,
    /// Node name; empty means the host name.
    pub node: String,
    /// Job id for every GPU of this node, when the scheduler cannot be asked.
    pub job_id: Option<String>,
    /// Kernels of in-house communication libraries: regular expressions over
    /// the kernel name as CUPTI gives it (mangled); `p2p:` before one marks
    /// point-to-point kernels. They count as communication, with the built-in
    /// table (docs/decomposition.md).
    pub comm_kernels: Vec<String>,
    /// Where Parquet batches are written (standalone data directory and spool).
    pub data_dir: PathBuf,
    pub metrics: MetricsConfig,
    pub output: OutputConfig,
    pub collector: CollectorConfig,
    pub nvml: NvmlConfig,
    pub cupti: crate::cupti::CuptiConfig,
    pub ebpf: EbpfConfig,
    pub perf: PerfConfig,
    pub markers: MarkersConfig,
    pub windows: WindowsConfig,
    pub kernels: KernelsConfig,
    pub kubernetes: crate::kubelet::KubernetesConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cluster: "default".into(),
            node: String::new(),
            job_id: None,
            comm_kernels: Vec::new(),
            // systemd's StateDirectory= sets STATE_DIRECTORY (/var/lib/strand);
            // a plain run writes next to where it was started.
            data_dir: std::env::var_os("STATE_DIRECTORY")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("strand-data")),
            metrics: MetricsConfig::default(),
            output: OutputConfig::default(),
            collector: CollectorConfig::default(),
            nvml: NvmlConfig::default(),
            cupti: crate::cupti::CuptiConfig::default(),
            ebpf: EbpfConfig::default(),
            perf: PerfConfig::default(),
            markers: MarkersConfig::default(),
            windows: WindowsConfig::default(),
            kernels: KernelsConfig::default(),
            kubernetes: crate::kubelet::KubernetesConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Prometheus listen address; empty disables the endpoint.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9464".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// A batch file is closed after this long...
    #[serde(deserialize_with = "duration")]
    pub rotate_interval: Duration,
    /// ...or once it holds this many bytes (compressed, approximately).
    pub rotate_bytes: u64,
    /// Upper bound on the data directory; the oldest files are evicted (and counted) beyond it.
    pub quota_bytes: u64,
    /// Full `kernel_events` that are not shipped (`collector.kernel_events = false`,
    /// the default, or no collector) are kept at most this many bytes...
    pub kernel_events_max_bytes: u64,
    /// ...and this long (by their first row); older files are removed.
    #[serde(deserialize_with = "duration")]
    pub kernel_events_max_age: Duration,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            rotate_interval: Duration::from_secs(60),
            rotate_bytes: 32 << 20,
            quota_bytes: 10 << 30,
            kernel_events_max_bytes: 4 << 30,
            kernel_events_max_age: Duration::from_secs(3 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Collector base URL (`https://collector:9400`); unset means standalone mode.
    pub url: Option<String>,
    /// File holding this node's bearer token.
    pub token_file: Option<PathBuf>,
    /// PEM file with extra CA certificates to trust for the collector.
    pub ca_file: Option<PathBuf>,
    /// Ship the full `kernel_events` (every CUPTI record: tens of GB a day on a
    /// busy 8-GPU node). Off by default: they stay in the data directory
    /// within `output.kernel_events_max_*`, and the collector gets
    /// `kernel_summaries`, which is what fleet reports and top kernels read.
    pub kernel_events: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NvmlConfig {
    pub enabled: bool,
    /// Sampling period.
    #[serde(deserialize_with = "duration")]
    pub period: Duration,
    /// Also read InfiniBand port counters from /sys/class/infiniband.
    pub infiniband: bool,
}

impl Default for NvmlConfig {
    fn default() -> Self {
        Self { enabled: true, period: Duration::from_secs(1), infiniband: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EbpfConfig {
    pub enabled: bool,
    /// How often ring buffers are drained.
    #[serde(deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// Kernel hooks that follow process exec/exit, tried in order: `tp_btf`
    /// (BTF raw tracepoints, no tracefs needed), `tracepoint` (through
    /// tracefs). Empty: none; the `/proc` scan finds new processes.
    pub process_hooks: Vec<String>,
}

impl Default for EbpfConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval: Duration::from_millis(200),
            process_hooks: vec!["tp_btf".into(), "tracepoint".into()],
        }
    }
}

impl EbpfConfig {
    /// `process_hooks`, parsed; the error names the bad entry.
    pub fn hooks(&self) -> Result<Vec<strand_ebpf::ProcessHook>, String> {
        let mut hooks = Vec::new();
        for name in &self.process_hooks {
            let h = strand_ebpf::ProcessHook::parse(name)?;
            if hooks.contains(&h) {
                return Err(format!("{name:?} is listed twice"));
            }
            hooks.push(h);
        }
        Ok(hooks)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerfConfig {
    pub enabled: bool,
}

impl Default for PerfConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarkersConfig {
    pub enabled: bool,
    /// Datagram socket taking one JSON marker per message; relative paths are under `data_dir`.
    pub socket: PathBuf,
}

impl Default for MarkersConfig {
    fn default() -> Self {
        Self { enabled: true, socket: PathBuf::from("markers.sock") }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowsConfig {
    /// Length of a decomposition window.
    #[serde(deserialize_with = "duration")]
    pub period: Duration,
    /// Idle gaps shorter than this between back-to-back kernels are launch gaps.
    #[serde(deserialize_with = "duration")]
    pub launch_gap: Duration,
    /// How long after its end a window waits for late records (CUPTI buffers,
    /// the NCCL/kernel join) before it is closed.
    #[serde(deserialize_with = "duration")]
    pub lateness: Duration,
    /// How long an NCCL call waits for the CUPTI record of the kernel it launched.
    #[serde(deserialize_with = "duration")]
    pub nccl_join_hold: Duration,
    /// Dtype of the model FLOPs when the markers do not say (`bf16`, `fp8`, …).
    pub default_dtype: Option<String>,
    /// Peak dense FLOP/s overrides: `[{ gpu = "H100", dtype = "bf16", flops_per_s = 9.89e14 }]`.
    pub peak_flops: Vec<strand_analysis::mfu::PeakOverride>,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(10),
            launch_gap: Duration::from_micros(50),
            lateness: Duration::from_secs(15),
            nccl_join_hold: Duration::from_secs(10),
            default_dtype: None,
            peak_flops: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelsConfig {
    /// `auto`, `gpu` or `cpu`.
    pub backend: String,
}

impl Default for KernelsConfig {
    fn default() -> Self {
        Self { backend: "auto".into() }
    }
}

/// Parses `"1s"`, `"250ms"`, `"10m"`.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?} ({e}); write e.g. \"1s\" or \"250ms\"")))
}

/// A configuration error that names where it came from.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    pub source_name: String,
    pub message: String,
}

impl Config {
    /// Parses a TOML document; `name` is used in errors.
    pub fn from_toml(name: &str, text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError {
            source_name: name.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate().map_err(|message| ConfigError { source_name: name.to_string(), message })?;
        Ok(cfg)
    }

    /// Reads `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { source_name: name.clone(), message: format!("cannot read: {e}") })?;
        Self::from_toml(&name, &text)
    }

    /// Checks values serde cannot: names, ranges. Errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        let key = |k: &str, m: String| format!("key `{k}`: {m}");
        strand_schemas::protocol::validate_name("cluster", &self.cluster).map_err(|m| key("cluster", m))?;
        if !self.node.is_empty() {
            strand_schemas::protocol::validate_name("node", &self.node).map_err(|m| key("node", m))?;
        }
        if self.nvml.period < Duration::from_millis(100) {
            return Err(key("nvml.period", format!("{:?} is below the 100ms NVML can sample", self.nvml.period)));
        }
        if self.windows.period < Duration::from_secs(1) {
            return Err(key("windows.period", format!("{:?} is shorter than 1s", self.windows.period)));
        }
        if self.windows.nccl_join_hold >= self.windows.lateness {
            return Err(key(
                "windows.nccl_join_hold",
                format!(
                    "{:?} must be shorter than windows.lateness ({:?}), or joined calls arrive after their window closed",
                    self.windows.nccl_join_hold, self.windows.lateness
                ),
            ));
        }
        strand_analysis::mfu::PeakTable::new(self.windows.peak_flops.clone())
            .map_err(|m| key("windows.peak_flops", m.to_string()))?;
        if self.output.rotate_interval < Duration::from_secs(1) {
            return Err(key("output.rotate_interval", format!("{:?} is shorter than 1s", self.output.rotate_interval)));
        }
        if self.output.quota_bytes < self.output.rotate_bytes {
            return Err(key(
                "output.quota_bytes",
                format!(
                    "{} is smaller than output.rotate_bytes ({})",
                    self.output.quota_bytes, self.output.rotate_bytes
                ),
            ));
        }
        self.kernels.backend.parse::<strand_kernels::Backend>().map_err(|m| key("kernels.backend", m))?;
        self.comm_kernel_table()?;
        self.ebpf.hooks().map_err(|m| key("ebpf.process_hooks", m))?;
        if let Some(url) = &self.collector.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(key("collector.url", format!("{url:?} must start with http:// or https://")));
            }
            if self.collector.token_file.is_none() {
                return Err(key("collector.token_file", "is required when collector.url is set".into()));
            }
        }
        Ok(())
    }

    /// The table of communication kernels with `comm_kernels`; the error names the key.
    pub fn comm_kernel_table(&self) -> Result<strand_schemas::comm_kernels::CommKernels, String> {
        strand_schemas::comm_kernels::CommKernels::with_patterns(&self.comm_kernels)
            .map_err(|e| format!("key `comm_kernels`: {e}"))
    }

    /// The node name to stamp on rows.
    pub fn node_name(&self) -> String {
        if !self.node.is_empty() {
            return self.node.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host: String =
            host.trim().chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
        if host.is_empty() { "localhost".into() } else { host }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_config_file_is_valid() {
        let text = include_str!("../../systemd/agent.toml");
        let cfg = Config::from_toml("systemd/agent.toml", text).unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/var/lib/strand"));
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let cfg = Config::from_toml("empty.toml", "").unwrap();
        assert_eq!(format!("{cfg:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn an_unknown_key_is_named_with_the_file() {
        let e = Config::from_toml("/etc/strand/agent.toml", "[nvml]\nperod = \"1s\"\n").unwrap_err().to_string();
        assert!(e.starts_with("/etc/strand/agent.toml: "), "{e}");
        assert!(e.contains("unknown field `perod`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn a_bad_duration_says_what_to_write() {
        let e = Config::from_toml("a.toml", "[nvml]\nperiod = \"fast\"\n").unwrap_err().to_string();
        assert!(e.contains("invalid duration \"fast\""), "{e}");
        assert!(e.contains("\"250ms\""), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let e = Config::from_toml("a.toml", "cluster = \"../etc\"\n").unwrap_err().to_string();
        assert!(e.contains("key `cluster`"), "{e}");
        let e = Config::from_toml("a.toml", "[nvml]\nperiod = \"10ms\"\n").unwrap_err().to_string();
        assert!(e.contains("key `nvml.period`"), "{e}");
        let e = Config::from_toml("a.toml", "[kernels]\nbackend = \"tpu\"\n").unwrap_err().to_string();
        assert!(e.contains("key `kernels.backend`") && e.contains("auto, gpu or cpu"), "{e}");
        let e = Config::from_toml("a.toml", "[collector]\nurl = \"http://c:9400\"\n").unwrap_err().to_string();
        assert!(e.contains("key `collector.token_file`"), "{e}");
        let e = Config::from_toml("a.toml", "[ebpf]\nprocess_hooks = [\"kprobe\"]\n").unwrap_err().to_string();
        assert!(e.contains("key `ebpf.process_hooks`") && e.contains("\"kprobe\"") && e.contains("tp_btf"), "{e}");
        let cfg = Config::from_toml("a.toml", "[ebpf]\nprocess_hooks = []\n").unwrap();
        assert_eq!(cfg.ebpf.hooks(), Ok(vec![]));
        let e = Config::from_toml("a.toml", "comm_kernels = [\"acme_(\"]\n").unwrap_err().to_string();
        assert!(e.contains("key `comm_kernels`") && e.contains("\"acme_(\""), "{e}");
        let cfg =
            Config::from_toml("a.toml", "comm_kernels = [\"^_Z\\\\d+acme_allreduce\", \"p2p:acme_send\"]\n").unwrap();
        assert!(cfg.comm_kernel_table().unwrap().is_communication("_Z18acme_allreduce_bf16Pv"));
    }
}
