//! strand-ebpf: eBPF uprobes on NCCL and CUDA synchronize calls, and process
//! exec/exit in the kernel (DESIGN §5.3; details in `docs/ebpf.md`).
//!
//! # API
//!
//! ```no_run
//! use std::time::Duration;
//! use strand_ebpf::{Output, Tracer, TracerConfig};
//!
//! let cfg = TracerConfig::new("cluster-a", "node-7");
//! for p in Tracer::check(&cfg)? {                   // for `strand-agent check`
//!     println!("{} {:?} {}", p.part, p.state, p.detail);
//! }
//! let mut tracer = Tracer::start(cfg)?;
//! for p in tracer.parts() {                         // which parts run, and how
//!     println!("{} {:?} {}", p.part, p.state, p.detail);
//! }
//! let mut out = Output::default();
//! loop {
//!     std::thread::sleep(Duration::from_millis(200));
//!     tracer.poll(&mut out)?;                        // non-blocking
//!     // hand out.nccl_calls / cuda_sync_calls / process_events to the spool
//!     # break;
//! }
//! let stats = tracer.stats();                        // Prometheus counters
//! # Ok::<(), strand_ebpf::EbpfError>(())
//! ```
//!
//! - [`Tracer::start`] loads the programs, attaches the exec/exit hooks
//!   (BTF raw tracepoints, else classic tracepoints, else none: see
//!   [`ProcessHook`]), scans `/proc` and probes every GPU library file (once
//!   per device+inode, through `/proc/<pid>/root` for containers). Each
//!   [`Part`] runs on its own: one that cannot start is left off and
//!   [`Tracer::parts`] says why and what takes its place. Start fails only
//!   when BPF cannot be used at all ([`capability`] names what is missing:
//!   privileges, kernel features, `bpf()` refused).
//! - [`Tracer::check`] does the same loading and attaching for real, then
//!   detaches: the truth for `strand-agent check`.
//! - [`Tracer::poll`] drains the ring buffers without blocking, rescans
//!   `/proc` every `rescan_period`, and appends finished rows. Call it every
//!   100–250 ms. Rows leave `job_id`, `gpu_index`, `gpu_uuid` and the kernel
//!   times `None` for the agent to fill. Times are UTC, converted from
//!   CLOCK_MONOTONIC by [`strand_schemas::clock::MonoToUtc`] once per poll.
//! - [`Tracer::stats`] gives cumulative events and losses per source, library
//!   files, probes, entries per probed function, failures per part, and
//!   counted problems by reason (keys in `docs/ebpf.md`);
//!   [`Tracer::library_files`] lists the probed files with their NCCL version.
//! - [`TracerConfig`]: cluster and node, ring-buffer sizes, `rescan_period`,
//!   `extra_libraries`, `proc_root` (the host's `/proc`), `max_library_files`,
//!   `process_hooks`. The agent needs the host PID namespace.
//! - [`Tracer`] is `Send`; `poll` takes `&mut self`, so one thread drives it.
//! - [`nccl`] holds NCCL's commHash algorithms per release, for checks.

mod capability;
mod elf;
mod events;
mod load;
pub mod nccl;
mod parts;
mod procfs;
mod tracer;

pub use capability::{Capability, MIN_KERNEL, capability};
pub use parts::{Part, PartState, PartStatus, ProcessHook};
pub use tracer::{EbpfError, LibraryFile, Output, SourceStats, Stats, Tracer, TracerConfig};

/// The skeleton that `build.rs` generates from `src/bpf/strand.bpf.c`.
#[allow(clippy::all, unused_imports, dead_code, non_camel_case_types, non_snake_case, unsafe_op_in_unsafe_fn)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/strand.skel.rs"));
}
