//! `strand import`: traces from other tools as strand tables, in the same
//! Hive layout the agent and the collector write
//! (`<out>/<table>/date=YYYY-MM-DD/cluster=<c>/node=<n>/<batch-id>.parquet`).

mod json_split;
pub mod kineto;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use strand_schemas::{Table, TableWriter};

use self::kineto::{KinetoOptions, KinetoTrace};

#[derive(clap::Subcommand, Debug)]
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
    /// Node name for every trace (default: the trace's file name without
    /// `.json[.gz]`).
    #[arg(long)]
    pub node: Option<String>,
    /// Job id written into every row.
    #[arg(long)]
    pub job: Option<String>,
    /// Keep only the GPU records Holistic Trace Analysis analyses (launched
    /// by a CPU call in the trace, before the last profiler step ended).
    #[arg(long)]
    pub hta_scope: bool,
}

pub fn run(cmd: ImportCommand) -> anyhow::Result<()> {
    match cmd {
        ImportCommand::Kineto(args) => {
            for t in import_kineto(&args)? {
                println!(
                    "{}: rank {} of {} as node {}{}: {} kernels, {} NCCL calls, {} sync calls, {} steps → {}",
                    t.file.display(),
                    t.rank.map_or("?".to_string(), |r| r.to_string()),
                    t.world_size.map_or("?".to_string(), |r| r.to_string()),
                    t.node,
                    if t.gpu_names.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", t.gpu_names.values().cloned().collect::<Vec<_>>().join(", "))
                    },
                    t.kernels,
                    t.nccl,
                    t.syncs,
                    t.steps,
                    args.out.display()
                );
            }
            Ok(())
        }
    }
}

/// What one imported trace held.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    pub file: PathBuf,
    pub node: String,
    pub rank: Option<i32>,
    pub world_size: Option<i32>,
    /// CUDA device → product name.
    pub gpu_names: BTreeMap<i32, String>,
    pub kernels: usize,
    pub nccl: usize,
    pub syncs: usize,
    pub steps: usize,
}

/// Imports every trace of `args` into `args.out`, one trace in memory at a time.
pub fn import_kineto(args: &KinetoArgs) -> anyhow::Result<Vec<ImportSummary>> {
    let opts = KinetoOptions { cluster: args.cluster.clone(), node: args.node.clone(), job_id: args.job.clone(), hta_scope: args.hta_scope };
    let mut out = Vec::new();
    for path in &args.traces {
        let t: KinetoTrace = kineto::read_trace(path, &opts)?;
        if t.skipped_events > 0 {
            tracing::warn!("{}: skipped {} GPU records with a negative duration", path.display(), t.skipped_events);
        }
        write_trace(&args.out, &args.cluster, &t)?;
        out.push(ImportSummary {
            file: t.file.clone(),
            node: t.node.clone(),
            rank: t.rank,
            world_size: t.world_size,
            gpu_names: t.gpu_names.iter().filter(|(d, _)| t.devices.contains(d)).map(|(d, n)| (*d, n.clone())).collect(),
            kernels: t.kernel_count(),
            nccl: t.nccl.len(),
            syncs: t.syncs.len(),
            steps: t.steps.len(),
        });
    }
    Ok(out)
}

/// Writes the rows of one trace; the batch id is the trace's file name, so
/// importing the same trace again replaces its files.
pub fn write_trace(out: &Path, cluster: &str, t: &KinetoTrace) -> anyhow::Result<()> {
    let batch = format!("kineto-{}", hive_escape(&file_stem(&t.file)));
    write_partitioned(out, cluster, &t.node, &batch, &t.kernels(), |k| k.start_ns)?;
    write_partitioned(out, cluster, &t.node, &batch, &t.nccl, |c| c.enter_ns)?;
    write_partitioned(out, cluster, &t.node, &batch, &t.syncs, |s| s.enter_ns)?;
    write_partitioned(out, cluster, &t.node, &batch, &t.steps, |s| s.start_ns)?;
    Ok(())
}

fn file_stem(p: &Path) -> String {
    let name = p.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    name.trim_end_matches(".gz").trim_end_matches(".json").to_string()
}

/// Collectives whose instances line up across ranks (`nccl_calls.op`).
pub fn is_collective(op: &str) -> bool {
    strand_analysis::sync_stall::COLLECTIVE_OPS.contains(&op)
}

/// `YYYY-MM-DD` (UTC) of a nanosecond timestamp.
pub fn utc_date(ts_ns: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(ts_ns.max(0) as u64);
    humantime::format_rfc3339(t).to_string()[..10].to_string()
}

/// Hive partition values: characters other than letters, digits, `.`, `_`
/// and `-` are written `%XX` (as Hive does), so no value can add a directory.
pub fn hive_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() || out == "." || out == ".." {
        out = format!("%{}", out.len());
    }
    out
}

/// Writes `rows` of table `T` under `<out>/<table>/date=…/cluster=…/node=…/<batch>.parquet`,
/// one file per date; each file appears whole (written aside, then renamed).
pub fn write_partitioned<T: Table>(out: &Path, cluster: &str, node: &str, batch: &str, rows: &[T], time: impl Fn(&T) -> i64) -> anyhow::Result<()> {
    let mut by_date: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for r in rows {
        by_date.entry(utc_date(time(r))).or_default().push(r.clone());
    }
    for (date, rows) in by_date {
        let dir = out
            .join(T::NAME)
            .join(format!("date={date}"))
            .join(format!("cluster={}", hive_escape(cluster)))
            .join(format!("node={}", hive_escape(node)));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{batch}.parquet"));
        let tmp = dir.join(format!(".{batch}.parquet.tmp"));
        let file = fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut w = TableWriter::<T, _>::new(std::io::BufWriter::new(file)).with_context(|| format!("cannot write {}", tmp.display()))?;
        for chunk in rows.chunks(64 * 1024) {
            w.write(chunk).with_context(|| format!("cannot write {}", tmp.display()))?;
        }
        let mut f = w.finish().with_context(|| format!("cannot write {}", tmp.display()))?;
        f.flush().with_context(|| format!("cannot write {}", tmp.display()))?;
        f.get_ref().sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_cannot_escape_their_directory() {
        assert_eq!(hive_escape("node-1.example"), "node-1.example");
        assert_eq!(hive_escape("a/b=c d"), "a%2Fb%3Dc%20d");
        assert_eq!(hive_escape(".."), "%2");
        assert_eq!(utc_date(1_716_397_522_000_000_000), "2024-05-22");
        assert_eq!(utc_date(0), "1970-01-01");
    }

    #[test]
    fn kineto_import_writes_readable_hive_partitions_and_reimport_replaces() {
        let data = crate::postmortem::tests_support::kineto_dir();
        let tmp = tempfile::tempdir().unwrap();
        let args = KinetoArgs {
            traces: vec![data.join("alexnet_single_gpu.json.gz"), data.join("nccl_2rank_a100_rank0.json.gz")],
            out: tmp.path().to_path_buf(),
            cluster: "lab/a".into(),
            node: None,
            job: Some("j1".into()),
            hta_scope: false,
        };
        let s = import_kineto(&args).unwrap();
        let s2 = import_kineto(&args).unwrap();
        assert_eq!(s.iter().map(|x| x.kernels).collect::<Vec<_>>(), s2.iter().map(|x| x.kernels).collect::<Vec<_>>());
        let f = tmp.path().join("kernel_events/date=2023-09-27/cluster=lab%2Fa/node=alexnet_single_gpu/kineto-alexnet_single_gpu.parquet");
        let rows = strand_schemas::read_file::<strand_schemas::KernelEvent>(&f).unwrap();
        assert_eq!(rows.len(), s[0].kernels, "re-importing replaced the file instead of adding one");
        assert!(rows.iter().all(|k| k.job_id.as_deref() == Some("j1") && &*k.cluster == "lab/a" && k.source == "kineto"));
        assert_eq!(s[1].gpu_names.get(&0).map(|n| n.as_str()), Some("NVIDIA A100-PG509-200"));
        let calls: usize = ["nccl_calls/date=2024-05-23/cluster=lab%2Fa/node=nccl_2rank_a100_rank0/kineto-nccl_2rank_a100_rank0.parquet"]
            .iter()
            .map(|p| strand_schemas::read_file::<strand_schemas::NcclCall>(&tmp.path().join(p)).unwrap().len())
            .sum();
        assert_eq!(calls, s[1].nccl);
    }
}
