//! What the collector benches share: a real collector on loopback that
//! knows each simulated node by its own token.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// Writes `<dir>/collector.toml` (listen on a free loopback port, store in
/// `root`, one `[[nodes]]` entry per `(node, token)` of `cluster`), starts
/// `binary serve` on it and returns the process with the URL it logged.
/// Its warnings and errors are echoed with the prefix `label`.
pub fn start_collector(
    binary: &Path,
    dir: &Path,
    root: &Path,
    cluster: &str,
    nodes: impl IntoIterator<Item = (String, String)>,
    label: &'static str,
) -> anyhow::Result<(Child, String)> {
    let config = dir.join("collector.toml");
    let mut text = format!("listen = \"127.0.0.1:0\"\n[storage]\nroot = {root:?}\n");
    for (node, token) in nodes {
        let hash: String = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        text.push_str(&format!("[[nodes]]\ncluster = \"{cluster}\"\nnode = \"{node}\"\ntoken_sha256 = \"{hash}\"\n"));
    }
    std::fs::write(&config, text)?;
    let mut server = Command::new(binary)
        .args(["serve", "--config"])
        .arg(&config)
        .env("STRAND_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stderr = server.stderr.take().context("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("[{label}] {line}");
            }
            let _ = tx.send(line);
        }
    });
    let url = loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).with_context(|| format!("{label} did not start"))?;
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split([',', ' ']).next().unwrap_or_default().to_string();
        }
    };
    Ok((server, url))
}
