//! Workload markers source (DESIGN §5.5): a local datagram socket taking one
//! JSON object per message (step begin/end with step number and model
//! FLOPs, checkpoint begin/end) and producing `steps` rows.
//!
//! The message format and the begin/end pairing live in
//! `strand_analysis::markers` (shared with the offline tools); this module is
//! the socket. Bad messages are counted and logged at debug level, never
//! fatal; the socket never blocks a sender (datagrams to a full socket buffer
//! fail on the sender's side, and the Python client drops them). The Python
//! client is `python/strand_markers.py`.
//!
//! The agent starts it as [`MarkersSource`] (one part, `socket`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use strand_analysis::markers::{MAX_MESSAGE_BYTES, Marker, MarkerTracker, Stamp};
use strand_schemas::Step;
use tokio::net::UnixDatagram;

use crate::context::SourceContext;
use crate::shutdown::Shutdown;
use crate::sink::RowSink;

/// Counters of the markers source.
#[derive(Debug, Clone, Default)]
pub struct MarkersMetrics {
    /// Datagrams received.
    pub received: Counter,
    /// Datagrams refused (malformed, unknown event, end without begin, …).
    pub rejected: Counter,
    /// `steps` rows produced.
    pub rows: Counter,
}

impl MarkersMetrics {
    /// Registers `strand_agent_markers_{received,rejected,rows}_total`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register("strand_agent_markers_received", "Workload marker datagrams received", m.received.clone());
        registry.register(
            "strand_agent_markers_rejected",
            "Workload marker datagrams refused (malformed or unmatched)",
            m.rejected.clone(),
        );
        registry.register("strand_agent_markers_rows", "steps rows produced from workload markers", m.rows.clone());
        m
    }
}

/// The markers source: one part, `socket`.
pub struct MarkersSource {
    metrics: MarkersMetrics,
}

impl MarkersSource {
    pub fn new(registry: &mut Registry) -> Self {
        Self { metrics: MarkersMetrics::register(registry) }
    }
}

impl crate::source::Source for MarkersSource {
    fn name(&self) -> &'static str {
        "markers"
    }

    fn parts(&self) -> &'static [&'static str] {
        &["socket"]
    }

    fn enabled(&self, cfg: &crate::config::Config) -> (bool, &'static str) {
        (cfg.markers.enabled, "markers.enabled")
    }

    fn check(&self, cfg: &crate::config::Config) -> Vec<crate::source::Report> {
        use crate::source::{Report, State};
        let path = socket_path(&cfg.data_dir, &cfg.markers.socket);
        let r = match std::fs::symlink_metadata(&path) {
            Ok(m) if !std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                Report::new("markers", "socket", State::Down, format!("{} exists and is not a socket", path.display()))
            }
            _ => Report::new("markers", "socket", State::Up, format!("would listen on {}", path.display())),
        };
        vec![r]
    }

    fn start(self: Box<Self>, cx: &mut crate::source::StartContext) -> anyhow::Result<Vec<crate::source::Running>> {
        use crate::source::{Report, Running, State};
        let path = socket_path(&cx.cfg.data_dir, &cx.cfg.markers.socket);
        let sock = match bind(&path) {
            Ok(s) => s,
            Err(e) => {
                let why = format!("{e:#}: steps are inferred from NCCL calls");
                cx.health.report(Report::new("markers", "socket", State::Down, why));
                return Ok(Vec::new());
            }
        };
        cx.health.report(Report::new("markers", "socket", State::Up, format!("listening on {}", path.display())));
        let task =
            tokio::spawn(serve(sock, path, cx.ctx.clone(), cx.sinks.steps.clone(), self.metrics, cx.shutdown.clone()));
        Ok(vec![Running::Task(task)])
    }
}

/// The socket path: `socket` as configured, under `data_dir` when relative.
pub fn socket_path(data_dir: &Path, socket: &Path) -> PathBuf {
    if socket.is_absolute() { socket.to_path_buf() } else { data_dir.join(socket) }
}

/// Binds the socket: a stale socket file from a previous run is replaced;
/// any local user may send (mode 0666): a marker only describes the sender's
/// own steps.
pub fn bind(path: &Path) -> anyhow::Result<UnixDatagram> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("markers: cannot create {}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            std::fs::remove_file(path)
                .with_context(|| format!("markers: cannot remove the stale socket {}", path.display()))?;
        }
        Ok(_) => anyhow::bail!("markers: {} exists and is not a socket; refusing to replace it", path.display()),
        Err(_) => {}
    }
    let sock = UnixDatagram::bind(path).with_context(|| format!("markers: cannot bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("markers: cannot set the mode of {}", path.display()))?;
    Ok(sock)
}

/// Where a marker's rows go: the agent's cluster and node, the job of the
/// sending process, the NVML index of the GPU it names.
fn stamp(ctx: &SourceContext, m: &Marker) -> Stamp {
    Stamp {
        cluster: ctx.cluster.clone(),
        node: ctx.node.clone(),
        job_id: m.job_id.clone().or_else(|| m.pid.and_then(|p| ctx.job_of(p))),
        gpu_index: m.gpu_index.or_else(|| m.gpu_uuid.as_deref().and_then(|u| ctx.gpu_index_of(u))),
    }
}

/// Runs the markers source until shutdown: [`bind`], then [`serve`].
#[cfg(test)]
pub async fn run(
    path: PathBuf,
    ctx: Arc<SourceContext>,
    sink: RowSink<Step>,
    metrics: MarkersMetrics,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let sock = bind(&path)?;
    tracing::info!("markers: listening on {}", path.display());
    serve(sock, path, ctx, sink, metrics, shutdown).await;
    Ok(())
}

/// Receives markers on a socket [`bind`] made at `path` until shutdown,
/// then removes it.
async fn serve(
    sock: UnixDatagram,
    path: PathBuf,
    ctx: Arc<SourceContext>,
    sink: RowSink<Step>,
    metrics: MarkersMetrics,
    mut shutdown: Shutdown,
) {
    let mut tracker = MarkerTracker::default();
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES + 1];
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            r = sock.recv(&mut buf) => {
                let n = match r {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!("markers: receive failed: {e}");
                        continue;
                    }
                };
                metrics.received.inc();
                let now = strand_schemas::clock::utc_now_ns();
                match tracker.handle(&buf[..n], now, |m| stamp(&ctx, m)) {
                    Ok(Some(row)) => {
                        metrics.rows.inc();
                        sink.send(vec![row]);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        metrics.rejected.inc();
                        tracing::debug!("markers: refused a message: {e}");
                    }
                }
            }
        }
    }
    drop(sock);
    let _ = std::fs::remove_file(&path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::shutdown_pair;

    #[tokio::test]
    async fn datagrams_become_step_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("markers.sock");
        let ctx = Arc::new(SourceContext::with_proc_root("c", "n1", Some("job-7".into()), dir.path()));
        let (sink, mut rx) = RowSink::<Step>::channel(16, Counter::default());
        let metrics = MarkersMetrics::default();
        let (trigger, shutdown) = shutdown_pair();
        let task = tokio::spawn(run(path.clone(), ctx, sink, metrics.clone(), shutdown));
        while !path.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        for m in [
            r#"{"v":1,"event":"step_begin","step":1,"pid":4242,"rank":3,"gpu_index":1,"ts_ns":1000}"#,
            r#"{"v":1,"event":"step_end","step":1,"pid":4242,"flops":2.5e15,"dtype":"bf16","ts_ns":9000}"#,
            "not json",
            r#"{"v":1,"event":"checkpoint_end","pid":4242}"#,
        ] {
            client.send_to(m.as_bytes(), &path).unwrap();
        }
        let rows = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.start_ns, r.end_ns, r.step, r.rank, r.gpu_index), (1000, 9000, Some(1), Some(3), Some(1)));
        assert_eq!(
            (r.model_flops, r.job_id.as_deref(), r.node.as_ref(), r.source.as_str()),
            (Some(2.5e15), Some("job-7"), "n1", "marker")
        );
        // The two bad messages are counted, not fatal.
        while metrics.rejected.get() < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(metrics.received.get(), 4);
        trigger.trigger();
        task.await.unwrap().unwrap();
        assert!(!path.exists(), "the socket is removed at shutdown");
    }

    #[test]
    fn a_regular_file_in_the_way_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("markers.sock");
        std::fs::write(&path, b"data").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let e = rt.block_on(async { bind(&path).map(|_| ()) }).unwrap_err().to_string();
        assert!(e.contains("exists and is not a socket"), "{e}");
        assert_eq!(
            socket_path(Path::new("/var/lib/strand"), Path::new("markers.sock")),
            PathBuf::from("/var/lib/strand/markers.sock")
        );
        assert_eq!(socket_path(Path::new("/x"), Path::new("/run/m.sock")), PathBuf::from("/run/m.sock"));
    }
}
