//! Agent → collector over loopback, with real processes: every committed
//! batch arrives exactly once, through a collector outage and through an
//! agent killed mid-write (issue 3).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use strand_tests::*;

const TOKEN: &str = "e2e-secret-token-for-node-a";

struct Setup {
    dir: tempfile::TempDir,
    port: u16,
}

impl Setup {
    fn new() -> Self {
        let s = Self { dir: tempfile::tempdir().unwrap(), port: free_port() };
        std::fs::write(s.path("token"), format!("{TOKEN}\n")).unwrap();
        let sha = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(TOKEN.as_bytes())?;
            c.wait_with_output()
        });
        let sha = String::from_utf8(sha.unwrap().stdout).unwrap();
        let sha = sha.split_whitespace().next().unwrap();
        std::fs::write(
            s.path("collector.toml"),
            format!(
                "listen = \"127.0.0.1:{}\"\n[storage]\nroot = \"{}\"\n[[nodes]]\ncluster = \"e2e\"\nnode = \"node-a\"\ntoken_sha256 = \"{sha}\"\n",
                s.port,
                s.path("collected").display()
            ),
        )
        .unwrap();
        std::fs::write(
            s.path("agent.toml"),
            format!(
                "cluster = \"e2e\"\nnode = \"node-a\"\ndata_dir = \"{}\"\n\
                 [metrics]\nlisten = \"\"\n[output]\nrotate_interval = \"1s\"\n\
                 [nvml]\nperiod = \"200ms\"\ninfiniband = false\n[cupti]\nenabled = false\n[markers]\nenabled = false\n\
                 [collector]\nurl = \"http://127.0.0.1:{}\"\ntoken_file = \"{}\"\n",
                s.path("spool").display(),
                s.port,
                s.path("token").display()
            ),
        )
        .unwrap();
        s
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn collector(&self) -> Proc {
        let p = Proc::spawn(
            Command::new(bin("strand"))
                .arg("serve")
                .arg("--config")
                .arg(self.path("collector.toml"))
                .env("STRAND_LOG", "warn"),
            "strand serve",
        );
        let port = self.port;
        assert!(
            eventually(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "collector did not listen"
        );
        p
    }

    /// Starts the agent with debug logs into `log` (they name every committed batch).
    fn agent(&self, log: &str) -> Proc {
        let out = std::fs::File::create(self.path(log)).unwrap();
        Proc::spawn(
            Command::new(bin("strand-agent"))
                .arg("--config")
                .arg(self.path("agent.toml"))
                .arg("--simulate-gpus")
                .arg("2")
                .env("STRAND_LOG", "strand_agent=debug,warn")
                .stderr(out),
            "strand-agent",
        )
    }

    /// Batches the agent says it committed ((table, batch id) → rows), from its logs.
    fn committed(&self, logs: &[&str]) -> BTreeMap<(String, String), i64> {
        let mut out = BTreeMap::new();
        for log in logs {
            let text = std::fs::read_to_string(self.path(log)).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("batch committed")) {
                let field = |k: &str| {
                    line.split_whitespace().find_map(|w| w.strip_prefix(k)).map(|v| v.trim_matches('"').to_string())
                };
                let (Some(table), Some(batch), Some(rows)) = (field("table="), field("batch="), field("rows=")) else {
                    continue;
                };
                assert!(
                    out.insert((table, batch.clone()), rows.parse::<i64>().unwrap()).is_none(),
                    "batch {batch} committed twice"
                );
            }
        }
        out
    }

    /// Batches stored by the collector ((table, batch id) → rows), each
    /// readable and in the node's Hive directory under the landing area
    /// (`strand_schemas::layout`); a batch whose rows cross an hour is
    /// stored as one file per hour, its rows summed here.
    fn stored(&self) -> BTreeMap<(String, String), i64> {
        let root = self.path("collected");
        let mut out = BTreeMap::new();
        for f in files(&root, ".parquet") {
            let rel = f.strip_prefix(&root).unwrap().to_string_lossy().to_string();
            let rel = rel.strip_prefix(&format!("{}/", strand_schemas::layout::LANDING)).unwrap_or(&rel);
            let table = rel.split('/').next().unwrap().to_string();
            assert!(rel.contains("/cluster_dir=e2e/node_dir=node-a/"), "{rel}");
            let (info, reader) =
                strand_schemas::open_file(&f, &table).unwrap_or_else(|e| panic!("stored file unreadable: {e}"));
            let rows: usize = reader.map(|b| b.expect("every page decodes").num_rows()).sum();
            assert_eq!(rows as i64, info.rows);
            let id = f.file_stem().unwrap().to_string_lossy().to_string();
            *out.entry((table, id)).or_default() += info.rows;
        }
        out
    }

    /// Rows of `gpu_samples` the agent committed.
    fn committed_samples(committed: &BTreeMap<(String, String), i64>) -> i64 {
        committed.iter().filter(|((t, _), _)| t == "gpu_samples").map(|(_, r)| r).sum()
    }

    fn spool_files(&self) -> Vec<PathBuf> {
        files(&self.path("spool"), ".parquet")
            .into_iter()
            .filter(|p| !p.to_string_lossy().contains(".rejected"))
            .collect()
    }

    /// Rows as `strand query` counts them over the collector's dataset.
    fn queried_rows(&self) -> i64 {
        let out = Command::new(bin("strand"))
            .args(["query", "--format", "csv", "--data"])
            .arg(self.path("collected"))
            .arg("SELECT count(*) AS n, count(DISTINCT gpu_index * 1000000000000000000 + ts_ns) AS distinct_samples FROM gpu_samples")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let row = text.lines().nth(1).unwrap();
        let (n, d) = row.split_once(',').unwrap();
        assert_eq!(n, d, "every sample appears exactly once");
        n.parse().unwrap()
    }
}

fn wait_batches(dir: &Path, n: usize) -> bool {
    eventually(Duration::from_secs(30), || files(&dir.join("gpu_samples"), ".parquet").len() >= n)
}

#[test]
fn every_committed_row_is_queryable_exactly_once() {
    let s = Setup::new();
    let _collector = s.collector();
    let mut agent = s.agent("agent.log");
    assert!(
        wait_batches(&s.path("collected").join(strand_schemas::layout::LANDING), 3),
        "three batches reached the collector"
    );
    agent.signal(SIGTERM);
    assert!(agent.wait(Duration::from_secs(30)).success());

    let committed = s.committed(&["agent.log"]);
    assert!(committed.keys().filter(|(t, _)| t == "gpu_samples").count() >= 3);
    assert_eq!(s.stored(), committed, "stored batches = committed batches, same row counts");
    assert_eq!(s.queried_rows(), Setup::committed_samples(&committed));
    assert!(s.spool_files().is_empty(), "the last batch was shipped at shutdown");
}

#[test]
fn a_collector_outage_delays_but_loses_nothing() {
    let s = Setup::new();
    let mut agent = s.agent("agent.log");
    // The collector is down: batches pile up in the spool.
    assert!(wait_batches(&s.path("spool"), 3), "batches accumulate in the spool while the collector is down");
    let collector = s.collector();
    assert!(
        eventually(Duration::from_secs(60), || s.stored().keys().filter(|(t, _)| t == "gpu_samples").count() >= 4),
        "the backlog is shipped once the collector is up"
    );
    agent.signal(SIGTERM);
    assert!(agent.wait(Duration::from_secs(30)).success());
    drop(collector);

    let committed = s.committed(&["agent.log"]);
    assert_eq!(s.stored(), committed);
    assert_eq!(s.queried_rows(), Setup::committed_samples(&committed));
    assert!(s.spool_files().is_empty(), "the spool drained to empty");
}

#[test]
fn an_agent_killed_mid_write_ships_every_complete_batch_and_nothing_corrupt() {
    let s = Setup::new();
    // Collector down during the first run, so complete batches stay in the spool.
    let mut first = s.agent("first.log");
    assert!(wait_batches(&s.path("spool"), 2));
    // The writer always has an open, half-written batch: SIGKILL lands mid-write.
    std::thread::sleep(Duration::from_millis(500));
    first.signal(SIGKILL);
    first.wait(Duration::from_secs(10));
    let leftovers = files(&s.path("spool"), ".tmp");
    assert!(!leftovers.is_empty(), "a half-written batch was left behind");

    let _collector = s.collector();
    let mut second = s.agent("second.log");
    assert!(
        eventually(Duration::from_secs(30), || leftovers.iter().all(|p| !p.exists())),
        "the first run's half-written batches are removed at start"
    );
    std::thread::sleep(Duration::from_secs(2));
    second.signal(SIGTERM);
    assert!(second.wait(Duration::from_secs(30)).success());

    let log = std::fs::read_to_string(s.path("second.log")).unwrap();
    assert!(log.contains("incomplete batch file(s) left by an earlier crash"), "{log}");
    // The open batches' rows, up to the last second's sync, come back from their journals.
    assert!(log.contains("recovered from their journals"), "{log}");
    let committed = s.committed(&["first.log", "second.log"]);
    assert_eq!(s.stored(), committed, "every complete batch of both runs, once; no partial one");
    assert_eq!(s.queried_rows(), Setup::committed_samples(&committed));
    assert!(files(&s.path("spool"), ".tmp").is_empty());
    assert!(files(&s.path("spool"), ".journal").is_empty());
}

#[test]
fn kill_9_at_the_default_rotation_loses_about_a_second_of_rows() {
    let s = Setup::new();
    // The default rotation: without the journal, kill -9 lost up to 60 s.
    let toml = std::fs::read_to_string(s.path("agent.toml")).unwrap();
    std::fs::write(s.path("agent.toml"), toml.replace("rotate_interval = \"1s\"", "rotate_interval = \"60s\""))
        .unwrap();
    let mut first = s.agent("first.log");
    std::thread::sleep(Duration::from_secs(5));
    let killed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    first.signal(SIGKILL);
    first.wait(Duration::from_secs(10));
    assert!(files(&s.path("spool"), ".parquet").is_empty(), "nothing was committed before the kill");

    let _collector = s.collector();
    let mut second = s.agent("second.log");
    let collected = s.path("collected");
    assert!(
        eventually(Duration::from_secs(30), || !files(&collected, ".parquet").is_empty()),
        "the recovered batch is shipped"
    );
    second.signal(SIGTERM);
    assert!(second.wait(Duration::from_secs(30)).success());

    let before_kill: Vec<i64> = files(&collected, ".parquet")
        .iter()
        .filter(|f| f.to_string_lossy().contains("gpu_samples/"))
        .flat_map(|f| strand_schemas::read_file::<strand_schemas::GpuSample>(f).unwrap())
        .map(|r| r.ts_ns)
        .filter(|&t| t < killed_at)
        .collect();
    let first_ts = before_kill.iter().min().copied().unwrap_or(killed_at);
    let last_ts = before_kill.iter().max().copied().unwrap_or(0);
    let lost_ms = (killed_at - last_ts) / 1_000_000;
    eprintln!(
        "kill -9 after {:.1} s of sampling: {} samples kept, the last {lost_ms} ms before the kill lost",
        (killed_at - first_ts) as f64 / 1e9,
        before_kill.len()
    );
    // The journal is synced every second; samples come every 200 ms.
    assert!(before_kill.len() >= 10, "{}", before_kill.len());
    assert!(lost_ms < 1500, "lost the last {lost_ms} ms");
}
