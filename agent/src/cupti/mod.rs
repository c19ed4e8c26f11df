//! CUPTI activity records from the injection library (`strand-inject`):
//! the agent-side socket server that turns them into `kernel_events` and
//! `cuda_sync_calls` rows. How it works: `docs/cupti.md`.
//!
//! Entry points for the agent core:
//! - [`CuptiMetrics::register`] once, with the Prometheus registry;
//! - [`socket_path`] to resolve `cupti.socket` against `data_dir`;
//! - [`serve`] as a task, until shutdown.

mod metrics;
mod server;
mod session;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use metrics::CuptiMetrics;
pub use server::serve;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CuptiConfig {
    pub enabled: bool,
    /// Socket the injection library connects to; relative paths are under `data_dir`.
    pub socket: PathBuf,
    /// User ids allowed to send records besides the agent's own and root.
    pub allowed_uids: Vec<u32>,
}

impl Default for CuptiConfig {
    fn default() -> Self {
        Self { enabled: true, socket: PathBuf::from("cupti.sock"), allowed_uids: Vec::new() }
    }
}

/// The socket path the agent listens on and `wrap` points workloads at:
/// `cupti.socket`, under `data_dir` when relative.
pub fn socket_path(cfg: &CuptiConfig, data_dir: &Path) -> PathBuf {
    if cfg.socket.is_absolute() { cfg.socket.clone() } else { data_dir.join(&cfg.socket) }
}

#[cfg(test)]
mod tests;
