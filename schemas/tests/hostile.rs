//! The bounded reader refuses hostile files with an error naming the file and
//! what was wrong, before the `parquet` crate allocates or recurses on what a
//! file claims; and it still reads every honest file.

use bytes::Bytes;
use proptest::prelude::*;
use strand_schemas::bounded::{ReadLimits, check_bytes};
use strand_schemas::hostile;
use strand_schemas::*;

fn refused(data: Vec<u8>, limits: &ReadLimits) -> String {
    let e = inspect_bytes_with("upload 7", Bytes::from(data), None, limits).unwrap_err();
    assert!(matches!(e, ReadError::Limit { .. }), "{e:?}");
    let m = e.to_string();
    assert!(m.starts_with("upload 7: refused: "), "{m}");
    m
}

#[test]
fn a_footer_declaring_two_billion_row_groups_is_refused_unallocated() {
    let bomb = hostile::row_group_bomb();
    assert!(bomb.len() < 64, "{} bytes", bomb.len());
    let m = refused(bomb, &ReadLimits::default());
    assert!(m.contains("a list declares 2147483647 elements but only 1 bytes of metadata remain"), "{m}");
}

#[test]
fn a_schema_nesting_500_groups_is_refused_without_recursion() {
    let m = refused(hostile::schema_depth_bomb(500), &ReadLimits::default());
    assert!(m.contains("the schema nests deeper than 32 levels"), "{m}");
    // Nested far beyond any stack: still a plain error.
    let m = refused(hostile::schema_depth_bomb(200_000), &ReadLimits::default());
    assert!(m.contains("nests deeper"), "{m}");
}

#[test]
fn a_footer_length_past_the_file_is_refused() {
    let m = refused(hostile::footer_length(0xFFFF_FFF0), &ReadLimits::default());
    assert!(m.contains("declares 4294967280 bytes of metadata, but the file has only 28 bytes"), "{m}");
    let m = refused(hostile::footer_length(20), &ReadLimits::default());
    assert!(m.contains("the file has only 28 bytes"), "{m}");
}

#[test]
fn a_huge_declared_value_is_refused_before_decoding() {
    // The column chunk admits to 1 GiB uncompressed.
    let too_large = |data: Vec<u8>, limits: &ReadLimits| {
        let e = inspect_bytes_with("upload 7", Bytes::from(data), None, limits).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { .. }), "{e:?}");
        e.to_string()
    };
    let m = too_large(
        hostile::page_size_bomb(1 << 30, 1 << 30),
        &ReadLimits { max_decoded_bytes: 64 << 20, ..Default::default() },
    );
    assert!(
        m.contains("column chunks declare more than 1073741824 bytes uncompressed, over the limit of 67108864"),
        "{m}"
    );
    // The column chunk lies; its page header tells the size decoding would allocate.
    let m = too_large(hostile::page_size_bomb(100, i32::MAX), &ReadLimits::default());
    assert!(m.contains("pages declare at least 2147483647 bytes uncompressed, over the limit of 536870912"), "{m}");
    assert!(m.contains("nothing was decoded"), "{m}");
}

/// Rows whose `gpu_name` holds `value_len` bytes (one repeated byte: the file
/// stays small, decoding it does not).
fn samples_with_a_big_value(rows: u64, value_len: usize) -> Vec<u8> {
    let big: std::sync::Arc<str> = "x".repeat(value_len).into();
    let rows: Vec<GpuSample> = (0..rows)
        .map(|i| {
            let mut r = GpuSample::example(i);
            r.gpu_name = big.clone();
            r
        })
        .collect();
    to_parquet_bytes(&rows).unwrap()
}

#[test]
fn an_honest_file_with_a_big_value_is_charged_what_decoding_costs() {
    let file = samples_with_a_big_value(3, 8 << 20);
    assert!(file.len() < 64 << 10, "{} bytes", file.len());
    let e = inspect_bytes_with(
        "f",
        Bytes::from(file.clone()),
        None,
        &ReadLimits { max_decoded_bytes: 4 << 20, ..Default::default() },
    );
    let m = e.unwrap_err().to_string();
    assert!(m.starts_with("f: too large to decode: ") && m.contains("over the limit of 4194304"), "{m}");

    let limits = ReadLimits { max_decoded_bytes: 64 << 20, max_batch_bytes: 16 << 20, ..Default::default() };
    let budget = check_bytes("f", &Bytes::from(file.clone()), &limits).unwrap();
    assert!(budget.largest_dictionary >= 8 << 20, "{budget:?}");
    // One decoded batch holds at most max_batch_bytes: one row of 8 MiB.
    assert_eq!(budget.batch_rows(&limits), 1);
    // Decoding holds a page per column and one batch: at least the big value twice.
    assert!(budget.decode_bytes(&limits) >= 16 << 20, "{budget:?}");
    assert!(budget.row_group_pages <= budget.page_uncompressed, "{budget:?}");
    let (_, _, reader) = open_reader("f", Bytes::from(file), Some("gpu_samples"), &limits).unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    assert!(
        batches.iter().all(|b| b.num_rows() == 1),
        "{:?}",
        batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>()
    );
    assert_eq!(batches.len(), 3);
}

#[test]
fn ordinary_files_pass_with_full_batches() {
    let rows: Vec<KernelEvent> = (0..20_000).map(KernelEvent::example).collect();
    let file = Bytes::from(to_parquet_bytes(&rows).unwrap());
    let limits = ReadLimits::default();
    let budget = check_bytes("k", &file, &limits).unwrap();
    assert_eq!(budget.row_groups, 1);
    assert!(budget.columns > 10, "{budget:?}");
    assert!(budget.page_uncompressed > 0 && budget.page_uncompressed <= budget.declared_uncompressed, "{budget:?}");
    // 20,000 distinct kernel names make a dictionary page of ~200 KB: batches
    // shrink so that one holding the largest name on every row stays bounded.
    let rows_per_batch = (limits.max_batch_bytes / budget.largest_dictionary) as usize;
    assert_eq!(budget.batch_rows(&limits), rows_per_batch.clamp(1, 8192));
    let (info, _) = inspect_bytes_with("k", file, Some("kernel_events"), &limits).unwrap();
    assert_eq!(info.rows, 20_000);
    // Samples of 8 GPUs have small dictionaries: full batches.
    let rows: Vec<GpuSample> = (0..20_000).map(|i| GpuSample::example(i % 8)).collect();
    let file = Bytes::from(to_parquet_bytes(&rows).unwrap());
    assert_eq!(check_bytes("s", &file, &limits).unwrap().batch_rows(&limits), 8192);
}

#[test]
fn files_on_disk_are_read_through_the_same_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.parquet");
    std::fs::write(&path, hostile::schema_depth_bomb(500)).unwrap();
    let e = read_file::<GpuSample>(&path).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: refused: ", path.display())), "{e}");
    std::fs::write(&path, hostile::footer_length(0xFFFF_FFF0)).unwrap();
    let e = read_file::<GpuSample>(&path).unwrap_err().to_string();
    assert!(e.contains("declares 4294967280 bytes of metadata"), "{e}");
}

/// Decodes everything the check lets through; the test is that nothing
/// panics, aborts or hangs (the fuzz target `ingest_check` runs the same).
fn inspect_and_decode(data: Vec<u8>) {
    let limits = ReadLimits { max_decoded_bytes: 32 << 20, ..Default::default() };
    if let Ok((_, _, reader)) = open_reader("fuzz", Bytes::from(data), None, &limits) {
        for batch in reader {
            if batch.is_err() {
                break;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn damaged_files_never_crash_the_reader(
        seed in 0u64..1000,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let rows: Vec<GpuSample> = (seed..seed + 50).map(GpuSample::example).collect();
        let mut file = to_parquet_bytes(&rows).unwrap();
        for (at, byte) in flips {
            let i = at.index(file.len());
            file[i] = byte;
        }
        if truncate {
            let keep = cut.index(file.len());
            file.drain(4..keep.max(4));
        }
        inspect_and_decode(file);
    }

    #[test]
    fn damaged_footers_never_crash_the_reader(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let rows: Vec<Finding> = (0..20).map(Finding::example).collect();
        let mut file = to_parquet_bytes(&rows).unwrap();
        let n = file.len();
        let footer = u32::from_le_bytes(file[n - 8..n - 4].try_into().unwrap()) as usize;
        for (at, byte) in flips {
            let i = n - 8 - footer + at.index(footer);
            file[i] = byte;
        }
        inspect_and_decode(file);
    }
}

/// Found by `damaged_footers_never_crash_the_reader`: one byte of the footer
/// set to 43 made a column chunk's offsets negative for the Parquet reader,
/// which asserts on them while reading; the bounded reader refuses the file.
#[test]
fn a_footer_with_a_negative_column_offset_is_refused_not_a_panic() {
    let rows: Vec<Finding> = (0..20).map(Finding::example).collect();
    let mut file = to_parquet_bytes(&rows).unwrap();
    let n = file.len();
    let footer = u32::from_le_bytes(file[n - 8..n - 4].try_into().unwrap()) as usize;
    let i = n - 8 - footer + ((footer as u128 * 1_931_464_908_452_047_151u128) >> 64) as usize;
    file[i] = 43;
    inspect_and_decode(file);
}

/// Found by the fuzz target `ingest_check`: a data page whose RLE run
/// declares a bit width over 32 makes the `parquet` crate's decoder assert
/// (debug builds). The reader must end that file with an error naming it,
/// not take the process down.
#[test]
fn a_page_the_decoder_asserts_on_is_an_error_naming_the_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/regressions/ingest_check-rle-bit-width");
    let data = std::fs::read(path).unwrap();
    // Byte 0 is the fuzz target's table index; the file says its own table.
    let limits = ReadLimits { max_decoded_bytes: 64 << 20, ..Default::default() };
    let (_, _, reader) = open_reader("upload-7", Bytes::from(data[1..].to_vec()), None, &limits).unwrap();
    let errors: Vec<String> = reader.filter_map(|b| b.err()).map(|e| e.to_string()).collect();
    // Release builds compile the assertion out; the decoder then goes on
    // (garbage or an error of its own), and nothing may panic either way.
    if cfg!(debug_assertions) {
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("upload-7: corrupt page data"), "{errors:?}");
    }
}
