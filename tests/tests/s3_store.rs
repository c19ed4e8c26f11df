//! The fleet store on S3 (issue 17), against a local S3-compatible server
//! (moto's, from `scripts/install-deps.sh --test`): a simulated fleet is
//! ingested by `strand serve` storing to `s3://`, compacted by `strand
//! compact`, queried, and reported on with `--store`; every row is counted
//! exactly once at each step and the report equals the one on the same
//! files in a local directory, and the one whose SQL runs on a Ballista
//! cluster reading the bucket (issue 18).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use strand_schemas::protocol;
use strand_tests::*;

const T0: i64 = 1_767_571_200_000_000_000; // the simulator's default start
const HOUR: i64 = 3_600_000_000_000;
const BUCKET: &str = "strand-test";

/// moto's S3 server on a loopback port, stopped when dropped.
struct Moto {
    proc: Proc,
    endpoint: String,
}

impl Moto {
    fn start() -> Self {
        let port = free_port();
        let proc = Proc::spawn(
            Command::new("python3")
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "moto.server (scripts/install-deps.sh --test installs moto[server])",
        );
        assert!(
            eventually(Duration::from_secs(60), || TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "moto.server did not listen on {port} (scripts/install-deps.sh --test installs moto[server])"
        );
        let m = Self { proc, endpoint: format!("http://127.0.0.1:{port}") };
        m.python(&format!("s3.create_bucket(Bucket={BUCKET:?})"));
        m
    }

    /// The environment every strand process needs to reach it.
    fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
    }

    /// Runs boto3 code with `s3` a client of this server; returns its stdout.
    fn python(&self, code: &str) -> String {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url={:?}, region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n{code}\n",
            self.endpoint
        );
        let out = Command::new("python3").arg("-c").arg(script).output().unwrap();
        assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Every key in the bucket under `prefix`.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self.python(&format!(
            "p = s3.get_paginator('list_objects_v2')\nfor page in p.paginate(Bucket={BUCKET:?}, Prefix={prefix:?}):\n    for o in page.get('Contents', []):\n        print(o['Key'])"
        ));
        out.lines().map(str::to_string).collect()
    }
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

fn token(node: &str) -> String {
    format!("s3-test-token-{node}")
}

fn sha256(s: &str) -> String {
    let mut c = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// POSTs one agent batch file; returns the HTTP status.
fn upload(addr: &str, file: &Path, table: &str, cluster: &str, node: &str) -> u16 {
    let body = std::fs::read(file).unwrap();
    let id = file.file_stem().unwrap().to_string_lossy().to_string();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n{}: {table}\r\n{}: {cluster}\r\n{}: {node}\r\n{}: {id}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        protocol::BATCHES_PATH,
        token(node),
        protocol::HEADER_TABLE,
        protocol::HEADER_CLUSTER,
        protocol::HEADER_NODE,
        protocol::HEADER_BATCH_ID,
        body.len()
    );
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad response: {resp}"))
}

/// The sim's batch files: (path, table, cluster, node), from the Hive path.
fn batches(root: &Path) -> Vec<(PathBuf, String, String, String)> {
    files(root, ".parquet")
        .into_iter()
        .map(|f| {
            let rel: Vec<String> =
                f.strip_prefix(root).unwrap().iter().map(|p| p.to_string_lossy().to_string()).collect();
            // Schema 2's keys (`cluster_dir=`), or schema 1's (`cluster=`).
            let part = |k: &str| {
                rel.iter()
                    .find_map(|p| p.strip_prefix(&format!("{k}_dir=")).or_else(|| p.strip_prefix(&format!("{k}="))))
                    .unwrap()
                    .to_string()
            };
            (f.clone(), rel[0].clone(), part("cluster"), part("node"))
        })
        .collect()
}

/// Rows per table as `strand query` counts them (each row once: the count
/// of distinct rows is checked against it for the time-keyed tables).
fn counts(moto: &Moto, data: &str, tables: &[&str]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for t in tables {
        let csv = run(
            moto.env(Command::new(bin("strand")).args(["query", "--format", "csv", "--data", data]))
                .arg(format!("SELECT count(*) FROM {t}")),
            "strand query",
        );
        out.insert(t.to_string(), csv.lines().nth(1).unwrap().parse().unwrap());
    }
    out
}

/// The report's figures, without its timings.
fn report_json(dir: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stranded.json")).unwrap()).unwrap();
    if let Some(o) = v.as_object_mut() {
        for k in ["timings", "elapsed_s"] {
            o.remove(k);
        }
    }
    v
}

/// Top-level keys whose values differ, with the values when short.
fn differing(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> =
        a.as_object().unwrap().keys().chain(b.as_object().unwrap().keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(k.as_str()) != b.get(k.as_str()))
        .map(|k| {
            let (x, y) = (a.get(k.as_str()).map(|v| v.to_string()), b.get(k.as_str()).map(|v| v.to_string()));
            let short = |v: Option<String>| v.map(|v| v.chars().take(400).collect::<String>());
            format!("{k}: {:?} vs {:?}", short(x), short(y))
        })
        .collect()
}

#[test]
fn ingest_compaction_query_and_report_on_s3_count_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("fleet");
    run(Command::new(bin("strand-sim")).args(["--nodes", "2", "--hours", "1", "--out"]).arg(&local), "strand-sim");
    let moto = Moto::start();
    let s3 = format!("s3://{BUCKET}/fleet");

    // Ingest: every sim batch through the collector into S3.
    let files = batches(&local);
    let nodes: std::collections::BTreeSet<(String, String)> =
        files.iter().map(|(_, _, c, n)| (c.clone(), n.clone())).collect();
    let port = free_port();
    let mut cfg = format!(
        "listen = \"127.0.0.1:{port}\"\n[storage]\nroot = \"{s3}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nallow_http = true\n[compaction]\nenabled = false\n",
        moto.endpoint
    );
    for (c, n) in &nodes {
        cfg.push_str(&format!(
            "[[nodes]]\ncluster = \"{c}\"\nnode = \"{n}\"\ntoken_sha256 = \"{}\"\n",
            sha256(&token(n))
        ));
    }
    std::fs::write(dir.path().join("collector.toml"), cfg).unwrap();
    let mut collector = Proc::spawn(
        moto.env(Command::new(bin("strand")).arg("serve").arg("--config").arg(dir.path().join("collector.toml")))
            .env("STRAND_LOG", "warn"),
        "strand serve",
    );
    let addr = format!("127.0.0.1:{port}");
    assert!(eventually(Duration::from_secs(30), || TcpStream::connect(&addr).is_ok()), "collector did not listen");
    for (f, table, cluster, node) in &files {
        assert_eq!(upload(&addr, f, table, cluster, node), 201, "{}", f.display());
    }
    // A batch sent again is a duplicate: stored once.
    let (f, table, cluster, node) = &files[0];
    assert_eq!(upload(&addr, f, table, cluster, node), 200);
    assert!(moto.keys("fleet/_landing/").iter().any(|k| k.ends_with(".parquet")), "batches landed in the bucket");

    let tables = ["gpu_samples", "windows", "nccl_calls", "steps"];
    let expect = counts(&moto, local.to_str().unwrap(), &tables);
    assert!(expect.values().all(|&n| n > 0), "{expect:?}");
    assert_eq!(counts(&moto, &s3, &tables), expect, "landed on S3: every row once");

    // Compaction: parts committed with a conditional create on S3, landed batches cleaned up.
    run(
        moto.env(Command::new(bin("strand")).args(["compact", "--after", "0s", "--cleanup-delay", "0s", "--config"]))
            .arg(dir.path().join("collector.toml"))
            .env("STRAND_LOG", "warn"),
        "strand compact",
    );
    let parts = moto.keys("fleet/gpu_samples/");
    assert!(parts.iter().any(|k| k.contains("/part-")), "{parts:?}");
    assert!(!moto.keys("fleet/_landing/").iter().any(|k| k.ends_with(".parquet")), "landed batches cleaned up");
    assert_eq!(counts(&moto, &s3, &tables), expect, "compacted on S3: every row once");
    // A second compactor finds nothing to do and changes nothing.
    run(
        moto.env(Command::new(bin("strand")).args(["compact", "--after", "0s", "--cleanup-delay", "0s", "--config"]))
            .arg(dir.path().join("collector.toml"))
            .env("STRAND_LOG", "warn"),
        "strand compact (again)",
    );
    assert_eq!(moto.keys("fleet/gpu_samples/"), parts);
    collector.signal(SIGTERM);
    assert!(collector.wait(Duration::from_secs(30)).success());

    // The report on S3, storing its results there, equals the report on the local files.
    let report = |data: &str, out: &Path, extra: &[&str]| {
        let mut cmd = Command::new(bin("strand"));
        cmd.args([
            "report",
            "stranded",
            "--from",
            &T0.to_string(),
            "--to",
            &(T0 + HOUR).to_string(),
            "--kernels",
            "cpu",
        ])
        .args(["--data", data, "--out"])
        .arg(out)
        .args(extra);
        run(moto.env(&mut cmd), &format!("strand report stranded {}", extra.join(" ")));
        report_json(out)
    };
    let on_s3 = report(&s3, &dir.path().join("r-s3"), &["--store"]);
    let on_disk = report(local.to_str().unwrap(), &dir.path().join("r-local"), &[]);
    assert_eq!(differing(&on_s3, &on_disk), Vec::<String>::new(), "the report on S3 differs from the one on disk");
    let stored = moto.keys("fleet/");
    assert!(
        stored.iter().any(|k| k.starts_with("fleet/collective_stalls/") || k.starts_with("fleet/findings/")),
        "--store wrote its results into the bucket: {stored:?}"
    );
    // A second run reuses the stalls stored on S3 (their fingerprint matches)
    // and gives the same figures, the matcher's counts included; only what
    // this run did (hours reused, rows written) differs.
    let mut again = report(&s3, &dir.path().join("r-s3-again"), &["--store"]);
    assert!(on_s3["stalls"]["rows_written"].as_i64().unwrap() > 0, "{}", on_s3["stalls"]);
    assert!(on_s3["stalls"]["instances_exact"].as_i64().unwrap() > 0, "{}", on_s3["stalls"]);
    assert_eq!(again["stalls"]["hours_reused"], 1, "{}", again["stalls"]);
    // What a run did, not what it found: differs between a run that
    // computed the stall hours and one that reused them.
    let without_run_counts = |r: &mut serde_json::Value| {
        let stalls = r["stalls"].as_object_mut().unwrap();
        stalls.remove("hours_reused");
        stalls.remove("rows_written");
    };
    let mut first = on_s3.clone();
    for r in [&mut again, &mut first] {
        without_run_counts(r);
    }
    assert_eq!(differing(&again, &first), Vec::<String>::new(), "the second report differs");

    // The report's SQL on a Ballista cluster whose scheduler and executors
    // read the bucket themselves (Ballista's S3 registry, the same AWS_*
    // environment): the same figures.
    let (engine, _cluster) = ballista_cluster(dir.path(), 2, |c| moto.env(c));
    let mut on_ballista = report(&s3, &dir.path().join("r-ballista"), &["--store", "--engine", &engine]);
    without_run_counts(&mut on_ballista);
    assert_eq!(differing(&on_ballista, &first), Vec::<String>::new(), "the report on Ballista over S3 differs");
    for i in 0..2 {
        let log = std::fs::read_to_string(dir.path().join(format!("executor{i}.log"))).unwrap();
        assert!(log.contains("Execute task"), "executor {i} ran no task:\n{log}");
    }
    // This fleet has no gpu_events: the empty table is read from an empty file (see engine.rs).
    let log = std::fs::read_to_string(dir.path().join("scheduler.log")).unwrap();
    assert!(!log.contains("Failed to update"), "the scheduler dropped a task's status:\n{log}");
    assert!(moto.keys("fleet/_strand_no_files/").iter().any(|k| k.contains("gpu_events")), "an empty gpu_events file");
    drop(moto.proc);
}
