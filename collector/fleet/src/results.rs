//! The report's intermediate results on disk, so that another engine can run
//! the SQL (`strand report stranded --from-results DIR`, docs/fleet-scale.md):
//! one result per SQL file, `<query>.jsonl` or `<query>.parquet` (a file, or
//! a directory of part files as Spark writes them), and the stall pass's
//! statistics, `stalls.json`. `--dump-sql DIR` writes the same names, and
//! `params.json`: the range, the queries' parameters and each table's range
//! filter, which the other engine takes from there (one rule for them,
//! strand's) and which `--from-results` checks against its own;
//! `--stalls-only` also writes `schemas/`, each table's columns.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use arrow::json::reader::{ReaderBuilder, infer_json_schema_from_seekable};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::dataset::TimeRange;
use crate::sql::{self, Rows, SqlParams};
use crate::stalls::StallStats;

/// The stall pass's statistics in a results directory.
pub const STALLS_FILE: &str = "stalls.json";
/// A result is small by design (per GPU, job and bucket): a file past this
/// is not one, and is refused before it is read.
pub const MAX_RESULT_BYTES: u64 = 2 << 30;

/// The range, parameters and filters the results are for.
pub const PARAMS_FILE: &str = "params.json";

/// What a results directory was computed for.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct ResultsFor {
    start_ns: i64,
    end_ns: i64,
    #[serde(flatten)]
    params: SqlParams,
    /// Each table's range filter as SQL (`dataset::range_filter_sql`): the
    /// engine filters with these, not with a rule of its own.
    filters: std::collections::BTreeMap<String, String>,
}

impl ResultsFor {
    fn new(range: TimeRange, params: &SqlParams) -> Self {
        let filters = strand_schemas::all_tables()
            .iter()
            .map(|t| (t.name.to_string(), crate::dataset::range_filter_sql(t, range)))
            .collect();
        Self { start_ns: range.start_ns, end_ns: range.end_ns, params: *params, filters }
    }
}

/// `params.json`: the range, parameters and filters the other engine runs the SQL with.
pub fn write_params(dir: &Path, range: TimeRange, params: &SqlParams) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(PARAMS_FILE);
    let for_ = ResultsFor::new(range, params);
    std::fs::write(&path, serde_json::to_string_pretty(&for_)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn write_stall_stats(dir: &Path, stats: &StallStats) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(STALLS_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(stats)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Empty Parquet files of every table's schema, `<dir>/schemas/<table>.parquet`:
/// an engine gives a table that has no files in the dataset these columns,
/// as strand does, so every SQL file runs.
pub fn write_table_schemas(dir: &Path) -> anyhow::Result<()> {
    let d = dir.join("schemas");
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    for t in strand_schemas::all_tables() {
        let path = d.join(format!("{}.parquet", t.name));
        std::fs::write(&path, empty_table_file(t)?).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// A Parquet file of `t`'s columns and no rows: what an engine reads for a
/// table that has no file in the range.
pub(crate) fn empty_table_file(t: &strand_schemas::TableInfo) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    parquet::arrow::ArrowWriter::try_new(&mut buf, (t.schema)(), None)?.close()?;
    Ok(buf)
}

/// Every query's result and the stall statistics from `dir`, computed for
/// `range` and `params`; a missing or unreadable one is an error naming it
/// (an absent result is not an empty one), and so are results computed for
/// another range or other parameters (their report would be wrong).
pub fn load(
    dir: &Path,
    range: TimeRange,
    params: &SqlParams,
) -> anyhow::Result<(StallStats, HashMap<&'static str, Rows>)> {
    let params_path = dir.join(PARAMS_FILE);
    let text = read_bounded(&params_path).with_context(|| {
        format!(
            "no {} in {}: run `strand report stranded --stalls-only --store --dump-sql {}` over the same range first",
            PARAMS_FILE,
            dir.display(),
            dir.display()
        )
    })?;
    let found: ResultsFor = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not the range and parameters of the results", params_path.display()))?;
    let want = ResultsFor::new(range, params);
    if found != want {
        // Named without the filters, which follow from the range.
        let brief = |r: &ResultsFor| format!("[{}, {}) with {:?}", r.start_ns, r.end_ns, r.params);
        bail!(
            "the results in {} were computed for {}, this report asks for {}: give the same --from, --to, --window and --bucket",
            dir.display(),
            brief(&found),
            brief(&want)
        );
    }
    let stalls_path = dir.join(STALLS_FILE);
    let text = read_bounded(&stalls_path).with_context(|| {
        format!(
            "no stall statistics at {}: run `strand report stranded --stalls-only --store --dump-sql {}` over the same range first",
            stalls_path.display(),
            dir.display()
        )
    })?;
    let stalls: StallStats = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not the stall pass's statistics", stalls_path.display()))?;
    let mut results = HashMap::new();
    for (name, _) in sql::QUERIES {
        let batches = read_result(dir, name)?;
        results.insert(*name, Rows::new(name, batches));
    }
    Ok((stalls, results))
}

fn read_bounded(path: &Path) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_RESULT_BYTES {
        bail!("{} is {len} bytes, over the {MAX_RESULT_BYTES} a result may have", path.display());
    }
    Ok(std::fs::read(path)?)
}

/// The result of query `name`: `<name>.jsonl` or `<name>.parquet`.
fn read_result(dir: &Path, name: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let candidates = [dir.join(format!("{name}.jsonl")), dir.join(format!("{name}.parquet"))];
    let found: Vec<&PathBuf> = candidates.iter().filter(|p| p.exists()).collect();
    let path = match found.as_slice() {
        [one] => *one,
        [] => bail!(
            "no result of query {name} in {}: expected {name}.jsonl or {name}.parquet (collector/fleet/sql/{name}.sql)",
            dir.display()
        ),
        _ => bail!("two results of query {name} in {}: keep {name}.jsonl or {name}.parquet", dir.display()),
    };
    let parquet = path.extension().is_some_and(|e| e == "parquet");
    let files = if path.is_dir() { part_files(path)? } else { vec![path.clone()] };
    let total: u64 = files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    if total > MAX_RESULT_BYTES {
        bail!(
            "the result of query {name} ({}) is {total} bytes, over the {MAX_RESULT_BYTES} a result may have",
            path.display()
        );
    }
    let mut batches = Vec::new();
    for f in &files {
        let read = if parquet { read_parquet(f, &mut batches) } else { read_jsonl(f, &mut batches) };
        read.with_context(|| format!("cannot read the result of query {name} from {}", f.display()))?;
    }
    Ok(batches)
}

/// The data files of a directory written by an engine (Spark: `part-*`),
/// without its markers (`_SUCCESS`) and hidden files (`.crc`).
fn part_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if e.file_type()?.is_file() && !name.starts_with('_') && !name.starts_with('.') {
            files.push(e.path());
        }
    }
    files.sort();
    Ok(files)
}

fn read_jsonl(path: &Path, out: &mut Vec<RecordBatch>) -> anyhow::Result<()> {
    let mut reader = BufReader::new(File::open(path)?);
    let (schema, _) = infer_json_schema_from_seekable(&mut reader, None)?;
    if schema.fields().is_empty() {
        return Ok(()); // no rows
    }
    for batch in ReaderBuilder::new(Arc::new(schema)).build(reader)? {
        out.push(batch?);
    }
    Ok(())
}

fn read_parquet(path: &Path, out: &mut Vec<RecordBatch>) -> anyhow::Result<()> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?.build()?;
    // The guard turns a decoder panic on corrupt pages into this file's error.
    for batch in strand_schemas::Batches::new(&path.display().to_string(), reader) {
        out.push(batch?);
    }
    Ok(())
}
