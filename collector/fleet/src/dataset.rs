//! The dataset: strand tables in Hive layout
//! (`<table>/date=YYYY-MM-DD/cluster=<c>/node=<n>/<batch-id>.parquet`),
//! registered with DataFusion with their partition columns.
//!
//! The same code reads the collector's dataset and an agent's data directory,
//! on local disk or in an S3-compatible object store:
//!
//! ```ignore
//! let ds = Dataset::open("strand-data").await?;            // or "s3://bucket/prefix"
//! let df = ds.sql("SELECT node, count(*) FROM windows GROUP BY node").await?;
//!
//! // Only what overlaps a time range (prunes whole date partitions too):
//! let ds = Dataset::open_range("strand-data", TimeRange::new(t0_ns, t1_ns)).await?;
//! let ctx: SessionContext = ds.into_context();
//! ```
//!
//! Every table of `strand_schemas::all_tables()` is registered under its
//! name, even when it has no file yet (`SELECT count(*) FROM windows` is 0).
//! Partition columns come last in `SELECT *`: `date`, then `cluster` and
//! `node` (both strings, from the path). A table whose file column of the same
//! name may be null (`findings.node`) keeps the file's column, since a
//! cluster-wide finding has no node; its `node=` directory is not a column.
//! The collector checks at ingest that every row's `cluster` and `node` equal
//! the path's, so the path and the file never disagree.

// `postmortem` and `report` are the other users of this API (in progress).
#![allow(dead_code)]

use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::prelude::{Expr, SessionConfig, SessionContext, col, lit};
use strand_schemas::protocol::utc_date;
use strand_schemas::{ReadLimits, TableInfo};

/// The column added from the `date=` directory.
pub const DATE_COLUMN: &str = "date";

/// A half-open range of UTC nanoseconds, `[start_ns, end_ns)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start_ns: i64,
    pub end_ns: i64,
}

impl TimeRange {
    pub fn new(start_ns: i64, end_ns: i64) -> Self {
        Self { start_ns, end_ns }
    }
}

/// A dataset root with every strand table registered in a DataFusion session.
pub struct Dataset {
    ctx: SessionContext,
    root: ListingTableUrl,
}

impl Dataset {
    /// Opens a dataset: a local directory (which must exist), a `file://`
    /// URL, or `s3://bucket/prefix` (credentials, region and endpoint from the
    /// usual `AWS_*` environment variables).
    pub async fn open(location: &str) -> anyhow::Result<Self> {
        Self::open_with(location, None, None).await
    }

    /// Like [`Dataset::open`], with a memory pool of `memory_limit` bytes
    /// (operators that can spill to disk do so above it; others fail with a
    /// resources-exhausted error instead of growing until allocation fails).
    pub async fn open_bounded(location: &str, memory_limit: Option<usize>) -> anyhow::Result<Self> {
        Self::open_with(location, None, memory_limit).await
    }

    /// Like [`Dataset::open`], but each table shows only rows that overlap
    /// `range`: rows whose time (`ts_ns`), or interval (`start_ns`..`end_ns`,
    /// `enter_ns`..`exit_ns`), meets `[start_ns, end_ns)`. Date partitions
    /// that cannot hold such rows are not read at all.
    pub async fn open_range(location: &str, range: TimeRange) -> anyhow::Result<Self> {
        if range.end_ns <= range.start_ns {
            bail!("empty time range: end {} is not after start {}", range.end_ns, range.start_ns);
        }
        Self::open_with(location, Some(range), None).await
    }

    async fn open_with(location: &str, range: Option<TimeRange>, memory_limit: Option<usize>) -> anyhow::Result<Self> {
        // PostgreSQL's grammar, not the generic one: the generic dialect takes
        // trailing commas and so ends `SELECT node, cluster FROM …` at
        // `cluster` (a keyword there), a column of every strand table.
        let config = SessionConfig::new().set_str("datafusion.sql_parser.dialect", "PostgreSQL");
        let mut rt = RuntimeEnvBuilder::new();
        if let Some(bytes) = memory_limit {
            rt = rt.with_memory_pool(Arc::new(FairSpillPool::new(bytes)));
        }
        let ctx = SessionContext::new_with_config_rt(config, rt.build_arc()?);
        let root = root_url(location)?;
        if root.scheme() == "file" {
            let path = std::path::PathBuf::from(format!("/{}", root.prefix().as_ref()));
            tokio::task::spawn_blocking(move || check_local_files(&path)).await??;
        }
        if root.scheme() == "s3" {
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_url(root.as_str())
                .build()
                .with_context(|| format!("cannot open the S3 dataset {location}"))?;
            ctx.register_object_store(root.object_store().as_ref(), Arc::new(store));
        }
        for table in strand_schemas::all_tables() {
            let provider = Arc::new(listing_table(&root, table)?);
            match range {
                None => {
                    ctx.register_table(table.name, provider)?;
                }
                Some(range) => {
                    let df = ctx.read_table(provider)?;
                    let df = match range_filter(table, range) {
                        Some(filter) => df.filter(filter)?,
                        None => df,
                    };
                    ctx.register_table(table.name, df.into_view())?;
                }
            }
        }
        Ok(Self { ctx, root })
    }

    /// The session, to run SQL or build DataFrames.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    pub fn into_context(self) -> SessionContext {
        self.ctx
    }

    /// Plans one SQL statement over the dataset.
    pub async fn sql(&self, sql: &str) -> datafusion::error::Result<DataFrame> {
        self.ctx.sql(sql).await
    }

    /// The root as a URL (`file:///…/` or `s3://…/`).
    pub fn root(&self) -> &str {
        self.root.as_str()
    }
}

/// The partition columns of a table, in directory order. `date` always;
/// `cluster` and `node` when the table's own column of that name is never
/// null (then the path's value stands for it).
pub fn partition_columns(table: &TableInfo) -> Vec<&'static str> {
    let schema = (table.schema)();
    let mut cols = vec![DATE_COLUMN];
    for name in ["cluster", "node"] {
        match schema.field_with_name(name) {
            Ok(f) if f.is_nullable() => break, // deeper levels cannot be columns either
            _ => cols.push(name),
        }
    }
    cols
}

/// The schema DataFusion reads from files: the table's, less the columns the
/// path provides.
fn file_schema(table: &TableInfo) -> SchemaRef {
    let schema = (table.schema)();
    let parts = partition_columns(table);
    let fields: Vec<Field> =
        schema.fields().iter().filter(|f| !parts.contains(&f.name().as_str())).map(|f| f.as_ref().clone()).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn listing_table(root: &ListingTableUrl, table: &TableInfo) -> anyhow::Result<ListingTable> {
    let url = ListingTableUrl::parse(format!("{}{}/", root.as_str(), table.name))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        // Only complete batches: a write in progress is named `….parquet#<n>`.
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            partition_columns(table).into_iter().map(|c| (c.to_string(), DataType::Utf8)).collect(),
        );
    let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(file_schema(table));
    Ok(ListingTable::try_new(config)?)
}

/// The filter of a table for `range`: date partitions first (the day before
/// the start too, since a batch is filed under the date of its earliest row
/// and may run past midnight), then the rows' own times.
fn range_filter(table: &TableInfo, range: TimeRange) -> Option<Expr> {
    const DAY_NS: i64 = 86_400_000_000_000;
    let (start_col, end_col) = table.time;
    let first_day = utc_date(range.start_ns.saturating_sub(DAY_NS));
    let last_day = utc_date(range.end_ns - 1);
    let dates = col(DATE_COLUMN).gt_eq(lit(first_day)).and(col(DATE_COLUMN).lt_eq(lit(last_day)));
    let rows = match (end_col != start_col).then_some(end_col) {
        None => col(start_col).gt_eq(lit(range.start_ns)).and(col(start_col).lt(lit(range.end_ns))),
        Some(end_col) => col(start_col)
            .lt(lit(range.end_ns))
            .and(coalesce(vec![col(end_col), col(start_col)]).gt_eq(lit(range.start_ns))),
    };
    Some(dates.and(rows))
}

/// Checks the footer of every Parquet file of every table under a local
/// root with the bounded reader (`strand_schemas::bounded`), the check
/// ingest and the postmortem make, before DataFusion's Parquet reader sees
/// them: a damaged or hostile file is an error naming it, not a panic or an
/// allocation of whatever its footer claims. Two small reads a file; the
/// pages are decoded later by DataFusion within its memory pool.
fn check_local_files(root: &std::path::Path) -> anyhow::Result<usize> {
    fn walk(dir: &std::path::Path, depth: usize, limits: &ReadLimits, n: &mut usize) -> anyhow::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        for entry in entries {
            let path = entry.with_context(|| format!("cannot list {}", dir.display()))?.path();
            let meta = std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
            // The Hive layout is table/date/cluster/node/file: deeper
            // directories (a symlink loop) are not part of it.
            if meta.is_dir() && depth < 4 {
                walk(&path, depth + 1, limits, n)?;
            } else if meta.is_file() && path.extension().is_some_and(|e| e == "parquet") {
                let name = path.display().to_string();
                let file = std::fs::File::open(&path).with_context(|| format!("cannot open {name}"))?;
                strand_schemas::bounded::check_reader_footer(&name, &file, limits)?;
                *n += 1;
            }
        }
        Ok(())
    }
    let limits = ReadLimits::default();
    let mut n = 0;
    for table in strand_schemas::all_tables() {
        walk(&root.join(table.name), 0, &limits, &mut n)?;
    }
    Ok(n)
}

/// A dataset location as a directory URL ending in `/`.
fn root_url(location: &str) -> anyhow::Result<ListingTableUrl> {
    let with_slash = |s: &str| if s.ends_with('/') { s.to_string() } else { format!("{s}/") };
    if location.contains("://") {
        let url =
            ListingTableUrl::parse(with_slash(location)).with_context(|| format!("bad dataset URL {location}"))?;
        match url.scheme() {
            "file" | "s3" => return Ok(url),
            other => bail!("dataset URL {location}: scheme `{other}` is not supported (use a path, file:// or s3://)"),
        }
    }
    let path = std::path::Path::new(location);
    let meta = std::fs::metadata(path).with_context(|| format!("cannot open the dataset directory {location}"))?;
    if !meta.is_dir() {
        bail!("dataset {location} is not a directory");
    }
    let abs = std::fs::canonicalize(path).with_context(|| format!("cannot resolve {location}"))?;
    let abs = abs.to_str().with_context(|| format!("dataset path {location} is not UTF-8"))?;
    Ok(ListingTableUrl::parse(with_slash(abs))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int64Array, StringArray};
    use datafusion::arrow::record_batch::RecordBatch;
    use strand_schemas::protocol::batch_path;
    use strand_schemas::{Finding, GpuSample, Table, Window, to_parquet_bytes};

    const T0: i64 = 1_709_251_200_000_000_000; // 2024-03-01T00:00:00Z

    fn write<T: Table>(root: &std::path::Path, date: &str, cluster: &str, node: &str, id: &str, rows: &[T]) {
        let path = root.join(batch_path(T::NAME, date, cluster, node, id));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, to_parquet_bytes(rows).unwrap()).unwrap();
    }

    fn samples(cluster: &str, node: &str, ts: &[i64]) -> Vec<GpuSample> {
        ts.iter()
            .enumerate()
            .map(|(i, &t)| {
                let mut r = GpuSample::example(i as u64);
                r.cluster = cluster.into();
                r.node = node.into();
                r.ts_ns = t;
                r
            })
            .collect()
    }

    async fn rows(ds: &Dataset, sql: &str) -> Vec<RecordBatch> {
        ds.sql(sql).await.unwrap().collect().await.unwrap()
    }

    fn int(batches: &[RecordBatch]) -> i64 {
        batches[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0)
    }

    #[tokio::test]
    async fn every_table_is_queryable_even_without_files() {
        let dir = tempfile::tempdir().unwrap();
        let ds = Dataset::open(dir.path().to_str().unwrap()).await.unwrap();
        for t in strand_schemas::all_tables() {
            let b = rows(&ds, &format!("SELECT count(*) FROM {}", t.name)).await;
            assert_eq!(int(&b), 0, "{}", t.name);
        }
        // The partition columns exist on an empty table too.
        let b = rows(&ds, "SELECT ts_ns, date, node, cluster FROM gpu_samples").await;
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    }

    #[tokio::test]
    async fn partition_columns_come_from_the_path_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "2024-03-01", "c1", "n1", "batch-0001", &samples("c1", "n1", &[T0, T0 + 1]));
        write(dir.path(), "2024-03-01", "c1", "n2", "batch-0002", &samples("c1", "n2", &[T0 + 2]));
        write(dir.path(), "2024-03-02", "c2", "n1", "batch-0003", &samples("c2", "n1", &[T0 + 86_400_000_000_000]));
        // A write in progress (object_store's and our staging name) and a stray file are not read.
        let mut staging =
            dir.path().join(batch_path("gpu_samples", "2024-03-01", "c1", "n1", "batch-0004")).into_os_string();
        staging.push("#1");
        std::fs::write(staging, b"PAR1 half a file").unwrap();
        std::fs::write(dir.path().join("gpu_samples/notes.txt"), b"x").unwrap();

        let ds = Dataset::open(dir.path().to_str().unwrap()).await.unwrap();
        assert_eq!(int(&rows(&ds, "SELECT count(*) FROM gpu_samples").await), 4);
        assert_eq!(int(&rows(&ds, "SELECT count(*) FROM gpu_samples WHERE node = 'n1'").await), 3);
        assert_eq!(int(&rows(&ds, "SELECT count(*) FROM gpu_samples WHERE date = '2024-03-02'").await), 1);
        let b = rows(&ds, "SELECT cluster, node, date FROM gpu_samples WHERE ts_ns = 1709251200000000002").await;
        let s = |i: usize| b[0].column(i).as_any().downcast_ref::<StringArray>().unwrap().value(0).to_string();
        assert_eq!((s(0), s(1), s(2)), ("c1".into(), "n2".into(), "2024-03-01".into()));
        // Filtering on a partition column reads only that directory.
        let plan = rows(&ds, "EXPLAIN SELECT ts_ns FROM gpu_samples WHERE cluster = 'c2'").await;
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&plan).unwrap().to_string();
        assert!(text.contains("cluster=c2/node=n1") && !text.contains("cluster=c1"), "{text}");
    }

    #[tokio::test]
    async fn a_nullable_node_column_is_read_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Finding::example(1);
        f.cluster = "c1".into();
        f.node = None;
        write(dir.path(), "2024-03-01", "c1", "collector", "finding-0001", &[f]);
        let ds = Dataset::open(dir.path().to_str().unwrap()).await.unwrap();
        let b = rows(&ds, "SELECT cluster, node FROM findings").await;
        assert_eq!(b[0].num_rows(), 1);
        assert!(b[0].column(1).is_null(0), "a cluster-wide finding must keep its null node");
        assert_eq!(partition_columns(strand_schemas::table_info("findings").unwrap()), ["date", "cluster"]);
    }

    #[tokio::test]
    async fn a_time_range_keeps_overlapping_rows_only() {
        let dir = tempfile::tempdir().unwrap();
        const H: i64 = 3_600_000_000_000;
        // A batch filed on 02-29 whose rows run past midnight into the range.
        write(dir.path(), "2024-02-29", "c", "n", "batch-0001", &samples("c", "n", &[T0 - H, T0 + H]));
        write(dir.path(), "2024-03-01", "c", "n", "batch-0002", &samples("c", "n", &[T0 + 2 * H, T0 + 5 * H]));
        // Windows are intervals: the one that started before the range but ends in it counts.
        let mut w: Vec<Window> = (0..2).map(Window::example).collect();
        for x in &mut w {
            x.cluster = "c".into();
            x.node = "n".into();
        }
        (w[0].start_ns, w[0].end_ns) = (T0 - H, T0 + H / 2);
        (w[1].start_ns, w[1].end_ns) = (T0 - 3 * H, T0 - 2 * H);
        write(dir.path(), "2024-02-29", "c", "n", "batch-0003", &w);

        let ds = Dataset::open_range(dir.path().to_str().unwrap(), TimeRange::new(T0, T0 + 3 * H)).await.unwrap();
        let b = rows(&ds, "SELECT ts_ns FROM gpu_samples ORDER BY ts_ns").await;
        let ts: Vec<i64> = b
            .iter()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect();
        assert_eq!(ts, [T0 + H, T0 + 2 * H]);
        assert_eq!(int(&rows(&ds, "SELECT count(*) FROM windows").await), 1);
        assert!(Dataset::open_range(dir.path().to_str().unwrap(), TimeRange::new(T0, T0)).await.is_err());
    }

    #[tokio::test]
    async fn a_missing_directory_is_an_error_naming_it() {
        let err = Dataset::open("/nonexistent/strand-data").await.err().unwrap();
        assert!(format!("{err:#}").contains("/nonexistent/strand-data"), "{err:#}");
        let err = Dataset::open("ftp://host/x").await.err().unwrap();
        assert!(format!("{err:#}").contains("not supported"), "{err:#}");
    }
}
