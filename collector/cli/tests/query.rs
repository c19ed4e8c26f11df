//! `strand query` as a user runs it: over an agent's data directory (the
//! same layout as the collector's), with its output formats and errors.

mod common;

use std::process::Command;

use common::*;
use strand_schemas::protocol::batch_path;

fn agent_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (node, id, rows) in
        [("n1", "0001-gpu_samples", 3), ("n1", "0002-gpu_samples", 2), ("n2", "0001-gpu_samples", 4)]
    {
        let path = dir.path().join(batch_path("gpu_samples", "2024-03-01", "c1", node, id));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, batch("c1", node, rows, T0)).unwrap();
    }
    dir
}

#[test]
fn queries_an_agent_data_directory_in_every_format() {
    let dir = agent_data_dir();
    let (ok, out, err) = query(dir.path(), "SELECT node, count(*) AS n FROM gpu_samples GROUP BY node ORDER BY node");
    assert!(ok, "{err}");
    assert_eq!(out, "node,n\nn1,5\nn2,4\n");

    let run = |format: &str| {
        let out = Command::new(STRAND)
            .args([
                "query",
                "--format",
                format,
                "SELECT node, count(*) AS n FROM gpu_samples GROUP BY node ORDER BY node",
            ])
            .env("STRAND_DATA", dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(json, serde_json::json!([{"node": "n1", "n": 5}, {"node": "n2", "n": 4}]));
    let table = run("table");
    assert_eq!(table, "+------+---+\n| node | n |\n+------+---+\n| n1   | 5 |\n| n2   | 4 |\n+------+---+\n");
}

#[test]
fn tables_without_data_are_empty_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    for table in strand_schemas::all_tables() {
        assert_eq!(query_value(dir.path(), &format!("SELECT count(*) FROM {}", table.name)), "0", "{}", table.name);
    }
}

#[test]
fn errors_say_what_is_wrong_and_exit_1() {
    let dir = agent_data_dir();
    for (sql, message) in [
        ("SELEC 1", "strand: SQL syntax error: Expected: an SQL statement, found: SELEC"),
        ("SELECT * FROM gpu_sample", "table 'datafusion.public.gpu_sample' not found"),
        ("SELECT nope FROM windows", "No field named nope"),
    ] {
        let (ok, out, err) = query(dir.path(), sql);
        assert!(!ok && out.is_empty(), "{sql}: {out}");
        assert!(err.contains(message), "{sql}: {err}");
        assert_eq!(err.lines().filter(|l| l.contains(message)).count(), 1, "said once: {err}");
    }
    let out = Command::new(STRAND).args(["query", "--data", "/nonexistent/strand-data", "SELECT 1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot open the dataset directory /nonexistent/strand-data")
    );
}

#[test]
fn only_queries_run_and_the_refused_statement_is_named() {
    let dir = agent_data_dir();
    let out_file = dir.path().join("copied.csv");
    for (sql, says) in [
        ("INSERT INTO gpu_samples SELECT * FROM gpu_samples".to_string(), "refused the INSERT INTO statement"),
        (format!("COPY gpu_samples TO '{}'", out_file.display()), "refused the COPY statement"),
        ("CREATE TABLE t AS SELECT 1".to_string(), "refused the CREATE TABLE statement"),
        ("DROP TABLE gpu_samples".to_string(), "refused the DROP TABLE statement"),
        ("SET datafusion.execution.batch_size = 1".to_string(), "refused the SET statement"),
    ] {
        let (ok, out, err) = query(dir.path(), &sql);
        assert!(!ok && out.is_empty(), "{sql}: {out}");
        assert!(err.contains("strand query only reads") && err.contains(says), "{sql}: {err}");
    }
    // Nothing was written: the dataset still holds its 9 rows, and no file appeared.
    assert_eq!(query_value(dir.path(), "SELECT count(*) FROM gpu_samples"), "9");
    assert!(!out_file.exists());
}

#[test]
fn timeout_and_memory_limit_stop_a_runaway_query() {
    let dir = agent_data_dir();
    let cross = "SELECT count(*) FROM generate_series(1, 100000000) a, generate_series(1, 1000) b";
    let started = std::time::Instant::now();
    let out =
        Command::new(STRAND).args(["query", "--timeout", "2s", "--data"]).arg(dir.path()).arg(cross).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the query was stopped after 2s (--timeout)"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    // A sort of more than the pool holds, where spilling is not possible
    // for the final collect: an error naming the limit, not an abort.
    let sort = "SELECT array_agg(value) FROM generate_series(1, 5000000)";
    let out = Command::new(STRAND)
        .args(["query", "--memory-limit", "1MiB", "--timeout", "60s", "--data"])
        .arg(dir.path())
        .arg(sort)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--memory-limit"), "{err}");
}

#[test]
fn a_corrupt_file_is_an_error_naming_it() {
    let dir = agent_data_dir();
    let bad = dir.path().join(batch_path("gpu_samples", "2024-03-01", "c1", "n3", "0001-gpu_samples"));
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    for (bytes, says) in [
        (strand_schemas::hostile::footer_length(0xFFFF_FFF0), "declares 4294967280 bytes of metadata"),
        (strand_schemas::hostile::row_group_bomb(), "2147483647"),
        (strand_schemas::hostile::schema_depth_bomb(500), "deeper than 32 levels"),
    ] {
        std::fs::write(&bad, bytes).unwrap();
        let (ok, _, err) = query(dir.path(), "SELECT count(*) FROM gpu_samples");
        assert!(!ok, "{err}");
        assert!(err.contains(&bad.display().to_string()) && err.contains(says), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
