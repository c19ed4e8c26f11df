//! Mapping between Rust field types and Arrow columns.
//!
//! Every table field has one of a small set of types. Only signed integers,
//! `f64`, `bool`, UTF-8 strings and lists of integers are used, because Spark,
//! Trino and older pandas read unsigned Parquet types badly.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder,
    StringBuilder,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Int64Type, TimeUnit};

/// A Rust type that is stored as one Arrow column.
pub trait Column: Sized {
    type Builder: ArrayBuilder;
    /// Whether the column may hold nulls (`Option<_>` fields).
    const NULLABLE: bool;
    fn data_type() -> DataType;
    /// Short type name used in `docs/schemas.md`.
    fn type_name() -> &'static str;
    fn builder(capacity: usize) -> Self::Builder;
    fn append(builder: &mut Self::Builder, value: &Self);
    /// Reads a whole column. `array` already has `data_type()` (the reader casts first).
    /// Errors name the first offending row.
    fn read_all(array: &dyn Array) -> Result<Vec<Self>, String>;
    /// Value used for a nullable column that an older file does not have.
    fn missing(rows: usize) -> Option<Vec<Self>>;
    /// A deterministic example value (tests and benchmarks); nullable columns
    /// give null for seeds divisible by 3.
    #[doc(hidden)]
    fn example(seed: u64) -> Self;
}

macro_rules! scalar_column {
    ($t:ty, $builder:ty, $dt:expr, $name:literal, |$seed:ident| $example:expr, |$cap:ident| $new:expr, |$b:ident, $v:ident| $append:expr, |$a:ident| $reader:expr, |$r:ident, $i:ident| $get:expr) => {
        impl Column for $t {
            type Builder = $builder;
            const NULLABLE: bool = false;
            fn data_type() -> DataType {
                $dt
            }
            fn type_name() -> &'static str {
                $name
            }
            fn builder($cap: usize) -> Self::Builder {
                $new
            }
            fn append($b: &mut Self::Builder, $v: &Self) {
                $append
            }
            fn read_all($a: &dyn Array) -> Result<Vec<Self>, String> {
                if let Some(row) = (0..$a.len()).find(|&i| $a.is_null(i)) {
                    return Err(format!("null in non-nullable column at row {row}"));
                }
                let $r = $reader;
                Ok((0..$a.len()).map(|$i| $get).collect())
            }
            fn missing(_rows: usize) -> Option<Vec<Self>> {
                None
            }
            fn example($seed: u64) -> Self {
                $example
            }
        }

        impl Column for Option<$t> {
            type Builder = $builder;
            const NULLABLE: bool = true;
            fn data_type() -> DataType {
                $dt
            }
            fn type_name() -> &'static str {
                $name
            }
            fn builder($cap: usize) -> Self::Builder {
                $new
            }
            fn append(builder: &mut Self::Builder, value: &Self) {
                match value {
                    Some($v) => {
                        let $b = &mut *builder;
                        $append
                    }
                    None => builder.append_null(),
                }
            }
            fn read_all($a: &dyn Array) -> Result<Vec<Self>, String> {
                let $r = $reader;
                Ok((0..$a.len()).map(|$i| if $a.is_null($i) { None } else { Some($get) }).collect())
            }
            fn missing(rows: usize) -> Option<Vec<Self>> {
                Some(vec![None; rows])
            }
            fn example(seed: u64) -> Self {
                if seed % 3 == 0 { None } else { Some(<$t as Column>::example(seed)) }
            }
        }
    };
}

scalar_column!(
    i32,
    Int32Builder,
    DataType::Int32,
    "int32",
    |s| (s as i32).wrapping_mul(7919),
    |c| Int32Builder::with_capacity(c),
    |b, v| b.append_value(*v),
    |a| a.as_primitive::<Int32Type>(),
    |r, i| r.value(i)
);
scalar_column!(
    i64,
    Int64Builder,
    DataType::Int64,
    "int64",
    |s| (s as i64).wrapping_mul(1_000_000_007),
    |c| Int64Builder::with_capacity(c),
    |b, v| b.append_value(*v),
    |a| a.as_primitive::<Int64Type>(),
    |r, i| r.value(i)
);
scalar_column!(
    f64,
    Float64Builder,
    DataType::Float64,
    "float64",
    |s| s as f64 * 0.25,
    |c| Float64Builder::with_capacity(c),
    |b, v| b.append_value(*v),
    |a| a.as_primitive::<Float64Type>(),
    |r, i| r.value(i)
);
scalar_column!(
    bool,
    BooleanBuilder,
    DataType::Boolean,
    "bool",
    |s| s % 2 == 1,
    |c| BooleanBuilder::with_capacity(c),
    |b, v| b.append_value(*v),
    |a| a.as_boolean(),
    |r, i| r.value(i)
);
scalar_column!(
    String,
    StringBuilder,
    DataType::Utf8,
    "string",
    |s| format!("s{s}"),
    |c| StringBuilder::with_capacity(c, c * 16),
    |b, v| b.append_value(v),
    |a| a.as_string::<i32>(),
    |r, i| r.value(i).to_string()
);
scalar_column!(
    Arc<str>,
    StringBuilder,
    DataType::Utf8,
    "string",
    |s| Arc::from(format!("a{}", s % 4).as_str()),
    |c| StringBuilder::with_capacity(c, c * 16),
    |b, v| b.append_value(v),
    |a| a.as_string::<i32>(),
    |r, i| Arc::from(r.value(i))
);

macro_rules! list_column {
    ($item:ty, $ib:ty, $idt:expr, $at:ty, $name:literal) => {
        impl Column for Vec<$item> {
            type Builder = ListBuilder<$ib>;
            const NULLABLE: bool = false;
            fn data_type() -> DataType {
                DataType::List(Arc::new(Field::new("item", $idt, false)))
            }
            fn type_name() -> &'static str {
                $name
            }
            fn builder(capacity: usize) -> Self::Builder {
                ListBuilder::with_capacity(<$ib>::new(), capacity).with_field(Field::new("item", $idt, false))
            }
            fn append(builder: &mut Self::Builder, value: &Self) {
                builder.values().append_slice(value);
                builder.append(true);
            }
            fn read_all(a: &dyn Array) -> Result<Vec<Self>, String> {
                let list = a.as_list::<i32>();
                (0..a.len())
                    .map(|i| {
                        if list.is_null(i) {
                            return Err(format!("null in non-nullable column at row {i}"));
                        }
                        let v = list.value(i);
                        Ok(v.as_primitive::<$at>().values().to_vec())
                    })
                    .collect()
            }
            fn missing(_rows: usize) -> Option<Vec<Self>> {
                None
            }
            fn example(seed: u64) -> Self {
                (0..seed % 5).map(|i| (seed + i) as $item).collect()
            }
        }

        impl Column for Option<Vec<$item>> {
            type Builder = ListBuilder<$ib>;
            const NULLABLE: bool = true;
            fn data_type() -> DataType {
                <Vec<$item> as Column>::data_type()
            }
            fn type_name() -> &'static str {
                $name
            }
            fn builder(capacity: usize) -> Self::Builder {
                <Vec<$item> as Column>::builder(capacity)
            }
            fn append(builder: &mut Self::Builder, value: &Self) {
                match value {
                    Some(v) => <Vec<$item> as Column>::append(builder, v),
                    None => builder.append(false),
                }
            }
            fn read_all(a: &dyn Array) -> Result<Vec<Self>, String> {
                let list = a.as_list::<i32>();
                Ok((0..a.len())
                    .map(|i| {
                        if list.is_null(i) { None } else { Some(list.value(i).as_primitive::<$at>().values().to_vec()) }
                    })
                    .collect())
            }
            fn missing(rows: usize) -> Option<Vec<Self>> {
                Some(vec![None; rows])
            }
            fn example(seed: u64) -> Self {
                if seed % 3 == 0 { None } else { Some(<Vec<$item> as Column>::example(seed)) }
            }
        }
    };
}

list_column!(i64, Int64Builder, DataType::Int64, Int64Type, "list<int64>");
list_column!(i32, Int32Builder, DataType::Int32, Int32Type, "list<int32>");

/// The unit of a column that holds a point in time: UTC nanoseconds since
/// the Unix epoch. From schema version 2 such a column is an Arrow
/// `Timestamp(ns, UTC)` (Parquet `TIMESTAMP(NANOS, isAdjustedToUTC=true)`),
/// so that every engine shows a time; its Rust field stays `i64`.
pub const UTC_NS: &str = "ns (UTC)";

/// Arrow type of a point in time (see [`UTC_NS`]).
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The Arrow type of a column of Rust type `data_type` and unit `unit`.
pub fn field_type(data_type: DataType, unit: &str) -> DataType {
    if unit == UTC_NS && data_type == DataType::Int64 { timestamp_type() } else { data_type }
}

/// The docs type name of a column of unit `unit`.
pub fn field_type_name(type_name: &'static str, unit: &str) -> &'static str {
    if unit == UTC_NS && type_name == "int64" { "timestamp[ns, UTC]" } else { type_name }
}

/// An `Int64` array of nanoseconds as `Timestamp(ns, UTC)`: the same buffer,
/// only the type changes.
pub fn to_timestamp(array: ArrayRef) -> ArrayRef {
    match array.data_type() {
        DataType::Int64 => Arc::new(
            array
                .as_primitive::<Int64Type>()
                .reinterpret_cast::<arrow::datatypes::TimestampNanosecondType>()
                .with_timezone("UTC"),
        ),
        _ => array,
    }
}

/// Finishes a builder into an `ArrayRef` (keeps generated code short).
pub fn finish<B: ArrayBuilder>(mut builder: B) -> ArrayRef {
    builder.finish()
}
