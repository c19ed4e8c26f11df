//! `strand serve` end to end over loopback: what an agent (or another
//! client written from docs/protocol.md) can rely on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use common::*;
use parquet::arrow::ArrowWriter;
use strand_schemas::parquet_io::writer_properties;
use strand_schemas::{GpuSample, SchemaVersion, Table};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn client() -> reqwest::Client {
    // reqwest is built without a TLS provider of its own (as in the agent).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn parquet_files(c: &Collector) -> Vec<String> {
    files_under(&c.data).into_iter().filter(|f| f.ends_with(".parquet")).collect()
}

/// Request head of an upload, for raw-socket tests.
fn upload_head(addr: &str, node: &str, batch_id: &str, content_length: Option<usize>) -> String {
    let length = match content_length {
        Some(n) => format!("Content-Length: {n}\r\n"),
        None => "Transfer-Encoding: chunked\r\n".to_string(),
    };
    format!(
        "POST /v1/batches HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nx-strand-table: gpu_samples\r\n\
         x-strand-cluster: c1\r\nx-strand-node: {node}\r\nx-strand-batch-id: {batch_id}\r\n{length}\r\n",
        token_for("c1", node)
    )
}

async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Polls `/metrics` until the unlabelled metric `name` satisfies `ok`.
async fn wait_for_metric(c: &Collector, name: &str, ok: impl Fn(f64) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = client().get(format!("{}/metrics", c.url)).send().await.unwrap().text().await.unwrap();
        let value = text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok());
        if value.is_some_and(&ok) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{name} = {value:?} after 10s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_batch_is_stored_once_in_hive_layout_and_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "");
    let body = batch("c1", "n1", 100, T0 + 5);

    let (status, json) = Upload::new("n1", "batch-000001").send(&client(), &c.url, body.clone()).await;
    assert_eq!(status, 201, "{json}");
    assert_eq!(json["status"], "stored");
    assert_eq!(json["rows"], 100);
    let key = "_landing/gpu_samples/date=2024-03-01/hour=00/cluster_dir=c1/node_dir=n1/batch-000001.parquet";
    assert_eq!(json["key"], key);
    assert_eq!(std::fs::read(c.data.join(key)).unwrap(), body, "the stored file is the uploaded file");

    // The same batch again (an agent that never saw the answer): 200, nothing new.
    let (status, json) = Upload::new("n1", "batch-000001").send(&client(), &c.url, body).await;
    assert_eq!((status, json["status"].as_str()), (200, Some("duplicate")), "{json}");
    assert_eq!(files_under(&c.data), [key]);

    assert_eq!(query_value(&c.data, "SELECT count(*) FROM gpu_samples"), "100");
    let (ok, out, _) = query(&c.data, "SELECT DISTINCT date, cluster, node FROM gpu_samples");
    assert!(ok);
    assert_eq!(out, "date,cluster,node\n2024-03-01,c1,n1\n");
}

#[tokio::test]
async fn concurrent_uploads_of_one_batch_id_store_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "");
    let body = batch("c1", "n2", 1000, T0);
    let client = client();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (client, url, body) = (client.clone(), c.url.clone(), body.clone());
            tokio::spawn(async move { Upload::new("n2", "batch-concurrent").send(&client, &url, body).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 11, "{statuses:?}");
    assert_eq!(files_under(&c.data).len(), 1, "{:?}", files_under(&c.data));
    assert_eq!(query_value(&c.data, "SELECT count(*) FROM gpu_samples"), "1000");
}

#[tokio::test]
async fn missing_wrong_or_foreign_tokens_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "");
    let client = client();
    let body = batch("c1", "n1", 10, T0);

    let mut u = Upload::new("n1", "batch-000001");
    u.token = None;
    let (status, json) = u.send(&client, &c.url, body.clone()).await;
    assert_eq!((status, json["reason"].as_str()), (401, Some("unauthorized")), "{json}");
    assert!(json["error"].as_str().unwrap().contains("missing Authorization header"), "{json}");

    u.token = Some("not-a-token-of-anyone".into());
    let (status, json) = u.send(&client, &c.url, body.clone()).await;
    assert_eq!(status, 401, "{json}");
    assert_eq!(json["error"], "unknown token");

    // A valid token of node n2 uploading as n1.
    u.token = Some(token_for("c1", "n2"));
    let (status, json) = u.send(&client, &c.url, body.clone()).await;
    assert_eq!((status, json["reason"].as_str()), (403, Some("forbidden")), "{json}");

    // The challenge header of 401, and a garbled Authorization header.
    let resp = client
        .post(format!("{}/v1/batches", c.url))
        .header("authorization", "Basic bjE6cGFzcw==")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let challenge = resp.headers().get("www-authenticate").unwrap().to_str().unwrap().to_string();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(resp.text().await.unwrap().contains("is not `Bearer <token>`"));

    assert!(files_under(&c.data).is_empty(), "{:?}", files_under(&c.data));
}

/// A gpu_samples file written with another version or a column of the wrong type.
fn odd_file(version: SchemaVersion, wrong_type: bool) -> Vec<u8> {
    let rows: Vec<GpuSample> = (0..5)
        .map(|i| {
            let mut r = GpuSample::example(i);
            r.cluster = "c1".into();
            r.node = "n1".into();
            r
        })
        .collect();
    let mut batch = GpuSample::to_batch(&rows);
    if wrong_type {
        let schema = batch.schema();
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| {
                if f.name() == "gpu_index" {
                    Field::new("gpu_index", DataType::Utf8, false)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect();
        let mut columns = batch.columns().to_vec();
        let idx = schema.index_of("gpu_index").unwrap();
        columns[idx] = Arc::new(StringArray::from(vec!["0"; 5]));
        batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    }
    let props = writer_properties(&batch.schema(), "gpu_samples", version);
    let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.into_inner().unwrap()
}

#[tokio::test]
async fn bad_files_get_400_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "");
    let client = client();
    let good = batch("c1", "n1", 50, T0);
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("gpu_samples", b"{\"rows\": []}".to_vec(), "not_parquet", "not a Parquet file"),
        ("gpu_samples", good[..good.len() / 2].to_vec(), "not_parquet", "not a Parquet file"),
        // Footer intact, half the data cut out: the bounded reader finds the
        // column chunks pointing past the data before decoding anything.
        ("gpu_samples", [&good[..20], &good[good.len() / 2..]].concat(), "bad_parquet", "lies outside the file's data"),
        ("windows", good.clone(), "wrong_table", "holds table `gpu_samples`, expected `windows`"),
        (
            "gpu_samples",
            odd_file(SchemaVersion::new(3, 0), false),
            "newer_version",
            "schema version 3.0, newer than version 2.0",
        ),
        (
            "gpu_samples",
            odd_file(SchemaVersion::new(1, 0), true),
            "bad_schema",
            "column `gpu_index` has type Utf8, expected Int32",
        ),
        (
            "gpu_samples",
            batch("c1", "n2", 3, T0),
            "identity_mismatch",
            "row 0 has node \"n2\", but header x-strand-node says \"n1\"",
        ),
        ("kernel_traces", good.clone(), "unknown_table", "unknown table \"kernel_traces\""),
    ];
    for (i, (table, body, reason, message)) in cases.into_iter().enumerate() {
        let id = format!("batch-bad-{i:03}");
        let mut u = Upload::new("n1", &id);
        u.table = table;
        let (status, json) = u.send(&client, &c.url, body).await;
        assert_eq!((status, json["reason"].as_str()), (400, Some(reason)), "case {i}: {json}");
        assert!(json["error"].as_str().unwrap().contains(message), "case {i}: {json}");
    }
    assert!(files_under(&c.data).is_empty(), "{:?}", files_under(&c.data));
    // A minor version this build does not know yet is fine (it only adds nullable columns).
    let (status, json) =
        Upload::new("n1", "batch-minor-1").send(&client, &c.url, odd_file(SchemaVersion::new(2, 7), false)).await;
    assert_eq!(status, 201, "{json}");
}

#[tokio::test]
async fn names_that_could_leave_the_storage_root_get_400() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "");
    let client = client();
    let body = batch("c1", "n1", 5, T0);
    for (cluster, node, id, reason) in [
        ("c1", "../n1", "batch-000001", "bad_name"),
        ("c1", "a/b", "batch-000001", "bad_name"),
        ("c1", "..", "batch-000001", "bad_name"),
        ("../../etc", "n1", "batch-000001", "bad_name"),
        ("c1", "n1", "../../../../x", "bad_batch_id"),
        ("c1", "n1", "a/b/c/d/e/f", "bad_batch_id"),
    ] {
        let mut u = Upload::new("n1", id);
        (u.cluster, u.node) = (cluster, node);
        let (status, json) = u.send(&client, &c.url, body.clone()).await;
        assert_eq!((status, json["reason"].as_str()), (400, Some(reason)), "{cluster} {node} {id}: {json}");
    }
    assert!(files_under(dir.path()).iter().all(|f| f == "collector.toml"), "{:?}", files_under(dir.path()));
}

#[tokio::test]
async fn oversized_bodies_get_413_before_or_while_reading() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "max_body_bytes = 100000");

    // Declared too large: answered from the headers alone, nothing sent.
    let mut s = TcpStream::connect(&c.addr).await.unwrap();
    s.write_all(upload_head(&c.addr, "n1", "batch-big-001", Some(5_000_000)).as_bytes()).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("exceeds the limit of 100000 bytes"), "{resp}");

    // Undeclared (chunked) and too large: refused once the limit is passed.
    let mut s = TcpStream::connect(&c.addr).await.unwrap();
    s.write_all(upload_head(&c.addr, "n1", "batch-big-002", None).as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 50_000];
    for _ in 0..3 {
        let _ = s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await;
        let _ = s.write_all(&chunk).await;
        let _ = s.write_all(b"\r\n").await;
    }
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");

    // With reqwest too, as an agent would see it.
    let (status, json) = Upload::new("n1", "batch-big-003").send(&client(), &c.url, vec![0u8; 200_000]).await;
    assert_eq!(status, 413, "{json}");
    assert!(files_under(&c.data).is_empty());
}

/// The "collector killed mid-ingest": a large body is streamed
/// slowly, the collector is SIGKILLed half-way, restarted, and the agent's
/// retry stores the batch exactly once.
#[tokio::test]
async fn collector_killed_mid_ingest_leaves_nothing_visible_and_the_retry_stores_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start(dir.path(), "");
    let body = batch("c1", "n1", 20_000, T0);
    assert!(body.len() > 1_000_000, "{} bytes", body.len());

    let mut s = TcpStream::connect(&c.addr).await.unwrap();
    s.write_all(upload_head(&c.addr, "n1", "batch-killed-01", Some(body.len())).as_bytes()).await.unwrap();
    let half = body.len() / 2;
    for part in body[..half].chunks(64 * 1024) {
        s.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.kill();
    assert!(read_response(&mut s).await.is_empty(), "no answer may come from a killed collector");

    assert!(parquet_files(&c).is_empty(), "{:?}", files_under(&c.data));
    assert_eq!(query_value(&c.data, "SELECT count(*) FROM gpu_samples"), "0");

    // A crash inside the write itself leaves at most a staging file, hidden
    // in `_staging/` (`.<pid>-<n>.tmp`): it must stay invisible to queries
    // and to `*.parquet` globs, and a restart removes it once it is an hour old.
    let staging = c.data.join("_staging/.4242-0.tmp");
    std::fs::create_dir_all(staging.parent().unwrap()).unwrap();
    std::fs::write(&staging, &body[..half]).unwrap();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    std::fs::File::options().write(true).open(&staging).unwrap().set_modified(hour_ago).unwrap();
    assert_eq!(query_value(&c.data, "SELECT count(*) FROM gpu_samples"), "0");

    let c2 = Collector::start_with_config(&c.config, &c.data);
    assert!(!staging.exists(), "the restart must remove the partial file");
    let (status, json) = Upload::new("n1", "batch-killed-01").send(&client(), &c2.url, body.clone()).await;
    assert_eq!(status, 201, "{json}");
    let (status, _) = Upload::new("n1", "batch-killed-01").send(&client(), &c2.url, body).await;
    assert_eq!(status, 200);
    // 20 000 rows a second apart: one landed file per hour they cover.
    let files = files_under(&c2.data);
    let hours: Vec<String> = (0..6)
        .map(|h| {
            format!(
                "_landing/gpu_samples/date=2024-03-01/hour={h:02}/cluster_dir=c1/node_dir=n1/batch-killed-01.parquet"
            )
        })
        .collect();
    assert_eq!(files, hours);
    assert_eq!(query_value(&c2.data, "SELECT count(*) FROM gpu_samples"), "20000");
    assert_eq!(query_value(&c2.data, "SELECT count(DISTINCT ts_ns) FROM gpu_samples"), "20000");
}

#[tokio::test]
async fn sigterm_lets_an_upload_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start(dir.path(), "");
    let body = batch("c1", "n1", 1000, T0);
    let mut s = TcpStream::connect(&c.addr).await.unwrap();
    s.write_all(upload_head(&c.addr, "n1", "batch-graceful", Some(body.len())).as_bytes()).await.unwrap();
    s.write_all(&body[..body.len() / 2]).await.unwrap();
    wait_for_metric(&c, "strand_collector_inflight_bytes", |v| v > 0.0).await;
    c.signal(libc::SIGTERM);
    // New connections are refused...
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&c.addr).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "still accepting 10s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...the one in flight completes.
    s.write_all(&body[body.len() / 2..]).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    drop(s);
    let status = tokio::task::spawn_blocking(move || {
        let status = c.child.wait().unwrap();
        (status, c)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status:?}");
    assert_eq!(query_value(&dir.path().join("data"), "SELECT count(*) FROM gpu_samples"), "1000");
}

#[tokio::test]
async fn a_full_memory_budget_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let c =
        Collector::start(dir.path(), "max_body_bytes = 1000000\nmax_inflight_bytes = 1500000\nretry_after_secs = 7");
    // One slow upload holds 1 MB of the 1.5 MB budget...
    let mut slow = TcpStream::connect(&c.addr).await.unwrap();
    slow.write_all(upload_head(&c.addr, "n1", "batch-slow-001", Some(1_000_000)).as_bytes()).await.unwrap();
    slow.write_all(&[0u8; 1000]).await.unwrap();
    wait_for_metric(&c, "strand_collector_inflight_bytes", |v| v > 0.0).await;
    // ...so another of 1 MB must wait.
    let resp = client()
        .post(format!("{}/v1/batches", c.url))
        .bearer_auth(token_for("c1", "n2"))
        .header("x-strand-table", "gpu_samples")
        .header("x-strand-cluster", "c1")
        .header("x-strand-node", "n2")
        .header("x-strand-batch-id", "batch-waits-01")
        .body(vec![0u8; 900_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "7");
    drop(slow);
    // Once the slow one is gone, the budget is free again.
    wait_for_metric(&c, "strand_collector_inflight_bytes", |v| v == 0.0).await;
    let (status, json) = Upload::new("n2", "batch-waits-01").send(&client(), &c.url, batch("c1", "n2", 10, T0)).await;
    assert_eq!(status, 201, "{json}");
}

#[tokio::test]
async fn a_body_that_stalls_gets_408() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "body_timeout = \"500ms\"");
    let mut s = TcpStream::connect(&c.addr).await.unwrap();
    s.write_all(upload_head(&c.addr, "n1", "batch-stalls-1", Some(10_000)).as_bytes()).await.unwrap();
    s.write_all(&[0u8; 100]).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(resp.contains("body_timeout"), "{resp}");
}

#[tokio::test]
async fn metrics_count_every_outcome_and_healthz_answers() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "");
    let client = client();
    let body = batch("c1", "n1", 7, T0);
    Upload::new("n1", "batch-metrics-1").send(&client, &c.url, body.clone()).await;
    Upload::new("n1", "batch-metrics-1").send(&client, &c.url, body.clone()).await;
    Upload::new("n1", "batch-metrics-2").send(&client, &c.url, b"nope".to_vec()).await;

    let health: serde_json::Value =
        serde_json::from_str(&client.get(format!("{}/healthz", c.url)).send().await.unwrap().text().await.unwrap())
            .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["max_body_bytes"], 64 << 20);

    let text = client.get(format!("{}/metrics", c.url)).send().await.unwrap().text().await.unwrap();
    for line in [
        "strand_collector_batches_total{table=\"gpu_samples\",outcome=\"stored\",reason=\"\"} 1",
        "strand_collector_batches_total{table=\"gpu_samples\",outcome=\"duplicate\",reason=\"\"} 1",
        "strand_collector_batches_total{table=\"gpu_samples\",outcome=\"rejected\",reason=\"not_parquet\"} 1",
        "strand_collector_rows_total{table=\"gpu_samples\"} 7",
        &format!("strand_collector_bytes_total{{table=\"gpu_samples\",outcome=\"stored\"}} {}", body.len()),
        "strand_collector_request_duration_seconds_count{outcome=\"stored\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn uploads_over_tls_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let extra =
        format!("[tls]\ncert = {:?}\nkey = {:?}\n", fixtures.join("localhost.crt"), fixtures.join("localhost.key"));
    let c = Collector::start(dir.path(), &extra);
    assert!(c.url.starts_with("https://"), "{}", c.url);
    let port = c.addr.rsplit(':').next().unwrap();
    let cert = reqwest::Certificate::from_pem(&std::fs::read(fixtures.join("localhost.crt")).unwrap()).unwrap();
    let _ = client();
    let tls_client = reqwest::Client::builder().tls_certs_only([cert]).build().unwrap();
    let (status, json) = Upload::new("n1", "batch-over-tls")
        .send(&tls_client, &format!("https://localhost:{port}"), batch("c1", "n1", 3, T0))
        .await;
    assert_eq!(status, 201, "{json}");
    // Plain HTTP to a TLS port gets no answer.
    assert!(client().get(format!("http://{}/healthz", c.addr)).send().await.is_err());
}

#[test]
fn config_errors_stop_the_start_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[[nodes]]\ncluster = \"c1\"\nnode = \"n1\"\ntoken_sha256 = \"abc\"\n").unwrap();
    let out = std::process::Command::new(STRAND).args(["serve", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.toml: key `nodes[0].token_sha256`: expected 64 hex digits"), "{err}");

    let missing = dir.path().join("missing.toml");
    let out = std::process::Command::new(STRAND).args(["serve", "--config"]).arg(&missing).output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("missing.toml: cannot read"), "{err}");
}
