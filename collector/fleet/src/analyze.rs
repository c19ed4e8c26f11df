//! The fleet analysis behind `strand report stranded`: the exact sync
//! stalls across nodes (the one collective matcher, hour by hour), the
//! report's SQL in the engine, and the one findings engine over its results.
//!
//! | figure | where |
//! |---|---|
//! | exact sync stall per rank (DESIGN §4, across nodes) | [`crate::stalls`] → table `collective_stalls` |
//! | GPU-hours per category per GPU × job × bucket | `strand_analysis::accounting` (its SQL is `sql/gpu_time.sql`) |
//! | findings (ai.01, ai.17, efficiency) | `strand_analysis::findings`, inputs from [`crate::inputs`] |
//!
//! Big data stays in the engine: the SQL in `collector/fleet/sql/` reduces
//! the dataset to per-GPU, per-node, per-job and per-communicator rows, and
//! only those come into Rust. The stall pass streams one hour at a time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{Expr, SessionConfig, SessionContext, col, lit};
use strand_analysis::findings::interconnect::TopologyInput;
use strand_analysis::findings::recovery::RecoveryInput;
use strand_analysis::findings::{self, Inputs, JobRecovery, JobTime, Stragglers, Thresholds, Topology};
use strand_kernels::Reducer;
use strand_schemas::layout;
use strand_schemas::{CollectiveStall, Finding, Table};

use crate::dataset::{Dataset, TimeRange};
use crate::engine::{self, Engine};
use crate::inputs::{self, GpuTimeRow};
use crate::output::Output;
use crate::sql::{self, Rows, SqlParams};
use crate::stalls::{self, StallOptions, StallStats};

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
    /// Write `collective_stalls` and `findings` into the dataset (a directory
    /// or S3), and reuse stored stall hours whose inputs have not changed.
    pub store: bool,
    /// DataFusion memory pool; beyond it sorts and aggregations spill to disk.
    pub memory_limit: Option<usize>,
    /// Write every report query's result as JSON lines here, the stall
    /// pass's statistics as `stalls.json` and the range and parameters as
    /// `params.json` (engine comparison, `--from-results`).
    pub dump_dir: Option<PathBuf>,
    /// Render from the query results another engine wrote into this
    /// directory (one per SQL file, as `dump_dir` names them, the stall
    /// pass's `stalls.json`, and `params.json`, which must match `range` and
    /// `params`), instead of running the stall pass and the SQL.
    pub from_results: Option<PathBuf>,
    /// Where the queries run: the stall pass's scans and the report's SQL
    /// (the matching and the findings always run here).
    pub engine: Engine,
    /// Time the findings are stamped with.
    pub created_ns: i64,
    /// The run (stall pass and SQL) is stopped after this long: an engine
    /// that stops answering fails it instead of holding it. `None`: no limit.
    pub timeout: Option<std::time::Duration>,
}

/// Everything the report needs.
pub struct Analysis {
    pub stall_stats: StallStats,
    /// The accounting's state per GPU, job and trend bucket.
    pub gpu_time: Vec<GpuTimeRow>,
    pub topology: Topology,
    pub jobs: Vec<JobRecovery>,
    pub findings: Vec<Finding>,
    /// (query, rows, seconds)
    pub timings: Vec<(String, usize, f64)>,
}

/// A progress callback: (stage, done, total).
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

pub async fn analyze(opts: &Options, reducer: &Reducer, progress: Progress<'_>) -> anyhow::Result<Analysis> {
    bounded(opts, analyze_unbounded(opts, reducer, progress)).await
}

/// `work`, stopped after `opts.timeout` with an error naming the engine.
async fn bounded<T>(opts: &Options, work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let Some(limit) = opts.timeout else { return work.await };
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        bail!(
            "the report was stopped after {} (--timeout), its queries on {} still running",
            humantime::format_duration(limit),
            opts.engine
        )
    })
}

async fn analyze_unbounded(opts: &Options, reducer: &Reducer, progress: Progress<'_>) -> anyhow::Result<Analysis> {
    check_store(opts)?;
    if let Some(dir) = &opts.from_results {
        if opts.store {
            bail!("--from-results renders what another engine computed; --store does not apply to it");
        }
        if filtered(opts) {
            bail!(
                "--from-results renders the results as the other engine computed them: filter there, not with --cluster, --node or --job"
            );
        }
        let t = Instant::now();
        let (stall_stats, results) = crate::results::load(dir, opts.range, &opts.params)?;
        let timings = vec![("results".to_string(), results.values().map(Rows::len).sum(), t.elapsed().as_secs_f64())];
        return conclude(opts, None, stall_stats, results, timings).await;
    }
    if opts.engine != Engine::Local && !opts.store {
        bail!(
            "--engine {}: the executors read the exact stalls from the dataset; add --store (they are stored there)",
            opts.engine
        );
    }
    let mut timings = Vec::new();

    let t = Instant::now();
    let (out, temp) = if opts.store {
        (Output::open(&opts.data)?, None)
    } else {
        // A fresh directory per run: two reports in one process (tests, a
        // server) must never share their scratch stalls.
        let dir = tempfile::Builder::new()
            .prefix("strand-report-")
            .tempdir()
            .with_context(|| format!("cannot create a temporary directory in {}", std::env::temp_dir().display()))?;
        (Output::local(dir.path()), Some(dir))
    };
    let stall_stats = exact_stalls(opts, reducer, &out, progress).await?;
    timings.push(("collective_stalls".to_string(), stall_stats.rows_written as usize, t.elapsed().as_secs_f64()));
    if let Some(dir) = &opts.dump_dir {
        crate::results::write_params(dir, opts.range, &opts.params)?;
        crate::results::write_stall_stats(dir, &stall_stats)?;
    }

    // 2. The report's queries over the range.
    let ds = Dataset::open_range(&opts.data, opts.range).await?;
    let ctx = match &opts.engine {
        Engine::Local => session(&ds, opts.memory_limit).await?,
        Engine::Ballista { scheduler } => engine::ballista_session(scheduler, &ds, opts.range, &out).await?,
    };
    if let Some(dir) = &temp {
        let tmp =
            Dataset::open_range(dir.path().to_str().context("temporary directory is not UTF-8")?, opts.range).await?;
        let provider = tmp.context().table_provider(CollectiveStall::NAME).await?;
        ctx.deregister_table(CollectiveStall::NAME)?;
        ctx.register_table(CollectiveStall::NAME, provider)?;
    }
    // A remote engine's errors (a scheduler that does not answer, an
    // executor that cannot read a file) name the engine.
    let on_engine = |e: anyhow::Error| match &opts.engine {
        Engine::Local => e,
        remote => e.context(format!("the report's SQL on {remote}")),
    };
    restrict(&ctx, &opts.clusters, &opts.nodes, &opts.jobs).await.map_err(on_engine)?;
    check_window(&ctx, opts.params.window_ns).await.map_err(on_engine)?;
    let mut results = std::collections::HashMap::new();
    for (i, (name, _)) in sql::QUERIES.iter().enumerate() {
        progress("report queries", i as u64, sql::QUERIES.len() as u64);
        let t = Instant::now();
        let rows = sql::run(&ctx, name, &opts.params).await.map_err(on_engine)?;
        timings.push((name.to_string(), rows.len(), t.elapsed().as_secs_f64()));
        if let Some(dir) = &opts.dump_dir {
            dump(dir, &rows)?;
        }
        results.insert(*name, rows);
    }
    progress("report queries", sql::QUERIES.len() as u64, sql::QUERIES.len() as u64);
    let out = if opts.store { Some(&out) } else { None };
    conclude(opts, out, stall_stats, results, timings).await
}

/// The exact stalls of the range only, stored in the dataset for another
/// engine's run of the SQL (`--stalls-only`); their statistics go to
/// `dump_dir/stalls.json` for `--from-results`.
pub async fn stall_pass(opts: &Options, reducer: &Reducer, progress: Progress<'_>) -> anyhow::Result<StallStats> {
    bounded(opts, stall_pass_unbounded(opts, reducer, progress)).await
}

async fn stall_pass_unbounded(opts: &Options, reducer: &Reducer, progress: Progress<'_>) -> anyhow::Result<StallStats> {
    check_store(opts)?;
    if !opts.store {
        bail!("--stalls-only stores the exact stalls for another engine to read: add --store");
    }
    uncompacted_refused(opts).await?;
    let stats = exact_stalls(opts, reducer, &Output::open(&opts.data)?, progress).await?;
    if let Some(dir) = &opts.dump_dir {
        crate::results::write_params(dir, opts.range, &opts.params)?;
        crate::results::write_stall_stats(dir, &stats)?;
        crate::results::write_table_schemas(dir)?;
    }
    Ok(stats)
}

/// Step 1, the exact sync stalls, hour by hour, over the whole fleet (peers live on
/// other nodes), reading only the partitions of the range and its margins,
/// written to `out` (stored for reuse with `opts.store`).
async fn exact_stalls(
    opts: &Options,
    reducer: &Reducer,
    out: &Output,
    progress: Progress<'_>,
) -> anyhow::Result<StallStats> {
    let range = stalls::input_range(opts.range.start_ns, opts.range.end_ns, &opts.stall);
    let inputs = Dataset::open_range(&opts.data, range).await?;
    // The pass's scans and sorts run on the engine; the matching is strand's.
    let ctx = match &opts.engine {
        Engine::Local => session(&inputs, opts.memory_limit).await?,
        Engine::Ballista { scheduler } => engine::ballista_session(scheduler, &inputs, range, out).await?,
    };
    restrict(&ctx, &opts.clusters, &[], &opts.jobs).await?;
    stalls::compute(
        &inputs,
        &ctx,
        reducer,
        opts.range.start_ns,
        opts.range.end_ns,
        out,
        opts.store,
        &opts.stall,
        |d, n| progress("exact sync stalls (hours)", d, n),
    )
    .await
    .with_context(|| match &opts.engine {
        Engine::Local => "computing exact sync stalls".to_string(),
        remote => format!("computing exact sync stalls (their scans on {remote})"),
    })
}

/// Outside engines read `<table>/**/*.parquet`: compacted hours, not the
/// landing area. A range with landed batches no part holds yet would give
/// them fewer rows than strand reads, so it is refused, naming what to do.
async fn uncompacted_refused(opts: &Options) -> anyhow::Result<()> {
    let ds = Dataset::open_range(&opts.data, opts.range).await?;
    let mut landed = Vec::new();
    for t in strand_schemas::all_tables() {
        let n = ds.files(t.name).await?.iter().filter(|(key, _)| key.starts_with(layout::LANDING)).count();
        if n > 0 {
            landed.push(format!("{} {}", n, t.name));
        }
    }
    if !landed.is_empty() {
        bail!(
            "the range holds landed batches not compacted yet ({}): another engine reads compacted hours only \
             and would see fewer rows than strand; run `strand compact` (or wait for compaction.after) first",
            landed.join(", ")
        );
    }
    Ok(())
}

/// Whether `--cluster`, `--node` or `--job` limits the run.
fn filtered(opts: &Options) -> bool {
    !(opts.clusters.is_empty() && opts.nodes.is_empty() && opts.jobs.is_empty())
}

fn check_store(opts: &Options) -> anyhow::Result<()> {
    if opts.store && filtered(opts) {
        bail!(
            "--store computes the whole fleet's stalls and findings; it cannot be combined with --cluster, --node or --job"
        );
    }
    Ok(())
}

/// 3. The findings engine over the queries' results, wherever they ran.
async fn conclude(
    opts: &Options,
    store: Option<&Output>,
    stall_stats: StallStats,
    mut results: std::collections::HashMap<&'static str, Rows>,
    timings: Vec<(String, usize, f64)>,
) -> anyhow::Result<Analysis> {
    let mut take = |name: &str| results.remove(name).with_context(|| format!("query {name} did not run"));

    let gpu_time = inputs::gpu_time(&take("gpu_time")?)?;
    type JobAcc = (JobTime, std::collections::HashSet<Arc<str>>);
    let mut jobs: std::collections::BTreeMap<(Arc<str>, Arc<str>), JobAcc> = Default::default();
    let mut powered: std::collections::HashMap<Arc<str>, f64> = Default::default();
    let mut gpu_powered: std::collections::HashMap<(Arc<str>, Arc<str>, i32), i64> = Default::default();
    for r in &gpu_time {
        *powered.entry(r.cluster.clone()).or_default() += r.time.powered_ns() as f64 * 1e-9;
        *gpu_powered.entry((r.cluster.clone(), r.node.clone(), r.gpu_index)).or_default() += r.time.powered_ns();
        if r.job_id.is_empty() {
            continue;
        }
        let (j, gpus) = jobs.entry((r.cluster.clone(), r.job_id.clone())).or_insert_with(|| {
            let j = JobTime {
                cluster: r.cluster.clone(),
                job_id: r.job_id.to_string(),
                gpus: 0,
                first_ns: i64::MAX,
                last_ns: i64::MIN,
                time: Default::default(),
            };
            (j, Default::default())
        });
        j.time.merge(&r.time);
        j.first_ns = j.first_ns.min(r.bucket_ns);
        j.last_ns = j.last_ns.max(r.bucket_ns + opts.params.bucket_ns);
        gpus.insert(r.gpu_uuid.clone());
    }
    let jobs: Vec<JobTime> = jobs
        .into_values()
        .map(|(mut j, gpus)| {
            j.gpus = gpus.len();
            j
        })
        .collect();
    let stragglers = Stragglers::from_stats(
        inputs::rank_stats(&take("stragglers")?)?,
        inputs::node_stats(&take("node_stragglers")?)?,
    );
    let bus = inputs::bus_units(&take("bus_bandwidth")?)?;
    let (gpu_counters, nic_counters) =
        (inputs::gpu_counters(&take("gpu_link_counters")?)?, inputs::nic_counters(&take("nic_counters")?)?);
    let (alloc, shapes) = (inputs::node_alloc(&take("node_allocation")?)?, inputs::job_shapes(&take("job_shapes")?)?);
    let (windows, io) = (inputs::job_windows(&take("job_timeline")?)?, inputs::job_io(&take("job_io")?)?);
    let (phases, failures) = (inputs::job_phases(&take("job_phases")?)?, inputs::job_failures(&take("job_failures")?)?);
    let engine = Inputs {
        jobs: &jobs,
        stragglers: Some(&stragglers),
        gpu_powered: Some(&gpu_powered),
        bus: Some(&bus),
        gpu_counters: Some(&gpu_counters),
        nic_counters: Some(&nic_counters),
        topology: Some(TopologyInput {
            alloc: &alloc,
            shapes: &shapes,
            alloc_ns: opts.params.alloc_ns,
            bucket_ns: opts.params.bucket_ns,
            powered: &powered,
        }),
        recovery: Some(RecoveryInput {
            windows: &windows,
            io: &io,
            phases: &phases,
            failures: &failures,
            window_ns: opts.params.window_ns,
        }),
    };
    let outcome = findings::detect(&engine, &opts.thresholds, opts.created_ns);
    let findings = outcome.findings;
    if let Some(out) = store {
        store_findings(out, opts.range, &findings).await?;
    }
    Ok(Analysis { stall_stats, gpu_time, topology: outcome.topology, jobs: outcome.jobs, findings, timings })
}

/// Windows and exact stalls are joined on the window grid: refuse a
/// `--window` that is not the agents' window length. The agents' windows
/// are whole grid cells (start a multiple of their length); windows trimmed
/// to a trace's activity (`strand import`) are shorter and only must fit.
async fn check_window(ctx: &SessionContext, window_ns: i64) -> anyhow::Result<()> {
    let fmt = |ns: i64| humantime::format_duration(std::time::Duration::from_nanos(ns.max(0) as u64)).to_string();
    let sql = "SELECT end_ns - start_ns AS len, count(*) AS n FROM windows \
               WHERE end_ns > start_ns AND start_ns % (end_ns - start_ns) = 0 \
               GROUP BY end_ns - start_ns ORDER BY n DESC, len DESC LIMIT 1";
    let rows = Rows::new("window length", ctx.sql(sql).await?.collect().await?);
    if let Some(&len) = rows.i64_req("len")?.first()
        && len != window_ns
    {
        bail!(
            "most windows in this range are {} long, but --window is {}: set --window to the agents' windows.period",
            fmt(len),
            fmt(window_ns)
        );
    }
    let rows = Rows::new(
        "longest window",
        ctx.sql("SELECT max(end_ns - start_ns) AS len FROM windows").await?.collect().await?,
    );
    if let Some(Some(len)) = rows.i64("len")?.first()
        && *len > window_ns
    {
        bail!(
            "windows in this range are up to {} long, but --window is {}: set --window to the agents' windows.period",
            fmt(*len),
            fmt(window_ns)
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
        let rows = Rows::new(
            "job nodes",
            ctx.sql(&format!("SELECT DISTINCT node FROM windows WHERE job_id IN ({list})")).await?.collect().await?,
        );
        job_nodes = rows.str_req("node")?.into_iter().map(|n| n.to_string()).collect();
    }
    for t in strand_schemas::all_tables() {
        let schema = (t.schema)();
        let has = |c: &str| schema.field_with_name(c).is_ok();
        let mut filter: Option<Expr> = None;
        let mut and = |e: Expr| {
            filter = Some(match filter.take() {
                Some(f) => f.and(e),
                None => e,
            })
        };
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

/// Findings of a range go to
/// `findings/date=D/hour=HH/cluster_dir=C/findings-<start>-<end>.parquet` (the
/// hour of the range's start): the same range replaces the same objects.
async fn store_findings(out: &Output, range: TimeRange, rows: &[Finding]) -> anyhow::Result<()> {
    let (date, hour) = layout::date_hour(range.start_ns);
    let mut by_cluster: std::collections::BTreeMap<Arc<str>, Vec<Finding>> = Default::default();
    for f in rows {
        by_cluster.entry(f.cluster.clone()).or_default().push(f.clone());
    }
    for (cluster, rows) in by_cluster {
        let key = format!(
            "{}/date={date}/{}/{}={}/findings-{}-{}.parquet",
            Finding::NAME,
            layout::hour_dir(hour),
            layout::CLUSTER_KEY,
            strand_schemas::hive::escape(&cluster),
            range.start_ns,
            range.end_ns
        );
        out.put(&key, bytes::Bytes::from(strand_schemas::to_parquet_bytes(&rows)?)).await?;
    }
    Ok(())
}

/// Writes a query result as JSON lines (`<dir>/<query>.jsonl`).
fn dump(dir: &Path, rows: &Rows) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}.jsonl", rows.name));
    let file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    // Null values written as `null`, so that every column is in every line.
    let mut w = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::LineDelimited>(std::io::BufWriter::new(file));
    for b in &rows.batches {
        w.write(b)?;
    }
    w.finish()?;
    Ok(())
}
