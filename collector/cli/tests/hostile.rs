//! `strand serve` under hostile input and faults, over loopback: each attack
//! that once crashed, starved or exhausted the collector ends in a clear
//! status, and the collector goes on serving everyone else.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use strand_schemas::{GpuSample, Table, hostile, to_parquet_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

/// A client whose connections come from another loopback address (another
/// "peer" for the per-address connection limit).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn connect_from(ip: [u8; 4], to: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((ip, 0))).unwrap();
    socket.connect(to.parse().unwrap()).await.unwrap()
}

/// The collector still answers `/healthz` and stores a good batch.
async fn still_serving(c: &Collector, client: &reqwest::Client, batch_id: &str) {
    let health = client.get(format!("{}/healthz", c.url)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let (status, json) = Upload::new("n2", batch_id).send(client, &c.url, batch("c1", "n2", 5, T0)).await;
    assert_eq!(status, 201, "{json}");
}

#[tokio::test]
async fn metadata_bombs_get_400_and_the_collector_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "");
    let client = client();
    for (i, (bomb, says)) in [
        (hostile::row_group_bomb(), "a list declares 2147483647 elements"),
        (hostile::schema_depth_bomb(500), "the schema nests deeper than 32 levels"),
        (hostile::footer_length(0xFFFF_FFF0), "declares 4294967280 bytes of metadata"),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, json) = Upload::new("n1", &format!("batch-bomb-{i}")).send(&client, &c.url, bomb).await;
        assert_eq!(status, 400, "{json}");
        assert_eq!(json["reason"], "bad_parquet", "{json}");
        let error = json["error"].as_str().unwrap();
        assert!(error.contains(&format!("batch batch-bomb-{i}: refused: ")) && error.contains(says), "{error}");
    }
    still_serving(&c, &client, "batch-after-bombs").await;
}

#[tokio::test]
async fn the_depth_bomb_over_h2c_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let (status, json) = Upload::new("n1", "batch-h2c-bomb").send(&h2, &c.url, hostile::schema_depth_bomb(500)).await;
    assert_eq!((status, json["reason"].as_str()), (400, Some("bad_parquet")), "{json}");
    still_serving(&c, &h2, "batch-h2c-after").await;
}

#[tokio::test]
async fn a_small_batch_holding_a_huge_value_gets_413_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    // The shape of the 45 KB batch with one 1 GiB value, scaled down 64×.
    let c = Collector::start(dir.path(), "max_decoded_bytes = 8388608");
    let big: std::sync::Arc<str> = "v".repeat(16 << 20).into();
    let rows: Vec<GpuSample> = (0..4)
        .map(|i| {
            let mut r = GpuSample::example(i);
            (r.cluster, r.node, r.ts_ns, r.gpu_name) = ("c1".into(), "n1".into(), T0 + i as i64, big.clone());
            r
        })
        .collect();
    let body = to_parquet_bytes(&rows).unwrap();
    assert!(body.len() < 64 << 10, "{}", body.len());
    let (status, json) = Upload::new("n1", "batch-big-value").send(&client(), &c.url, body).await;
    assert_eq!(status, 413, "{json}");
    assert_eq!(json["reason"], "too_large");
    let error = json["error"].as_str().unwrap();
    assert!(error.contains("too large to decode") && error.contains("max_decoded_bytes"), "{error}");
    // And a page header that lies about the column chunk is caught the same way.
    let (status, json) =
        Upload::new("n1", "batch-lying-page").send(&client(), &c.url, hostile::page_size_bomb(100, i32::MAX)).await;
    assert_eq!((status, json["reason"].as_str()), (413, Some("too_large")), "{json}");
    still_serving(&c, &client(), "batch-after-big").await;
}

#[tokio::test]
async fn slow_headers_are_cut_off_and_cannot_starve_the_collector() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "header_read_timeout = \"1s\"\nmax_connections_per_peer = 5");
    // Five connections from one address sending a header byte every 300 ms.
    let mut slow = Vec::new();
    for _ in 0..5 {
        slow.push(connect_from([127, 0, 0, 3], &c.addr).await);
    }
    // Accepted in any order: let the five be admitted first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A sixth from that address is closed at accept.
    let mut sixth = connect_from([127, 0, 0, 3], &c.addr).await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), sixth.read(&mut buf)).await.unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    let started = Instant::now();
    let head = b"POST /v1/batches HTTP/1.1\r\nHost: x\r\n";
    let mut closed = vec![false; slow.len()];
    for &b in head.iter().cycle().take(20) {
        for (s, closed) in slow.iter_mut().zip(closed.iter_mut()) {
            if !*closed && s.write_all(&[b]).await.is_err() {
                *closed = true;
            }
        }
        // Meanwhile everyone else is served.
        let health = client_from([127, 0, 0, 4]).get(format!("{}/healthz", c.url)).send().await.unwrap();
        assert_eq!(health.status().as_u16(), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Within the header timeout (and a margin) each slow connection was
    // closed: reading it ends (the timeout would panic otherwise).
    for s in &mut slow {
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut Vec::new()))
            .await
            .expect("a slow-header connection is still open");
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    let text = client().get(format!("{}/metrics", c.url)).send().await.unwrap().text().await.unwrap();
    assert!(
        text.contains("strand_collector_connections_refused_total{reason=\"max_connections_per_peer\"} 1"),
        "{text}"
    );
    still_serving(&c, &client(), "batch-after-slow").await;
}

#[tokio::test]
async fn idle_and_excess_connections_are_closed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "idle_timeout = \"1s\"\nmax_connections = 8");
    let mut held = Vec::new();
    for i in 0..8u8 {
        held.push(connect_from([127, 0, 1, i + 1], &c.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // All eight slots are taken: a ninth connection is closed at once...
    let mut ninth = connect_from([127, 0, 2, 1], &c.addr).await;
    let n = tokio::time::timeout(Duration::from_secs(5), ninth.read(&mut [0u8; 16])).await.unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // ...and the eight silent ones are closed after idle_timeout, freeing the slots.
    for s in &mut held {
        let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut [0u8; 16])).await;
        assert!(matches!(r, Ok(Ok(0) | Err(_))), "{r:?}");
    }
    still_serving(&c, &client(), "batch-after-idle").await;
}

#[tokio::test]
async fn one_nodes_slow_uploads_cannot_take_another_nodes_share() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(
        dir.path(),
        "max_body_bytes = 1000000\nmax_inflight_bytes = 4000000\nmax_inflight_bytes_per_node = 1500000\nbody_timeout = \"60s\"",
    );
    // Node n1 starts slow uploads declaring the largest body, one after another.
    let mut slow = Vec::new();
    let mut refused = 0;
    for i in 0..4 {
        let mut s = TcpStream::connect(&c.addr).await.unwrap();
        let id = format!("batch-slow-{i:04}");
        s.write_all(slow_head(&c.addr, "n1", &id, 1_000_000).as_bytes()).await.unwrap();
        s.write_all(&[0u8; 100]).await.unwrap();
        // The second and later ones are answered 429 within a second: n1 holds its share.
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(2500), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(text.starts_with("HTTP/1.1 429"), "{text}");
                assert!(text.contains("max_inflight_bytes_per_node"), "{text}");
                refused += 1;
            }
            _ => slow.push(s),
        }
    }
    assert_eq!((slow.len(), refused), (1, 3));
    // Node n2 uploads while n1's slow body is still arriving.
    let started = Instant::now();
    let (status, json) = Upload::new("n2", "batch-n2-fair").send(&client(), &c.url, batch("c1", "n2", 10, T0)).await;
    assert_eq!(status, 201, "{json}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(slow);
}

fn slow_head(addr: &str, node: &str, batch_id: &str, len: usize) -> String {
    format!(
        "POST /v1/batches HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nx-strand-table: gpu_samples\r\n\
         x-strand-cluster: c1\r\nx-strand-node: {node}\r\nx-strand-batch-id: {batch_id}\r\nContent-Length: {len}\r\n\r\n",
        token_for("c1", node)
    )
}

#[tokio::test]
async fn healthz_reports_storage_that_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "");
    let client = client();
    assert_eq!(client.get(format!("{}/healthz", c.url)).send().await.unwrap().status().as_u16(), 200);
    // The storage root disappears (an unmounted volume).
    std::fs::remove_dir_all(&c.data).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = client.get(format!("{}/healthz", c.url)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let json: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(json["status"], "unhealthy");
    assert!(json["storage"].as_str().unwrap().contains("cannot write to"), "{json}");
}

#[test]
fn the_listening_line_comes_only_after_tls_and_storage_checked_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let node = format!(
        "[[nodes]]\ncluster = \"c1\"\nnode = \"n1\"\ntoken_sha256 = \"{}\"\n",
        sha256_hex(&token_for("c1", "n1"))
    );
    let bad_cert = dir.path().join("bad.crt");
    std::fs::write(&bad_cert, "not a certificate").unwrap();
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n[tls]\ncert = {bad_cert:?}\nkey = {bad_cert:?}\n{node}",
            dir.path().join("d")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(STRAND)
        .args(["serve", "--config"])
        .arg(&config)
        .env("STRAND_LOG", "info")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("tls.cert") && !err.contains("listening on"), "{err}");

    // Storage that cannot be written: the root is a file.
    let file_root = dir.path().join("a-file");
    std::fs::write(&file_root, "x").unwrap();
    std::fs::write(&config, format!("listen = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n{node}", file_root.join("sub")))
        .unwrap();
    let out = std::process::Command::new(STRAND)
        .args(["serve", "--config"])
        .arg(&config)
        .env("STRAND_LOG", "info")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("storage.root") && !err.contains("listening on"), "{err}");
}
