//! Parquet every engine opens as its users expect: the agent's data directory
//! and `strand import kineto` output, read by pandas (`read_parquet(dir)`),
//! `pyarrow.dataset`, Polars, DuckDB and Spark SQL (local) as their docs say
//! to read a Hive directory (`tests/read_engines.py`). Each engine must get
//! the rows strand wrote, the same rows as the others, points in time as
//! timestamps (Spark: `bigint` ns, it has no nanosecond timestamp), durations
//! as numbers, and the Hive keys as extra columns beside `cluster`/`node`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use strand_schemas::column::UTC_NS;
use strand_tests::*;

/// The type each engine gives a point in time (schema version 2).
const TIMESTAMP: [(&str, &str); 5] = [
    ("pandas", "datetime64[ns, UTC]"),
    ("pyarrow", "timestamp[ns, tz=UTC]"),
    ("polars", "Datetime(time_unit='ns', time_zone='UTC')"),
    ("duckdb", "TIMESTAMPTZ_NS"),
    // Spark has no nanosecond timestamp: with `nanosAsLong` it reads ns as a long.
    ("spark", "bigint"),
];

/// Rows and the sum of the start times of a table directory, read by strand.
fn strand_read(dir: &Path, table: &str) -> (i64, i128) {
    let info = strand_schemas::table_info(table).unwrap_or_else(|| panic!("unknown table {table}"));
    let (mut rows, mut sum) = (0i64, 0i128);
    for file in files(dir, ".parquet") {
        let (_, reader) = strand_schemas::open_file(&file, table).unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            rows += batch.num_rows() as i64;
            let times = strand_schemas::table::time_values(batch.column_by_name(info.time.0).unwrap()).unwrap();
            sum += times.iter().flatten().map(i128::from).sum::<i128>();
        }
    }
    (rows, sum)
}

fn agent_output(data: &Path) {
    let port = free_port();
    let mut agent = Proc::spawn(
        Command::new(bin("strand-agent"))
            .arg("--data-dir")
            .arg(data)
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--simulate-gpus")
            .arg("2")
            .env("STRAND_LOG", "warn"),
        "strand-agent",
    );
    let sampled = eventually(Duration::from_secs(20), || {
        Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("strand_agent_samples_total{source=\"nvml\"} 6"))
            .unwrap_or(false)
    });
    assert!(sampled, "the agent did not report 6 samples (2 GPUs × 3 periods)");
    agent.signal(SIGTERM);
    assert!(agent.wait(Duration::from_secs(20)).success());
}

fn import_output(out: &Path) {
    let kineto = shared_data().join("kineto");
    let status = Command::new(bin("strand"))
        .args(["import", "kineto", "--cluster", "lab/a", "--job", "j1", "--out"])
        .arg(out)
        .arg(kineto.join("alexnet_single_gpu.json.gz"))
        .arg(kineto.join("nccl_2rank_a100_rank0.json.gz"))
        .status()
        .unwrap();
    assert!(status.success(), "strand import kineto: {status}");
}

#[test]
fn agent_and_import_output_read_the_same_in_pandas_pyarrow_polars_duckdb_and_spark() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, import) = (dir.path().join("agent"), dir.path().join("import"));
    agent_output(&agent);
    import_output(&import);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("read_engines.py");
    let out = Command::new("python3").arg(script).arg(&agent).arg(&import).output().unwrap();
    assert!(
        out.status.success(),
        "tests/read_engines.py (needs pandas, polars, duckdb, pyspark and a JRE: scripts/install-deps.sh --test): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>> = serde_json::from_slice(&out.stdout).unwrap();

    let mut seen = Vec::new();
    for (root, tables) in &got {
        for (table, engines) in tables {
            let (rows, start_sum) = strand_read(&Path::new(root).join(table), table);
            assert!(rows > 0, "{root}/{table}: no rows");
            let info = strand_schemas::table_info(table).unwrap();
            let columns = (info.columns)();
            let reference = &engines["pyarrow"]["digest"];
            for (engine, timestamp) in TIMESTAMP {
                let r = &engines[engine];
                let at = format!("{engine} reading {root}/{table}");
                assert!(r.get("error").is_none(), "{at}: {}", r["error"]);
                assert_eq!(r["rows"].as_i64(), Some(rows), "{at}: rows");
                assert_eq!(
                    r["start_sum"].as_str(),
                    Some(start_sum.to_string().as_str()),
                    "{at}: sum of {}",
                    info.time.0
                );
                assert_eq!(&r["digest"], reference, "{at}: the rows differ from pyarrow's");
                let names: Vec<&str> = r["columns"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
                for c in ["cluster", "node", "date", "cluster_dir", "node_dir"] {
                    assert!(names.contains(&c), "{at}: no column {c} in {names:?}");
                }
                for c in columns.iter().filter(|c| c.name.ends_with("_ns")) {
                    let Some(t) = r["types"].get(c.name).and_then(Value::as_str) else { continue };
                    if c.unit == UTC_NS {
                        assert_eq!(t, timestamp, "{at}: type of {} (a point in time)", c.name);
                    } else {
                        assert!(!t.to_lowercase().contains("time"), "{at}: {} is a duration, typed {t}", c.name);
                    }
                }
            }
            seen.push(format!("{}/{table}", Path::new(root).file_name().unwrap().to_string_lossy()));
        }
    }
    for t in ["agent/gpu_samples", "agent/windows", "import/kernel_events", "import/nccl_calls", "import/windows"] {
        assert!(seen.contains(&t.to_string()), "{t} not read: {seen:?}");
    }
}
