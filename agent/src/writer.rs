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

/// Sees every batch of rows before it is written (the live windows).
pub type Observer<T> = Box<dyn FnMut(&[T]) + Send>;

struct Open<T: Table> {
    pending: Pending,
    writer: TableWriter<T, File>,
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
            match self.spool.create(T::NAME, min_ns).and_then(|(pending, file)| {
                TableWriter::<T, File>::new(file)
                    .map(|writer| Open { pending, writer, opened: Instant::now(), min_ns })
                    .map_err(std::io::Error::other)
            }) {
                Ok(o) => self.open = Some(o),
                Err(e) => {
                    self.lose(rows.len() as u64, &format!("cannot create a batch file: {e}"));
                    return;
                }
            }
        }
        let Some(open) = self.open.as_mut() else { return };
        open.min_ns = open.min_ns.min(min_ns);
        if let Err(e) = open.writer.write(rows) {
            let lost = open.writer.rows() + rows.len() as u64;
            if let Some(o) = self.open.take() {
                self.spool.abandon(o.pending);
            }
            self.lose(lost, &format!("cannot write: {e}"));
            return;
        }
        if open.writer.approx_bytes() >= self.rotation.bytes {
            self.commit();
        }
    }

    /// Commits the open batch if it is older than the rotation interval.
    pub fn tick(&mut self) {
        if self.open.as_ref().is_some_and(|o| o.opened.elapsed() >= self.rotation.interval) {
            self.commit();
        }
    }

    /// Commits the open batch, if any.
    pub fn commit(&mut self) {
        let Some(open) = self.open.take() else { return };
        let rows = open.writer.rows();
        let min_ns = open.min_ns;
        let result = open
            .writer
            .finish()
            .map_err(std::io::Error::other)
            .and_then(|file| self.spool.commit(open.pending, file, min_ns));
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
