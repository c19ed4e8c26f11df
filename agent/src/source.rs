//! How every source of the agent starts and says whether it runs.
//!
//! Each source implements [`Source`] (after Vector's `SourceConfig::build`):
//! the agent starts them all the same way, and `strand-agent check` asks
//! each the same question. A source is made of parts that run or not on
//! their own (eBPF: `nccl`, `cuda_sync`, `exec`, `exit`, `proc_scan`); every
//! part's state goes through one [`Health`], which logs it once per change
//! and exports `strand_agent_source_up{source,part}` (1 up, 0 down, no
//! series when off) and `strand_agent_source_errors_total{source,part}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strand_schemas::NcclCall;

use crate::config::Config;
use crate::context::SourceContext;
use crate::metrics::AgentMetrics;
use crate::run::{RunOptions, Sinks};
use crate::shutdown::Shutdown;
use crate::sink::RowSink;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartLabels {
    pub source: String,
    pub part: String,
}

/// Whether a part runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Up,
    /// Wanted but not running: a failure, named in the detail.
    Down,
    /// Not running, and not a failure: turned off by the configuration, or
    /// nothing to read on this host.
    Off,
}

impl State {
    pub fn word(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Off => "off",
        }
    }
}

/// One part's state, with how it runs or why not, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub source: &'static str,
    pub part: &'static str,
    pub state: State,
    pub detail: String,
}

impl Report {
    pub fn new(source: &'static str, part: &'static str, state: State, detail: impl Into<String>) -> Self {
        Self { source, part, state, detail: detail.into() }
    }
}

impl From<(&'static str, &strand_ebpf::PartStatus)> for Report {
    fn from((source, p): (&'static str, &strand_ebpf::PartStatus)) -> Self {
        let state = match p.state {
            strand_ebpf::PartState::Up => State::Up,
            strand_ebpf::PartState::Down => State::Down,
            strand_ebpf::PartState::Off => State::Off,
        };
        Report::new(source, p.part.name(), state, p.detail.clone())
    }
}

/// Where every source reports its parts; cheap to clone.
#[derive(Clone, Default)]
pub struct Health {
    up: Family<PartLabels, Gauge>,
    errors: Family<PartLabels, Counter>,
    last: Arc<Mutex<HashMap<(&'static str, &'static str), Report>>>,
}

impl Health {
    pub fn register(r: &mut Registry) -> Self {
        let h = Self::default();
        r.register(
            "strand_agent_source_up",
            "Whether a part of a source runs (1) or not (0), by source and part; no series while off",
            h.up.clone(),
        );
        r.register(
            "strand_agent_source_errors",
            "Failures of a part of a source: failing to start, and failures while running (e.g. a library that cannot be probed)",
            h.errors.clone(),
        );
        h
    }

    fn labels(source: &str, part: &str) -> PartLabels {
        PartLabels { source: source.into(), part: part.into() }
    }

    /// Sets a part's state. Logged, and counted as an error when it goes
    /// down, only when the state or its detail changes.
    pub fn report(&self, r: Report) {
        let labels = Self::labels(r.source, r.part);
        match r.state {
            State::Up => {
                self.up.get_or_create(&labels).set(1);
            }
            State::Down => {
                self.up.get_or_create(&labels).set(0);
            }
            State::Off => {
                self.up.remove(&labels);
            }
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let previous = last.insert((r.source, r.part), r.clone());
        if previous.as_ref() == Some(&r) {
            return;
        }
        match r.state {
            State::Up => tracing::info!("{} {}: up: {}", r.source, r.part, r.detail),
            State::Off => tracing::info!("{} {}: off: {}", r.source, r.part, r.detail),
            State::Down => {
                if previous.map(|p| p.state) != Some(State::Down) {
                    self.errors.get_or_create(&labels).inc();
                }
                tracing::warn!("{} {}: down: {}", r.source, r.part, r.detail);
            }
        }
    }

    /// Raises a part's error count to `total`, for a source that keeps its
    /// own cumulative count (it already includes a failed start).
    pub fn errors_to(&self, source: &str, part: &str, total: u64) {
        let c = self.errors.get_or_create(&Self::labels(source, part));
        let now = c.get();
        if total > now {
            c.inc_by(total - now);
        }
    }

    /// Every part reported so far, sorted by source and part.
    #[cfg(test)]
    pub fn reports(&self) -> Vec<Report> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Report> = last.values().cloned().collect();
        v.sort_by_key(|r| (r.source, r.part));
        v
    }
}

/// What a started source leaves to be joined at shutdown.
pub enum Running {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

/// Everything a source may need to start.
pub struct StartContext {
    pub cfg: Config,
    pub opts: RunOptions,
    pub ctx: Arc<SourceContext>,
    pub sinks: Sinks,
    /// eBPF's NCCL calls go through the NCCL/kernel join first; taken by the eBPF source.
    pub ebpf_nccl: Option<RowSink<NcclCall>>,
    pub metrics: AgentMetrics,
    pub health: Health,
    pub shutdown: Shutdown,
    /// GPUs the NVML source found, for the readiness message.
    pub gpu_count: usize,
}

/// A source of rows.
pub trait Source: Send {
    /// Its name in logs, metrics and `check`: `nvml`, `cupti`, `ebpf`, …
    fn name(&self) -> &'static str;
    /// Its parts, in the order `check` lists them.
    fn parts(&self) -> &'static [&'static str];
    /// Whether the configuration turns it on; the key that does, for messages.
    fn enabled(&self, cfg: &Config) -> (bool, &'static str);
    /// What starting it here would give, found by trying and undoing it:
    /// one report per part (for `check`).
    fn check(&self, cfg: &Config) -> Vec<Report>;
    /// Starts it, reporting each part through `cx.health`. An error stops
    /// the agent (a broken setup, not a missing feature: those are parts down).
    fn start(self: Box<Self>, cx: &mut StartContext) -> anyhow::Result<Vec<Running>>;
}

/// Every source, with its own metrics registered in `registry`.
pub fn all(registry: &mut Registry) -> Vec<Box<dyn Source>> {
    vec![
        Box::new(crate::nvml::NvmlSource),
        Box::new(crate::cupti::CuptiSource::new(registry)),
        Box::new(crate::ebpf::EbpfSource::new(registry)),
        Box::new(crate::procstat::PerfSource),
        Box::new(crate::markers::MarkersSource::new(registry)),
        Box::new(crate::infiniband::InfinibandSource),
        Box::new(crate::kubelet::KubernetesSource),
    ]
}

/// Reports of a source the configuration turns off: one per part.
pub fn off(source: &dyn Source, key: &str) -> Vec<Report> {
    source
        .parts()
        .iter()
        .map(|p| Report::new(source.name(), p, State::Off, format!("disabled in config ({key} = false)")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(r: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, r).unwrap();
        s
    }

    #[test]
    fn parts_show_up_down_and_off_and_each_fall_counts_once() {
        let mut reg = Registry::default();
        let h = Health::register(&mut reg);
        h.report(Report::new("ebpf", "nccl", State::Up, "uprobes"));
        h.report(Report::new("ebpf", "exec", State::Down, "no tracefs"));
        h.report(Report::new("ebpf", "exec", State::Down, "no tracefs")); // the same: no second error
        h.report(Report::new("nvml", "counters", State::Off, "disabled"));
        let text = render(&reg);
        assert!(text.contains(r#"strand_agent_source_up{source="ebpf",part="nccl"} 1"#), "{text}");
        assert!(text.contains(r#"strand_agent_source_up{source="ebpf",part="exec"} 0"#), "{text}");
        assert!(text.contains(r#"strand_agent_source_errors_total{source="ebpf",part="exec"} 1"#), "{text}");
        assert!(!text.contains(r#"part="counters""#), "an off part has no series: {text}");

        // Up again, then down again: a second fall, a second error.
        h.report(Report::new("ebpf", "exec", State::Up, "tp_btf"));
        h.report(Report::new("ebpf", "exec", State::Down, "detached"));
        h.errors_to("ebpf", "nccl", 3);
        h.errors_to("ebpf", "nccl", 2); // never backwards
        let text = render(&reg);
        assert!(text.contains(r#"strand_agent_source_errors_total{source="ebpf",part="exec"} 2"#), "{text}");
        assert!(text.contains(r#"strand_agent_source_errors_total{source="ebpf",part="nccl"} 3"#), "{text}");
        let states: Vec<_> = h.reports().iter().map(|r| (r.source, r.part, r.state)).collect();
        assert_eq!(
            states,
            [("ebpf", "exec", State::Down), ("ebpf", "nccl", State::Up), ("nvml", "counters", State::Off)]
        );
    }
}
