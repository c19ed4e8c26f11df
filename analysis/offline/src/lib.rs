//! strand-offline: the offline tools over one run, linking no DataFusion,
//! async runtime or network stack.
//!
//! - [`kineto`]: PyTorch profiler (Kineto) traces as strand rows.
//! - [`import`]: `strand import kineto`, traces → the tables every door
//!   writes (raw rows and `windows`, through the agent's `WindowBuilder`).
//! - [`postmortem`]: `strand postmortem`, where every GPU-second of one run
//!   went and what the findings engine says about it.
//! - [`export`]: `strand export trace`, the run as a timeline for Perfetto UI
//!   and `chrome://tracing`.
//! - [`run`]: reading one run's inputs, shared by both.

pub mod export;
pub mod import;
pub mod kineto;
pub mod postmortem;
pub mod run;

/// Test helpers shared by the crate's tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use std::path::{Path, PathBuf};

    /// The Kineto test traces: `$STRAND_TEST_DATA`, else the first
    /// `shared/data/kineto` found walking up from this crate.
    pub fn kineto_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("STRAND_TEST_DATA") {
            let d = PathBuf::from(d);
            return if d.join("kineto").is_dir() { d.join("kineto") } else { d };
        }
        let mut dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
        while let Some(d) = dir {
            for cand in [d.join("shared/data/kineto"), d.join("../shared/data/kineto")] {
                if cand.is_dir() {
                    return cand;
                }
            }
            dir = d.parent();
        }
        panic!("Kineto test traces not found: set STRAND_TEST_DATA or put them at ../shared/data/kineto");
    }
}
