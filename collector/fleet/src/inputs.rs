//! From the report queries' results to the findings engine's typed inputs
//! (`strand_analysis::findings`) and the accounting's states. Each function
//! reads the columns one SQL file returns; the engine does the rest.

use std::sync::Arc;

use strand_analysis::GpuTime;
use strand_analysis::accounting::{Kind, Value};
use strand_analysis::findings::interconnect::{NodeStat, RankStat};
use strand_analysis::findings::{BusUnit, GpuCounters, JobFailure, JobIo, JobPhase, JobWindow, NicCounters, NodeAlloc};

use crate::sql::Rows;

/// One row of `gpu_time.sql`: the accounting's state of one GPU, job and trend bucket.
#[derive(Debug, Clone)]
pub struct GpuTimeRow {
    pub cluster: Arc<str>,
    pub node: Arc<str>,
    pub gpu_index: i32,
    pub gpu_uuid: Arc<str>,
    pub gpu_name: Arc<str>,
    /// Empty for windows without a job.
    pub job_id: Arc<str>,
    pub bucket_ns: i64,
    pub time: GpuTime,
}

pub fn gpu_time(rows: &Rows) -> anyhow::Result<Vec<GpuTimeRow>> {
    let (cluster, node, gpu, uuid) =
        (rows.str_req("cluster")?, rows.str_req("node")?, rows.i64_req("gpu_index")?, rows.str_req("gpu_uuid")?);
    let (name, job, bucket) = (rows.str_req("gpu_name")?, rows.str_req("job_id")?, rows.i64_req("bucket_ns")?);
    let mut ints: Vec<(&'static str, Vec<i64>)> = Vec::new();
    let mut floats: Vec<(&'static str, Vec<Option<f64>>)> = Vec::new();
    for c in strand_analysis::accounting::STATE {
        match c.kind {
            Kind::Int => ints.push((c.name, rows.i64_req(c.name)?)),
            Kind::Float => floats.push((c.name, rows.f64(c.name)?)),
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for i in 0..rows.len() {
        let mut time = GpuTime::new();
        time.merge_state(|name, kind| match kind {
            Kind::Int => Value::Int(ints.iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| v[i])),
            Kind::Float => Value::Float(floats.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v[i]).unwrap_or(0.0)),
        });
        out.push(GpuTimeRow {
            cluster: cluster[i].clone(),
            node: node[i].clone(),
            gpu_index: gpu[i] as i32,
            gpu_uuid: uuid[i].clone(),
            gpu_name: name[i].clone(),
            job_id: job[i].clone(),
            bucket_ns: bucket[i],
            time,
        });
    }
    Ok(out)
}

pub fn rank_stats(rows: &Rows) -> anyhow::Result<Vec<RankStat>> {
    let (cluster, hash, rank, node) =
        (rows.str_req("cluster")?, rows.i64_req("comm_hash")?, rows.i64_req("rank")?, rows.str_req("node")?);
    let (name, gpu, job, nranks) =
        (rows.str("comm_name")?, rows.i64("gpu_index")?, rows.str("job_id")?, rows.i64_req("nranks")?);
    let (inst, last, late, caused) = (
        rows.i64_req("instances")?,
        rows.i64_req("times_last")?,
        rows.i64_req("lateness_sum_ns")?,
        rows.i64_req("caused_stall_ns")?,
    );
    let (suffered, first, end) =
        (rows.i64_req("suffered_stall_ns")?, rows.i64_req("first_ns")?, rows.i64_req("last_ns")?);
    Ok((0..rows.len())
        .map(|i| RankStat {
            cluster: cluster[i].clone(),
            comm_hash: hash[i],
            comm_name: name[i].clone(),
            rank: rank[i] as i32,
            node: node[i].clone(),
            gpu_index: gpu[i].map(|g| g as i32),
            job_id: job[i].clone(),
            nranks: nranks[i] as i32,
            instances: inst[i],
            times_last: last[i],
            lateness_sum_ns: late[i],
            caused_stall_ns: caused[i],
            suffered_stall_ns: suffered[i],
            first_ns: first[i],
            last_ns: end[i],
        })
        .collect())
}

pub fn node_stats(rows: &Rows) -> anyhow::Result<Vec<NodeStat>> {
    let (cluster, hash, node, name) =
        (rows.str_req("cluster")?, rows.i64_req("comm_hash")?, rows.str_req("node")?, rows.str("comm_name")?);
    let (job, nranks, ranks, inst) =
        (rows.str("job_id")?, rows.i64_req("nranks")?, rows.i64_req("ranks")?, rows.i64_req("instances")?);
    let (last, late, caused) =
        (rows.i64_req("times_last")?, rows.i64_req("lateness_sum_ns")?, rows.i64_req("caused_stall_ns")?);
    let (first, end) = (rows.i64_req("first_ns")?, rows.i64_req("last_ns")?);
    Ok((0..rows.len())
        .map(|i| NodeStat {
            cluster: cluster[i].clone(),
            comm_hash: hash[i],
            comm_name: name[i].clone(),
            node: node[i].clone(),
            job_id: job[i].clone(),
            nranks: nranks[i] as i32,
            ranks: ranks[i],
            instances: inst[i],
            times_last: last[i],
            lateness_sum_ns: late[i],
            caused_stall_ns: caused[i],
            first_ns: first[i],
            last_ns: end[i],
        })
        .collect())
}

pub fn bus_units(rows: &Rows) -> anyhow::Result<Vec<BusUnit>> {
    let (cluster, hash, op, nranks) =
        (rows.str_req("cluster")?, rows.i64_req("comm_hash")?, rows.str_req("op")?, rows.i64_req("nranks")?);
    let (size, samples, bw) = (rows.i64_req("size_class")?, rows.i64_req("samples")?, rows.f64("median_bus_bw")?);
    let (job, transfer, first, last) =
        (rows.str("job_id")?, rows.i64("transfer_ns")?, rows.i64_req("first_ns")?, rows.i64_req("last_ns")?);
    Ok((0..rows.len())
        .map(|i| BusUnit {
            cluster: cluster[i].clone(),
            comm_hash: hash[i],
            op: op[i].clone(),
            nranks: nranks[i],
            size_class: size[i],
            job_id: job[i].clone(),
            samples: samples[i],
            median_bus_bw: bw[i],
            transfer_ns: transfer[i],
            first_ns: first[i],
            last_ns: last[i],
        })
        .collect())
}

pub fn gpu_counters(rows: &Rows) -> anyhow::Result<Vec<GpuCounters>> {
    let (cluster, node, uuid, idx, job, ts) = (
        rows.str_req("cluster")?,
        rows.str_req("node")?,
        rows.str_req("gpu_uuid")?,
        rows.i64("gpu_index")?,
        rows.str("job_id")?,
        rows.i64_req("ts_ns")?,
    );
    let pcie = rows.i64("pcie_replay_total")?;
    let (crc, replay, recovery) = (
        rows.i64_lists("nvlink_crc_errors_total")?,
        rows.i64_lists("nvlink_replay_errors_total")?,
        rows.i64_lists("nvlink_recovery_errors_total")?,
    );
    Ok((0..rows.len())
        .map(|i| GpuCounters {
            cluster: cluster[i].clone(),
            node: node[i].clone(),
            gpu_uuid: uuid[i].clone(),
            gpu_index: idx[i],
            job_id: job[i].clone(),
            ts_ns: ts[i],
            pcie_replay_total: pcie[i],
            nvlink_crc_errors_total: crc[i].clone(),
            nvlink_replay_errors_total: replay[i].clone(),
            nvlink_recovery_errors_total: recovery[i].clone(),
        })
        .collect())
}

pub fn nic_counters(rows: &Rows) -> anyhow::Result<Vec<NicCounters>> {
    let (cluster, node, dev, port, ts) = (
        rows.str_req("cluster")?,
        rows.str_req("node")?,
        rows.str_req("device")?,
        rows.i64_req("port")?,
        rows.i64_req("ts_ns")?,
    );
    let (sym, down, rec) =
        (rows.i64("symbol_error_total")?, rows.i64("link_downed_total")?, rows.i64("link_error_recovery_total")?);
    let (rcv, disc, wait) =
        (rows.i64("port_rcv_errors_total")?, rows.i64("port_xmit_discards_total")?, rows.i64("port_xmit_wait_total")?);
    Ok((0..rows.len())
        .map(|i| NicCounters {
            cluster: cluster[i].clone(),
            node: node[i].clone(),
            device: dev[i].clone(),
            port: port[i],
            ts_ns: ts[i],
            symbol_error_total: sym[i],
            link_downed_total: down[i],
            link_error_recovery_total: rec[i],
            port_rcv_errors_total: rcv[i],
            port_xmit_discards_total: disc[i],
            port_xmit_wait_total: wait[i],
        })
        .collect())
}

pub fn node_alloc(rows: &Rows) -> anyhow::Result<Vec<NodeAlloc>> {
    let (cluster, node, bucket, gpus, held) = (
        rows.str_req("cluster")?,
        rows.str_req("node")?,
        rows.i64_req("bucket_ns")?,
        rows.i64_req("gpus")?,
        rows.i64_req("held")?,
    );
    Ok((0..rows.len())
        .map(|i| NodeAlloc {
            cluster: cluster[i].clone(),
            node: node[i].clone(),
            bucket_ns: bucket[i],
            gpus: gpus[i],
            held: held[i],
        })
        .collect())
}

pub fn job_shapes(rows: &Rows) -> anyhow::Result<Vec<i64>> {
    rows.i64_req("gpus")
}

pub fn job_windows(rows: &Rows) -> anyhow::Result<Vec<JobWindow>> {
    let (c, j, w) = (rows.str_req("cluster")?, rows.str_req("job_id")?, rows.i64_req("wstart")?);
    let (g, n, p, k) =
        (rows.i64_req("gpus")?, rows.i64_req("nodes")?, rows.i64_req("powered_ns")?, rows.i64_req("kernels_ns")?);
    let (comp, ob, busy) = (rows.i64_req("compute_ns")?, rows.i64_req("other_busy_ns")?, rows.i64_req("busy_ns")?);
    let (idle, np) = (rows.i64_req("idle_ns")?, rows.i64_req("idle_no_process_ns")?);
    Ok((0..rows.len())
        .map(|i| JobWindow {
            cluster: c[i].clone(),
            job_id: j[i].clone(),
            wstart: w[i],
            gpus: g[i],
            nodes: n[i],
            powered_ns: p[i],
            kernels_ns: k[i],
            compute_ns: comp[i],
            other_busy_ns: ob[i],
            busy_ns: busy[i],
            idle_ns: idle[i],
            idle_no_process_ns: np[i],
        })
        .collect())
}

pub fn job_io(rows: &Rows) -> anyhow::Result<Vec<JobIo>> {
    let (c, j, w, wb, rb) = (
        rows.str_req("cluster")?,
        rows.str_req("job_id")?,
        rows.i64_req("wstart")?,
        rows.i64_req("write_bytes")?,
        rows.i64_req("read_bytes")?,
    );
    Ok((0..rows.len())
        .map(|i| JobIo {
            cluster: c[i].clone(),
            job_id: j[i].clone(),
            wstart: w[i],
            write_bytes: wb[i],
            read_bytes: rb[i],
        })
        .collect())
}

pub fn job_phases(rows: &Rows) -> anyhow::Result<Vec<JobPhase>> {
    let (c, j, ph, st) = (rows.str_req("cluster")?, rows.str_req("job_id")?, rows.str_req("phase")?, rows.i64("step")?);
    let (src, pid, s, e) =
        (rows.str_req("source")?, rows.i64("pid")?, rows.i64_req("start_ns")?, rows.i64_req("end_ns")?);
    Ok((0..rows.len())
        .map(|i| JobPhase {
            cluster: c[i].clone(),
            job_id: j[i].clone(),
            phase: ph[i].clone(),
            step: st[i],
            source: src[i].clone(),
            pid: pid[i],
            start_ns: s[i],
            end_ns: e[i],
        })
        .collect())
}

pub fn job_failures(rows: &Rows) -> anyhow::Result<Vec<JobFailure>> {
    let (c, j, node, ts) =
        (rows.str_req("cluster")?, rows.str_req("job_id")?, rows.str_req("node")?, rows.i64_req("ts_ns")?);
    let (kind, code, sig) = (rows.str_req("kind")?, rows.i64("code")?, rows.i64("signal")?);
    Ok((0..rows.len())
        .map(|i| JobFailure {
            cluster: c[i].clone(),
            job_id: j[i].clone(),
            node: node[i].clone(),
            ts_ns: ts[i],
            kind: kind[i].clone(),
            code: code[i],
            signal: sig[i],
        })
        .collect())
}
