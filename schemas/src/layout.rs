//! Where rows live in a strand dataset: the one definition of its paths,
//! used by the collector (ingest, compaction, retention), the fleet reader
//! and the report's stored results (docs/fleet-scale.md, "Storage layout").
//!
//! ```text
//! <root>/_landing/<table>/date=D/hour=HH/cluster_dir=C/node_dir=N/<batch-id>.parquet   landed batches
//! <root>/<table>/date=D/hour=HH/cluster_dir=C/part-GGGGGG.parquet                      compacted, committed
//! <root>/<table>/date=D/hour=HH/cluster_dir=C/stalls-… findings-….parquet              the report's stored results
//! <root>/<table>/date=D/cluster_dir=C/node_dir=N/<batch-id>.parquet                     an agent's data directory, import
//! ```
//!
//! - The directory keys are not column names of any table: a Hive key named
//!   as a file column (`cluster=` in schema 1's layout) is a conflict that
//!   pandas (`read_parquet(dir)`) refuses, as it types keys as dictionaries.
//!   Readers of strand's paths still accept `cluster=`/`node=` directories.
//!
//! - Every landed batch and every compacted part under `hour=HH` holds only
//!   rows whose start time (the table's time column) falls in that UTC
//!   hour: the collector splits a batch that crosses an hour at ingest.
//! - `_landing` starts with `_`, so Spark and Hive skip it, and it is not
//!   under `<table>/`, so a `<table>/**/*.parquet` glob never matches it:
//!   engines other than strand see compacted hours only, each row once.
//! - A compacted part is committed by creating it under its generation
//!   number with a conditional put (create only if absent): of two
//!   compactors exactly one creates a generation. Its footer key
//!   [`META_BATCHES`] lists the landed batches (`node_dir=N/<batch-id>.parquet`)
//!   whose rows it holds. A landed batch listed by a part is never read
//!   again (strand's reader skips it, the compactor deletes it), so no row
//!   is read twice, whatever step a crash interrupted.
//! - Staging files are hidden (`.name.tmp`): no `*.parquet` glob matches them.

/// Hive key of the cluster directory (`cluster_dir=<c>`, the value escaped by [`crate::hive::escape`]).
pub const CLUSTER_KEY: &str = "cluster_dir";
/// Hive key of the node directory (`node_dir=<n>`).
pub const NODE_KEY: &str = "node_dir";
/// The keys of the layout before schema version 2, still read.
const OLD_KEYS: [(&str, &str); 2] = [(CLUSTER_KEY, "cluster"), (NODE_KEY, "node")];

/// The value of a directory name `<key>=<value>` for `key` ([`CLUSTER_KEY`]
/// or [`NODE_KEY`]); also reads the keys of the older layout (`cluster=`, `node=`).
pub fn dir_value<'a>(dir: &'a str, key: &str) -> Option<&'a str> {
    let (k, v) = dir.split_once('=')?;
    (k == key || OLD_KEYS.iter().any(|&(new, old)| new == key && k == old)).then_some(v)
}

/// The directory of landed batches, under the dataset root.
pub const LANDING: &str = "_landing";
/// Parquet key-value metadata key of a compacted part: the landed batches it holds, one per line.
pub const META_BATCHES: &str = "strand.batches";
/// Nanoseconds in an hour.
pub const HOUR_NS: i64 = 3_600_000_000_000;
const DAY_NS: i64 = 86_400_000_000_000;

/// The `date=` and `hour=` partition values of a time: `("2026-01-05", 7)`.
pub fn date_hour(ts_ns: i64) -> (String, u32) {
    (crate::clock::utc_date(ts_ns), (ts_ns.rem_euclid(DAY_NS) / HOUR_NS) as u32)
}

/// The start of the hour that holds `ts_ns`.
pub fn hour_floor(ts_ns: i64) -> i64 {
    ts_ns.div_euclid(HOUR_NS) * HOUR_NS
}

/// `hour=07`.
pub fn hour_dir(hour: u32) -> String {
    format!("hour={hour:02}")
}

/// The day number (since 1970-01-01) of `YYYY-MM-DD`, if it is a valid date.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    // Exactly the partition form (chrono alone would take `2026-1-5`).
    if b.len() != 10
        || b[4] != b'-'
        || b[7] != b'-'
        || !b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        return None;
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some((d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days())
}

/// The start (UTC ns) of partition `date=D/hour=HH`.
pub fn hour_start_ns(date: &str, hour: u32) -> Option<i64> {
    (hour < 24).then_some(())?;
    // A date outside the i64 range of nanoseconds (after 2262) has no start.
    parse_date(date)?.checked_mul(DAY_NS)?.checked_add(i64::from(hour) * HOUR_NS)
}

/// The landed key of (a part of) a batch, relative to the root.
pub fn landed_path(table: &str, ts_ns: i64, cluster: &str, node: &str, batch_id: &str) -> String {
    let (date, hour) = date_hour(ts_ns);
    format!(
        "{LANDING}/{table}/date={date}/{}/{CLUSTER_KEY}={cluster}/{NODE_KEY}={node}/{batch_id}.parquet",
        hour_dir(hour)
    )
}

/// The directory of one compaction unit (table, hour, cluster), relative to
/// `<root>` for parts and to `<root>/_landing` for landed batches.
pub fn unit_dir(table: &str, date: &str, hour: u32, cluster: &str) -> String {
    format!("{table}/date={date}/{}/{CLUSTER_KEY}={cluster}", hour_dir(hour))
}

/// Name of compaction generation `generation` of a unit: `part-000001.parquet`.
pub fn part_name(generation: u32) -> String {
    format!("part-{generation:06}.parquet")
}

/// The generation of a part's file name.
pub fn parse_part(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// Whether a file name is data that readers read: `*.parquet`, not hidden
/// (`.` staging files, `_` metadata files).
pub fn is_data_file(name: &str) -> bool {
    name.ends_with(".parquet") && !name.starts_with('.') && !name.starts_with('_')
}

/// The hidden staging name of a file being written: `.<name>.<tag>.tmp`.
pub fn staging_name(name: &str, tag: &str) -> String {
    format!(".{name}.{tag}.tmp")
}

/// Whether a name is a staging file of [`staging_name`].
pub fn is_staging_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// The value of partition `key` (`key=value`) in a path, if any.
pub fn partition<'a>(path: &'a str, key: &str) -> Option<&'a str> {
    path.split('/').find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
}

/// The batch entries of a part's [`META_BATCHES`] value.
pub fn parse_batches(value: &str) -> impl Iterator<Item = &str> {
    value.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// The batch entry of a landed key relative to its unit directory: `node_dir=N/<batch>.parquet`.
pub fn batch_entry(landed_key: &str) -> Option<&str> {
    let (dir, _) = landed_key.rsplit_once('/')?;
    let node = dir.rsplit('/').next()?;
    dir_value(node, NODE_KEY)?;
    Some(&landed_key[dir.len() - node.len()..])
}

/// The unit directory (`<table>/date=…/hour=…/cluster_dir=…`) of a path
/// relative to the root (or to `_landing`), in the current layout's keys.
pub fn unit_of(rel: &str) -> Option<String> {
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.len() < 5 {
        return None;
    }
    let date = parts[1].strip_prefix("date=")?;
    let hour = parts[2].strip_prefix("hour=")?;
    let cluster = dir_value(parts[3], CLUSTER_KEY)?;
    Some(format!("{}/date={date}/hour={hour}/{CLUSTER_KEY}={cluster}", parts[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        let t = 1_767_571_200_000_000_000 + 7 * HOUR_NS + 5; // 2026-01-05T07:00:00Z
        assert_eq!(date_hour(t), ("2026-01-05".to_string(), 7));
        assert_eq!(hour_start_ns("2026-01-05", 7), Some(t - 5));
        assert_eq!(hour_floor(t), t - 5);
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        for bad in ["2026-02-30", "2026-13-01", "26-01-05", "2026/01/05", "2026-01-5x"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert_eq!(hour_start_ns("2026-01-05", 24), None);
        // Partition names are outside data: a date past 2262 has no start in
        // i64 nanoseconds, and says so instead of overflowing.
        assert_eq!(parse_date("9999-12-31"), Some(2_932_896));
        assert_eq!(hour_start_ns("9999-12-31", 0), None);
        assert_eq!(hour_start_ns("1677-09-22", 0), Some(-106_751 * 24 * HOUR_NS));
        assert_eq!(parse_date("+202-01-05"), None);
        let key = landed_path("windows", t, "c1", "n1", "batch-0001");
        assert_eq!(key, "_landing/windows/date=2026-01-05/hour=07/cluster_dir=c1/node_dir=n1/batch-0001.parquet");
        assert_eq!(batch_entry(&key), Some("node_dir=n1/batch-0001.parquet"));
        assert_eq!(partition(&key, "hour"), Some("07"));
        assert_eq!(partition(&key, CLUSTER_KEY), Some("c1"));
        assert_eq!(unit_dir("windows", "2026-01-05", 7, "c1"), "windows/date=2026-01-05/hour=07/cluster_dir=c1");
        assert_eq!(
            unit_of(&key[LANDING.len() + 1..]).as_deref(),
            Some("windows/date=2026-01-05/hour=07/cluster_dir=c1")
        );
        // The older layout's keys are still read, as the same unit.
        let old = "windows/date=2026-01-05/hour=07/cluster=c1/node=n1/b.parquet";
        assert_eq!(unit_of(old).as_deref(), Some("windows/date=2026-01-05/hour=07/cluster_dir=c1"));
        assert_eq!(batch_entry(old), Some("node=n1/b.parquet"));
        assert_eq!((dir_value("cluster=c", CLUSTER_KEY), dir_value("node=c", CLUSTER_KEY)), (Some("c"), None));
        assert_eq!(batch_entry("windows/date=2026-01-05/b.parquet"), None);
        assert_eq!(part_name(12), "part-000012.parquet");
        assert_eq!(parse_part("part-000012.parquet"), Some(12));
        assert_eq!(parse_part("part-12.parquet"), None);
        assert!(is_data_file("part-000001.parquet") && !is_data_file(&staging_name("part-000001.parquet", "9")));
        assert!(!is_data_file("_common_metadata") && !is_data_file("b.parquet#1"));
        assert!(is_staging_name(&staging_name("b.parquet", "1")));
        assert_eq!(parse_batches("a\n\n b \n").collect::<Vec<_>>(), ["a", "b"]);
    }
}
