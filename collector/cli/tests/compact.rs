//! Compaction end to end (issue 17): batches uploaded to `strand serve`,
//! compacted by `strand compact` processes that die where `kill -9` could
//! stop them (`STRAND_COMPACT_CRASH` aborts the process there), two at once,
//! late batches, retention. After every step the rows are counted by strand
//! and by DuckDB (what an outside engine sees: compacted hours only), each
//! row once.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn compact_cmd(c: &Collector, crash: Option<&str>) -> Command {
    let mut cmd = Command::new(STRAND);
    cmd.args(["compact", "--after", "0s", "--cleanup-delay", "0s", "--config"])
        .arg(&c.config)
        .env("STRAND_LOG", "info")
        .env("NO_COLOR", "1");
    match crash {
        Some(point) => cmd.env("STRAND_COMPACT_CRASH", point),
        None => cmd.env_remove("STRAND_COMPACT_CRASH"),
    };
    cmd
}

fn compact(c: &Collector, crash: Option<&str>) -> Output {
    let out = compact_cmd(c, crash).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    match crash {
        None => assert!(out.status.success(), "strand compact failed: {err}"),
        Some(point) => {
            assert!(!out.status.success(), "strand compact did not stop at {point}: {err}");
            assert!(err.contains(&format!("STRAND_COMPACT_CRASH={point}")), "{err}");
        }
    }
    out
}

/// (rows, distinct (node, time)) of gpu_samples as an outside engine sees them.
pub fn external(engine: &str, data: &Path) -> (i64, i64) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/external_count.py");
    let out = Command::new("python3").arg(script).arg(engine).arg(data).arg("gpu_samples").output().unwrap();
    assert!(
        out.status.success(),
        "bench/external_count.py {engine} (needs scripts/install-deps.sh --test): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with("gpu_samples ")).unwrap_or_else(|| panic!("{text}"));
    let f: Vec<i64> = line.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect();
    (f[0], f[1])
}

fn strand_count(data: &Path) -> (i64, i64) {
    let n = query_value(data, "SELECT count(*) FROM gpu_samples").parse().unwrap();
    let k = query_value(data, "SELECT count(DISTINCT (node, ts_ns)) FROM gpu_samples").parse().unwrap();
    (n, k)
}

fn landed(data: &Path) -> Vec<String> {
    files_under(data).into_iter().filter(|f| f.starts_with("_landing/") && f.ends_with(".parquet")).collect()
}

fn parts(data: &Path) -> Vec<String> {
    files_under(data).into_iter().filter(|f| f.starts_with("gpu_samples/") && f.contains("/part-")).collect()
}

/// Batches held by a part (its footer's `strand.batches`).
fn held(data: &Path, part: &str) -> Vec<String> {
    let file = std::fs::File::open(data.join(part)).unwrap();
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader;
    let kv = reader.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    let v = kv.iter().find(|e| e.key == "strand.batches").and_then(|e| e.value.clone()).unwrap();
    v.lines().map(str::to_string).collect()
}

const HOUR: i64 = 3_600_000_000_000;

/// Uploads 3 batches of 100 rows (one a second) per node and hour; returns the rows sent.
async fn upload(c: &Collector, nodes: &[&str], hours: i64, tag: &str) -> i64 {
    let client = client();
    let mut rows = 0;
    for node in nodes {
        for h in 0..hours {
            for i in 0..3 {
                let ts = T0 + h * HOUR + i * 600_000_000_000;
                let id = format!("{tag}-{node}-{h}-{i}");
                let (status, json) = Upload::new(node, &id).send(&client, &c.url, batch("c1", node, 100, ts)).await;
                assert_eq!(status, 201, "{json}");
                rows += 100;
            }
        }
    }
    rows
}

#[tokio::test]
async fn a_compactor_killed_at_each_step_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "");
    let total = upload(&c, &["n1", "n2"], 2, "b").await;
    assert_eq!(landed(&c.data).len(), 12);
    assert_eq!(strand_count(&c.data), (total, total));
    assert_eq!(external("duckdb", &c.data), (0, 0), "landed batches are not visible to other engines");

    // Killed before its first commit: nothing changed.
    compact(&c, Some("before_commit"));
    assert_eq!((landed(&c.data).len(), parts(&c.data).len()), (12, 0));
    assert_eq!(strand_count(&c.data), (total, total));

    // Killed right after its first commit: one hour's part, its landed batches still there.
    compact(&c, Some("after_commit"));
    let p = parts(&c.data);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(held(&c.data, &p[0]).len(), 6, "one hour of cluster c1: 3 batches of each of 2 nodes");
    assert_eq!(landed(&c.data).len(), 12);
    assert_eq!(strand_count(&c.data), (total, total), "a landed batch that a part holds is read once");
    assert_eq!(external("duckdb", &c.data), (600, 600));

    // Killed after removing one landed batch the part holds.
    compact(&c, Some("during_cleanup"));
    assert_eq!((landed(&c.data).len(), parts(&c.data).len()), (11, 1));
    assert_eq!(strand_count(&c.data), (total, total));

    // A whole pass: every hour compacted, the landing area empty, each row once everywhere.
    compact(&c, None);
    assert_eq!(landed(&c.data), Vec::<String>::new());
    assert_eq!(parts(&c.data).len(), 2, "one part per hour and cluster: {:?}", parts(&c.data));
    assert_eq!(strand_count(&c.data), (total, total));
    assert_eq!(external("duckdb", &c.data), (total, total));
    assert_eq!(external("spark", &c.data), (total, total));
    // A further pass finds nothing to do.
    let out = compact(&c, None);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((stats["parts_written"].as_u64(), stats["landed_removed"].as_u64()), (Some(0), Some(0)), "{stats}");
}

#[tokio::test]
async fn two_compactors_at_once_commit_each_batch_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "");
    let total = upload(&c, &["n1", "n2"], 3, "b").await;
    for _round in 0..2 {
        let a = compact_cmd(&c, None).spawn().unwrap();
        let b = compact_cmd(&c, None).spawn().unwrap();
        for mut child in [a, b] {
            assert!(child.wait().unwrap().success());
        }
    }
    let mut entries: Vec<String> = parts(&c.data).iter().flat_map(|p| held(&c.data, p)).collect();
    let n = entries.len();
    entries.sort();
    entries.dedup();
    assert_eq!((n, entries.len()), (18, 18), "every batch in exactly one part");
    assert_eq!(landed(&c.data), Vec::<String>::new());
    assert_eq!(strand_count(&c.data), (total, total));
    assert_eq!(external("duckdb", &c.data), (total, total));
}

#[tokio::test]
async fn late_batches_of_a_compacted_hour_become_a_new_part_and_resent_ones_stay_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "");
    let total = upload(&c, &["n1"], 1, "b").await;
    compact(&c, None);
    assert_eq!(parts(&c.data).len(), 1);
    let client = client();
    // An agent that never saw the answer re-sends a batch that is compacted now.
    let (status, json) =
        Upload::new("n1", "b-n1-0-1").send(&client, &c.url, batch("c1", "n1", 100, T0 + 600_000_000_000)).await;
    assert_eq!((status, json["status"].as_str()), (200, Some("duplicate")), "{json}");
    // A late batch of the same hour (an agent back from an outage).
    let (status, json) = Upload::new("n2", "late-n2-0").send(&client, &c.url, batch("c1", "n2", 50, T0 + 30)).await;
    assert_eq!(status, 201, "{json}");
    assert_eq!(strand_count(&c.data), (total + 50, total + 50));
    compact(&c, None);
    let mut p = parts(&c.data);
    p.sort();
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[1].ends_with("/part-000002.parquet"), "{p:?}");
    assert_eq!(held(&c.data, &p[1]), ["node_dir=n2/late-n2-0.parquet"]);
    assert_eq!(strand_count(&c.data), (total + 50, total + 50));
    assert_eq!(external("duckdb", &c.data), (total + 50, total + 50));
}

#[tokio::test]
async fn retention_expires_old_dates_and_keeps_recent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), "");
    upload(&c, &["n1"], 1, "old").await;
    compact(&c, None);
    assert_eq!(parts(&c.data).len(), 1);
    // Recent rows: the last minutes, not yet compacted.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let (status, _) =
        Upload::new("n1", "recent-n1-0").send(&client(), &c.url, batch("c1", "n1", 10, now - 60_000_000_000)).await;
    assert_eq!(status, 201);
    let text =
        std::fs::read_to_string(&c.config).unwrap().replace("enabled = false", "enabled = false\nretention = \"2d\"");
    std::fs::write(&c.config, text).unwrap();
    let out = compact(&c, None);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(stats["dates_expired"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(parts(&c.data), Vec::<String>::new());
    assert_eq!(strand_count(&c.data), (10, 10), "only the recent rows are left");
}
