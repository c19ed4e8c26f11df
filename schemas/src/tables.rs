//! The tables of DESIGN §6, version 2.
//!
//! Conventions: every `*_ns` column holding a point in time (unit
//! [`crate::column::UTC_NS`]) is UTC nanoseconds since the Unix epoch (see
//! [`crate::clock`]), an Arrow `Timestamp(ns, UTC)` in files and an `i64` in
//! Rust; every other `*_ns` column is a duration in nanoseconds, `int64`. `*_ratio` columns are in 0..=1. `*_total` columns
//! are counters that only grow (since driver load or boot); take differences.
//! A metric a GPU or source does not provide is null, never 0.

use std::sync::Arc;

use crate::table;

table! {
    /// One NVML sample of one GPU, taken every `nvml.period` (default 1 s).
    pub struct GpuSample = "gpu_samples", version(2, 0) {
        /// Cluster name (agent config `cluster`).
        pub cluster: Arc<str> => "",
        /// Host name of the node (agent config `node`, default the hostname).
        pub node: Arc<str> => "",
        /// Time the sample was taken.
        pub ts_ns: i64 => "ns (UTC)",
        /// NVML device index on this node.
        pub gpu_index: i32 => "",
        /// GPU UUID (`GPU-…`), stable across reboots and device renumbering.
        pub gpu_uuid: Arc<str> => "",
        /// Product name, e.g. `NVIDIA H100 80GB HBM3`.
        pub gpu_name: Arc<str> => "",
        /// Job holding the GPU (SLURM job id, Kubernetes pod, or config), when known.
        pub job_id: Option<String> => "",
        /// Processes holding a context on the GPU (compute and graphics); empty when none.
        pub pids: Vec<i32> => "",
        /// Reported utilization: NVML `utilization.gpu`, share of the driver's sample period in which at least one kernel ran.
        pub reported_utilization_ratio: Option<f64> => "ratio",
        /// NVML `utilization.memory`: share of time device memory was read or written.
        pub memory_utilization_ratio: Option<f64> => "ratio",
        /// SM active: GPM `SM_UTIL` (Hopper and newer), averaged over the GPM window.
        pub sm_active_ratio: Option<f64> => "ratio",
        /// GPM `SM_OCCUPANCY`: resident warps over the maximum.
        pub sm_occupancy_ratio: Option<f64> => "ratio",
        /// Tensor active: GPM `ANY_TENSOR_UTIL`.
        pub tensor_active_ratio: Option<f64> => "ratio",
        /// DRAM active: GPM `DRAM_BW_UTIL`.
        pub dram_active_ratio: Option<f64> => "ratio",
        /// GPM `FP16_UTIL`.
        pub fp16_active_ratio: Option<f64> => "ratio",
        /// GPM `FP32_UTIL`.
        pub fp32_active_ratio: Option<f64> => "ratio",
        /// GPM `FP64_UTIL`.
        pub fp64_active_ratio: Option<f64> => "ratio",
        /// Current SM clock.
        pub sm_clock_mhz: Option<i32> => "MHz",
        /// Maximum SM clock (used to clock-correct the tensor-pipe estimate).
        pub sm_clock_max_mhz: Option<i32> => "MHz",
        /// Current memory clock.
        pub memory_clock_mhz: Option<i32> => "MHz",
        /// Power draw.
        pub power_w: Option<f64> => "W",
        /// Enforced power limit.
        pub power_limit_w: Option<f64> => "W",
        /// Energy consumed since the driver loaded (counter).
        pub energy_mj_total: Option<i64> => "mJ",
        /// GPU core temperature.
        pub temperature_c: Option<i32> => "°C",
        /// NVML clock-event (throttle) reasons bitmask (`nvmlClocksEventReason*`); 0 means not throttled.
        pub throttle_reasons: Option<i64> => "bitmask",
        /// Device memory in use.
        pub memory_used_bytes: Option<i64> => "bytes",
        /// Device memory in total.
        pub memory_total_bytes: Option<i64> => "bytes",
        /// PCIe transmit throughput (NVML samples it over 20 ms).
        pub pcie_tx_bytes_per_s: Option<i64> => "bytes/s",
        /// PCIe receive throughput.
        pub pcie_rx_bytes_per_s: Option<i64> => "bytes/s",
        /// PCIe replay counter.
        pub pcie_replay_total: Option<i64> => "count",
        /// NVLink bytes transmitted, one element per link (index = link).
        pub nvlink_tx_bytes_total: Option<Vec<i64>> => "bytes",
        /// NVLink bytes received, one element per link.
        pub nvlink_rx_bytes_total: Option<Vec<i64>> => "bytes",
        /// NVLink CRC (flit + data) errors, one element per link.
        pub nvlink_crc_errors_total: Option<Vec<i64>> => "count",
        /// NVLink replay errors, one element per link.
        pub nvlink_replay_errors_total: Option<Vec<i64>> => "count",
        /// NVLink recovery errors, one element per link.
        pub nvlink_recovery_errors_total: Option<Vec<i64>> => "count",
        /// Corrected ECC errors since the driver loaded (volatile, all memory locations).
        pub ecc_corrected_total: Option<i64> => "count",
        /// Uncorrected ECC errors since the driver loaded.
        pub ecc_uncorrected_total: Option<i64> => "count",
    }
}

table! {
    /// A GPU event as it happens: XID errors, ECC errors, clock and power events, a GPU lost.
    pub struct GpuEvent = "gpu_events", version(2, 0) {
        /// Cluster name.
        pub cluster: Arc<str> => "",
        /// Node host name.
        pub node: Arc<str> => "",
        /// Time the agent received the event.
        pub ts_ns: i64 => "ns (UTC)",
        /// NVML device index, when the event names a GPU.
        pub gpu_index: Option<i32> => "",
        /// GPU UUID, when the event names a GPU.
        pub gpu_uuid: Option<Arc<str>> => "",
        /// `xid`, `ecc_single_bit`, `ecc_double_bit`, `pstate`, `clock`, `power_source`, `throttle`, `gpu_lost`.
        pub kind: String => "",
        /// XID number for `xid` events.
        pub xid: Option<i64> => "",
        /// Event payload for other kinds (NVML `eventData`, or the throttle bitmask).
        pub value: Option<i64> => "",
        /// Process the event names, when NVML gives one.
        pub pid: Option<i32> => "",
        /// Job of that process or GPU, when known.
        pub job_id: Option<String> => "",
        /// Human-readable detail (e.g. the XID description).
        pub detail: Option<String> => "",
    }
}

table! {
    /// One GPU activity record: a kernel, a memory copy or a memory set, with device-side start and end.
    pub struct KernelEvent = "kernel_events", version(2, 0) {
        /// Cluster name.
        pub cluster: Arc<str> => "",
        /// Node host name.
        pub node: Arc<str> => "",
        /// Process that launched the work.
        pub pid: i32 => "",
        /// Job of that process, when known.
        pub job_id: Option<String> => "",
        /// CUDA device ordinal as the process saw it (after `CUDA_VISIBLE_DEVICES`).
        pub device_id: i32 => "",
        /// GPU UUID, when the source resolves it.
        pub gpu_uuid: Option<Arc<str>> => "",
        /// NVML device index on the node, when resolved through the UUID.
        pub gpu_index: Option<i32> => "",
        /// Device-side start.
        pub start_ns: i64 => "ns (UTC)",
        /// Device-side end.
        pub end_ns: i64 => "ns (UTC)",
        /// CUDA context id.
        pub context_id: i64 => "",
        /// CUDA stream id.
        pub stream_id: i64 => "",
        /// Correlation id joining the record to the host API call that launched it.
        pub correlation_id: i64 => "",
        /// Record kind: `kernel`, `memcpy`, `memset`.
        pub kind: String => "",
        /// `compute`, `communication` or `copy` (rules in `docs/schemas.md`, "Kernel categories").
        pub category: String => "",
        /// Kernel name as the source gives it (mangled from CUPTI, demangled from Kineto); `Memcpy HtoD` etc. for copies.
        pub name: Arc<str> => "",
        /// Grid size, x.
        pub grid_x: Option<i32> => "",
        /// Grid size, y.
        pub grid_y: Option<i32> => "",
        /// Grid size, z.
        pub grid_z: Option<i32> => "",
        /// Block size, x.
        pub block_x: Option<i32> => "",
        /// Block size, y.
        pub block_y: Option<i32> => "",
        /// Block size, z.
        pub block_z: Option<i32> => "",
        /// Bytes copied or set (copies and sets only).
        pub bytes: Option<i64> => "bytes",
        /// Copy direction: `HtoD`, `DtoH`, `DtoD`, `HtoH`, `PtoP` (copies only).
        pub copy_kind: Option<String> => "",
        /// Host time the launching API call began, when known (host-wait analysis).
        pub launch_ns: Option<i64> => "ns (UTC)",
        /// Host thread of the launching API call, when known.
        pub launch_tid: Option<i32> => "",
        /// Collective operation of an NCCL kernel when the source names it (e.g. `allreduce`).
        pub collective: Option<String> => "",
        /// Where the record came from: `cupti` or `kineto`.
        pub source: String => "",
    }
}

table! {
    /// Kernels, copies and sets of one GPU and window grouped by name: what a report's "top kernels" needs where the full `kernel_events` stay on the node (the agent's default). Built by `strand_analysis::WindowBuilder` as it closes the window, from the same records: each record is counted once, in the window where the builder first consumed it (the window holding its start, or the first open window for a record that arrived late but still overlapped one). Summing `count` and `total_ns` and taking the min of `min_ns` and max of `max_ns` over windows gives the figures of the full records.
    pub struct KernelSummary = "kernel_summaries", version(2, 0) {
        /// Cluster name.
        pub cluster: Arc<str> => "",
        /// Node host name.
        pub node: Arc<str> => "",
        /// NVML device index on the node.
        pub gpu_index: i32 => "",
        /// GPU UUID, when the records resolved it.
        pub gpu_uuid: Option<Arc<str>> => "",
        /// Job of the records, when known.
        pub job_id: Option<String> => "",
        /// Window start (as in `windows`).
        pub start_ns: i64 => "ns (UTC)",
        /// Window end.
        pub end_ns: i64 => "ns (UTC)",
        /// Kernel name as in `kernel_events.name`.
        pub name: Arc<str> => "",
        /// `compute`, `communication` or `copy` (as `kernel_events.category`, with the configured table of communication kernels).
        pub category: String => "",
        /// Records of that name.
        pub count: i64 => "count",
        /// Sum of their durations (end − start).
        pub total_ns: i64 => "ns",
        /// Shortest duration.
        pub min_ns: i64 => "ns",
        /// Longest duration.
        pub max_ns: i64 => "ns",
    }
}

table! {
    /// One NCCL API call seen on the host (eBPF uprobes, or a Kineto trace), with its communicator identity and, when known, the device-side timing of the kernel it launched.
    pub struct NcclCall = "nccl_calls", version(2, 0) {
        /// Cluster name.
        pub cluster: Arc<str> => "",
        /// Node host name.
        pub node: Arc<str> => "",
        /// Calling process.
        pub pid: i32 => "",
        /// Calling thread.
        pub tid: i32 => "",
        /// Job of the process, when known.
        pub job_id: Option<String> => "",
        /// Call entry (host).
        pub enter_ns: i64 => "ns (UTC)",
        /// Call return (host); null when the call never returned (process died).
        pub exit_ns: Option<i64> => "ns (UTC)",
        /// `allreduce`, `broadcast`, `reduce`, `allgather`, `reducescatter`, `alltoall`, `send`, `recv`, `group_start`, `group_end`, `comm_init_rank`, `comm_init_all`, `comm_split`, `comm_destroy`, `comm_abort`.
        pub op: String => "",
        /// Element count argument.
        pub count: Option<i64> => "elements",
        /// `ncclDataType_t` name, e.g. `bfloat16`.
        pub datatype: Option<String> => "",
        /// count × datatype size, with NCCL's count: the per-rank input of allreduce, broadcast, reduce and allgather; the per-rank output of reducescatter; the per-peer chunk of alltoall; the message of send/recv.
        pub bytes: Option<i64> => "bytes",
        /// `ncclRedOp_t` name for reductions: `sum`, `prod`, `max`, `min`, `avg`.
        pub redop: Option<String> => "",
        /// Root rank of broadcast / reduce.
        pub root: Option<i32> => "",
        /// Peer rank of send / recv.
        pub peer: Option<i32> => "",
        /// `ncclComm_t` pointer in the process (identity within one process only).
        pub comm_ptr: Option<i64> => "",
        /// NCCL commHash of the communicator (same on every rank; NCCL ≥ 2.26 prints it as `commId 0x…` with `NCCL_DEBUG=INFO`), as a signed 64-bit bit pattern; null when the communicator was created before the tracer attached.
        pub comm_hash: Option<i64> => "",
        /// Process group name when the source gives one (Kineto), in place of a commHash.
        pub comm_name: Option<String> => "",
        /// Rank of the caller in the communicator.
        pub rank: Option<i32> => "",
        /// Size of the communicator.
        pub nranks: Option<i32> => "",
        /// Per-communicator sequence number of collectives and point-to-point calls, from 0; the same collective has the same `seq` on every rank.
        pub seq: Option<i64> => "",
        /// `cudaStream_t` argument.
        pub stream: Option<i64> => "",
        /// `ncclResult_t` returned.
        pub ret: Option<i32> => "",
        /// Id of the enclosing `ncclGroupStart`/`ncclGroupEnd` pair on this thread; null outside a group.
        pub group_id: Option<i64> => "",
        /// `ncclCommSplit` color.
        pub color: Option<i32> => "",
        /// `ncclCommSplit` key.
        pub key: Option<i32> => "",
        /// Communicator created by `comm_init_*` / `comm_split` (pointer in the process).
        pub new_comm_ptr: Option<i64> => "",
        /// NVML index of the GPU the call ran on, when known.
        pub gpu_index: Option<i32> => "",
        /// GPU UUID, when known.
        pub gpu_uuid: Option<Arc<str>> => "",
        /// Device-side start of the NCCL kernel this call launched, when joined with kernel records.
        pub kernel_start_ns: Option<i64> => "ns (UTC)",
        /// Device-side end of that kernel.
        pub kernel_end_ns: Option<i64> => "ns (UTC)",
        /// Where the record came from: `ebpf` or `kineto`.
        pub source: String => "",
    }
}

table! {
    /// One CUDA synchronize call that blocked a host thread (`cudaStreamSynchronize`, `cuCtxSynchronize`, …).
    pub struct CudaSyncCall = "cuda_sync_calls", version(2, 0) {
        /// Cluster name.
        pub cluster: Arc<str> => "",
        /// Node host name.
        pub node: Arc<str> => "",
        /// Calling process.
        pub pid: i32 => "",
        /// Calling thread.
        pub tid: i32 => "",
        /// Job of the process, when known.
        pub job_id: Option<String> => "",
        /// Call entry.
        pub enter_ns: i64 => "ns (UTC)",
        /// Call return.
        pub exit_ns: i64 => "ns (UTC)",
        /// Time the host thread was blocked: `exit_ns - enter_ns`.
        pub blocked_ns: i64 => "ns",
        /// API name: `cudaStreamSynchronize`, `cudaDeviceSynchronize`, `cudaEventSynchronize`, `cuStreamSynchronize`, `cuCtxSynchronize`, `cuEventSynchronize`.
        pub api: String => "",
        /// Stream or event handle argument (null for device / context synchronize).
        pub handle: Option<i64> => "",
        /// Return code (`cudaError_t` / `CUresult`).
        pub ret: Option<i32> => "",
        /// NVML index of the GPU, when known.
        pub gpu_index: Option<i32> => "",
        /// Where the record came from: `ebpf`, `cupti` or `kineto`.
        pub source: String => "",
    }
}

table! {
    /// Start and end of processes that use a GPU library (exec, exit, or found running at agent start).
    pub struct ProcessEvent = "process_events", version(2, 0) {
        /// Cluster name.
        pub cluster: Arc<str> => "",
        /// Node host name.
        pub node: Arc<str> => "",
        /// Time of the event.
        pub ts_ns: i64 => "ns (UTC)",
        /// Process id (host PID namespace).
        pub pid: i32 => "",
        /// Parent process id, when known.
        pub ppid: Option<i32> => "",
        /// Job of the process, when known.
        pub job_id: Option<String> => "",
        /// `exec`, `exit`, or `running` (found at agent start).
        pub kind: String => "",
        /// Command name (`comm`, 15 characters at most).
        pub comm: Option<String> => "",
        /// Executable path, when known.
        pub exe: Option<String> => "",
        /// Exit code for a normal exit.
        pub exit_code: Option<i32> => "",
        /// Signal number for a process killed by a signal.
        pub signal: Option<i32> => "",
        /// GPU libraries the process maps, comma-separated (`nccl,cudart,cuda`), when known.
        pub gpu_libraries: Option<String> => "",
    }
}

table! {
    /// A phase of a training run on one rank: a step, or a checkpoint save or restore.
    pub struct Step = "steps", version(2, 0) {
        /// Cluster name.
        pub cluster: Arc<str> => "",
        /// Node host name.
        pub node: Arc<str> => "",
        /// Job id, when known.
        pub job_id: Option<String> => "",
        /// Process of the rank, when known.
        pub pid: Option<i32> => "",
        /// Rank in the job, when known.
        pub rank: Option<i32> => "",
        /// NVML index of the rank's GPU, when known.
        pub gpu_index: Option<i32> => "",
        /// `step`, `checkpoint_save` or `checkpoint_restore`.
        pub phase: String => "",
        /// Step number (for checkpoints: the step the checkpoint holds).
        pub step: Option<i64> => "",
        /// Phase start.
        pub start_ns: i64 => "ns (UTC)",
        /// Phase end.
        pub end_ns: i64 => "ns (UTC)",
        /// Model FLOPs of this step on this rank (from markers or job config).
        pub model_flops: Option<f64> => "FLOP",
        /// Tokens processed in this step on this rank, when given.
        pub tokens: Option<i64> => "",
        /// Compute dtype the FLOPs are counted in (`bf16`, `fp16`, `fp8`, `tf32`, `fp32`), for the peak FLOP/s.
        pub dtype: Option<String> => "",
        /// `marker` (workload markers), `inferred` (from the period of NCCL calls), `kineto` or `config`.
        pub source: String => "",
    }
}

table! {
    /// The time decomposition of DESIGN §4 for one GPU and one window. Where kernel records split the time (`split_source = kernels`), `compute_ns + comm_exposed_ns + memcpy_exposed_ns + idle_ns` add up to `end_ns - start_ns`; where only NVML does (`nvml`), `reported_busy_ns + idle_ns` is the sampled part of it. A figure is null when no source could measure it (see `coverage`). docs/decomposition.md defines every column; the accounting over windows is `strand_analysis::accounting`.
    pub struct Window = "windows", version(2, 0) {
        /// Cluster name.
        pub cluster: Arc<str> => "",
        /// Node host name.
        pub node: Arc<str> => "",
        /// NVML device index.
        pub gpu_index: i32 => "",
        /// GPU UUID.
        pub gpu_uuid: Arc<str> => "",
        /// Product name, when known.
        pub gpu_name: Option<Arc<str>> => "",
        /// Job holding the GPU in this window, when known.
        pub job_id: Option<String> => "",
        /// Window start.
        pub start_ns: i64 => "ns (UTC)",
        /// Window end.
        pub end_ns: i64 => "ns (UTC)",
        /// Sources that contributed, comma-separated from `nvml`, `gpm`, `cupti`, `ebpf`, `markers`, `kineto`.
        pub coverage: String => "",
        /// What split the window's time into busy and idle: `kernels` (CUPTI or Kineto records), `nvml` (reported utilization only; the kernel categories are null), or null (nothing measured it). Since version 1.1.
        pub split_source: Option<String> => "",
        /// compute: length of the union of compute kernels.
        pub compute_ns: Option<i64> => "ns",
        /// comm_exposed: communication kernels not overlapped by compute.
        pub comm_exposed_ns: Option<i64> => "ns",
        /// memcpy_exposed: copies and sets not overlapped by compute or communication.
        pub memcpy_exposed_ns: Option<i64> => "ns",
        /// idle: no kernel, copy or set running (`kernels`), or sampled time minus reported busy (`nvml`).
        pub idle_ns: Option<i64> => "ns",
        /// Part of comm_exposed moving data: comm_exposed − sync_stall − comm_unidentified (before version 1.2, comm_exposed − sync_stall).
        pub comm_transfer_ns: Option<i64> => "ns",
        /// Part of comm_exposed spent waiting for the last rank of collectives (ghost compute, kind sync stall).
        pub sync_stall_ns: Option<i64> => "ns",
        /// True when sync_stall_ns is estimated from bytes and a bandwidth baseline because peers were missing.
        pub sync_stall_estimated: Option<bool> => "",
        /// Part of comm_exposed in communication kernels without a collective identity (no NCCL call joined to them, no order match across ranks, e.g. DeepEP or custom all-reduce kernels seen on one rank): its split into transfer and sync stall is unknown, never guessed. Null where the categories are. Since version 1.2.
        pub comm_unidentified_ns: Option<i64> => "ns",
        /// Length of the union of communication kernels.
        pub comm_ns: Option<i64> => "ns",
        /// comm_overlapped: communication overlapped by compute.
        pub comm_overlapped_ns: Option<i64> => "ns",
        /// comm_overlapped_ns / comm_ns (null when there was no communication).
        pub overlap_ratio: Option<f64> => "ratio",
        /// Idle because the host was late to launch (host not blocked in a sync call). Null without kernel records.
        pub idle_host_bound_ns: Option<i64> => "ns",
        /// Idle in gaps shorter than the launch-gap threshold between back-to-back kernels. Null without kernel records.
        pub idle_launch_gap_ns: Option<i64> => "ns",
        /// Idle while the GPU's processes were in heavy file I/O (e.g. checkpoints).
        pub idle_io_blocked_ns: Option<i64> => "ns",
        /// Idle while no process held the GPU.
        pub idle_no_process_ns: Option<i64> => "ns",
        /// Idle not explained by the classes above.
        pub idle_other_ns: Option<i64> => "ns",
        /// Host time blocked in CUDA synchronize calls by the GPU's processes (attributed separately, not part of the sum).
        pub host_sync_blocked_ns: Option<i64> => "ns",
        /// Kernels, copies and sets that overlapped the window.
        pub kernel_count: Option<i64> => "count",
        /// Mean reported utilization over the window's NVML samples.
        pub reported_utilization_ratio: Option<f64> => "ratio",
        /// Reported busy time: reported utilization integrated over the window.
        pub reported_busy_ns: Option<i64> => "ns",
        /// Mean SM active (GPM).
        pub sm_active_ratio: Option<f64> => "ratio",
        /// Mean tensor active (GPM).
        pub tensor_active_ratio: Option<f64> => "ratio",
        /// Mean DRAM active (GPM).
        pub dram_active_ratio: Option<f64> => "ratio",
        /// Hollow busy: (reported utilization − SM active)⁺ integrated over time outside communication kernels (ghost compute); at most compute_ns where kernel records split the time.
        pub hollow_busy_ns: Option<i64> => "ns",
        /// Wasted progress: always null here. It is a job figure (docs/goodput.md), which the accounting moves from productive compute when a report finds a failure.
        pub wasted_progress_ns: Option<i64> => "ns",
        /// Ghost compute of the window as measured here: sync stall + hollow busy (wasted progress is added by reports).
        pub ghost_ns: Option<i64> => "ns",
        /// Model FLOPs completed in the window (steps prorated by overlap).
        pub model_flops: Option<f64> => "FLOP",
        /// Peak dense FLOP/s of the GPU for `dtype`.
        pub peak_flops_per_s: Option<f64> => "FLOP/s",
        /// Compute dtype of the model FLOPs.
        pub dtype: Option<String> => "",
        /// MFU: model FLOP/s achieved over peak dense FLOP/s. Null without model FLOPs.
        pub mfu: Option<f64> => "ratio",
        /// Tensor-pipe estimate: tensor active × SM clock / max SM clock. An estimate, not MFU.
        pub tensor_estimate: Option<f64> => "ratio",
    }
}

table! {
    /// A finding of the fleet analysis: ai.01 (interconnect stability) or ai.17 (fault-recovery), with its figures and evidence.
    pub struct Finding = "findings", version(2, 0) {
        /// Cluster the finding is about.
        pub cluster: Arc<str> => "",
        /// Node the finding is about (null for cluster, job or communicator scope).
        pub node: Option<Arc<str>> => "",
        /// Stable id: the same problem in the same scope and range gets the same id.
        pub finding_id: String => "",
        /// `ai.01` or `ai.17`.
        pub code: String => "",
        /// e.g. `straggler`, `bus_bandwidth_collapse`, `link_errors`, `exposed_communication`, `topology_stranded`, `checkpoint_cost`, `restart`, `wasted_progress`, `goodput`, `recovery_collapse`.
        pub kind: String => "",
        /// `cluster`, `node`, `gpu`, `job` or `communicator`.
        pub scope: String => "",
        /// GPU the finding is about, for GPU scope.
        pub gpu_uuid: Option<Arc<str>> => "",
        /// Job the finding is about, when known.
        pub job_id: Option<String> => "",
        /// Communicator the finding is about (commHash).
        pub comm_hash: Option<i64> => "",
        /// Rank the finding names (e.g. the straggler).
        pub rank: Option<i32> => "",
        /// Start of the time range the finding covers.
        pub start_ns: i64 => "ns (UTC)",
        /// End of that range.
        pub end_ns: i64 => "ns (UTC)",
        /// `info`, `warning` or `critical`.
        pub severity: String => "",
        /// One sentence a person can act on.
        pub summary: String => "",
        /// The figures behind the finding, as a JSON object.
        pub figures: String => "JSON",
        /// How to check it: the query and the rows that show it, as a JSON object.
        pub evidence: String => "JSON",
        /// GPU time the finding accounts for (e.g. stall caused on peers).
        pub gpu_seconds: Option<f64> => "s",
        /// Time the finding was computed.
        pub created_ns: i64 => "ns (UTC)",
    }
}

table! {
    /// One sample of one InfiniBand / RoCE port's counters, read from sysfs (`/sys/class/infiniband`).
    pub struct NicSample = "nic_samples", version(2, 0) {
        /// Cluster name.
        pub cluster: Arc<str> => "",
        /// Node host name.
        pub node: Arc<str> => "",
        /// Time the sample was taken.
        pub ts_ns: i64 => "ns (UTC)",
        /// HCA name, e.g. `mlx5_0`.
        pub device: String => "",
        /// Port number.
        pub port: i32 => "",
        /// `InfiniBand` or `Ethernet`.
        pub link_layer: Option<String> => "",
        /// Port state, e.g. `4: ACTIVE`.
        pub state: Option<String> => "",
        /// Link rate.
        pub rate_gbps: Option<f64> => "Gb/s",
        /// `symbol_error` counter.
        pub symbol_error_total: Option<i64> => "count",
        /// `link_downed` counter.
        pub link_downed_total: Option<i64> => "count",
        /// `link_error_recovery` counter.
        pub link_error_recovery_total: Option<i64> => "count",
        /// `port_rcv_errors` counter.
        pub port_rcv_errors_total: Option<i64> => "count",
        /// `port_xmit_discards` counter.
        pub port_xmit_discards_total: Option<i64> => "count",
        /// `port_xmit_wait` counter (ticks the port had data to send but no credits).
        pub port_xmit_wait_total: Option<i64> => "ticks",
        /// Bytes transmitted (`port_xmit_data` × 4).
        pub port_xmit_bytes_total: Option<i64> => "bytes",
        /// Bytes received (`port_rcv_data` × 4).
        pub port_rcv_bytes_total: Option<i64> => "bytes",
    }
}

table! {
    /// Host-side activity of one GPU process over one sampling period: CPU time and context switches (perf events), cycles and instructions where the host exposes them, and file I/O. Tells host-bound from blocked, and finds checkpoint writes.
    pub struct ProcessSample = "process_samples", version(2, 0) {
        /// Cluster name.
        pub cluster: Arc<str> => "",
        /// Node host name.
        pub node: Arc<str> => "",
        /// End of the period.
        pub ts_ns: i64 => "ns (UTC)",
        /// Length of the period.
        pub interval_ns: i64 => "ns",
        /// Process id.
        pub pid: i32 => "",
        /// Job of the process, when known.
        pub job_id: Option<String> => "",
        /// Command name.
        pub comm: Option<String> => "",
        /// Threads of the process at the end of the period.
        pub threads: i32 => "count",
        /// CPU time of all its threads in the period (perf `task-clock`, or /proc when perf events are unavailable).
        pub cpu_ns: i64 => "ns",
        /// Context switches of its threads in the period (perf `context-switches`).
        pub context_switches: Option<i64> => "count",
        /// CPU cycles in the period (perf hardware counter; null where the host does not expose it).
        pub cycles: Option<i64> => "count",
        /// Instructions retired in the period (perf hardware counter; null where unavailable).
        pub instructions: Option<i64> => "count",
        /// Bytes read from storage in the period (`/proc/<pid>/io` `read_bytes`).
        pub read_bytes: Option<i64> => "bytes",
        /// Bytes written to storage in the period (`/proc/<pid>/io` `write_bytes`).
        pub write_bytes: Option<i64> => "bytes",
    }
}

table! {
    /// The exact sync stall of DESIGN §4 for one rank of one collective instance, from matching the instance on every rank and node by communicator and sequence number (`strand_analysis::collective`, the one matcher of the agent, the postmortem and the fleet report), or, for communication kernels without that identity in traces analysed together, by their order on each rank (`matched_by`). Only complete instances (all `nranks` ranks seen) are stored; calls without a communicator are never matched.
    pub struct CollectiveStall = "collective_stalls", version(2, 0) {
        /// Cluster of the rank.
        pub cluster: Arc<str> => "",
        /// Node of the rank.
        pub node: Arc<str> => "",
        /// Job of the rank's process, when known.
        pub job_id: Option<String> => "",
        /// NCCL commHash of the communicator (as in `nccl_calls`); for a communicator known only by its process-group name (Kineto traces), a stable hash of the job and that name (see `comm_name`).
        pub comm_hash: i64 => "",
        /// Process-group name, for communicators without a commHash (Kineto traces). Since version 1.1.
        pub comm_name: Option<String> => "",
        /// Sequence number of the collective in the communicator.
        pub seq: i64 => "",
        /// Collective operation (`allreduce`, `allgather`, …).
        pub op: String => "",
        /// Size of the communicator.
        pub nranks: i32 => "",
        /// Rank in the communicator.
        pub rank: i32 => "",
        /// Calling process.
        pub pid: i32 => "",
        /// NVML index of the rank's GPU, when known.
        pub gpu_index: Option<i32> => "",
        /// GPU UUID, when known.
        pub gpu_uuid: Option<Arc<str>> => "",
        /// Bytes of the operation per rank (as in `nccl_calls.bytes`).
        pub bytes: Option<i64> => "bytes",
        /// Arrival of the rank: device-side kernel start, or host call entry (see `time_source`).
        pub start_ns: i64 => "ns (UTC)",
        /// Kernel end (device), or host call return (host; the arrival when the call never returned).
        pub end_ns: i64 => "ns (UTC)",
        /// `kernel` when every rank of the instance had device-side kernel times, else `host` (host call entry of every rank; the stall is then the arrival lag, not bounded by the kernel).
        pub time_source: String => "",
        /// Arrival of the last rank of the instance (max over ranks of `start_ns`).
        pub last_start_ns: i64 => "ns (UTC)",
        /// DESIGN §4 sync stall: min(kernel duration, last_start_ns − start_ns); for `host` rows, last_start_ns − start_ns.
        pub stall_ns: i64 => "ns",
        /// True for the rank that arrived last (the lowest rank among ties).
        pub is_last: bool => "",
        /// For the last rank: its lead over the second-latest arrival (how long the instance waited for it alone). Null for other ranks.
        pub lateness_ns: Option<i64> => "ns",
        /// For the last rank: stall it alone caused on its peers, Σ over peers of min(peer stall, lateness_ns). Null for other ranks.
        pub caused_stall_ns: Option<i64> => "ns",
        /// For the last rank: its lead over the latest arrival on any other node (how long the instance waited for its node). Null for other ranks and single-node communicators.
        pub node_lateness_ns: Option<i64> => "ns",
        /// For the last rank: stall its node caused on the ranks of other nodes, Σ of min(their stall, node_lateness_ns). Null where node_lateness_ns is.
        pub node_caused_stall_ns: Option<i64> => "ns",
        /// Kernel time after the wait, duration − stall_ns (`kernel` rows only).
        pub transfer_ns: Option<i64> => "ns",
        /// Message size class: floor(log2(bytes)).
        pub size_class: Option<i32> => "",
        /// Achieved bus bandwidth (nccl-tests convention): algorithm bytes ÷ transfer time × the operation's bus factor (`kernel` rows only).
        pub bus_bw_bytes_per_s: Option<f64> => "bytes/s",
        /// How the instance was matched: `id` (communicator and sequence number, as NCCL or the trace's collective metadata give them) or `order` (a communication kernel without that identity, the same library, kernel and process group, or CUDA stream where no group is known, matched by its position in each rank's sequence of that kernel; `comm_hash` is then a hash of the job, library, kernel and group, `comm_name` the group, `seq` the position, and `nranks` the ranks analysed together). Null in files before version 1.2 (all `id`). Since version 1.2.
        pub matched_by: Option<String> => "",
    }
}
