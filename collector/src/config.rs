//! Collector configuration (`strand serve --config collector.toml`).
//!
//! `collector/collector.toml` documents every key. An invalid file or value
//! fails at start with the file, the key and the reason; nothing secret is
//! in the file (nodes are listed with the SHA-256 of their token).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Largest accepted upload body (one Parquet batch).
    pub max_body_bytes: u64,
    /// Bodies being received at once may hold at most this many bytes in
    /// memory; beyond it uploads are answered 429 with `Retry-After`.
    pub max_inflight_bytes: u64,
    /// An upload whose body has not fully arrived after this long gets 408.
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
    /// On SIGTERM, requests in flight get this long to finish.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Seconds sent in `Retry-After` with 429 and 503 answers.
    pub retry_after_secs: u32,
    /// One node's uploads may hold at most this much of `max_inflight_bytes`
    /// at once; its further uploads get 429 while other nodes' proceed.
    /// Unset: a quarter of `max_inflight_bytes`, at least `max_body_bytes`.
    pub max_inflight_bytes_per_node: Option<u64>,
    /// Largest total uncompressed size of a batch's pages; a larger batch gets
    /// 413 before anything is decoded. What decoding needs at its peak (a page
    /// per column and one batch of rows) is charged to the in-flight budget.
    pub max_decoded_bytes: u64,
    /// A connection must send a request's complete headers within this long.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// A connection on which the client sends nothing for this long is closed.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Most connections open at once; more are closed at accept. Keep it
    /// below the process's open-file limit (`LimitNOFILE`).
    pub max_connections: usize,
    /// Most connections open at once from one IP address.
    pub max_connections_per_peer: usize,
    pub storage: StorageConfig,
    pub compaction: CompactionConfig,
    pub tls: Option<TlsConfig>,
    /// Who may upload: one entry per node (or per cluster with `node = "*"`).
    pub nodes: Vec<NodeEntry>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9400".into(),
            max_body_bytes: 64 << 20,
            max_inflight_bytes: 1 << 30,
            body_timeout: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(30),
            retry_after_secs: 5,
            max_inflight_bytes_per_node: None,
            max_decoded_bytes: 512 << 20,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 4096,
            max_connections_per_peer: 64,
            storage: StorageConfig::default(),
            compaction: CompactionConfig::default(),
            tls: None,
            nodes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Dataset root: a directory, or `s3://bucket/prefix`.
    pub root: String,
    /// S3-compatible endpoint (MinIO, Ceph…); unset means AWS or `AWS_ENDPOINT`.
    pub endpoint: Option<String>,
    /// S3 region; unset means `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// Allow plain-HTTP endpoints (a local MinIO).
    pub allow_http: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { root: "strand-data".into(), endpoint: None, region: None, allow_http: false }
    }
}

/// Compaction of closed hours and retention (`[compaction]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Run compaction and retention in the service.
    pub enabled: bool,
    /// Time between passes.
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// An hour is compacted once it ended this long ago.
    #[serde(deserialize_with = "duration")]
    pub after: Duration,
    /// Landed batches are removed this long after the part holding them was committed.
    #[serde(deserialize_with = "duration")]
    pub cleanup_delay: Duration,
    /// Landed bytes per compacted part (a bigger hour gets several parts).
    pub max_part_bytes: u64,
    /// Dates older than this are deleted; unset keeps everything.
    #[serde(deserialize_with = "opt_duration")]
    pub retention: Option<Duration>,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(300),
            after: Duration::from_secs(900),
            cleanup_delay: Duration::from_secs(600),
            max_part_bytes: 256 << 20,
            retention: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub cluster: String,
    /// A node name, or `*` for every node of the cluster (a shared cluster token).
    pub node: String,
    /// Hex SHA-256 of the node's token: `printf %s "$TOKEN" | sha256sum`.
    pub token_sha256: String,
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?} ({e}); write e.g. \"30s\" or \"2m\"")))
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    pub source_name: String,
    pub message: String,
}

impl Config {
    pub fn from_toml(name: &str, text: &str) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError { source_name: name.to_string(), message };
        let cfg: Config = toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { source_name: name.clone(), message: format!("cannot read: {e}") })?;
        Self::from_toml(&name, &text)
    }

    pub fn validate(&self) -> Result<(), String> {
        let key = |k: &str, m: String| format!("key `{k}`: {m}");
        self.listen_addr().map_err(|m| key("listen", m))?;
        if self.max_body_bytes == 0 {
            return Err(key("max_body_bytes", "must be at least 1".into()));
        }
        if self.max_inflight_bytes < self.max_body_bytes {
            return Err(key(
                "max_inflight_bytes",
                format!("{} is smaller than max_body_bytes ({})", self.max_inflight_bytes, self.max_body_bytes),
            ));
        }
        for (k, d) in [
            ("body_timeout", self.body_timeout),
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(key(k, "must be longer than 0s".into()));
            }
        }
        if let Some(n) = self.max_inflight_bytes_per_node
            && (n < self.max_body_bytes || n > self.max_inflight_bytes)
        {
            return Err(key(
                "max_inflight_bytes_per_node",
                format!(
                    "{n} must lie between max_body_bytes ({}) and max_inflight_bytes ({})",
                    self.max_body_bytes, self.max_inflight_bytes
                ),
            ));
        }
        if self.max_decoded_bytes == 0 {
            return Err(key("max_decoded_bytes", "must be at least 1".into()));
        }
        if self.max_connections == 0 || self.max_connections_per_peer == 0 {
            return Err(key("max_connections", "and max_connections_per_peer must be at least 1".into()));
        }
        if self.storage.root.is_empty() {
            return Err(key("storage.root", "must name a directory or s3://bucket/prefix".into()));
        }
        if self.storage.root.contains("://") && !self.storage.root.starts_with("s3://") {
            return Err(key(
                "storage.root",
                format!("{:?}: only directories and s3:// URLs are supported", self.storage.root),
            ));
        }
        let c = &self.compaction;
        if c.interval.is_zero() {
            return Err(key("compaction.interval", "must be longer than 0s".into()));
        }
        if c.max_part_bytes < 1 << 20 {
            return Err(key("compaction.max_part_bytes", format!("{} is below 1 MiB", c.max_part_bytes)));
        }
        if c.retention.is_some_and(|r| r < Duration::from_secs(2 * 86_400)) {
            return Err(key(
                "compaction.retention",
                "must be at least 2 days (a shorter one would delete hours not yet compacted)".into(),
            ));
        }
        if self.nodes.is_empty() {
            return Err(key("nodes", "no [[nodes]] entry: every upload would be refused; add one per node".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let k = |f: &str| format!("nodes[{i}].{f}");
            strand_schemas::protocol::validate_name("cluster", &n.cluster).map_err(|m| key(&k("cluster"), m))?;
            if n.node != "*" {
                strand_schemas::protocol::validate_name("node", &n.node).map_err(|m| key(&k("node"), m))?;
            }
            parse_sha256(&n.token_sha256).map_err(|m| key(&k("token_sha256"), m))?;
            if !seen.insert((n.cluster.as_str(), n.node.as_str())) {
                return Err(key(&k("node"), format!("{}/{} is listed twice", n.cluster, n.node)));
            }
        }
        Ok(())
    }

    /// The share of the in-flight budget one node may hold.
    pub fn per_node_inflight(&self) -> u64 {
        self.max_inflight_bytes_per_node.unwrap_or((self.max_inflight_bytes / 4).max(self.max_body_bytes))
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen.parse().map_err(|e| format!("{:?} is not an address like 0.0.0.0:9400 ({e})", self.listen))
    }
}

/// The 32 bytes of a hex SHA-256 (64 hex digits, either case).
pub fn parse_sha256(hex: &str) -> Result<[u8; 32], String> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "expected 64 hex digits (the SHA-256 of the token, `printf %s \"$TOKEN\" | sha256sum`), got {} characters",
            hex.len()
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "[[nodes]]\ncluster = \"c1\"\nnode = \"n1\"\ntoken_sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n";

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../collector.toml");
        let cfg = Config::from_toml("collector/collector.toml", text).unwrap();
        assert_eq!(cfg.listen, Config::default().listen);
        assert_eq!(cfg.max_body_bytes, Config::default().max_body_bytes);
        assert!(!cfg.nodes.is_empty());
    }

    #[test]
    fn one_node_and_defaults_for_the_rest() {
        let cfg = Config::from_toml("a.toml", NODE).unwrap();
        assert_eq!(cfg.storage.root, "strand-data");
        assert_eq!(parse_sha256(&cfg.nodes[0].token_sha256).unwrap()[0], 0x9f);
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = Config::from_toml("/etc/strand/collector.toml", "").unwrap_err().to_string();
        assert!(e.starts_with("/etc/strand/collector.toml: key `nodes`"), "{e}");
        let e = Config::from_toml("a.toml", &format!("lisen = \"x\"\n{NODE}")).unwrap_err().to_string();
        assert!(e.contains("unknown field `lisen`") && e.contains("line 1"), "{e}");
        let e = Config::from_toml("a.toml", &format!("listen = \"nowhere\"\n{NODE}")).unwrap_err().to_string();
        assert!(e.contains("key `listen`"), "{e}");
        let e = Config::from_toml("a.toml", &NODE.replace("\"n1\"", "\"../n1\"")).unwrap_err().to_string();
        assert!(e.contains("key `nodes[0].node`"), "{e}");
        let e = Config::from_toml("a.toml", &NODE.replace("9f86", "zz86")).unwrap_err().to_string();
        assert!(e.contains("key `nodes[0].token_sha256`") && e.contains("64 hex digits"), "{e}");
        let e = Config::from_toml("a.toml", &format!("{NODE}{NODE}")).unwrap_err().to_string();
        assert!(e.contains("key `nodes[1].node`: c1/n1 is listed twice"), "{e}");
        let e = Config::from_toml("a.toml", &format!("max_inflight_bytes = 10\n{NODE}")).unwrap_err().to_string();
        assert!(e.contains("key `max_inflight_bytes`"), "{e}");
        let e = Config::from_toml("a.toml", &format!("body_timeout = \"soon\"\n{NODE}")).unwrap_err().to_string();
        assert!(e.contains("invalid duration \"soon\""), "{e}");
        let e = Config::from_toml("a.toml", &format!("[storage]\nroot = \"gs://b\"\n{NODE}")).unwrap_err().to_string();
        assert!(e.contains("key `storage.root`"), "{e}");
        let e =
            Config::from_toml("a.toml", &format!("[compaction]\nretention = \"1h\"\n{NODE}")).unwrap_err().to_string();
        assert!(e.contains("key `compaction.retention`"), "{e}");
        let cfg = Config::from_toml("a.toml", &format!("[compaction]\nretention = \"90d\"\n{NODE}")).unwrap();
        assert_eq!(cfg.compaction.retention, Some(Duration::from_secs(90 * 86_400)));
    }
}
