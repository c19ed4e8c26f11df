//! Helpers of the collector's end-to-end tests: run `strand serve` as a
//! process on loopback, make batches, run `strand query`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use strand_schemas::protocol;
use strand_schemas::{GpuSample, Table, to_parquet_bytes};

pub const STRAND: &str = env!("CARGO_BIN_EXE_strand");
/// 2024-03-01T00:00:00Z.
pub const T0: i64 = 1_709_251_200_000_000_000;

pub fn token_for(cluster: &str, node: &str) -> String {
    format!("test-token-{cluster}-{node}")
}

pub fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A running `strand serve`, killed when dropped.
pub struct Collector {
    pub child: Child,
    pub url: String,
    pub addr: String,
    pub data: PathBuf,
    pub config: PathBuf,
    log: mpsc::Receiver<String>,
}

impl Collector {
    /// Starts a collector storing under `dir/data` that knows nodes c1/n1 and
    /// c1/n2 (tokens from [`token_for`]); `extra` is added at the top of its
    /// config file.
    pub fn start(dir: &Path, extra: &str) -> Self {
        let config = dir.join("collector.toml");
        let mut text = format!("listen = \"127.0.0.1:0\"\n{extra}\n[storage]\nroot = {:?}\n", dir.join("data"));
        if !extra.contains("[compaction]") {
            // Tests look at the landed files; compaction has its own tests.
            text.push_str("[compaction]\nenabled = false\n");
        }
        for node in ["n1", "n2"] {
            text.push_str(&format!(
                "[[nodes]]\ncluster = \"c1\"\nnode = \"{node}\"\ntoken_sha256 = \"{}\"\n",
                sha256_hex(&token_for("c1", node))
            ));
        }
        std::fs::write(&config, text).unwrap();
        Self::start_with_config(&config, &dir.join("data"))
    }

    pub fn start_with_config(config: &Path, data: &Path) -> Self {
        let mut child = Command::new(STRAND)
            .args(["serve", "--config"])
            .arg(config)
            .env("STRAND_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[strand serve] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut url = None;
        while url.is_none() {
            let line = rx.recv_timeout(Duration::from_secs(30)).expect("strand serve did not start");
            if let Some(rest) = line.split("listening on ").nth(1) {
                url = rest.split([',', ' ']).next().map(str::to_string);
            }
        }
        let url = url.unwrap();
        let addr = url.split("://").nth(1).unwrap().to_string();
        Self { child, url, addr, data: data.to_path_buf(), config: config.to_path_buf(), log: rx }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child process.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `rows` gpu_samples rows of cluster/node, the first at `ts`.
pub fn batch(cluster: &str, node: &str, rows: usize, ts: i64) -> Vec<u8> {
    let rows: Vec<GpuSample> = (0..rows)
        .map(|i| {
            let mut r = GpuSample::example(i as u64);
            r.cluster = cluster.into();
            r.node = node.into();
            r.ts_ns = ts + i as i64 * 1_000_000_000;
            r
        })
        .collect();
    to_parquet_bytes(&rows).unwrap()
}

pub struct Upload<'a> {
    pub table: &'a str,
    pub cluster: &'a str,
    pub node: &'a str,
    pub batch_id: &'a str,
    pub token: Option<String>,
}

impl<'a> Upload<'a> {
    pub fn new(node: &'a str, batch_id: &'a str) -> Self {
        Self { table: "gpu_samples", cluster: "c1", node, batch_id, token: Some(token_for("c1", node)) }
    }

    pub async fn send(&self, client: &reqwest::Client, base: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let mut req = client
            .post(format!("{base}{}", protocol::BATCHES_PATH))
            .header(protocol::HEADER_TABLE, self.table)
            .header(protocol::HEADER_CLUSTER, self.cluster)
            .header(protocol::HEADER_NODE, self.node)
            .header(protocol::HEADER_BATCH_ID, self.batch_id)
            .header("content-type", "application/vnd.apache.parquet")
            .body(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }
}

/// `strand query --format csv`: (exit success, stdout, stderr).
pub fn query(data: &Path, sql: &str) -> (bool, String, String) {
    let out = Command::new(STRAND).args(["query", "--format", "csv", "--data"]).arg(data).arg(sql).output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// The single value of a one-row, one-column CSV result.
pub fn query_value(data: &Path, sql: &str) -> String {
    let (ok, out, err) = query(data, sql);
    assert!(ok, "strand query failed: {err}");
    out.lines().nth(1).unwrap_or_default().to_string()
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
