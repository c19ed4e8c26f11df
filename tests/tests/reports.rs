//! The reports as users get them: the postmortem and the stranded-capacity
//! pages render in headless Chromium with their charts (issue 6), and the
//! fleet report's SQL gives the same answers in DuckDB on the same files
//! (issue 8: the report logic runs unchanged in a second engine), and the
//! report rendered from Spark's results, and the report whose SQL ran on a
//! Ballista cluster, are the single-process report (issue 18).

use std::path::Path;
use std::process::Command;

use strand_tests::*;

const T0: i64 = 1_767_571_200_000_000_000; // 2026-01-05T00:00:00Z, the simulator's default start
const HOUR: i64 = 3_600_000_000_000;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small simulated fleet with one fault of each kind, and its report.
fn fleet(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("fleet");
    run(Command::new(bin("strand-sim")).args(["--nodes", "4", "--faults", "--out"]).arg(&data), "strand-sim");
    data
}

/// `strand report stranded` over the fleet's first hour of `data`.
fn stranded(data: &Path) -> Command {
    let mut c = Command::new(bin("strand"));
    c.args(["report", "stranded", "--from", &T0.to_string(), "--to", &(T0 + HOUR).to_string(), "--data"]).arg(data);
    c
}

#[test]
fn the_postmortem_and_the_fleet_report_render_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let kineto = shared_data().join("kineto");
    run(
        Command::new(bin("strand"))
            .arg("postmortem")
            .arg(kineto.join("sampled_world128_rank0.json.gz"))
            .arg(kineto.join("sampled_world128_rank1.json.gz"))
            .arg("--out")
            .arg(dir.path().join("pm")),
        "strand postmortem",
    );
    let data = fleet(dir.path());
    run(stranded(&data).arg("--out").arg(dir.path().join("report")), "strand report stranded");
    let check = repo().join("bench/render_check.sh");
    let out = run(Command::new(&check).arg(dir.path().join("pm/report.html")), "render_check (postmortem)");
    assert_eq!(out.matches("render_check: ok").count(), 4, "{out}");
    let out = run(
        Command::new(&check).arg(dir.path().join("report/stranded.html")).env("MIN_SVGS", "3").env("MIN_SHAPES", "20"),
        "render_check (fleet report; scripts/install-deps.sh --test installs chromium)",
    );
    assert_eq!(out.matches("render_check: ok").count(), 4, "{out}");
}

#[test]
fn the_fleet_report_sql_gives_the_same_answers_in_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let data = fleet(dir.path());
    let dump = dir.path().join("dump");
    run(
        stranded(&data)
            .arg("--out")
            .arg(dir.path().join("report"))
            .arg("--dump-sql")
            .arg(&dump)
            // Store the exact stalls in the dataset, so that DuckDB reads them too.
            .arg("--store"),
        "strand report stranded --dump-sql --store",
    );
    let out = run(
        Command::new("python3")
            .arg(repo().join("bench/fleet_duckdb.py"))
            .arg("--data")
            .arg(&data)
            .arg("--compare")
            .arg(&dump),
        "bench/fleet_duckdb.py (needs duckdb: scripts/install-deps.sh --test)",
    );
    let same = out.matches("same as DataFusion").count();
    assert!(same >= 10 && !out.contains("DIFFERS") && !out.contains("skipped"), "every query, same answers:\n{out}");
    assert_eq!(same, files(&dump, ".jsonl").len(), "one comparison per dumped result:\n{out}");
}

/// stranded.json without what differs from run to run.
fn stranded_json(dir: &Path) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("stranded.json")).unwrap()).unwrap();
    for k in ["timings", "elapsed_s"] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

/// The Spark path of docs/fleet-scale.md: strand stores the exact stalls
/// (`--stalls-only`), Spark `local[2]` runs the twelve SQL files
/// (`bench/fleet_spark.py`), strand renders from their results
/// (`--from-results`): the same stranded.json as the single-process run.
#[test]
fn the_fleet_report_from_spark_results_is_the_single_process_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = fleet(dir.path());
    let range = ["--from".to_string(), T0.to_string(), "--to".to_string(), (T0 + HOUR).to_string()];
    let single = dir.path().join("single");
    run(stranded(&data).arg("--out").arg(&single), "strand report stranded");
    let results = dir.path().join("results");
    run(
        stranded(&data).args(["--store", "--stalls-only", "--dump-sql"]).arg(&results),
        "strand report stranded --stalls-only",
    );
    assert!(!results.join("gpu_time.jsonl").exists(), "--stalls-only runs no SQL");
    run(
        Command::new("python3")
            .arg(repo().join("bench/fleet_spark.py"))
            .args(["--master", "local[2]", "--shuffle-partitions", "2"])
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&results),
        "bench/fleet_spark.py (needs pyspark and a JRE: scripts/install-deps.sh --test)",
    );
    let spark = dir.path().join("spark");
    run(
        Command::new(bin("strand"))
            .args(["report", "stranded", "--from-results"])
            .arg(&results)
            .args(&range)
            .arg("--out")
            .arg(&spark),
        "strand report stranded --from-results",
    );
    let (want, got) = (stranded_json(&single), stranded_json(&spark));
    assert!(want["findings"].as_array().is_some_and(|f| !f.is_empty()), "the faults are found");
    assert!(got == want, "the report from Spark's results differs from the single-process report");
}

/// Issue 18's Ballista path: a real scheduler and two executors as separate
/// processes; strand stores the exact stalls, the cluster runs the twelve
/// SQL files over the files strand lists, strand renders: the same
/// stranded.json as the single-process run, with tasks on both executors.
#[test]
fn the_fleet_report_on_a_ballista_cluster_is_the_single_process_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = fleet(dir.path());
    let single = dir.path().join("single");
    run(stranded(&data).arg("--out").arg(&single), "strand report stranded");
    let (engine, _cluster) = ballista_cluster(dir.path(), 2, |c| c);
    let refused = stranded(&data).args(["--engine", &engine]).output().unwrap();
    assert!(!refused.status.success(), "without --store the executors would not see the stalls");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("add --store"), "{refused:?}");
    let ballista = dir.path().join("ballista");
    run(
        stranded(&data).args(["--store", "--engine", &engine, "--out"]).arg(&ballista),
        "strand report stranded --engine ballista://",
    );
    let (want, got) = (stranded_json(&single), stranded_json(&ballista));
    assert!(want["findings"].as_array().is_some_and(|f| !f.is_empty()), "the faults are found");
    assert!(got == want, "the report whose SQL ran on Ballista differs from the single-process report");
    for i in 0..2 {
        let log = std::fs::read_to_string(dir.path().join(format!("executor{i}.log"))).unwrap();
        assert!(log.contains("Execute task"), "executor {i} ran no task:\n{log}");
    }
    let log = std::fs::read_to_string(dir.path().join("scheduler.log")).unwrap();
    assert!(!log.contains("Failed to update"), "the scheduler dropped a task's status:\n{log}");
}

/// `--timeout` stops a report whose engine does not answer at the limit
/// given, with an error naming the engine. (The gRPC client's own timeout
/// covers only a silent connection; a job the cluster accepts and never
/// ends, as Ballista's dropped task statuses did, has no other bound.)
#[test]
fn a_report_on_an_engine_that_never_answers_stops_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let data = fleet(dir.path());
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let engine = format!("ballista://{}", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let out = stranded(&data).args(["--store", "--engine", &engine, "--timeout", "3s"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("stopped after 3s (--timeout)") && stderr.contains(&engine), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());
}

/// `strand export trace` on an agent-style dataset (the simulator's) and
/// `strand postmortem --trace`: the timeline reads back as Chrome Trace
/// Event JSON, holds the dataset's windows as counters, says where
/// `--max-events` cut it, and the postmortem page links to it.
#[test]
fn the_timeline_export_reads_back_says_where_it_cut_and_the_postmortem_links_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = fleet(dir.path());
    let full = dir.path().join("full.json");
    let out = Command::new(bin("strand"))
        .args(["export", "trace", "--no-progress", "-o"])
        .arg(&full)
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&full).unwrap()).unwrap();
    let events = v["traceEvents"].as_array().unwrap();
    let windows = std::fs::read_dir(data.join("windows")).is_ok();
    assert!(windows, "the simulator writes windows rows");
    let counters = events.iter().filter(|e| e["ph"] == "C").count();
    let processes = events.iter().filter(|e| e["ph"] == "M" && e["name"] == "process_name").count();
    assert!(counters > 0 && processes > 0, "{counters} counters, {processes} processes");
    assert!(String::from_utf8_lossy(&out.stderr).contains("window samples"));

    let cut = dir.path().join("cut.json");
    let out = Command::new(bin("strand"))
        .args(["export", "trace", "--no-progress", "--max-events", "50", "-o"])
        .arg(&cut)
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut at --max-events 50"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cut).unwrap()).unwrap();
    assert!(v["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] != "M").count() <= 50);

    let kineto = shared_data().join("kineto");
    run(
        Command::new(bin("strand"))
            .args(["postmortem", "--trace", "--no-progress"])
            .arg(kineto.join("alexnet_single_gpu.json.gz"))
            .arg("--out")
            .arg(dir.path().join("pm")),
        "strand postmortem --trace",
    );
    let html = std::fs::read_to_string(dir.path().join("pm/report.html")).unwrap();
    assert!(html.contains("<a href=\"trace.json\">"), "the report links the timeline");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("pm/trace.json")).unwrap()).unwrap();
    assert!(v["traceEvents"].as_array().unwrap().iter().any(|e| e["ph"] == "X" && e["cat"] == "kernel"));
}
