//! The dataset: strand tables in DataFusion, read from the storage layout of
//! `strand_schemas::layout` (compacted parts, landed batches, the report's
//! stored results, and an agent's or `strand import`'s Hive directories).
//!
//! The same code reads the collector's dataset and an agent's data directory,
//! on local disk or in an S3-compatible object store:
//!
//! ```ignore
//! let ds = Dataset::open("strand-data").await?;            // or "s3://bucket/prefix"
//! let df = ds.sql("SELECT node, count(*) FROM windows GROUP BY node").await?;
//!
//! // Only what overlaps a time range: lists and reads only the date and
//! // hour partitions that can hold such rows.
//! let ds = Dataset::open_range("strand-data", TimeRange::new(t0_ns, t1_ns)).await?;
//! let ctx: SessionContext = ds.into_context();
//! ```
//!
//! Every table of `strand_schemas::all_tables()` is registered under its
//! name, even when it has no file yet (`SELECT count(*) FROM windows` is 0),
//! with the table's columns and then `date` (a string, from the path).
//! Points in time (`Timestamp(ns, UTC)` in files of schema version 2,
//! `Int64` in version 1) are `BIGINT` nanoseconds here, as in version 1.
//!
//! Which files a table reads (each row once, whatever compaction is doing):
//! the landed batches are listed first, then the compacted parts; a landed
//! batch that a part lists in its footer is skipped. A compaction committed
//! between the two listings is then seen as a part; one committed after
//! both listings leaves the landed batches in place for `cleanup_delay`.
//!
//! With a time range, only the dates and hours from `start − lookback` to
//! `end` are listed (`lookback`, one hour by default, is how long an interval
//! row — a window, a step, an NCCL call — may have started before the range
//! and still reach into it). Directories without an `hour=` level (an
//! agent's data directory) are read from the day before the start, since
//! their batches are filed under the date of their earliest row.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::datatypes::{DataType, Field, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingTableUrl, PartitionedFile};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::logical_expr::TableProviderFilterPushDown;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::prelude::{Expr, SessionConfig, SessionContext, col, lit};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use strand_schemas::layout::{self, HOUR_NS, LANDING, META_BATCHES};
use strand_schemas::protocol::utc_date;
use strand_schemas::{ReadLimits, TableInfo};
use tokio::sync::OnceCell;

/// The column added from the `date=` directory.
pub const DATE_COLUMN: &str = "date";
/// How long before a range an interval row may start and still reach into it.
pub const DEFAULT_LOOKBACK_NS: i64 = HOUR_NS;
const DAY_NS: i64 = 86_400_000_000_000;

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
    tables: HashMap<&'static str, Arc<StrandTable>>,
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
    /// `enter_ns`..`exit_ns`), meets `[start_ns, end_ns)`. Only the
    /// partitions that can hold such rows are listed and read.
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
        let store = ctx.runtime_env().object_store(&root)?;
        let mut tables = HashMap::new();
        for table in strand_schemas::all_tables() {
            let provider = Arc::new(StrandTable::new(store.clone(), &root, table, range));
            tables.insert(table.name, provider.clone());
            match range {
                None => {
                    ctx.register_table(table.name, provider)?;
                }
                Some(range) => {
                    let df = ctx.read_table(provider)?.filter(range_filter(table, range))?;
                    ctx.register_table(table.name, df.into_view())?;
                }
            }
        }
        Ok(Self { ctx, root, tables })
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

    /// The files table `name` reads (keys relative to the root), for tests,
    /// benchmarks and fingerprints.
    pub async fn files(&self, name: &str) -> anyhow::Result<Vec<(String, u64)>> {
        let t = self.tables.get(name).with_context(|| format!("no table {name}"))?;
        let files = t.files().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let strip = t.prefix.as_ref().len() + usize::from(!t.prefix.as_ref().is_empty());
        Ok(files.iter().map(|f| (f.object_meta.location.as_ref()[strip..].to_string(), f.object_meta.size)).collect())
    }
}

/// One strand table over the storage layout (see the module docs).
pub struct StrandTable {
    store: Arc<dyn ObjectStore>,
    url: datafusion::execution::object_store::ObjectStoreUrl,
    prefix: ObjectPath,
    table: &'static TableInfo,
    schema: TableSchema,
    range: Option<TimeRange>,
    lookback_ns: i64,
    files: OnceCell<Vec<PartitionedFile>>,
}

impl fmt::Debug for StrandTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrandTable").field("table", &self.table.name).field("range", &self.range).finish()
    }
}

impl StrandTable {
    fn new(
        store: Arc<dyn ObjectStore>,
        root: &ListingTableUrl,
        table: &'static TableInfo,
        range: Option<TimeRange>,
    ) -> Self {
        // Points in time as int64 ns (schema 1's types) whatever the files'
        // version: the report's SQL and `strand query` give the same answers
        // over version 1, version 2 and mixed files.
        let file_schema: SchemaRef = strand_schemas::table::int64_times(&(table.schema)());
        let schema = TableSchema::builder(file_schema)
            .with_table_partition_cols(vec![Arc::new(Field::new(DATE_COLUMN, DataType::Utf8, false))])
            .build();
        Self {
            store,
            url: root.object_store(),
            prefix: root.prefix().clone(),
            table,
            schema,
            range,
            lookback_ns: DEFAULT_LOOKBACK_NS,
            files: OnceCell::new(),
        }
    }

    fn key(&self, rel: &str) -> ObjectPath {
        if self.prefix.as_ref().is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn rel<'a>(&self, p: &'a ObjectPath) -> &'a str {
        let n = self.prefix.as_ref().len() + usize::from(!self.prefix.as_ref().is_empty());
        &p.as_ref()[n.min(p.as_ref().len())..]
    }

    async fn list(&self, dir: &str) -> datafusion::error::Result<Vec<ObjectMeta>> {
        let metas: Vec<ObjectMeta> = self.store.list(Some(&self.key(dir))).try_collect().await?;
        Ok(metas.into_iter().filter(|m| m.location.filename().is_some_and(layout::is_data_file)).collect())
    }

    /// The directories to list: whole tables, or the dates of the range.
    fn dirs(&self, base: &str) -> Vec<String> {
        match self.range {
            None => vec![base.to_string()],
            Some(r) => {
                let first = r.start_ns.saturating_sub(self.lookback_ns.max(DAY_NS)).div_euclid(DAY_NS);
                let last = (r.end_ns - 1).div_euclid(DAY_NS);
                (first..=last).map(|d| format!("{base}/date={}", utc_date(d * DAY_NS))).collect()
            }
        }
    }

    /// Whether a file (path relative to the root) can hold rows of the range.
    fn in_range(&self, rel: &str) -> bool {
        let Some(r) = self.range else { return true };
        let Some(date) = layout::partition(rel, "date") else { return false };
        match layout::partition(rel, "hour").and_then(|h| h.parse::<u32>().ok()) {
            Some(hour) => layout::hour_start_ns(date, hour)
                .is_some_and(|h0| h0 < r.end_ns && h0 + HOUR_NS > r.start_ns.saturating_sub(self.lookback_ns)),
            // No hour level: filed under the date of the batch's earliest row.
            None => layout::parse_date(date).is_some_and(|d| {
                d * DAY_NS < r.end_ns && (d + 2) * DAY_NS > r.start_ns.saturating_sub(self.lookback_ns)
            }),
        }
    }

    /// The files to read: landed batches no part holds, then every other data file.
    async fn list_files(&self) -> datafusion::error::Result<Vec<PartitionedFile>> {
        let name = self.table.name;
        // Landed first (see the module docs).
        let mut landed = Vec::new();
        for dir in self.dirs(&format!("{LANDING}/{name}")) {
            landed.extend(self.list(&dir).await?.into_iter().filter(|m| self.in_range(self.rel(&m.location))));
        }
        let mut stored = Vec::new();
        for dir in self.dirs(name) {
            stored.extend(self.list(&dir).await?.into_iter().filter(|m| self.in_range(self.rel(&m.location))));
        }
        // The units with landed batches, and what their parts hold.
        let mut held: HashMap<String, HashSet<String>> = HashMap::new();
        for m in &landed {
            let rel = self.rel(&m.location);
            let Some(unit) = unit_of(rel.strip_prefix(LANDING).unwrap_or(rel).trim_start_matches('/')) else {
                continue;
            };
            held.entry(unit).or_default();
        }
        for m in &stored {
            let rel = self.rel(&m.location);
            let Some(unit) = unit_of(rel) else { continue };
            if let Some(set) = held.get_mut(&unit)
                && m.location.filename().and_then(layout::parse_part).is_some()
            {
                set.extend(part_batches(self.store.as_ref(), m).await?);
            }
        }
        let mut out = Vec::with_capacity(landed.len() + stored.len());
        for m in landed {
            let rel = self.rel(&m.location).to_string();
            let trimmed = rel.strip_prefix(LANDING).unwrap_or(&rel).trim_start_matches('/');
            let skip = unit_of(trimmed)
                .and_then(|u| held.get(&u))
                .is_some_and(|set| layout::batch_entry(&rel).is_some_and(|e| set.contains(e)));
            if !skip {
                out.push(self.file(m));
            }
        }
        out.extend(stored.into_iter().map(|m| self.file(m)));
        Ok(out)
    }

    fn file(&self, m: ObjectMeta) -> PartitionedFile {
        let date = layout::partition(self.rel(&m.location), "date").unwrap_or("").to_string();
        let mut f = PartitionedFile::from(m);
        f.partition_values = vec![ScalarValue::Utf8(Some(date))];
        f
    }

    async fn files(&self) -> datafusion::error::Result<&Vec<PartitionedFile>> {
        self.files.get_or_try_init(|| self.list_files()).await
    }
}

use layout::unit_of;

/// The landed batches a compacted part holds (its footer's `strand.batches`).
async fn part_batches(store: &dyn ObjectStore, m: &ObjectMeta) -> datafusion::error::Result<Vec<String>> {
    let err = |e: String| datafusion::error::DataFusionError::Execution(format!("{}: {e}", m.location));
    if m.size < 12 {
        return Err(err("too short for a Parquet file".into()));
    }
    let tail = store.get_range(&m.location, m.size - 8..m.size).await?;
    if &tail[4..] != b"PAR1" {
        return Err(err("no PAR1 magic at the end".into()));
    }
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if len + 12 > m.size {
        return Err(err(format!("footer length {len} exceeds the file")));
    }
    let footer = store.get_range(&m.location, m.size - 8 - len..m.size - 8).await?;
    let meta = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&footer)
        .map_err(|e| err(format!("unreadable footer: {e}")))?;
    let value = meta
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == META_BATCHES))
        .and_then(|e| e.value.clone())
        .ok_or_else(|| err(format!("a compacted part without `{META_BATCHES}`")))?;
    Ok(layout::parse_batches(&value).map(str::to_string).collect())
}

#[async_trait]
impl TableProvider for StrandTable {
    fn schema(&self) -> SchemaRef {
        self.schema.table_schema().clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // DataFusion keeps the filter and pushes it into the Parquet scan
        // (row groups and pages pruned by their statistics).
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let files = self.files().await?;
        if files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema().project(p)?),
                None => self.schema(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let n = state.config().target_partitions().clamp(1, files.len());
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n];
        for (i, f) in files.iter().enumerate() {
            groups[i % n].push(f.clone());
        }
        let format = ParquetFormat::default();
        let source = format.file_source(self.schema.clone());
        let config = FileScanConfigBuilder::new(self.url.clone(), source)
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}

/// The filter of a table for `range`: the rows' own times.
pub(crate) fn range_filter(table: &TableInfo, range: TimeRange) -> Expr {
    let (start_col, end_col) = table.time;
    match (end_col != start_col).then_some(end_col) {
        None => col(start_col).gt_eq(lit(range.start_ns)).and(col(start_col).lt(lit(range.end_ns))),
        Some(end_col) => col(start_col)
            .lt(lit(range.end_ns))
            .and(coalesce(vec![col(end_col), col(start_col)]).gt_eq(lit(range.start_ns))),
    }
}

/// [`range_filter`] as SQL text: what an outside engine (Spark, DuckDB)
/// filters each table with, from `params.json`, so that the rule stays here.
pub(crate) fn range_filter_sql(table: &TableInfo, range: TimeRange) -> String {
    let (start_col, end_col) = table.time;
    if end_col == start_col {
        format!("{start_col} >= {} AND {start_col} < {}", range.start_ns, range.end_ns)
    } else {
        format!("{start_col} < {} AND COALESCE({end_col}, {start_col}) >= {}", range.end_ns, range.start_ns)
    }
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
    use strand_schemas::{GpuSample, Table, Window, to_parquet_bytes};

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
    async fn hive_directories_are_read_and_staging_and_metadata_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "2024-03-01", "c1", "n1", "batch-0001", &samples("c1", "n1", &[T0, T0 + 1]));
        write(dir.path(), "2024-03-01", "c1", "n2", "batch-0002", &samples("c1", "n2", &[T0 + 2]));
        write(dir.path(), "2024-03-02", "c2", "n1", "batch-0003", &samples("c2", "n1", &[T0 + 86_400_000_000_000]));
        // Writes in progress (object_store's name, ours) and metadata files are not read.
        let leaf = dir.path().join(batch_path("gpu_samples", "2024-03-01", "c1", "n1", "batch-0004"));
        let mut staging = leaf.clone().into_os_string();
        staging.push("#1");
        std::fs::write(staging, b"PAR1 half a file").unwrap();
        std::fs::write(leaf.with_file_name(".batch-0005.parquet.1.tmp"), b"PAR1 half").unwrap();
        std::fs::write(dir.path().join("gpu_samples/_common_metadata"), b"PAR1 schema only").unwrap();
        std::fs::write(dir.path().join("gpu_samples/notes.txt"), b"x").unwrap();

        let ds = Dataset::open(dir.path().to_str().unwrap()).await.unwrap();
        assert_eq!(int(&rows(&ds, "SELECT count(*) FROM gpu_samples").await), 4);
        assert_eq!(int(&rows(&ds, "SELECT count(*) FROM gpu_samples WHERE node = 'n1'").await), 3);
        assert_eq!(int(&rows(&ds, "SELECT count(*) FROM gpu_samples WHERE date = '2024-03-02'").await), 1);
        let b = rows(&ds, "SELECT cluster, node, date FROM gpu_samples WHERE ts_ns = 1709251200000000002").await;
        let s = |i: usize| b[0].column(i).as_any().downcast_ref::<StringArray>().unwrap().value(0).to_string();
        assert_eq!((s(0), s(1), s(2)), ("c1".into(), "n2".into(), "2024-03-01".into()));
        assert_eq!(ds.files("gpu_samples").await.unwrap().len(), 3);
    }

    /// A compacted part holding `held` (landed batch entries) with `rows`.
    fn part<T: Table>(root: &std::path::Path, unit: &str, generation: u32, held: &[&str], rows: &[T]) {
        let path = root.join(unit).join(layout::part_name(generation));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let schema = T::schema();
        let props = strand_schemas::parquet_io::writer_properties(&schema, T::NAME, T::VERSION);
        let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), schema, Some(props)).unwrap();
        w.write(&T::to_batch(rows)).unwrap();
        w.append_key_value_metadata(parquet::file::metadata::KeyValue::new(META_BATCHES.into(), held.join("\n")));
        std::fs::write(path, w.into_inner().unwrap()).unwrap();
    }

    fn landed<T: Table>(root: &std::path::Path, ts: i64, node: &str, id: &str, rows: &[T]) {
        let path = root.join(layout::landed_path(T::NAME, ts, "c", node, id));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, to_parquet_bytes(rows).unwrap()).unwrap();
    }

    #[tokio::test]
    async fn landed_batches_a_part_holds_are_read_once_and_a_range_lists_only_its_hours() {
        const H: i64 = HOUR_NS;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (b1, b2) = (samples("c", "n1", &[T0 + 1, T0 + 2]), samples("c", "n2", &[T0 + 3]));
        // Hour 0 compacted (b1), b1's landed file not yet removed; b2 arrived late, not compacted yet.
        landed(root, T0, "n1", "b1", &b1);
        landed(root, T0, "n2", "b2", &b2);
        part(root, &layout::unit_dir("gpu_samples", "2024-03-01", 0, "c"), 1, &["node_dir=n1/b1.parquet"], &b1);
        // Hour 1, landed only; history ten days earlier, compacted.
        landed(root, T0 + H, "n1", "b3", &samples("c", "n1", &[T0 + H + 5]));
        let old = samples("c", "n1", &[T0 - 10 * DAY_NS]);
        part(root, &layout::unit_dir("gpu_samples", "2024-02-20", 0, "c"), 1, &["node_dir=n1/b0.parquet"], &old);

        let ds = Dataset::open(root.to_str().unwrap()).await.unwrap();
        assert_eq!(int(&rows(&ds, "SELECT count(*) FROM gpu_samples").await), 5, "each row once");
        assert_eq!(int(&rows(&ds, "SELECT count(DISTINCT ts_ns) FROM gpu_samples").await), 5);

        // Hour 1: its own partition and the hour before (the lookback), nothing older.
        let ds = Dataset::open_range(root.to_str().unwrap(), TimeRange::new(T0 + H, T0 + 2 * H)).await.unwrap();
        let mut files: Vec<String> = ds.files("gpu_samples").await.unwrap().into_iter().map(|f| f.0).collect();
        files.sort();
        assert_eq!(
            files,
            [
                "_landing/gpu_samples/date=2024-03-01/hour=00/cluster_dir=c/node_dir=n2/b2.parquet",
                "_landing/gpu_samples/date=2024-03-01/hour=01/cluster_dir=c/node_dir=n1/b3.parquet",
                "gpu_samples/date=2024-03-01/hour=00/cluster_dir=c/part-000001.parquet",
            ]
        );
        assert_eq!(int(&rows(&ds, "SELECT count(*) FROM gpu_samples").await), 1);
        // A day: hour 0 read once.
        let ds =
            Dataset::open_range(root.to_str().unwrap(), TimeRange::new(T0, T0 + 86_400_000_000_000)).await.unwrap();
        assert_eq!(int(&rows(&ds, "SELECT count(*) FROM gpu_samples").await), 4);
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
