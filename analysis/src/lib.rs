//! strand-analysis: the figures of DESIGN §3–4, in one place for the agent's
//! live windows and for the offline tools (`strand import`, `strand
//! postmortem`).
//!
//! | DESIGN figure | where |
//! |---|---|
//! | compute, comm_exposed, memcpy_exposed, idle, comm_overlapped, overlap ratio | [`decompose`] |
//! | idle sub-classes host_bound, launch_gap, io_blocked, no_process, other (and HTA's per-stream view) | [`idle`] |
//! | comm transfer vs sync_stall (exact across ranks, or estimated) | [`sync_stall`] |
//! | hollow busy, ghost compute, reported utilization, MFU, tensor-pipe estimate | [`window`] (per window), [`mfu`] (peak table) |
//! | steps inferred from NCCL call periodicity | [`steps`] |
//! | workload markers → steps | [`markers`] |
//! | the streaming per-GPU window builder the agent feeds | [`window::WindowBuilder`] |
//!
//! Interval lengths are computed by `strand_kernels::Reducer` (GPU or CPU).

use std::sync::Arc;

pub mod decompose;
pub mod idle;
pub mod markers;
pub mod mfu;
pub mod steps;
pub mod sync_stall;
pub mod window;

pub use decompose::{DecomposeBatch, Decomposition};
pub use window::{BuilderStats, WindowBuilder, WindowConfig, window_category_seconds};

/// One GPU: its node and NVML index (the identity of `windows` rows).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GpuKey {
    pub node: Arc<str>,
    pub gpu_index: i32,
}
