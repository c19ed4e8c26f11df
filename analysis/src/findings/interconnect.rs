//! ai.01 — interconnect stability (DESIGN §3): straggler, bus-bandwidth
//! collapse, link errors, exposed communication, topology-stranded capacity.
//! Definitions and thresholds: docs/findings.md.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::json;
use strand_schemas::CollectiveStall;

use super::{Draft, JobTime, Scope, Thresholds, ms, secs, sql_str};

/// (cluster, node, GPU UUID)
type GpuId = (Arc<str>, Arc<str>, Arc<str>);
/// (cluster, node, device, port)
type PortId = (Arc<str>, Arc<str>, Arc<str>, i64);
/// (cluster, commHash, operation, nranks, size class)
type BwUnit = (Arc<str>, i64, Arc<str>, i64, i64);

/// One rank of one communicator over the matched instances
/// (`collector/fleet/sql/stragglers.sql` computes the same per row group).
#[derive(Debug, Clone, PartialEq)]
pub struct RankStat {
    pub cluster: Arc<str>,
    pub comm_hash: i64,
    pub comm_name: Option<Arc<str>>,
    pub rank: i32,
    pub node: Arc<str>,
    pub gpu_index: Option<i32>,
    pub job_id: Option<Arc<str>>,
    pub nranks: i32,
    pub instances: i64,
    pub times_last: i64,
    /// Σ lateness over the instances it arrived last in.
    pub lateness_sum_ns: i64,
    pub caused_stall_ns: i64,
    pub suffered_stall_ns: i64,
    pub first_ns: i64,
    pub last_ns: i64,
}

impl RankStat {
    pub fn mean_lateness_ns(&self) -> f64 {
        if self.times_last > 0 { self.lateness_sum_ns as f64 / self.times_last as f64 } else { 0.0 }
    }
}

/// One node of one communicator (`node_stragglers.sql`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStat {
    pub cluster: Arc<str>,
    pub comm_hash: i64,
    pub comm_name: Option<Arc<str>>,
    pub node: Arc<str>,
    pub job_id: Option<Arc<str>>,
    pub nranks: i32,
    /// Ranks of the communicator on this node.
    pub ranks: i64,
    pub instances: i64,
    pub times_last: i64,
    pub lateness_sum_ns: i64,
    pub caused_stall_ns: i64,
    pub first_ns: i64,
    pub last_ns: i64,
}

impl NodeStat {
    pub fn mean_lateness_ns(&self) -> f64 {
        if self.times_last > 0 { self.lateness_sum_ns as f64 / self.times_last as f64 } else { 0.0 }
    }
}

type NodeAcc = (NodeStat, BTreeSet<i32>, i64);

/// The straggler roll-up of `collective_stalls` rows: [`Stragglers::update`]
/// one row at a time (postmortem), or the rows an engine computed
/// ([`Stragglers::from_stats`], fleet report).
#[derive(Debug, Clone, Default)]
pub struct Stragglers {
    ranks: BTreeMap<(Arc<str>, i64, i32, Arc<str>), RankStat>,
    /// Per (cluster, comm, node): the stat, the node's ranks, its rows.
    nodes: BTreeMap<(Arc<str>, i64, Arc<str>), NodeAcc>,
}

impl Stragglers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_stats(ranks: Vec<RankStat>, nodes: Vec<NodeStat>) -> Self {
        let mut s = Self::default();
        for r in ranks {
            s.ranks.insert((r.cluster.clone(), r.comm_hash, r.rank, r.node.clone()), r);
        }
        for n in nodes {
            let rows = n.instances * n.ranks;
            s.nodes.insert((n.cluster.clone(), n.comm_hash, n.node.clone()), (n, BTreeSet::new(), rows));
        }
        s
    }

    /// Adds one rank's row of a matched instance.
    pub fn update(&mut self, c: &CollectiveStall) {
        let job: Option<Arc<str>> = c.job_id.as_deref().map(Arc::from);
        let name: Option<Arc<str>> = c.comm_name.as_deref().map(Arc::from);
        let r =
            self.ranks.entry((c.cluster.clone(), c.comm_hash, c.rank, c.node.clone())).or_insert_with(|| RankStat {
                cluster: c.cluster.clone(),
                comm_hash: c.comm_hash,
                comm_name: name.clone(),
                rank: c.rank,
                node: c.node.clone(),
                gpu_index: c.gpu_index,
                job_id: job.clone(),
                nranks: c.nranks,
                instances: 0,
                times_last: 0,
                lateness_sum_ns: 0,
                caused_stall_ns: 0,
                suffered_stall_ns: 0,
                first_ns: c.start_ns,
                last_ns: c.end_ns,
            });
        r.gpu_index = r.gpu_index.max(c.gpu_index);
        r.job_id = r.job_id.clone().max(job.clone());
        r.nranks = r.nranks.max(c.nranks);
        r.instances += 1;
        r.times_last += i64::from(c.is_last);
        r.lateness_sum_ns += if c.is_last { c.lateness_ns.unwrap_or(0) } else { 0 };
        r.caused_stall_ns += c.caused_stall_ns.unwrap_or(0);
        r.suffered_stall_ns += c.stall_ns;
        r.first_ns = r.first_ns.min(c.start_ns);
        r.last_ns = r.last_ns.max(c.end_ns);
        let (n, ranks, rows) =
            self.nodes.entry((c.cluster.clone(), c.comm_hash, c.node.clone())).or_insert_with(|| {
                (
                    NodeStat {
                        cluster: c.cluster.clone(),
                        comm_hash: c.comm_hash,
                        comm_name: name,
                        node: c.node.clone(),
                        job_id: job.clone(),
                        nranks: c.nranks,
                        ranks: 0,
                        instances: 0,
                        times_last: 0,
                        lateness_sum_ns: 0,
                        caused_stall_ns: 0,
                        first_ns: c.start_ns,
                        last_ns: c.end_ns,
                    },
                    BTreeSet::new(),
                    0,
                )
            });
        ranks.insert(c.rank);
        *rows += 1;
        n.job_id = n.job_id.clone().max(job);
        n.nranks = n.nranks.max(c.nranks);
        n.ranks = ranks.len() as i64;
        // Every instance holds each of the node's ranks once.
        n.instances = *rows / n.ranks.max(1);
        n.times_last += i64::from(c.is_last);
        n.lateness_sum_ns += if c.is_last { c.node_lateness_ns.unwrap_or(0) } else { 0 };
        n.caused_stall_ns += c.node_caused_stall_ns.unwrap_or(0);
        n.first_ns = n.first_ns.min(c.start_ns);
        n.last_ns = n.last_ns.max(c.end_ns);
    }

    pub fn ranks(&self) -> impl Iterator<Item = &RankStat> {
        self.ranks.values()
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeStat> {
        self.nodes.values().map(|(n, _, _)| n)
    }
}

/// GPU time for a sentence: ms below a second, else GPU-s or GPU-h.
fn gpu_time_words(ns: i64) -> String {
    let s = ns as f64 * 1e-9;
    if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else if s < 3600.0 {
        format!("{s:.1} GPU-s")
    } else {
        format!("{:.2} GPU-h", s / 3600.0)
    }
}

fn comm_label(hash: i64, name: &Option<Arc<str>>) -> String {
    match name {
        Some(n) => format!("process group {n:?}"),
        None => format!("communicator {hash:#018x}"),
    }
}

/// straggler: a rank that arrives last in a large share of its
/// communicator's collectives, with its mean lateness and the stall it
/// caused on its peers (from `collective_stalls`).
pub fn stragglers(s: &Stragglers, powered: Option<&HashMap<super::GpuOf, i64>>, th: &Thresholds) -> Vec<Draft> {
    let mut out = Vec::new();
    for r in s.ranks() {
        let n = r.nranks.max(1) as f64;
        let instances = r.instances.max(0) as u64;
        if instances < th.straggler_min_instances || r.nranks < 2 {
            continue;
        }
        let share = r.times_last as f64 / instances as f64;
        let chance = 1.0 / n;
        let sd = (chance * (1.0 - chance) / instances as f64).sqrt();
        let late = r.mean_lateness_ns();
        if share < th.straggler_min_share
            || share < chance + th.straggler_z * sd
            || late < th.straggler_min_lateness_ns as f64
        {
            continue;
        }
        let caused_s = r.caused_stall_ns as f64 * 1e-9;
        // The peers' GPU time, where the door knows it: how much of it the wait took.
        let peers_powered: Option<i64> = powered.map(|p| {
            s.ranks()
                .filter(|x| x.cluster == r.cluster && x.comm_hash == r.comm_hash && x.rank != r.rank)
                .filter_map(|x| Some(*p.get(&(x.cluster.clone(), x.node.clone(), x.gpu_index?))?))
                .sum()
        });
        let peer_share = peers_powered.filter(|p| *p > 0).map(|p| r.caused_stall_ns as f64 / p as f64);
        let severity =
            if share >= 0.9 && late >= 10.0 * th.straggler_min_lateness_ns as f64 { "critical" } else { "warning" };
        let scope = Scope {
            cluster: r.cluster.clone(),
            node: Some(r.node.clone()),
            job_id: r.job_id.as_deref().map(str::to_string),
            comm_hash: Some(r.comm_hash),
            rank: Some(r.rank),
            ..Scope::default()
        };
        out.push(Draft {
            code: "ai.01",
            kind: "straggler",
            scope_kind: "communicator",
            scope,
            start_ns: r.first_ns,
            end_ns: r.last_ns,
            severity,
            summary: format!(
                "Rank {} (node {}, GPU {}) arrived last in {:.0}% of {} collectives of {}, {:.2} ms late on average; its peers waited {} for it{}.",
                r.rank,
                r.node,
                r.gpu_index.map_or("?".into(), |g| g.to_string()),
                share * 100.0,
                instances,
                comm_label(r.comm_hash, &r.comm_name),
                late / 1e6,
                gpu_time_words(r.caused_stall_ns),
                peer_share.map_or(String::new(), |p| format!(", {:.1}% of their GPU time", p * 100.0))
            ),
            figures: json!({
                "peers_gpu_time_share": peer_share,
                "instances": instances, "times_last": r.times_last, "last_share": share, "chance_share": chance,
                "mean_lateness_ms": ms(late), "caused_stall_gpu_s": secs(r.caused_stall_ns as f64),
                "own_stall_gpu_s": secs(r.suffered_stall_ns as f64), "nranks": r.nranks, "gpu_index": r.gpu_index,
                "comm_name": r.comm_name.as_deref(),
            }),
            evidence: json!({
                "query": format!(
                    "SELECT seq, rank, node, start_ns, last_start_ns, stall_ns, is_last, lateness_ns, caused_stall_ns \
                     FROM collective_stalls WHERE comm_hash = {} ORDER BY seq, rank", r.comm_hash),
                "source": "collective_stalls (exact, matched across ranks and nodes)",
            }),
            gpu_seconds: Some(caused_s),
        });
    }
    out
}

/// straggler at node scope: a node whose ranks arrive last in a large share
/// of a multi-node communicator's collectives (a slow node makes one of its
/// own ranks last by a hair, so the rank-level test misses it). Chance is
/// the node's share of the ranks. Not raised where a single rank of that
/// node is already named.
pub fn node_stragglers(s: &Stragglers, ranks: &[Draft], th: &Thresholds) -> Vec<Draft> {
    let mut out = Vec::new();
    for n in s.nodes() {
        let instances = n.instances.max(0) as u64;
        if instances < th.straggler_min_instances || n.ranks >= i64::from(n.nranks) {
            continue; // too few instances, or the communicator lives on this node alone
        }
        if ranks.iter().any(|d| d.scope.comm_hash == Some(n.comm_hash) && d.scope.node.as_deref() == Some(&*n.node)) {
            continue;
        }
        let share = n.times_last as f64 / instances as f64;
        let chance = n.ranks as f64 / f64::from(n.nranks);
        let sd = (chance * (1.0 - chance) / instances as f64).sqrt();
        let late = n.mean_lateness_ns();
        if share < th.straggler_min_share
            || share < chance + th.straggler_z * sd
            || late < th.straggler_min_lateness_ns as f64
        {
            continue;
        }
        let caused_s = n.caused_stall_ns as f64 * 1e-9;
        out.push(Draft {
            code: "ai.01",
            kind: "straggler",
            scope_kind: "communicator",
            scope: Scope {
                cluster: n.cluster.clone(),
                node: Some(n.node.clone()),
                job_id: n.job_id.as_deref().map(str::to_string),
                comm_hash: Some(n.comm_hash),
                detail: Some("node".into()),
                ..Scope::default()
            },
            start_ns: n.first_ns,
            end_ns: n.last_ns,
            severity: if share >= 0.9 && late >= 10.0 * th.straggler_min_lateness_ns as f64 { "critical" } else { "warning" },
            summary: format!(
                "Node {} ({} of {} ranks) holds the last rank in {:.0}% of {} collectives of {}, {:.2} ms after the other nodes on average; their ranks waited {} for it.",
                n.node,
                n.ranks,
                n.nranks,
                share * 100.0,
                instances,
                comm_label(n.comm_hash, &n.comm_name),
                late / 1e6,
                gpu_time_words(n.caused_stall_ns)
            ),
            figures: json!({
                "instances": instances, "times_last": n.times_last, "last_share": share, "chance_share": chance,
                "mean_lateness_ms": ms(late), "caused_stall_gpu_s": secs(n.caused_stall_ns as f64), "ranks_on_node": n.ranks, "nranks": n.nranks,
            }),
            evidence: json!({
                "query": format!(
                    "SELECT seq, rank, node, start_ns, last_start_ns, stall_ns, is_last, node_lateness_ns, node_caused_stall_ns \
                     FROM collective_stalls WHERE comm_hash = {} ORDER BY seq, rank", n.comm_hash),
                "source": "collective_stalls (exact, matched across ranks and nodes)",
            }),
            gpu_seconds: Some(caused_s),
        });
    }
    out
}

/// One communicator × bucket × (operation, nranks, size class) of `bus_bandwidth.sql`.
#[derive(Debug, Clone, PartialEq)]
pub struct BusUnit {
    pub cluster: Arc<str>,
    pub comm_hash: i64,
    pub op: Arc<str>,
    pub nranks: i64,
    pub size_class: i64,
    pub job_id: Option<Arc<str>>,
    pub samples: i64,
    pub median_bus_bw: Option<f64>,
    pub transfer_ns: Option<i64>,
    pub first_ns: i64,
    pub last_ns: i64,
}

/// bus_bandwidth_collapse: a communicator whose achieved bus bandwidth for
/// an (operation, nranks, size class) is well below the fleet's own
/// baseline for that class (median over all units of the class in the
/// cluster; a unit = communicator × time bucket).
pub fn bus_bandwidth(units: &[BusUnit], th: &Thresholds) -> Vec<Draft> {
    type Class = (Arc<str>, Arc<str>, i64, i64);
    let mut classes: HashMap<Class, Vec<f64>> = HashMap::new();
    for u in units {
        if let Some(b) = u.median_bus_bw.filter(|_| u.samples.max(0) as u64 >= th.bw_min_samples) {
            classes.entry((u.cluster.clone(), u.op.clone(), u.nranks, u.size_class)).or_default().push(b);
        }
    }
    let baseline: HashMap<Class, (f64, usize)> = classes
        .into_iter()
        .filter(|(_, v)| v.len() >= th.bw_min_units)
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            let m = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
            (k, (m, v.len()))
        })
        .collect();
    // Flagged units, merged per communicator, operation and size class.
    #[derive(Default)]
    struct Acc {
        units: usize,
        flagged: usize,
        ratios: Vec<f64>,
        bw: Vec<f64>,
        excess_ns: f64,
        first: i64,
        last: i64,
        job: Option<String>,
        base: f64,
        class_units: usize,
    }
    let mut acc: BTreeMap<BwUnit, Acc> = BTreeMap::new();
    for u in units {
        let class = (u.cluster.clone(), u.op.clone(), u.nranks, u.size_class);
        let (Some(&(base, n)), Some(b)) = (baseline.get(&class), u.median_bus_bw) else { continue };
        if (u.samples.max(0) as u64) < th.bw_min_samples || base <= 0.0 {
            continue;
        }
        let a = acc
            .entry((u.cluster.clone(), u.comm_hash, u.op.clone(), u.nranks, u.size_class))
            .or_insert_with(|| Acc { first: i64::MAX, last: i64::MIN, ..Acc::default() });
        a.units += 1;
        a.base = base;
        a.class_units = n;
        let ratio = b / base;
        if ratio < th.bw_collapse_ratio {
            a.flagged += 1;
            a.ratios.push(ratio);
            a.bw.push(b);
            a.excess_ns += u.transfer_ns.unwrap_or(0) as f64 * (1.0 - ratio);
            a.first = a.first.min(u.first_ns);
            a.last = a.last.max(u.last_ns);
            a.job = u.job_id.as_deref().map(str::to_string);
        }
    }
    let mut out = Vec::new();
    for ((cluster, hash, op, nranks, size), a) in acc {
        if a.flagged == 0 {
            continue;
        }
        let ratio = a.ratios.iter().sum::<f64>() / a.ratios.len() as f64;
        let achieved = a.bw.iter().sum::<f64>() / a.bw.len() as f64;
        let severity = if ratio < th.bw_collapse_ratio / 2.0 { "critical" } else { "warning" };
        out.push(Draft {
            code: "ai.01",
            kind: "bus_bandwidth_collapse",
            scope_kind: "communicator",
            scope: Scope { cluster: cluster.clone(), job_id: a.job.clone(), comm_hash: Some(hash), detail: Some(format!("{op}/{nranks}/{size}")), ..Scope::default() },
            start_ns: a.first,
            end_ns: a.last,
            severity,
            summary: format!(
                "{op} of {}–{} bytes on {nranks} ranks (communicator {hash:#018x}) reaches {:.1} GB/s bus bandwidth, {:.0}% of the fleet's {:.1} GB/s for that class, in {} of {} time buckets.",
                1u64 << size,
                (1u64 << (size + 1)) - 1,
                achieved / 1e9,
                ratio * 100.0,
                a.base / 1e9,
                a.flagged,
                a.units
            ),
            figures: json!({
                "op": op.as_ref(), "nranks": nranks, "size_class": size, "achieved_bus_bw_gbps": achieved / 1e9,
                "baseline_bus_bw_gbps": a.base / 1e9, "ratio": ratio, "buckets_flagged": a.flagged, "buckets": a.units,
                "baseline_units": a.class_units, "excess_transfer_gpu_s": secs(a.excess_ns),
            }),
            evidence: json!({
                "query": format!(
                    "SELECT start_ns, rank, node, bytes, transfer_ns, bus_bw_bytes_per_s FROM collective_stalls \
                     WHERE comm_hash = {hash} AND op = {} AND size_class = {size} AND time_source = 'kernel' ORDER BY start_ns",
                    sql_str(&op)),
                "baseline": "median over the cluster's communicator×bucket units of the same operation, nranks and size class",
            }),
            gpu_seconds: Some(a.excess_ns * 1e-9),
        });
    }
    out
}

/// Increase of a counter between the first and the last sample (a counter
/// that went down was reset: its last value is the increase since).
fn increase(first: Option<i64>, last: Option<i64>) -> Option<i64> {
    let (a, b) = (first?, last?);
    Some(if b >= a { b - a } else { b })
}

/// The first and the last sample in the range of one GPU's link counters (`gpu_link_counters.sql`).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuCounters {
    pub cluster: Arc<str>,
    pub node: Arc<str>,
    pub gpu_uuid: Arc<str>,
    pub gpu_index: Option<i64>,
    pub job_id: Option<Arc<str>>,
    pub ts_ns: i64,
    pub pcie_replay_total: Option<i64>,
    pub nvlink_crc_errors_total: Option<Vec<i64>>,
    pub nvlink_replay_errors_total: Option<Vec<i64>>,
    pub nvlink_recovery_errors_total: Option<Vec<i64>>,
}

/// The first and the last sample of one InfiniBand port's counters (`nic_counters.sql`).
#[derive(Debug, Clone, PartialEq)]
pub struct NicCounters {
    pub cluster: Arc<str>,
    pub node: Arc<str>,
    pub device: Arc<str>,
    pub port: i64,
    pub ts_ns: i64,
    pub symbol_error_total: Option<i64>,
    pub link_downed_total: Option<i64>,
    pub link_error_recovery_total: Option<i64>,
    pub port_rcv_errors_total: Option<i64>,
    pub port_xmit_discards_total: Option<i64>,
    pub port_xmit_wait_total: Option<i64>,
}

/// link_errors: NVLink CRC/replay/recovery, PCIe replay and InfiniBand port
/// error counters that increased over the range; `port_xmit_wait` when its
/// rate is far above the fleet's median port.
pub fn link_errors(gpu: &[GpuCounters], nic: &[NicCounters], th: &Thresholds) -> Vec<Draft> {
    let mut out = Vec::new();
    let mut by_gpu: BTreeMap<GpuId, Vec<&GpuCounters>> = BTreeMap::new();
    for g in gpu {
        by_gpu.entry((g.cluster.clone(), g.node.clone(), g.gpu_uuid.clone())).or_default().push(g);
    }
    for ((cluster, node, uuid), mut rows) in by_gpu {
        rows.sort_by_key(|g| g.ts_ns);
        let (a, b) = (rows[0], rows[rows.len() - 1]);
        let mut counters = serde_json::Map::new();
        let mut total = 0i64;
        let mut critical = false;
        if let Some(d) = increase(a.pcie_replay_total, b.pcie_replay_total).filter(|d| *d >= th.link_error_min_increase)
        {
            counters.insert("pcie_replay".into(), json!(d));
            total += d;
        }
        type PerLink = fn(&GpuCounters) -> &Option<Vec<i64>>;
        let lists: [(&str, PerLink); 3] = [
            ("nvlink_crc_errors", |g| &g.nvlink_crc_errors_total),
            ("nvlink_replay_errors", |g| &g.nvlink_replay_errors_total),
            ("nvlink_recovery_errors", |g| &g.nvlink_recovery_errors_total),
        ];
        for (name, get) in lists {
            let (Some(x), Some(y)) = (get(a), get(b)) else { continue };
            for (link, &last) in y.iter().enumerate() {
                let d = increase(x.get(link).copied(), Some(last)).unwrap_or(0);
                if d >= th.link_error_min_increase {
                    counters.insert(format!("{name}[link {link}]"), json!(d));
                    total += d;
                    critical |= name == "nvlink_recovery_errors";
                }
            }
        }
        if counters.is_empty() {
            continue;
        }
        let hours = ((b.ts_ns - a.ts_ns) as f64 / 3.6e12).max(1.0 / 60.0);
        critical |= total as f64 / hours >= 100.0;
        out.push(Draft {
            code: "ai.01",
            kind: "link_errors",
            scope_kind: "gpu",
            scope: Scope { cluster: cluster.clone(), node: Some(node.clone()), gpu_uuid: Some(uuid.clone()), job_id: b.job_id.as_deref().map(str::to_string), ..Scope::default() },
            start_ns: a.ts_ns,
            end_ns: b.ts_ns,
            severity: if critical { "critical" } else { "warning" },
            summary: format!(
                "GPU {} on {node}: link error counters rose by {total} ({}) over {:.1} h.",
                b.gpu_index.map_or("?".into(), |g| g.to_string()),
                counters.keys().cloned().collect::<Vec<_>>().join(", "),
                hours
            ),
            figures: json!({ "increase": counters, "total": total, "per_hour": total as f64 / hours, "gpu_index": b.gpu_index }),
            evidence: json!({
                "query": format!(
                    "SELECT ts_ns, pcie_replay_total, nvlink_crc_errors_total, nvlink_replay_errors_total, nvlink_recovery_errors_total \
                     FROM gpu_samples WHERE node = {} AND gpu_uuid = {} ORDER BY ts_ns", sql_str(&node), sql_str(&uuid)),
                "first_sample_ns": a.ts_ns, "last_sample_ns": b.ts_ns,
            }),
            gpu_seconds: None,
        });
    }
    // NICs.
    let mut by_port: BTreeMap<PortId, Vec<&NicCounters>> = BTreeMap::new();
    for n in nic {
        by_port.entry((n.cluster.clone(), n.node.clone(), n.device.clone(), n.port)).or_default().push(n);
    }
    type Counter = fn(&NicCounters) -> Option<i64>;
    let errs: [(&str, Counter); 5] = [
        ("symbol_error", |n| n.symbol_error_total),
        ("link_downed", |n| n.link_downed_total),
        ("link_error_recovery", |n| n.link_error_recovery_total),
        ("port_rcv_errors", |n| n.port_rcv_errors_total),
        ("port_xmit_discards", |n| n.port_xmit_discards_total),
    ];
    let mut wait_rates: Vec<(f64, PortId, i64, i64)> = Vec::new();
    for (key, mut rows) in by_port {
        rows.sort_by_key(|n| n.ts_ns);
        let (a, b) = (rows[0], rows[rows.len() - 1]);
        let secs_span = (b.ts_ns - a.ts_ns) as f64 * 1e-9;
        if secs_span > 0.0
            && let Some(d) = increase(a.port_xmit_wait_total, b.port_xmit_wait_total)
        {
            wait_rates.push((d as f64 / secs_span, key.clone(), a.ts_ns, b.ts_ns));
        }
        let mut counters = serde_json::Map::new();
        let mut total = 0;
        let mut critical = false;
        for (name, get) in errs {
            if let Some(d) = increase(get(a), get(b)).filter(|d| *d >= th.link_error_min_increase) {
                counters.insert(name.into(), json!(d));
                total += d;
                critical |= matches!(name, "link_downed" | "link_error_recovery");
            }
        }
        if counters.is_empty() {
            continue;
        }
        out.push(nic_draft(&key, a.ts_ns, b.ts_ns, counters, total, critical));
    }
    // Congestion: a port waiting for credits far more than the fleet's median port.
    if wait_rates.len() >= 4 {
        let mut rates: Vec<f64> = wait_rates.iter().map(|w| w.0).collect();
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        for (rate, key, t0, t1) in &wait_rates {
            if median > 0.0 && *rate > th.xmit_wait_ratio * median {
                let mut counters = serde_json::Map::new();
                counters.insert("port_xmit_wait_per_s".into(), json!(rate));
                counters.insert("fleet_median_port_xmit_wait_per_s".into(), json!(median));
                out.push(nic_draft(key, *t0, *t1, counters, 0, false));
            }
        }
    }
    out
}

fn nic_draft(
    key: &PortId,
    t0: i64,
    t1: i64,
    counters: serde_json::Map<String, serde_json::Value>,
    total: i64,
    critical: bool,
) -> Draft {
    let (cluster, node, dev, port) = key;
    let what = counters.keys().cloned().collect::<Vec<_>>().join(", ");
    Draft {
        code: "ai.01",
        kind: "link_errors",
        scope_kind: "node",
        scope: Scope {
            cluster: cluster.clone(),
            node: Some(node.clone()),
            detail: Some(format!("{dev}/{port}/{what}")),
            ..Scope::default()
        },
        start_ns: t0,
        end_ns: t1,
        severity: if critical { "critical" } else { "warning" },
        summary: if total > 0 {
            format!("InfiniBand port {dev}/{port} on {node}: error counters rose by {total} ({what}).")
        } else {
            format!(
                "InfiniBand port {dev}/{port} on {node} waits for credits (port_xmit_wait) far more than the fleet's median port."
            )
        },
        figures: json!({ "device": dev.as_ref(), "port": port, "counters": counters, "total": total }),
        evidence: json!({
            "query": format!(
                "SELECT ts_ns, symbol_error_total, link_downed_total, link_error_recovery_total, port_rcv_errors_total, port_xmit_wait_total \
                 FROM nic_samples WHERE node = {} AND device = {} AND port = {port} ORDER BY ts_ns", sql_str(node), sql_str(dev)),
        }),
        gpu_seconds: None,
    }
}

/// exposed_communication: communication not hidden under compute above a
/// share of the job's GPU time with kernel records.
pub fn exposed_comm(jobs: &[JobTime], th: &Thresholds) -> Vec<Draft> {
    let mut out = Vec::new();
    for j in jobs {
        let measured = j.time.int("kernels_ns") as f64;
        if measured * 1e-9 < th.min_job_gpu_seconds {
            continue; // not enough time with kernel records to judge
        }
        let exposed = j.time.int("comm_exposed_ns") as f64;
        let stall = j.time.int("sync_stall_ns") as f64;
        let share = exposed / measured;
        if share < th.exposed_comm_share {
            continue;
        }
        let stall_share = if exposed > 0.0 { stall / exposed } else { 0.0 };
        out.push(Draft {
            code: "ai.01",
            kind: "exposed_communication",
            scope_kind: "job",
            scope: Scope { cluster: j.cluster.clone(), job_id: Some(j.job_id.clone()), ..Scope::default() },
            start_ns: j.first_ns,
            end_ns: j.last_ns,
            severity: if share >= 2.0 * th.exposed_comm_share { "critical" } else { "warning" },
            summary: format!(
                "Job {} spends {:.0}% of its GPU time in communication not overlapped by compute ({:.0}% of it waiting for the last rank).",
                j.job_id,
                share * 100.0,
                stall_share * 100.0
            ),
            figures: json!({
                "exposed_share": share, "comm_exposed_gpu_s": secs(exposed), "sync_stall_gpu_s": secs(stall),
                "stall_share_of_exposed": stall_share, "kernel_records_gpu_s": secs(measured), "gpus": j.gpus,
            }),
            evidence: json!({
                "query": format!(
                    "SELECT node, gpu_index, sum(comm_exposed_ns), sum(sync_stall_ns), sum(end_ns - start_ns) FROM windows \
                     WHERE job_id = {} AND split_source = 'kernels' GROUP BY node, gpu_index", sql_str(&j.job_id)),
                "source": "windows (kernel records)",
            }),
            gpu_seconds: Some(exposed * 1e-9),
        });
    }
    out
}

/// The result of the FGD computation.
#[derive(Debug, Default)]
pub struct Topology {
    pub drafts: Vec<Draft>,
    /// Unallocatable GPU-seconds per (cluster, node, trend bucket).
    pub per_node: HashMap<(Arc<str>, Arc<str>, i64), f64>,
    /// P(job shape = d GPUs per node), from the data.
    pub shapes: BTreeMap<i64, f64>,
}

/// GPUs and GPUs held by a job on one node per allocation bucket (`node_allocation.sql`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAlloc {
    pub cluster: Arc<str>,
    pub node: Arc<str>,
    pub bucket_ns: i64,
    pub gpus: i64,
    pub held: i64,
}

/// What topology_stranded reads.
pub struct TopologyInput<'a> {
    pub alloc: &'a [NodeAlloc],
    /// GPUs a job takes on one node, one entry per (job, node) (`job_shapes.sql`).
    pub shapes: &'a [i64],
    pub alloc_ns: i64,
    /// The report's trend bucket.
    pub bucket_ns: i64,
    /// Powered GPU-seconds per cluster.
    pub powered: &'a HashMap<Arc<str>, f64>,
}

/// topology_stranded: free GPUs on partly used nodes that the workload's job
/// shapes cannot use. FGD (Weng et al., ATC'23): the fragmentation of a node
/// with `f` free GPUs is the expected number of its free GPUs unusable by a
/// job drawn from the shape distribution, `f · P(d > f)`, with `d` the GPUs a
/// job takes on one node, counted over (job, node) pairs in the data.
pub fn topology(input: &TopologyInput, th: &Thresholds) -> Topology {
    let mut t = Topology::default();
    let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
    for d in input.shapes {
        *counts.entry(*d).or_default() += 1;
    }
    let total: u64 = counts.values().sum();
    if total == 0 {
        return t;
    }
    t.shapes = counts.iter().map(|(d, c)| (*d, *c as f64 / total as f64)).collect();
    let p_larger = |f: i64| t.shapes.iter().filter(|(d, _)| **d > f).map(|(_, p)| p).sum::<f64>();
    let (alloc_ns, bucket_ns) = (input.alloc_ns, input.bucket_ns.max(1));
    let mut span: HashMap<Arc<str>, (i64, i64)> = HashMap::new();
    for a in input.alloc {
        let free = a.gpus - a.held;
        if a.held == 0 || free <= 0 {
            continue; // only partly used nodes
        }
        let stranded = free as f64 * p_larger(free) * alloc_ns as f64 * 1e-9;
        if stranded > 0.0 {
            *t.per_node
                .entry((a.cluster.clone(), a.node.clone(), a.bucket_ns - a.bucket_ns.rem_euclid(bucket_ns)))
                .or_default() += stranded;
            let s = span.entry(a.cluster.clone()).or_insert((i64::MAX, i64::MIN));
            s.0 = s.0.min(a.bucket_ns);
            s.1 = s.1.max(a.bucket_ns + alloc_ns);
        }
    }
    let powered = input.powered;
    let mut per_cluster: BTreeMap<Arc<str>, BTreeMap<Arc<str>, f64>> = BTreeMap::new();
    for ((c, n, _), s) in &t.per_node {
        *per_cluster.entry(c.clone()).or_default().entry(n.clone()).or_default() += *s;
    }
    for (c, nodes) in per_cluster {
        let mut nodes: Vec<(Arc<str>, f64)> = nodes.into_iter().collect();
        let gpu_s: f64 = nodes.iter().map(|n| n.1).sum();
        let powered_s = powered.get(&c).copied().unwrap_or(0.0);
        let share = if powered_s > 0.0 { gpu_s / powered_s } else { 1.0 };
        if gpu_s / 3600.0 < th.topology_min_gpu_hours || share < th.topology_min_share {
            continue;
        }
        nodes.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<_> =
            nodes.iter().take(10).map(|(n, s)| json!({"node": n.as_ref(), "gpu_hours": s / 3600.0})).collect();
        let (t0, t1) = span[&c];
        t.drafts.push(Draft {
            code: "ai.01",
            kind: "topology_stranded",
            scope_kind: "cluster",
            scope: Scope::cluster(&c),
            start_ns: t0,
            end_ns: t1,
            severity: if share >= 5.0 * th.topology_min_share { "critical" } else { "warning" },
            summary: format!(
                "{:.1} GPU-hours ({:.1}% of powered) on {} partly used nodes of {c} were free but too few for the jobs this fleet runs.",
                gpu_s / 3600.0,
                share * 100.0,
                nodes.len()
            ),
            figures: json!({
                "unallocatable_gpu_hours": gpu_s / 3600.0, "share_of_powered": share, "nodes": nodes.len(),
                "job_shapes_gpus_per_node": t.shapes.iter().map(|(d, p)| (d.to_string(), json!(p))).collect::<serde_json::Map<_, _>>(),
                "top_nodes": top,
            }),
            evidence: json!({
                "query": "SELECT node, ts_ns, gpu_index, job_id FROM gpu_samples WHERE node = '<node>' ORDER BY ts_ns",
                "method": "FGD: per node and bucket, free GPUs × P(job shape > free GPUs), shapes = GPUs per (job, node) in gpu_samples",
            }),
            gpu_seconds: Some(gpu_s),
        });
    }
    t
}
