//! DESIGN §4: comm_exposed splits into **transfer** and **sync_stall**.
//!
//! For one collective instance (same communicator and sequence number on
//! every rank), rank r's kernel starts at s_r and
//! `sync_stall_r = min(duration_r, max_r' s_r' − s_r)`: the head of the
//! kernel spent spinning until the last rank arrived. That is exact when every
//! rank of the communicator is present ([`StallMatcher`] matches them by
//! commHash, or process-group name, and `seq`; the reducer's `sync_stall`
//! computes the figure). When peers are missing — a communicator spanning
//! nodes seen by one agent, or one rank's trace — the stall is estimated from
//! the bytes moved and a bandwidth baseline ([`BandwidthBaseline`]), and
//! flagged `estimated`.
//!
//! The result is a set of stall intervals `[s_r, s_r + sync_stall_r)` per GPU;
//! [`crate::decompose`] keeps the part of them not hidden under compute.

use std::collections::HashMap;
use std::sync::Arc;

use strand_kernels::{KernelsError, Reducer};
use strand_schemas::NcclCall;

use crate::GpuKey;

/// Identity of a communicator, the same on every rank.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommId {
    /// NCCL commHash (eBPF).
    Hash(i64),
    /// Process-group name within a job (Kineto has no commHash).
    Name { job: Option<String>, name: String },
}

/// Collective operations whose instances line up across ranks by `seq`.
pub const COLLECTIVE_OPS: &[&str] = &["allreduce", "broadcast", "reduce", "allgather", "reducescatter", "alltoall"];

/// One rank's part of a collective: what the matcher needs from an `nccl_calls` row.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectiveRecord {
    pub gpu: GpuKey,
    pub comm: Option<CommId>,
    pub seq: Option<i64>,
    pub rank: Option<i32>,
    pub nranks: Option<i32>,
    pub op: Arc<str>,
    pub bytes: Option<i64>,
    /// Device-side kernel start and end.
    pub start: i64,
    pub end: i64,
}

impl CollectiveRecord {
    /// The record of an `nccl_calls` row; `None` for calls without a kernel
    /// time or a GPU, and for non-communication calls (group, init, …).
    pub fn from_call(c: &NcclCall) -> Option<Self> {
        let (start, end) = (c.kernel_start_ns?, c.kernel_end_ns?);
        let gpu = GpuKey { node: c.node.clone(), gpu_index: c.gpu_index? };
        if !(COLLECTIVE_OPS.contains(&c.op.as_str()) || c.op == "send" || c.op == "recv") {
            return None;
        }
        let comm = match (&c.comm_hash, &c.comm_name) {
            (Some(h), _) => Some(CommId::Hash(*h)),
            (None, Some(n)) => Some(CommId::Name { job: c.job_id.clone(), name: n.clone() }),
            _ => None,
        };
        Some(Self { gpu, comm, seq: c.seq, rank: c.rank, nranks: c.nranks, op: Arc::from(c.op.as_str()), bytes: c.bytes, start, end })
    }

    fn duration(&self) -> i64 {
        (self.end - self.start).max(0)
    }

    fn matchable(&self) -> bool {
        self.comm.is_some()
            && self.seq.is_some()
            && self.rank.is_some()
            && self.nranks.is_some_and(|n| n >= 1)
            && COLLECTIVE_OPS.contains(&&*self.op)
    }
}

/// The sync stall of one rank's kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StallInterval {
    pub gpu: GpuKey,
    pub kernel_start: i64,
    pub kernel_end: i64,
    /// Stall length: the interval `[kernel_start, kernel_start + stall_ns)`.
    /// `None` when it could not be estimated (no bytes).
    pub stall_ns: Option<i64>,
    pub estimated: bool,
}

/// Bandwidth baseline for estimates: the best bandwidth (bytes per ns) seen
/// for the same communicator, operation and message size class (power of two).
/// The fastest instance of a size is taken as pure transfer; anything slower
/// is counted as waiting. An estimate, flagged as such.
#[derive(Debug, Clone, Default)]
pub struct BandwidthBaseline {
    best: HashMap<(Option<CommId>, Arc<str>, u32), f64>,
}

fn size_class(bytes: i64) -> u32 {
    63 - (bytes.max(1) as u64).leading_zeros()
}

impl BandwidthBaseline {
    /// Records that `bytes` of `op` on `comm` moved in `transfer_ns`.
    pub fn observe(&mut self, comm: &Option<CommId>, op: &Arc<str>, bytes: i64, transfer_ns: i64) {
        if bytes <= 0 || transfer_ns <= 0 {
            return;
        }
        let bw = bytes as f64 / transfer_ns as f64;
        let slot = self.best.entry((comm.clone(), op.clone(), size_class(bytes))).or_insert(bw);
        if bw > *slot {
            *slot = bw;
        }
    }

    /// Observes every call of a run (offline tools: a first pass over `nccl_calls`).
    pub fn observe_calls<'a>(&mut self, calls: impl IntoIterator<Item = &'a NcclCall>) {
        for r in calls.into_iter().filter_map(CollectiveRecord::from_call) {
            if let Some(b) = r.bytes {
                self.observe(&r.comm, &r.op, b, r.duration());
            }
        }
    }

    /// Estimated transfer time of `bytes`, when a baseline exists.
    pub fn transfer_ns(&self, comm: &Option<CommId>, op: &Arc<str>, bytes: i64) -> Option<i64> {
        let bw = self.best.get(&(comm.clone(), op.clone(), size_class(bytes)))?;
        Some((bytes as f64 / bw).round() as i64)
    }

    /// Estimated stall of one record: duration − estimated transfer, at least 0.
    pub fn estimate(&self, r: &CollectiveRecord) -> Option<i64> {
        let t = self.transfer_ns(&r.comm, &r.op, r.bytes?)?;
        Some((r.duration() - t).clamp(0, r.duration()))
    }

    pub fn is_empty(&self) -> bool {
        self.best.is_empty()
    }
}

#[derive(Debug)]
struct Instance {
    nranks: usize,
    members: Vec<CollectiveRecord>,
    earliest: i64,
}

/// Matches collective instances across ranks as records arrive (any order),
/// and resolves each into stall intervals: exactly once all ranks are
/// present, by estimate when the deadline passes first.
#[derive(Debug, Default)]
pub struct StallMatcher {
    pending: HashMap<(CommId, i64), Instance>,
    unmatchable: Vec<CollectiveRecord>,
    pub baseline: BandwidthBaseline,
    /// Records of a rank already present in their instance (ignored).
    pub duplicates: u64,
    /// Instances whose ranks disagreed on the operation (estimated instead).
    pub inconsistent: u64,
    /// Instances resolved exactly / by estimate.
    pub exact_instances: u64,
    pub estimated_instances: u64,
}

impl StallMatcher {
    pub fn new(baseline: BandwidthBaseline) -> Self {
        Self { baseline, ..Self::default() }
    }

    /// Records held until their instance resolves.
    pub fn pending_records(&self) -> usize {
        self.pending.values().map(|i| i.members.len()).sum::<usize>() + self.unmatchable.len()
    }

    pub fn push(&mut self, r: CollectiveRecord) {
        if !r.matchable() {
            self.unmatchable.push(r);
            return;
        }
        let (Some(comm), Some(seq), Some(n)) = (r.comm.clone(), r.seq, r.nranks) else { return };
        let inst = self.pending.entry((comm, seq)).or_insert_with(|| Instance { nranks: n as usize, members: Vec::new(), earliest: r.start });
        if inst.members.iter().any(|m| m.rank == r.rank) {
            self.duplicates += 1;
            return;
        }
        inst.earliest = inst.earliest.min(r.start);
        inst.members.push(r);
    }

    /// Resolves every complete instance exactly, and every incomplete one
    /// whose earliest kernel started before `deadline` by estimate.
    pub fn resolve(&mut self, reducer: &Reducer, deadline: i64) -> Result<Vec<StallInterval>, KernelsError> {
        let mut exact: Vec<Instance> = Vec::new();
        let mut estimate: Vec<CollectiveRecord> = Vec::new();
        let keys: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, i)| i.members.len() >= i.nranks || i.earliest < deadline)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            let Some(inst) = self.pending.remove(&k) else { continue };
            let consistent = inst.members.iter().all(|m| m.op == inst.members[0].op);
            if inst.members.len() >= inst.nranks && consistent {
                exact.push(inst);
            } else {
                if !consistent {
                    self.inconsistent += 1;
                }
                estimate.extend(inst.members);
            }
        }
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unmatchable).into_iter().partition(|r| r.start < deadline);
        self.unmatchable = later;
        let mut out = self.resolve_exact(reducer, exact)?;
        let mut est_instances = 0;
        for r in &estimate {
            if let Some(b) = r.bytes {
                self.baseline.observe(&r.comm, &r.op, b, r.duration());
            }
        }
        for r in estimate.into_iter().chain(now) {
            est_instances += 1;
            let stall_ns = self.baseline.estimate(&r);
            out.push(StallInterval { gpu: r.gpu, kernel_start: r.start, kernel_end: r.end, stall_ns, estimated: true });
        }
        self.estimated_instances += est_instances;
        Ok(out)
    }

    /// Resolves everything still pending (end of input).
    pub fn flush(&mut self, reducer: &Reducer) -> Result<Vec<StallInterval>, KernelsError> {
        self.resolve(reducer, i64::MAX)
    }

    fn resolve_exact(&mut self, reducer: &Reducer, instances: Vec<Instance>) -> Result<Vec<StallInterval>, KernelsError> {
        if instances.is_empty() {
            return Ok(Vec::new());
        }
        let mut group = Vec::new();
        let mut start = Vec::new();
        let mut duration = Vec::new();
        for (g, inst) in instances.iter().enumerate() {
            for m in &inst.members {
                group.push(g as u32);
                start.push(m.start);
                duration.push(m.duration());
            }
        }
        let stall = reducer.sync_stall(&group, &start, &duration, instances.len())?;
        self.exact_instances += instances.len() as u64;
        let mut out = Vec::with_capacity(stall.len());
        let mut i = 0;
        for inst in instances {
            for m in inst.members {
                let s = stall[i];
                i += 1;
                if let Some(b) = m.bytes {
                    // The rest of the kernel after the wait is pure transfer.
                    self.baseline.observe(&m.comm, &m.op, b, m.duration() - s);
                }
                out.push(StallInterval { gpu: m.gpu, kernel_start: m.start, kernel_end: m.end, stall_ns: Some(s), estimated: false });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(rank: i32, start: i64, dur: i64, seq: i64) -> CollectiveRecord {
        CollectiveRecord {
            gpu: GpuKey { node: Arc::from("n"), gpu_index: rank },
            comm: Some(CommId::Hash(42)),
            seq: Some(seq),
            rank: Some(rank),
            nranks: Some(4),
            op: Arc::from("allreduce"),
            bytes: Some(1 << 20),
            start,
            end: start + dur,
        }
    }

    #[test]
    fn the_last_rank_arriving_late_stalls_the_others_by_exactly_its_delay() {
        let r = Reducer::cpu();
        let mut m = StallMatcher::default();
        // Ranks 0-2 start at 1000; rank 3 is 700 ns late. Transfer takes 300 ns once all are in.
        for rank in 0..3 {
            m.push(rec(rank, 1000, 1000, 7));
        }
        assert!(m.resolve(&r, 0).unwrap().is_empty(), "incomplete instance before its deadline waits");
        m.push(rec(3, 1700, 300, 7));
        let mut out = m.resolve(&r, 0).unwrap();
        out.sort_by_key(|s| s.gpu.gpu_index);
        let stalls: Vec<_> = out.iter().map(|s| (s.stall_ns, s.estimated)).collect();
        assert_eq!(stalls, vec![(Some(700), false), (Some(700), false), (Some(700), false), (Some(0), false)]);
        assert_eq!(m.exact_instances, 1);
        // The exact instance teaches the baseline: 1 MiB in 300 ns.
        assert_eq!(m.baseline.transfer_ns(&Some(CommId::Hash(42)), &Arc::from("allreduce"), 1 << 20), Some(300));
    }

    #[test]
    fn missing_peers_give_an_estimate_from_the_bandwidth_baseline() {
        let r = Reducer::cpu();
        let mut base = BandwidthBaseline::default();
        base.observe(&Some(CommId::Hash(42)), &Arc::from("allreduce"), 1 << 20, 250);
        let mut m = StallMatcher::new(base);
        m.push(rec(0, 1000, 1000, 1));
        m.push(rec(1, 1100, 900, 1));
        let mut out = m.resolve(&r, 2000).unwrap();
        out.sort_by_key(|s| s.gpu.gpu_index);
        assert_eq!(out.iter().map(|s| (s.stall_ns, s.estimated)).collect::<Vec<_>>(), vec![(Some(750), true), (Some(650), true)]);
        // Without bytes there is nothing to estimate from.
        let mut x = rec(0, 5000, 100, 2);
        x.bytes = None;
        m.push(x);
        assert_eq!(m.flush(&r).unwrap()[0].stall_ns, None);
    }

    #[test]
    fn ranks_that_disagree_on_the_operation_are_not_matched() {
        let r = Reducer::cpu();
        let mut m = StallMatcher::default();
        for rank in 0..4 {
            let mut x = rec(rank, 1000 + 100 * rank as i64, 1000, 3);
            if rank == 2 {
                x.op = Arc::from("allgather");
            }
            m.push(x);
        }
        let out = m.resolve(&r, 0).unwrap();
        assert!(out.iter().all(|s| s.estimated));
        assert_eq!(m.inconsistent, 1);
        m.push(rec(0, 1, 1, 9));
        m.push(rec(0, 1, 1, 9));
        assert_eq!(m.duplicates, 1);
    }
}
