//! Every flag of `strand`, parsed once (clap); each binary turns them into
//! its library's typed options. Nothing here runs a command.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "strand", version, about = "strand: GPU fleet collector, queries, postmortems and reports")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the collector: accept batches from agents and store them.
    Serve(ServeArgs),
    /// Compact closed hours of the collector's storage root once and apply
    /// retention (`strand serve` does this every `compaction.interval`).
    Compact(CompactArgs),
    /// Run SQL over a dataset.
    Query(QueryArgs),
    /// Convert traces from other tools into strand tables.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Explain one training run: where every GPU-second went, and what went wrong.
    Postmortem(PostmortemArgs),
    /// Export one run for other tools.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Fleet reports.
    #[command(subcommand)]
    Report(ReportCommand),
}

impl Command {
    /// The binary that runs this command (`strand` runs the offline ones itself).
    pub fn binary(&self) -> &'static str {
        match self {
            Command::Serve(_) | Command::Compact(_) => "strand-collector",
            Command::Query(_) | Command::Report(_) => "strand-fleet",
            Command::Import(_) | Command::Postmortem(_) | Command::Export(_) => "strand",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Collector configuration (TOML; every key is documented in collector/collector.toml).
    #[arg(long, env = "STRAND_COLLECTOR_CONFIG")]
    pub config: PathBuf,
    /// Listen address, overriding `listen` in the configuration (port 0 picks a free port).
    #[arg(long)]
    pub listen: Option<String>,
    /// Storage root (directory or s3://bucket/prefix), overriding `storage.root`.
    #[arg(long)]
    pub data: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct CompactArgs {
    /// Collector configuration (its [storage] and [compaction] sections).
    #[arg(long, env = "STRAND_COLLECTOR_CONFIG")]
    pub config: PathBuf,
    /// Storage root (directory or s3://bucket/prefix), overriding `storage.root`.
    #[arg(long)]
    pub data: Option<String>,
    /// Compact hours that ended at least this long ago, overriding `compaction.after` (e.g. 0s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub after: Option<Duration>,
    /// Remove compacted landed batches this long after their commit, overriding `compaction.cleanup_delay`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub cleanup_delay: Option<Duration>,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Every strand table is a SQL table (docs/schemas.md), with the partition columns \
date, cluster and node. The grammar is PostgreSQL's.

Examples:
  strand query 'SELECT node, count(*) FROM kernel_events GROUP BY node'
  strand query --data s3://bucket/strand --format csv \"SELECT * FROM windows WHERE date = '2025-01-31'\"")]
pub struct QueryArgs {
    /// One SQL statement.
    pub sql: String,
    /// The dataset: a directory (an agent's data directory or the collector's
    /// storage root), a file:// URL, or s3://bucket/prefix.
    #[arg(long, env = "STRAND_DATA", default_value = "strand-data")]
    pub data: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// DataFusion memory pool (e.g. 4GiB): above it sorts and joins spill
    /// to disk, and what cannot spill fails with a clear error.
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// Stop the query after this long (e.g. 30s, 10m).
    #[arg(long)]
    pub timeout: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns with borders, for people.
    Table,
    /// CSV with a header row; lists are written as `[1, 2]`.
    Csv,
    /// One JSON array of objects; null columns are left out of an object.
    Json,
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// PyTorch profiler (Kineto) JSON traces (`.json` or `.json.gz`), one per rank.
    Kineto(KinetoArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct KinetoArgs {
    /// Trace files.
    #[arg(required = true)]
    pub traces: Vec<PathBuf>,
    /// Output dataset directory (created if missing).
    #[arg(short, long)]
    pub out: PathBuf,
    /// Cluster name written into every row.
    #[arg(long, default_value = "kineto")]
    pub cluster: String,
    /// Node name for the trace (one trace only; default: each trace's file
    /// name without `.json[.gz]`).
    #[arg(long)]
    pub node: Option<String>,
    /// Job id written into every row (the fleet report's job).
    #[arg(long)]
    pub job: Option<String>,
    /// Keep only the GPU records Holistic Trace Analysis analyses: when the
    /// traces have two or more distinct profiler steps over all ranks, those
    /// launched by a CPU call in their trace before its last step ended.
    #[arg(long)]
    pub hta_scope: bool,
    /// Kernels of an in-house communication library, as a regular expression
    /// over the kernel name (mangled or not); repeatable. Prefix with `p2p:`
    /// for point-to-point kernels. They count as communication, with the
    /// built-in table (docs/decomposition.md).
    #[arg(long = "comm-kernel", value_name = "REGEX")]
    pub comm_kernels: Vec<String>,
    /// The longest single JSON value of a Kineto trace (one event), e.g.
    /// 64MiB (the default); a longer one is an error, not held in memory.
    #[arg(long)]
    pub max_json_value: Option<String>,
    /// Length of the `windows` written (the fleet's grid: the agents' `windows.period`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub window: Duration,
    /// Idle gaps shorter than this between kernels are launch gaps.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "50us")]
    pub launch_gap: Duration,
    /// Reduction backend: auto, gpu or cpu.
    #[arg(long, default_value = "auto")]
    pub backend: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PostmortemArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Output directory for report.html, summary.md and report.json.
    #[arg(short, long, default_value = "postmortem")]
    pub out: PathBuf,
    /// Kernels listed in "top kernels".
    #[arg(long, default_value_t = 20)]
    pub top_kernels: usize,
    /// Also write the run's timeline (`strand export trace`) as trace.json
    /// next to report.html, which then links to it.
    #[arg(long)]
    pub trace: bool,
    /// With --trace: at most this many timeline events (the earliest are kept).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_events: usize,
}

/// How one run is read: the flags `strand postmortem` and `strand export
/// trace` share, so both read the same rows the same way.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Run directory (strand dataset or a directory of Kineto traces) or
    /// files (`.parquet`, `.json`, `.json.gz`).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Only this job's rows (`job_id`), e.g. one job of a collector's dataset.
    #[arg(long)]
    pub job: Option<String>,
    /// Window length when windows are built from raw rows (default: about 150 windows over the run, rounded).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub window: Option<Duration>,
    /// Idle gaps shorter than this between kernels are launch gaps (HTA uses 30us).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "50us")]
    pub launch_gap: Duration,
    /// How far out of time order rows of different files may be (default: max(10 s, 2 windows)).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lateness: Option<Duration>,
    /// NVML sample period of the input (a sample describes the period before it).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub sample_period: Duration,
    /// Model FLOPs of one step on one rank (job config), for MFU when the
    /// steps carry none.
    #[arg(long)]
    pub flops_per_step: Option<f64>,
    /// Dtype the FLOPs are counted in: bf16, fp16, fp8, tf32, fp32, fp64.
    #[arg(long)]
    pub dtype: Option<String>,
    /// GPU product name when the input does not say (e.g. "NVIDIA H100 80GB HBM3").
    #[arg(long)]
    pub gpu_name: Option<String>,
    /// Peak dense FLOP/s per GPU for --dtype, overriding the built-in table.
    #[arg(long)]
    pub peak_flops: Option<f64>,
    /// Reduction backend: auto, gpu or cpu.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Never draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// For Kineto inputs: keep only the GPU records Holistic Trace Analysis
    /// analyses (see `strand import kineto --hta-scope`).
    #[arg(long)]
    pub hta_scope: bool,
    /// Kernels of an in-house communication library, as a regular expression
    /// over the kernel name (mangled or not); repeatable. Prefix with `p2p:`
    /// for point-to-point kernels (see `strand import kineto --comm-kernel`).
    #[arg(long = "comm-kernel", value_name = "REGEX")]
    pub comm_kernels: Vec<String>,
    /// The longest single JSON value of a Kineto trace (one event), e.g.
    /// 64MiB (the default); a longer one is an error, not held in memory.
    #[arg(long)]
    pub max_json_value: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// The run as a timeline for Perfetto UI (ui.perfetto.dev) and
    /// chrome://tracing: kernels per GPU and stream, collectives with their
    /// sync stall, the time decomposition per window as counters, steps and
    /// checkpoints (Chrome Trace Event Format JSON).
    Trace(ExportTraceArgs),
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  strand export trace strand-data -o trace.json
  strand export trace traces/ --from 10s --to 12s -o step.json   # a part of the run (from its start)")]
pub struct ExportTraceArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Output file.
    #[arg(short, long, default_value = "trace.json")]
    pub out: PathBuf,
    /// At most this many events; the earliest are kept and the command says
    /// where it cut (viewers slow down past a few million).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_events: usize,
    /// Only what overlaps the part of the run from this long after its start.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub from: Option<Duration>,
    /// … to this long after its start.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub to: Option<Duration>,
}

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// The stranded-capacity report: GPU-hours powered, held, busy, compute,
    /// ghost and idle per cluster, node, GPU model and job; ai.01 and ai.17
    /// findings with their evidence; recoverable capacity; trends.
    Stranded(StrandedArgs),
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  strand report stranded --data /srv/strand --last 24h
  strand report stranded --data s3://bucket/strand --from 2026-01-05T00:00:00Z --to 2026-01-06T00:00:00Z --cluster a100
  strand report stranded --data /srv/strand --last 1h --store     # also store collective_stalls and findings
  strand report stranded --from-results results/ --from … --to …  # from the SQL results of Spark (docs/fleet-scale.md)
  strand report stranded --data /shared/strand --last 24h --store --engine ballista://scheduler:50050")]
pub struct StrandedArgs {
    /// The dataset: a directory, file:// URL or s3://bucket/prefix.
    #[arg(long, env = "STRAND_DATA", default_value = "strand-data")]
    pub data: String,
    /// Start (RFC 3339, e.g. 2026-01-05T00:00:00Z, or UTC nanoseconds).
    #[arg(long)]
    pub from: Option<String>,
    /// End, exclusive (same forms).
    #[arg(long)]
    pub to: Option<String>,
    /// The last DURATION up to now (e.g. 24h), instead of --from/--to.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub last: Option<String>,
    /// Only these clusters (repeatable).
    #[arg(long)]
    pub cluster: Vec<String>,
    /// Only these nodes (repeatable).
    #[arg(long)]
    pub node: Vec<String>,
    /// Only these jobs (repeatable).
    #[arg(long)]
    pub job: Vec<String>,
    /// Directory for stranded.html, stranded.md and stranded.json.
    #[arg(short, long, default_value = "strand-report")]
    pub out: PathBuf,
    /// Also write collective_stalls and findings into the dataset (local directory; whole fleet only).
    #[arg(long)]
    pub store: bool,
    /// The agents' window period (`windows.period`).
    #[arg(long, default_value = "10s")]
    pub window: String,
    /// Trend bucket (default: the range cut in about 24, at least 10 minutes).
    #[arg(long)]
    pub bucket: Option<String>,
    /// DataFusion memory pool (e.g. 4GiB); above it queries spill to disk.
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// Exact-stall work unit (divides an hour): shorter holds fewer rows at once, longer rereads less.
    #[arg(long, default_value = "10m")]
    pub stall_chunk: String,
    /// Kernels of an in-house communication library, as a regular expression
    /// over the kernel name; repeatable (`p2p:` prefix for point-to-point).
    /// Imported kernels of such a library without a collective identity are
    /// matched across ranks by their order, as `strand postmortem
    /// --comm-kernel` matches them (the same patterns give the same answer).
    #[arg(long = "comm-kernel", value_name = "REGEX")]
    pub comm_kernels: Vec<String>,
    /// Reductions backend: auto, gpu or cpu.
    #[arg(long, default_value = "auto")]
    pub kernels: String,
    /// Findings shown in full in HTML and Markdown (all are in the JSON).
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Write every report query's result as JSON lines into this directory,
    /// the stall pass's statistics as stalls.json, and the range and the
    /// queries' parameters as params.json (which another engine runs with).
    #[arg(long, value_name = "DIR")]
    pub dump_sql: Option<PathBuf>,
    /// Only compute and store the exact stalls of the range (with --store),
    /// for another engine to run the SQL over the dataset (docs/fleet-scale.md).
    #[arg(long, requires = "store", conflicts_with = "from_results")]
    pub stalls_only: bool,
    /// Render the report from the query results another engine wrote into
    /// DIR (one per SQL file, as --dump-sql names them, stalls.json and
    /// params.json, which must match this run's range and parameters).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["store", "dump_sql"])]
    pub from_results: Option<PathBuf>,
    /// Where the report's queries run (the stall pass's scans and the SQL):
    /// `local`, or `ballista://HOST:PORT`, an Apache DataFusion Ballista 55
    /// scheduler whose executors read the dataset (needs --store: they read
    /// the exact stalls from it).
    #[arg(long, default_value = "local", conflicts_with_all = ["stalls_only", "from_results"])]
    pub engine: String,
    /// Stop the report after this long (e.g. 30m): an engine that stops
    /// answering then fails the run with this error instead of holding it.
    #[arg(long)]
    pub timeout: Option<String>,
}

/// Nanoseconds of a duration, saturating.
pub fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// A time: RFC 3339 (`2026-01-05T00:00:00Z`) or UTC nanoseconds.
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ns) = s.parse::<i64>() {
        return Ok(ns);
    }
    strand_schemas::clock::parse_rfc3339(s).ok_or_else(|| {
        anyhow::anyhow!(
            "bad time {s:?}: use RFC 3339 (2026-01-05T00:00:00Z) or UTC nanoseconds, between 1677-09-21 and 2262-04-11"
        )
    })
}

/// A positive duration (`10s`, `1h`).
pub fn parse_duration(what: &str, s: &str) -> anyhow::Result<i64> {
    let d = humantime::parse_duration(s).map_err(|e| anyhow::anyhow!("bad {what} {s:?} ({e}): e.g. 10s, 1h"))?;
    let ns = ns(d);
    if ns <= 0 {
        anyhow::bail!("{what} must be positive");
    }
    Ok(ns)
}

/// A size: `4GiB`, `512MiB`, bytes.
pub fn parse_bytes(s: &str) -> anyhow::Result<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| anyhow::anyhow!("bad size {s:?} (e.g. 4GiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => anyhow::bail!("bad size unit {other:?} in {s:?} (use MiB or GiB)"),
    };
    Ok((n * mult) as usize)
}

/// The reductions backend.
pub fn backend(flag: &str, s: &str) -> anyhow::Result<strand_kernels::Backend> {
    s.parse().map_err(|e: String| anyhow::anyhow!("{flag}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses_and_names_its_binary() {
        let cli = Cli::try_parse_from(["strand", "report", "stranded", "--last", "1h"]).unwrap();
        assert_eq!(cli.command.binary(), "strand-fleet");
        let cli = Cli::try_parse_from(["strand", "postmortem", "x.json.gz", "--job", "j"]).unwrap();
        assert_eq!(cli.command.binary(), "strand");
        let cli = Cli::try_parse_from(["strand", "serve", "--config", "c.toml"]).unwrap();
        assert_eq!(cli.command.binary(), "strand-collector");
        assert!(Cli::try_parse_from(["strand", "import", "kineto", "t.json"]).is_err(), "--out is required");
        assert_eq!(parse_time("2026-01-05T00:00:00Z").unwrap(), 1_767_571_200_000_000_000);
        assert!(parse_time("yesterday").unwrap_err().to_string().contains("RFC 3339"));
        // Before 1970 is a time like any other; past 2262 is said, not wrapped.
        assert_eq!(parse_time("1969-12-31T23:59:59Z").unwrap(), -1_000_000_000);
        assert!(parse_time("2300-01-01T00:00:00Z").unwrap_err().to_string().contains("2262-04-11"));
        assert_eq!(parse_bytes("4GiB").unwrap(), 4 << 30);
        assert!(parse_duration("--window", "0s").is_err());
    }
}
