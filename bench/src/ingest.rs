//! Collector ingest throughput: N concurrent uploaders, each a node with its
//! own token, POST Parquet batches to a `strand serve` on loopback, as
//! agents do (docs/protocol.md). Prints MB/s, batches/s and latencies, and
//! checks that every batch was stored exactly once.
//!
//! ```text
//! cargo build --release -p strand-cli -p strand-bench
//! target/release/strand-ingest-bench --uploaders 100 --batches 20 --rows 8000
//! ```
//!
//! The client runs on the same machine as the collector and takes part of
//! its CPU: the figures are a lower bound for a dedicated collector.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use strand_schemas::protocol;
use strand_schemas::{GpuSample, KernelEvent, Table, to_parquet_bytes};

#[derive(Parser, Debug)]
#[command(about = "Collector ingest throughput with concurrent uploaders on loopback")]
struct Args {
    /// The strand binary; default: `strand` next to this program.
    #[arg(long)]
    strand: Option<PathBuf>,
    /// Concurrent uploaders (each one node with its own token).
    #[arg(long, default_value_t = 100)]
    uploaders: usize,
    /// Batches each uploader sends.
    #[arg(long, default_value_t = 20)]
    batches: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = 8000)]
    rows: usize,
    /// Table of the batches: gpu_samples or kernel_events.
    #[arg(long, default_value = "gpu_samples")]
    table: String,
    /// Storage root; default: a temporary directory, removed afterwards.
    #[arg(long)]
    data: Option<PathBuf>,
}

const T0: i64 = 1_709_251_200_000_000_000;

fn token(u: usize) -> String {
    format!("bench-token-{u:03}-0123456789abcdef")
}

fn node(u: usize) -> String {
    format!("bench-{u:03}")
}

fn body(table: &str, node: &str, rows: usize) -> anyhow::Result<Vec<u8>> {
    Ok(match table {
        "gpu_samples" => to_parquet_bytes(
            &(0..rows)
                .map(|i| {
                    let mut r = GpuSample::example(i as u64);
                    (r.cluster, r.node, r.ts_ns) = ("bench".into(), node.into(), T0 + i as i64 * 1_000_000);
                    r
                })
                .collect::<Vec<_>>(),
        )?,
        "kernel_events" => to_parquet_bytes(
            &(0..rows)
                .map(|i| {
                    let mut r = KernelEvent::example(i as u64);
                    (r.cluster, r.node, r.start_ns) = ("bench".into(), node.into(), T0 + i as i64 * 1000);
                    r.end_ns = r.start_ns + 500;
                    r
                })
                .collect::<Vec<_>>(),
        )?,
        other => bail!("--table {other}: use gpu_samples or kernel_events"),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let strand = match &args.strand {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("strand"),
    };
    if !strand.exists() {
        bail!("{} not found: build it (cargo build --release -p strand-cli) or pass --strand", strand.display());
    }
    let tmp = tempfile::tempdir()?;
    let data = args.data.clone().unwrap_or_else(|| tmp.path().join("data"));

    let started = Instant::now();
    let bodies: Vec<Arc<Vec<u8>>> =
        (0..args.uploaders).map(|u| body(&args.table, &node(u), args.rows).map(Arc::new)).collect::<Result<_, _>>()?;
    let batch_bytes = bodies[0].len();
    eprintln!(
        "{} batch bodies of {} rows, {} bytes each, made in {:?}",
        bodies.len(),
        args.rows,
        batch_bytes,
        started.elapsed()
    );

    let (mut server, url) = strand_bench::start_collector(
        &strand,
        tmp.path(),
        &data,
        "bench",
        (0..args.uploaders).map(|u| (node(u), token(u))),
        "strand serve",
    )?;

    let client = reqwest::Client::builder().pool_max_idle_per_host(args.uploaders).build()?;
    let begin = Instant::now();
    let tasks: Vec<_> = (0..args.uploaders)
        .map(|u| {
            let (client, url, body, n) = (client.clone(), url.clone(), bodies[u].clone(), args.batches);
            let table = args.table.clone();
            tokio::spawn(async move { upload_all(&client, &url, &table, u, n, body).await })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut retries = 0;
    for t in tasks {
        let (l, r) = t.await??;
        latencies.extend(l);
        retries += r;
    }
    let elapsed = begin.elapsed();

    // SIGTERM: the collector finishes and exits.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    server.wait()?;

    let total = args.uploaders * args.batches;
    let stored = count_parquet(&data);
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let mb = (total * batch_bytes) as f64 / 1e6;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!("machine:     {} CPU(s), {cpu}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    println!("uploaders:   {} (one node and token each), {} batches each", args.uploaders, args.batches);
    println!("batch:       {} rows of {}, {batch_bytes} bytes", args.rows, args.table);
    println!("total:       {total} batches, {mb:.1} MB in {:.2} s", elapsed.as_secs_f64());
    println!(
        "throughput:  {:.1} MB/s, {:.0} batches/s",
        mb / elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!("latency:     p50 {:?}, p99 {:?}, max {:?}", pct(0.5), pct(0.99), latencies[latencies.len() - 1]);
    println!("retries:     {retries} (429/503 answers honoured)");
    println!("stored:      {stored} files (expected {total})");
    if stored != total {
        bail!("{stored} batches stored, expected {total}");
    }
    Ok(())
}

async fn upload_all(
    client: &reqwest::Client,
    url: &str,
    table: &str,
    u: usize,
    n: usize,
    body: Arc<Vec<u8>>,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut latencies = Vec::with_capacity(n);
    let mut retries = 0;
    for i in 0..n {
        let id = format!("bench-{u:03}-{i:06}");
        loop {
            let t = Instant::now();
            let resp = client
                .post(format!("{url}{}", protocol::BATCHES_PATH))
                .bearer_auth(token(u))
                .header(protocol::HEADER_TABLE, table)
                .header(protocol::HEADER_CLUSTER, "bench")
                .header(protocol::HEADER_NODE, node(u))
                .header(protocol::HEADER_BATCH_ID, &id)
                .body(body.as_ref().clone())
                .send()
                .await?;
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let text = resp.text().await?;
            match status {
                201 => {
                    latencies.push(t.elapsed());
                    break;
                }
                429 | 503 => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1))).await;
                }
                _ => bail!("batch {id}: {status} {text}"),
            }
        }
    }
    Ok((latencies, retries))
}

fn count_parquet(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_parquet(&p) } else { usize::from(p.extension().is_some_and(|x| x == "parquet")) }
        })
        .sum()
}
