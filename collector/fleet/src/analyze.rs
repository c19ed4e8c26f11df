//! Fleet analysis (issue 8): exact cross-node sync stalls, the ai.01 and
//! ai.17 findings, and the GPU-time accounting behind `strand report
//! stranded`.
//!
//! | figure | where |
//! |---|---|
//! | exact sync stall per rank (DESIGN §4, across nodes) | [`stalls`] → table `collective_stalls` |
//! | GPU-hours powered / held / busy / compute / ghost / idle per GPU × job × bucket | `collector/sql/gpu_time.sql`, rolled up in `report` |
//! | straggler, bus_bandwidth_collapse, link_errors, exposed_communication, topology_stranded (ai.01) | [`ai01`] |
//! | checkpoint_cost, restart, wasted_progress, goodput, recovery_collapse (ai.17) | [`ai17`] |
//! | thresholds | [`findings::Thresholds`], docs/findings.md |
//!
//! Big data stays in the engine: the SQL in `collector/sql/` reduces the
//! dataset to per-GPU, per-node, per-job and per-communicator rows, and only
//! those come into Rust. The stall pass streams one hour at a time.

pub mod ai01;
pub mod ai17;
pub mod findings;
pub mod sim;
pub mod sql;
pub mod stalls;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{Expr, SessionConfig, SessionContext, col, lit};
use strand_kernels::Reducer;
use strand_schemas::protocol::{batch_path, utc_date};
use strand_schemas::{CollectiveStall, Finding, Table};

use crate::dataset::{Dataset, TimeRange};
use findings::{Draft, Thresholds};
use sql::{Rows, SqlParams};
use stalls::{StallOptions, StallStats};

/// What to analyze and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Dataset location (directory, file:// or s3://).
    pub data: String,
    pub range: TimeRange,
    pub clusters: Vec<String>,
    pub nodes: Vec<String>,
    pub jobs: Vec<String>,
    pub params: SqlParams,
    pub thresholds: Thresholds,
    pub stall: StallOptions,
    /// Write `collective_stalls` and `findings` into the dataset (local directory only).
    pub store: bool,
    /// DataFusion memory pool; beyond it sorts and aggregations spill to disk.
    pub memory_limit: Option<usize>,
    /// Write every report query's result as JSON lines here (engine comparison).
    pub dump_dir: Option<PathBuf>,
    /// Time the findings are stamped with.
    pub created_ns: i64,
}

/// Everything the report needs.
pub struct Analysis {
    pub stall_stats: StallStats,
    pub gpu_time: Rows,
    pub topology: ai01::Topology,
    pub jobs: Vec<ai17::JobRecovery>,
    pub findings: Vec<Finding>,
    /// (query, rows, seconds)
    pub timings: Vec<(String, usize, f64)>,
}

/// A progress callback: (stage, done, total).
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

pub async fn analyze(opts: &Options, reducer: &Reducer, progress: Progress<'_>) -> anyhow::Result<Analysis> {
    let filtered = !(opts.clusters.is_empty() && opts.nodes.is_empty() && opts.jobs.is_empty());
    if opts.store && filtered {
        bail!("--store computes the whole fleet's stalls and findings; it cannot be combined with --cluster, --node or --job");
    }
    let mut timings = Vec::new();

    // 1. Exact sync stalls, hour by hour, over the whole fleet (peers live on other nodes).
    let t = Instant::now();
    let (stall_root, temp) = if opts.store {
        (local_root(&opts.data)?, None)
    } else {
        // A fresh directory per run: two reports in one process (tests, a
        // server) must never share their scratch stalls.
        let dir = tempfile::Builder::new()
            .prefix("strand-report-")
            .tempdir()
            .with_context(|| format!("cannot create a temporary directory in {}", std::env::temp_dir().display()))?;
        (dir.path().to_path_buf(), Some(dir))
    };
    let all = Dataset::open(&opts.data).await?;
    let ctx = session(&all, opts.memory_limit).await?;
    restrict(&ctx, &opts.clusters, &[], &opts.jobs).await?;
    let stall_stats = stalls::compute(&ctx, reducer, opts.range.start_ns, opts.range.end_ns, &stall_root, &opts.stall, |d, n| progress("exact sync stalls (hours)", d, n))
        .await
        .context("computing exact sync stalls")?;
    timings.push(("collective_stalls".to_string(), stall_stats.rows_written as usize, t.elapsed().as_secs_f64()));
    drop(ctx);

    // 2. The report's queries over the range.
    let ds = Dataset::open_range(&opts.data, opts.range).await?;
    let ctx = session(&ds, opts.memory_limit).await?;
    if let Some(dir) = &temp {
        let tmp = Dataset::open_range(dir.path().to_str().context("temporary directory is not UTF-8")?, opts.range).await?;
        let provider = tmp.context().table_provider(CollectiveStall::NAME).await?;
        ctx.deregister_table(CollectiveStall::NAME)?;
        ctx.register_table(CollectiveStall::NAME, provider)?;
    }
    restrict(&ctx, &opts.clusters, &opts.nodes, &opts.jobs).await?;
    check_window(&ctx, opts.params.window_ns).await?;
    let mut results = std::collections::HashMap::new();
    for (i, (name, _)) in sql::QUERIES.iter().enumerate() {
        progress("report queries", i as u64, sql::QUERIES.len() as u64);
        let t = Instant::now();
        let rows = sql::run(&ctx, name, &opts.params).await?;
        timings.push((name.to_string(), rows.len(), t.elapsed().as_secs_f64()));
        if let Some(dir) = &opts.dump_dir {
            dump(dir, &rows)?;
        }
        results.insert(*name, rows);
    }
    progress("report queries", sql::QUERIES.len() as u64, sql::QUERIES.len() as u64);
    let mut take = |name: &str| results.remove(name).with_context(|| format!("query {name} did not run"));

    // 3. Findings.
    let th = &opts.thresholds;
    let gpu_time = take("gpu_time")?;
    let (jobs_comm, powered) = job_comm(&gpu_time)?;
    let mut drafts: Vec<Draft> = Vec::new();
    let ranks = ai01::stragglers(&take("stragglers")?, th)?;
    drafts.extend(ai01::node_stragglers(&take("node_stragglers")?, &ranks, th)?);
    drafts.extend(ranks);
    drafts.extend(ai01::bus_bandwidth(&take("bus_bandwidth")?, th)?);
    drafts.extend(ai01::link_errors(&take("gpu_link_counters")?, &take("nic_counters")?, th)?);
    drafts.extend(ai01::exposed_comm(&jobs_comm, th));
    let topology = ai01::topology(&take("node_allocation")?, &take("job_shapes")?, opts.params.alloc_ns, opts.params.bucket_ns, &powered, th)?;
    let (jobs, recovery) = ai17::analyze(&take("job_timeline")?, &take("job_io")?, &take("job_phases")?, &take("job_failures")?, opts.params.window_ns, th)?;
    let mut topology = topology;
    drafts.append(&mut topology.drafts);
    drafts.extend(recovery);
    let mut findings: Vec<Finding> = drafts.into_iter().map(|d| d.into_row(opts.created_ns)).collect();
    findings.sort_by(|a, b| {
        findings::severity_rank(&a.severity)
            .cmp(&findings::severity_rank(&b.severity))
            .then(b.gpu_seconds.unwrap_or(0.0).total_cmp(&a.gpu_seconds.unwrap_or(0.0)))
            .then(a.finding_id.cmp(&b.finding_id))
    });
    if opts.store {
        store_findings(&local_root(&opts.data)?, opts.range, &findings)?;
    }
    Ok(Analysis { stall_stats, gpu_time, topology, jobs, findings, timings })
}

/// Windows and exact stalls are joined on the window grid: refuse a
/// `--window` that is not the agents' window length.
async fn check_window(ctx: &SessionContext, window_ns: i64) -> anyhow::Result<()> {
    let sql = "SELECT end_ns - start_ns AS len, count(*) AS n FROM windows GROUP BY end_ns - start_ns ORDER BY n DESC, len DESC LIMIT 1";
    let rows = Rows::new("window length", ctx.sql(sql).await?.collect().await?);
    if let Some(&len) = rows.i64_req("len")?.first()
        && len != window_ns
    {
        bail!(
            "most windows in this range are {} long, but --window is {}: set --window to the agents' windows.period",
            humantime::format_duration(std::time::Duration::from_nanos(len.max(0) as u64)),
            humantime::format_duration(std::time::Duration::from_nanos(window_ns.max(0) as u64))
        );
    }
    Ok(())
}

/// A session over `ds` with its own memory pool, showing the same tables.
async fn session(ds: &Dataset, memory_limit: Option<usize>) -> anyhow::Result<SessionContext> {
    let config = SessionConfig::new().set_str("datafusion.sql_parser.dialect", "PostgreSQL");
    let mut rt = RuntimeEnvBuilder::new();
    if let Some(bytes) = memory_limit {
        // Fair shares between spilling operators: one big sort cannot starve the merge that follows it.
        rt = rt.with_memory_pool(Arc::new(FairSpillPool::new(bytes)));
    }
    let ctx = SessionContext::new_with_config_rt(config, rt.build_arc()?);
    let url = ListingTableUrl::parse(ds.root())?;
    let store = ds.context().runtime_env().object_store(&url)?;
    ctx.register_object_store(url.object_store().as_ref(), store);
    for t in strand_schemas::all_tables() {
        let provider = ds.context().table_provider(t.name).await?;
        ctx.register_table(t.name, provider)?;
    }
    Ok(ctx)
}

fn in_list(column: &str, values: &[String]) -> Expr {
    col(column).in_list(values.iter().map(|v| lit(v.clone())).collect(), false)
}

/// Limits every table to the clusters, nodes and jobs asked for. Tables
/// without `job_id` keep the nodes where those jobs ran.
async fn restrict(ctx: &SessionContext, clusters: &[String], nodes: &[String], jobs: &[String]) -> anyhow::Result<()> {
    let mut job_nodes = Vec::new();
    if !jobs.is_empty() {
        let list = jobs.iter().map(|j| findings::sql_str(j)).collect::<Vec<_>>().join(", ");
        let rows = Rows::new("job nodes", ctx.sql(&format!("SELECT DISTINCT node FROM windows WHERE job_id IN ({list})")).await?.collect().await?);
        job_nodes = rows.str_req("node")?.into_iter().map(|n| n.to_string()).collect();
    }
    for t in strand_schemas::all_tables() {
        let schema = (t.schema)();
        let has = |c: &str| schema.field_with_name(c).is_ok();
        let mut filter: Option<Expr> = None;
        let mut and = |e: Expr| filter = Some(match filter.take() { Some(f) => f.and(e), None => e });
        if !clusters.is_empty() {
            and(in_list("cluster", clusters));
        }
        if !nodes.is_empty() {
            and(in_list("node", nodes));
        }
        if !jobs.is_empty() {
            if has("job_id") {
                and(in_list("job_id", jobs));
            } else {
                and(in_list("node", &job_nodes));
            }
        }
        if let Some(f) = filter {
            let df = ctx.table(t.name).await?.filter(f)?;
            ctx.deregister_table(t.name)?;
            ctx.register_table(t.name, df.into_view())?;
        }
    }
    Ok(())
}

/// Exposed communication per job and powered GPU-seconds per cluster, from the GPU-time rows.
/// Powered GPU-seconds per cluster.
type Powered = std::collections::HashMap<Arc<str>, f64>;

fn job_comm(rows: &Rows) -> anyhow::Result<(Vec<ai01::JobComm>, Powered)> {
    let (cluster, job, bucket) = (rows.str_req("cluster")?, rows.str_req("job_id")?, rows.i64_req("bucket_ns")?);
    let (measured, exposed, stall, powered) = (rows.i64_req("measured_ns")?, rows.i64_req("comm_exposed_ns")?, rows.i64_req("sync_stall_ns")?, rows.i64_req("powered_ns")?);
    let uuid = rows.str_req("gpu_uuid")?;
    type Gpus = std::collections::HashSet<Arc<str>>;
    let mut jobs: std::collections::BTreeMap<(Arc<str>, Arc<str>), (ai01::JobComm, Gpus)> = Default::default();
    let mut per_cluster: std::collections::HashMap<Arc<str>, f64> = Default::default();
    for i in 0..rows.len() {
        *per_cluster.entry(cluster[i].clone()).or_default() += powered[i] as f64 * 1e-9;
        if job[i].is_empty() {
            continue;
        }
        let (j, gpus) = jobs.entry((cluster[i].clone(), job[i].clone())).or_insert_with(|| {
            (ai01::JobComm { cluster: cluster[i].clone(), job_id: job[i].to_string(), first_ns: i64::MAX, last_ns: i64::MIN, ..Default::default() }, Default::default())
        });
        j.measured_ns += measured[i] as f64;
        j.comm_exposed_ns += exposed[i] as f64;
        j.sync_stall_ns += stall[i] as f64;
        j.first_ns = j.first_ns.min(bucket[i]);
        j.last_ns = j.last_ns.max(bucket[i]);
        gpus.insert(uuid[i].clone());
    }
    let out = jobs
        .into_values()
        .map(|(mut j, gpus)| {
            j.gpus = gpus.len();
            j
        })
        .collect();
    Ok((out, per_cluster))
}

/// The local directory of a dataset, for writing.
fn local_root(data: &str) -> anyhow::Result<PathBuf> {
    let path = data.strip_prefix("file://").unwrap_or(data);
    if path.contains("://") {
        bail!("--store writes into a local dataset directory; {data} is not one");
    }
    let p = Path::new(path);
    if !p.is_dir() {
        bail!("dataset {data} is not a directory");
    }
    Ok(p.to_path_buf())
}

/// Findings of a range go to `findings/date=…/cluster=…/node=fleet/findings-<start>-<end>.parquet`:
/// the same range rewrites the same files.
fn store_findings(root: &Path, range: TimeRange, rows: &[Finding]) -> anyhow::Result<()> {
    let id = format!("findings-{}-{}", range.start_ns, range.end_ns);
    let date = utc_date(range.start_ns);
    let mut by_cluster: std::collections::BTreeMap<Arc<str>, Vec<Finding>> = Default::default();
    for f in rows {
        by_cluster.entry(f.cluster.clone()).or_default().push(f.clone());
    }
    for (cluster, rows) in by_cluster {
        stalls::write_rows(&root.join(batch_path(Finding::NAME, &date, &cluster, "fleet", &id)), &rows)?;
    }
    Ok(())
}

/// Writes a query result as JSON lines (`<dir>/<query>.jsonl`).
fn dump(dir: &Path, rows: &Rows) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}.jsonl", rows.name));
    let file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = arrow::json::LineDelimitedWriter::new(std::io::BufWriter::new(file));
    for b in &rows.batches {
        w.write(b)?;
    }
    w.finish()?;
    Ok(())
}


