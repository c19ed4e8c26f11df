//! Where sources hand finished rows to the pipeline.
//!
//! Sending never blocks a source (and so never the workload a source
//! observes): when the pipeline is behind, rows are dropped and counted in
//! `strand_agent_rows_dropped_total{table, reason="backpressure"}`.

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

/// Sender of one table's rows; cheap to clone, usable from any thread.
#[derive(Debug)]
pub struct RowSink<T> {
    tx: mpsc::Sender<Vec<T>>,
    dropped: Counter,
}

impl<T> Clone for RowSink<T> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), dropped: self.dropped.clone() }
    }
}

impl<T> RowSink<T> {
    /// A sink whose receiver holds at most `capacity` pending batches;
    /// `dropped` counts rows refused because it was full or closed.
    pub fn channel(capacity: usize, dropped: Counter) -> (Self, mpsc::Receiver<Vec<T>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, dropped }, rx)
    }

    /// Hands `rows` to the pipeline without waiting. Returns false (and counts
    /// the rows as dropped) when the pipeline is behind or stopped.
    pub fn send(&self, rows: Vec<T>) -> bool {
        if rows.is_empty() {
            return true;
        }
        match self.tx.try_send(rows) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(rows) | mpsc::error::TrySendError::Closed(rows)) => {
                self.dropped.inc_by(rows.len() as u64);
                false
            }
        }
    }

    /// Rows dropped so far by this sink and its clones.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_pipeline_drops_and_counts_instead_of_blocking() {
        let (sink, mut rx) = RowSink::<u32>::channel(1, Counter::default());
        assert!(sink.send(vec![1, 2]));
        assert!(!sink.send(vec![3, 4, 5]), "second batch must not fit");
        assert_eq!(sink.dropped(), 3);
        assert_eq!(rx.recv().await, Some(vec![1, 2]));
        drop(rx);
        assert!(!sink.send(vec![6]));
        assert_eq!(sink.dropped(), 4);
    }
}
