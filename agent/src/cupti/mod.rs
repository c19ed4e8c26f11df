//! CUPTI activity records from the injection library (`strand-inject`):
//! the agent-side socket server that turns them into `kernel_events` and
//! `cuda_sync_calls` rows. How it works: `docs/cupti.md`.
//!
//! The agent starts it as [`CuptiSource`] (parts `receiver` and `injection`);
//! [`socket_path`] resolves `cupti.socket` against `data_dir` (also for `wrap`).

mod metrics;
mod server;
mod session;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use metrics::CuptiMetrics;
#[cfg(test)]
pub use server::serve;

use crate::source::{Report, Running, Source, StartContext, State};

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

const PARTS: &[&str] = &["receiver", "injection"];

/// The CUPTI source: `receiver`, the socket the injection library sends to;
/// `injection`, the library `strand-agent wrap` gives workloads.
pub struct CuptiSource {
    metrics: CuptiMetrics,
}

impl CuptiSource {
    pub fn new(registry: &mut prometheus_client::registry::Registry) -> Self {
        Self { metrics: CuptiMetrics::register(registry) }
    }
}

/// The injection library `wrap` would use, and what this host lacks for it.
fn injection_report() -> Report {
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
    match crate::wrap::find_library(&|k| std::env::var_os(k), exe_dir.as_deref()) {
        Ok(lib) => {
            // SAFETY: loads and unloads a shared library to see whether it loads.
            let (cuda, cupti) =
                unsafe { (cudarc::driver::sys::is_culib_present(), cudarc::cupti::sys::is_culib_present()) };
            let note = match (cuda, cupti) {
                (false, _) => "; libcuda is not loadable here: no CUDA workload to trace on this host",
                (true, false) => {
                    "; libcupti is not loadable: add the CUDA toolkit's CUPTI to the workloads' library path"
                }
                (true, true) => "",
            };
            Report::new(
                "cupti",
                "injection",
                State::Up,
                format!("{} (strand-agent wrap -- <cmd>){note}", lib.display()),
            )
        }
        Err(e) => Report::new("cupti", "injection", State::Down, format!("{e:#}: wrap cannot inject")),
    }
}

impl Source for CuptiSource {
    fn name(&self) -> &'static str {
        "cupti"
    }

    fn parts(&self) -> &'static [&'static str] {
        PARTS
    }

    fn enabled(&self, cfg: &crate::config::Config) -> (bool, &'static str) {
        (cfg.cupti.enabled, "cupti.enabled")
    }

    fn check(&self, cfg: &crate::config::Config) -> Vec<Report> {
        use std::os::unix::fs::FileTypeExt;
        let socket = socket_path(&cfg.cupti, &cfg.data_dir);
        let shown = socket.display();
        let receiver = match std::fs::symlink_metadata(&socket) {
            Ok(m) if m.file_type().is_socket() => match strand_inject::sock::connect(&socket) {
                Ok(_) => Report::new("cupti", "receiver", State::Up, format!("an agent is listening on {shown}")),
                Err(_) => Report::new(
                    "cupti",
                    "receiver",
                    State::Up,
                    format!("would listen on {shown} (a stale socket is there)"),
                ),
            },
            Ok(_) => Report::new("cupti", "receiver", State::Down, format!("{shown} exists and is not a socket")),
            Err(_) => Report::new("cupti", "receiver", State::Up, format!("would listen on {shown}")),
        };
        vec![receiver, injection_report()]
    }

    fn start(self: Box<Self>, cx: &mut StartContext) -> anyhow::Result<Vec<Running>> {
        cx.health.report(injection_report());
        let socket = socket_path(&cx.cfg.cupti, &cx.cfg.data_dir);
        let listener = match server::bind(&socket) {
            Ok(l) => l,
            Err(e) => {
                cx.health.report(Report::new(
                    "cupti",
                    "receiver",
                    State::Down,
                    format!("{e:#}: no kernel timelines; the other sources keep running"),
                ));
                return Ok(Vec::new());
            }
        };
        cx.health.report(Report::new("cupti", "receiver", State::Up, format!("listening on {}", socket.display())));
        let (c, ctx, k, y, sd, m, health) = (
            cx.cfg.cupti.clone(),
            cx.ctx.clone(),
            cx.sinks.kernel_events.clone(),
            cx.sinks.cuda_sync_calls.clone(),
            cx.shutdown.clone(),
            self.metrics,
            cx.health.clone(),
        );
        let task = tokio::spawn(async move {
            let proc_root = PathBuf::from("/proc");
            if let Err(e) = server::serve_bound(&c, listener, socket, ctx, k, y, m, sd, proc_root).await {
                health.report(Report::new("cupti", "receiver", State::Down, format!("stopped: {e:#}")));
            }
        });
        Ok(vec![Running::Task(task)])
    }
}

#[cfg(test)]
mod tests;
