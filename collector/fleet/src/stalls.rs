//! Issue 8 item 1: exact cross-node sync stalls (DESIGN §4).
//!
//! Every collective instance — same commHash and sequence number — is matched
//! across all ranks and nodes of the dataset, and each rank's stall computed
//! as `min(duration_r, max_r' s_r' − s_r)` by the reducer
//! ([`Reducer::max_per_group`], [`Reducer::sync_stall`]). The rows go to the
//! `collective_stalls` table, which the report (and the postmortem) read in
//! place of the agents' estimates.
//!
//! Rules:
//! - the arrival `s_r` is the device-side kernel start when every rank of the
//!   instance has one (`time_source = kernel`), else the host call entry of
//!   every rank (`host`; never a mix of clocks within one instance);
//! - rows without a commHash, a sequence number, a rank or nranks are never
//!   matched by guess; neither are instances missing a rank, or whose ranks
//!   disagree on the operation (counted in [`StallStats`]);
//! - the work is cut into UTC hours, and hours into chunks (10 minutes by
//!   default, to bound memory): an instance belongs to the chunk of its first
//!   arrival, and each chunk is read with a margin of
//!   [`StallOptions::match_window_ns`] on both sides. Its rows are written as
//!   one file per node and chunk (`stalls-YYYYMMDDHH-MM.parquet`); a run
//!   first removes the hour's earlier files, so re-running is idempotent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use strand_kernels::Reducer;
use strand_schemas::protocol::{batch_path, utc_date};
use strand_schemas::{CollectiveStall, Table, TableWriter};

use super::sql::Rows;

pub const HOUR_NS: i64 = 3_600_000_000_000;

/// Collective operations matched across ranks (as the agent's matcher).
pub use strand_analysis::sync_stall::COLLECTIVE_OPS;

#[derive(Debug, Clone)]
pub struct StallOptions {
    /// Largest spread of one instance's arrivals across ranks that can still be matched.
    pub match_window_ns: i64,
    /// Instances resolved per reducer call.
    pub batch_rows: usize,
    /// Work unit within an hour (divides an hour): bounds the rows held at once.
    pub chunk_ns: i64,
}

impl Default for StallOptions {
    fn default() -> Self {
        Self { match_window_ns: 120_000_000_000, batch_rows: 1 << 18, chunk_ns: 600_000_000_000 }
    }
}

/// What the stall pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StallStats {
    pub hours: u64,
    pub calls_read: u64,
    pub instances_exact: u64,
    pub instances_host_timed: u64,
    /// Instances with fewer distinct ranks than `nranks` (peers' data missing).
    pub instances_incomplete: u64,
    /// Instances whose ranks disagree on the operation or the communicator size.
    pub instances_inconsistent: u64,
    /// Rows repeating a rank already present in their instance.
    pub duplicate_rows: u64,
    pub rows_written: u64,
}

/// One rank's call, as read from `nccl_calls`.
#[derive(Debug, Clone)]
struct Call {
    cluster: Arc<str>,
    node: Arc<str>,
    job_id: Option<Arc<str>>,
    pid: i32,
    comm_hash: i64,
    seq: i64,
    op: Arc<str>,
    nranks: i32,
    rank: i32,
    gpu_index: Option<i32>,
    gpu_uuid: Option<Arc<str>>,
    bytes: Option<i64>,
    enter_ns: i64,
    exit_ns: Option<i64>,
    kernel: Option<(i64, i64)>,
}

/// Computes the exact stalls of every UTC hour meeting `[start_ns, end_ns)`
/// and writes them under `out_root` (a local directory in Hive layout).
/// `ctx` must show `nccl_calls` without a time restriction.
pub async fn compute(
    ctx: &SessionContext,
    reducer: &Reducer,
    start_ns: i64,
    end_ns: i64,
    out_root: &Path,
    opts: &StallOptions,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<StallStats> {
    let mut stats = StallStats::default();
    if opts.chunk_ns <= 0 || HOUR_NS % opts.chunk_ns != 0 {
        anyhow::bail!("stall chunk must divide an hour, got {} ns", opts.chunk_ns);
    }
    let first = start_ns.div_euclid(HOUR_NS) * HOUR_NS;
    let hours = ((end_ns - first) + HOUR_NS - 1).div_euclid(HOUR_NS).max(0) as u64;
    let per_hour = HOUR_NS / opts.chunk_ns;
    for h in 0..hours {
        let h0 = first + h as i64 * HOUR_NS;
        // An earlier run's files of this hour go first (a node may have no rows now).
        remove_hour(out_root, h0)?;
        for c in 0..per_hour {
            progress(h * per_hour as u64 + c as u64, hours * per_hour as u64);
            let c0 = h0 + c * opts.chunk_ns;
            let rows = chunk(ctx, reducer, c0, opts, &mut stats).await?;
            write_chunk(out_root, c0, rows, &mut stats)?;
        }
        stats.hours += 1;
    }
    progress(hours * per_hour as u64, hours * per_hour as u64);
    Ok(stats)
}

/// One chunk's rows, per (cluster, node), as Arrow batches.
type NodeBatches = HashMap<(Arc<str>, Arc<str>), Vec<RecordBatch>>;

fn add_rows(out: &mut NodeBatches, rows: Vec<CollectiveStall>) {
    let mut by_node: HashMap<(Arc<str>, Arc<str>), Vec<CollectiveStall>> = HashMap::new();
    for r in rows {
        by_node.entry((r.cluster.clone(), r.node.clone())).or_default().push(r);
    }
    for (k, rows) in by_node {
        out.entry(k).or_default().push(CollectiveStall::to_batch(&rows));
    }
}

/// The instances whose first arrival falls in `[c0, c0 + chunk)`.
async fn chunk(ctx: &SessionContext, reducer: &Reducer, c0: i64, opts: &StallOptions, stats: &mut StallStats) -> anyhow::Result<NodeBatches> {
    let c1 = c0 + opts.chunk_ns;
    let ops = COLLECTIVE_OPS.iter().map(|o| format!("'{o}'")).collect::<Vec<_>>().join(", ");
    let (lo, hi) = (c0 - opts.match_window_ns, c1 + opts.match_window_ns);
    let sql = format!(
        "SELECT cluster, node, job_id, pid, comm_hash, seq, op, nranks, rank, gpu_index, gpu_uuid, bytes, \
         enter_ns, exit_ns, kernel_start_ns, kernel_end_ns FROM nccl_calls \
         WHERE comm_hash IS NOT NULL AND seq IS NOT NULL AND rank IS NOT NULL AND nranks IS NOT NULL \
         AND op IN ({ops}) AND enter_ns >= {lo} AND enter_ns < {hi} ORDER BY comm_hash, seq"
    );
    let mut stream = ctx.sql(&sql).await.context("planning the nccl_calls scan")?.execute_stream().await.context("reading nccl_calls")?;
    let mut out = NodeBatches::new();
    let mut pending: Vec<Vec<Call>> = Vec::new();
    let mut pending_rows = 0usize;
    let mut current: Option<((i64, i64), Vec<Call>)> = None;
    while let Some(batch) = stream.next().await {
        let batch = batch.context("reading nccl_calls")?;
        stats.calls_read += batch.num_rows() as u64;
        for (key, call) in read_calls(batch)? {
            match &mut current {
                Some((k, calls)) if *k == key => calls.push(call),
                _ => {
                    if let Some((_, calls)) = current.take() {
                        pending_rows += calls.len();
                        pending.push(calls);
                    }
                    current = Some((key, vec![call]));
                }
            }
        }
        if pending_rows >= opts.batch_rows {
            add_rows(&mut out, resolve(reducer, std::mem::take(&mut pending), (c0, c1), stats)?);
            pending_rows = 0;
        }
    }
    if let Some((_, calls)) = current.take() {
        pending.push(calls);
    }
    add_rows(&mut out, resolve(reducer, pending, (c0, c1), stats)?);
    Ok(out)
}

fn read_calls(batch: RecordBatch) -> anyhow::Result<Vec<((i64, i64), Call)>> {
    let r = Rows::new("nccl_calls", vec![batch]);
    let (cluster, node, job) = (r.str_req("cluster")?, r.str_req("node")?, r.str("job_id")?);
    let (pid, hash, seq, op) = (r.i64_req("pid")?, r.i64_req("comm_hash")?, r.i64_req("seq")?, r.str_req("op")?);
    let (nranks, rank, gpu, uuid) = (r.i64_req("nranks")?, r.i64_req("rank")?, r.i64("gpu_index")?, r.str("gpu_uuid")?);
    let (bytes, enter, exit) = (r.i64("bytes")?, r.i64_req("enter_ns")?, r.i64("exit_ns")?);
    let (ks, ke) = (r.i64("kernel_start_ns")?, r.i64("kernel_end_ns")?);
    let mut out = Vec::with_capacity(r.len());
    for i in 0..r.len() {
        let kernel = match (ks[i], ke[i]) {
            (Some(s), Some(e)) if e >= s => Some((s, e)),
            _ => None,
        };
        out.push((
            (hash[i], seq[i]),
            Call {
                cluster: cluster[i].clone(),
                node: node[i].clone(),
                job_id: job[i].clone(),
                pid: pid[i] as i32,
                comm_hash: hash[i],
                seq: seq[i],
                op: op[i].clone(),
                nranks: nranks[i] as i32,
                rank: rank[i] as i32,
                gpu_index: gpu[i].map(|g| g as i32),
                gpu_uuid: uuid[i].clone(),
                bytes: bytes[i],
                enter_ns: enter[i],
                exit_ns: exit[i],
                kernel,
            },
        ));
    }
    Ok(out)
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

/// Matches the instances of `groups` (each one (commHash, seq)) and computes their stalls.
fn resolve(reducer: &Reducer, groups: Vec<Vec<Call>>, span: (i64, i64), stats: &mut StallStats) -> anyhow::Result<Vec<CollectiveStall>> {
    // Keep complete, consistent instances that belong to this hour.
    let mut instances: Vec<(Vec<Call>, bool)> = Vec::with_capacity(groups.len());
    for mut calls in groups {
        calls.sort_by_key(|c| c.rank);
        let before = calls.len();
        calls.dedup_by_key(|c| c.rank);
        stats.duplicate_rows += (before - calls.len()) as u64;
        let kernel = calls.iter().all(|c| c.kernel.is_some());
        let arrival = |c: &Call| if kernel { c.kernel.map_or(c.enter_ns, |k| k.0) } else { c.enter_ns };
        let first = calls.iter().map(arrival).min().unwrap_or(i64::MIN);
        if !(span.0..span.1).contains(&first) {
            continue; // another chunk's instance, read in its margin
        }
        let n = calls[0].nranks;
        if calls.iter().any(|c| c.op != calls[0].op || c.nranks != n) {
            stats.instances_inconsistent += 1;
            continue;
        }
        if calls.len() != n as usize || calls.iter().any(|c| c.rank < 0 || c.rank >= n) {
            stats.instances_incomplete += 1;
            continue;
        }
        instances.push((calls, kernel));
    }
    let mut group = Vec::new();
    let mut start = Vec::new();
    let mut duration = Vec::new();
    for (g, (calls, kernel)) in instances.iter().enumerate() {
        for c in calls {
            group.push(g as u32);
            match (kernel, c.kernel) {
                (true, Some((s, e))) => {
                    start.push(s);
                    duration.push(e - s);
                }
                // Host-timed: the stall is the arrival lag, unbounded by a kernel we did not see.
                _ => {
                    start.push(c.enter_ns);
                    duration.push(i64::MAX / 4);
                }
            }
        }
    }
    let groups = instances.len();
    let last = reducer.max_per_group(&group, &start, groups).context("reducer: latest arrival per collective")?;
    let stall = reducer.sync_stall(&group, &start, &duration, groups).context("reducer: sync stall per rank")?;
    let mut out = Vec::with_capacity(start.len());
    let mut i = 0;
    for (g, (calls, kernel)) in instances.into_iter().enumerate() {
        let n = calls.len();
        let rows = i..i + n;
        i += n;
        let last_start = last[g].unwrap_or(i64::MIN);
        // The last rank (lowest among ties) and its lead over the second latest.
        let last_idx = rows.clone().find(|&j| start[j] == last_start).unwrap_or(rows.start);
        let second = rows.clone().filter(|&j| j != last_idx).map(|j| start[j]).max();
        let lateness = second.map_or(0, |s| last_start - s);
        let caused: i64 = rows.clone().filter(|&j| j != last_idx).map(|j| stall[j].min(lateness)).sum();
        // The same for the last rank's node: a slow node makes one of its own ranks last by a hair.
        let last_node = calls[last_idx - rows.start].node.clone();
        let other_nodes = || rows.clone().filter(|&j| calls[j - rows.start].node != last_node);
        let node_lateness = other_nodes().map(|j| start[j]).max().map(|s| last_start - s);
        let node_caused = node_lateness.map(|l| other_nodes().map(|j| stall[j].min(l)).sum::<i64>());
        if kernel {
            stats.instances_exact += 1;
        } else {
            stats.instances_host_timed += 1;
        }
        for (j, c) in rows.zip(calls) {
            let is_last = j == last_idx;
            let (end_ns, transfer) = match (kernel, c.kernel) {
                (true, Some((_, e))) => (e, Some(duration[j] - stall[j])),
                _ => (c.exit_ns.unwrap_or(last_start).max(start[j]), None),
            };
            let size_class = c.bytes.filter(|b| *b > 0).map(|b| 63 - (b as u64).leading_zeros() as i32);
            let bus_bw = match (transfer, c.bytes) {
                (Some(t), Some(b)) if t > 0 && b > 0 => bus_factor(&c.op, c.nranks, b).map(|(f, alg)| alg * f / (t as f64 * 1e-9)),
                _ => None,
            };
            out.push(CollectiveStall {
                cluster: c.cluster,
                node: c.node,
                job_id: c.job_id.map(|j| j.to_string()),
                comm_hash: c.comm_hash,
                seq: c.seq,
                op: c.op.to_string(),
                nranks: c.nranks,
                rank: c.rank,
                pid: c.pid,
                gpu_index: c.gpu_index,
                gpu_uuid: c.gpu_uuid,
                bytes: c.bytes,
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
                size_class,
                bus_bw_bytes_per_s: bus_bw,
            });
        }
    }
    Ok(out)
}

/// The batch id of a chunk's stall files: `stalls-YYYYMMDDHH-MM` (its UTC hour and minute).
pub fn chunk_batch_id(c0: i64) -> String {
    let date = utc_date(c0).replace('-', "");
    let in_day = c0.rem_euclid(86_400_000_000_000);
    format!("stalls-{date}{:02}-{:02}", in_day / HOUR_NS, in_day % HOUR_NS / 60_000_000_000)
}

fn remove_hour(root: &Path, h0: i64) -> anyhow::Result<()> {
    let id = chunk_batch_id(h0);
    let hour_prefix = &id[..id.len() - 3];
    remove_batch(&root.join("collective_stalls").join(format!("date={}", utc_date(h0))), hour_prefix)
}

fn write_chunk(root: &Path, c0: i64, batches: NodeBatches, stats: &mut StallStats) -> anyhow::Result<()> {
    let (id, date) = (chunk_batch_id(c0), utc_date(c0));
    for ((cluster, node), batches) in batches {
        let path = root.join(batch_path("collective_stalls", &date, &cluster, &node, &id));
        stats.rows_written += write_batches::<CollectiveStall>(&path, &batches)?;
    }
    Ok(())
}

/// Removes the stall files of one hour (`<prefix>*.parquet`) from every `cluster=*/node=*` directory under `date_dir`.
fn remove_batch(date_dir: &Path, prefix: &str) -> anyhow::Result<()> {
    let Ok(clusters) = std::fs::read_dir(date_dir) else { return Ok(()) };
    for c in clusters.flatten() {
        let Ok(nodes) = std::fs::read_dir(c.path()) else { continue };
        for n in nodes.flatten() {
            let Ok(files) = std::fs::read_dir(n.path()) else { continue };
            for f in files.flatten() {
                let name = f.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(prefix) && name.ends_with(".parquet") {
                    std::fs::remove_file(f.path()).with_context(|| format!("cannot replace {}", f.path().display()))?;
                }
            }
        }
    }
    Ok(())
}

/// Writes rows as one Parquet file, atomically (staging name, then rename).
pub fn write_rows<T: strand_schemas::Table>(path: &Path, rows: &[T]) -> anyhow::Result<()> {
    let batches: Vec<RecordBatch> = rows.chunks(65_536).map(T::to_batch).collect();
    write_batches::<T>(path, &batches).map(|_| ())
}

/// Writes batches of table `T` as one Parquet file, atomically; returns the rows written.
pub fn write_batches<T: strand_schemas::Table>(path: &Path, batches: &[RecordBatch]) -> anyhow::Result<u64> {
    let dir = path.parent().context("a batch path has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut staging = PathBuf::from(path);
    staging.set_extension("parquet#strand");
    let file = std::fs::File::create(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    let mut w = TableWriter::<T, _>::new(std::io::BufWriter::new(file))?;
    for b in batches {
        w.write_batch(b).with_context(|| format!("writing {}", staging.display()))?;
    }
    let rows = w.rows();
    let mut buf = w.finish().with_context(|| format!("writing {}", staging.display()))?;
    std::io::Write::flush(&mut buf)?;
    std::fs::rename(&staging, path).with_context(|| format!("cannot rename {} into place", staging.display()))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;
    use strand_schemas::{NcclCall, to_parquet_bytes};

    const T0: i64 = 1_767_571_200_000_000_000;

    #[allow(clippy::too_many_arguments)]
    fn call(node: &str, hash: Option<i64>, seq: i64, op: &str, rank: i32, nranks: i32, enter: i64, kernel: Option<(i64, i64)>) -> NcclCall {
        let mut c = NcclCall::example(1);
        c.cluster = "c".into();
        c.node = node.into();
        (c.comm_hash, c.comm_name, c.seq, c.op, c.rank, c.nranks) = (hash, None, Some(seq), op.into(), Some(rank), Some(nranks));
        (c.enter_ns, c.exit_ns, c.gpu_index, c.bytes) = (T0 + enter, Some(T0 + enter + 10), Some(rank), Some(1 << 20));
        (c.kernel_start_ns, c.kernel_end_ns) = (kernel.map(|k| T0 + k.0), kernel.map(|k| T0 + k.1));
        c
    }

    #[tokio::test]
    async fn instances_are_matched_across_nodes_by_commhash_and_seq_only() {
        let dir = tempfile::tempdir().unwrap();
        let rows = [
            // Communicator 7, seq 0: ranks on two nodes, rank 2 last (device times).
            call("a", Some(7), 0, "allreduce", 0, 3, 90, Some((100, 600))),
            call("a", Some(7), 0, "allreduce", 0, 3, 90, Some((100, 600))), // a duplicate record
            call("a", Some(7), 0, "allreduce", 1, 3, 140, Some((150, 600))),
            call("b", Some(7), 0, "allreduce", 2, 3, 390, Some((400, 600))),
            // seq 1 lacks rank 2: incomplete, not matched.
            call("a", Some(7), 1, "allreduce", 0, 3, 1000, Some((1000, 1100))),
            call("a", Some(7), 1, "allreduce", 1, 3, 1000, Some((1000, 1100))),
            // Communicator 8 has no kernel times on one rank: host entry for both.
            call("a", Some(8), 0, "allgather", 0, 2, 1000, Some((1010, 2000))),
            call("b", Some(8), 0, "allgather", 1, 2, 1600, None),
            // Unknown communicator: never matched by guess.
            call("a", None, 0, "allreduce", 0, 2, 5000, Some((5000, 6000))),
            call("b", None, 0, "allreduce", 1, 2, 5000, Some((5500, 6000))),
            // Ranks disagree on the operation.
            call("a", Some(9), 0, "allreduce", 0, 2, 7000, Some((7000, 8000))),
            call("b", Some(9), 0, "allgather", 1, 2, 7000, Some((7000, 8000))),
        ];
        for (i, node) in ["a", "b"].iter().enumerate() {
            let mine: Vec<NcclCall> = rows.iter().filter(|r| &*r.node == *node).cloned().collect();
            let path = dir.path().join(batch_path("nccl_calls", &utc_date(T0), "c", node, &format!("batch-000{i}")));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, to_parquet_bytes(&mine).unwrap()).unwrap();
        }
        let ds = Dataset::open(dir.path().to_str().unwrap()).await.unwrap();
        let out = tempfile::tempdir().unwrap();
        let stats = compute(ds.context(), &Reducer::cpu(), T0, T0 + HOUR_NS, out.path(), &StallOptions::default(), |_, _| {}).await.unwrap();
        assert_eq!(
            (stats.instances_exact, stats.instances_host_timed, stats.instances_incomplete, stats.instances_inconsistent, stats.duplicate_rows),
            (1, 1, 1, 1, 1)
        );
        let got = Dataset::open(out.path().to_str().unwrap()).await.unwrap();
        let b = got.sql("SELECT comm_hash, rank, node, time_source, stall_ns, is_last, lateness_ns, caused_stall_ns, transfer_ns FROM collective_stalls ORDER BY comm_hash, rank").await.unwrap().collect().await.unwrap();
        let r = Rows::new("collective_stalls", b);
        let (hash, stall, last) = (r.i64_req("comm_hash").unwrap(), r.i64_req("stall_ns").unwrap(), r.i64("lateness_ns").unwrap());
        let (src, caused, transfer) = (r.str_req("time_source").unwrap(), r.i64("caused_stall_ns").unwrap(), r.i64("transfer_ns").unwrap());
        assert_eq!(hash, [7, 7, 7, 8, 8]);
        // DESIGN §4: min(duration, last start − own start).
        assert_eq!(stall, [300, 250, 0, 600, 0]);
        assert_eq!(last, [None, None, Some(250), None, Some(600)]);
        // Rank 2 alone held the others: min(300, 250) + min(250, 250).
        assert_eq!(caused[2], Some(500));
        assert_eq!(transfer[..3], [Some(200), Some(200), Some(200)]);
        assert_eq!(src.iter().map(|s| &**s).collect::<Vec<_>>(), ["kernel", "kernel", "kernel", "host", "host"]);
        assert_eq!(r.str_req("node").unwrap()[2].as_ref(), "b");
        // Re-running the hour replaces its files.
        compute(ds.context(), &Reducer::cpu(), T0, T0 + 1, out.path(), &StallOptions::default(), |_, _| {}).await.unwrap();
        let n = got.sql("SELECT count(*) AS n FROM collective_stalls").await.unwrap().collect().await.unwrap();
        assert_eq!(Rows::new("n", n).i64_req("n").unwrap(), [5]);
    }
}
