//! Exact cross-node sync stalls (DESIGN §4), with the one collective
//! matcher (`strand_analysis::collective`): the same identity, completeness,
//! arrival and stall rules as the agent's live windows and the postmortem.
//! The rows go to the `collective_stalls` table, which the report reads in
//! place of the agents' estimates.
//!
//! What this pass adds is the cutting of the work:
//! - the work is cut into UTC hours, and hours into chunks (10 minutes by
//!   default, to bound memory): an instance belongs to the chunk of its first
//!   arrival, and each chunk is read with a margin of
//!   [`StallOptions::match_window_ns`] on both sides. An hour's rows are
//!   written as one file per cluster,
//!   `collective_stalls/date=D/hour=HH/cluster_dir=C/stalls-YYYYMMDDHH.parquet`,
//!   each replaced whole, so re-running is idempotent, on disk or on S3.
//! - the hour's `_stalls.json` records the `nccl_calls` files it was
//!   computed from (a fingerprint of their names and sizes), its files and
//!   what the matcher counted: with `reuse`, an hour whose inputs have not
//!   changed since is not computed again, and its counts come from there,
//!   so the report says the same whether an hour was computed or reused
//!   (an hour recorded without counts, by an older version, is
//!   recomputed). The pass reads only the partitions of its hours and their
//!   margins (`Dataset::open_range`), whatever the history holds.
//! - communication kernels of imported Kineto traces that no call gives a
//!   collective identity (traces without collective metadata, libraries
//!   other than NCCL's API) are numbered by their order on each rank of their
//!   job, as the postmortem numbers them ([`collective::order_by_position`]),
//!   once per pass, and join the instances of the chunk of their first
//!   arrival (`matched_by = order`). A job's traces are numbered whole: the
//!   pass reads them a day beyond its range, and a job whose kernels reach
//!   the edges of that is not numbered (said, never guessed), as kinds whose
//!   sequences differ across ranks are refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Context;
use arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use strand_analysis::collective::{self, CollectiveRecord, CommId, MatchStats};
use strand_analysis::findings::sql_str;
use strand_kernels::Reducer;
use strand_schemas::comm_kernels::CommKernels;
use strand_schemas::layout::{self, hour_dir};
use strand_schemas::parquet_io::TableWriter;
use strand_schemas::protocol::utc_date;
use strand_schemas::{CollectiveStall, KernelEvent, Table};

use super::dataset::{DEFAULT_LOOKBACK_NS, Dataset, TimeRange};
use super::output::Output;
use super::sql::Rows;

pub const HOUR_NS: i64 = layout::HOUR_NS;

#[derive(Debug, Clone)]
pub struct StallOptions {
    /// Largest spread of one instance's arrivals across ranks that can still be matched.
    pub match_window_ns: i64,
    /// Instances resolved per reducer call.
    pub batch_rows: usize,
    /// Work unit within an hour (divides an hour): bounds the rows held at once.
    pub chunk_ns: i64,
    /// Which kernels are communication, and of which library (the built-in
    /// table and `--comm-kernel`), for the kernels matched by order.
    pub comm_kernels: Arc<CommKernels>,
}

impl Default for StallOptions {
    fn default() -> Self {
        Self {
            match_window_ns: 120_000_000_000,
            batch_rows: 1 << 18,
            chunk_ns: 600_000_000_000,
            comm_kernels: Arc::new(CommKernels::builtin()),
        }
    }
}

/// How far beyond the pass's input the order matching reads a job's
/// imported kernels, so that its traces are numbered whole.
pub const ORDER_REACH_NS: i64 = 86_400_000_000_000;

/// What the stall pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StallStats {
    pub hours: u64,
    /// Hours whose stored stalls were still current (`--store`): not computed again.
    pub hours_reused: u64,
    pub calls_read: u64,
    /// The matcher's counts (exact, host-timed, incomplete, inconsistent, duplicates).
    #[serde(flatten)]
    pub matched: MatchStats,
    pub rows_written: u64,
    /// Kinds of communication kernel refused by order matching, each with its reason.
    pub order_refusals: Vec<String>,
    /// Communication kernels of imported traces left without an instance, and their libraries.
    pub order_unmatched_kernels: u64,
    pub order_unmatched_libraries: Vec<String>,
    /// Jobs (`cluster/job`) whose imported kernels reach the edges of what
    /// the pass reads: not numbered by order, since a rank's sequence may be cut.
    pub order_jobs_cut: Vec<String>,
}

impl StallStats {
    /// What the report says about order matching.
    pub fn order_notes(&self) -> Vec<String> {
        let mut notes = collective::order_notes(
            &self.matched,
            &self.order_refusals,
            self.order_unmatched_kernels,
            &self.order_unmatched_libraries,
        );
        if !self.order_jobs_cut.is_empty() {
            notes.push(format!(
                "communication kernels without a collective identity of job(s) {} were not matched by order: their traces reach beyond the day around the range that the report reads, so a rank's sequence may be cut",
                self.order_jobs_cut.join(", ")
            ));
        }
        notes
    }
}

/// The dataset range the stall pass of `[start_ns, end_ns)` reads: its
/// hours and the match window on both sides.
pub fn input_range(start_ns: i64, end_ns: i64, opts: &StallOptions) -> crate::TimeRange {
    let first = layout::hour_floor(start_ns);
    let last = layout::hour_floor(end_ns - 1) + HOUR_NS;
    crate::TimeRange::new(first - opts.match_window_ns, last + opts.match_window_ns)
}

/// What `_stalls.json` says about an hour.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct HourRecord {
    inputs: String,
    files: Vec<String>,
    rows: u64,
    /// The hour's counts, added to the pass's when the hour is reused.
    #[serde(default)]
    counted: Option<HourCounts>,
}

/// What reading and matching one hour counted.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct HourCounts {
    calls_read: u64,
    matched: MatchStats,
}

impl HourCounts {
    /// Adds the hour's counts to the pass's, computed or reused alike.
    fn add_to(&self, stats: &mut StallStats) {
        stats.calls_read += self.calls_read;
        stats.matched.add(&self.matched);
    }
}

/// Computes the exact stalls of every UTC hour meeting `[start_ns, end_ns)`
/// from `ds` (opened on at least [`input_range`]) and writes them to `out`.
/// With `reuse`, hours stored from the same inputs are kept.
#[allow(clippy::too_many_arguments)]
pub async fn compute(
    ds: &Dataset,
    ctx: &SessionContext,
    reducer: &Reducer,
    start_ns: i64,
    end_ns: i64,
    out: &Output,
    reuse: bool,
    opts: &StallOptions,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<StallStats> {
    let mut stats = StallStats::default();
    if opts.chunk_ns <= 0 || HOUR_NS % opts.chunk_ns != 0 {
        anyhow::bail!("stall chunk must divide an hour, got {} ns", opts.chunk_ns);
    }
    let first = layout::hour_floor(start_ns);
    let hours = ((end_ns - first) + HOUR_NS - 1).div_euclid(HOUR_NS).max(0) as u64;
    let per_hour = HOUR_NS / opts.chunk_ns;
    let mut inputs = ds.files("nccl_calls").await?;
    // Imported traces' kernels: order matching reads them (whatever their hour).
    inputs.extend(ds.files("kernel_events").await?.into_iter().filter(|(k, _)| is_import(k)));
    // Numbered once for the whole pass, reused hours or not: the order
    // notes are the pass's, whichever hours it computes.
    let by_order = ordered_instances(ds, ctx, start_ns, end_ns, opts, &mut stats).await?;
    for h in 0..hours {
        let h0 = first + h as i64 * HOUR_NS;
        let (date, hour) = layout::date_hour(h0);
        let dir = format!("{}/date={date}/{}", CollectiveStall::NAME, hour_dir(hour));
        let marker = format!("{dir}/_stalls.json");
        let fingerprint = fingerprint(&inputs, h0 - opts.match_window_ns, h0 + HOUR_NS + opts.match_window_ns);
        if reuse
            && let Some(data) = out.get(&marker).await?
            && let Ok(rec) = serde_json::from_slice::<HourRecord>(&data)
            && rec.inputs == fingerprint
            && let Some(counted) = rec.counted
        {
            stats.hours += 1;
            stats.hours_reused += 1;
            counted.add_to(&mut stats);
            continue;
        }
        let mut counted = HourCounts::default();
        let mut writers: BTreeMap<Arc<str>, TableWriter<CollectiveStall, Vec<u8>>> = BTreeMap::new();
        let mut rows_hour = 0u64;
        for c in 0..per_hour {
            progress(h * per_hour as u64 + c as u64, hours * per_hour as u64);
            let c0 = h0 + c * opts.chunk_ns;
            let rows = chunk(ctx, reducer, c0, opts, &by_order, &mut counted).await?;
            for ((cluster, _), rows) in rows {
                let w = match writers.entry(cluster) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => v.insert(TableWriter::new(Vec::new())?),
                };
                w.write(&rows)?;
                rows_hour += rows.len() as u64;
            }
        }
        let id = chunk_batch_id(h0);
        let name = format!("{}.parquet", &id[..id.len() - 3]);
        let mut files = Vec::new();
        for (cluster, w) in writers {
            let key = format!("{dir}/{}={}/{name}", layout::CLUSTER_KEY, strand_schemas::hive::escape(&cluster));
            out.put(&key, bytes::Bytes::from(w.finish()?)).await?;
            files.push(key);
        }
        // An earlier run's files of this hour that this run did not write
        // (a cluster without collectives now; the per-node files of older versions).
        let old_prefix = &id[..id.len() - 3];
        for key in out.list(&format!("{}/date={date}", CollectiveStall::NAME)).await? {
            let name = key.rsplit('/').next().unwrap_or("");
            let this_hour = key.starts_with(&format!("{dir}/"));
            let old_layout = !key.contains("/hour=") && name.starts_with(old_prefix);
            if layout::is_data_file(name) && ((this_hour && !files.contains(&key)) || old_layout) {
                out.delete(&key).await?;
            }
        }
        stats.rows_written += rows_hour;
        counted.add_to(&mut stats);
        let rec = HourRecord { inputs: fingerprint, files, rows: rows_hour, counted: Some(counted) };
        out.put(&marker, bytes::Bytes::from(serde_json::to_vec(&rec)?)).await?;
        stats.hours += 1;
    }
    progress(hours * per_hour as u64, hours * per_hour as u64);
    Ok(stats)
}

/// Whether a file key is one `strand import kineto` wrote (its batch id).
fn is_import(key: &str) -> bool {
    key.rsplit('/').next().is_some_and(|n| n.starts_with("kineto-"))
}

/// The first arrival of an instance: its earliest kernel start when every
/// record has one, else its earliest host entry (the matcher's clocks).
fn first_arrival(recs: &[CollectiveRecord]) -> i64 {
    let kernel = recs.iter().all(|r| r.kernel.is_some());
    recs.iter()
        .map(|r| if kernel { r.kernel.map_or(r.enter_ns, |k| k.0) } else { r.enter_ns })
        .min()
        .unwrap_or(i64::MIN)
}

/// The communication kernels of imported Kineto traces that no call gives a
/// collective identity, for the jobs of the range (after `--cluster` and
/// `--job`), numbered by their order on each rank as the postmortem numbers
/// them, grouped by instance. Refusals and what stays unmatched go to `stats`.
async fn ordered_instances(
    ds: &Dataset,
    ctx: &SessionContext,
    start_ns: i64,
    end_ns: i64,
    opts: &StallOptions,
    stats: &mut StallStats,
) -> anyhow::Result<Vec<Vec<CollectiveRecord>>> {
    const KINETO_COMM: &str = "source = 'kineto' AND category = 'communication' AND gpu_index IS NOT NULL";
    let jobs = Rows::new(
        "jobs",
        ctx.sql(&format!(
            "SELECT DISTINCT cluster, job_id FROM kernel_events WHERE {KINETO_COMM} ORDER BY cluster, job_id"
        ))
        .await
        .context("planning the imported kernels' jobs")?
        .collect()
        .await
        .context("reading the imported kernels' jobs")?,
    );
    let (clusters, job_ids) = (jobs.str_req("cluster")?, jobs.str("job_id")?);
    if clusters.is_empty() {
        return Ok(Vec::new());
    }
    let inner = input_range(start_ns, end_ns, opts);
    let wide = TimeRange::new(inner.start_ns - ORDER_REACH_NS, inner.end_ns + ORDER_REACH_NS);
    let wds = Dataset::open_range(ds.root(), wide).await?;
    let mut groups = Vec::new();
    for (cluster, job) in clusters.iter().zip(&job_ids) {
        let job_is = job.as_deref().map_or("job_id IS NULL".to_string(), |j| format!("job_id = {}", sql_str(j)));
        let this = format!("cluster = {} AND {job_is}", sql_str(cluster));
        let sql = format!(
            "SELECT * FROM kernel_events k WHERE {KINETO_COMM} AND {this} AND NOT EXISTS (\
             SELECT 1 FROM nccl_calls c WHERE c.cluster = k.cluster AND c.node = k.node \
             AND c.gpu_index = k.gpu_index AND c.kernel_start_ns = k.start_ns)"
        );
        let batches = wds.sql(&sql).await.context("planning the imported communication kernels")?;
        let batches = batches.collect().await.context("reading the imported communication kernels")?;
        let mut kernels = Vec::new();
        for b in &batches {
            kernels.extend(KernelEvent::from_batch(b).map_err(|e| anyhow::anyhow!("kernel_events: {e}"))?);
        }
        let margin = opts.match_window_ns;
        if kernels.iter().any(|k| k.start_ns < wide.start_ns + margin || k.end_ns > wide.end_ns - margin) {
            stats.order_jobs_cut.push(format!("{cluster}/{}", job.as_deref().unwrap_or("")));
            continue;
        }
        // Each trace's rank (`distributedInfo`), as its steps carry it.
        let ranks = Rows::new(
            "steps",
            wds.sql(&format!(
                "SELECT node, MIN(rank) AS lo, MAX(rank) AS hi FROM steps \
                 WHERE source = 'kineto' AND rank IS NOT NULL AND {this} GROUP BY node"
            ))
            .await
            .context("planning the imported traces' ranks")?
            .collect()
            .await
            .context("reading the imported traces' ranks")?,
        );
        let (nodes, lo, hi) = (ranks.str_req("node")?, ranks.i64_req("lo")?, ranks.i64_req("hi")?);
        let rank: HashMap<Arc<str>, i32> = nodes
            .into_iter()
            .zip(lo.into_iter().zip(hi))
            .filter(|(_, (lo, hi))| lo == hi)
            .filter_map(|(n, (r, _))| Some((n, i32::try_from(r).ok()?)))
            .collect();
        let records: Vec<CollectiveRecord> = kernels
            .iter()
            .filter_map(|k| {
                let m = opts.comm_kernels.lookup(&k.name)?;
                CollectiveRecord::from_kernel(k, &m, rank.get(&k.node).copied(), None)
            })
            .collect();
        let (numbered, refusals) = collective::order_by_position(records, &mut stats.matched);
        stats.order_refusals.extend(refusals.iter().map(ToString::to_string));
        let (lone, libs) = collective::unmatched_libraries(&numbered);
        stats.order_unmatched_kernels += lone;
        for l in libs {
            if !stats.order_unmatched_libraries.contains(&l) {
                stats.order_unmatched_libraries.push(l);
            }
        }
        groups.extend(collective::group(numbered).0);
    }
    stats.order_unmatched_libraries.sort_unstable();
    Ok(groups)
}

/// A fingerprint of the input files (names and sizes) that can hold rows of `[lo, hi)`.
fn fingerprint(files: &[(String, u64)], lo: i64, hi: i64) -> String {
    let mut mine: Vec<&(String, u64)> = files
        .iter()
        .filter(|(k, _)| {
            let Some(date) = layout::partition(k, "date") else { return true };
            match layout::partition(k, "hour").and_then(|h| h.parse::<u32>().ok()) {
                Some(hour) => layout::hour_start_ns(date, hour)
                    .is_none_or(|h0| h0 < hi && h0 + HOUR_NS > lo - DEFAULT_LOOKBACK_NS),
                None => true,
            }
        })
        .collect();
    mine.sort();
    // FNV-1a, 64 bits: stable across builds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, size) in &mine {
        for b in k.bytes().chain(size.to_le_bytes()).chain([b'\n']) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{}-{h:016x}", mine.len())
}

/// One chunk's rows, per (cluster, node).
type NodeBatches = HashMap<(Arc<str>, Arc<str>), Vec<CollectiveStall>>;

fn add_rows(out: &mut NodeBatches, rows: Vec<CollectiveStall>) {
    for r in rows {
        out.entry((r.cluster.clone(), r.node.clone())).or_default().push(r);
    }
}

/// The instances whose first arrival falls in `[c0, c0 + chunk)`.
async fn chunk(
    ctx: &SessionContext,
    reducer: &Reducer,
    c0: i64,
    opts: &StallOptions,
    by_order: &[Vec<CollectiveRecord>],
    counted: &mut HourCounts,
) -> anyhow::Result<NodeBatches> {
    let c1 = c0 + opts.chunk_ns;
    let ops = collective::COLLECTIVE_OPS.iter().map(|o| format!("'{o}'")).collect::<Vec<_>>().join(", ");
    let (lo, hi) = (c0 - opts.match_window_ns, c1 + opts.match_window_ns);
    let sql = format!(
        "SELECT cluster, node, job_id, pid, comm_hash, comm_name, seq, op, nranks, rank, gpu_index, gpu_uuid, bytes, \
         enter_ns, exit_ns, kernel_start_ns, kernel_end_ns FROM nccl_calls \
         WHERE (comm_hash IS NOT NULL OR comm_name IS NOT NULL) AND seq IS NOT NULL AND rank IS NOT NULL AND nranks IS NOT NULL \
         AND op IN ({ops}) AND enter_ns >= {lo} AND enter_ns < {hi} ORDER BY comm_hash, comm_name, job_id, seq"
    );
    let mut stream = ctx
        .sql(&sql)
        .await
        .context("planning the nccl_calls scan")?
        .execute_stream()
        .await
        .context("reading nccl_calls")?;
    let mut out = NodeBatches::new();
    let mut pending: Vec<Vec<CollectiveRecord>> = Vec::new();
    let mut pending_rows = 0usize;
    let mut current: Option<((CommId, i64), Vec<CollectiveRecord>)> = None;
    while let Some(batch) = stream.next().await {
        let batch = batch.context("reading nccl_calls")?;
        counted.calls_read += batch.num_rows() as u64;
        for r in read_calls(batch)? {
            let Some(key) = r.instance_key() else { continue };
            match &mut current {
                Some((k, recs)) if *k == key => recs.push(r),
                _ => {
                    if let Some((_, recs)) = current.take() {
                        pending_rows += recs.len();
                        pending.push(recs);
                    }
                    current = Some((key, vec![r]));
                }
            }
        }
        if pending_rows >= opts.batch_rows {
            add_rows(&mut out, resolve(reducer, std::mem::take(&mut pending), (c0, c1), counted)?);
            pending_rows = 0;
        }
    }
    if let Some((_, recs)) = current.take() {
        pending.push(recs);
    }
    pending.extend(by_order.iter().filter(|recs| (c0..c1).contains(&first_arrival(recs))).cloned());
    add_rows(&mut out, resolve(reducer, pending, (c0, c1), counted)?);
    Ok(out)
}

fn read_calls(batch: RecordBatch) -> anyhow::Result<Vec<CollectiveRecord>> {
    let r = Rows::new("nccl_calls", vec![batch]);
    let (cluster, node, job) = (r.str_req("cluster")?, r.str_req("node")?, r.str("job_id")?);
    let (pid, hash, name, seq, op) =
        (r.i64_req("pid")?, r.i64("comm_hash")?, r.str("comm_name")?, r.i64_req("seq")?, r.str_req("op")?);
    let (nranks, rank, gpu, uuid) = (r.i64_req("nranks")?, r.i64_req("rank")?, r.i64("gpu_index")?, r.str("gpu_uuid")?);
    let (bytes, enter, exit) = (r.i64("bytes")?, r.i64_req("enter_ns")?, r.i64("exit_ns")?);
    let (ks, ke) = (r.i64("kernel_start_ns")?, r.i64("kernel_end_ns")?);
    let mut out = Vec::with_capacity(r.len());
    for i in 0..r.len() {
        let comm = match (hash[i], &name[i]) {
            (Some(h), _) => CommId::Hash(h),
            (None, Some(n)) => CommId::Name { job: job[i].clone(), name: n.clone() },
            (None, None) => continue,
        };
        out.push(CollectiveRecord {
            cluster: cluster[i].clone(),
            node: node[i].clone(),
            job_id: job[i].clone(),
            pid: pid[i] as i32,
            gpu_index: gpu[i].map(|g| g as i32),
            gpu_uuid: uuid[i].clone(),
            comm: Some(comm),
            seq: Some(seq[i]),
            rank: Some(rank[i] as i32),
            nranks: Some(nranks[i] as i32),
            op: op[i].clone(),
            bytes: bytes[i],
            enter_ns: enter[i],
            exit_ns: exit[i],
            kernel: match (ks[i], ke[i]) {
                (Some(s), Some(e)) if e >= s => Some((s, e)),
                _ => None,
            },
            order: None,
        });
    }
    Ok(out)
}

/// The instances of `groups` that belong to this chunk (first arrival in
/// `span`; the others are read in another chunk's margin), matched.
fn resolve(
    reducer: &Reducer,
    groups: Vec<Vec<CollectiveRecord>>,
    span: (i64, i64),
    counted: &mut HourCounts,
) -> anyhow::Result<Vec<CollectiveStall>> {
    let mine: Vec<Vec<CollectiveRecord>> =
        groups.into_iter().filter(|recs| (span.0..span.1).contains(&first_arrival(recs))).collect();
    let (rows, _unmatched) =
        collective::resolve(reducer, mine, &mut counted.matched).context("reducer: sync stalls")?;
    Ok(rows)
}

/// The batch id of a chunk's stall files: `stalls-YYYYMMDDHH-MM` (its UTC hour and minute).
pub fn chunk_batch_id(c0: i64) -> String {
    let date = utc_date(c0).replace('-', "");
    let in_day = c0.rem_euclid(86_400_000_000_000);
    format!("stalls-{date}{:02}-{:02}", in_day / HOUR_NS, in_day % HOUR_NS / 60_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;
    use strand_schemas::protocol::batch_path;
    use strand_schemas::{NcclCall, to_parquet_bytes};

    const T0: i64 = 1_767_571_200_000_000_000;

    #[allow(clippy::too_many_arguments)]
    fn call(
        node: &str,
        hash: Option<i64>,
        seq: i64,
        op: &str,
        rank: i32,
        nranks: i32,
        enter: i64,
        kernel: Option<(i64, i64)>,
    ) -> NcclCall {
        let mut c = NcclCall::example(1);
        c.cluster = "c".into();
        c.node = node.into();
        (c.comm_hash, c.comm_name, c.seq, c.op, c.rank, c.nranks) =
            (hash, None, Some(seq), op.into(), Some(rank), Some(nranks));
        (c.enter_ns, c.exit_ns, c.gpu_index, c.bytes) = (T0 + enter, Some(T0 + enter + 10), Some(rank), Some(1 << 20));
        (c.kernel_start_ns, c.kernel_end_ns) = (kernel.map(|k| T0 + k.0), kernel.map(|k| T0 + k.1));
        c
    }

    /// A communication kernel of an imported trace on `node`'s GPU 0.
    fn kernel(node: &str, job: &str, name: &str, start: i64, dur: i64) -> KernelEvent {
        let mut k = KernelEvent::example(3);
        (k.cluster, k.node, k.job_id, k.gpu_index, k.device_id) =
            ("c".into(), node.into(), Some(job.into()), Some(0), 0);
        (k.start_ns, k.end_ns, k.launch_ns, k.stream_id) = (T0 + start, T0 + start + dur, None, 7);
        (k.kind, k.category, k.name, k.bytes, k.source) =
            ("kernel".into(), "communication".into(), name.into(), None, "kineto".into());
        k
    }

    fn write<T: Table>(dir: &std::path::Path, node: &str, batch: &str, rows: &[T], ts: i64) {
        let path = dir.join(batch_path(T::NAME, &utc_date(ts), "c", node, batch));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, to_parquet_bytes(rows).unwrap()).unwrap();
    }

    /// Imported kernels without a collective identity are matched by their
    /// order per job, as the postmortem matches them; kernels a call
    /// identifies are matched by that call only; a job whose traces reach
    /// beyond what the pass reads is not numbered, and said so.
    #[tokio::test]
    async fn imported_kernels_without_identity_are_matched_by_order_per_job() {
        let dir = tempfile::tempdir().unwrap();
        const DISPATCH: &str = "void deep_ep::intranode::dispatch<8, 768, 8192>(int4*, float*)";
        const ALLREDUCE: &str = "ncclDevKernel_AllReduce_Sum_f32_RING_LL";
        for node in ["a", "b"] {
            // Three dispatches; b starts the second 100 ns late. One all-reduce a call identifies.
            let mut ks: Vec<KernelEvent> = [1_000, 5_000, 9_000]
                .iter()
                .map(|&t| kernel(node, "j", DISPATCH, if node == "b" && t == 5_000 { t + 100 } else { t }, 500))
                .collect();
            ks.push(kernel(node, "j", ALLREDUCE, 20_000, 400));
            // Job k: one kernel in the range and one a day before it, at the edge of what is read.
            ks.push(kernel(node, "k", DISPATCH, 30_000, 10));
            ks.push(kernel(node, "k", DISPATCH, -HOUR_NS * 24 - 60_000_000_000, 10));
            for k in ks.iter().filter(|k| k.start_ns < T0) {
                write(dir.path(), node, &format!("kineto-{node}"), std::slice::from_ref(k), k.start_ns);
            }
            let ks: Vec<KernelEvent> = ks.into_iter().filter(|k| k.start_ns >= T0).collect();
            write(dir.path(), node, &format!("kineto-{node}"), &ks, T0);
            let rank = i32::from(node == "b");
            let mut c = call(node, Some(5), 0, "allreduce", rank, 2, 19_000, Some((20_000, 20_400)));
            c.gpu_index = Some(0);
            write(dir.path(), node, "batch-0001", &[c], T0);
        }
        let opts = StallOptions::default();
        let ds = Dataset::open_range(dir.path().to_str().unwrap(), input_range(T0, T0 + HOUR_NS, &opts)).await.unwrap();
        let out = tempfile::tempdir().unwrap();
        let sink = Output::local(out.path());
        let stats = compute(&ds, ds.context(), &Reducer::cpu(), T0, T0 + HOUR_NS, &sink, false, &opts, |_, _| {})
            .await
            .unwrap();
        let m = &stats.matched;
        assert_eq!((m.instances_exact, m.instances_by_order, m.order_kinds_matched), (4, 3, 1));
        assert_eq!(stats.order_jobs_cut, ["c/k"]);
        assert_eq!(stats.order_unmatched_kernels, 0, "the all-reduces are their calls'");
        assert!(stats.order_notes().iter().any(|n| n.contains("job(s) c/k were not matched by order")));
        let got = Dataset::open(out.path().to_str().unwrap()).await.unwrap();
        let b = got
            .sql("SELECT node, seq, stall_ns, matched_by, comm_name FROM collective_stalls ORDER BY matched_by, seq, node")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let r = Rows::new("collective_stalls", b);
        let (node, seq, stall) =
            (r.str_req("node").unwrap(), r.i64_req("seq").unwrap(), r.i64_req("stall_ns").unwrap());
        let by = r.str_req("matched_by").unwrap();
        let rows: Vec<(&str, &str, i64, i64)> = (0..r.len()).map(|i| (&*by[i], &*node[i], seq[i], stall[i])).collect();
        assert_eq!(
            rows,
            [
                ("id", "a", 0, 0),
                ("id", "b", 0, 0),
                ("order", "a", 0, 0),
                ("order", "b", 0, 0),
                ("order", "a", 1, 100),
                ("order", "b", 1, 0),
                ("order", "a", 2, 0),
                ("order", "b", 2, 0)
            ]
        );
        assert!(r.str("comm_name").unwrap()[2..].iter().all(|n| n.as_deref() == Some("stream 7")));
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
        let opts = StallOptions::default();
        let ds = Dataset::open_range(dir.path().to_str().unwrap(), input_range(T0, T0 + HOUR_NS, &opts)).await.unwrap();
        let out = tempfile::tempdir().unwrap();
        let sink = Output::local(out.path());
        let cpu = Reducer::cpu();
        let run = |reuse: bool| compute(&ds, ds.context(), &cpu, T0, T0 + HOUR_NS, &sink, reuse, &opts, |_, _| {});
        let stats = run(false).await.unwrap();
        let m = &stats.matched;
        assert_eq!(
            (
                m.instances_exact,
                m.instances_host_timed,
                m.instances_incomplete,
                m.instances_inconsistent,
                m.duplicate_rows
            ),
            (1, 1, 1, 1, 1)
        );
        let got = Dataset::open(out.path().to_str().unwrap()).await.unwrap();
        let b = got.sql("SELECT comm_hash, rank, node, time_source, stall_ns, is_last, lateness_ns, caused_stall_ns, transfer_ns FROM collective_stalls ORDER BY comm_hash, rank").await.unwrap().collect().await.unwrap();
        let r = Rows::new("collective_stalls", b);
        let (hash, stall, last) =
            (r.i64_req("comm_hash").unwrap(), r.i64_req("stall_ns").unwrap(), r.i64("lateness_ns").unwrap());
        let (src, caused, transfer) =
            (r.str_req("time_source").unwrap(), r.i64("caused_stall_ns").unwrap(), r.i64("transfer_ns").unwrap());
        assert_eq!(hash, [7, 7, 7, 8, 8]);
        // DESIGN §4: min(duration, last start − own start).
        assert_eq!(stall, [300, 250, 0, 600, 0]);
        assert_eq!(last, [None, None, Some(250), None, Some(600)]);
        // Rank 2 alone held the others: min(300, 250) + min(250, 250).
        assert_eq!(caused[2], Some(500));
        assert_eq!(transfer[..3], [Some(200), Some(200), Some(200)]);
        assert_eq!(src.iter().map(|s| &**s).collect::<Vec<_>>(), ["kernel", "kernel", "kernel", "host", "host"]);
        assert_eq!(r.str_req("node").unwrap()[2].as_ref(), "b");
        // One file per cluster and hour, and the hour's record.
        let mut files = sink.list("collective_stalls").await.unwrap();
        files.sort();
        assert_eq!(
            files,
            [
                "collective_stalls/date=2026-01-05/hour=00/_stalls.json",
                "collective_stalls/date=2026-01-05/hour=00/cluster_dir=c/stalls-2026010500.parquet"
            ]
        );
        // Re-running the hour replaces its files; with reuse and the same inputs it is not computed again.
        let again = run(false).await.unwrap();
        assert_eq!((again.hours, again.hours_reused, again.rows_written), (1, 0, 5));
        let reused = run(true).await.unwrap();
        assert_eq!((reused.hours, reused.hours_reused, reused.rows_written), (1, 1, 0));
        // A reused hour counts what it counted when computed: the same report.
        assert_eq!((reused.calls_read, &reused.matched), (again.calls_read, &again.matched));
        assert!(reused.calls_read > 0);
        let got = Dataset::open(out.path().to_str().unwrap()).await.unwrap();
        let n = got.sql("SELECT count(*) AS n FROM collective_stalls").await.unwrap().collect().await.unwrap();
        assert_eq!(Rows::new("n", n).i64_req("n").unwrap(), [5]);
        // New input for the hour: computed again.
        let late = vec![call("b", Some(7), 1, "allreduce", 2, 3, 1000, Some((1000, 1100)))];
        let path = dir.path().join(batch_path("nccl_calls", &utc_date(T0), "c", "b", "batch-0009"));
        std::fs::write(path, to_parquet_bytes(&late).unwrap()).unwrap();
        let ds = Dataset::open_range(dir.path().to_str().unwrap(), input_range(T0, T0 + HOUR_NS, &opts)).await.unwrap();
        let fresh =
            compute(&ds, ds.context(), &Reducer::cpu(), T0, T0 + HOUR_NS, &sink, true, &opts, |_, _| {}).await.unwrap();
        assert_eq!((fresh.hours_reused, fresh.rows_written), (0, 8), "seq 1 is complete now");
    }
}
