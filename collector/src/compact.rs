//! Compaction: closed hours of landed batches become one large Parquet file
//! per table, hour and cluster, committed atomically; retention expires old
//! dates (`strand_schemas::layout` has the paths, docs/fleet-scale.md the
//! guarantees).
//!
//! A unit (table, hour, cluster) is compacted in generations. A pass lists
//! the unit's landed batches, then its parts, and reads from each part's
//! footer the batches it holds. The batches no part holds are written into
//! `part-<generation>.parquet`, generation = the highest + 1, created only if
//! absent: that conditional create is the commit. A second compactor that
//! loses the race re-reads the parts and commits what is left, if anything.
//! Batches held by a part are removed from the landing area once the part is
//! `cleanup_delay` old (a reader that listed them before the commit still
//! finds them for that long).
//!
//! Crash points and what the next pass does (each tested with the real
//! binary aborting there, `STRAND_COMPACT_CRASH`):
//! - before the commit: nothing visible changed; the pass redoes the unit;
//! - after the commit, before cleanup: the landed batches are held by the
//!   part, so readers skip them; the pass removes them;
//! - during cleanup: the same, for the rest.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::{KeyValue, ParquetMetaDataReader};
use strand_schemas::layout::{self, LANDING, META_BATCHES};
use strand_schemas::table::{META_TABLE, META_VERSION};
use strand_schemas::{SchemaVersion, TableInfo};

use super::store::{Entry, PutOutcome, Store};

/// How compaction and retention run (`[compaction]` in the configuration).
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// An hour is compacted once it ended this long ago (late batches after
    /// that become a further generation).
    pub after: Duration,
    /// Landed batches held by a part are removed once the part is this old.
    pub cleanup_delay: Duration,
    /// A part holds at most about this many bytes of landed batches; a
    /// larger unit is committed as several generations.
    pub max_part_bytes: u64,
    /// Dates older than this are deleted (compacted and landed); `None` keeps everything.
    pub retention: Option<Duration>,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(15 * 60),
            cleanup_delay: Duration::from_secs(10 * 60),
            max_part_bytes: 256 << 20,
            retention: None,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompactStats {
    pub units: u64,
    pub parts_written: u64,
    pub batches_compacted: u64,
    pub rows_compacted: u64,
    /// Generations another compactor committed first.
    pub conflicts: u64,
    pub landed_removed: u64,
    /// Landed batches left for a newer collector (a newer minor schema version).
    pub batches_skipped: u64,
    pub dates_expired: u64,
}

/// The landed batches each part holds, read once per part (parts never change).
#[derive(Default)]
pub struct Coverage {
    parts: Mutex<HashMap<String, Arc<HashSet<String>>>>,
}

const COVERAGE_CACHE: usize = 100_000;

impl Coverage {
    /// Batches (`node_dir=N/<batch>.parquet`) held by the part at `key`.
    pub async fn part(&self, store: &Store, key: &str, size: u64) -> anyhow::Result<Arc<HashSet<String>>> {
        if let Some(b) = self.parts.lock().map_err(|_| anyhow::anyhow!("coverage cache poisoned"))?.get(key) {
            return Ok(b.clone());
        }
        let batches = Arc::new(read_part_batches(store, key, size).await?);
        let mut parts = self.parts.lock().map_err(|_| anyhow::anyhow!("coverage cache poisoned"))?;
        if parts.len() >= COVERAGE_CACHE {
            parts.clear();
        }
        parts.insert(key.to_string(), batches.clone());
        Ok(batches)
    }

    /// The parts of a unit and, for each landed batch entry they hold, the part's entry.
    pub async fn unit(&self, store: &Store, unit: &str) -> anyhow::Result<(Vec<(u32, Entry)>, HashMap<String, Entry>)> {
        let mut parts: Vec<(u32, Entry)> = store
            .list(unit)
            .await?
            .into_iter()
            .filter_map(|e| {
                let name = e.key.rsplit('/').next()?;
                // Only the unit's own parts, not deeper directories.
                (e.key.len() == unit.len() + 1 + name.len()).then_some(())?;
                Some((layout::parse_part(name)?, e))
            })
            .collect();
        parts.sort_by_key(|(g, _)| *g);
        let mut held = HashMap::new();
        for (_, e) in &parts {
            for b in self.part(store, &e.key, e.size).await?.iter() {
                held.insert(b.clone(), e.clone());
            }
        }
        Ok((parts, held))
    }
}

/// Reads `strand.batches` from a part's footer (two ranged reads).
async fn read_part_batches(store: &Store, key: &str, size: u64) -> anyhow::Result<HashSet<String>> {
    if size < 12 {
        anyhow::bail!("{key}: {size} bytes is not a Parquet file");
    }
    let tail = store.get_range(key, size - 8..size).await?;
    if &tail[4..] != b"PAR1" {
        anyhow::bail!("{key}: not a Parquet file (no PAR1 magic at the end)");
    }
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if len + 12 > size {
        anyhow::bail!("{key}: footer length {len} exceeds the file ({size} bytes)");
    }
    let footer = store.get_range(key, size - 8 - len..size - 8).await?;
    let meta = ParquetMetaDataReader::decode_metadata(&footer).with_context(|| format!("{key}: unreadable footer"))?;
    let kv = meta.file_metadata().key_value_metadata();
    let value = kv
        .and_then(|kv| kv.iter().find(|e| e.key == META_BATCHES))
        .and_then(|e| e.value.clone())
        .with_context(|| format!("{key}: a compacted part without `{META_BATCHES}` in its metadata"))?;
    Ok(layout::parse_batches(&value).map(str::to_string).collect())
}

/// Where the test suite makes the process die as `kill -9` would.
fn crash_point(name: &str) {
    if std::env::var("STRAND_COMPACT_CRASH").is_ok_and(|v| v == name) {
        eprintln!("strand: STRAND_COMPACT_CRASH={name}: aborting");
        std::process::abort();
    }
}

/// One pass over the whole store: every closed hour with landed batches,
/// then retention.
pub async fn compact_once(
    store: &Store,
    coverage: &Coverage,
    opts: &CompactOptions,
    now: SystemTime,
) -> anyhow::Result<CompactStats> {
    let mut stats = CompactStats::default();
    let now_ns = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    for table in strand_schemas::all_tables() {
        let base = format!("{LANDING}/{}", table.name);
        for date_dir in store.list_dirs(&base).await? {
            let Some(date) = date_dir.strip_prefix("date=") else { continue };
            for hour_dir in store.list_dirs(&format!("{base}/{date_dir}")).await? {
                let Some(hour) = hour_dir.strip_prefix("hour=").and_then(|h| h.parse::<u32>().ok()) else { continue };
                let Some(h0) = layout::hour_start_ns(date, hour) else { continue };
                if h0 + layout::HOUR_NS + opts.after.as_nanos() as i64 > now_ns {
                    continue; // not closed yet
                }
                for cluster_dir in store.list_dirs(&format!("{base}/{date_dir}/{hour_dir}")).await? {
                    let Some(cluster) = layout::dir_value(&cluster_dir, layout::CLUSTER_KEY) else { continue };
                    let unit = layout::unit_dir(table.name, date, hour, cluster);
                    compact_unit(store, coverage, table, &unit, opts, now, &mut stats)
                        .await
                        .with_context(|| format!("compacting {unit}"))?;
                }
            }
        }
    }
    if let Some(keep) = opts.retention {
        expire(store, now_ns - keep.as_nanos() as i64, &mut stats).await?;
    }
    Ok(stats)
}

/// Compacts one unit (table, hour, cluster).
pub async fn compact_unit(
    store: &Store,
    coverage: &Coverage,
    table: &TableInfo,
    unit: &str,
    opts: &CompactOptions,
    now: SystemTime,
    stats: &mut CompactStats,
) -> anyhow::Result<()> {
    stats.units += 1;
    let landing = format!("{LANDING}/{unit}");
    for _attempt in 0..8 {
        // Landed first, then parts: a batch compacted in between is then seen as held.
        let landed: Vec<Entry> = store
            .list(&landing)
            .await?
            .into_iter()
            .filter(|e| e.key.rsplit('/').next().is_some_and(layout::is_data_file))
            .collect();
        let (parts, held) = coverage.unit(store, unit).await?;
        let next = parts.last().map_or(1, |(g, _)| g + 1);
        let mut todo: Vec<(String, Entry)> = Vec::new();
        for e in landed {
            let Some(entry) = layout::batch_entry(&e.key).map(str::to_string) else { continue };
            match held.get(&entry) {
                Some(part) => {
                    let age = now.duration_since(part.modified).unwrap_or_default();
                    if age >= opts.cleanup_delay {
                        store.delete(&e.key).await?;
                        stats.landed_removed += 1;
                        crash_point("during_cleanup");
                    }
                }
                None => todo.push((entry, e)),
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        todo.sort_by(|a, b| a.0.cmp(&b.0));
        // The first part's worth of batches; what is left goes into the next generation.
        let mut take = 0;
        let mut bytes = 0u64;
        while take < todo.len() && (take == 0 || bytes + todo[take].1.size <= opts.max_part_bytes) {
            bytes += todo[take].1.size;
            take += 1;
        }
        let batch = &todo[..take];
        let (data, rows, written) = match build_part(store, table, batch, stats).await? {
            Built::Part(data, rows, written) => (data, rows, written),
            Built::Nothing => return Ok(()), // every batch was skipped
            Built::Vanished => {
                // Another compactor committed these batches and removed them
                // after we listed them: look again.
                stats.conflicts += 1;
                continue;
            }
        };
        crash_point("before_commit");
        let key = format!("{unit}/{}", layout::part_name(next));
        match store.put_once(&key, data).await? {
            PutOutcome::Stored => {
                stats.parts_written += 1;
                stats.batches_compacted += written.len() as u64;
                stats.rows_compacted += rows;
                crash_point("after_commit");
                if opts.cleanup_delay.is_zero() {
                    for (entry, e) in batch {
                        if written.contains(entry) {
                            store.delete(&e.key).await?;
                            stats.landed_removed += 1;
                            crash_point("during_cleanup");
                        }
                    }
                }
                if take == todo.len() {
                    return Ok(());
                }
            }
            PutOutcome::Duplicate => {
                stats.conflicts += 1;
                tracing::info!("{key}: committed by another compactor meanwhile; looking again");
            }
        }
    }
    anyhow::bail!("{unit}: gave up after 8 rounds of commits by other compactors")
}

/// What [`build_part`] made.
enum Built {
    /// The part's bytes, its rows, the batch entries it holds.
    Part(Bytes, u64, HashSet<String>),
    /// No batch could go in (all of a newer schema version).
    Nothing,
    /// A landed batch disappeared meanwhile (another compactor's cleanup).
    Vanished,
}

/// The part holding `batch`: every row in the table's current schema, the
/// batch entries in the footer.
async fn build_part(
    store: &Store,
    table: &TableInfo,
    batch: &[(String, Entry)],
    stats: &mut CompactStats,
) -> anyhow::Result<Built> {
    let schema = (table.schema)();
    let props = strand_schemas::parquet_io::writer_properties(&schema, table.name, table.version);
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))?;
    let mut entries = Vec::new();
    for (entry, e) in batch {
        let data = match store.get(&e.key).await {
            Ok(data) => data,
            Err(_) if !store.exists(&e.key).await? => return Ok(Built::Vanished),
            Err(err) => return Err(err),
        };
        match read_landed(&e.key, data, table, &schema)? {
            Some(batches) => {
                for b in batches {
                    writer.write(&b)?;
                }
                entries.push(entry.clone());
            }
            None => stats.batches_skipped += 1,
        }
    }
    if entries.is_empty() {
        return Ok(Built::Nothing);
    }
    writer.append_key_value_metadata(KeyValue::new(META_BATCHES.to_string(), entries.join("\n")));
    let rows =
        writer.flushed_row_groups().iter().map(|g| g.num_rows() as u64).sum::<u64>() + writer.in_progress_rows() as u64;
    let out = writer.into_inner()?;
    Ok(Built::Part(Bytes::from(out), rows, entries.into_iter().collect()))
}

/// A landed batch as record batches of the current schema; `None` (and a
/// warning) for a batch of a newer minor version, whose extra columns this
/// collector would drop.
fn read_landed(
    key: &str,
    data: Bytes,
    table: &TableInfo,
    schema: &SchemaRef,
) -> anyhow::Result<Option<Vec<RecordBatch>>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(data).with_context(|| format!("{key}: unreadable"))?;
    let kv = builder.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    if get(META_TABLE).as_deref() != Some(table.name) {
        anyhow::bail!("{key}: not a file of table {}", table.name);
    }
    let version = get(META_VERSION).as_deref().and_then(SchemaVersion::parse);
    let newer = version.is_none_or(|v| v > table.version);
    let unknown = builder.schema().fields().iter().any(|f| schema.field_with_name(f.name()).is_err());
    if newer || unknown {
        tracing::warn!(
            "{key}: schema version {version:?} is newer than this collector's {} of {}; left in the landing area for a newer collector",
            table.version,
            table.name
        );
        return Ok(None);
    }
    let reader = builder.with_batch_size(64 * 1024).build()?;
    let mut out = Vec::new();
    for b in reader {
        let b = b.with_context(|| format!("{key}: cannot decode"))?;
        out.push(to_schema(key, &b, schema)?);
    }
    Ok(Some(out))
}

/// A batch of an older (or the same) minor version in the current schema:
/// columns added since read as null.
pub fn to_schema(key: &str, b: &RecordBatch, schema: &SchemaRef) -> anyhow::Result<RecordBatch> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        match b.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => cols.push(c.clone()),
            Some(c) => cols.push(arrow::compute::cast(c, f.data_type()).with_context(|| {
                format!("{key}: column `{}` ({}) is not {}", f.name(), c.data_type(), f.data_type())
            })?),
            None if f.is_nullable() => cols.push(new_null_array(f.data_type(), b.num_rows())),
            None => anyhow::bail!("{key}: missing column `{}`", f.name()),
        }
    }
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Deletes every `date=` directory before the date of `cutoff_ns`, compacted and landed.
async fn expire(store: &Store, cutoff_ns: i64, stats: &mut CompactStats) -> anyhow::Result<()> {
    let cutoff = strand_schemas::clock::utc_date(cutoff_ns);
    for table in strand_schemas::all_tables() {
        for base in [table.name.to_string(), format!("{LANDING}/{}", table.name)] {
            for date_dir in store.list_dirs(&base).await? {
                let Some(date) = date_dir.strip_prefix("date=") else { continue };
                if layout::parse_date(date).is_none() || date >= cutoff.as_str() {
                    continue;
                }
                let dir = format!("{base}/{date_dir}");
                for e in store.list(&dir).await? {
                    store.delete(&e.key).await?;
                }
                store.remove_empty_dirs(&dir);
                stats.dates_expired += 1;
                tracing::info!("retention: removed {dir}");
            }
        }
    }
    Ok(())
}

/// Writes `<table>/_common_metadata` for every table: a Parquet file without
/// rows whose schema is this collector's. Spark reads the schema from it
/// (before any data file), so columns added in a newer minor version show
/// in every row, as null where older files lack them, without `mergeSchema`.
pub async fn write_common_metadata(store: &Store) -> anyhow::Result<()> {
    for table in strand_schemas::all_tables() {
        let schema = (table.schema)();
        let props = strand_schemas::parquet_io::writer_properties(&schema, table.name, table.version);
        let writer = ArrowWriter::try_new(Vec::new(), schema, Some(props))?;
        let data = Bytes::from(writer.into_inner()?);
        let key = format!("{}/_common_metadata", table.name);
        if store.get(&key).await.ok().as_ref() != Some(&data) {
            store.put_replace(&key, data).await?;
        }
    }
    Ok(())
}
