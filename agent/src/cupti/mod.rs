//! CUPTI activity records from the injection library (`strand-inject`):
//! the agent-side socket server that turns them into `kernel_events` rows.

use std::path::PathBuf;

use serde::Deserialize;

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
