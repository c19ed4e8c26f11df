//! What the agent and the collector agree on for `POST /v1/batches`
//! (the full contract is `docs/protocol.md`).

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;

/// Upload endpoint.
pub const BATCHES_PATH: &str = "/v1/batches";
/// Header naming the table of the uploaded Parquet file.
pub const HEADER_TABLE: &str = "x-strand-table";
/// Header naming the cluster.
pub const HEADER_CLUSTER: &str = "x-strand-cluster";
/// Header naming the node.
pub const HEADER_NODE: &str = "x-strand-node";
/// Header carrying the batch id, the idempotency key.
pub const HEADER_BATCH_ID: &str = "x-strand-batch-id";
/// Header carrying the batch's row count (checked against the file).
pub const HEADER_ROWS: &str = "x-strand-rows";

pub use crate::table::TIME_COLUMNS;

/// The start time column of a table's schema (see [`crate::table::time_columns`]).
pub fn time_column(schema: &Schema) -> Option<&'static str> {
    crate::table::time_columns(schema).map(|(start, _)| start)
}

/// The Hive-layout path of a batch, relative to the data root:
/// `<table>/date=YYYY-MM-DD/cluster_dir=<c>/node_dir=<n>/<batch-id>.parquet`.
/// The agent's data directory and the collector's dataset both use it.
pub fn batch_path(table: &str, date: &str, cluster: &str, node: &str, batch_id: &str) -> String {
    use crate::layout::{CLUSTER_KEY, NODE_KEY};
    format!("{table}/date={date}/{CLUSTER_KEY}={cluster}/{NODE_KEY}={node}/{batch_id}.parquet")
}

/// The `date=` partition of a batch: the UTC date of its earliest row, the
/// minimum of the table's time column. Taken from the data, never from the
/// clock, so that a batch re-sent on another day lands on the same path.
/// `Ok(None)` for a batch without rows.
pub fn batch_date<'a>(batches: impl IntoIterator<Item = &'a RecordBatch>) -> Result<Option<String>, String> {
    let mut min: Option<i64> = None;
    for batch in batches {
        let schema = batch.schema();
        let name =
            time_column(&schema).ok_or_else(|| format!("no time column (one of {})", TIME_COLUMNS.join(", ")))?;
        let column = batch.column_by_name(name).ok_or_else(|| format!("no column `{name}`"))?;
        let values = crate::table::time_values(column).ok_or_else(|| {
            format!("column `{name}` has type {}, expected timestamp[ns] or int64", column.data_type())
        })?;
        if let Some(m) = arrow::compute::min(&values) {
            min = Some(min.map_or(m, |x| x.min(m)));
        }
    }
    Ok(min.map(utc_date))
}

pub use crate::clock::utc_date;

/// Checks a cluster or node name: 1–64 characters from `[A-Za-z0-9._-]`, not
/// starting with `.` or `-`. Such a name can never leave the storage root or
/// break the Hive layout (`node_dir=<n>`), wherever it is used as a path part.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("{what} name must be 1 to 64 characters, got {} ({name:?})", name.len()));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(format!("{what} name {name:?} must not start with '.' or '-'"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("{what} name {name:?} has character {c:?}; allowed are A-Z a-z 0-9 . _ -"));
    }
    Ok(())
}

/// Checks a batch id: 8–128 characters from `[A-Za-z0-9_-]` (it becomes a file name).
pub fn validate_batch_id(id: &str) -> Result<(), String> {
    if id.len() < 8 || id.len() > 128 {
        return Err(format!("batch id must be 8 to 128 characters, got {}", id.len()));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))) {
        return Err(format!("batch id {id:?} has character {c:?}; allowed are A-Z a-z 0-9 _ -"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_a_directory_are_refused() {
        for bad in ["", "..", "../x", "a/b", "a\\b", ".hidden", "-rf", "a b", "nöde", &"x".repeat(65)] {
            assert!(validate_name("node", bad).is_err(), "{bad:?} accepted");
        }
        for good in ["gpu-node-017", "a", "dc1.rack4_n7", &"x".repeat(64)] {
            assert!(validate_name("node", good).is_ok(), "{good:?} refused");
        }
        assert!(validate_batch_id("0123456789abcdef-kernel_events").is_ok());
        assert!(validate_batch_id("short").is_err());
        assert!(validate_batch_id("abcdefgh.parquet").is_err());
    }

    #[test]
    fn dates_are_utc_days_of_the_earliest_row() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(-1), "1969-12-31");
        // 2024-02-29T23:59:59.999999999Z and the next nanosecond.
        assert_eq!(utc_date(1_709_251_199_999_999_999), "2024-02-29");
        assert_eq!(utc_date(1_709_251_200_000_000_000), "2024-03-01");
        assert_eq!(utc_date(4_102_444_800_000_000_000), "2100-01-01");

        use crate::{GpuSample, Table};
        let mut rows: Vec<GpuSample> = (0..3).map(GpuSample::example).collect();
        rows[0].ts_ns = 1_709_251_200_000_000_000;
        rows[1].ts_ns = 1_709_251_199_000_000_000;
        rows[2].ts_ns = 1_709_251_300_000_000_000;
        let batch = GpuSample::to_batch(&rows);
        assert_eq!(batch_date([&batch]).unwrap().as_deref(), Some("2024-02-29"));
        assert_eq!(batch_date([&GpuSample::to_batch(&[])]).unwrap(), None);
        assert_eq!(
            batch_path("gpu_samples", "2024-02-29", "c1", "n1", "0123456789"),
            "gpu_samples/date=2024-02-29/cluster_dir=c1/node_dir=n1/0123456789.parquet"
        );
    }
}
