//! strand-analysis: the figures of DESIGN §3–4, in one place for the agent's
//! live windows and for the offline tools (`strand import`, `strand
//! postmortem`).
//!
//! | DESIGN figure | where |
//! |---|---|
//! | compute, comm_exposed, memcpy_exposed, idle, comm_overlapped, overlap ratio | [`decompose`] |
//! | idle sub-classes host_bound, launch_gap, io_blocked, no_process, other (and HTA's per-stream view) | [`idle`] |
//! | collective instances across ranks, comm transfer vs sync_stall (exact, or estimated) | [`collective`] |
//! | hollow busy, ghost compute, reported utilization, MFU, tensor-pipe estimate | [`window`] (per window), [`mfu`] (peak table) |
//! | steps inferred from NCCL call periodicity | [`steps`] |
//! | workload markers → steps | [`markers`] |
//! | the streaming per-GPU window builder the agent feeds | [`window::WindowBuilder`] |
//! | the one accounting over windows (every door's totals) | [`accounting`] |
//!
//! Interval lengths are computed by `strand_kernels::Reducer` (GPU or CPU).

use std::sync::Arc;

pub mod accounting;
pub mod collective;
pub mod decompose;
pub mod findings;
pub mod idle;
pub mod markers;
pub mod mfu;
pub mod steps;
pub mod window;

pub use accounting::{GpuTime, LEAVES, Leaf};
pub use decompose::{DecomposeBatch, Decomposition};
pub use window::{BuilderStats, WindowBuilder, WindowConfig};

/// Why an analysis could not run.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("invalid window configuration: {0}")]
    WindowConfig(String),
    #[error("invalid peak FLOP/s override: {0}")]
    PeakOverride(String),
    #[error(transparent)]
    Kernels(#[from] strand_kernels::KernelsError),
}

/// One GPU: its node and NVML index (the identity of `windows` rows).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GpuKey {
    pub node: Arc<str>,
    pub gpu_index: i32,
}
