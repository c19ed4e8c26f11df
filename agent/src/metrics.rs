//! Prometheus metrics of the agent: per-GPU metrics (base units, dcgm-exporter
//! style labels: [`crate::gpu_metrics`]) and self-metrics, served on `/metrics`.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::gpu_metrics::GpuCollector;
use crate::shutdown::Shutdown;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub table: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub source: String,
    pub kind: String,
}

/// Self-metrics of the agent.
#[derive(Clone, Default)]
pub struct AgentMetrics {
    pub gpu: Arc<GpuCollector>,
    pub samples: Family<SourceLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub rows_written: Family<TableLabels, Counter>,
    pub rows_dropped: Family<DropLabels, Counter>,
    pub batches_written: Family<TableLabels, Counter>,
    pub bytes_written: Family<TableLabels, Counter>,
    pub spool_evicted_files: Counter,
    pub spool_evicted_bytes: Counter,
    pub spool_evicted_rows: Counter,
    pub spool_tmp_removed: Counter,
    pub spool_bytes: Gauge,
    pub spool_files: Gauge,
    pub spool_quota_bytes: Gauge,
    pub uploads: Family<UploadLabels, Counter>,
    pub uploaded_bytes: Counter,
    /// Rows lost to write errors, all tables (also in `rows_dropped`), for
    /// the shutdown line. Not exported on its own.
    pub write_lost: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UploadLabels {
    pub outcome: String,
}

impl AgentMetrics {
    /// Registers everything under `r`; other modules register their own
    /// metrics (eBPF, CUPTI) into the same registry.
    pub fn register(&self, r: &mut Registry) {
        r.register_collector(Box::new(self.gpu.clone()));
        r.register("strand_agent_samples", "Samples taken, by source", self.samples.clone());
        r.register("strand_agent_errors", "Errors, by source and kind", self.errors.clone());
        r.register("strand_agent_rows_written", "Rows written to Parquet batches, by table", self.rows_written.clone());
        r.register(
            "strand_agent_rows_dropped",
            "Rows dropped, by table and reason (backpressure, write_error, shutdown)",
            self.rows_dropped.clone(),
        );
        r.register(
            "strand_agent_batches_written",
            "Parquet batch files committed, by table",
            self.batches_written.clone(),
        );
        r.register(
            "strand_agent_bytes_written",
            "Bytes of Parquet batch files committed, by table",
            self.bytes_written.clone(),
        );
        r.register(
            "strand_agent_spool_evicted_files",
            "Batch files evicted because the data directory was over quota",
            self.spool_evicted_files.clone(),
        );
        r.register(
            "strand_agent_spool_evicted_bytes",
            "Bytes evicted because the data directory was over quota",
            self.spool_evicted_bytes.clone(),
        );
        r.register(
            "strand_agent_spool_evicted_rows",
            "Rows evicted because the data directory was over quota",
            self.spool_evicted_rows.clone(),
        );
        r.register(
            "strand_agent_spool_tmp_removed",
            "Incomplete batch files of a crash removed at start",
            self.spool_tmp_removed.clone(),
        );
        r.register("strand_agent_spool_bytes", "Bytes of batch files in the data directory", self.spool_bytes.clone());
        r.register("strand_agent_spool_files", "Batch files in the data directory", self.spool_files.clone());
        r.register(
            "strand_agent_spool_quota_bytes",
            "output.quota_bytes: above it the oldest batch files are evicted",
            self.spool_quota_bytes.clone(),
        );
        r.register("strand_agent_uploads", "Upload attempts to the collector, by outcome", self.uploads.clone());
        r.register("strand_agent_uploaded_bytes", "Bytes accepted by the collector", self.uploaded_bytes.clone());
    }

    pub fn error(&self, source: &str, kind: &str) {
        self.errors.get_or_create(&ErrorLabels { source: source.into(), kind: kind.into() }).inc();
    }

    pub fn dropped(&self, table: &str, reason: &str) -> Counter {
        self.rows_dropped.get_or_create(&DropLabels { table: table.into(), reason: reason.into() }).clone()
    }
}

/// Renders the registry in the OpenMetrics text format.
pub fn render(registry: &Mutex<Registry>) -> String {
    let mut out = String::new();
    if let Ok(r) = registry.lock() {
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
    }
    out
}

/// Writes, syncs and removes a small file in the data directory: storage
/// that cannot take a write (read-only, full, gone) fails with the reason.
pub fn probe_storage(data_dir: &std::path::Path) -> Result<(), String> {
    use std::io::Write;
    let path = data_dir.join(format!(".strand-healthz-{}", std::process::id()));
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(b"strand").and_then(|()| f.sync_all()));
    let _ = std::fs::remove_file(&path);
    written.map_err(|e| format!("cannot write to {}: {e}", data_dir.display()))
}

/// Serves `/metrics` and `/healthz` until shutdown. `/healthz` answers
/// `200 ok`, or `503` naming the reason when the data directory cannot be
/// written.
pub async fn serve(
    listener: std::net::TcpListener,
    registry: Arc<Mutex<Registry>>,
    data_dir: std::path::PathBuf,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        render(&registry),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let dir = data_dir.clone();
                async move {
                    let probe = tokio::task::spawn_blocking(move || probe_storage(&dir))
                        .await
                        .unwrap_or_else(|e| Err(format!("storage probe failed: {e}")));
                    match probe {
                        Ok(()) => (axum::http::StatusCode::OK, "ok\n".to_string()),
                        Err(why) => {
                            tracing::error!("/healthz: {why}");
                            (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {why}\n"))
                        }
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await }).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_storage_probe_names_a_data_directory_that_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(super::probe_storage(dir.path()), Ok(()));
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "the probe file is removed");
        let gone = dir.path().join("unmounted");
        let why = super::probe_storage(&gone).unwrap_err();
        assert!(why.starts_with(&format!("cannot write to {}: ", gone.display())), "{why}");
    }
}
