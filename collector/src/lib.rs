//! strand-collector, the network service (`strand serve`). Agents `POST /v1/batches` one Parquet
//! batch per request; each accepted batch is stored once, atomically, in Hive
//! layout under the storage root, where `strand query` and the reports read
//! it. `docs/protocol.md` is the contract; `collector/collector.toml`
//! documents the configuration.

mod auth;
pub mod compact;
mod config;
mod conn;
mod ingest;
mod metrics;
pub mod store;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use strand_schemas::protocol::BATCHES_PATH;
use tokio::sync::Semaphore;

use self::config::Config;
use self::ingest::App;

/// How to run the collector.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Collector configuration (TOML; every key is documented in collector/collector.toml).
    pub config: PathBuf,
    /// Listen address, overriding `listen` in the configuration (port 0 picks a free port).
    pub listen: Option<String>,
    /// Storage root (directory or s3://bucket/prefix), overriding `storage.root`.
    pub data: Option<String>,
}

/// Runs the collector until SIGTERM or SIGINT.
pub async fn run(args: ServeOptions) -> anyhow::Result<()> {
    let mut cfg = Config::load(&args.config)?;
    let name = args.config.display().to_string();
    if let Some(listen) = args.listen {
        cfg.listen = listen;
    }
    if let Some(data) = args.data {
        cfg.storage.root = data;
    }
    cfg.validate().map_err(|m| config::ConfigError { source_name: name.clone(), message: m })?;

    let store = store::Store::open(&cfg.storage).with_context(|| name.clone())?;
    store.probe().await.map_err(|e| anyhow::anyhow!("{name}: key `storage.root`: {e}"))?;
    let removed = store.remove_stale_staging(STALE_STAGING);
    if removed > 0 {
        tracing::warn!(
            "removed {removed} partial batch file(s) left by an interrupted write under {}",
            store.describe()
        );
    }
    let tokens = auth::Tokens::new(&cfg.nodes).map_err(|m| anyhow::anyhow!("{name}: {m}"))?;
    let inflight_kib =
        usize::try_from(cfg.max_inflight_bytes.div_ceil(1024)).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
    let read_limits = strand_schemas::ReadLimits { max_decoded_bytes: cfg.max_decoded_bytes, ..Default::default() };
    let app = Arc::new(App {
        tokens,
        store,
        coverage: compact::Coverage::default(),
        metrics: metrics::Metrics::new(),
        max_body: cfg.max_body_bytes,
        body_timeout: cfg.body_timeout,
        retry_after_secs: cfg.retry_after_secs,
        inflight: Arc::new(Semaphore::new(inflight_kib)),
        per_node: Default::default(),
        per_node_max: cfg.per_node_inflight(),
        read_limits,
        health: Default::default(),
    });
    let tls = match &cfg.tls {
        Some(tls) => Some(tls::load(tls).await.with_context(|| name.clone())?),
        None => None,
    };
    let nofile = conn::raise_nofile_limit();
    if let Some(n) = nofile
        && (cfg.max_connections as u64).saturating_add(64) > n
    {
        tracing::warn!(
            "max_connections is {} but the open-file limit is {n}: past about {} connections accept will fail; raise LimitNOFILE (systemd/strand-collector.service) or lower max_connections",
            cfg.max_connections,
            n.saturating_sub(64)
        );
    }
    let limits = conn::Limits::new(
        cfg.max_connections,
        cfg.max_connections_per_peer,
        cfg.idle_timeout,
        app.metrics.connections.clone(),
        app.metrics.connections_refused.clone(),
    );
    let acceptor = conn::Limited { limits };

    if cfg.compaction.enabled {
        tokio::spawn(compaction_loop(app.clone(), cfg.compaction.clone()));
    }

    let addr = cfg.listen_addr().map_err(|m| anyhow::anyhow!("{name}: key `listen`: {m}"))?;
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    // Installed before the first request is served, so a SIGTERM from then
    // on always drains instead of killing.
    let signals = stop_signals();
    tokio::spawn(shutdown_on_signal(signals, handle.clone(), cfg.shutdown_grace));

    let service = router(app.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut server = axum_server::from_tcp(listener)?.handle(handle);
    server.http_builder().http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(cfg.header_read_timeout);
    server.http_builder().http2().timer(hyper_util::rt::TokioTimer::new()).keep_alive_interval(None);
    // Tests and scripts wait for this line (port 0 picks the port): it comes
    // only once the storage, the tokens and TLS checked out.
    tracing::info!(
        "listening on {scheme}://{local}, storing batches in {}, max body {} bytes, {} token(s), at most {} connections ({} per address), open-file limit {}",
        app.store.describe(),
        cfg.max_body_bytes,
        cfg.nodes.len(),
        cfg.max_connections,
        cfg.max_connections_per_peer,
        nofile.map_or("unknown".to_string(), |n| n.to_string())
    );
    match tls {
        Some(rustls) => {
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls).acceptor(acceptor);
            server.acceptor(acceptor).serve(service).await?;
        }
        None => server.acceptor(acceptor).serve(service).await?,
    }
    tracing::info!("stopped");
    Ok(())
}

/// A staging file older than this was left by a crash (no write takes an hour).
const STALE_STAGING: Duration = Duration::from_secs(3600);

fn compact_options(c: &config::CompactionConfig) -> compact::CompactOptions {
    compact::CompactOptions {
        after: c.after,
        cleanup_delay: c.cleanup_delay,
        max_part_bytes: c.max_part_bytes,
        retention: c.retention,
    }
}

/// Compaction and retention in the service, one pass per `interval`.
async fn compaction_loop(app: Arc<App>, c: config::CompactionConfig) {
    let opts = compact_options(&c);
    if let Err(e) = compact::write_common_metadata(&app.store).await {
        tracing::warn!("cannot write the tables' _common_metadata: {e:#}");
    }
    let mut tick = tokio::time::interval(c.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        match compact::compact_once(&app.store, &app.coverage, &opts, std::time::SystemTime::now()).await {
            Ok(s) => {
                app.metrics.record_compaction(&s);
                if s.parts_written > 0 || s.landed_removed > 0 || s.dates_expired > 0 {
                    tracing::info!(
                        parts = s.parts_written,
                        batches = s.batches_compacted,
                        rows = s.rows_compacted,
                        removed = s.landed_removed,
                        conflicts = s.conflicts,
                        expired = s.dates_expired,
                        "compaction pass in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            Err(e) => {
                app.metrics.compaction_failures.inc();
                tracing::error!("compaction failed: {e:#}");
            }
        }
    }
}

/// What `strand compact` runs: one pass of compaction and retention over a
/// storage root, with the configuration's `[storage]` and `[compaction]`.
#[derive(Debug, Clone)]
pub struct CompactRunOptions {
    pub config: PathBuf,
    /// Storage root, overriding `storage.root`.
    pub data: Option<String>,
    /// Compact hours that ended even this recently, overriding `compaction.after`.
    pub after: Option<Duration>,
    /// Overrides `compaction.cleanup_delay`.
    pub cleanup_delay: Option<Duration>,
}

/// One compaction pass; prints what it did as JSON on stdout.
pub async fn compact_now(args: CompactRunOptions) -> anyhow::Result<()> {
    let mut cfg = Config::load(&args.config)?;
    if let Some(data) = args.data {
        cfg.storage.root = data;
    }
    let name = args.config.display().to_string();
    cfg.validate().map_err(|m| config::ConfigError { source_name: name.clone(), message: m })?;
    let store = store::Store::open(&cfg.storage).with_context(|| name.clone())?;
    store.remove_stale_staging(STALE_STAGING);
    let mut opts = compact_options(&cfg.compaction);
    opts.after = args.after.unwrap_or(opts.after);
    opts.cleanup_delay = args.cleanup_delay.unwrap_or(opts.cleanup_delay);
    compact::write_common_metadata(&store).await?;
    let stats =
        compact::compact_once(&store, &compact::Coverage::default(), &opts, std::time::SystemTime::now()).await?;
    println!("{}", serde_json::to_string(&stats)?);
    Ok(())
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(BATCHES_PATH, post(ingest::post_batch))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        // The upload handler enforces its own limit (it answers 413 with the
        // limit in the message, and before reading when Content-Length says so).
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

/// `200 {"status":"ok"}`, or `503 {"status":"unhealthy","storage":"<why>"}`
/// when a probe file cannot be written to the storage root (checked at most
/// once a second, however often asked).
async fn healthz(State(app): State<Arc<App>>) -> impl IntoResponse {
    let storage = app.health.check(&app.store).await;
    match storage {
        Ok(()) => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok", "max_body_bytes": app.max_body}))),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "unhealthy", "storage": why, "max_body_bytes": app.max_body})),
        ),
    }
}

async fn metrics_text(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        app.metrics.encode(),
    )
}

/// SIGTERM and SIGINT, caught from the moment this is called.
type Signals = (tokio::signal::unix::Signal, tokio::signal::unix::Signal);

fn stop_signals() -> Option<Signals> {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(term), Ok(int)) => Some((term, int)),
        _ => {
            tracing::error!("cannot install signal handlers; stop the collector with SIGKILL");
            None
        }
    }
}

/// SIGTERM or SIGINT: stop accepting, give requests in flight `grace` to finish.
async fn shutdown_on_signal(signals: Option<Signals>, handle: axum_server::Handle<SocketAddr>, grace: Duration) {
    let Some((mut term, mut int)) = signals else { return };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down: finishing requests in flight (up to {})", humantime::format_duration(grace));
    handle.graceful_shutdown(Some(grace));
}
