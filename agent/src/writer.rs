//! Per-table batch writers: rows from the sinks are streamed into an open
//! Parquet file in the spool (so memory holds at most one row group), and
//! the file is committed when it is old or large enough, and at shutdown.

use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strand_schemas::{Table, TableWriter};
use tokio::sync::mpsc;

use crate::metrics::{AgentMetrics, TableLabels};
use crate::shutdown::Shutdown;
use crate::spool::{Pending, Spool};

/// When to close a batch file.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub interval: Duration,
    pub bytes: u64,
}

/// An open batch is committed once its journal holds this many times
/// `rotate_bytes` (decoded Arrow size).
pub const JOURNAL_FACTOR: u64 = 4;

/// Sees every batch of rows before it is written (the live windows).
pub type Observer<T> = Box<dyn FnMut(&[T]) + Send>;

struct Open<T: Table> {
    pending: Pending,
    writer: TableWriter<T, File>,
    /// The same rows as an Arrow IPC stream (`Pending::journal`), written
    /// through to the OS at once and synced on the 1 s tick: what a
    /// `kill -9` or power loss leaves of the open batch.
    journal: arrow::ipc::writer::StreamWriter<File>,
    /// Rows reached the journal since its last sync.
    unsynced: bool,
    /// Decoded size of what the journal holds (it is not compressed).
    journal_bytes: u64,
    opened: Instant,
    /// Earliest row time so far: names the batch's date partition.
    min_ns: i64,
}

/// Writes one table's rows into spool batches.
pub struct BatchWriter<T: Table> {
    spool: Arc<Spool>,
    rotation: Rotation,
    metrics: AgentMetrics,
    open: Option<Open<T>>,
    labels: TableLabels,
}

impl<T: Table> BatchWriter<T> {
    pub fn new(spool: Arc<Spool>, rotation: Rotation, metrics: AgentMetrics) -> Self {
        Self { spool, rotation, metrics, open: None, labels: TableLabels { table: T::NAME.into() } }
    }

    /// Appends rows whose earliest time is `min_ns`, rotating on size. On a
    /// write error the rows of the open batch are lost: counted as dropped and
    /// logged, and the next rows start a new batch.
    pub fn write(&mut self, rows: &[T], min_ns: i64) {
        if rows.is_empty() {
            return;
        }
        if self.open.is_none() {
            let (pending, file) = match self.spool.create(T::NAME, min_ns) {
                Ok(created) => created,
                Err(e) => {
                    self.lose(rows.len() as u64, &format!("cannot create a batch file: {e}"));
                    return;
                }
            };
            let journal = File::create(pending.journal()).and_then(|j| {
                arrow::ipc::writer::StreamWriter::try_new(j, &T::schema()).map_err(std::io::Error::other)
            });
            match (TableWriter::<T, File>::new(file), journal) {
                (Ok(writer), Ok(journal)) => {
                    self.open = Some(Open {
                        pending,
                        writer,
                        journal,
                        unsynced: false,
                        journal_bytes: 0,
                        opened: Instant::now(),
                        min_ns,
                    })
                }
                (Err(e), _) => {
                    // No empty temporary file stays behind (a full disk).
                    self.spool.abandon(pending);
                    self.lose(rows.len() as u64, &format!("cannot create a batch file: {e}"));
                    return;
                }
                (_, Err(e)) => {
                    self.spool.abandon(pending);
                    self.lose(rows.len() as u64, &format!("cannot create a batch journal: {e}"));
                    return;
                }
            }
        }
        let Some(open) = self.open.as_mut() else { return };
        open.min_ns = open.min_ns.min(min_ns);
        let batch = T::to_batch(rows);
        let written = open
            .journal
            .write(&batch)
            .map_err(|e| format!("journal: {e}"))
            .and_then(|()| open.writer.write_batch(&batch).map_err(|e| e.to_string()));
        open.unsynced = true;
        open.journal_bytes += batch.get_array_memory_size() as u64;
        if let Err(e) = written {
            let lost = open.writer.rows() + rows.len() as u64;
            if let Some(o) = self.open.take() {
                self.spool.abandon(o.pending);
            }
            self.lose(lost, &format!("cannot write: {e}"));
            return;
        }
        // The journal is not compressed: a batch whose rows compress very
        // well is closed when its journal reaches JOURNAL_FACTOR times the
        // rotation size, so the open batch's disk footprint stays bounded.
        if open.writer.approx_bytes() >= self.rotation.bytes
            || open.journal_bytes >= self.rotation.bytes.saturating_mul(JOURNAL_FACTOR)
        {
            self.commit();
        }
    }

    /// Commits the open batch if it is older than the rotation interval.
    /// Syncs the journal of the open batch (called every second).
    pub fn tick(&mut self) {
        if self.open.as_ref().is_some_and(|o| o.opened.elapsed() >= self.rotation.interval) {
            self.commit();
            return;
        }
        self.sync_journal();
    }

    /// Makes the rows written so far survive a crash of the process or the host.
    pub fn sync_journal(&mut self) {
        let Some(open) = self.open.as_mut().filter(|o| o.unsynced) else { return };
        open.unsynced = false;
        if let Err(e) = open.journal.get_ref().sync_data() {
            self.metrics.error("writer", T::NAME);
            tracing::warn!(table = T::NAME, "cannot sync the batch journal: {e}");
        }
    }

    /// Commits the open batch, if any.
    pub fn commit(&mut self) {
        let Some(open) = self.open.take() else { return };
        let rows = open.writer.rows();
        let min_ns = open.min_ns;
        let result = match open.writer.finish() {
            Ok(file) => self.spool.commit(open.pending, file, min_ns),
            Err(e) => {
                self.spool.abandon(open.pending);
                Err(std::io::Error::other(e))
            }
        };
        match result {
            Ok(entry) => {
                self.metrics.rows_written.get_or_create(&self.labels).inc_by(rows);
                self.metrics.batches_written.get_or_create(&self.labels).inc();
                self.metrics.bytes_written.get_or_create(&self.labels).inc_by(entry.bytes);
                tracing::debug!(table = T::NAME, batch = %entry.batch_id, rows, bytes = entry.bytes, "batch committed");
            }
            Err(e) => self.lose(rows, &format!("cannot commit the batch: {e}")),
        }
    }

    fn lose(&self, rows: u64, why: &str) {
        self.metrics.dropped(T::NAME, "write_error").inc_by(rows);
        self.metrics.write_lost.inc_by(rows);
        self.metrics.error("writer", T::NAME);
        tracing::error!(table = T::NAME, rows, "{why}; {rows} rows lost");
    }
}

/// How long after shutdown a writer waits for its sources to hand over their
/// last rows before it stops accepting more.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Runs a table's writer until every sink of the table is dropped (the
/// sources have stopped), or [`DRAIN_GRACE`] after shutdown; then commits
/// everything received, so nothing sampled before the signal is lost.
pub async fn run<T: Table>(
    mut rx: mpsc::Receiver<Vec<T>>,
    mut writer: BatchWriter<T>,
    // The row's time column (`protocol::TIME_COLUMNS`), for the date partition.
    first_ns: fn(&T) -> i64,
    mut observer: Option<Observer<T>>,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut closed = false;
    loop {
        tokio::select! {
            rows = rx.recv() => match rows {
                Some(rows) => {
                    if let Some(o) = observer.as_mut() {
                        o(&rows);
                    }
                    let min = rows.iter().map(first_ns).min().unwrap_or_default();
                    tokio::task::block_in_place(|| writer.write(&rows, min));
                }
                None => break,
            },
            _ = tick.tick() => tokio::task::block_in_place(|| writer.tick()),
            _ = shutdown.wait(), if deadline.is_none() => {
                deadline = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() && !closed => {
                // A source is stuck: take what was sent, refuse the rest (counted by the sink).
                closed = true;
                rx.close();
            }
        }
    }
    tokio::task::block_in_place(|| writer.commit());
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_schemas::{GpuSample, KernelEvent};

    fn files_under(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out
    }

    #[test]
    fn after_kill_9_the_open_batch_is_recovered_from_its_journal() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = AgentMetrics::default();
        let (spool, _) = Spool::open(dir.path(), "c1", "n1", 1 << 30, metrics.clone()).unwrap();
        let rotation = Rotation { interval: Duration::from_secs(60), bytes: 1 << 30 };
        let mut w = BatchWriter::<GpuSample>::new(Arc::new(spool), rotation, metrics.clone());
        for i in 0..3 {
            let rows: Vec<GpuSample> = (i * 5..i * 5 + 5).map(GpuSample::example).collect();
            w.write(&rows, rows.iter().map(|r| r.ts_ns).min().unwrap());
            w.tick();
        }
        // The process dies: no commit, no destructor.
        std::mem::forget(w);
        let journal = files_under(dir.path()).into_iter().find(|f| f.ends_with(".journal")).unwrap();
        // And the last record was torn mid-write.
        let path = dir.path().join(&journal);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.set_len(len + 100).unwrap();

        let (spool, rec) = Spool::open(dir.path(), "c1", "n1", 1 << 30, metrics.clone()).unwrap();
        assert_eq!((rec.journals_recovered, rec.journal_rows, rec.tmp_removed), (1, 15, 1), "{rec:?}");
        let entries = spool.entries();
        assert_eq!(entries.len(), 1);
        let rows = strand_schemas::read_file::<GpuSample>(&entries[0].path).unwrap();
        let expected: Vec<GpuSample> = (0..15).map(GpuSample::example).collect();
        assert_eq!(rows, expected);
        let files = files_under(dir.path());
        assert!(!files.iter().any(|f| f.ends_with(".tmp") || f.ends_with(".journal")), "{files:?}");
    }

    /// 200,000 rows of `T` in 2,000 writes of `rows`, 20 journal syncs:
    /// (Parquet only, with the journal, journal bytes, Parquet bytes).
    fn journal_cost_of<T: Table + Clone + Send + 'static>(rows: &[T], ts: i64) -> (Duration, Duration, u64, u64) {
        let time = |journal: bool| {
            let dir = tempfile::tempdir().unwrap();
            let metrics = AgentMetrics::default();
            let (spool, _) = Spool::open(dir.path(), "c1", "n1", 1 << 40, metrics.clone()).unwrap();
            let spool = Arc::new(spool);
            let started = Instant::now();
            let mut journal_bytes = 0;
            if journal {
                let rotation = Rotation { interval: Duration::from_secs(3600), bytes: 1 << 40 };
                let mut w = BatchWriter::<T>::new(spool.clone(), rotation, metrics.clone());
                for i in 0..2000 {
                    w.write(rows, ts);
                    if i % 100 == 99 {
                        w.sync_journal();
                    }
                }
                journal_bytes = files_under(dir.path())
                    .iter()
                    .filter(|f| f.ends_with(".journal"))
                    .map(|f| std::fs::metadata(dir.path().join(f)).unwrap().len())
                    .sum();
                w.commit();
            } else {
                let (pending, file) = spool.create(T::NAME, ts).unwrap();
                let mut w = TableWriter::<T, File>::new(file).unwrap();
                for _ in 0..2000 {
                    w.write(rows).unwrap();
                }
                spool.commit(pending, w.finish().unwrap(), ts).unwrap();
            }
            (started.elapsed(), journal_bytes, spool.entries()[0].bytes)
        };
        let (plain, _, parquet) = time(false);
        let (journaled, journal_bytes, _) = time(true);
        (plain, journaled, journal_bytes, parquet)
    }

    /// What the journal costs: `cargo test -p strand-agent --release --bins
    /// journal_cost -- --ignored --nocapture` (numbers in docs/performance.md).
    #[test]
    #[ignore]
    fn journal_cost() {
        let samples: Vec<GpuSample> = (0..100).map(GpuSample::example).collect();
        // CUPTI records: 20 kernel names of a training step, distinct times.
        let kernels: Vec<KernelEvent> = (0..100)
            .map(|i| {
                let mut k = KernelEvent::example(i);
                k.name =
                    format!("_Z{}sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_stage{}", i % 20, i % 7)
                        .into();
                k.start_ns += i as i64 * 1_000;
                k.end_ns = k.start_ns + 40_000;
                k
            })
            .collect();
        for (what, (plain, journaled, journal_bytes, parquet)) in [
            ("gpu_samples", journal_cost_of(&samples, samples[0].ts_ns)),
            ("kernel_events", journal_cost_of(&kernels, kernels[0].start_ns)),
        ] {
            eprintln!(
                "200,000 {what} rows in 2,000 writes, 20 syncs: Parquet only {plain:?}, with the journal {journaled:?}; journal {journal_bytes} bytes for {parquet} bytes of Parquet"
            );
        }
    }

    #[test]
    fn a_batch_is_committed_when_its_journal_outgrows_the_rotation_size() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = AgentMetrics::default();
        let (spool, _) = Spool::open(dir.path(), "c1", "n1", 1 << 30, metrics.clone()).unwrap();
        // Repeated rows: Parquet stays tiny, the journal grows by ~36 KB a write.
        let rotation = Rotation { interval: Duration::from_secs(3600), bytes: 64 << 10 };
        let mut w = BatchWriter::<GpuSample>::new(Arc::new(spool), rotation, metrics.clone());
        let rows: Vec<GpuSample> = (0..100).map(GpuSample::example).collect();
        for _ in 0..20 {
            w.write(&rows, rows[0].ts_ns);
        }
        let committed = metrics.batches_written.get_or_create(&TableLabels { table: "gpu_samples".into() }).get();
        assert!(committed >= 2, "{committed}");
    }

    #[test]
    fn a_committed_batch_leaves_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = AgentMetrics::default();
        let (spool, _) = Spool::open(dir.path(), "c1", "n1", 1 << 30, metrics.clone()).unwrap();
        let rotation = Rotation { interval: Duration::from_secs(60), bytes: 1 << 30 };
        let mut w = BatchWriter::<GpuSample>::new(Arc::new(spool), rotation, metrics.clone());
        let rows: Vec<GpuSample> = (0..5).map(GpuSample::example).collect();
        w.write(&rows, rows.iter().map(|r| r.ts_ns).min().unwrap());
        w.commit();
        let files = files_under(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].ends_with(".parquet"), "{files:?}");
    }

    #[test]
    fn a_failed_commit_counts_the_rows_lost_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = AgentMetrics::default();
        let (spool, _) = Spool::open(dir.path(), "c1", "n1", 1 << 30, metrics.clone()).unwrap();
        let rotation = Rotation { interval: Duration::from_secs(60), bytes: 1 << 30 };
        let mut w = BatchWriter::<GpuSample>::new(Arc::new(spool), rotation, metrics.clone());
        let rows: Vec<GpuSample> = (0..5).map(GpuSample::example).collect();
        let min = rows.iter().map(|r| r.ts_ns).min().unwrap();
        w.write(&rows, min);
        // Storage that cannot take the commit: a file where the date directory goes.
        let date = strand_schemas::protocol::utc_date(min);
        std::fs::write(dir.path().join("gpu_samples").join(format!("date={date}")), "in the way").unwrap();
        w.commit();
        assert_eq!(metrics.write_lost.get(), 5);
        assert_eq!(metrics.dropped("gpu_samples", "write_error").get(), 5);
        let files = files_under(dir.path());
        assert!(!files.iter().any(|f| f.ends_with(".tmp") || f.ends_with(".journal")), "{files:?}");
    }
}
