//! Parquet writer and reader for strand tables.
//!
//! Files are ZSTD-compressed, strings dictionary-encoded, and carry the table
//! name and schema version in the Parquet key-value metadata so that any
//! engine can tell what a file holds without strand.

use std::fs::File;
use std::io::Write;
use std::marker::PhantomData;
use std::path::Path;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::ChunkReader;
use parquet::schema::types::ColumnPath;

use crate::bounded::{self, Budget, ReadLimits};
use crate::table::{META_TABLE, META_VERSION, META_WRITER, SchemaVersion, Table, TableInfo};
use crate::{ReadError, table_info};

/// Rows per row group: large enough for good compression, small enough that a
/// reader streams files without holding them whole.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// What a strand Parquet file says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub table: String,
    pub version: SchemaVersion,
    pub rows: i64,
    pub writer: Option<String>,
}

/// Writer properties for `schema`: ZSTD, dictionary for strings and small
/// integers, none for timestamps and floats (high cardinality, the dictionary
/// would only be thrown away), strand metadata in the footer.
pub fn writer_properties(schema: &SchemaRef, table: &str, version: SchemaVersion) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_key_value_metadata(Some(vec![
            KeyValue::new(META_TABLE.to_string(), table.to_string()),
            KeyValue::new(META_VERSION.to_string(), version.to_string()),
            KeyValue::new(META_WRITER.to_string(), format!("strand {}", env!("CARGO_PKG_VERSION"))),
        ]));
    for field in schema.fields() {
        let high_cardinality = field.name().ends_with("_ns")
            || field.name().ends_with("_id") && field.name() != "job_id"
            || matches!(field.data_type(), DataType::Float64);
        if high_cardinality {
            b = b.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
        }
    }
    b.build()
}

/// Streams rows of one table into a Parquet file.
pub struct TableWriter<T: Table, W: Write + Send> {
    inner: ArrowWriter<W>,
    rows: u64,
    _table: PhantomData<T>,
}

impl<T: Table, W: Write + Send> TableWriter<T, W> {
    pub fn new(sink: W) -> Result<Self, parquet::errors::ParquetError> {
        let schema = T::schema();
        let props = writer_properties(&schema, T::NAME, T::VERSION);
        Ok(Self { inner: ArrowWriter::try_new(sink, schema, Some(props))?, rows: 0, _table: PhantomData })
    }

    pub fn write(&mut self, rows: &[T]) -> Result<(), parquet::errors::ParquetError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write_batch(&T::to_batch(rows))
    }

    /// Writes a batch that already has this table's schema.
    pub fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), parquet::errors::ParquetError> {
        self.rows += batch.num_rows() as u64;
        self.inner.write(batch)
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes written so far plus the buffered row group (for size-based rotation).
    pub fn approx_bytes(&self) -> u64 {
        (self.inner.bytes_written() + self.inner.in_progress_size()) as u64
    }

    /// Writes the footer and returns the sink.
    pub fn finish(self) -> Result<W, parquet::errors::ParquetError> {
        self.inner.into_inner()
    }
}

/// Encodes rows as one complete Parquet file in memory.
pub fn to_parquet_bytes<T: Table>(rows: &[T]) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let mut w = TableWriter::<T, _>::new(Vec::new())?;
    w.write(rows)?;
    w.finish()
}

fn file_info(name: &str, meta: &ParquetMetaData) -> Result<FileInfo, ReadError> {
    let fm = meta.file_metadata();
    let kv = fm.key_value_metadata().map(|v| v.as_slice()).unwrap_or(&[]);
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    let table = get(META_TABLE).ok_or_else(|| ReadError::NotStrand { file: name.to_string() })?;
    let raw = get(META_VERSION).unwrap_or_default();
    let version = SchemaVersion::parse(&raw)
        .ok_or_else(|| ReadError::BadVersion { file: name.to_string(), value: raw.clone() })?;
    Ok(FileInfo { table, version, rows: fm.num_rows(), writer: get(META_WRITER) })
}

/// Checks a file's table and version against what this build reads.
/// `expected` is the table the caller wants, or any known table when `None`.
pub fn check_info(name: &str, info: &FileInfo, expected: Option<&str>) -> Result<&'static TableInfo, ReadError> {
    if let Some(expected) = expected
        && info.table != expected
    {
        return Err(ReadError::WrongTable {
            file: name.to_string(),
            expected: expected.to_string(),
            found: info.table.clone(),
        });
    }
    let known = table_info(&info.table)
        .ok_or_else(|| ReadError::UnknownTable { file: name.to_string(), table: info.table.clone() })?;
    if info.version.major > known.version.major {
        return Err(ReadError::NewerMajor {
            file: name.to_string(),
            table: info.table.clone(),
            found: info.version,
            supported: known.version,
        });
    }
    Ok(known)
}

/// Checks that an Arrow schema read from a file can be read as `info`'s table:
/// every non-nullable column is present, and every known column present has
/// the documented type.
pub fn check_schema(name: &str, info: &TableInfo, schema: &SchemaRef) -> Result<(), ReadError> {
    let expected = (info.schema)();
    for field in expected.fields() {
        match schema.field_with_name(field.name()) {
            Err(_) if !field.is_nullable() => {
                return Err(ReadError::Schema {
                    file: name.to_string(),
                    table: info.name.to_string(),
                    detail: format!("missing column `{}`", field.name()),
                });
            }
            Err(_) => {}
            Ok(found) => {
                // A point in time is `Int64` in version 1 files and
                // `Timestamp(ns)` from version 2: both are nanoseconds.
                let compatible = found.data_type() == field.data_type()
                    || matches!(
                        (field.data_type(), found.data_type()),
                        (DataType::Utf8, DataType::LargeUtf8 | DataType::Utf8View)
                            | (DataType::Timestamp(TimeUnit::Nanosecond, _), DataType::Int64)
                            | (
                                DataType::Timestamp(TimeUnit::Nanosecond, _),
                                DataType::Timestamp(TimeUnit::Nanosecond, _)
                            )
                    );
                if !compatible {
                    return Err(ReadError::Schema {
                        file: name.to_string(),
                        table: info.name.to_string(),
                        detail: format!(
                            "column `{}` has type {}, expected {}",
                            field.name(),
                            found.data_type(),
                            field.data_type()
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Reads the footer of an in-memory file (e.g. an upload) and checks it is a
/// strand file of a table and version this build reads, with a matching
/// schema, within the default [`ReadLimits`].
pub fn inspect_bytes(name: &str, data: Bytes, expected: Option<&str>) -> Result<FileInfo, ReadError> {
    inspect_bytes_with(name, data, expected, &ReadLimits::default()).map(|(info, _)| info)
}

/// [`inspect_bytes`] within `limits`; also returns what decoding the file
/// will cost ([`Budget::decode_bytes`]), to be reserved before decoding.
pub fn inspect_bytes_with(
    name: &str,
    data: Bytes,
    expected: Option<&str>,
    limits: &ReadLimits,
) -> Result<(FileInfo, Budget), ReadError> {
    if data.len() < 12 || &data[..4] != b"PAR1" || &data[data.len() - 4..] != b"PAR1" {
        return Err(ReadError::NotParquet { file: name.to_string() });
    }
    let (info, budget, _) = open_builder(name, data, expected, limits)?;
    Ok((info, budget))
}

/// The bounded reader: checks the file within `limits` (footer, then page
/// headers) before the `parquet` crate decodes any of it, then checks its
/// table (`expected`, or any strand table), version and schema. Callers
/// that pick row groups (the postmortem) build the reader themselves.
pub fn open_builder<R: ChunkReader + 'static>(
    name: &str,
    reader: R,
    expected: Option<&str>,
    limits: &ReadLimits,
) -> Result<(FileInfo, Budget, ParquetRecordBatchReaderBuilder<R>), ReadError> {
    let budget = bounded::check_reader(name, &reader, limits)?;
    // The embedded Arrow schema (`ARROW:schema`, IPC flatbuffers) is skipped:
    // arrow-ipc panics on some malformed ones, and strand checks the schema
    // against its own declaration anyway.
    let options =
        ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Skip).with_skip_arrow_metadata(true);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(reader, options)
        .map_err(|source| ReadError::Parquet { file: name.to_string(), source })?;
    let info = file_info(name, builder.metadata())?;
    let table = check_info(name, &info, expected)?;
    check_schema(name, table, builder.schema())?;
    let builder = builder.with_batch_size(budget.batch_rows(limits));
    Ok((info, budget, builder))
}

/// Opens any Parquet source (`File`, `Bytes`) of a strand table within
/// `limits` for streaming reads in batches sized by [`Budget::batch_rows`].
pub fn open_reader<R: ChunkReader + 'static>(
    name: &str,
    reader: R,
    expected: Option<&str>,
    limits: &ReadLimits,
) -> Result<(FileInfo, Budget, Batches), ReadError> {
    let (info, budget, builder) = open_builder(name, reader, expected, limits)?;
    let reader = builder.build().map_err(|source| ReadError::Parquet { file: name.to_string(), source })?;
    Ok((info, budget, Batches::new(name, reader)))
}

/// The record batches of one file, decoded by the `parquet` crate. The
/// bounded reader checks footers and page headers, not the encoded values
/// inside pages; the decoder asserts on some corrupt ones (fuzzing found an
/// RLE run with a bit width over 32, `debug_assert` in parquet 59's
/// `bit_util`). Such a panic ends this file with an error naming it, so one
/// bad upload or file never takes the process down.
pub struct Batches {
    name: String,
    schema: SchemaRef,
    inner: Option<ParquetRecordBatchReader>,
}

impl Batches {
    pub fn new(name: &str, inner: ParquetRecordBatchReader) -> Self {
        use arrow::record_batch::RecordBatchReader;
        Self { name: name.to_string(), schema: inner.schema(), inner: Some(inner) }
    }
}

impl Iterator for Batches {
    type Item = Result<RecordBatch, arrow::error::ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let inner = self.inner.as_mut()?;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.next())) {
            Ok(next) => next,
            Err(_) => {
                self.inner = None;
                Some(Err(arrow::error::ArrowError::ParquetError(format!(
                    "{}: corrupt page data (the Parquet decoder failed on it)",
                    self.name
                ))))
            }
        }
    }
}

impl arrow::record_batch::RecordBatchReader for Batches {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// Opens a strand file for streaming reads of table `expected`, within the
/// default [`ReadLimits`].
pub fn open_file(path: &Path, expected: &str) -> Result<(FileInfo, Batches), ReadError> {
    open_file_with(path, expected, &ReadLimits::default()).map(|(info, _, reader)| (info, reader))
}

/// [`open_file`] within `limits`.
pub fn open_file_with(
    path: &Path,
    expected: &str,
    limits: &ReadLimits,
) -> Result<(FileInfo, Budget, Batches), ReadError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|source| ReadError::Io { file: name.clone(), source })?;
    open_reader(&name, file, Some(expected), limits)
}

/// Reads every row of a strand file of table `T`.
pub fn read_file<T: Table>(path: &Path) -> Result<Vec<T>, ReadError> {
    let name = path.display().to_string();
    let (_, reader) = open_file(path, T::NAME)?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| ReadError::Schema {
            file: name.clone(),
            table: T::NAME.to_string(),
            detail: e.to_string(),
        })?;
        rows.extend(T::from_batch(&batch).map_err(|detail| ReadError::Schema {
            file: name.clone(),
            table: T::NAME.to_string(),
            detail,
        })?);
    }
    Ok(rows)
}
