//! A fleet of agents against one collector on loopback: each agent a node
//! with its own token and its own source address (127.1.x.y, as 1,000 hosts
//! would be 1,000 peers), uploading one batch per table per minute at its
//! own phase of the minute, as `strand-agent` does (docs/protocol.md). Then
//! a burst: every agent uploads at the same instant. Reports upload
//! latency, the collector's peak RSS and CPU, and checks in the store that
//! every batch was kept exactly once (no batch lost, no row twice).
//!
//! ```text
//! cargo build --release -p strand-bench -p strand-cli --no-default-features --features service
//! target/release/strand-load-bench --agents 1000 --minutes 3
//! ```
//!
//! The agents run on the same machine as the collector and take part of its
//! CPU. The process raises its open-file soft limit to the hard limit (the
//! collector inherits it): 1,000 agents hold 1,000 connections on each side.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use bytes::Bytes;
use clap::Parser;
use strand_schemas::protocol;
use strand_schemas::{GpuSample, KernelEvent, NcclCall, ReadLimits, Table, open_file_with, to_parquet_bytes};

#[derive(Parser, Debug)]
#[command(about = "1,000 agents at their real upload rate, then all at once, against one collector on loopback")]
struct Args {
    /// The collector binary; default: `strand-collector` next to this program.
    #[arg(long)]
    collector: Option<PathBuf>,
    /// Simulated agents (each one node with its own token and address).
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Minutes of uploads at the real rate before the burst.
    #[arg(long, default_value_t = 3)]
    minutes: u32,
    /// Seconds in a simulated minute (60: real time; less compresses time
    /// and raises the rate by the same factor).
    #[arg(long, default_value_t = 60.0)]
    minute_secs: f64,
    /// `gpu_samples` rows an agent uploads a minute (8 GPUs sampled each second).
    #[arg(long, default_value_t = 480)]
    gpu_rows: usize,
    /// `kernel_events` rows a minute.
    #[arg(long, default_value_t = 2000)]
    kernel_rows: usize,
    /// `nccl_calls` rows a minute.
    #[arg(long, default_value_t = 200)]
    nccl_rows: usize,
    /// Storage root; default: a temporary directory, removed afterwards.
    #[arg(long)]
    data: Option<PathBuf>,
}

const CLUSTER: &str = "load";
const TABLES: [&str; 3] = ["gpu_samples", "kernel_events", "nccl_calls"];

fn token(a: usize) -> String {
    format!("load-token-{a:04}-0123456789abcdef")
}

fn node(a: usize) -> String {
    format!("load-{a:04}")
}

/// Agent `a`'s source address: its own peer, as a separate host would be.
fn address(a: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1, (a / 200) as u8, (a % 200 + 1) as u8))
}

/// One minute of agent `a`'s rows of each table, as Parquet.
fn bodies(args: &Args, a: usize, t0: i64) -> anyhow::Result<[Bytes; 3]> {
    let n: Arc<str> = node(a).into();
    let c: Arc<str> = CLUSTER.into();
    let gpu: Vec<GpuSample> = (0..args.gpu_rows)
        .map(|i| {
            let mut r = GpuSample::example(i as u64);
            (r.cluster, r.node, r.ts_ns) = (c.clone(), n.clone(), t0 + i as i64 * 125_000_000);
            r
        })
        .collect();
    let kernels: Vec<KernelEvent> = (0..args.kernel_rows)
        .map(|i| {
            let mut r = KernelEvent::example(i as u64);
            (r.cluster, r.node, r.start_ns) = (c.clone(), n.clone(), t0 + i as i64 * 20_000_000);
            r.end_ns = r.start_ns + 500_000;
            r
        })
        .collect();
    let nccl: Vec<NcclCall> = (0..args.nccl_rows)
        .map(|i| {
            let mut r = NcclCall::example(i as u64);
            (r.cluster, r.node, r.enter_ns) = (c.clone(), n.clone(), t0 + i as i64 * 200_000_000);
            r.exit_ns = Some(r.enter_ns + 1_000_000);
            r
        })
        .collect();
    Ok([to_parquet_bytes(&gpu)?.into(), to_parquet_bytes(&kernels)?.into(), to_parquet_bytes(&nccl)?.into()])
}

/// Raises the open-file soft limit to the hard limit; returns it.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// The collector's CPU time so far (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name `(…)`: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().filter_map(|s| s.parse().ok()).collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks = f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / hz)
}

/// A `/proc/<pid>/status` value in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim_start_matches(':').split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Outcome {
    /// Each stored batch: the answered attempt's latency.
    latencies: Vec<Duration>,
    /// Each stored batch: from its first attempt to its answer (retries included).
    batch_latencies: Vec<Duration>,
    retries_busy: u64,
    retries_error: u64,
}

impl Outcome {
    fn merge(&mut self, o: Outcome) {
        self.latencies.extend(o.latencies);
        self.batch_latencies.extend(o.batch_latencies);
        self.retries_busy += o.retries_busy;
        self.retries_error += o.retries_error;
    }

    fn report(&mut self, label: &str, wall: Duration, cpu: Duration) {
        self.latencies.sort();
        self.batch_latencies.sort();
        let pct = |v: &[Duration], p: f64| v[((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1))];
        let (l, b) = (&self.latencies, &self.batch_latencies);
        if l.is_empty() {
            println!("{label}: no batch stored");
            return;
        }
        println!(
            "{label}: {} batches in {:.1} s; upload latency p50 {:?} p99 {:?} max {:?}; \
             with retries p99 {:?} max {:?}; retries {} busy (429/503), {} errors; collector CPU {:.1} s ({:.0}% of a core)",
            l.len(),
            wall.as_secs_f64(),
            pct(l, 0.5),
            pct(l, 0.99),
            l[l.len() - 1],
            pct(b, 0.99),
            b[b.len() - 1],
            self.retries_busy,
            self.retries_error,
            cpu.as_secs_f64(),
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
        );
    }
}

/// Uploads one batch as an agent does: again on a connection error (same
/// batch id, so the collector keeps it once) and after `Retry-After` on 429/503.
async fn upload(
    client: &reqwest::Client,
    url: &str,
    a: usize,
    table: &str,
    id: &str,
    body: &Bytes,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let first = Instant::now();
    for _ in 0..100 {
        let t = Instant::now();
        let sent = client
            .post(format!("{url}{}", protocol::BATCHES_PATH))
            .bearer_auth(token(a))
            .header(protocol::HEADER_TABLE, table)
            .header(protocol::HEADER_CLUSTER, CLUSTER)
            .header(protocol::HEADER_NODE, node(a))
            .header(protocol::HEADER_BATCH_ID, id)
            .body(body.clone())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                if out.retries_error < 3 {
                    eprintln!("agent {a} batch {id}: {e}; again in 1 s");
                }
                out.retries_error += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let text = resp.text().await.unwrap_or_default();
        match status {
            200 | 201 => {
                out.latencies.push(t.elapsed());
                out.batch_latencies.push(first.elapsed());
                return Ok(());
            }
            429 | 503 => {
                out.retries_busy += 1;
                tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1))).await;
            }
            _ => bail!("agent {a} batch {id}: {status} {text}"),
        }
    }
    bail!("agent {a} batch {id}: not stored after 100 attempts")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nofile = raise_nofile();
    if (nofile as usize) < 2 * args.agents + 100 {
        bail!("open-file limit {nofile} is too low for {} agents: raise it (ulimit -Hn)", args.agents);
    }
    let collector = match &args.collector {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("strand-collector"),
    };
    if !collector.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p strand-cli --no-default-features --features service) or pass --collector",
            collector.display()
        );
    }
    let tmp = tempfile::tempdir()?;
    let data = args.data.clone().unwrap_or_else(|| tmp.path().join("data"));

    // Rows of the last minute, as an agent uploads them.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let t0 = now - 60_000_000_000;
    let made = Instant::now();
    let all: Vec<[Bytes; 3]> = (0..args.agents).map(|a| bodies(&args, a, t0)).collect::<Result<_, _>>()?;
    let sizes: Vec<usize> = all[0].iter().map(Bytes::len).collect();
    eprintln!("{} agents' batches made in {:?}; sizes {sizes:?} bytes", args.agents, made.elapsed());

    let (mut server, url) = strand_bench::start_collector(
        &collector,
        tmp.path(),
        &data,
        CLUSTER,
        (0..args.agents).map(|a| (node(a), token(a))),
        "collector",
    )?;
    let pid = server.id();
    let url = Arc::new(url);

    // The collector's RSS, sampled (VmHWM gives the peak at the end too).
    let done = Arc::new(AtomicBool::new(false));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak_rss.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(status_kib(pid, "VmRSS"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let clients: Vec<reqwest::Client> = (0..args.agents)
        .map(|a| reqwest::Client::builder().local_address(address(a)).timeout(Duration::from_secs(120)).build())
        .collect::<Result<_, _>>()?;
    let bodies = Arc::new(all);

    // Steady: each agent uploads its tables once a minute at its own phase.
    let minute = Duration::from_secs_f64(args.minute_secs);
    let (cpu0, begin) = (cpu_time(pid), Instant::now());
    let tasks: Vec<_> = (0..args.agents)
        .map(|a| {
            let (client, url, bodies, minutes) = (clients[a].clone(), url.clone(), bodies.clone(), args.minutes);
            // Phases spread evenly over the minute, in a scrambled order.
            let phase = minute.mul_f64(((a * 7919) % args.agents) as f64 / args.agents as f64);
            tokio::spawn(async move {
                let mut out = Outcome::default();
                for m in 0..minutes {
                    tokio::time::sleep_until((begin + phase + minute * m).into()).await;
                    for (t, table) in TABLES.iter().enumerate() {
                        let id = format!("{}-m{m:03}-{table}", node(a));
                        upload(&client, &url, a, table, &id, &bodies[a][t], &mut out).await?;
                    }
                }
                anyhow::Ok(out)
            })
        })
        .collect();
    let mut steady = Outcome::default();
    for t in tasks {
        steady.merge(t.await??);
    }
    let (steady_wall, steady_cpu) = (begin.elapsed(), cpu_time(pid) - cpu0);
    let steady_rss = peak_rss.load(Ordering::Relaxed);

    // Burst: every agent at the same instant.
    let (cpu0, begin) = (cpu_time(pid), Instant::now());
    let at = begin + Duration::from_millis(500);
    let tasks: Vec<_> = (0..args.agents)
        .map(|a| {
            let (client, url, bodies) = (clients[a].clone(), url.clone(), bodies.clone());
            tokio::spawn(async move {
                let mut out = Outcome::default();
                tokio::time::sleep_until(at.into()).await;
                for (t, table) in TABLES.iter().enumerate() {
                    let id = format!("{}-burst-{table}", node(a));
                    upload(&client, &url, a, table, &id, &bodies[a][t], &mut out).await?;
                }
                anyhow::Ok(out)
            })
        })
        .collect();
    let mut burst = Outcome::default();
    for t in tasks {
        burst.merge(t.await??);
    }
    let (burst_wall, burst_cpu) = (begin.elapsed(), cpu_time(pid) - cpu0);
    let hwm = status_kib(pid, "VmHWM");
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    drop(clients);

    // SIGTERM: the collector finishes and exits.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    server.wait()?;

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!("machine: {} CPU(s), {cpu}; open-file limit {nofile}", std::thread::available_parallelism()?.get());
    println!(
        "agents: {} (one node, token and source address each); tables {TABLES:?}, rows a minute {:?}, bytes {sizes:?}",
        args.agents,
        [args.gpu_rows, args.kernel_rows, args.nccl_rows]
    );
    println!(
        "steady: {} minutes of {} s; {:.1} batches/s offered",
        args.minutes,
        args.minute_secs,
        (args.agents * TABLES.len()) as f64 / args.minute_secs
    );
    steady.report("steady", steady_wall, steady_cpu);
    burst.report("burst", burst_wall, burst_cpu);
    println!(
        "collector peak RSS: {:.1} MiB (VmHWM), {:.1} MiB sampled during the steady phase",
        hwm as f64 / 1024.0,
        steady_rss as f64 / 1024.0
    );

    let expected = args.agents * TABLES.len() * (args.minutes as usize + 1);
    let rows_of = |table: &str| match table {
        "gpu_samples" => args.gpu_rows,
        "kernel_events" => args.kernel_rows,
        _ => args.nccl_rows,
    } as i64;
    let stored = stored_rows(&data)?;
    let mut lost = 0;
    for a in 0..args.agents {
        for table in TABLES {
            let ids = (0..args.minutes).map(|m| format!("m{m:03}")).chain(["burst".to_string()]);
            for id in ids {
                let key = (table.to_string(), node(a), format!("{}-{id}-{table}", node(a)));
                if stored.get(&key).copied().unwrap_or(0) == 0 {
                    lost += 1;
                }
            }
        }
    }
    let duplicated = stored.iter().filter(|((t, _, _), rows)| **rows != rows_of(t)).count();
    let unexpected = stored.len() + lost - expected;
    println!(
        "store: {} batches stored of {expected} sent; {lost} lost; {duplicated} with rows other than sent (duplicated or cut); {unexpected} unknown",
        stored.len()
    );
    if lost + duplicated + unexpected > 0 {
        bail!("the store does not hold every batch exactly once");
    }
    Ok(())
}

/// Rows stored per landed batch: (table, node, batch id) → rows, summing
/// the pieces of a batch the collector split at an hour.
fn stored_rows(root: &Path) -> anyhow::Result<HashMap<(String, String, String), i64>> {
    let mut out = HashMap::new();
    let landing = root.join(strand_schemas::layout::LANDING);
    let mut stack = vec![landing.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "parquet") {
                continue;
            }
            let rel = p.strip_prefix(&landing)?.to_string_lossy().to_string();
            let table = rel.split('/').next().unwrap_or_default().to_string();
            let node = strand_schemas::layout::partition(&rel, strand_schemas::layout::NODE_KEY)
                .unwrap_or_default()
                .to_string();
            let id = p.file_stem().unwrap_or_default().to_string_lossy().to_string();
            let (info, _, _) = open_file_with(&p, &table, &ReadLimits::default())?;
            *out.entry((table, node, id)).or_insert(0) += info.rows;
        }
    }
    Ok(out)
}
