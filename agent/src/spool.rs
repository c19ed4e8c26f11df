//! The spool: the agent's data directory of finished Parquet batches.
//!
//! A batch is written to a hidden temporary file next to its final place,
//! fsynced, renamed, and the directory fsynced: a batch file either exists
//! complete or not at all, whatever kills the agent. In standalone mode the
//! files stay (the data directory); with a collector the uploader ships the
//! oldest first and removes each after the collector acknowledged it. Over
//! the quota, the oldest files are evicted and counted — never silently.
//!
//! Layout (Hive, as in the collector):
//! `<root>/<table>/date=YYYY-MM-DD/cluster_dir=<c>/node_dir=<n>/<batch-id>.parquet`,
//! batch id `<utc-ns, 19 digits>-<16 hex>` so names sort oldest first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use strand_schemas::{layout, protocol};

use crate::metrics::AgentMetrics;
use crate::ship_requests::ShipRequests;

/// A committed batch file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub table: String,
    pub date: String,
    pub batch_id: String,
    /// The identity the batch was written with (its `cluster_dir=`/`node_dir=`
    /// directories): it is uploaded under it, even after a rename.
    pub cluster: String,
    pub node: String,
    pub bytes: u64,
}

/// A batch being written; invisible to readers until committed. Its
/// directory is chosen at commit, from the earliest row it ended up holding.
#[derive(Debug)]
pub struct Pending {
    tmp: PathBuf,
    table: String,
    batch_id: String,
}

impl Pending {
    /// The batch's journal: its rows as an Arrow IPC stream, appended as
    /// they come and synced about once a second, so that `kill -9` loses at
    /// most that second. Turned into the batch at the next start
    /// ([`Spool::open`]) when the process died before the commit.
    pub fn journal(&self) -> PathBuf {
        self.tmp.with_file_name(format!(".{}.journal", self.batch_id))
    }
}

/// A table kept in the data directory and not shipped (full `kernel_events`
/// by default: the collector gets `kernel_summaries`), with its retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepLocal {
    pub table: String,
    /// Its files together stay under this many bytes (oldest removed first).
    pub max_bytes: u64,
    /// A file whose first row is older than this is removed.
    pub max_age: std::time::Duration,
}

pub struct Spool {
    root: PathBuf,
    cluster: String,
    node: String,
    quota: u64,
    metrics: AgentMetrics,
    keep_local: Vec<KeepLocal>,
    /// Jobs whose batches of the tables kept local are shipped all the same.
    requests: ShipRequests,
    /// What the last look at the requests found, to log only changes.
    requests_seen: Mutex<Requested>,
    /// The jobs in each kept-local file, read once (the file does not change).
    jobs_in: Mutex<HashMap<PathBuf, BTreeSet<String>>>,
    /// Committed files by (batch id, table): oldest first.
    index: Mutex<BTreeMap<(String, String), Entry>>,
}

/// What `open` found left over from an earlier run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub complete_files: usize,
    pub complete_bytes: u64,
    pub tmp_removed: usize,
    /// Journals of batches a crash left open, turned into batches.
    pub journals_recovered: usize,
    pub journal_rows: u64,
}

/// A new batch id for a batch whose first row is at `utc_ns`.
pub fn new_batch_id(utc_ns: i64) -> String {
    format!("{:019}-{:016x}", utc_ns.max(0), fastrand::u64(..))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What the request file said when it was last read (logged on change).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requested {
    Jobs(BTreeSet<String>),
    Unreadable(String),
}

impl Spool {
    /// Opens (creating) the spool, removes temporary files of a crashed run
    /// and indexes the complete ones.
    pub fn open(
        root: &Path,
        cluster: &str,
        node: &str,
        quota: u64,
        metrics: AgentMetrics,
    ) -> io::Result<(Self, Recovery)> {
        fs::create_dir_all(root)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create data directory {}: {e}", root.display())))?;
        metrics.spool_quota_bytes.set(i64::try_from(quota).unwrap_or(i64::MAX));
        let spool = Self {
            root: root.to_path_buf(),
            cluster: cluster.into(),
            node: node.into(),
            quota,
            metrics,
            keep_local: Vec::new(),
            requests: ShipRequests::in_data_dir(root),
            requests_seen: Mutex::new(Requested::Jobs(BTreeSet::new())),
            jobs_in: Mutex::new(HashMap::new()),
            index: Mutex::new(BTreeMap::new()),
        };
        let mut rec = Recovery::default();
        let mut found = Vec::new();
        let mut journals = Vec::new();
        walk(root, &mut |path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') && name.ends_with(".journal") {
                journals.push(path.to_path_buf());
            } else if name.starts_with('.') && name.ends_with(".tmp") {
                match fs::remove_file(path) {
                    Ok(()) => rec.tmp_removed += 1,
                    Err(e) => tracing::warn!("spool: cannot remove leftover {}: {e}", path.display()),
                }
            } else if let Some(entry) = spool.parse_entry(path) {
                found.push(entry);
            }
        })?;
        rec.complete_files = found.len();
        rec.complete_bytes = found.iter().map(|e| e.bytes).sum();
        if let Ok(mut idx) = spool.index.lock() {
            for e in found {
                idx.insert((e.batch_id.clone(), e.table.clone()), e);
            }
        }
        for j in journals {
            match spool.recover_journal(&j) {
                Ok(Some(rows)) => {
                    rec.journals_recovered += 1;
                    rec.journal_rows += rows;
                }
                Ok(None) => {}
                Err(e) => tracing::error!("spool: cannot recover the journal {}: {e}; its rows are lost", j.display()),
            }
        }
        if rec.journals_recovered > 0 {
            tracing::warn!(
                "spool: {} batch(es) left open by an earlier crash recovered from their journals ({} rows)",
                rec.journals_recovered,
                rec.journal_rows
            );
        }
        spool.metrics.spool_tmp_removed.inc_by(rec.tmp_removed as u64);
        if rec.tmp_removed > 0 {
            tracing::warn!("spool: removed {} incomplete batch file(s) left by an earlier crash", rec.tmp_removed);
        }
        spool.update_gauges();
        Ok((spool, rec))
    }

    /// Turns the journal of a batch a crash left open into a committed
    /// batch: every complete record batch in it (a torn last one is
    /// dropped), under the identity its rows carry. Returns the rows, or
    /// `None` for an empty journal (removed).
    fn recover_journal(&self, path: &Path) -> io::Result<Option<u64>> {
        use arrow::array::{Array, AsArray};
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let batch_id = name.trim_start_matches('.').trim_end_matches(".journal").to_string();
        let dir = path.parent().unwrap_or(&self.root);
        let table = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Some(info) = strand_schemas::table_info(table) else {
            fs::remove_file(path)?;
            return Ok(None);
        };
        let mut batches = Vec::new();
        if let Ok(reader) = arrow::ipc::reader::StreamReader::try_new(io::BufReader::new(File::open(path)?), None) {
            for b in reader {
                match b {
                    Ok(b) => batches.push(b),
                    Err(_) => break, // the record being written when the process died
                }
            }
        }
        let schema = (info.schema)();
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let time = protocol::time_column(&schema);
        let min_ns = batches
            .iter()
            .filter_map(|b| {
                strand_schemas::table::time_values(b.column_by_name(time?)?).and_then(|v| arrow::compute::min(&v))
            })
            .min();
        let (Some(min_ns), true) = (min_ns, rows > 0) else {
            fs::remove_file(path)?;
            return Ok(None);
        };
        let first = |c: &str| {
            batches.iter().find_map(|b| {
                let a = b.column_by_name(c)?.as_string_opt::<i32>()?;
                (a.len() > 0 && a.is_valid(0)).then(|| a.value(0).to_string())
            })
        };
        let pending = Pending { tmp: dir.join(format!(".{batch_id}.parquet.tmp")), table: info.name.into(), batch_id };
        let props = strand_schemas::parquet_io::writer_properties(&schema, info.name, info.version);
        let written = File::create(&pending.tmp).and_then(|file| {
            let mut w =
                parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(io::Error::other)?;
            for b in &batches {
                w.write(b).map_err(io::Error::other)?;
            }
            w.into_inner().map_err(io::Error::other)
        });
        let file = match written {
            Ok(f) => f,
            Err(e) => {
                self.abandon(pending);
                return Err(e);
            }
        };
        let (cluster, node) = (
            first("cluster").unwrap_or_else(|| self.cluster.clone()),
            first("node").unwrap_or_else(|| self.node.clone()),
        );
        let entry = self.commit_as(pending, file, min_ns, &cluster, &node)?;
        tracing::debug!(
            table = info.name,
            batch = %entry.batch_id,
            rows,
            bytes = entry.bytes,
            "batch committed (recovered from its journal)"
        );
        Ok(Some(rows))
    }

    fn parse_entry(&self, path: &Path) -> Option<Entry> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
        let [table, date, cluster, node, file] = parts.as_slice() else { return None };
        let batch_id = file.strip_suffix(".parquet")?;
        let date = date.strip_prefix("date=")?;
        let cluster = layout::dir_value(cluster, layout::CLUSTER_KEY)?;
        let node = layout::dir_value(node, layout::NODE_KEY)?;
        strand_schemas::table_info(table)?;
        let bytes = fs::metadata(path).ok()?.len();
        Some(Entry {
            path: path.to_path_buf(),
            table: table.to_string(),
            date: date.to_string(),
            batch_id: batch_id.to_string(),
            cluster: cluster.to_string(),
            node: node.to_string(),
            bytes,
        })
    }

    /// Creates the temporary file of a new batch of `table` opened at `utc_ns`
    /// (`<root>/<table>/.<batch-id>.parquet.tmp`: hidden, and not `*.parquet`,
    /// so no reader lists it).
    pub fn create(&self, table: &str, utc_ns: i64) -> io::Result<(Pending, File)> {
        let batch_id = new_batch_id(utc_ns);
        let dir = self.root.join(table);
        fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{batch_id}.parquet.tmp"));
        let file = File::create(&tmp)?;
        Ok((Pending { tmp, table: table.into(), batch_id }, file))
    }

    /// Makes a written batch visible under the date of its earliest row
    /// (`min_ns`, the collector's rule: `protocol::batch_date`): fsync,
    /// rename, fsync the directory. Then enforces the quota.
    pub fn commit(&self, pending: Pending, file: File, min_ns: i64) -> io::Result<Entry> {
        let (cluster, node) = (self.cluster.clone(), self.node.clone());
        self.commit_as(pending, file, min_ns, &cluster, &node)
    }

    fn commit_as(&self, pending: Pending, file: File, min_ns: i64, cluster: &str, node: &str) -> io::Result<Entry> {
        let (tmp, journal) = (pending.tmp.clone(), pending.journal());
        // A failed commit (a full disk) leaves no temporary file behind; a
        // committed batch needs its journal no more.
        let r = self.commit_inner(pending, file, min_ns, cluster, node);
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        let _ = fs::remove_file(&journal);
        r
    }

    fn commit_inner(&self, pending: Pending, file: File, min_ns: i64, cluster: &str, node: &str) -> io::Result<Entry> {
        file.sync_all()?;
        drop(file);
        let date = protocol::utc_date(min_ns);
        let rel = protocol::batch_path(&pending.table, &date, cluster, node, &pending.batch_id);
        let path = self.root.join(rel);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir)?;
        fs::rename(&pending.tmp, &path)?;
        sync_dir(&dir)?;
        let bytes = fs::metadata(&path)?.len();
        let entry = Entry {
            path,
            table: pending.table,
            date,
            batch_id: pending.batch_id,
            cluster: cluster.to_string(),
            node: node.to_string(),
            bytes,
        };
        if let Ok(mut idx) = self.index.lock() {
            idx.insert((entry.batch_id.clone(), entry.table.clone()), entry.clone());
        }
        self.enforce_quota();
        if !self.keep_local.is_empty() {
            self.enforce_retention(strand_schemas::clock::utc_now_ns());
        }
        self.update_gauges();
        Ok(entry)
    }

    /// Removes a batch that will never be committed (e.g. a write error).
    pub fn abandon(&self, pending: Pending) {
        let _ = fs::remove_file(&pending.tmp);
        let _ = fs::remove_file(pending.journal());
    }

    /// Committed batches, oldest first.
    #[cfg(test)]
    pub fn entries(&self) -> Vec<Entry> {
        self.index.lock().map(|i| i.values().cloned().collect()).unwrap_or_default()
    }

    /// Keeps these tables in the data directory (never shipped) within their
    /// retention, applied now and at every commit.
    pub fn set_keep_local(&mut self, keep: Vec<KeepLocal>) {
        self.keep_local = keep;
        self.enforce_retention(strand_schemas::clock::utc_now_ns());
        self.update_gauges();
    }

    /// Committed batches to ship, oldest first: all but the tables kept
    /// local, and of those the files holding a row of a job an operator
    /// asked for (`strand-agent ship-kernel-events`). A file holding rows of
    /// several jobs ships whole.
    pub fn to_ship(&self) -> Vec<Entry> {
        let local = |e: &Entry| self.keep_local.iter().any(|k| k.table == e.table);
        let all: Vec<Entry> = self.index.lock().map(|i| i.values().cloned().collect()).unwrap_or_default();
        let requested = if all.iter().any(local) { self.requested_jobs() } else { BTreeSet::new() };
        all.into_iter().filter(|e| !local(e) || (!requested.is_empty() && self.holds_a_job(e, &requested))).collect()
    }

    /// The jobs requested now; logs when that changes (or the file is bad).
    fn requested_jobs(&self) -> BTreeSet<String> {
        let now = match self.requests.read() {
            Ok(jobs) => Requested::Jobs(jobs),
            Err(e) => Requested::Unreadable(e.to_string()),
        };
        if let Ok(mut last) = self.requests_seen.lock()
            && *last != now
        {
            match &now {
                Requested::Unreadable(err) => tracing::error!(
                    "cannot read the requests to ship kernel_events: {err}; nothing kept local is shipped"
                ),
                Requested::Jobs(jobs) if jobs.is_empty() => {
                    tracing::info!("no job's kernel_events are requested any more: they stay in the data directory")
                }
                Requested::Jobs(jobs) => tracing::info!(
                    "shipping the full kernel_events of job(s) {}, as requested in {}",
                    jobs.iter().map(String::as_str).collect::<Vec<_>>().join(", "),
                    self.requests.path().display()
                ),
            }
            *last = now.clone();
        }
        match now {
            Requested::Jobs(jobs) => jobs,
            Requested::Unreadable(_) => BTreeSet::new(),
        }
    }

    /// Whether a committed file holds a row of one of `jobs` (its `job_id`
    /// column, read once per file; an unreadable file holds none).
    fn holds_a_job(&self, e: &Entry, jobs: &BTreeSet<String>) -> bool {
        let cached = self.jobs_in.lock().ok().and_then(|c| c.get(&e.path).cloned());
        let held = match cached {
            Some(held) => held,
            None => {
                let held = match jobs_in_file(&e.path) {
                    Ok(held) => held,
                    Err(err) => {
                        tracing::warn!("cannot read the job ids of {}: {err}", e.path.display());
                        BTreeSet::new()
                    }
                };
                if let Ok(mut c) = self.jobs_in.lock() {
                    // Entries of removed files go; the map stays the size of the spool.
                    if c.len() > 100_000 {
                        c.clear();
                    }
                    c.insert(e.path.clone(), held.clone());
                }
                held
            }
        };
        !held.is_disjoint(jobs)
    }

    /// Removes files of the tables kept local beyond their size or age.
    fn enforce_retention(&self, now_ns: i64) {
        let Ok(mut idx) = self.index.lock() else { return };
        for k in &self.keep_local {
            let oldest_kept = now_ns.saturating_sub(i64::try_from(k.max_age.as_nanos()).unwrap_or(i64::MAX));
            // Newest first: keep while within the size and the age.
            let mut total = 0u64;
            let mut drop_keys = Vec::new();
            for (key, e) in idx.iter().rev().filter(|(_, e)| e.table == k.table) {
                let first_ns: i64 = e.batch_id.split('-').next().and_then(|t| t.parse().ok()).unwrap_or(i64::MAX);
                total = total.saturating_add(e.bytes);
                if total > k.max_bytes || first_ns < oldest_kept {
                    drop_keys.push(key.clone());
                }
            }
            for key in drop_keys {
                if let Some(e) = idx.remove(&key)
                    && let Err(err) = fs::remove_file(&e.path)
                    && err.kind() != io::ErrorKind::NotFound
                {
                    tracing::warn!("cannot remove {} past its retention: {err}", e.path.display());
                }
            }
        }
    }

    /// Removes a batch (after the collector acknowledged it).
    pub fn remove(&self, entry: &Entry) -> io::Result<()> {
        if let Ok(mut idx) = self.index.lock() {
            idx.remove(&(entry.batch_id.clone(), entry.table.clone()));
        }
        if let Ok(mut jobs) = self.jobs_in.lock() {
            jobs.remove(&entry.path);
        }
        let r = match fs::remove_file(&entry.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        self.update_gauges();
        r
    }

    /// Moves a batch the collector refused for good out of the queue, into
    /// `<root>/.rejected/`, keeping it for inspection.
    pub fn quarantine(&self, entry: &Entry) -> io::Result<PathBuf> {
        let dir = self.root.join(".rejected");
        fs::create_dir_all(&dir)?;
        let to = dir.join(format!("{}-{}.parquet", entry.table, entry.batch_id));
        fs::rename(&entry.path, &to)?;
        if let Ok(mut idx) = self.index.lock() {
            idx.remove(&(entry.batch_id.clone(), entry.table.clone()));
        }
        self.update_gauges();
        Ok(to)
    }

    /// Evicts the oldest batches while the spool is over its quota.
    fn enforce_quota(&self) {
        let Ok(mut idx) = self.index.lock() else { return };
        let mut total: u64 = idx.values().map(|e| e.bytes).sum();
        while total > self.quota {
            let Some((_, oldest)) = idx.pop_first() else { break };
            let rows = parquet_rows(&oldest.path).unwrap_or(0);
            match fs::remove_file(&oldest.path) {
                Ok(()) | Err(_) => {}
            }
            total = total.saturating_sub(oldest.bytes);
            self.metrics.spool_evicted_files.inc();
            self.metrics.spool_evicted_bytes.inc_by(oldest.bytes);
            self.metrics.spool_evicted_rows.inc_by(rows);
            tracing::warn!(
                table = %oldest.table,
                batch = %oldest.batch_id,
                bytes = oldest.bytes,
                rows,
                "spool over its quota of {} bytes: evicted the oldest batch",
                self.quota
            );
        }
    }

    fn update_gauges(&self) {
        if let Ok(idx) = self.index.lock() {
            self.metrics.spool_files.set(idx.len() as i64);
            self.metrics.spool_bytes.set(idx.values().map(|e| e.bytes).sum::<u64>() as i64);
        }
    }
}

/// The distinct non-null `job_id` values of a batch file (at most 1,024).
fn jobs_in_file(path: &Path) -> Result<BTreeSet<String>, parquet::errors::ParquetError> {
    use arrow::array::AsArray;
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), ["job_id"]);
    let mut jobs = BTreeSet::new();
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let Some(col) = batch.column_by_name("job_id") else { break };
        let col = arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8)?;
        for job in col.as_string::<i32>().iter().flatten() {
            if jobs.len() < 1024 && !jobs.contains(job) {
                jobs.insert(job.to_string());
            }
        }
    }
    Ok(jobs)
}

/// Row count from a Parquet footer (for eviction accounting).
pub fn parquet_rows(path: &Path) -> Option<u64> {
    use parquet::file::reader::FileReader;
    let file = File::open(path).ok()?;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(file).ok()?;
    u64::try_from(reader.metadata().file_metadata().num_rows()).ok()
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            if path.file_name().is_some_and(|n| n == ".rejected") {
                continue;
            }
            walk(&path, f)?;
        } else if ft.is_file() {
            f(&path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_batch(spool: &Spool, table: &str, ts: i64, bytes: usize) -> Entry {
        let (p, mut f) = spool.create(table, ts).unwrap();
        f.write_all(&vec![7u8; bytes]).unwrap();
        spool.commit(p, f, ts).unwrap()
    }

    #[test]
    fn a_table_kept_local_is_not_shipped_and_stays_within_its_size_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), "c", "n", 1 << 30, AgentMetrics::default()).unwrap();
        let now = strand_schemas::clock::utc_now_ns();
        let hour = 3_600_000_000_000i64;
        let ancient = write_batch(&spool, "kernel_events", now - 30 * hour, 100);
        spool.set_keep_local(vec![KeepLocal {
            table: "kernel_events".into(),
            max_bytes: 250,
            max_age: std::time::Duration::from_secs(24 * 3600),
        }]);
        assert!(!ancient.path.exists(), "older than the age bound: removed when the retention is set");
        let summary = write_batch(&spool, "kernel_summaries", now - 30 * hour, 100);
        let k: Vec<Entry> = (0..3).map(|i| write_batch(&spool, "kernel_events", now - 3 * hour + i, 100)).collect();
        // Size: the two newest (200 bytes) fit, the oldest went.
        assert!(!k[0].path.exists() && k[1].path.exists() && k[2].path.exists());
        assert!(summary.path.exists(), "other tables are not under the retention");
        assert_eq!(spool.to_ship(), vec![summary.clone()], "kernel_events are never shipped");
        assert_eq!(spool.entries().len(), 3);
    }

    /// A committed `kernel_events` batch whose rows belong to `jobs`.
    fn kernel_batch(spool: &Spool, ts: i64, jobs: &[Option<&str>]) -> Entry {
        use strand_schemas::Table;
        let e = write_batch(spool, "kernel_events", ts, 4);
        let rows: Vec<_> = jobs
            .iter()
            .map(|j| {
                let mut k = strand_schemas::KernelEvent::example(1);
                k.job_id = j.map(String::from);
                k
            })
            .collect();
        strand_schemas::hive::write_file(&e.path, &rows).unwrap();
        e
    }

    #[test]
    fn a_requested_job_ships_its_kept_local_batches_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), "c1", "n1", 1 << 30, AgentMetrics::default()).unwrap();
        spool.set_keep_local(vec![KeepLocal {
            table: "kernel_events".into(),
            max_bytes: 1 << 30,
            max_age: std::time::Duration::from_secs(3600),
        }]);
        let now = strand_schemas::clock::utc_now_ns();
        let a = kernel_batch(&spool, now - 3_000, &[Some("job-a"), Some("job-a")]);
        let b = kernel_batch(&spool, now - 2_000, &[Some("job-b"), None]);
        let mixed = kernel_batch(&spool, now - 1_000, &[Some("job-b"), Some("job-a")]);
        let windows = write_batch(&spool, "windows", now, 10);
        assert_eq!(spool.to_ship(), vec![windows.clone()], "kept local until asked");

        let requests = ShipRequests::in_data_dir(dir.path());
        requests.set("job-a", true).unwrap();
        assert_eq!(spool.to_ship(), vec![a.clone(), mixed.clone(), windows.clone()], "job-a's files, oldest first");
        spool.remove(&a).unwrap();
        let later = kernel_batch(&spool, now + 1_000, &[Some("job-a")]);
        assert_eq!(spool.to_ship(), vec![mixed.clone(), windows.clone(), later.clone()], "and what comes");

        requests.set("job-a", false).unwrap();
        requests.set("job-c", true).unwrap();
        assert_eq!(spool.to_ship(), vec![windows.clone()], "a job with no rows here ships nothing");
        fs::write(requests.path(), "bad\u{7}job\n").unwrap();
        assert_eq!(spool.to_ship(), vec![windows], "an unreadable request ships nothing kept local");
        assert!(b.path.exists() && mixed.path.exists() && later.path.exists());
    }

    #[test]
    fn a_batch_is_invisible_until_committed_and_lands_in_hive_layout() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), "c1", "n1", 1 << 30, AgentMetrics::default()).unwrap();
        let (p, mut f) = spool.create("windows", 1_763_769_600_000_000_000).unwrap();
        f.write_all(b"PAR1").unwrap();
        assert!(spool.entries().is_empty());
        // The earliest row is from the day before the batch was opened.
        let e = spool.commit(p, f, 1_763_769_600_000_000_000 - 1).unwrap();
        let rel = e.path.strip_prefix(dir.path()).unwrap().to_str().unwrap().to_string();
        assert!(rel.starts_with("windows/date=2025-11-21/cluster_dir=c1/node_dir=n1/1763769600000000000-"), "{rel}");
        assert!(rel.ends_with(".parquet"));
        assert_eq!(spool.entries(), vec![e]);
    }

    #[test]
    fn after_a_rename_the_backlog_keeps_the_identity_it_was_written_with() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), "old-cluster", "old-node", 1 << 30, AgentMetrics::default()).unwrap();
        let before = write_batch(&spool, "gpu_samples", 1_000, 10);
        drop(spool);
        // The agent restarts under new names (a cluster rename, a host-name change).
        let (spool, _) = Spool::open(dir.path(), "new-cluster", "new-node", 1 << 30, AgentMetrics::default()).unwrap();
        let after = write_batch(&spool, "gpu_samples", 2_000, 10);
        let ids: Vec<(String, String)> = spool.entries().into_iter().map(|e| (e.cluster, e.node)).collect();
        assert_eq!(
            ids,
            vec![("old-cluster".into(), "old-node".into()), ("new-cluster".into(), "new-node".into())],
            "{before:?} {after:?}"
        );
    }

    #[test]
    fn restart_removes_crash_leftovers_and_keeps_complete_batches() {
        let dir = tempfile::tempdir().unwrap();
        let m = AgentMetrics::default();
        let (spool, _) = Spool::open(dir.path(), "c", "n", 1 << 30, m.clone()).unwrap();
        let done = write_batch(&spool, "gpu_samples", 1_000, 10);
        let (_crashed, mut f) = spool.create("gpu_samples", 2_000).unwrap();
        f.write_all(b"half a file").unwrap();
        drop(spool);
        let (spool, rec) = Spool::open(dir.path(), "c", "n", 1 << 30, m.clone()).unwrap();
        assert_eq!(rec, Recovery { complete_files: 1, complete_bytes: 10, tmp_removed: 1, ..Default::default() });
        assert_eq!(spool.entries(), vec![done]);
        assert_eq!(m.spool_tmp_removed.get(), 1);
    }

    #[test]
    fn over_quota_the_oldest_is_evicted_and_counted_and_the_newest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let m = AgentMetrics::default();
        let (spool, _) = Spool::open(dir.path(), "c", "n", 250, m.clone()).unwrap();
        let a = write_batch(&spool, "gpu_samples", 1_000, 100);
        let b = write_batch(&spool, "kernel_events", 2_000, 100);
        let c = write_batch(&spool, "gpu_samples", 3_000, 100);
        assert!(!a.path.exists(), "oldest evicted");
        assert_eq!(spool.entries(), vec![b, c.clone()]);
        assert_eq!(m.spool_evicted_files.get(), 1);
        assert_eq!(m.spool_evicted_bytes.get(), 100);
        assert!(c.path.exists());
        assert_eq!(m.spool_bytes.get(), 200);
    }
}
