//! `POST /v1/batches`: check an upload and store it once.
//!
//! The checks run in this order, cheapest and least trusting first, and the
//! first that fails answers (docs/protocol.md lists every answer):
//! 1. a known bearer token (401);
//! 2. a declared `Content-Length` within `max_body_bytes` (413);
//! 3. the table, cluster, node, batch id and rows headers (400);
//! 4. the token belongs to that cluster and node (403);
//! 5. room in the in-flight memory budget (429);
//! 6. the body, read within `max_body_bytes` (413) and `body_timeout` (408);
//! 7. a strand Parquet file of that table and a readable version, every page
//!    decodable, every row's `cluster`/`node` equal to the headers', at least
//!    one row (400);
//! 8. stored under its landed key (`strand_schemas::layout`), one file per
//!    UTC hour of its rows, unless the key exists or a compacted part of
//!    that hour already holds the batch (201, or 200 duplicate).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, EXPECT, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::json;
use strand_schemas::layout;
use strand_schemas::protocol::{self, time_column, utc_date, validate_batch_id, validate_name};
use strand_schemas::{ReadError, ReadLimits, TableInfo, inspect_bytes_with, open_reader, table_info};
use tokio::sync::Semaphore;

use super::auth::{AuthError, Tokens};
use super::compact::Coverage;
use super::metrics::{BatchLabels, Metrics, OutcomeLabel, TableLabel, TableOutcome};
use super::store::{PutOutcome, Store};

/// Shared state of the collector's handlers.
pub struct App {
    pub tokens: Tokens,
    pub store: Store,
    /// What compacted parts hold, for the dedupe of batches re-sent after compaction.
    pub coverage: Coverage,
    pub metrics: Metrics,
    pub max_body: u64,
    pub body_timeout: Duration,
    pub retry_after_secs: u32,
    /// The in-flight memory budget, in KiB permits.
    pub inflight: Arc<Semaphore>,
    /// Bytes of the budget each node holds now, and the most one may hold.
    pub per_node: Arc<Mutex<HashMap<String, u64>>>,
    pub per_node_max: u64,
    /// What the bounded reader accepts from an upload (`max_decoded_bytes`).
    pub read_limits: ReadLimits,
    /// The storage probe behind `/healthz`.
    pub health: super::store::Health,
}

/// A refused upload: the status, a stable reason (metrics label and JSON
/// `reason`) and a message saying what was wrong.
#[derive(Debug)]
pub struct Rejection {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

impl Rejection {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self { status, reason, message: message.into() }
    }

    fn bad(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason, message)
    }

    fn too_large(what: String, max: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("{what} exceeds the limit of {max} bytes (collector key max_body_bytes)"),
        )
    }
}

struct Accepted {
    outcome: PutOutcome,
    key: String,
    date: String,
    rows: i64,
}

/// What the handler learnt before answering, for metrics and logs.
#[derive(Default)]
struct Seen {
    table: Option<&'static str>,
    bytes: u64,
    /// `cluster/node` once the headers were checked, for logs.
    source: Option<String>,
    batch_id: Option<String>,
}

pub async fn post_batch(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let mut seen = Seen::default();
    let mut body = Some(body);
    let result = ingest(&app, &headers, &mut body, &mut seen).await;
    if let (Err(r), Some(body)) = (&result, body) {
        // Read what the client is still sending, so that it sees the answer
        // instead of a reset connection. Not for 413 (that body is the
        // problem), nor for a client waiting for `100 Continue` (reading
        // would ask it to send the body).
        let expects_continue = headers.get(EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        // A busy collector (429) reads for a moment only: a node past its
        // share must not hold the connection by sending slowly.
        let wait =
            if r.status == StatusCode::TOO_MANY_REQUESTS { Duration::from_secs(1) } else { Duration::from_secs(5) };
        if r.status != StatusCode::PAYLOAD_TOO_LARGE && !expects_continue {
            drain(body, app.max_body, wait).await;
        }
    }
    let table = seen.table.unwrap_or("unknown");
    let m = &app.metrics;
    let (outcome, response) = match result {
        Ok(a) => {
            let (outcome, status) = match a.outcome {
                PutOutcome::Stored => ("stored", StatusCode::CREATED),
                PutOutcome::Duplicate => ("duplicate", StatusCode::OK),
            };
            if a.outcome == PutOutcome::Stored {
                m.rows.get_or_create(&TableLabel { table }).inc_by(a.rows as u64);
            }
            tracing::debug!(key = %a.key, rows = a.rows, bytes = seen.bytes, "{outcome}");
            m.batches.get_or_create(&BatchLabels { table, outcome, reason: "" }).inc();
            let body = json!({"status": outcome, "key": a.key, "date": a.date, "rows": a.rows, "bytes": seen.bytes});
            (outcome, (status, Json(body)).into_response())
        }
        Err(r) => {
            let who = seen.source.as_deref().unwrap_or("-");
            let id = seen.batch_id.as_deref().unwrap_or("-");
            if r.status.is_server_error() {
                tracing::error!(%peer, source = who, batch = id, reason = r.reason, "upload failed: {}", r.message);
            } else {
                tracing::warn!(%peer, source = who, batch = id, reason = r.reason, status = r.status.as_u16(), "upload rejected: {}", r.message);
            }
            m.batches.get_or_create(&BatchLabels { table, outcome: "rejected", reason: r.reason }).inc();
            ("rejected", rejection_response(&r, app.retry_after_secs))
        }
    };
    m.bytes.get_or_create(&TableOutcome { table, outcome }).inc_by(seen.bytes);
    m.duration.get_or_create(&OutcomeLabel { outcome }).observe(started.elapsed().as_secs_f64());
    response
}

fn rejection_response(r: &Rejection, retry_after_secs: u32) -> Response {
    let mut response =
        (r.status, Json(json!({"status": "rejected", "reason": r.reason, "error": r.message}))).into_response();
    let h = response.headers_mut();
    match r.status {
        StatusCode::UNAUTHORIZED => {
            let value = if r.message == AuthError::Missing.message() {
                "Bearer realm=\"strand\""
            } else {
                "Bearer realm=\"strand\", error=\"invalid_token\""
            };
            h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(value));
        }
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            h.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        _ => {}
    }
    response
}

async fn ingest(
    app: &App,
    headers: &HeaderMap,
    body: &mut Option<Body>,
    seen: &mut Seen,
) -> Result<Accepted, Rejection> {
    // 1. Who is this?
    let grant = app
        .tokens
        .authenticate(headers.get(AUTHORIZATION))
        .map_err(|e| Rejection::new(StatusCode::UNAUTHORIZED, "unauthorized", e.message()))?;

    // 2. A declared size over the limit is refused before reading anything.
    let declared = match headers.get(CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| Rejection::bad("bad_header", "Content-Length is not a number"))?,
        ),
    };
    if let Some(n) = declared.filter(|&n| n > app.max_body) {
        return Err(Rejection::too_large(format!("body of {n} bytes"), app.max_body));
    }

    // 3. What is it? Names are checked before they go anywhere near a path.
    let table_name = header(headers, protocol::HEADER_TABLE)?;
    let table = table_info(table_name).ok_or_else(|| {
        let known: Vec<&str> = strand_schemas::all_tables().iter().map(|t| t.name).collect();
        Rejection::bad("unknown_table", format!("unknown table {table_name:?}; known tables: {}", known.join(", ")))
    })?;
    seen.table = Some(table.name);
    let cluster = header(headers, protocol::HEADER_CLUSTER)?;
    validate_name("cluster", cluster).map_err(|m| Rejection::bad("bad_name", m))?;
    let node = header(headers, protocol::HEADER_NODE)?;
    validate_name("node", node).map_err(|m| Rejection::bad("bad_name", m))?;
    let batch_id = header(headers, protocol::HEADER_BATCH_ID)?;
    validate_batch_id(batch_id).map_err(|m| Rejection::bad("bad_batch_id", m))?;
    seen.source = Some(format!("{cluster}/{node}"));
    seen.batch_id = Some(batch_id.to_string());
    let rows_header = match headers.get(protocol::HEADER_ROWS) {
        None => None,
        Some(_) => Some(header(headers, protocol::HEADER_ROWS)?.parse::<i64>().map_err(|_| {
            Rejection::bad("bad_header", format!("header {} is not a row count", protocol::HEADER_ROWS))
        })?),
    };

    // 4. May this token speak for that node?
    if !grant.allows(cluster, node) {
        return Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token may not upload for cluster {cluster:?}, node {node:?}"),
        ));
    }

    // 5. Memory: reserve the declared size (or the limit) before reading,
    // within this node's share of the budget.
    let source = format!("{cluster}/{node}");
    let want = declared.unwrap_or(app.max_body).max(1);
    let mut reserved = Reservation::take(app, &source, want)?;

    // 6. The body.
    let data = read_body(body.take().unwrap_or_default(), app.max_body, declared, app.body_timeout, seen).await?;

    // 7. Is it what it says? The footer and page headers first, without
    // decoding; then what decoding will take is added to the reservation,
    // and the rows are decoded and checked.
    let (name, limits, data_c) = (format!("batch {batch_id}"), app.read_limits, data.clone());
    let inspected = tokio::task::spawn_blocking(move || {
        inspect_bytes_with(&name, data_c, Some(table.name), &limits).map_err(read_rejection)
    })
    .await
    .map_err(|e| Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("check failed: {e}")))??;
    let rows = u64::try_from(inspected.0.rows).unwrap_or(0);
    let decode = inspected.1.decode_bytes_rows(&app.read_limits, rows);
    // Decoding takes milliseconds: charged to the whole budget, not to the
    // node's share (which stops slow bodies from holding it).
    reserved.grow(app, decode, false)?;
    let (cluster_c, node_c, id_c, data_c, limits) =
        (cluster.to_string(), node.to_string(), batch_id.to_string(), data.clone(), app.read_limits);
    let checked = tokio::task::spawn_blocking(move || {
        check_batch(data_c, table, &cluster_c, &node_c, &id_c, rows_header, &limits)
    })
    .await
    .map_err(|e| Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("check failed: {e}")))??;

    // 8. Store once, one file per hour of its rows (a split decodes the
    // batch again: still within the reservation).
    let pieces = if layout::hour_floor(checked.min_ts) == layout::hour_floor(checked.max_ts) {
        vec![(checked.min_ts, data)]
    } else {
        let id = batch_id.to_string();
        let limits = app.read_limits;
        tokio::task::spawn_blocking(move || split_by_hour(&id, data, time_of(table), &limits))
            .await
            .map_err(|e| Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("split failed: {e}")))?
            .map_err(|e| {
                Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("split failed: {e:#}"))
            })?
    };
    let storage = |key: &str, e: anyhow::Error| {
        Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "storage", format!("cannot store {key}: {e:#}"))
    };
    let mut outcome = PutOutcome::Duplicate;
    let mut first_key = None;
    for (ts, piece) in pieces {
        let key = layout::landed_path(table.name, ts, cluster, node, batch_id);
        first_key.get_or_insert_with(|| key.clone());
        if already_compacted(app, table.name, ts, cluster, &key).await.map_err(|e| storage(&key, e))? {
            continue;
        }
        if app.store.put_once(&key, piece).await.map_err(|e| storage(&key, e))? == PutOutcome::Stored {
            outcome = PutOutcome::Stored;
        }
    }
    drop(reserved);
    let key = first_key.unwrap_or_default();
    Ok(Accepted { outcome, key, date: checked.date, rows: checked.rows })
}

fn time_of(table: &TableInfo) -> &'static str {
    table.time.0
}

/// Whether a compacted part of the batch's hour already holds it (a batch
/// re-sent after its hour was compacted and its landed file removed).
/// Only hours that have ended can have parts.
async fn already_compacted(app: &App, table: &str, ts: i64, cluster: &str, key: &str) -> anyhow::Result<bool> {
    let hour_end = layout::hour_floor(ts) + layout::HOUR_NS;
    if hour_end > strand_schemas::clock::utc_now_ns() {
        return Ok(false);
    }
    let (date, hour) = layout::date_hour(ts);
    let (_, held) = app.coverage.unit(&app.store, &layout::unit_dir(table, &date, hour, cluster)).await?;
    Ok(layout::batch_entry(key).is_some_and(|e| held.contains_key(e)))
}

/// A checked batch whose rows cross an hour, as one file per hour (the
/// file's schema and metadata kept): `(a time in the hour, bytes)`.
fn split_by_hour(batch_id: &str, data: Bytes, time: &str, limits: &ReadLimits) -> anyhow::Result<Vec<(i64, Bytes)>> {
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    let (_, _, builder) = strand_schemas::open_builder(&format!("batch {batch_id}"), data, None, limits)?;
    let kv = builder.metadata().file_metadata().key_value_metadata().cloned();
    let schema = builder.schema().clone();
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .set_key_value_metadata(kv)
        .build();
    let mut writers: std::collections::BTreeMap<i64, ArrowWriter<Vec<u8>>> = Default::default();
    for batch in builder.with_batch_size(8192).build()? {
        let batch = batch?;
        let ts = batch
            .column_by_name(time)
            .and_then(|c| strand_schemas::table::time_values(c))
            .ok_or_else(|| anyhow::anyhow!("batch {batch_id}: no timestamp[ns] or int64 column `{time}`"))?;
        let hours: std::collections::BTreeSet<i64> = ts.iter().flatten().map(layout::hour_floor).collect();
        for h in hours {
            let mask: arrow::array::BooleanArray =
                ts.iter().map(|t| Some(t.is_some_and(|t| layout::hour_floor(t) == h))).collect();
            let part = arrow::compute::filter_record_batch(&batch, &mask)?;
            let w = match writers.entry(h) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.clone()))?)
                }
            };
            w.write(&part)?;
        }
    }
    writers.into_iter().map(|(h, w)| Ok((h, Bytes::from(w.into_inner()?)))).collect()
}

/// A required `x-strand-*` header as text.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Rejection> {
    let v = headers.get(name).ok_or_else(|| Rejection::bad("bad_header", format!("missing header {name}")))?;
    v.to_str().map_err(|_| Rejection::bad("bad_header", format!("header {name} is not visible ASCII")))
}

/// Holds part of the in-flight budget, and of its node's share, until the
/// upload is answered.
struct Reservation<'a> {
    metrics: &'a Metrics,
    per_node: Arc<Mutex<HashMap<String, u64>>>,
    source: String,
    /// Of the whole budget.
    bytes: u64,
    /// Of the node's share (the body; not the short decode).
    node_bytes: u64,
    permits: Vec<tokio::sync::OwnedSemaphorePermit>,
}

impl<'a> Reservation<'a> {
    fn take(app: &'a App, source: &str, bytes: u64) -> Result<Self, Rejection> {
        let mut r = Self {
            metrics: &app.metrics,
            per_node: app.per_node.clone(),
            source: source.to_string(),
            bytes: 0,
            node_bytes: 0,
            permits: Vec::new(),
        };
        r.grow(app, bytes, true)?;
        Ok(r)
    }

    /// Adds `bytes` to the reservation, or answers 429 when the budget has
    /// no room for them, or when this node already holds other uploads and
    /// would go past its share (a node's first upload always fits its share,
    /// so a node alone is never refused by it).
    fn grow(&mut self, app: &App, bytes: u64, share: bool) -> Result<(), Rejection> {
        let busy = |what: String| {
            Rejection::new(StatusCode::TOO_MANY_REQUESTS, "busy", format!("{what}; retry after the Retry-After delay"))
        };
        if share {
            let mut held = self.per_node.lock().map_err(|_| busy("the collector is busy".into()))?;
            let mine = held.entry(self.source.clone()).or_default();
            let others = *mine - self.node_bytes;
            if others > 0 && *mine + bytes > app.per_node_max {
                let now = *mine;
                if now == 0 {
                    held.remove(&self.source);
                }
                return Err(busy(format!(
                    "uploads of node {} hold {now} bytes in memory and this one needs {bytes} more, over the {} bytes one node may hold (collector key max_inflight_bytes_per_node)",
                    self.source, app.per_node_max
                )));
            }
            *mine += bytes;
        }
        let kib = bytes.div_ceil(1024).max(1);
        let permit = u32::try_from(kib).ok().and_then(|k| app.inflight.clone().try_acquire_many_owned(k).ok());
        let Some(permit) = permit else {
            if share {
                self.release_node(bytes);
            }
            return Err(busy("the collector is receiving as much as it may hold in memory".into()));
        };
        self.permits.push(permit);
        self.bytes += bytes;
        if share {
            self.node_bytes += bytes;
        }
        self.metrics.inflight_bytes.inc_by(bytes as i64);
        Ok(())
    }

    fn release_node(&self, bytes: u64) {
        if let Ok(mut held) = self.per_node.lock()
            && let Some(mine) = held.get_mut(&self.source)
        {
            *mine = mine.saturating_sub(bytes);
            if *mine == 0 {
                held.remove(&self.source);
            }
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.metrics.inflight_bytes.dec_by(self.bytes as i64);
        self.release_node(self.node_bytes);
    }
}

async fn read_body(
    body: Body,
    max: u64,
    declared: Option<u64>,
    timeout: Duration,
    seen: &mut Seen,
) -> Result<Bytes, Rejection> {
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(64 * 1024).min(max) as usize);
    let mut stream = body.into_data_stream();
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| Rejection::bad("body_error", format!("the body ended early or could not be read: {e}")))?;
            if (buf.len() + chunk.len()) as u64 > max {
                seen.bytes = (buf.len() + chunk.len()) as u64;
                return Err(Rejection::too_large("body".to_string(), max));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    let result = tokio::time::timeout(timeout, read).await;
    seen.bytes = seen.bytes.max(buf.len() as u64);
    match result {
        Err(_) => Err(Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the body did not arrive within {} (collector key body_timeout)",
                humantime::format_duration(timeout)
            ),
        )),
        Ok(r) => r.map(|()| buf.freeze()),
    }
}

/// Reads and discards up to `max` bytes for at most `timeout`.
async fn drain(body: Body, max: u64, timeout: Duration) {
    let mut stream = body.into_data_stream();
    let mut n = 0u64;
    let _ = tokio::time::timeout(timeout, async {
        while let Some(Ok(chunk)) = stream.next().await {
            n += chunk.len() as u64;
            if n > max {
                break;
            }
        }
    })
    .await;
}

struct Checked {
    rows: i64,
    date: String,
    min_ts: i64,
    max_ts: i64,
}

/// Step 7: the file is a complete strand file of `table`, every page decodes,
/// and every row belongs to the uploading node. CPU-bound: run it blocking.
fn check_batch(
    data: Bytes,
    table: &'static TableInfo,
    cluster: &str,
    node: &str,
    batch_id: &str,
    rows_header: Option<i64>,
    limits: &ReadLimits,
) -> Result<Checked, Rejection> {
    let name = format!("batch {batch_id}");
    let (info, _, reader) = open_reader(&name, data, Some(table.name), limits).map_err(read_rejection)?;
    if let Some(n) = rows_header.filter(|&n| n != info.rows) {
        return Err(Rejection::bad(
            "rows_mismatch",
            format!("{name}: header {} says {n} rows, the file holds {}", protocol::HEADER_ROWS, info.rows),
        ));
    }
    if info.rows == 0 {
        return Err(Rejection::bad("empty", format!("{name}: the file holds no rows")));
    }
    let decode = |e: &dyn std::fmt::Display| Rejection::bad("bad_parquet", format!("{name}: cannot decode: {e}"));
    let schema = (table.schema)();
    let time = time_column(&schema).ok_or_else(|| {
        Rejection::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("table {} has no time column", table.name),
        )
    })?;
    let mut min_ts: Option<i64> = None;
    let mut max_ts: Option<i64> = None;
    let mut row0 = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| decode(&e))?;
        for (column, expected, header) in
            [("cluster", cluster, protocol::HEADER_CLUSTER), ("node", node, protocol::HEADER_NODE)]
        {
            let nullable = schema.field_with_name(column).map(|f| f.is_nullable()).unwrap_or(true);
            check_identity(&batch, column, expected, nullable, row0).map_err(|m| {
                Rejection::bad("identity_mismatch", format!("{name}: {m}, but header {header} says {expected:?}"))
            })?;
        }
        // inspect_bytes checked the column is timestamp[ns] or int64.
        let ts = batch.column_by_name(time).and_then(|c| strand_schemas::table::time_values(c));
        let ts = ts.as_ref();
        if let Some(m) = ts.and_then(arrow::compute::min) {
            min_ts = Some(min_ts.map_or(m, |x| x.min(m)));
        }
        if let Some(m) = ts.and_then(arrow::compute::max) {
            max_ts = Some(max_ts.map_or(m, |x| x.max(m)));
        }
        if let Some(ts) = ts
            && ts.null_count() > 0
        {
            return Err(Rejection::bad("null_time", format!("{name}: a row has no value in `{time}`")));
        }
        row0 += batch.num_rows();
    }
    let min_ts = min_ts.ok_or_else(|| Rejection::bad("empty", format!("{name}: no row has a value in `{time}`")))?;
    Ok(Checked { rows: info.rows, date: utc_date(min_ts), min_ts, max_ts: max_ts.unwrap_or(min_ts) })
}

/// Every value of `column` equals `expected` (or is null, where the table allows).
fn check_identity(
    batch: &RecordBatch,
    column: &str,
    expected: &str,
    nullable: bool,
    row0: usize,
) -> Result<(), String> {
    let Some(array) = batch.column_by_name(column) else {
        return if nullable { Ok(()) } else { Err(format!("column `{column}` is missing")) };
    };
    let array = arrow::compute::cast(array, &DataType::Utf8).map_err(|e| format!("column `{column}`: {e}"))?;
    let values = array.as_string::<i32>();
    for i in 0..values.len() {
        if values.is_null(i) {
            if !nullable {
                return Err(format!("row {} has a null `{column}`", row0 + i));
            }
        } else if values.value(i) != expected {
            return Err(format!("row {} has {column} {:?}", row0 + i, values.value(i)));
        }
    }
    Ok(())
}

fn read_rejection(e: ReadError) -> Rejection {
    let reason = match &e {
        ReadError::NotParquet { .. } => "not_parquet",
        ReadError::Io { .. } | ReadError::Parquet { .. } => "bad_parquet",
        ReadError::NotStrand { .. } => "not_strand",
        ReadError::BadVersion { .. } => "bad_version",
        ReadError::NewerMajor { .. } => "newer_version",
        ReadError::WrongTable { .. } | ReadError::UnknownTable { .. } => "wrong_table",
        ReadError::Schema { .. } => "bad_schema",
        ReadError::Limit { .. } => "bad_parquet",
        ReadError::TooLarge { .. } => {
            return Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("{e} (collector key max_decoded_bytes)"),
            );
        }
    };
    Rejection::bad(reason, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_schemas::{Finding, GpuSample, Table, to_parquet_bytes};

    fn samples(node: &str, ts: &[i64]) -> Bytes {
        let rows: Vec<GpuSample> = ts
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let mut r = GpuSample::example(i as u64);
                r.cluster = "c1".into();
                r.node = node.into();
                r.ts_ns = t;
                r
            })
            .collect();
        to_parquet_bytes(&rows).unwrap().into()
    }

    fn check(data: Bytes, table: &str, rows: Option<i64>) -> Result<Checked, Rejection> {
        check_batch(data, table_info(table).unwrap(), "c1", "n1", "batch-0001", rows, &ReadLimits::default())
    }

    #[test]
    fn the_date_is_that_of_the_earliest_row_as_the_shared_rule_says() {
        let t = 1_709_251_200_000_000_000; // 2024-03-01
        let data = samples("n1", &[t + 5, t - 1, t + 7]);
        let c = check(data.clone(), "gpu_samples", Some(3)).ok().unwrap();
        assert_eq!((c.rows, c.date.as_str()), (3, "2024-02-29"));
        let batches: Vec<RecordBatch> = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(data)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(protocol::batch_date(&batches).unwrap(), Some(c.date));
    }

    #[test]
    fn every_rejection_names_the_problem() {
        let ok = samples("n1", &[1, 2]);
        let e = check(ok.clone(), "gpu_samples", Some(3)).err().unwrap();
        assert_eq!(e.reason, "rows_mismatch");
        assert!(e.message.contains("says 3 rows, the file holds 2"), "{}", e.message);
        let e = check(ok.clone(), "windows", None).err().unwrap();
        assert_eq!(e.reason, "wrong_table");
        assert!(e.message.contains("holds table `gpu_samples`, expected `windows`"), "{}", e.message);
        let e = check(samples("n2", &[1, 2]), "gpu_samples", None).err().unwrap();
        assert_eq!(e.reason, "identity_mismatch");
        assert!(e.message.contains("row 0 has node \"n2\", but header x-strand-node says \"n1\""), "{}", e.message);
        let e = check(Bytes::from_static(b"PAR1 not really PAR1"), "gpu_samples", None).err().unwrap();
        assert_eq!(e.reason, "bad_parquet");
        let e = check(Bytes::from_static(b"{\"json\": true}"), "gpu_samples", None).err().unwrap();
        assert_eq!(e.reason, "not_parquet");
        assert!(e.message.contains("batch batch-0001: not a Parquet file"), "{}", e.message);
        let e = check(to_parquet_bytes::<GpuSample>(&[]).unwrap().into(), "gpu_samples", None).err().unwrap();
        assert_eq!(e.reason, "empty");
        // A page damaged behind an intact footer is found by decoding.
        let mut bad = ok.to_vec();
        for b in &mut bad[8..200] {
            *b ^= 0x5a;
        }
        let e = check(bad.into(), "gpu_samples", None).err().unwrap();
        assert_eq!(e.reason, "bad_parquet", "{}", e.message);
    }

    #[test]
    fn a_cluster_wide_finding_may_have_no_node() {
        let mut f = Finding::example(3);
        f.cluster = "c1".into();
        f.node = None;
        let c = check(to_parquet_bytes(&[f]).unwrap().into(), "findings", Some(1));
        assert!(c.is_ok());
    }
}
