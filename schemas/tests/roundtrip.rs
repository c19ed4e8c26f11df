//! The Parquet contract: every table survives a write and a read unchanged,
//! files describe themselves, and a reader refuses what it cannot read.

use std::sync::Arc;

use arrow::array::{ArrayRef, LargeStringArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use strand_schemas::parquet_io::writer_properties;
use strand_schemas::*;

fn roundtrip<T: Table>() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{}.parquet", T::NAME));
    // 200 rows cover every null pattern of the examples (seeds mod 3 and mod 5).
    let rows: Vec<T> = (0..200).map(T::example).collect();
    let bytes = to_parquet_bytes(&rows).unwrap();
    std::fs::write(&path, &bytes).unwrap();

    let back = read_file::<T>(&path).unwrap();
    assert_eq!(back.len(), rows.len(), "{}", T::NAME);
    for (i, (a, b)) in rows.iter().zip(&back).enumerate() {
        assert_eq!(a, b, "{} row {i} changed in the round trip", T::NAME);
    }
    let info = inspect_bytes("mem", bytes.into(), Some(T::NAME)).unwrap();
    assert_eq!(info.table, T::NAME);
    assert_eq!(info.version, T::VERSION);
    assert_eq!(info.rows, 200);
}

#[test]
fn every_table_round_trips_through_parquet() {
    roundtrip::<GpuSample>();
    roundtrip::<GpuEvent>();
    roundtrip::<KernelEvent>();
    roundtrip::<KernelSummary>();
    roundtrip::<NcclCall>();
    roundtrip::<CudaSyncCall>();
    roundtrip::<ProcessEvent>();
    roundtrip::<Step>();
    roundtrip::<Window>();
    roundtrip::<Finding>();
    roundtrip::<NicSample>();
    roundtrip::<ProcessSample>();
    roundtrip::<CollectiveStall>();
    assert_eq!(all_tables().len(), 13, "a new table needs a round-trip line above");
}

#[test]
fn files_are_zstd_with_dictionary_strings_and_metadata() {
    let rows: Vec<KernelEvent> = (0..1000).map(KernelEvent::example).collect();
    let bytes = bytes::Bytes::from(to_parquet_bytes(&rows).unwrap());
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(bytes).unwrap();
    use parquet::file::reader::FileReader;
    let meta = reader.metadata();
    let kv = meta.file_metadata().key_value_metadata().unwrap();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    assert_eq!(get("strand.table").as_deref(), Some("kernel_events"));
    assert_eq!(get("strand.schema_version").as_deref(), Some("2.0"));
    // Points in time are timestamps every engine shows as times; durations stay int64.
    let schema = meta.file_metadata().schema_descr();
    let logical = |name: &str| schema.columns().iter().find(|c| c.name() == name).unwrap().logical_type_ref().cloned();
    let utc_ns = parquet::basic::LogicalType::timestamp(true, parquet::basic::TimeUnit::NANOS);
    for time in ["start_ns", "end_ns", "launch_ns"] {
        assert_eq!(logical(time), Some(utc_ns.clone()), "{time}");
    }
    assert_eq!(logical("bytes"), None);
    let rg = meta.row_group(0);
    for col in rg.columns() {
        assert_eq!(col.compression(), parquet::basic::Compression::ZSTD(Default::default()), "{:?}", col.column_path());
    }
    let name = rg.columns().iter().find(|c| c.column_path().string() == "name").unwrap();
    assert!(name.dictionary_page_offset().is_some(), "kernel names must be dictionary-encoded");
    let node = rg.columns().iter().find(|c| c.column_path().string() == "node").unwrap();
    assert!(node.dictionary_page_offset().is_some(), "node names must be dictionary-encoded");
}

fn write_with_version(path: &std::path::Path, table: &str, version: SchemaVersion) {
    let rows: Vec<Window> = (0..3).map(Window::example).collect();
    let batch = Window::to_batch(&rows);
    let props = writer_properties(&batch.schema(), table, version);
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn a_newer_major_version_is_refused_naming_file_table_and_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.parquet");
    write_with_version(&path, "windows", SchemaVersion::new(3, 0));
    let err = read_file::<Window>(&path).unwrap_err().to_string();
    assert!(err.contains("future.parquet"), "{err}");
    assert!(err.contains("windows"), "{err}");
    assert!(err.contains("3.0") && err.contains(&Window::VERSION.to_string()), "{err}");

    // A newer minor of the same major only adds nullable columns: readable.
    write_with_version(&path, "windows", SchemaVersion::new(2, 7));
    assert_eq!(read_file::<Window>(&path).unwrap().len(), 3);
}

#[test]
fn reading_the_wrong_table_or_a_foreign_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.parquet");
    write_with_version(&path, "windows", SchemaVersion::new(1, 0));
    let err = read_file::<KernelEvent>(&path).unwrap_err().to_string();
    assert!(err.contains("holds table `windows`, expected `kernel_events`"), "{err}");

    std::fs::write(&path, b"PAR1 this is not parquet PAR1").unwrap();
    let err = read_file::<Window>(&path).unwrap_err().to_string();
    assert!(err.contains("w.parquet: refused: the footer declares"), "{err}");

    let err = inspect_bytes("upload 42", bytes::Bytes::from_static(b"{\"json\": true}"), None).unwrap_err().to_string();
    assert_eq!(err, "upload 42: not a Parquet file (no PAR1 magic at both ends)");

    // A Parquet file without strand metadata.
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
        vec![Arc::new(arrow::array::Int64Array::from(vec![1])) as ArrayRef],
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let err = inspect_bytes("plain.parquet", buf.into(), None).unwrap_err().to_string();
    assert!(err.contains("not a strand file"), "{err}");
}

#[test]
fn a_file_with_a_wrong_column_type_is_refused_by_name() {
    // `node` as int64 instead of string.
    let rows: Vec<ProcessEvent> = (0..2).map(ProcessEvent::example).collect();
    let good = ProcessEvent::to_batch(&rows);
    let mut fields: Vec<Field> = good.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut cols: Vec<ArrayRef> = good.columns().to_vec();
    let i = fields.iter().position(|f| f.name() == "pid").unwrap();
    fields[i] = Field::new("pid", DataType::Utf8, false);
    cols[i] = Arc::new(arrow::array::StringArray::from(vec!["a", "b"]));
    let schema = Arc::new(Schema::new_with_metadata(fields, good.schema().metadata().clone()));
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let props = writer_properties(&schema, "process_events", SchemaVersion::new(1, 0));
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let err = inspect_bytes("x", buf.into(), Some("process_events")).unwrap_err().to_string();
    assert!(err.contains("column `pid` has type Utf8, expected Int32"), "{err}");
}

#[test]
fn strings_written_by_other_engines_are_read() {
    // DuckDB and Polars may write large or view strings; reading must not care.
    let rows: Vec<ProcessEvent> = (1..3).map(ProcessEvent::example).collect();
    let good = ProcessEvent::to_batch(&rows);
    let mut fields: Vec<Field> = good.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut cols: Vec<ArrayRef> = good.columns().to_vec();
    let i = fields.iter().position(|f| f.name() == "kind").unwrap();
    fields[i] = Field::new("kind", DataType::LargeUtf8, false);
    cols[i] = Arc::new(LargeStringArray::from(rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>()));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
    assert_eq!(ProcessEvent::from_batch(&batch).unwrap(), rows);
}

#[test]
fn an_older_file_without_a_nullable_column_reads_it_as_null() {
    let rows: Vec<Step> = (1..4).map(Step::example).collect();
    let full = Step::to_batch(&rows);
    let keep: Vec<usize> =
        full.schema().fields().iter().enumerate().filter(|(_, f)| f.name() != "tokens").map(|(i, _)| i).collect();
    let older = full.project(&keep).unwrap();
    let back = Step::from_batch(&older).unwrap();
    assert!(back.iter().all(|s| s.tokens.is_none()));
    let keep: Vec<usize> =
        full.schema().fields().iter().enumerate().filter(|(_, f)| f.name() != "phase").map(|(i, _)| i).collect();
    let err = Step::from_batch(&full.project(&keep).unwrap()).unwrap_err();
    assert_eq!(err, "missing column `phase`");
}

#[test]
fn docs_schemas_md_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/schemas.md");
    let doc = std::fs::read_to_string(path).expect("docs/schemas.md exists");
    for (table, block) in docs_tables() {
        assert!(
            doc.contains(&block),
            "docs/schemas.md disagrees with the code for table `{table}`; regenerate the block with \
             `cargo run -p strand-schemas --example schema-docs` and paste it. Expected:\n{block}"
        );
    }
    // And no documented table is unknown to the code.
    for line in doc.lines().filter(|l| l.starts_with("## `")) {
        let name = line.trim_start_matches("## `").split('`').next().unwrap();
        assert!(table_info(name).is_some(), "docs/schemas.md documents unknown table `{name}`");
    }
}

#[test]
fn version_1_files_with_int64_times_read_as_the_same_rows() {
    // Schema 1 stored points in time as int64 ns; schema 2 as TIMESTAMP(NANOS, UTC).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.parquet");
    let rows: Vec<Window> = (0..5).map(Window::example).collect();
    let v2 = Window::to_batch(&rows);
    assert_eq!(v2.schema().field_with_name("start_ns").unwrap().data_type(), &strand_schemas::column::timestamp_type());
    let v1_schema = strand_schemas::table::int64_times(&v2.schema());
    let cols =
        v2.columns().iter().zip(v1_schema.fields()).map(|(c, f)| arrow::compute::cast(c, f.data_type()).unwrap());
    let v1 = RecordBatch::try_new(v1_schema.clone(), cols.collect()).unwrap();
    assert_eq!(v1.schema().field_with_name("end_ns").unwrap().data_type(), &DataType::Int64);
    let props = writer_properties(&v1_schema, "windows", SchemaVersion::new(1, 2));
    let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), v1_schema, Some(props)).unwrap();
    w.write(&v1).unwrap();
    w.close().unwrap();
    assert_eq!(read_file::<Window>(&path).unwrap(), rows);

    // A time in another unit is not nanoseconds: refused by name, never misread.
    let mut fields: Vec<Field> = v2.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let i = fields.iter().position(|f| f.name() == "start_ns").unwrap();
    fields[i] = Field::new("start_ns", DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None), false);
    let mut cols = v2.columns().to_vec();
    cols[i] = arrow::compute::cast(&cols[i], fields[i].data_type()).unwrap();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let props = writer_properties(&schema, "windows", Window::VERSION);
    let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let err = read_file::<Window>(&path).unwrap_err().to_string();
    assert!(err.contains("column `start_ns` has type Timestamp(µs"), "{err}");
}
