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
