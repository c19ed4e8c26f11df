//! `strand-fleet`: `strand query` and `strand report` over a fleet dataset
//! (strand_fleet, DataFusion).

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use strand_cli::args::{self, Cli, Command, Format, ReportCommand, StrandedArgs};
use strand_fleet::analyze::Options;
use strand_fleet::query::{self, QueryOptions};
use strand_fleet::sql::SqlParams;
use strand_fleet::stalls::StallOptions;
use strand_fleet::{TimeRange, report};
use strand_kernels::Reducer;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    strand_cli::init_logging();
    strand_cli::exit(match cli.command {
        Command::Query(a) => query_options(a).and_then(|o| strand_cli::on_runtime(query::run(o))),
        Command::Report(ReportCommand::Stranded(a)) => strand_cli::on_runtime(stranded(a)),
        other => Err(strand_cli::exec_sibling(other.binary())),
    })
}

/// The options of `strand query`.
fn query_options(a: args::QueryArgs) -> anyhow::Result<QueryOptions> {
    Ok(QueryOptions {
        sql: a.sql,
        data: a.data,
        format: match a.format {
            Format::Table => query::Format::Table,
            Format::Csv => query::Format::Csv,
            Format::Json => query::Format::Json,
        },
        memory_limit: a.memory_limit.as_deref().map(args::parse_bytes).transpose()?,
        timeout: timeout(a.timeout.as_deref())?,
    })
}

/// `--timeout`, as the limit the libraries take.
fn timeout(arg: Option<&str>) -> anyhow::Result<Option<std::time::Duration>> {
    let ns = arg.map(|t| args::parse_duration("--timeout", t)).transpose()?;
    Ok(ns.map(|ns| std::time::Duration::from_nanos(u64::try_from(ns).unwrap_or(0))))
}

/// The analysis options of `strand report stranded`.
fn options(a: &StrandedArgs, now_ns: i64) -> anyhow::Result<Options> {
    let (start_ns, end_ns) = match (&a.last, &a.from, &a.to) {
        (Some(d), _, _) => (now_ns - args::parse_duration("--last", d)?, now_ns),
        (None, Some(f), Some(t)) => (args::parse_time(f)?, args::parse_time(t)?),
        _ => anyhow::bail!("give the range as --from and --to, or --last"),
    };
    if end_ns <= start_ns {
        anyhow::bail!("the range is empty: --to must be after --from");
    }
    let window_ns = args::parse_duration("--window", &a.window)?;
    let bucket_ns = a.bucket.as_deref().map(|b| args::parse_duration("--bucket", b)).transpose()?;
    Ok(Options {
        data: a.data.clone(),
        range: TimeRange::new(start_ns, end_ns),
        clusters: a.cluster.clone(),
        nodes: a.node.clone(),
        jobs: a.job.clone(),
        params: SqlParams::new(start_ns, end_ns, window_ns, bucket_ns),
        thresholds: Default::default(),
        stall: StallOptions {
            chunk_ns: args::parse_duration("--stall-chunk", &a.stall_chunk)?,
            comm_kernels: std::sync::Arc::new(
                strand_schemas::comm_kernels::CommKernels::with_patterns(&a.comm_kernels).context("--comm-kernel")?,
            ),
            ..StallOptions::default()
        },
        store: a.store,
        memory_limit: a.memory_limit.as_deref().map(args::parse_bytes).transpose()?,
        dump_dir: a.dump_sql.clone(),
        from_results: a.from_results.clone(),
        engine: a.engine.parse().map_err(|e: String| anyhow::anyhow!("--engine: {e}"))?,
        created_ns: now_ns,
        timeout: timeout(a.timeout.as_deref())?,
    })
}

async fn stranded(a: StrandedArgs) -> anyhow::Result<()> {
    let now = strand_schemas_now();
    let opts = options(&a, now)?;
    let reducer = Reducer::new(args::backend("--kernels", &a.kernels)?)?.with_cpu_threads(0);
    let bar = progress_bar();
    let mut progress = |stage: &str, done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_message(stage.to_string());
            b.set_length(total);
            b.set_position(done);
        }
    };
    let started = std::time::Instant::now();
    if a.stalls_only {
        let s = strand_fleet::analyze::stall_pass(&opts, &reducer, &mut progress).await?;
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        eprintln!(
            "strand report: exact sync stalls of {} hour(s) stored in {} ({} rows, {} hour(s) reused) in {:.1} s{}",
            s.hours,
            a.data,
            s.rows_written,
            s.hours_reused,
            started.elapsed().as_secs_f64(),
            a.dump_sql.as_ref().map(|d| format!("; statistics in {}/stalls.json", d.display())).unwrap_or_default()
        );
        return Ok(());
    }
    let r = report::stranded(&opts, &reducer, &mut progress).await?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    report::write(&r, &a.out, a.top)?;
    eprintln!(
        "strand report: {:.1} GPU-hours powered, {:.1} stranded ({:.0}%), {} findings; wrote {}/stranded.{{html,md,json}} in {:.1} s",
        r.totals.powered_gpu_h,
        r.totals.stranded_gpu_h,
        100.0 * r.totals.stranded_gpu_h / r.totals.powered_gpu_h.max(1e-9),
        r.findings.len(),
        a.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn strand_schemas_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(1);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {pos}/{len} [{elapsed}]") {
        b.set_style(style);
    }
    b.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(b)
}
