//! The one findings engine (DESIGN §8a): the ai.01 (interconnect
//! stability), ai.17 (fault recovery) and efficiency detectors, over typed
//! inputs that `strand postmortem` builds for one run and `strand report
//! stranded` for a fleet ([`Inputs`]). The same inputs give the same
//! findings through either door. A detector whose input is missing raises
//! nothing: unknown is an answer, a false alarm is not.
//!
//! | module | findings |
//! |---|---|
//! | [`interconnect`] | straggler (rank and node), bus_bandwidth_collapse, link_errors, exposed_communication, topology_stranded |
//! | [`recovery`] | checkpoint_cost, restart, wasted_progress, goodput, recovery_collapse |
//! | [`efficiency`] | hollow_busy, mfu_below_estimate |
//!
//! Definitions and thresholds: docs/findings.md.

pub mod efficiency;
pub mod interconnect;
pub mod recovery;

use std::sync::Arc;

use serde_json::Value;
use strand_schemas::Finding;

use crate::accounting::GpuTime;
pub use crate::collective::fnv1a;
pub use interconnect::{BusUnit, GpuCounters, NicCounters, NodeAlloc, Stragglers, Topology};
pub use recovery::{JobFailure, JobIo, JobPhase, JobRecovery, JobWindow};

/// Thresholds of ai.01 and ai.17. Defaults are the documented ones.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Thresholds {
    /// straggler: a rank is judged only over at least this many instances.
    pub straggler_min_instances: u64,
    /// straggler: arrives last in at least this share of its communicator's instances …
    pub straggler_min_share: f64,
    /// … and that share exceeds chance (1/nranks) by this many binomial standard deviations …
    pub straggler_z: f64,
    /// … with a median lead over the second-latest rank of at least this.
    pub straggler_min_lateness_ns: i64,
    /// bus_bandwidth_collapse: a unit's median bus bandwidth below this share of its class baseline.
    pub bw_collapse_ratio: f64,
    /// bus_bandwidth_collapse: instances (rank rows) a unit needs to be judged.
    pub bw_min_samples: u64,
    /// bus_bandwidth_collapse: units (communicator × time bucket) a class needs for a baseline.
    pub bw_min_units: usize,
    /// link_errors: counter increase that raises a finding.
    pub link_error_min_increase: i64,
    /// link_errors: a port's `port_xmit_wait` rate above this multiple of the fleet's median port.
    pub xmit_wait_ratio: f64,
    /// exposed_communication: share of a job's measured GPU time.
    pub exposed_comm_share: f64,
    /// Jobs with less GPU time than this are not judged (exposed communication, goodput).
    pub min_job_gpu_seconds: f64,
    /// topology_stranded: unallocatable share of a cluster's powered GPU time …
    pub topology_min_share: f64,
    /// … and at least this many GPU-hours.
    pub topology_min_gpu_hours: f64,
    /// checkpoint_cost: checkpoint saves above this share of the job's wall time.
    pub checkpoint_share: f64,
    /// checkpoint_cost: observed interval outside [1/r, r] × Young's interval …
    pub young_ratio: f64,
    /// … judged only when the MTBF behind Young's interval rests on at least this many failures.
    pub young_min_failures: usize,
    /// Checkpoint detection without markers: the job's GPUs idle for at least this share of the window …
    pub detect_idle_share: f64,
    /// … while its processes write (or, for restores, read) at least this many bytes per GPU per second.
    pub detect_io_bytes_per_gpu_s: f64,
    /// Failure signals of one job closer than this are one failure.
    pub failure_merge_ns: i64,
    /// goodput: ETTR below this raises a finding (warning).
    pub goodput_warning: f64,
    /// goodput: ETTR below this is critical.
    pub goodput_critical: f64,
    /// recovery_collapse: (checkpoint save + restore + recovery + wasted progress) share of wall time.
    pub recovery_collapse_share: f64,
    /// recovery_collapse: this many failures of one job within `cascade_window_ns` is a cascade.
    pub cascade_failures: usize,
    pub cascade_window_ns: i64,
    /// hollow_busy: hollow busy share of a job's busy time …
    pub hollow_busy_share: f64,
    /// mfu_below_estimate: MFU below this share of the tensor-pipe estimate.
    pub mfu_estimate_ratio: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            straggler_min_instances: 20,
            straggler_min_share: 0.5,
            straggler_z: 4.0,
            straggler_min_lateness_ns: 500_000,
            bw_collapse_ratio: 0.5,
            bw_min_samples: 8,
            bw_min_units: 3,
            link_error_min_increase: 1,
            xmit_wait_ratio: 10.0,
            exposed_comm_share: 0.25,
            min_job_gpu_seconds: 600.0,
            topology_min_share: 0.01,
            topology_min_gpu_hours: 0.25,
            checkpoint_share: 0.10,
            young_ratio: 2.0,
            young_min_failures: 3,
            detect_idle_share: 0.9,
            detect_io_bytes_per_gpu_s: 50e6,
            failure_merge_ns: 60_000_000_000,
            goodput_warning: 0.90,
            goodput_critical: 0.70,
            recovery_collapse_share: 0.30,
            cascade_failures: 3,
            cascade_window_ns: 3_600_000_000_000,
            hollow_busy_share: 0.20,
            mfu_estimate_ratio: 0.5,
        }
    }
}

/// What a finding is about; the parts that make its id.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub cluster: Arc<str>,
    pub node: Option<Arc<str>>,
    pub gpu_uuid: Option<Arc<str>>,
    pub job_id: Option<String>,
    pub comm_hash: Option<i64>,
    pub rank: Option<i32>,
    /// A distinguishing detail (counter name, operation and size class, failure time).
    pub detail: Option<String>,
}

impl Scope {
    pub fn cluster(cluster: &Arc<str>) -> Self {
        Self { cluster: cluster.clone(), ..Self::default() }
    }
}

/// One finding before it becomes a row.
#[derive(Debug)]
pub struct Draft {
    pub code: &'static str,
    pub kind: &'static str,
    /// `cluster`, `node`, `gpu`, `job` or `communicator`.
    pub scope_kind: &'static str,
    pub scope: Scope,
    pub start_ns: i64,
    pub end_ns: i64,
    pub severity: &'static str,
    pub summary: String,
    pub figures: Value,
    pub evidence: Value,
    pub gpu_seconds: Option<f64>,
}

impl Draft {
    pub fn into_row(self, created_ns: i64) -> Finding {
        let s = &self.scope;
        let key = format!(
            "{}|{}|{}|{}|{}|{}|{}|{:?}|{:?}|{}|{}|{}",
            self.code,
            self.kind,
            self.scope_kind,
            s.cluster,
            s.node.as_deref().unwrap_or(""),
            s.gpu_uuid.as_deref().unwrap_or(""),
            s.job_id.as_deref().unwrap_or(""),
            s.comm_hash,
            s.rank,
            s.detail.as_deref().unwrap_or(""),
            self.start_ns,
            self.end_ns
        );
        Finding {
            cluster: s.cluster.clone(),
            node: s.node.clone(),
            finding_id: format!("{}-{}-{:016x}", self.code, self.kind, fnv1a(key.as_bytes())),
            code: self.code.to_string(),
            kind: self.kind.to_string(),
            scope: self.scope_kind.to_string(),
            gpu_uuid: s.gpu_uuid.clone(),
            job_id: s.job_id.clone(),
            comm_hash: s.comm_hash,
            rank: s.rank,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            severity: self.severity.to_string(),
            summary: self.summary,
            figures: self.figures.to_string(),
            evidence: self.evidence.to_string(),
            gpu_seconds: self.gpu_seconds,
            created_ns,
        }
    }
}

/// Severity rank for sorting (critical first).
pub fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 0,
        "warning" => 1,
        _ => 2,
    }
}

/// Milliseconds, rounded to µs, for figures.
pub fn ms(ns: f64) -> f64 {
    (ns / 1e3).round() / 1e3
}

/// Seconds with ms precision, for figures.
pub fn secs(ns: f64) -> f64 {
    (ns / 1e6).round() / 1e3
}

/// A quoted SQL string literal.
pub fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A finding as reports show it: the row with its figures and evidence parsed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FindingView {
    pub finding_id: String,
    pub code: String,
    pub kind: String,
    pub scope: String,
    pub severity: String,
    pub cluster: String,
    pub node: Option<String>,
    pub gpu_uuid: Option<String>,
    pub job_id: Option<String>,
    pub comm_hash: Option<i64>,
    pub rank: Option<i32>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub summary: String,
    pub gpu_seconds: Option<f64>,
    pub figures: Value,
    pub evidence: Value,
}

impl From<&Finding> for FindingView {
    fn from(f: &Finding) -> Self {
        Self {
            finding_id: f.finding_id.clone(),
            code: f.code.clone(),
            kind: f.kind.clone(),
            scope: f.scope.clone(),
            severity: f.severity.clone(),
            cluster: f.cluster.to_string(),
            node: f.node.as_deref().map(str::to_string),
            gpu_uuid: f.gpu_uuid.as_deref().map(str::to_string),
            job_id: f.job_id.clone(),
            comm_hash: f.comm_hash,
            rank: f.rank,
            start_ns: f.start_ns,
            end_ns: f.end_ns,
            summary: f.summary.clone(),
            gpu_seconds: f.gpu_seconds,
            figures: serde_json::from_str(&f.figures).unwrap_or(Value::Null),
            evidence: serde_json::from_str(&f.evidence).unwrap_or(Value::Null),
        }
    }
}

/// One GPU: (cluster, node, NVML index).
pub type GpuOf = (Arc<str>, Arc<str>, i32);

/// GPU time of one job (the accounting over its windows).
#[derive(Debug, Clone)]
pub struct JobTime {
    pub cluster: Arc<str>,
    pub job_id: String,
    pub gpus: usize,
    pub first_ns: i64,
    pub last_ns: i64,
    pub time: GpuTime,
}

/// Everything the detectors read. `None` (or empty) where the door has no
/// such data: those detectors then raise nothing.
#[derive(Default)]
pub struct Inputs<'a> {
    /// Per job: the accounting (exposed communication, hollow busy, MFU).
    pub jobs: &'a [JobTime],
    /// Per rank and node of each communicator, from `collective_stalls`.
    pub stragglers: Option<&'a Stragglers>,
    /// Powered GPU time per (cluster, node, GPU index): what a straggler's
    /// stall on its peers is measured against.
    pub gpu_powered: Option<&'a std::collections::HashMap<GpuOf, i64>>,
    pub bus: Option<&'a [BusUnit]>,
    pub gpu_counters: Option<&'a [GpuCounters]>,
    pub nic_counters: Option<&'a [NicCounters]>,
    /// Allocation per node and bucket, job shapes (GPUs per job per node),
    /// powered GPU-seconds per cluster, the trend bucket.
    pub topology: Option<interconnect::TopologyInput<'a>>,
    pub recovery: Option<recovery::RecoveryInput<'a>>,
}

/// What the engine found, with the per-job recovery figures and the
/// topology figures the reports show beside the findings.
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub jobs: Vec<JobRecovery>,
    pub topology: Topology,
}

/// Runs every detector whose input is present, then orders the findings
/// (critical first, then by GPU time).
pub fn detect(inputs: &Inputs, th: &Thresholds, created_ns: i64) -> Outcome {
    let mut drafts: Vec<Draft> = Vec::new();
    if let Some(s) = inputs.stragglers {
        let ranks = interconnect::stragglers(s, inputs.gpu_powered, th);
        drafts.extend(interconnect::node_stragglers(s, &ranks, th));
        drafts.extend(ranks);
    }
    if let Some(b) = inputs.bus {
        drafts.extend(interconnect::bus_bandwidth(b, th));
    }
    drafts.extend(interconnect::link_errors(
        inputs.gpu_counters.unwrap_or(&[]),
        inputs.nic_counters.unwrap_or(&[]),
        th,
    ));
    drafts.extend(interconnect::exposed_comm(inputs.jobs, th));
    drafts.extend(efficiency::hollow_busy(inputs.jobs, th));
    drafts.extend(efficiency::mfu_below_estimate(inputs.jobs, th));
    let mut topology = match &inputs.topology {
        Some(t) => interconnect::topology(t, th),
        None => Topology::default(),
    };
    drafts.append(&mut topology.drafts);
    let (jobs, recovery) = match &inputs.recovery {
        Some(r) => recovery::analyze(r, th),
        None => (Vec::new(), Vec::new()),
    };
    drafts.extend(recovery);
    let mut findings: Vec<Finding> = drafts.into_iter().map(|d| d.into_row(created_ns)).collect();
    findings.sort_by(|a, b| {
        severity_rank(&a.severity)
            .cmp(&severity_rank(&b.severity))
            .then(b.gpu_seconds.unwrap_or(0.0).total_cmp(&a.gpu_seconds.unwrap_or(0.0)))
            .then(a.finding_id.cmp(&b.finding_id))
    });
    Outcome { findings, jobs, topology }
}
