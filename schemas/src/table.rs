//! The `Table` trait and the `table!` macro that declares a table once:
//! its Rust row type, Arrow schema, batch builder, batch reader and docs.

use std::fmt;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::column::Column;

/// Parquet key-value metadata key holding the table name.
pub const META_TABLE: &str = "strand.table";
/// Parquet key-value metadata key holding `major.minor`.
pub const META_VERSION: &str = "strand.schema_version";
/// Parquet key-value metadata key naming the program that wrote the file.
pub const META_WRITER: &str = "strand.writer";

/// Schema version of one table. A reader accepts any minor version of the
/// majors it knows (new minor versions only add nullable columns) and refuses
/// a newer major. Version 2 typed the points in time `Timestamp(ns, UTC)`
/// (version 1: `Int64`); a reader of version 2 reads both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaVersion {
    pub major: u16,
    pub minor: u16,
}

impl SchemaVersion {
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }

    /// Parses `"1.0"`.
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.trim().split_once('.')?;
        Some(Self { major: a.parse().ok()?, minor: b.parse().ok()? })
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One column as documented in `docs/schemas.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDoc {
    pub name: &'static str,
    pub type_name: &'static str,
    pub nullable: bool,
    pub unit: &'static str,
    pub meaning: String,
}

/// A strand table: a row type with a fixed, versioned Arrow schema.
pub trait Table: Sized + Clone + fmt::Debug + PartialEq + Send + 'static {
    const NAME: &'static str;
    const VERSION: SchemaVersion;
    fn description() -> String;
    fn columns() -> Vec<ColumnDoc>;
    /// Arrow schema, with the table name and version in its metadata.
    fn schema() -> SchemaRef;
    fn to_batch(rows: &[Self]) -> RecordBatch;
    /// Reads rows back. Columns are found by name; a nullable column missing
    /// from an older file reads as null. The error names the column.
    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, String>;
    /// A deterministic example row (tests and benchmarks); different seeds
    /// give different values and different null patterns.
    #[doc(hidden)]
    fn example(seed: u64) -> Self;
}

/// Run-time description of a table, for code that picks the table by name
/// (the collector's ingest, the docs check).
#[derive(Clone, Copy)]
pub struct TableInfo {
    pub name: &'static str,
    pub version: SchemaVersion,
    pub description: fn() -> String,
    pub schema: fn() -> SchemaRef,
    pub columns: fn() -> Vec<ColumnDoc>,
    /// When a row happened: (start column, end column); see [`time_columns`].
    pub time: (&'static str, &'static str),
}

impl TableInfo {
    pub fn of<T: Table>() -> Self {
        Self {
            name: T::NAME,
            version: T::VERSION,
            description: T::description,
            schema: T::schema,
            columns: T::columns,
            time: time_columns(&T::schema()).unwrap_or_else(|| panic!("table {} has no time column", T::NAME)),
        }
    }
}

/// Columns that say when a row started. Every table has exactly one; it
/// decides the `date=` partition of a batch and orders row groups.
pub const TIME_COLUMNS: [&str; 3] = ["ts_ns", "start_ns", "enter_ns"];

/// The one definition of a table's time: its start column (one of
/// [`TIME_COLUMNS`]) and its end column (`end_ns` after `start_ns`,
/// `exit_ns` after `enter_ns`, the same column for a point in time).
pub fn time_columns(schema: &arrow::datatypes::Schema) -> Option<(&'static str, &'static str)> {
    let start = TIME_COLUMNS.into_iter().find(|c| schema.field_with_name(c).is_ok())?;
    let end = match start {
        "start_ns" => "end_ns",
        "enter_ns" => "exit_ns",
        other => other,
    };
    Some((start, if schema.field_with_name(end).is_ok() { end } else { start }))
}

/// `schema` with its points in time (`Timestamp(ns)`, schema version 2) as
/// `Int64` nanoseconds, the types of version 1: the view strand's SQL runs
/// on, so that the same queries give the same answers over files of either
/// version. The Parquet readers cast a timestamp column to it for free.
pub fn int64_times(schema: &arrow::datatypes::Schema) -> SchemaRef {
    use arrow::datatypes::{DataType, Field, TimeUnit};
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(TimeUnit::Nanosecond, _) => f.as_ref().clone().with_data_type(DataType::Int64),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The nanoseconds of a point-in-time column: `Timestamp(ns)` (version 2)
/// or `Int64` (version 1); `None` for any other type.
pub fn time_values(array: &dyn arrow::array::Array) -> Option<arrow::array::Int64Array> {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampNanosecondType};
    match array.data_type() {
        DataType::Int64 => Some(array.as_primitive::<Int64Type>().clone()),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            Some(array.as_primitive::<TimestampNanosecondType>().reinterpret_cast::<Int64Type>())
        }
        _ => None,
    }
}

impl fmt::Debug for TableInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableInfo({} v{})", self.name, self.version)
    }
}

/// Reads one column of a batch as `T`, casting compatible encodings
/// (e.g. `LargeUtf8` or `Utf8View` written by another engine).
pub fn read_column<T: Column>(batch: &RecordBatch, name: &str) -> Result<Vec<T>, String> {
    match batch.column_by_name(name) {
        None => T::missing(batch.num_rows()).ok_or_else(|| format!("missing column `{name}`")),
        Some(array) => {
            let array: ArrayRef = if array.data_type() == &T::data_type() {
                array.clone()
            } else {
                cast(array, &T::data_type()).map_err(|e| {
                    format!("column `{name}` has type {}, expected {}: {e}", array.data_type(), T::type_name())
                })?
            };
            T::read_all(array.as_ref()).map_err(|e| format!("column `{name}`: {e}"))
        }
    }
}

/// Joins doc-comment lines into one sentence for the docs table.
pub fn doc_text(lines: &[&str]) -> String {
    lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Keeps generated code free of `Arc` imports at the call site.
pub fn schema_ref(schema: arrow::datatypes::Schema) -> SchemaRef {
    Arc::new(schema)
}

/// Declares a table. Each field carries a one-line meaning (doc comment) and a unit.
#[macro_export]
macro_rules! table {
    (
        $(#[doc = $doc:literal])+
        pub struct $name:ident = $table:literal, version($maj:literal, $min:literal) {
            $(
                $(#[doc = $fdoc:literal])+
                pub $field:ident : $ty:ty => $unit:literal,
            )+
        }
    ) => {
        $(#[doc = $doc])+
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[doc = $fdoc])+ pub $field: $ty, )+
        }

        impl $crate::table::Table for $name {
            const NAME: &'static str = $table;
            const VERSION: $crate::table::SchemaVersion = $crate::table::SchemaVersion::new($maj, $min);

            fn description() -> String {
                $crate::table::doc_text(&[$($doc),+])
            }

            fn columns() -> Vec<$crate::table::ColumnDoc> {
                vec![$(
                    $crate::table::ColumnDoc {
                        name: stringify!($field),
                        type_name: $crate::column::field_type_name(<$ty as $crate::column::Column>::type_name(), $unit),
                        nullable: <$ty as $crate::column::Column>::NULLABLE,
                        unit: $unit,
                        meaning: $crate::table::doc_text(&[$($fdoc),+]),
                    }
                ),+]
            }

            fn schema() -> ::arrow::datatypes::SchemaRef {
                static SCHEMA: ::std::sync::OnceLock<::arrow::datatypes::SchemaRef> = ::std::sync::OnceLock::new();
                SCHEMA.get_or_init(|| {
                    let fields = vec![$(
                        ::arrow::datatypes::Field::new(
                            stringify!($field),
                            $crate::column::field_type(<$ty as $crate::column::Column>::data_type(), $unit),
                            <$ty as $crate::column::Column>::NULLABLE,
                        )
                    ),+];
                    let metadata = ::std::collections::HashMap::from([
                        ($crate::table::META_TABLE.to_string(), $table.to_string()),
                        ($crate::table::META_VERSION.to_string(), format!("{}.{}", $maj, $min)),
                    ]);
                    $crate::table::schema_ref(::arrow::datatypes::Schema::new_with_metadata(fields, metadata))
                }).clone()
            }

            fn to_batch(rows: &[Self]) -> ::arrow::record_batch::RecordBatch {
                let columns: Vec<::arrow::array::ArrayRef> = vec![$({
                    let mut b = <$ty as $crate::column::Column>::builder(rows.len());
                    for r in rows {
                        <$ty as $crate::column::Column>::append(&mut b, &r.$field);
                    }
                    let array = $crate::column::finish(b);
                    if $unit == $crate::column::UTC_NS { $crate::column::to_timestamp(array) } else { array }
                }),+];
                ::arrow::record_batch::RecordBatch::try_new(Self::schema(), columns)
                    .expect("column builders produce the schema's types")
            }

            fn from_batch(batch: &::arrow::record_batch::RecordBatch) -> Result<Vec<Self>, String> {
                let n = batch.num_rows();
                $( let mut $field = $crate::table::read_column::<$ty>(batch, stringify!($field))?.into_iter(); )+
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    out.push(Self {
                        $( $field: $field.next().expect("every column has num_rows values"), )+
                    });
                }
                Ok(out)
            }

            fn example(seed: u64) -> Self {
                let mut i = 0u64;
                Self {
                    $( $field: { i += 1; <$ty as $crate::column::Column>::example(seed.wrapping_mul(31).wrapping_add(i)) }, )+
                }
            }
        }
    };
}
