//! ai.01 — interconnect stability (DESIGN §3): straggler, bus-bandwidth
//! collapse, link errors, exposed communication, topology-stranded capacity.
//! Definitions and thresholds: docs/findings.md.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::json;

use super::findings::{Draft, Scope, Thresholds, ms, secs, sql_str};
use super::sql::Rows;

/// (cluster, node, GPU UUID)
type GpuId = (Arc<str>, Arc<str>, Arc<str>);
/// (cluster, node, device, port)
type PortId = (Arc<str>, Arc<str>, Arc<str>, i64);
/// (cluster, commHash, operation, nranks, size class)
type BwUnit = (Arc<str>, i64, Arc<str>, i64, i64);

/// straggler: a rank that arrives last in a large share of its
/// communicator's collectives, with its median lateness and the stall it
/// caused on its peers (from `collective_stalls`).
pub fn stragglers(rows: &Rows, th: &Thresholds) -> anyhow::Result<Vec<Draft>> {
    let (cluster, hash, rank, node) = (rows.str_req("cluster")?, rows.i64_req("comm_hash")?, rows.i64_req("rank")?, rows.str_req("node")?);
    let (gpu, job, nranks, inst) = (rows.i64("gpu_index")?, rows.str("job_id")?, rows.i64_req("nranks")?, rows.i64_req("instances")?);
    let (last, lateness, caused, suffered) =
        (rows.i64_req("times_last")?, rows.f64("median_lateness_ns")?, rows.i64_req("caused_stall_ns")?, rows.i64_req("suffered_stall_ns")?);
    let (first, end) = (rows.i64_req("first_ns")?, rows.i64_req("last_ns")?);
    let mut out = Vec::new();
    for i in 0..rows.len() {
        let n = nranks[i].max(1) as f64;
        let instances = inst[i] as u64;
        if instances < th.straggler_min_instances || nranks[i] < 2 {
            continue;
        }
        let share = last[i] as f64 / instances as f64;
        let chance = 1.0 / n;
        let sd = (chance * (1.0 - chance) / instances as f64).sqrt();
        let late = lateness[i].unwrap_or(0.0);
        if share < th.straggler_min_share || share < chance + th.straggler_z * sd || late < th.straggler_min_lateness_ns as f64 {
            continue;
        }
        let caused_s = caused[i] as f64 * 1e-9;
        let severity = if share >= 0.9 && late >= 10.0 * th.straggler_min_lateness_ns as f64 { "critical" } else { "warning" };
        let scope = Scope {
            cluster: cluster[i].clone(),
            node: Some(node[i].clone()),
            job_id: job[i].as_deref().map(str::to_string),
            comm_hash: Some(hash[i]),
            rank: Some(rank[i] as i32),
            ..Scope::default()
        };
        out.push(Draft {
            code: "ai.01",
            kind: "straggler",
            scope_kind: "communicator",
            scope,
            start_ns: first[i],
            end_ns: end[i],
            severity,
            summary: format!(
                "Rank {} on {} (GPU {}) arrives last in {:.0}% of {} collectives of communicator {:#018x}, {:.2} ms late at the median, stalling its peers for {:.1} GPU-s.",
                rank[i],
                node[i],
                gpu[i].map_or("?".into(), |g| g.to_string()),
                share * 100.0,
                instances,
                hash[i],
                late / 1e6,
                caused_s
            ),
            figures: json!({
                "instances": instances, "times_last": last[i], "last_share": share, "chance_share": chance,
                "median_lateness_ms": ms(late), "caused_stall_gpu_s": secs(caused[i] as f64),
                "own_stall_gpu_s": secs(suffered[i] as f64), "nranks": nranks[i], "gpu_index": gpu[i],
            }),
            evidence: json!({
                "query": format!(
                    "SELECT seq, rank, node, start_ns, last_start_ns, stall_ns, is_last, lateness_ns, caused_stall_ns \
                     FROM collective_stalls WHERE comm_hash = {} ORDER BY seq, rank", hash[i]),
                "source": "collective_stalls (exact, matched across nodes)",
            }),
            gpu_seconds: Some(caused_s),
        });
    }
    Ok(out)
}

/// straggler at node scope: a node whose ranks arrive last in a large share
/// of a multi-node communicator's collectives (a slow node makes one of its
/// own ranks last by a hair, so the rank-level test misses it). Chance is
/// the node's share of the ranks. Not raised where a single rank of that
/// node is already named.
pub fn node_stragglers(rows: &Rows, ranks: &[Draft], th: &Thresholds) -> anyhow::Result<Vec<Draft>> {
    let (cluster, hash, node, job) = (rows.str_req("cluster")?, rows.i64_req("comm_hash")?, rows.str_req("node")?, rows.str("job_id")?);
    let (nranks, on_node, inst, last) = (rows.i64_req("nranks")?, rows.i64_req("ranks")?, rows.i64_req("instances")?, rows.i64_req("times_last")?);
    let (lateness, caused, first, end) = (rows.f64("median_lateness_ns")?, rows.i64_req("caused_stall_ns")?, rows.i64_req("first_ns")?, rows.i64_req("last_ns")?);
    let mut out = Vec::new();
    for i in 0..rows.len() {
        let instances = inst[i] as u64;
        if instances < th.straggler_min_instances || on_node[i] >= nranks[i] {
            continue; // too few instances, or the communicator lives on this node alone
        }
        if ranks.iter().any(|d| d.scope.comm_hash == Some(hash[i]) && d.scope.node.as_deref() == Some(&*node[i])) {
            continue;
        }
        let share = last[i] as f64 / instances as f64;
        let chance = on_node[i] as f64 / nranks[i] as f64;
        let sd = (chance * (1.0 - chance) / instances as f64).sqrt();
        let late = lateness[i].unwrap_or(0.0);
        if share < th.straggler_min_share || share < chance + th.straggler_z * sd || late < th.straggler_min_lateness_ns as f64 {
            continue;
        }
        let caused_s = caused[i] as f64 * 1e-9;
        out.push(Draft {
            code: "ai.01",
            kind: "straggler",
            scope_kind: "communicator",
            scope: Scope {
                cluster: cluster[i].clone(),
                node: Some(node[i].clone()),
                job_id: job[i].as_deref().map(str::to_string),
                comm_hash: Some(hash[i]),
                detail: Some("node".into()),
                ..Scope::default()
            },
            start_ns: first[i],
            end_ns: end[i],
            severity: if share >= 0.9 && late >= 10.0 * th.straggler_min_lateness_ns as f64 { "critical" } else { "warning" },
            summary: format!(
                "Node {} ({} of {} ranks) holds the last rank in {:.0}% of {} collectives of communicator {:#018x}, {:.2} ms after the other nodes at the median, stalling their ranks for {:.1} GPU-s.",
                node[i],
                on_node[i],
                nranks[i],
                share * 100.0,
                instances,
                hash[i],
                late / 1e6,
                caused_s
            ),
            figures: json!({
                "instances": instances, "times_last": last[i], "last_share": share, "chance_share": chance,
                "median_lateness_ms": ms(late), "caused_stall_gpu_s": secs(caused[i] as f64), "ranks_on_node": on_node[i], "nranks": nranks[i],
            }),
            evidence: json!({
                "query": format!(
                    "SELECT seq, rank, node, start_ns, last_start_ns, stall_ns, is_last, node_lateness_ns, node_caused_stall_ns \
                     FROM collective_stalls WHERE comm_hash = {} ORDER BY seq, rank", hash[i]),
                "source": "collective_stalls (exact, matched across nodes)",
            }),
            gpu_seconds: Some(caused_s),
        });
    }
    Ok(out)
}

/// bus_bandwidth_collapse: a communicator whose achieved bus bandwidth for
/// an (operation, nranks, size class) is well below the fleet's own
/// baseline for that class (median over all units of the class in the
/// cluster; a unit = communicator × time bucket).
pub fn bus_bandwidth(rows: &Rows, th: &Thresholds) -> anyhow::Result<Vec<Draft>> {
    let (cluster, hash, op, nranks) = (rows.str_req("cluster")?, rows.i64_req("comm_hash")?, rows.str_req("op")?, rows.i64_req("nranks")?);
    let (size, samples, bw) = (rows.i64_req("size_class")?, rows.i64_req("samples")?, rows.f64("median_bus_bw")?);
    let (job, transfer, first, last) = (rows.str("job_id")?, rows.i64("transfer_ns")?, rows.i64_req("first_ns")?, rows.i64_req("last_ns")?);
    type Class = (Arc<str>, Arc<str>, i64, i64);
    let mut classes: HashMap<Class, Vec<f64>> = HashMap::new();
    for i in 0..rows.len() {
        if let Some(b) = bw[i].filter(|_| samples[i] as u64 >= th.bw_min_samples) {
            classes.entry((cluster[i].clone(), op[i].clone(), nranks[i], size[i])).or_default().push(b);
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
    for i in 0..rows.len() {
        let class = (cluster[i].clone(), op[i].clone(), nranks[i], size[i]);
        let (Some(&(base, n)), Some(b)) = (baseline.get(&class), bw[i]) else { continue };
        if (samples[i] as u64) < th.bw_min_samples || base <= 0.0 {
            continue;
        }
        let a = acc.entry((cluster[i].clone(), hash[i], op[i].clone(), nranks[i], size[i])).or_insert_with(|| Acc {
            first: i64::MAX,
            last: i64::MIN,
            ..Acc::default()
        });
        a.units += 1;
        a.base = base;
        a.class_units = n;
        let ratio = b / base;
        if ratio < th.bw_collapse_ratio {
            a.flagged += 1;
            a.ratios.push(ratio);
            a.bw.push(b);
            a.excess_ns += transfer[i].unwrap_or(0) as f64 * (1.0 - ratio);
            a.first = a.first.min(first[i]);
            a.last = a.last.max(last[i]);
            a.job = job[i].as_deref().map(str::to_string);
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
    Ok(out)
}

/// Increase of a counter between the first and the last sample (a counter
/// that went down was reset: its last value is the increase since).
fn increase(first: Option<i64>, last: Option<i64>) -> Option<i64> {
    let (a, b) = (first?, last?);
    Some(if b >= a { b - a } else { b })
}

/// link_errors: NVLink CRC/replay/recovery, PCIe replay and InfiniBand port
/// error counters that increased over the range; `port_xmit_wait` when its
/// rate is far above the fleet's median port.
pub fn link_errors(gpu: &Rows, nic: &Rows, th: &Thresholds) -> anyhow::Result<Vec<Draft>> {
    let mut out = Vec::new();
    // GPUs: the query gives the first and last sample of each GPU.
    let (cluster, node, uuid, idx, job, ts) =
        (gpu.str_req("cluster")?, gpu.str_req("node")?, gpu.str_req("gpu_uuid")?, gpu.i64("gpu_index")?, gpu.str("job_id")?, gpu.i64_req("ts_ns")?);
    let pcie = gpu.i64("pcie_replay_total")?;
    let lists = [
        ("nvlink_crc_errors", gpu.i64_lists("nvlink_crc_errors_total")?),
        ("nvlink_replay_errors", gpu.i64_lists("nvlink_replay_errors_total")?),
        ("nvlink_recovery_errors", gpu.i64_lists("nvlink_recovery_errors_total")?),
    ];
    let mut by_gpu: BTreeMap<GpuId, Vec<usize>> = BTreeMap::new();
    for i in 0..gpu.len() {
        by_gpu.entry((cluster[i].clone(), node[i].clone(), uuid[i].clone())).or_default().push(i);
    }
    for ((cluster, node, uuid), mut rows) in by_gpu {
        rows.sort_by_key(|&i| ts[i]);
        let (a, b) = (rows[0], rows[rows.len() - 1]);
        let mut counters = serde_json::Map::new();
        let mut total = 0i64;
        let mut critical = false;
        if let Some(d) = increase(pcie[a], pcie[b]).filter(|d| *d >= th.link_error_min_increase) {
            counters.insert("pcie_replay".into(), json!(d));
            total += d;
        }
        for (name, col) in &lists {
            let (Some(x), Some(y)) = (&col[a], &col[b]) else { continue };
            for (link, &last) in y.iter().enumerate() {
                let d = increase(x.get(link).copied(), Some(last)).unwrap_or(0);
                if d >= th.link_error_min_increase {
                    counters.insert(format!("{name}[link {link}]"), json!(d));
                    total += d;
                    critical |= *name == "nvlink_recovery_errors";
                }
            }
        }
        if counters.is_empty() {
            continue;
        }
        let hours = ((ts[b] - ts[a]) as f64 / 3.6e12).max(1.0 / 60.0);
        critical |= total as f64 / hours >= 100.0;
        out.push(Draft {
            code: "ai.01",
            kind: "link_errors",
            scope_kind: "gpu",
            scope: Scope { cluster: cluster.clone(), node: Some(node.clone()), gpu_uuid: Some(uuid.clone()), job_id: job[b].as_deref().map(str::to_string), ..Scope::default() },
            start_ns: ts[a],
            end_ns: ts[b],
            severity: if critical { "critical" } else { "warning" },
            summary: format!(
                "GPU {} on {node}: link error counters rose by {total} ({}) over {:.1} h.",
                idx[b].map_or("?".into(), |g| g.to_string()),
                counters.keys().cloned().collect::<Vec<_>>().join(", "),
                hours
            ),
            figures: json!({ "increase": counters, "total": total, "per_hour": total as f64 / hours, "gpu_index": idx[b] }),
            evidence: json!({
                "query": format!(
                    "SELECT ts_ns, pcie_replay_total, nvlink_crc_errors_total, nvlink_replay_errors_total, nvlink_recovery_errors_total \
                     FROM gpu_samples WHERE node = {} AND gpu_uuid = {} ORDER BY ts_ns", sql_str(&node), sql_str(&uuid)),
                "first_sample_ns": ts[a], "last_sample_ns": ts[b],
            }),
            gpu_seconds: None,
        });
    }
    // NICs.
    let (cluster, node, dev, port, ts) = (nic.str_req("cluster")?, nic.str_req("node")?, nic.str_req("device")?, nic.i64_req("port")?, nic.i64_req("ts_ns")?);
    let errs = [
        ("symbol_error", nic.i64("symbol_error_total")?),
        ("link_downed", nic.i64("link_downed_total")?),
        ("link_error_recovery", nic.i64("link_error_recovery_total")?),
        ("port_rcv_errors", nic.i64("port_rcv_errors_total")?),
        ("port_xmit_discards", nic.i64("port_xmit_discards_total")?),
    ];
    let wait = nic.i64("port_xmit_wait_total")?;
    let mut by_port: BTreeMap<PortId, Vec<usize>> = BTreeMap::new();
    for i in 0..nic.len() {
        by_port.entry((cluster[i].clone(), node[i].clone(), dev[i].clone(), port[i])).or_default().push(i);
    }
    let mut wait_rates: Vec<(f64, PortId, usize, usize)> = Vec::new();
    for (key, mut rows) in by_port {
        rows.sort_by_key(|&i| ts[i]);
        let (a, b) = (rows[0], rows[rows.len() - 1]);
        let secs_span = (ts[b] - ts[a]) as f64 * 1e-9;
        if secs_span > 0.0
            && let Some(d) = increase(wait[a], wait[b])
        {
            wait_rates.push((d as f64 / secs_span, key.clone(), a, b));
        }
        let mut counters = serde_json::Map::new();
        let mut total = 0;
        let mut critical = false;
        for (name, col) in &errs {
            if let Some(d) = increase(col[a], col[b]).filter(|d| *d >= th.link_error_min_increase) {
                counters.insert((*name).into(), json!(d));
                total += d;
                critical |= matches!(*name, "link_downed" | "link_error_recovery");
            }
        }
        if counters.is_empty() {
            continue;
        }
        out.push(nic_draft(&key, ts[a], ts[b], counters, total, critical));
    }
    // Congestion: a port waiting for credits far more than the fleet's median port.
    if wait_rates.len() >= 4 {
        let mut rates: Vec<f64> = wait_rates.iter().map(|w| w.0).collect();
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        for (rate, key, a, b) in &wait_rates {
            if median > 0.0 && *rate > th.xmit_wait_ratio * median {
                let mut counters = serde_json::Map::new();
                counters.insert("port_xmit_wait_per_s".into(), json!(rate));
                counters.insert("fleet_median_port_xmit_wait_per_s".into(), json!(median));
                out.push(nic_draft(key, ts[*a], ts[*b], counters, 0, false));
            }
        }
    }
    Ok(out)
}

fn nic_draft(key: &PortId, t0: i64, t1: i64, counters: serde_json::Map<String, serde_json::Value>, total: i64, critical: bool) -> Draft {
    let (cluster, node, dev, port) = key;
    let what = counters.keys().cloned().collect::<Vec<_>>().join(", ");
    Draft {
        code: "ai.01",
        kind: "link_errors",
        scope_kind: "node",
        scope: Scope { cluster: cluster.clone(), node: Some(node.clone()), detail: Some(format!("{dev}/{port}/{what}")), ..Scope::default() },
        start_ns: t0,
        end_ns: t1,
        severity: if critical { "critical" } else { "warning" },
        summary: if total > 0 {
            format!("InfiniBand port {dev}/{port} on {node}: error counters rose by {total} ({what}).")
        } else {
            format!("InfiniBand port {dev}/{port} on {node} waits for credits (port_xmit_wait) far more than the fleet's median port.")
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

/// A job's communication figures from the report's GPU-time rows.
#[derive(Debug, Clone, Default)]
pub struct JobComm {
    pub cluster: Arc<str>,
    pub job_id: String,
    pub measured_ns: f64,
    pub comm_exposed_ns: f64,
    pub sync_stall_ns: f64,
    pub gpus: usize,
    pub first_ns: i64,
    pub last_ns: i64,
}

/// exposed_communication: communication not hidden under compute above a
/// share of the job's measured GPU time.
pub fn exposed_comm(jobs: &[JobComm], th: &Thresholds) -> Vec<Draft> {
    let mut out = Vec::new();
    for j in jobs {
        if j.measured_ns * 1e-9 < th.min_job_gpu_seconds {
            continue;
        }
        let share = j.comm_exposed_ns / j.measured_ns;
        if share < th.exposed_comm_share {
            continue;
        }
        let stall_share = if j.comm_exposed_ns > 0.0 { j.sync_stall_ns / j.comm_exposed_ns } else { 0.0 };
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
                "exposed_share": share, "comm_exposed_gpu_s": secs(j.comm_exposed_ns), "sync_stall_gpu_s": secs(j.sync_stall_ns),
                "stall_share_of_exposed": stall_share, "measured_gpu_s": secs(j.measured_ns), "gpus": j.gpus,
            }),
            evidence: json!({
                "query": format!(
                    "SELECT node, gpu_index, sum(comm_exposed_ns), sum(sync_stall_ns), sum(end_ns - start_ns) FROM windows \
                     WHERE job_id = {} GROUP BY node, gpu_index", sql_str(&j.job_id)),
            }),
            gpu_seconds: Some(j.comm_exposed_ns * 1e-9),
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

/// topology_stranded: free GPUs on partly used nodes that the workload's job
/// shapes cannot use. FGD (Weng et al., ATC'23): the fragmentation of a node
/// with `f` free GPUs is the expected number of its free GPUs unusable by a
/// job drawn from the shape distribution, `f · P(d > f)`, with `d` the GPUs a
/// job takes on one node, counted over (job, node) pairs in the data.
pub fn topology(alloc: &Rows, shapes: &Rows, alloc_ns: i64, bucket_ns: i64, powered: &HashMap<Arc<str>, f64>, th: &Thresholds) -> anyhow::Result<Topology> {
    let mut t = Topology::default();
    let gpus_per = shapes.i64_req("gpus")?;
    let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
    for d in gpus_per {
        *counts.entry(d).or_default() += 1;
    }
    let total: u64 = counts.values().sum();
    if total == 0 {
        return Ok(t);
    }
    t.shapes = counts.iter().map(|(d, c)| (*d, *c as f64 / total as f64)).collect();
    let p_larger = |f: i64| t.shapes.iter().filter(|(d, _)| **d > f).map(|(_, p)| p).sum::<f64>();
    let (cluster, node, bucket, gpus, held) = (alloc.str_req("cluster")?, alloc.str_req("node")?, alloc.i64_req("bucket_ns")?, alloc.i64_req("gpus")?, alloc.i64_req("held")?);
    let mut span: HashMap<Arc<str>, (i64, i64)> = HashMap::new();
    for i in 0..alloc.len() {
        let free = gpus[i] - held[i];
        if held[i] == 0 || free <= 0 {
            continue; // only partly used nodes
        }
        let stranded = free as f64 * p_larger(free) * alloc_ns as f64 * 1e-9;
        if stranded > 0.0 {
            *t.per_node.entry((cluster[i].clone(), node[i].clone(), bucket[i] - bucket[i].rem_euclid(bucket_ns))).or_default() += stranded;
            let s = span.entry(cluster[i].clone()).or_insert((i64::MAX, i64::MIN));
            s.0 = s.0.min(bucket[i]);
            s.1 = s.1.max(bucket[i] + alloc_ns);
        }
    }
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
        let top: Vec<_> = nodes.iter().take(10).map(|(n, s)| json!({"node": n.as_ref(), "gpu_hours": s / 3600.0})).collect();
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
    Ok(t)
}
