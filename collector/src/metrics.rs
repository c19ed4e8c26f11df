//! Prometheus metrics of the collector (`GET /metrics`, OpenMetrics text).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `stored`, `duplicate` or `rejected`.
pub type Outcome = &'static str;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BatchLabels {
    /// A known table name, or `unknown`: never a raw header value, so that a
    /// client cannot grow the label set.
    pub table: &'static str,
    pub outcome: Outcome,
    /// Why a batch was rejected; empty for accepted batches.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableOutcome {
    pub table: &'static str,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub table: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

type HistogramFamily = Family<OutcomeLabel, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub batches: Family<BatchLabels, Counter>,
    pub bytes: Family<TableOutcome, Counter>,
    pub rows: Family<TableLabel, Counter>,
    pub duration: HistogramFamily,
    pub inflight_bytes: Gauge,
    /// Compaction (`compact.rs`): parts, batches, rows, removed, conflicts, expired dates.
    pub compaction: [Counter; 6],
    pub compaction_failures: Counter,
    pub connections: Gauge,
    pub connections_refused: Family<ReasonLabel, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let batches = Family::<BatchLabels, Counter>::default();
        registry.register(
            "strand_collector_batches",
            "Upload requests by table and outcome (stored, duplicate, rejected) and rejection reason",
            batches.clone(),
        );
        let bytes = Family::<TableOutcome, Counter>::default();
        registry.register("strand_collector_bytes", "Body bytes received, by table and outcome", bytes.clone());
        let rows = Family::<TableLabel, Counter>::default();
        registry.register("strand_collector_rows", "Rows of stored batches, by table", rows.clone());
        let duration: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16)));
        registry.register(
            "strand_collector_request_duration_seconds",
            "Upload request time from headers to answer, by outcome",
            duration.clone(),
        );
        let inflight_bytes = Gauge::default();
        registry.register(
            "strand_collector_inflight_bytes",
            "Bytes reserved by uploads being received or checked (limit: max_inflight_bytes)",
            inflight_bytes.clone(),
        );
        let compaction: [Counter; 6] = Default::default();
        for (c, (name, help)) in compaction.iter().zip([
            ("strand_collector_compaction_parts", "Compacted parts committed"),
            ("strand_collector_compaction_batches", "Landed batches compacted"),
            ("strand_collector_compaction_rows", "Rows compacted"),
            ("strand_collector_compaction_landed_removed", "Landed batches removed after their part was committed"),
            ("strand_collector_compaction_conflicts", "Generations another compactor committed first"),
            ("strand_collector_retention_dates_expired", "Date partitions deleted by retention"),
        ]) {
            registry.register(name, help, c.clone());
        }
        let compaction_failures = Counter::default();
        registry.register(
            "strand_collector_compaction_failures",
            "Compaction passes that failed (the log says why)",
            compaction_failures.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "strand_collector_connections",
            "Connections open (limit: max_connections)",
            connections.clone(),
        );
        let connections_refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "strand_collector_connections_refused",
            "Connections closed at accept, by the limit reached (max_connections, max_connections_per_peer)",
            connections_refused.clone(),
        );
        Self {
            registry,
            batches,
            bytes,
            rows,
            duration,
            inflight_bytes,
            compaction,
            compaction_failures,
            connections,
            connections_refused,
        }
    }

    pub fn record_compaction(&self, s: &crate::compact::CompactStats) {
        let v =
            [s.parts_written, s.batches_compacted, s.rows_compacted, s.landed_removed, s.conflicts, s.dates_expired];
        for (c, v) in self.compaction.iter().zip(v) {
            c.inc_by(v);
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
