//! The one collective matcher (DESIGN §4): which records of `nccl_calls`
//! are the same collective instance on every rank, and each rank's sync
//! stall in it. The agent's live windows, `strand postmortem` and the fleet
//! report's stall pass all come here, so they share one rule for each of:
//!
//! - **identity**: an instance is the records with the same communicator
//!   ([`CommId`]: NCCL's commHash, or for Kineto traces the process-group
//!   name within a job) and sequence number (`matched_by = id`). Records
//!   without a communicator, `seq`, `rank` or `nranks`, and point-to-point
//!   calls, are never matched that way.
//! - **order**: communication kernels without that identity (a library other
//!   than NCCL's API, or NCCL kernels of traces without collective metadata),
//!   in traces of several ranks analysed together, are matched by their
//!   position in each rank's sequence of the same library, kernel and process
//!   group (the CUDA stream where no group is known): the k-th on every rank
//!   is one instance (`matched_by = order`, [`order_by_position`]). A kind
//!   whose sequences differ in length or in message sizes across ranks is
//!   refused, counted and explained, never guessed. Point-to-point kernels
//!   are never matched by order.
//! - **complete**: every rank `0..nranks` present once, all agreeing on the
//!   operation and `nranks` (a repeated rank is ignored and counted).
//! - **arrival**: the device-side kernel start when every rank of the
//!   instance has one (`time_source = kernel`), else the host call entry of
//!   every rank (`host`); never a mix of clocks.
//! - **stall**: rank r's `sync_stall_r = min(duration_r, max_r' s_r' − s_r)`
//!   (for `host` instances, the arrival lag), computed by the reducer.
//! - **estimates**: a record whose instance is incomplete when its deadline
//!   passes gets `duration − bytes ÷ baseline` ([`BandwidthBaseline`]),
//!   flagged estimated; without bytes, nothing. Only the live windows use
//!   estimates; the fleet and the postmortem keep complete instances only.
//!
//! Matched instances become `collective_stalls` rows ([`CollectiveStall`]),
//! which also name the last rank, its lateness and the stall it caused.

use std::collections::HashMap;
use std::sync::Arc;

use strand_kernels::{KernelsError, Reducer};
use strand_schemas::comm_kernels::{CommKind, CommMatch};
use strand_schemas::{CollectiveStall, KernelEvent, NcclCall};

use crate::GpuKey;

/// Identity of a communicator, the same on every rank.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommId {
    /// NCCL commHash (eBPF).
    Hash(i64),
    /// Process-group name within a job (Kineto has no commHash).
    Name { job: Option<Arc<str>>, name: Arc<str> },
    /// A kind of communication kernel matched by order across the ranks of a
    /// job: its library, kernel name and group (process group, or CUDA stream).
    Order { job: Option<Arc<str>>, library: Arc<str>, kernel: Arc<str>, group: Arc<str> },
}

impl CommId {
    /// The `comm_hash` column: NCCL's commHash, or for a communicator known
    /// only by name a stable FNV-1a hash of its job and name (the name is in
    /// `comm_name`).
    pub fn hash(&self) -> i64 {
        match self {
            CommId::Hash(h) => *h,
            CommId::Name { job, name } => {
                let key = format!("{}\u{0}{name}", job.as_deref().unwrap_or(""));
                fnv1a(key.as_bytes()) as i64
            }
            CommId::Order { job, library, kernel, group } => {
                let key = format!("order\u{0}{}\u{0}{library}\u{0}{kernel}\u{0}{group}", job.as_deref().unwrap_or(""));
                fnv1a(key.as_bytes()) as i64
            }
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            CommId::Hash(_) => None,
            CommId::Name { name, .. } => Some(name),
            CommId::Order { group, .. } => Some(group),
        }
    }

    /// The `matched_by` of its instances: `order` or `id`.
    pub fn matched_by(&self) -> &'static str {
        match self {
            CommId::Order { .. } => "order",
            _ => "id",
        }
    }
}

/// FNV-1a, 64 bits: stable across runs and builds (std's hasher is not).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Collective operations whose instances line up across ranks by `seq`.
pub const COLLECTIVE_OPS: &[&str] = &["allreduce", "broadcast", "reduce", "allgather", "reducescatter", "alltoall"];

/// Whether `op` (an `nccl_calls.op`) is a collective matched across ranks.
pub fn is_collective(op: &str) -> bool {
    COLLECTIVE_OPS.contains(&op)
}

/// One rank's part of a collective: what the matcher needs from an `nccl_calls` row.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectiveRecord {
    pub cluster: Arc<str>,
    pub node: Arc<str>,
    pub job_id: Option<Arc<str>>,
    pub pid: i32,
    pub gpu_index: Option<i32>,
    pub gpu_uuid: Option<Arc<str>>,
    pub comm: Option<CommId>,
    pub seq: Option<i64>,
    pub rank: Option<i32>,
    pub nranks: Option<i32>,
    pub op: Arc<str>,
    pub bytes: Option<i64>,
    /// Host call entry and return.
    pub enter_ns: i64,
    pub exit_ns: Option<i64>,
    /// Device-side kernel start and end, when joined.
    pub kernel: Option<(i64, i64)>,
    /// For a communication kernel without a collective identity: what
    /// [`order_by_position`] matches it by.
    pub order: Option<OrderKind>,
}

/// The kind of a communication kernel without a collective identity: one
/// library's one kernel in one group, on one rank (`rank_key`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderKind {
    pub library: Arc<str>,
    pub kernel: Arc<str>,
    /// Process-group name, else `stream <id>`.
    pub group: Arc<str>,
}

impl CollectiveRecord {
    /// The record of an `nccl_calls` row; `None` for calls that move no data
    /// between ranks (group, init, …).
    pub fn from_call(c: &NcclCall) -> Option<Self> {
        if !(is_collective(&c.op) || c.op == "send" || c.op == "recv") {
            return None;
        }
        let job: Option<Arc<str>> = c.job_id.as_deref().map(Arc::from);
        let comm = match (&c.comm_hash, &c.comm_name) {
            (Some(h), _) => Some(CommId::Hash(*h)),
            (None, Some(n)) => Some(CommId::Name { job: job.clone(), name: Arc::from(n.as_str()) }),
            _ => None,
        };
        let kernel = match (c.kernel_start_ns, c.kernel_end_ns) {
            (Some(s), Some(e)) if e >= s => Some((s, e)),
            _ => None,
        };
        Some(Self {
            cluster: c.cluster.clone(),
            node: c.node.clone(),
            job_id: job,
            pid: c.pid,
            gpu_index: c.gpu_index,
            gpu_uuid: c.gpu_uuid.clone(),
            comm,
            seq: c.seq,
            rank: c.rank,
            nranks: c.nranks,
            op: Arc::from(c.op.as_str()),
            bytes: c.bytes,
            enter_ns: c.enter_ns,
            exit_ns: c.exit_ns,
            kernel,
            order: None,
        })
    }

    /// The record of a communication kernel that no call gives a collective
    /// identity (`m` is what the table says of it), to be matched by order;
    /// `None` for point-to-point kernels and rows without a GPU.
    pub fn from_kernel(k: &KernelEvent, m: &CommMatch, rank: Option<i32>, group: Option<&str>) -> Option<Self> {
        if m.kind != CommKind::Collective || k.gpu_index.is_none() || k.end_ns < k.start_ns {
            return None;
        }
        let group: Arc<str> = match group {
            Some(g) => Arc::from(g),
            None => Arc::from(format!("stream {}", k.stream_id).as_str()),
        };
        Some(Self {
            cluster: k.cluster.clone(),
            node: k.node.clone(),
            job_id: k.job_id.as_deref().map(Arc::from),
            pid: k.pid,
            gpu_index: k.gpu_index,
            gpu_uuid: k.gpu_uuid.clone(),
            comm: None,
            seq: None,
            rank,
            nranks: None,
            op: m.op.clone().unwrap_or_else(|| Arc::from("collective")),
            bytes: k.bytes,
            enter_ns: k.launch_ns.unwrap_or(k.start_ns),
            exit_ns: None,
            kernel: Some((k.start_ns, k.end_ns)),
            order: Some(OrderKind { library: m.library.clone(), kernel: k.name.clone(), group }),
        })
    }

    /// The instance this record belongs to, when it can be matched at all.
    pub fn instance_key(&self) -> Option<(CommId, i64)> {
        let by_order = matches!(self.comm, Some(CommId::Order { .. }));
        let ok = self.seq.is_some()
            && self.rank.is_some()
            && self.nranks.is_some_and(|n| n >= 1)
            && (by_order || is_collective(&self.op));
        Some((self.comm.clone().filter(|_| ok)?, self.seq?))
    }

    pub fn gpu(&self) -> Option<GpuKey> {
        Some(GpuKey { node: self.node.clone(), gpu_index: self.gpu_index? })
    }

    fn kernel_duration(&self) -> Option<i64> {
        self.kernel.map(|(s, e)| e - s)
    }
}

/// What the matcher did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MatchStats {
    /// Instances matched on device times / host times.
    pub instances_exact: u64,
    pub instances_host_timed: u64,
    /// Instances with fewer distinct ranks than `nranks` (peers' data missing).
    pub instances_incomplete: u64,
    /// Instances whose ranks disagree on the operation or the communicator size.
    pub instances_inconsistent: u64,
    /// Records repeating a rank already present in their instance.
    pub duplicate_rows: u64,
    /// Records given an estimated stall (live windows only).
    pub estimated_records: u64,
    /// Instances (of those above) matched by order, not by communicator and sequence number.
    pub instances_by_order: u64,
    /// Kinds of communication kernel (library, kernel, group) numbered by
    /// order across two or more ranks.
    pub order_kinds_matched: u64,
    /// Kinds refused because the ranks' sequences differ in length.
    pub order_refused_length: u64,
    /// Kinds refused because the ranks' sequences differ in message sizes.
    pub order_refused_size: u64,
}

impl MatchStats {
    pub fn add(&mut self, o: &MatchStats) {
        self.instances_exact += o.instances_exact;
        self.instances_host_timed += o.instances_host_timed;
        self.instances_incomplete += o.instances_incomplete;
        self.instances_inconsistent += o.instances_inconsistent;
        self.duplicate_rows += o.duplicate_rows;
        self.estimated_records += o.estimated_records;
        self.instances_by_order += o.instances_by_order;
        self.order_kinds_matched += o.order_kinds_matched;
        self.order_refused_length += o.order_refused_length;
        self.order_refused_size += o.order_refused_size;
    }
}

/// Bus bandwidth factor and algorithm bytes of an operation (nccl-tests'
/// conventions; `bytes` is the per-rank input as in `nccl_calls`).
pub fn bus_factor(op: &str, nranks: i32, bytes: i64) -> Option<(f64, f64)> {
    let n = f64::from(nranks.max(1));
    let b = bytes as f64;
    match op {
        "allreduce" => Some((2.0 * (n - 1.0) / n, b)),
        "allgather" => Some(((n - 1.0) / n, b * n)),
        "reducescatter" | "alltoall" => Some(((n - 1.0) / n, b)),
        "broadcast" | "reduce" => Some((1.0, b)),
        _ => None,
    }
}

/// Message size class: floor(log2(bytes)).
pub fn size_class(bytes: i64) -> u32 {
    63 - (bytes.max(1) as u64).leading_zeros()
}

/// Resolves instances: each group holds the records of one (communicator,
/// seq). Complete, consistent instances become `collective_stalls` rows; the
/// records of the others come back unmatched (and are counted).
pub fn resolve(
    reducer: &Reducer,
    groups: Vec<Vec<CollectiveRecord>>,
    stats: &mut MatchStats,
) -> Result<(Vec<CollectiveStall>, Vec<CollectiveRecord>), KernelsError> {
    let mut instances: Vec<(Vec<CollectiveRecord>, bool)> = Vec::with_capacity(groups.len());
    let mut unmatched = Vec::new();
    for mut recs in groups {
        recs.sort_by_key(|r| (r.rank, r.enter_ns));
        let before = recs.len();
        recs.dedup_by_key(|r| r.rank);
        stats.duplicate_rows += (before - recs.len()) as u64;
        let Some(first) = recs.first() else { continue };
        let n = first.nranks.unwrap_or(0);
        if recs.iter().any(|r| r.op != first.op || r.nranks != first.nranks) {
            stats.instances_inconsistent += 1;
            unmatched.extend(recs);
            continue;
        }
        // Ranks of order-matched kinds are the ranks' own numbers (any), one each.
        let by_order = matches!(first.comm, Some(CommId::Order { .. }));
        let out_of_range = |r: &CollectiveRecord| r.rank.is_none_or(|k| k < 0 || (!by_order && k >= n));
        if n < 1 || recs.len() != n as usize || recs.iter().any(out_of_range) {
            stats.instances_incomplete += 1;
            unmatched.extend(recs);
            continue;
        }
        let kernel = recs.iter().all(|r| r.kernel.is_some());
        instances.push((recs, kernel));
    }
    let (mut group, mut start, mut duration) = (Vec::new(), Vec::new(), Vec::new());
    for (g, (recs, kernel)) in instances.iter().enumerate() {
        for r in recs {
            group.push(g as u32);
            match (kernel, r.kernel) {
                (true, Some((s, e))) => {
                    start.push(s);
                    duration.push(e - s);
                }
                // Host-timed: the stall is the arrival lag, unbounded by a kernel not seen.
                _ => {
                    start.push(r.enter_ns);
                    duration.push(i64::MAX / 4);
                }
            }
        }
    }
    if instances.is_empty() {
        return Ok((Vec::new(), unmatched));
    }
    let groups = instances.len();
    let last = reducer.max_per_group(&group, &start, groups)?;
    let stall = reducer.sync_stall(&group, &start, &duration, groups)?;
    let mut out = Vec::with_capacity(start.len());
    let mut i = 0;
    for (g, (recs, kernel)) in instances.into_iter().enumerate() {
        let n = recs.len();
        let rows = i..i + n;
        i += n;
        let last_start = last[g].unwrap_or(i64::MIN);
        // The last rank (lowest among ties) and its lead over the second latest.
        let last_idx = rows.clone().find(|&j| start[j] == last_start).unwrap_or(rows.start);
        let second = rows.clone().filter(|&j| j != last_idx).map(|j| start[j]).max();
        let lateness = second.map_or(0, |s| last_start - s);
        let caused: i64 = rows.clone().filter(|&j| j != last_idx).map(|j| stall[j].min(lateness)).sum();
        // The same for the last rank's node: a slow node makes one of its own ranks last by a hair.
        let last_node = recs[last_idx - rows.start].node.clone();
        let other_nodes = || rows.clone().filter(|&j| recs[j - rows.start].node != last_node);
        let node_lateness = other_nodes().map(|j| start[j]).max().map(|s| last_start - s);
        let node_caused = node_lateness.map(|l| other_nodes().map(|j| stall[j].min(l)).sum::<i64>());
        if kernel {
            stats.instances_exact += 1;
        } else {
            stats.instances_host_timed += 1;
        }
        let matched_by = recs[0].comm.as_ref().map_or("id", CommId::matched_by);
        if matched_by == "order" {
            stats.instances_by_order += 1;
        }
        for (j, r) in rows.zip(recs) {
            let is_last = j == last_idx;
            let (end_ns, transfer) = match (kernel, r.kernel) {
                (true, Some((_, e))) => (e, Some(duration[j] - stall[j])),
                _ => (r.exit_ns.unwrap_or(last_start).max(start[j]), None),
            };
            let bus_bw = match (transfer, r.bytes) {
                (Some(t), Some(b)) if t > 0 && b > 0 => {
                    bus_factor(&r.op, r.nranks.unwrap_or(1), b).map(|(f, alg)| alg * f / (t as f64 * 1e-9))
                }
                _ => None,
            };
            let comm = r.comm.as_ref().expect("matched records have a communicator");
            out.push(CollectiveStall {
                cluster: r.cluster.clone(),
                node: r.node.clone(),
                job_id: r.job_id.as_deref().map(str::to_string),
                comm_hash: comm.hash(),
                comm_name: comm.name().map(str::to_string),
                seq: r.seq.unwrap_or(0),
                op: r.op.to_string(),
                nranks: r.nranks.unwrap_or(0),
                rank: r.rank.unwrap_or(0),
                pid: r.pid,
                gpu_index: r.gpu_index,
                gpu_uuid: r.gpu_uuid.clone(),
                bytes: r.bytes,
                start_ns: start[j],
                end_ns,
                time_source: if kernel { "kernel" } else { "host" }.to_string(),
                last_start_ns: last_start,
                stall_ns: stall[j],
                is_last,
                lateness_ns: is_last.then_some(lateness),
                caused_stall_ns: is_last.then_some(caused),
                node_lateness_ns: node_lateness.filter(|_| is_last),
                node_caused_stall_ns: node_caused.filter(|_| is_last),
                transfer_ns: transfer,
                size_class: r.bytes.filter(|b| *b > 0).map(|b| size_class(b) as i32),
                bus_bw_bytes_per_s: bus_bw,
                matched_by: Some(matched_by.to_string()),
            });
        }
    }
    Ok((out, unmatched))
}

/// Groups records by instance (records that can never match are returned apart).
pub fn group(
    records: impl IntoIterator<Item = CollectiveRecord>,
) -> (Vec<Vec<CollectiveRecord>>, Vec<CollectiveRecord>) {
    let mut by: HashMap<(CommId, i64), Vec<CollectiveRecord>> = HashMap::new();
    let mut lone = Vec::new();
    for r in records {
        match r.instance_key() {
            Some(k) => by.entry(k).or_default().push(r),
            None => lone.push(r),
        }
    }
    let mut groups: Vec<_> = by.into_iter().collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    (groups.into_iter().map(|(_, v)| v).collect(), lone)
}

/// Matches every collective of a whole run at once (the postmortem): its
/// `collective_stalls` rows, in (communicator, seq, rank) order. `ordered`
/// are the communication kernels without a call that [`order_by_position`]
/// numbered (others among them stay unmatched).
pub fn match_all(
    reducer: &Reducer,
    calls: &[NcclCall],
    ordered: &[CollectiveRecord],
    stats: &mut MatchStats,
) -> Result<Vec<CollectiveStall>, KernelsError> {
    let (groups, _) = group(calls.iter().filter_map(CollectiveRecord::from_call).chain(ordered.iter().cloned()));
    Ok(resolve(reducer, groups, stats)?.0)
}

/// Why [`order_by_position`] refused a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRefusal {
    pub library: Arc<str>,
    pub kernel: Arc<str>,
    pub group: Arc<str>,
    /// `length` or `size`.
    pub reason: &'static str,
    /// For `length`: each rank's count, as (node, GPU, count); for `size`:
    /// the first position where sizes differ and the sizes there.
    pub detail: String,
}

impl std::fmt::Display for OrderRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.reason {
            "length" => "the ranks ran it a different number of times",
            _ => "the ranks' message sizes differ",
        };
        write!(
            f,
            "{} kernel {} ({}): not matched by order, {what} ({})",
            self.library, self.kernel, self.group, self.detail
        )
    }
}

/// What a report says about order matching (the postmortem's and the fleet
/// report's notes, one wording): the kinds matched, the kinds refused (ten
/// at most, each with its reason) and the kernels left unmatched, by library.
pub fn order_notes(
    stats: &MatchStats,
    refusals: &[String],
    unmatched: u64,
    unmatched_libraries: &[String],
) -> Vec<String> {
    let mut notes = Vec::new();
    if unmatched > 0 {
        notes.push(format!(
            "{unmatched} communication kernels ({}) have no collective identity and were not matched across ranks: their exposed time is communication whose split into transfer and sync stall is unknown",
            unmatched_libraries.join(", ")
        ));
    }
    notes.extend(refusals.iter().take(10).cloned());
    if refusals.len() > 10 {
        notes.push(format!("… and {} more kinds of communication kernel not matched by order", refusals.len() - 10));
    }
    if stats.order_kinds_matched > 0 {
        notes.push(format!(
            "{} kinds of communication kernel without a collective identity matched across ranks by their order (collective_stalls.matched_by = order)",
            stats.order_kinds_matched
        ));
    }
    notes
}

/// The libraries of records that [`order_by_position`] left without an
/// instance, sorted and once each, and how many such records there are.
pub fn unmatched_libraries(ordered: &[CollectiveRecord]) -> (u64, Vec<String>) {
    let lone: Vec<&CollectiveRecord> = ordered.iter().filter(|r| r.instance_key().is_none()).collect();
    let mut libs: Vec<String> = lone.iter().filter_map(|r| r.order.as_ref().map(|o| o.library.to_string())).collect();
    libs.sort_unstable();
    libs.dedup();
    (lone.len() as u64, libs)
}

/// Numbers communication kernels without a collective identity by their
/// order on each rank, so that the k-th kernel of one library, kernel and
/// group on every rank of a job is one instance (`matched_by = order`).
/// Ranks are the (node, GPU) pairs; a record's `rank` is kept when every rank
/// of the kind has a distinct one, else ranks are numbered by (node, GPU).
/// A kind seen on one rank only is left alone; a kind whose sequences differ
/// in length, or in bytes at some position where every rank has them, is
/// refused (counted in `stats`, explained in the returned refusals). Records
/// that are not numbered come back as they were (they never match).
pub fn order_by_position(
    records: Vec<CollectiveRecord>,
    stats: &mut MatchStats,
) -> (Vec<CollectiveRecord>, Vec<OrderRefusal>) {
    type RankKey = (Arc<str>, Option<i32>);
    type Kind = (Option<Arc<str>>, OrderKind);
    let mut kinds: std::collections::BTreeMap<Kind, std::collections::BTreeMap<RankKey, Vec<CollectiveRecord>>> =
        Default::default();
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        match r.order.clone() {
            Some(kind) if r.comm.is_none() && r.kernel.is_some() => kinds
                .entry((r.job_id.clone(), kind))
                .or_default()
                .entry((r.node.clone(), r.gpu_index))
                .or_default()
                .push(r),
            _ => out.push(r),
        }
    }
    let mut refusals = Vec::new();
    for ((job, kind), ranks) in kinds {
        if ranks.len() < 2 {
            out.extend(ranks.into_values().flatten());
            continue;
        }
        let mut seqs: Vec<(RankKey, Vec<CollectiveRecord>)> = ranks.into_iter().collect();
        for (_, v) in &mut seqs {
            v.sort_by_key(|r| r.kernel.map(|k| k.0));
        }
        let len = seqs[0].1.len();
        let refuse = if seqs.iter().any(|(_, v)| v.len() != len) {
            stats.order_refused_length += 1;
            let counts: Vec<String> = seqs
                .iter()
                .map(|((node, gpu), v)| {
                    format!("{node} GPU {}: {}", gpu.map_or("?".into(), |g| g.to_string()), v.len())
                })
                .collect();
            Some(("length", counts.join(", ")))
        } else {
            (0..len)
                .find_map(|i| {
                    let sizes: Vec<Option<i64>> = seqs.iter().map(|(_, v)| v[i].bytes).collect();
                    (sizes.iter().all(Option::is_some) && sizes.windows(2).any(|w| w[0] != w[1]))
                        .then(|| format!("position {i}: bytes {sizes:?}"))
                })
                .map(|d| {
                    stats.order_refused_size += 1;
                    ("size", d)
                })
        };
        if let Some((reason, detail)) = refuse {
            refusals.push(OrderRefusal {
                library: kind.library.clone(),
                kernel: kind.kernel.clone(),
                group: kind.group.clone(),
                reason,
                detail,
            });
            out.extend(seqs.into_iter().flat_map(|(_, v)| v));
            continue;
        }
        stats.order_kinds_matched += 1;
        let n = seqs.len() as i32;
        let mut given: Vec<i32> = seqs.iter().filter_map(|(_, v)| v[0].rank).collect();
        given.sort_unstable();
        given.dedup();
        let keep_ranks = given.len() == seqs.len() && seqs.iter().all(|(_, v)| v.iter().all(|r| r.rank == v[0].rank));
        let comm = CommId::Order {
            job: job.clone(),
            library: kind.library.clone(),
            kernel: kind.kernel.clone(),
            group: kind.group.clone(),
        };
        for (pos, (_, v)) in seqs.into_iter().enumerate() {
            for (i, mut r) in v.into_iter().enumerate() {
                r.comm = Some(comm.clone());
                r.seq = Some(i as i64);
                r.nranks = Some(n);
                if !keep_ranks {
                    r.rank = Some(pos as i32);
                }
                out.push(r);
            }
        }
    }
    (out, refusals)
}

/// The sync stall of one rank's kernel, for the windows of its GPU.
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
/// for the same communicator, operation and message size class. The fastest
/// instance of a size is taken as pure transfer; anything slower is counted
/// as waiting. An estimate, flagged as such.
#[derive(Debug, Clone, Default)]
pub struct BandwidthBaseline {
    best: HashMap<(Option<CommId>, Arc<str>, u32), f64>,
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
            if let (Some(b), Some(d)) = (r.bytes, r.kernel_duration()) {
                self.observe(&r.comm, &r.op, b, d);
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
        let d = r.kernel_duration()?;
        let t = self.transfer_ns(&r.comm, &r.op, r.bytes?)?;
        Some((d - t).clamp(0, d))
    }

    pub fn is_empty(&self) -> bool {
        self.best.is_empty()
    }
}

#[derive(Debug)]
struct Pending {
    nranks: usize,
    ranks: Vec<i32>,
    members: Vec<CollectiveRecord>,
    earliest: i64,
}

/// The streaming form for the live windows: records with device kernel
/// times arrive in any order; an instance resolves exactly once all its
/// ranks are in ([`resolve`]), or by estimate when its deadline passes first.
#[derive(Debug, Default)]
pub struct StallMatcher {
    pending: HashMap<(CommId, i64), Pending>,
    unmatchable: Vec<CollectiveRecord>,
    pub baseline: BandwidthBaseline,
    pub stats: MatchStats,
}

impl StallMatcher {
    pub fn new(baseline: BandwidthBaseline) -> Self {
        Self { baseline, ..Self::default() }
    }

    /// Records held until their instance resolves.
    pub fn pending_records(&self) -> usize {
        self.pending.values().map(|i| i.members.len()).sum::<usize>() + self.unmatchable.len()
    }

    /// Takes a record with device kernel times and a GPU (others cannot
    /// place a stall in a window and are ignored).
    pub fn push(&mut self, r: CollectiveRecord) {
        let Some((start, _)) = r.kernel else { return };
        if r.gpu_index.is_none() {
            return;
        }
        let Some(key) = r.instance_key() else {
            self.unmatchable.push(r);
            return;
        };
        let n = r.nranks.unwrap_or(1).max(1) as usize;
        let p = self.pending.entry(key).or_insert_with(|| Pending {
            nranks: n,
            ranks: Vec::new(),
            members: Vec::new(),
            earliest: start,
        });
        if let Some(rank) = r.rank
            && !p.ranks.contains(&rank)
        {
            p.ranks.push(rank);
        }
        p.earliest = p.earliest.min(start);
        p.members.push(r);
    }

    /// Resolves every complete instance exactly, and every incomplete one
    /// whose earliest kernel started before `deadline` by estimate.
    pub fn resolve(&mut self, reducer: &Reducer, deadline: i64) -> Result<Vec<StallInterval>, KernelsError> {
        let keys: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, p)| p.ranks.len() >= p.nranks || p.earliest < deadline)
            .map(|(k, _)| k.clone())
            .collect();
        let groups: Vec<Vec<CollectiveRecord>> =
            keys.into_iter().filter_map(|k| self.pending.remove(&k)).map(|p| p.members).collect();
        let (rows, unmatched) = resolve(reducer, groups, &mut self.stats)?;
        let mut out = Vec::with_capacity(rows.len() + unmatched.len());
        for r in &rows {
            // The rest of the kernel after the wait is pure transfer: it
            // teaches the baseline where the size is known (instances matched
            // by order have no communicator to learn for).
            if let (Some(t), Some(b), false) = (r.transfer_ns, r.bytes, r.matched_by.as_deref() == Some("order")) {
                let comm = Some(if r.comm_name.is_some() {
                    CommId::Name {
                        job: r.job_id.as_deref().map(Arc::from),
                        name: Arc::from(r.comm_name.as_deref().unwrap_or("")),
                    }
                } else {
                    CommId::Hash(r.comm_hash)
                });
                self.baseline.observe(&comm, &Arc::from(r.op.as_str()), b, t);
            }
            // The stall is exact whether or not the size is known.
            if let Some(gi) = r.gpu_index {
                out.push(StallInterval {
                    gpu: GpuKey { node: r.node.clone(), gpu_index: gi },
                    kernel_start: r.start_ns,
                    kernel_end: r.end_ns,
                    stall_ns: Some(r.stall_ns),
                    estimated: false,
                });
            }
        }
        let (now, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.unmatchable).into_iter().partition(|r| r.kernel.is_some_and(|k| k.0 < deadline));
        self.unmatchable = later;
        for r in &unmatched {
            if let (Some(b), Some(d)) = (r.bytes, r.kernel_duration()) {
                self.baseline.observe(&r.comm, &r.op, b, d);
            }
        }
        for r in unmatched.into_iter().chain(now) {
            let (Some(gpu), Some((s, e))) = (r.gpu(), r.kernel) else { continue };
            self.stats.estimated_records += 1;
            out.push(StallInterval {
                gpu,
                kernel_start: s,
                kernel_end: e,
                stall_ns: self.baseline.estimate(&r),
                estimated: true,
            });
        }
        Ok(out)
    }

    /// Resolves everything still pending (end of input).
    pub fn flush(&mut self, reducer: &Reducer) -> Result<Vec<StallInterval>, KernelsError> {
        self.resolve(reducer, i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(rank: i32, start: i64, dur: i64, seq: i64) -> CollectiveRecord {
        CollectiveRecord {
            cluster: Arc::from("c"),
            node: Arc::from("n"),
            job_id: None,
            pid: 100 + rank,
            gpu_index: Some(rank),
            gpu_uuid: None,
            comm: Some(CommId::Hash(42)),
            seq: Some(seq),
            rank: Some(rank),
            nranks: Some(4),
            op: Arc::from("allreduce"),
            bytes: Some(1 << 20),
            enter_ns: start - 10,
            exit_ns: Some(start + dur),
            kernel: Some((start, start + dur)),
            order: None,
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
        assert_eq!(m.stats.instances_exact, 1);
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
        assert_eq!(
            out.iter().map(|s| (s.stall_ns, s.estimated)).collect::<Vec<_>>(),
            vec![(Some(750), true), (Some(650), true)]
        );
        assert_eq!(m.stats.instances_incomplete, 1);
        // Without bytes there is nothing to estimate from.
        let mut x = rec(0, 5000, 100, 2);
        x.bytes = None;
        m.push(x);
        assert_eq!(m.flush(&r).unwrap()[0].stall_ns, None);
    }

    #[test]
    fn instances_need_every_rank_one_operation_and_one_clock() {
        let r = Reducer::cpu();
        let mut stats = MatchStats::default();
        let mut disagree: Vec<_> = (0..4).map(|k| rec(k, 1000 + 100 * k as i64, 1000, 3)).collect();
        disagree[2].op = Arc::from("allgather");
        let dup = vec![rec(0, 1, 1, 9), rec(0, 1, 1, 9)];
        // One rank without a device time: the whole instance is host-timed (entries 990, 1090, 1190, 1290).
        let mut host: Vec<_> = (0..4).map(|k| rec(k, 1000 + 100 * k as i64, 1000, 4)).collect();
        host[1].kernel = None;
        let (rows, unmatched) = resolve(&r, vec![disagree, dup, host], &mut stats).unwrap();
        assert_eq!(
            (
                stats.instances_inconsistent,
                stats.instances_incomplete,
                stats.duplicate_rows,
                stats.instances_host_timed
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(unmatched.len(), 5);
        assert!(rows.iter().all(|s| s.time_source == "host"));
        assert_eq!(rows.iter().map(|s| s.stall_ns).collect::<Vec<_>>(), [300, 200, 100, 0]);
        let last = rows.iter().find(|s| s.is_last).unwrap();
        assert_eq!((last.rank, last.lateness_ns, last.caused_stall_ns), (3, Some(100), Some(300)));
    }

    #[test]
    fn a_name_keyed_communicator_gets_a_stable_key_per_job() {
        let a = CommId::Name { job: Some(Arc::from("j1")), name: Arc::from("0") };
        let b = CommId::Name { job: Some(Arc::from("j2")), name: Arc::from("0") };
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), CommId::Name { job: Some(Arc::from("j1")), name: Arc::from("0") }.hash());
        assert_eq!(CommId::Hash(7).hash(), 7);
    }

    /// A DeepEP-style kernel on `node`, GPU 0, without any collective identity.
    fn kernel_rec(node: &str, start: i64, dur: i64, bytes: Option<i64>) -> CollectiveRecord {
        CollectiveRecord {
            node: Arc::from(node),
            gpu_index: Some(0),
            comm: None,
            seq: None,
            rank: None,
            nranks: None,
            op: Arc::from("dispatch"),
            bytes,
            kernel: Some((start, start + dur)),
            order: Some(OrderKind {
                library: Arc::from("deep_ep"),
                kernel: Arc::from("deep_ep::intranode::dispatch"),
                group: Arc::from("stream 7"),
            }),
            ..rec(0, start, dur, 0)
        }
    }

    #[test]
    fn kernels_without_identity_are_matched_by_their_order_and_a_late_rank_stalls_its_peers_exactly() {
        let r = Reducer::cpu();
        let mut stats = MatchStats::default();
        // Three ranks run the kernel twice; rank c is 500 ns late the second time.
        let mut recs = Vec::new();
        for node in ["a", "b", "c"] {
            recs.push(kernel_rec(node, 1_000, 300, None));
            recs.push(kernel_rec(
                node,
                if node == "c" { 5_500 } else { 5_000 },
                if node == "c" { 200 } else { 700 },
                None,
            ));
        }
        let (ordered, refused) = order_by_position(recs, &mut stats);
        assert!(refused.is_empty());
        assert_eq!(stats.order_kinds_matched, 1);
        let rows = match_all(&r, &[], &ordered, &mut stats).unwrap();
        assert_eq!(rows.len(), 6);
        assert!(rows.iter().all(|x| x.matched_by.as_deref() == Some("order") && x.nranks == 3));
        let second: Vec<_> =
            rows.iter().filter(|x| x.seq == 1).map(|x| (x.node.to_string(), x.stall_ns, x.is_last)).collect();
        assert_eq!(second, [("a".into(), 500, false), ("b".into(), 500, false), ("c".into(), 0, true)]);
        assert_eq!((stats.instances_exact, stats.instances_by_order), (2, 2));
    }

    #[test]
    fn order_matching_is_refused_when_the_ranks_sequences_differ_in_length_or_size() {
        let mut stats = MatchStats::default();
        let recs = vec![kernel_rec("a", 1, 1, None), kernel_rec("a", 5, 1, None), kernel_rec("b", 1, 1, None)];
        let (out, refused) = order_by_position(recs, &mut stats);
        assert_eq!((stats.order_refused_length, refused.len()), (1, 1));
        assert!(out.iter().all(|r| r.instance_key().is_none()), "refused records never match");
        assert!(
            refused[0].to_string().contains("a different number of times (a GPU 0: 2, b GPU 0: 1)"),
            "{}",
            refused[0]
        );
        let recs = vec![kernel_rec("a", 1, 1, Some(64)), kernel_rec("b", 1, 1, Some(128))];
        let (_, refused) = order_by_position(recs, &mut stats);
        assert_eq!((stats.order_refused_size, refused[0].reason), (1, "size"));
        // A kind seen on one rank has nothing to match.
        let (out, refused) = order_by_position(vec![kernel_rec("a", 1, 1, None)], &mut stats);
        assert!(refused.is_empty() && out[0].instance_key().is_none());
        assert_eq!(stats.order_kinds_matched, 0);
    }
}
