//! The collector's check of an uploaded batch (collector/src/ingest.rs:
//! `inspect_bytes_with` on arrival, then `check_batch` decoding every row
//! through `open_reader`) must turn any bytes into rows or a clear error:
//! no panic, no allocation beyond the bounded reader's limits, no hang.
#![no_main]

use arrow::array::{Array, AsArray, Int64Array};
use arrow::datatypes::DataType;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strand_schemas::protocol::time_column;
use strand_schemas::{ReadLimits, all_tables, inspect_bytes_with, open_reader};

/// libfuzzer-sys's panic hook aborts on every panic, even one the reader
/// catches: `strand_schemas::Batches` turns a decoder panic on corrupt page
/// data into an error for that file, as the collector sees it. With the
/// default hook, a panic that escapes still aborts (libfuzzer-sys wraps the
/// target in `catch_unwind` and aborts on an escaped panic).
static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|input: &[u8]| {
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    // The first byte picks the table the upload claims to be.
    let Some((&pick, data)) = input.split_first() else { return };
    let tables = all_tables();
    let table = &tables[pick as usize % tables.len()];
    // The collector's defaults, with a decoded-bytes limit that keeps
    // libFuzzer's 2 GB RSS limit meaningful.
    let limits = ReadLimits { max_decoded_bytes: 64 << 20, ..ReadLimits::default() };
    let data = Bytes::copy_from_slice(data);
    if inspect_bytes_with("fuzz", data.clone(), Some(table.name), &limits).is_err() {
        return;
    }
    let Ok((_, _, reader)) = open_reader("fuzz", data, Some(table.name), &limits) else { return };
    let schema = (table.schema)();
    let time = time_column(&schema);
    for batch in reader {
        let Ok(batch) = batch else { return };
        // What check_batch does with every batch: the identity columns as
        // text, the time column's range and nulls.
        for column in ["cluster", "node"] {
            if let Some(a) = batch.column_by_name(column)
                && let Ok(a) = arrow::compute::cast(a, &DataType::Utf8)
            {
                let v = a.as_string::<i32>();
                for i in 0..v.len() {
                    let _ = v.is_null(i) || v.value(i) == "n1";
                }
            }
        }
        if let Some(ts) =
            time.and_then(|t| batch.column_by_name(t)).and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        {
            let _ = (arrow::compute::min(ts), arrow::compute::max(ts), ts.null_count());
        }
    }
});
