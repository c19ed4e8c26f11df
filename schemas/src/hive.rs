//! The one atomic writer of strand's Hive layout
//! (`<root>/<table>/date=YYYY-MM-DD/cluster_dir=<c>/node_dir=<n>/<batch-id>.parquet`)
//! for the tools that write files directly: `strand import`, the fleet
//! report's stored stalls and findings, the simulator. A file appears
//! whole or not at all: written under a hidden staging name that no
//! `*.parquet` glob matches, fsynced, renamed, and its directory fsynced.
//! (The agent's spool and the collector's object store keep their own
//! commit, with quotas and conditional puts on top.)

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::clock::utc_date;
use crate::parquet_io::TableWriter;
use crate::protocol::batch_path;
use crate::table::Table;

/// Why a file could not be written; names the file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
}

/// Hive partition values: characters other than letters, digits, `.`, `_`
/// and `-` are written `%XX` (as Hive does), so no value can add a directory.
pub fn escape(s: &str) -> String {
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

/// Writes `path` atomically with `write`, which gets the open staging file.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), WriteError>,
) -> Result<(), WriteError> {
    let io = |source| WriteError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io)?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let staging = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let file = File::create(&staging).map_err(io)?;
        let mut w = BufWriter::new(file);
        write(&mut w)?;
        w.flush().map_err(io)?;
        w.get_ref().sync_all().map_err(io)?;
        fs::rename(&staging, path).map_err(io)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&staging);
    }
    result
}

/// Writes rows of table `T` as one Parquet file at `path`, atomically;
/// returns the rows written.
pub fn write_file<T: Table>(path: &Path, rows: &[T]) -> Result<u64, WriteError> {
    let pq = |source| WriteError::Parquet { path: path.to_path_buf(), source };
    let mut n = 0;
    write_atomic(path, |w| {
        let mut tw = TableWriter::<T, _>::new(w).map_err(pq)?;
        for chunk in rows.chunks(64 * 1024) {
            tw.write(chunk).map_err(pq)?;
        }
        n = tw.rows();
        tw.finish().map_err(pq)?;
        Ok(())
    })?;
    Ok(n)
}

/// Writes rows of one (cluster, node) under `root`, one file per UTC date
/// of the rows' time (`time`), named `<batch>.parquet`: the same batch id
/// rewrites the same files.
pub fn write_partitioned<T: Table>(
    root: &Path,
    cluster: &str,
    node: &str,
    batch: &str,
    rows: &[T],
    time: impl Fn(&T) -> i64,
) -> Result<Vec<PathBuf>, WriteError> {
    let mut by_date: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for r in rows {
        by_date.entry(utc_date(time(r))).or_default().push(r.clone());
    }
    let mut paths = Vec::new();
    for (date, rows) in by_date {
        let path = root.join(batch_path(T::NAME, &date, &escape(cluster), &escape(node), batch));
        write_file(&path, &rows)?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::Step;

    #[test]
    fn partition_values_cannot_escape_their_directory() {
        assert_eq!(escape("node-1.example"), "node-1.example");
        assert_eq!(escape("a/b=c d"), "a%2Fb%3Dc%20d");
        assert_eq!(escape(".."), "%2");
    }

    #[test]
    fn a_file_appears_whole_and_a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<Step> = (0..3).map(Step::example).collect();
        let paths = write_partitioned(dir.path(), "c", "n/1", "b-1", &rows, |_| 0).unwrap();
        assert_eq!(paths, [dir.path().join("steps/date=1970-01-01/cluster_dir=c/node_dir=n%2F1/b-1.parquet")]);
        assert_eq!(crate::read_file::<Step>(&paths[0]).unwrap(), rows);
        let bad = dir.path().join("x.parquet");
        let err =
            write_atomic(&bad, |_| Err(WriteError::Io { path: bad.clone(), source: std::io::Error::other("boom") }))
                .unwrap_err();
        assert!(err.to_string().contains("boom"));
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(!left.iter().any(|n| n.to_string_lossy().contains("x.parquet")), "{left:?}");
    }
}
