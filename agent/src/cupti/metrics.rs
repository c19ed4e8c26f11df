//! Prometheus metrics of the CUPTI source.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProcKind {
    pub pid: i32,
    pub comm: String,
    /// `kernel`, `memcpy`, `memset`, `sync`, `api`, `device`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProcReason {
    pub pid: i32,
    pub comm: String,
    /// Where records were lost, see [`CuptiMetrics::register`].
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Outcome {
    /// `accepted` or `rejected` (peer uid not allowed).
    pub result: &'static str,
}

/// Counters of the CUPTI source. Clones share the same metrics.
#[derive(Clone, Debug, Default)]
pub struct CuptiMetrics {
    pub(crate) records: Family<ProcKind, Counter>,
    pub(crate) dropped: Family<ProcReason, Counter>,
    pub(crate) clients: Gauge,
    pub(crate) connections: Family<Outcome, Counter>,
    pub(crate) decode_errors: Counter,
    pub(crate) frames_lost: Counter,
}

/// Drop reasons (`reason` label).
pub(crate) mod reason {
    /// The injection library dropped records: its queue was full (agent slow
    /// or absent), or a frame could not be delivered.
    pub const CLIENT: &str = "client";
    /// CUPTI dropped records: no activity buffer was free.
    pub const CUPTI: &str = "cupti";
    /// CUPTI reported no timestamps for the record (no device memory for them).
    pub const NO_TIMESTAMP: &str = "no_timestamp";
    /// A synchronization record whose API record (its thread) never arrived;
    /// always the case on CUPTI before 12.5, which cannot record single API functions.
    pub const SYNC_WITHOUT_THREAD: &str = "sync_without_thread";
}

impl CuptiMetrics {
    /// Registers every metric, named `strand_cupti_*`:
    /// - `strand_cupti_records_total{pid,comm,kind}`: records received;
    /// - `strand_cupti_records_dropped_total{pid,comm,reason}`: records lost,
    ///   `reason` = `client` (library queue full or agent unreachable),
    ///   `cupti` (CUPTI out of buffers), `no_timestamp`, `sync_without_thread`;
    /// - `strand_cupti_clients_connected`: injection clients connected now;
    /// - `strand_cupti_connections_total{result}`: connections accepted / rejected by the uid check;
    /// - `strand_cupti_decode_errors_total`: frames rejected as malformed (the connection is closed);
    /// - `strand_cupti_frames_lost_total`: gaps in the clients' frame sequence numbers.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "strand_cupti_records",
            "CUPTI activity records received from injection clients",
            m.records.clone(),
        );
        registry.register(
            "strand_cupti_records_dropped",
            "CUPTI activity records lost before becoming rows, by reason",
            m.dropped.clone(),
        );
        registry.register("strand_cupti_clients_connected", "Injection clients connected", m.clients.clone());
        registry.register(
            "strand_cupti_connections",
            "Injection client connections, by result of the peer uid check",
            m.connections.clone(),
        );
        registry.register(
            "strand_cupti_decode_errors",
            "Malformed frames from injection clients",
            m.decode_errors.clone(),
        );
        registry.register(
            "strand_cupti_frames_lost",
            "Frames missing from injection clients' sequence numbers",
            m.frames_lost.clone(),
        );
        m
    }

    pub(crate) fn add_records(&self, pid: i32, comm: &str, kind: &'static str, n: u64) {
        if n > 0 {
            self.records.get_or_create(&ProcKind { pid, comm: comm.to_string(), kind }).inc_by(n);
        }
    }

    pub(crate) fn add_dropped(&self, pid: i32, comm: &str, reason: &'static str, n: u64) {
        if n > 0 {
            self.dropped.get_or_create(&ProcReason { pid, comm: comm.to_string(), reason }).inc_by(n);
        }
    }

    /// Forgets the label sets of a process gone for a while (bounded cardinality).
    pub(crate) fn retire(&self, pid: i32, comm: &str) {
        for kind in ["kernel", "memcpy", "memset", "sync", "api", "device"] {
            self.records.remove(&ProcKind { pid, comm: comm.to_string(), kind });
        }
        for reason in [reason::CLIENT, reason::CUPTI, reason::NO_TIMESTAMP, reason::SYNC_WITHOUT_THREAD] {
            self.dropped.remove(&ProcReason { pid, comm: comm.to_string(), reason });
        }
    }
}
