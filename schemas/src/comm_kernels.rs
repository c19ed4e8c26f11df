//! The one table of communication kernels (DESIGN §4, the set M): GPU
//! kernels that move data between GPUs, by library, as the libraries name
//! them in their sources. [`crate::category::classify`] asks this table (and
//! the user's patterns, [`CommKernels::with_patterns`]) for every kernel of
//! every door: the agent's CUPTI records, Kineto imports, the postmortem and
//! the live windows.
//!
//! Names arrive two ways: mangled (`_ZN7deep_ep9intranode8dispatchILi8E…`,
//! CUPTI) and demangled (`void deep_ep::intranode::dispatch<8, …>(…)`,
//! Kineto). Both are reduced to the qualified names they hold
//! (`deep_ep::intranode::dispatch`) and an entry's pattern is matched
//! against those, segment by segment, so a pattern cannot match inside an
//! unrelated identifier.
//!
//! Pattern syntax: C++ qualified names, `::` between segments; `*` inside a
//! segment matches any identifier characters. A pattern matches a name whose
//! last segments equal the pattern's (so `ncclDevKernel_*` matches the
//! function `ncclDevKernel_AllReduce_Sum_bf16_RING_LL`, and
//! `deep_ep::intranode::dispatch` matches that function in any enclosing
//! namespace, but not `deep_ep::intranode::cached_notify_dispatch`).
//!
//! Libraries that launch no communication kernel are not listed: Gloo moves
//! data on the host (TCP, ibverbs) and launches only local reductions
//! (`gloo::_Kernel_<T>_cuda<Op>`); UCC's executor kernels
//! (`executor_kernel`, …) copy and reduce local buffers for its transports.

use std::sync::Arc;

use crate::category::Category;

/// What a communication kernel does across ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommKind {
    /// Every rank of a group takes part (all-reduce, all-gather, all-to-all,
    /// MoE dispatch/combine, barriers): instances line up across ranks.
    Collective,
    /// Between pairs of ranks (send/recv, put/get, signals): never matched
    /// across a whole group.
    PointToPoint,
}

impl CommKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CommKind::Collective => "collective",
            CommKind::PointToPoint => "p2p",
        }
    }
}

/// One entry of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommKernel {
    /// The library, as reports and `collective_stalls` name it.
    pub library: &'static str,
    pub kind: CommKind,
    /// Qualified name pattern (see the module documentation).
    pub pattern: &'static str,
    /// The operation the kernel performs, when the entry says one (NCCL's
    /// kernels name theirs: see [`nccl_op`]).
    pub op: Option<&'static str>,
}

const fn coll(library: &'static str, pattern: &'static str, op: &'static str) -> CommKernel {
    CommKernel { library, kind: CommKind::Collective, pattern, op: Some(op) }
}

const fn p2p(library: &'static str, pattern: &'static str) -> CommKernel {
    CommKernel { library, kind: CommKind::PointToPoint, pattern, op: None }
}

/// NCCL's and RCCL's own library name (RCCL keeps NCCL's kernel names).
pub const NCCL: &str = "nccl";

/// The table, most specific entries first (the first match wins).
pub static COMM_KERNELS: &[CommKernel] = &[
    // NCCL and RCCL: ncclDevKernel_<Coll>_<RedOp>_<Type>_<Algo>_<Proto> and
    // ncclDevKernel_Generic[_N] (NCCL ≥ 2.19, RCCL), ncclKernel_* (older),
    // symmetric-memory kernels ncclSymDevKernel_* (2.27) and
    // ncclSymkDevKernel_* (≥ 2.28). The operation is in the name (nccl_op);
    // SendRecv kernels are point-to-point.
    CommKernel { library: NCCL, kind: CommKind::Collective, pattern: "ncclDevKernel_*", op: None },
    CommKernel { library: NCCL, kind: CommKind::Collective, pattern: "ncclKernel_*", op: None },
    CommKernel { library: NCCL, kind: CommKind::Collective, pattern: "ncclSymDevKernel_*", op: None },
    CommKernel { library: NCCL, kind: CommKind::Collective, pattern: "ncclSymkDevKernel_*", op: None },
    // MSCCL (microsoft/msccl, and inside RCCL): mscclKernel_<RedOp>_<Type>_<Proto>[_<fullOps>].
    CommKernel { library: "msccl", kind: CommKind::Collective, pattern: "mscclKernel_*", op: None },
    // MSCCL++: the executor, and the collectives of src/ext/collectives.
    coll("mscclpp", "mscclpp::executionKernel", "collective"),
    coll("mscclpp", "mscclpp::collective::allreduce*", "allreduce"),
    coll("mscclpp", "mscclpp::collective::allgather*", "allgather"),
    // NVSHMEM host-initiated collectives on a stream
    // (src/include/internal/non_abi/nvshmemi_h_to_d_coll_defs.cuh) …
    coll("nvshmem", "alltoall_on_stream_kernel", "alltoall"),
    coll("nvshmem", "barrier_on_stream_kernel_threadgroup", "barrier"),
    coll("nvshmem", "sync_on_stream_kernel_threadgroup", "barrier"),
    coll("nvshmem", "broadcast_on_stream_kernel", "broadcast"),
    coll("nvshmem", "fcollect_on_stream_kernel", "allgather"),
    coll("nvshmem", "rdxn_on_stream_kernel", "allreduce"),
    coll("nvshmem", "reducescatter_on_stream_kernel", "reducescatter"),
    // … and its one-sided operations (…_rma_defs.cuh, …_sync_defs.cuh).
    p2p("nvshmem", "nvshmemi_proxy_rma_*entrypoint*"),
    p2p("nvshmem", "nvshmemi_*_wait_until*_on_stream_kernel"),
    p2p("nvshmem", "nvshmemi_signal_op_kernel"),
    // DeepEP v1 (csrc/kernels/{intranode,internode,internode_ll}.cu) …
    coll("deep_ep", "deep_ep::intranode::notify_dispatch", "dispatch"),
    coll("deep_ep", "deep_ep::intranode::cached_notify_dispatch", "dispatch"),
    coll("deep_ep", "deep_ep::intranode::dispatch", "dispatch"),
    coll("deep_ep", "deep_ep::intranode::cached_notify_combine", "combine"),
    coll("deep_ep", "deep_ep::intranode::combine", "combine"),
    coll("deep_ep", "deep_ep::intranode::barrier", "barrier"),
    coll("deep_ep", "deep_ep::internode::notify_dispatch", "dispatch"),
    coll("deep_ep", "deep_ep::internode::dispatch", "dispatch"),
    coll("deep_ep", "deep_ep::internode::cached_notify", "combine"),
    coll("deep_ep", "deep_ep::internode::combine", "combine"),
    coll("deep_ep", "deep_ep::internode_ll::dispatch", "dispatch"),
    coll("deep_ep", "deep_ep::internode_ll::combine", "combine"),
    coll("deep_ep", "deep_ep::internode_ll::clean_low_latency_buffer", "barrier"),
    // … the same kernels under deep_ep::legacy (2026), and the elastic kernels
    // (deep_ep/include/deep_ep/impls/*.cuh).
    coll("deep_ep", "deep_ep::legacy::intranode::*dispatch", "dispatch"),
    coll("deep_ep", "deep_ep::legacy::intranode::*combine", "combine"),
    coll("deep_ep", "deep_ep::legacy::intranode::barrier", "barrier"),
    coll("deep_ep", "deep_ep::legacy::internode::*dispatch", "dispatch"),
    coll("deep_ep", "deep_ep::legacy::internode::cached_notify", "combine"),
    coll("deep_ep", "deep_ep::legacy::internode::combine", "combine"),
    coll("deep_ep", "deep_ep::legacy::internode_ll::dispatch", "dispatch"),
    coll("deep_ep", "deep_ep::legacy::internode_ll::combine", "combine"),
    coll("deep_ep", "deep_ep::legacy::internode_ll::clean_low_latency_buffer", "barrier"),
    coll("deep_ep", "deep_ep::elastic::*dispatch_impl", "dispatch"),
    coll("deep_ep", "deep_ep::elastic::*combine_impl", "combine"),
    coll("deep_ep", "deep_ep::elastic::barrier_impl", "barrier"),
    coll("deep_ep", "deep_ep::elastic::engram_fetch_impl", "alltoall"),
    p2p("deep_ep", "deep_ep::elastic::pp_send_impl"),
    p2p("deep_ep", "deep_ep::elastic::pp_recv_impl"),
    // PyTorch symmetric memory (torch/csrc/distributed/c10d/symm_mem/
    // CUDASymmetricMemoryOps.cu: multimem_all_reduce_kernel,
    // multimem_one_shot_reduce_kernel, multimem_all_gather_kernel,
    // one_shot_all_reduce_kernel, two_shot_all_reduce_kernel) and its
    // IntraNodeComm (c10d::intra_node_comm).
    coll("torch_symm_mem", "multimem_*", "allreduce"),
    coll("torch_symm_mem", "one_shot_all_reduce_kernel", "allreduce"),
    coll("torch_symm_mem", "two_shot_all_reduce_kernel", "allreduce"),
    coll("torch_symm_mem", "c10d::intra_node_comm::*AllReduceKernel", "allreduce"),
    // vLLM and SGLang custom all-reduce (csrc/custom_all_reduce.cuh;
    // sgl-kernel/csrc/allreduce/custom_all_reduce.cuh, namespace vllm in both),
    // AITER's copy (namespace aiter), and QuickReduce on ROCm.
    coll("vllm_custom_allreduce", "vllm::cross_device_reduce_*", "allreduce"),
    coll("aiter", "aiter::cross_device_reduce_*", "allreduce"),
    coll("quickreduce", "quickreduce::allreduce_prototype_*", "allreduce"),
    // TensorRT-LLM (cpp/tensorrt_llm/kernels/customAllReduceKernels.cu,
    // communicationKernels/allReduceFusionKernels.cu, moeAlltoAllKernels.cu);
    // FlashInfer carries the same fusion kernels.
    coll("tensorrt_llm", "oneShotAllReduceKernel", "allreduce"),
    coll("tensorrt_llm", "twoShotAllReduceKernel", "allreduce"),
    coll("tensorrt_llm", "allreduce_fusion_kernel_*", "allreduce"),
    coll("tensorrt_llm", "moeA2A*Kernel", "alltoall"),
    // Transformer Engine userbuffers, which Megatron-LM's communication
    // overlap uses (transformer_engine/common/comm_gemm_overlap/userbuffers/userbuffers.cu).
    coll("userbuffers", "userbuffers_*", "reducescatter"),
    p2p("userbuffers", "kuserbuffers_*"),
    // UCC's NVLS kernels (src/components/tl/cuda/kernels/*.cu).
    coll("ucc", "allreduce_kernel_vec32", "allreduce"),
    coll("ucc", "allreduce_kernel_scalar*", "allreduce"),
    coll("ucc", "allgatherv_kernel_vec32", "allgather"),
    coll("ucc", "reduce_scatter_kernel_vec32", "reducescatter"),
    coll("ucc", "reduce_scatter_kernel_scalar*", "reducescatter"),
];

/// What the table (or a user pattern) says about a kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommMatch {
    /// The entry's library; `custom` for a user pattern.
    pub library: Arc<str>,
    pub kind: CommKind,
    /// The operation, when known (`allreduce`, `dispatch`, …).
    pub op: Option<Arc<str>>,
}

/// Library of a kernel matched by a user pattern.
pub const CUSTOM: &str = "custom";

/// A user pattern that is not a valid regular expression.
#[derive(Debug, thiserror::Error)]
#[error("communication-kernel pattern {pattern:?} is not a valid regular expression: {detail}")]
pub struct PatternError {
    pub pattern: String,
    pub detail: String,
}

/// The table plus the user's patterns (regular expressions over the kernel
/// name as the source gives it, mangled or not; prefix one with `p2p:` for
/// point-to-point kernels). The one classification of every door.
#[derive(Debug, Clone, Default)]
pub struct CommKernels {
    extra: Vec<(regex::Regex, CommKind)>,
    patterns: Vec<String>,
}

impl CommKernels {
    /// The built-in table only.
    pub fn builtin() -> Self {
        Self::default()
    }

    /// The table and `patterns` (agent config `comm_kernels`, CLI `--comm-kernel`).
    pub fn with_patterns(patterns: &[String]) -> Result<Self, PatternError> {
        let mut extra = Vec::with_capacity(patterns.len());
        for p in patterns {
            let (kind, re) = match p.strip_prefix("p2p:") {
                Some(rest) => (CommKind::PointToPoint, rest),
                None => (CommKind::Collective, p.as_str()),
            };
            let re = regex::RegexBuilder::new(re)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| PatternError { pattern: p.clone(), detail: e.to_string() })?;
            extra.push((re, kind));
        }
        Ok(Self { extra, patterns: patterns.to_vec() })
    }

    /// The user's patterns, as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The library and kind of a communication kernel; `None` for any other kernel.
    pub fn lookup(&self, name: &str) -> Option<CommMatch> {
        if let Some(e) = builtin_entry(name) {
            let op = e.op.map(Arc::from).or_else(|| nccl_op(name).map(Arc::from));
            let kind =
                if e.library == NCCL && nccl_op(name) == Some("sendrecv") { CommKind::PointToPoint } else { e.kind };
            return Some(CommMatch { library: Arc::from(e.library), kind, op });
        }
        self.extra.iter().find(|(re, _)| re.is_match(name)).map(|(_, kind)| CommMatch {
            library: Arc::from(CUSTOM),
            kind: *kind,
            op: None,
        })
    }

    /// Whether a kernel name is a communication kernel.
    pub fn is_communication(&self, name: &str) -> bool {
        builtin_entry(name).is_some() || self.extra.iter().any(|(re, _)| re.is_match(name))
    }

    /// The category of one record: copies and sets are `copy`, communication
    /// kernels `communication`, every other kernel `compute`. `kind` is the
    /// `kernel_events.kind` value (`kernel`, `memcpy`, `memset`).
    pub fn classify(&self, kind: &str, name: &str) -> Category {
        crate::category::classify_marked(kind, || self.is_communication(name))
    }

    /// The category of a stored row: a row another door already called
    /// communication (with its own patterns) or copy stays so; any other
    /// kernel is classified here, so rows written before a library joined
    /// the table count it too.
    pub fn classify_row(&self, kind: &str, name: &str, stored: Option<Category>) -> Category {
        match stored {
            Some(c @ (Category::Communication | Category::Copy)) => c,
            _ => self.classify(kind, name),
        }
    }
}

/// The first built-in entry matching `name`.
pub fn builtin_entry(name: &str) -> Option<&'static CommKernel> {
    let path = function_path(name)?;
    COMM_KERNELS.iter().find(|e| pattern_matches(e.pattern, &path))
}

/// Whether a kernel is launched by NCCL's API (NCCL, RCCL, and MSCCL inside
/// them): the kernels an `nccl_calls` row can be joined to.
pub fn launched_by_nccl_api(name: &str) -> bool {
    builtin_entry(name).is_some_and(|e| e.library == NCCL || e.library == "msccl")
}

/// The operation in an NCCL/RCCL/MSCCL kernel name
/// (`ncclDevKernel_AllReduce_Sum_bf16_RING_LL` → `allreduce`); `sendrecv`
/// for point-to-point kernels; `None` for `ncclDevKernel_Generic`, which
/// runs whatever its arguments say.
pub fn nccl_op(name: &str) -> Option<&'static str> {
    let path = function_path(name)?;
    let last = path.last().filter(|s| {
        ["ncclDevKernel_", "ncclKernel_", "ncclSymDevKernel_", "ncclSymkDevKernel_"].iter().any(|k| s.starts_with(k))
    })?;
    let coll = last.split('_').nth(1)?;
    Some(match coll {
        "AllReduce" => "allreduce",
        "AllGather" | "AllGatherV" => "allgather",
        "ReduceScatter" => "reducescatter",
        "Broadcast" => "broadcast",
        "Reduce" => "reduce",
        "AllToAll" | "AlltoAll" => "alltoall",
        "SendRecv" | "Send" | "Recv" => "sendrecv",
        _ => return None,
    })
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The qualified name of the function a kernel name holds: for a mangled
/// (Itanium) name, its path (`_ZN7deep_ep9intranode8dispatchI…` →
/// `[deep_ep, intranode, dispatch]`); for a demangled one, the `a::b::c`
/// run right before the parameter list at the top level (`void
/// deep_ep::intranode::dispatch<8>(int4*)` → the same), else the last run at
/// the top level (a bare name). Template arguments and parameter types are
/// never the function.
pub fn function_path(name: &str) -> Option<Vec<&str>> {
    if let Some(rest) = name.strip_prefix("_Z") {
        return mangled_path(rest);
    }
    let b = name.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    let mut last_top: Option<Vec<&str>> = None;
    while i < b.len() {
        match b[i] {
            b'(' | b'<' | b'[' | b'{' => depth += 1,
            b')' | b'>' | b']' | b'}' => depth = depth.saturating_sub(1),
            c if depth == 0 && is_ident_start(c) && (i == 0 || !is_ident(b[i - 1])) => {
                let mut path = Vec::new();
                loop {
                    let s = i;
                    while i < b.len() && is_ident(b[i]) {
                        i += 1;
                    }
                    path.push(&name[s..i]);
                    if b.get(i..i + 2) == Some(b"::") && b.get(i + 2).is_some_and(|c| is_ident_start(*c)) {
                        i += 2;
                    } else {
                        break;
                    }
                }
                // Template arguments, then the parameter list: this is the function.
                let mut j = i;
                if b.get(j) == Some(&b'<') {
                    let mut d = 0usize;
                    while j < b.len() {
                        match b[j] {
                            b'<' => d += 1,
                            b'>' => {
                                d -= 1;
                                if d == 0 {
                                    j += 1;
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                }
                if b.get(j) == Some(&b'(') {
                    return Some(path);
                }
                last_top = Some(path);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    last_top
}

/// The function path of a mangled name after `_Z`: `N <source-names> E` or
/// one source-name, where a source-name is `<length><identifier>` (with an
/// optional `L` for internal linkage); stops at the first template
/// argument list or anything else.
fn mangled_path(s: &str) -> Option<Vec<&str>> {
    let b = s.as_bytes();
    let mut i = 0;
    let nested = b.first() == Some(&b'N');
    if nested {
        i += 1;
        // CV-qualifiers of member functions.
        while matches!(b.get(i), Some(b'r' | b'V' | b'K')) {
            i += 1;
        }
    }
    let mut path = Vec::new();
    loop {
        if b.get(i) == Some(&b'L') {
            i += 1;
        }
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            break;
        }
        let len: usize = s[start..i].parse().ok()?;
        let id = s.get(i..i.checked_add(len)?)?;
        if !id.bytes().all(is_ident) {
            return None;
        }
        path.push(id);
        i += len;
        if !nested {
            break;
        }
    }
    (!path.is_empty()).then_some(path)
}

/// Whether a pattern's segments equal the last segments of `path`.
fn pattern_matches(pattern: &str, path: &[&str]) -> bool {
    let segs: Vec<&str> = pattern.split("::").collect();
    if segs.len() > path.len() {
        return false;
    }
    let tail = &path[path.len() - segs.len()..];
    segs.iter().zip(tail).all(|(p, s)| glob(p, s))
}

/// `*` matches any run of characters (within one segment).
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || !s[first.len()..].ends_with(last) || s.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(at) => rest = &rest[at + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_of_mangled_and_demangled_kernel_names() {
        let p = |n| function_path(n).unwrap_or_default();
        assert_eq!(
            p("_ZN7deep_ep9intranode8dispatchILi8ELi768ELi8192EEEvP4int4PfPiPlS4_S5_S5_PKS2_"),
            ["deep_ep", "intranode", "dispatch"]
        );
        assert_eq!(
            p("_ZN12_GLOBAL__N_1L26multimem_all_reduce_kernelIfLi16EEEvPT_mPPjmm"),
            ["_GLOBAL__N_1", "multimem_all_reduce_kernel"]
        );
        assert_eq!(p("_Z21ncclDevKernel_Generic24ncclDevKernelArgsStorageILm4096EE"), ["ncclDevKernel_Generic"]);
        assert_eq!(p("_ZL25nvshmemi_signal_op_kernelPmmii"), ["nvshmemi_signal_op_kernel"]);
        assert_eq!(
            p("void (anonymous namespace)::multimem_all_reduce_kernel<float, 16>(float*, unsigned long)"),
            ["multimem_all_reduce_kernel"]
        );
        assert_eq!(
            p("void deep_ep::intranode::dispatch<8, 768, 8192>(int4*, float*)"),
            ["deep_ep", "intranode", "dispatch"]
        );
        assert_eq!(p("mscclKernel_Sum_hip_bfloat16_Simple_false"), ["mscclKernel_Sum_hip_bfloat16_Simple_false"]);
        assert_eq!(p("void cutlass::Kernel<deep_ep::intranode::dispatch<1> >(int)"), ["cutlass", "Kernel"]);
        assert_eq!(function_path("_Zgarbage"), None);
        assert_eq!(function_path("_ZN999abc"), None, "a length beyond the name is not a name");
    }

    #[test]
    fn patterns_match_whole_segments_only() {
        assert!(glob("ncclDevKernel_*", "ncclDevKernel_Generic"));
        assert!(!glob("ncclDevKernel_*", "ncclDevKernelArgsStorage"));
        assert!(glob("nvshmemi_*_wait_until*_on_stream_kernel", "nvshmemi_int_wait_until_all_on_stream_kernel"));
        assert!(glob("moeA2A*Kernel", "moeA2ADispatchKernel"));
        assert!(!glob("moeA2A*Kernel", "moeA2ADispatch"));
        assert!(pattern_matches("deep_ep::intranode::dispatch", &["deep_ep", "intranode", "dispatch"]));
        assert!(!pattern_matches("deep_ep::intranode::dispatch", &["deep_ep", "intranode", "cached_notify_dispatch"]));
        assert!(!pattern_matches("deep_ep::intranode::dispatch", &["intranode", "dispatch"]));
        // A compute kernel whose arguments name a communication type is not communication.
        assert!(builtin_entry("void at::native::copy_kernel<float>(ncclDevKernelArgsStorage<4096ul>)").is_none());
        assert!(builtin_entry("void combine<float>(float*)").is_none(), "a bare `combine` is not DeepEP's");
    }

    #[test]
    fn user_patterns_classify_as_custom_and_bad_ones_are_named() {
        let k = CommKernels::with_patterns(&["^acme_allreduce_".into(), "p2p:acme_(send|recv)".into()]).unwrap();
        assert_eq!(
            k.lookup("acme_allreduce_bf16(float*)"),
            Some(CommMatch { library: Arc::from(CUSTOM), kind: CommKind::Collective, op: None })
        );
        assert_eq!(k.lookup("_Z9acme_sendPv").map(|m| m.kind), Some(CommKind::PointToPoint));
        assert_eq!(k.classify("kernel", "acme_allreduce_x"), Category::Communication);
        assert_eq!(CommKernels::builtin().classify("kernel", "acme_allreduce_x"), Category::Compute);
        assert_eq!(k.classify_row("kernel", "gemm", Some(Category::Communication)), Category::Communication);
        assert_eq!(k.classify_row("memcpy", "acme_allreduce_x", None), Category::Copy);
        let e = CommKernels::with_patterns(&["acme_(".into()]).unwrap_err().to_string();
        assert!(e.starts_with("communication-kernel pattern \"acme_(\" is not a valid regular expression"), "{e}");
    }
}
