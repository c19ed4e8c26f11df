//! `strand export trace`: one run as a timeline that Perfetto UI
//! (ui.perfetto.dev) and `chrome://tracing` open, in the Chrome Trace Event
//! Format (JSON: both read it; Perfetto's protobuf would need a schema
//! dependency for nothing either viewer lacks).
//!
//! The run is read as the postmortem reads it ([`crate::run`]), so the
//! timeline shows the same rows and the same figures:
//! - a process per node and GPU, a thread per CUDA stream: every kernel,
//!   copy and set record (`X` slices; names by `M` metadata events);
//! - a `collectives` thread per GPU: each collective of the one matcher
//!   (`strand_analysis::collective`, the `collective_stalls` rows) as a slice
//!   with its sync stall and its transfer nested inside, the wait first;
//!   NCCL calls the matcher could not place, whole, their split unknown;
//! - `C` counters per GPU: the time decomposition of each window (the one
//!   accounting's leaves, `strand_analysis::accounting`), in ms per window;
//! - a thread per step phase (steps, checkpoints) and GPU events (XIDs…)
//!   as instants.
//!
//! Timestamps are µs from the run's start (the earliest window, kernel or step),
//! which keeps nanoseconds exact in a JSON double; the start itself is in
//! `otherData.start_utc`. The output is bounded: `--from`/`--to` choose a
//! part of the run and `max_events` caps the events, keeping the earliest.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};
use strand_analysis::GpuTime;
use strand_analysis::accounting::LEAVES;
use strand_kernels::{Backend, Reducer};
use strand_schemas::KernelEvent;

use crate::run::{self, RunOptions};

/// What `strand export trace` does.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub run: RunOptions,
    pub backend: Backend,
    pub out: PathBuf,
    /// At most this many events (metadata events aside); the earliest are kept.
    pub max_events: usize,
    /// Only what overlaps [from, to), in ns from the run's start.
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub out: PathBuf,
    pub gpus: usize,
    pub kernels: usize,
    pub collectives: usize,
    pub counters: usize,
    pub steps: usize,
    pub instants: usize,
    /// Events within the time range left out by `max_events`.
    pub dropped: usize,
    /// When events were dropped: ns from the run's start of the first one left out.
    pub cut_at_ns: Option<i64>,
    /// The run's start (UTC ns) and length.
    pub start_ns: i64,
    pub span_ns: i64,
}

impl ExportSummary {
    /// The message for people when `max_events` cut the trace.
    pub fn truncation(&self, max_events: usize) -> Option<String> {
        let cut = self.cut_at_ns?;
        Some(format!(
            "the trace was cut at --max-events {max_events}: it holds the run's first {} of {} ({} later events left out); export a later part with --from/--to, or raise --max-events",
            strand_render::fmt_duration(cut),
            strand_render::fmt_duration(self.span_ns),
            self.dropped
        ))
    }
}

/// Where an event goes: a GPU (node, index) or a node's host side.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct ProcKey {
    node: Arc<str>,
    gpu: Option<i32>,
}

/// A thread of a process; threads of one kind that overlap are split in lanes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Track {
    Stream(i64),
    Collectives,
    Phase(String),
}

impl Track {
    fn name(&self) -> String {
        match self {
            Track::Stream(s) => format!("stream {s}"),
            Track::Collectives => "collectives".into(),
            Track::Phase(p) => p.clone(),
        }
    }

    fn order(&self) -> i64 {
        match self {
            Track::Phase(_) => 0,
            Track::Collectives => 1,
            Track::Stream(s) => 2 + (*s).clamp(0, i64::MAX / 4),
        }
    }
}

/// A slice, with the parts nested in it (a collective's stall and transfer).
#[derive(Debug, Clone)]
struct Slice {
    proc: ProcKey,
    track: Track,
    start: i64,
    end: i64,
    name: Arc<str>,
    cat: &'static str,
    args: Value,
    parts: Vec<(i64, i64, &'static str)>,
}

impl Slice {
    fn events(&self) -> usize {
        1 + self.parts.len()
    }
}

/// A kernel, compact until the run's range is known.
struct KernelRec {
    node: Arc<str>,
    gpu: i32,
    stream: i64,
    start: i64,
    end: i64,
    name: Arc<str>,
    kind: Arc<str>,
    correlation: i64,
}

impl KernelRec {
    fn of(k: &KernelEvent, kinds: &mut HashSet<Arc<str>>) -> Option<Self> {
        let kind = match kinds.get(k.kind.as_str()) {
            Some(x) => x.clone(),
            None => {
                let x: Arc<str> = Arc::from(k.kind.as_str());
                kinds.insert(x.clone());
                x
            }
        };
        Some(Self {
            node: k.node.clone(),
            gpu: k.gpu_index?,
            stream: k.stream_id,
            start: k.start_ns,
            end: k.end_ns.max(k.start_ns),
            name: k.name.clone(),
            kind,
            correlation: k.correlation_id,
        })
    }

    fn slice(self) -> Slice {
        Slice {
            proc: ProcKey { node: self.node, gpu: Some(self.gpu) },
            track: Track::Stream(self.stream),
            start: self.start,
            end: self.end,
            name: self.name,
            cat: "kernel",
            args: json!({"kind": &*self.kind, "correlation_id": self.correlation}),
            parts: Vec::new(),
        }
    }
}

/// A counter sample: the window's leaves in ms.
struct Counter {
    proc: ProcKey,
    ts: i64,
    values: Vec<(&'static str, f64)>,
}

struct Instant {
    proc: ProcKey,
    ts: i64,
    name: String,
    args: Value,
}

/// Writes the run's timeline to `opts.out`.
pub fn export_trace(opts: &ExportOptions) -> anyhow::Result<ExportSummary> {
    let reducer = Arc::new(Reducer::new(opts.backend)?);
    let mut kinds = HashSet::new();
    let mut trace_kernels: Vec<KernelRec> = Vec::new();
    let mut buf = Vec::new();
    let run = run::read(&opts.run, &reducer, |t| {
        for at in (0..t.kernel_count()).step_by(16 * 1024) {
            t.kernels_into(at..(at + 16 * 1024).min(t.kernel_count()), &mut buf);
            trace_kernels.extend(buf.iter().filter_map(|k| KernelRec::of(k, &mut kinds)));
        }
        Ok(())
    })?;
    let w_start = run.windows.iter().map(|w| w.start_ns).min();
    let start = match (w_start, run.span) {
        (Some(w), Some((s, _))) => w.min(s),
        (Some(w), None) => w,
        (None, Some((s, _))) => s,
        (None, None) => anyhow::bail!("no windows or kernels in the input: nothing to put on a timeline"),
    };
    // A step that began before the first kernel (a profiler step) starts the timeline.
    let start = run.steps.iter().map(|s| s.start_ns).min().map_or(start, |s| s.min(start));
    let end =
        run.windows.iter().map(|w| w.end_ns).max().into_iter().chain(run.span.map(|s| s.1)).max().unwrap_or(start);
    let lo = start.saturating_add(opts.from_ns.unwrap_or(0).max(0));
    let hi = opts.to_ns.map_or(i64::MAX, |t| start.saturating_add(t.max(0)));
    if hi <= lo {
        anyhow::bail!("--to must be after --from");
    }
    let within = |s: i64, e: i64| e >= lo && s < hi;

    // Kernels: the earliest `max_events` of the range, whichever input they come from.
    let cap = opts.max_events;
    let mut kernels: Vec<KernelRec> = trace_kernels.into_iter().filter(|k| within(k.start, k.end)).collect();
    let mut dropped_kernels: Option<i64> = None;
    let mut n_dropped = 0usize;
    let trim = |v: &mut Vec<KernelRec>, dropped: &mut Option<i64>, n: &mut usize| {
        if v.len() > cap {
            v.sort_unstable_by_key(|k| (k.start, k.end));
            *n += v.len() - cap;
            let first_cut = v[cap].start;
            *dropped = Some(dropped.map_or(first_cut, |d| d.min(first_cut)));
            v.truncate(cap);
        }
    };
    trim(&mut kernels, &mut dropped_kernels, &mut n_dropped);
    run::for_each_parquet_kernels(&opts.run, |rows| {
        kernels
            .extend(rows.iter().filter(|k| within(k.start_ns, k.end_ns)).filter_map(|k| KernelRec::of(k, &mut kinds)));
        if kernels.len() > 2 * cap.max(1) {
            trim(&mut kernels, &mut dropped_kernels, &mut n_dropped);
        }
        Ok(())
    })?;
    trim(&mut kernels, &mut dropped_kernels, &mut n_dropped);

    // Collectives: the one matcher, as the postmortem runs it.
    let all = run.matched(&reducer)?;
    let mut matched: HashSet<(Arc<str>, i32, i64, i64)> = HashSet::new();
    let mut slices: Vec<Slice> = Vec::new();
    for s in &all.stalls {
        matched.insert((s.node.clone(), s.pid, s.comm_hash, s.seq));
        let (Some(g), true) = (s.gpu_index, within(s.start_ns, s.end_ns)) else { continue };
        let end = s.end_ns.max(s.start_ns);
        let stall_end = (s.start_ns + s.stall_ns.max(0)).min(end);
        let mut parts = Vec::new();
        if stall_end > s.start_ns {
            parts.push((s.start_ns, stall_end, "sync stall"));
        }
        if end > stall_end {
            parts.push((stall_end, end, "transfer"));
        }
        slices.push(Slice {
            proc: ProcKey { node: s.node.clone(), gpu: Some(g) },
            track: Track::Collectives,
            start: s.start_ns,
            end,
            name: Arc::from(s.op.as_str()),
            cat: "collective",
            args: json!({
                "comm": s.comm_name.clone().unwrap_or_else(|| format!("{:#x}", s.comm_hash)),
                "seq": s.seq, "rank": s.rank, "nranks": s.nranks, "bytes": s.bytes,
                "sync_stall_ns": s.stall_ns, "transfer_ns": s.transfer_ns, "is_last": s.is_last,
                "time_source": s.time_source, "matched_by": s.matched_by,
            }),
            parts,
        });
    }
    for c in &run.calls {
        let (Some(g), Some(ks), Some(ke)) = (c.gpu_index, c.kernel_start_ns, c.kernel_end_ns) else { continue };
        if c.comm_hash.zip(c.seq).is_some_and(|(h, q)| matched.contains(&(c.node.clone(), c.pid, h, q)))
            || !within(ks, ke)
        {
            continue;
        }
        slices.push(Slice {
            proc: ProcKey { node: c.node.clone(), gpu: Some(g) },
            track: Track::Collectives,
            start: ks,
            end: ke.max(ks),
            name: Arc::from(c.op.as_str()),
            cat: "collective",
            args: json!({"seq": c.seq, "rank": c.rank, "bytes": c.bytes, "sync_stall": "unknown (not matched across ranks)"}),
            parts: Vec::new(),
        });
    }

    // Steps and checkpoints.
    let mut rank_gpu: HashMap<(Arc<str>, i32), i32> = HashMap::new();
    for (k, r) in &run.ranks {
        rank_gpu.insert((k.node.clone(), *r), k.gpu_index);
    }
    for s in run.steps.iter().filter(|s| within(s.start_ns, s.end_ns)) {
        let gpu = s.gpu_index.or_else(|| s.rank.and_then(|r| rank_gpu.get(&(s.node.clone(), r)).copied()));
        slices.push(Slice {
            proc: ProcKey { node: s.node.clone(), gpu },
            track: Track::Phase(s.phase.clone()),
            start: s.start_ns,
            end: s.end_ns.max(s.start_ns),
            name: Arc::from(match s.step {
                Some(n) => format!("{} {n}", s.phase),
                None => s.phase.clone(),
            }),
            cat: if s.phase.starts_with("checkpoint") { "checkpoint" } else { "step" },
            args: json!({"rank": s.rank, "pid": s.pid, "model_flops": s.model_flops, "tokens": s.tokens, "source": s.source}),
            parts: Vec::new(),
        });
    }

    // Window counters: the one accounting's leaves of each window.
    let mut by_gpu: BTreeMap<ProcKey, Vec<&strand_schemas::Window>> = BTreeMap::new();
    for w in run.windows.iter().filter(|w| within(w.start_ns, w.end_ns)) {
        by_gpu.entry(ProcKey { node: w.node.clone(), gpu: Some(w.gpu_index) }).or_default().push(w);
    }
    let mut counters: Vec<Counter> = Vec::new();
    for (proc, mut ws) in by_gpu {
        ws.sort_by_key(|w| w.start_ns);
        let leaves: Vec<(i64, Vec<i64>)> = ws
            .iter()
            .map(|w| {
                let e = all.exact_stall(w);
                let mut t = GpuTime::new();
                t.update(w, e);
                (w.start_ns, LEAVES.iter().map(|l| t.leaf(*l)).collect())
            })
            .collect();
        let used: Vec<usize> = (0..LEAVES.len()).filter(|&i| leaves.iter().any(|(_, v)| v[i] != 0)).collect();
        for (i, (ts, v)) in leaves.iter().enumerate() {
            counters.push(Counter {
                proc: proc.clone(),
                ts: *ts,
                values: used.iter().map(|&j| (LEAVES[j].name(), v[j] as f64 / 1e6)).collect(),
            });
            // A gap after this window: the counters drop to zero until the next.
            let w_end = ws[i].end_ns;
            if ws.get(i + 1).is_none_or(|n| n.start_ns > w_end) {
                counters.push(Counter {
                    proc: proc.clone(),
                    ts: w_end,
                    values: used.iter().map(|&j| (LEAVES[j].name(), 0.0)).collect(),
                });
            }
        }
    }
    let instants: Vec<Instant> = run
        .gpu_events
        .iter()
        .filter(|e| within(e.ts_ns, e.ts_ns))
        .map(|e| Instant {
            proc: ProcKey { node: e.node.clone(), gpu: e.gpu_index },
            ts: e.ts_ns,
            name: match e.xid {
                Some(x) => format!("{} (XID {x})", e.kind),
                None => e.kind.clone(),
            },
            args: json!({"value": e.value, "pid": e.pid, "detail": e.detail}),
        })
        .collect();

    // One cap over everything: the earliest events of the range.
    enum Item {
        Slice(Slice),
        Counter(Counter),
        Instant(Instant),
    }
    let mut items: Vec<(i64, Item)> = Vec::with_capacity(kernels.len() + slices.len() + counters.len());
    items.extend(kernels.into_iter().map(|k| (k.start, Item::Slice(k.slice()))));
    items.extend(slices.into_iter().map(|s| (s.start, Item::Slice(s))));
    items.extend(counters.into_iter().map(|c| (c.ts, Item::Counter(c))));
    items.extend(instants.into_iter().map(|i| (i.ts, Item::Instant(i))));
    items.sort_by_key(|(ts, _)| *ts);
    let mut total = 0usize;
    let mut keep = items.len();
    for (i, (_, it)) in items.iter().enumerate() {
        let n = match it {
            Item::Slice(s) => s.events(),
            _ => 1,
        };
        if total + n > cap {
            keep = i;
            break;
        }
        total += n;
    }
    if keep < items.len() {
        let cut = items[keep].0;
        n_dropped += items[keep..]
            .iter()
            .map(|(_, it)| match it {
                Item::Slice(s) => s.events(),
                _ => 1,
            })
            .sum::<usize>();
        dropped_kernels = Some(dropped_kernels.map_or(cut, |d| d.min(cut)));
        items.truncate(keep);
    }
    if let Some(cut) = dropped_kernels {
        // Kernels trimmed early may be before events kept here: keep nothing after the first cut.
        let before = items.len();
        items.retain(|(ts, _)| *ts < cut);
        n_dropped += before - items.len();
    }

    // Processes and lanes.
    let mut procs: BTreeSet<ProcKey> = BTreeSet::new();
    let mut summary =
        ExportSummary { out: opts.out.clone(), start_ns: start, span_ns: end - start, ..Default::default() };
    for (_, it) in &items {
        match it {
            Item::Slice(s) => {
                procs.insert(s.proc.clone());
                match (&s.track, s.cat) {
                    (Track::Stream(_), _) => summary.kernels += 1,
                    (Track::Collectives, _) => summary.collectives += 1,
                    _ => summary.steps += 1,
                }
            }
            Item::Counter(c) => {
                procs.insert(c.proc.clone());
                summary.counters += 1;
            }
            Item::Instant(i) => {
                procs.insert(i.proc.clone());
                summary.instants += 1;
            }
        }
    }
    summary.gpus = procs.iter().filter(|p| p.gpu.is_some()).count();
    summary.dropped = n_dropped;
    summary.cut_at_ns = dropped_kernels.map(|c| c - start);
    let pid_of: HashMap<&ProcKey, usize> = procs.iter().enumerate().map(|(i, p)| (p, i + 1)).collect();
    // Lanes: slices of one track that overlap (without nesting) go to a second lane.
    let mut lanes: BTreeMap<(usize, Track), Vec<i64>> = BTreeMap::new();
    let mut lane_of: Vec<usize> = Vec::with_capacity(items.len());
    for (_, it) in &items {
        let Item::Slice(s) = it else {
            lane_of.push(0);
            continue;
        };
        let ends = lanes.entry((pid_of[&s.proc], s.track.clone())).or_default();
        let lane = match ends.iter().position(|e| *e <= s.start) {
            Some(l) => l,
            None => {
                ends.push(i64::MIN);
                ends.len() - 1
            }
        };
        ends[lane] = s.end;
        lane_of.push(lane);
    }
    let mut tids: BTreeMap<(usize, Track, usize), usize> = BTreeMap::new();
    for ((pid, track), ends) in &lanes {
        for lane in 0..ends.len() {
            let n = tids.len() + 1;
            tids.insert((*pid, track.clone(), lane), n);
        }
    }

    // The JSON, streamed.
    let file = File::create(&opts.out).with_context(|| format!("cannot create {}", opts.out.display()))?;
    let mut w = BufWriter::new(file);
    let res = (|| -> std::io::Result<()> {
        let other = json!({
            "producer": format!("strand {}", env!("CARGO_PKG_VERSION")),
            "start_ns": start,
            "start_utc": strand_schemas::clock::rfc3339(start),
            "inputs": opts.run.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "window_ns": run.window_ns,
        });
        write!(w, "{{\"displayTimeUnit\":\"ns\",\"otherData\":{other},\"traceEvents\":[")?;
        let mut first = true;
        let mut emit = |w: &mut BufWriter<File>, ev: &dyn erased::Ev| -> std::io::Result<()> {
            if !first {
                w.write_all(b",\n")?;
            }
            first = false;
            ev.write(w)
        };
        for p in &procs {
            let pid = pid_of[p];
            let name = match p.gpu {
                Some(g) => match run.ranks.get(&strand_analysis::GpuKey { node: p.node.clone(), gpu_index: g }) {
                    Some(r) => format!("{} GPU {g} (rank {r})", p.node),
                    None => format!("{} GPU {g}", p.node),
                },
                None => format!("{} host", p.node),
            };
            emit(&mut w, &Meta { ph: "M", name: "process_name", pid, tid: 0, args: json!({"name": name}) })?;
            emit(&mut w, &Meta { ph: "M", name: "process_sort_index", pid, tid: 0, args: json!({"sort_index": pid}) })?;
        }
        for ((pid, track, lane), tid) in &tids {
            let name = if *lane == 0 { track.name() } else { format!("{} ({})", track.name(), lane + 1) };
            emit(&mut w, &Meta { ph: "M", name: "thread_name", pid: *pid, tid: *tid, args: json!({"name": name}) })?;
            let sort = track.order() * 16 + *lane as i64;
            emit(
                &mut w,
                &Meta { ph: "M", name: "thread_sort_index", pid: *pid, tid: *tid, args: json!({"sort_index": sort}) },
            )?;
        }
        let us = |ns: i64| (ns - start) as f64 / 1000.0;
        for ((_, it), lane) in items.iter().zip(&lane_of) {
            match it {
                Item::Slice(s) => {
                    let pid = pid_of[&s.proc];
                    let tid = tids[&(pid, s.track.clone(), *lane)];
                    emit(
                        &mut w,
                        &X {
                            ph: "X",
                            name: &s.name,
                            cat: s.cat,
                            ts: us(s.start),
                            dur: (s.end - s.start) as f64 / 1000.0,
                            pid,
                            tid,
                            args: &s.args,
                        },
                    )?;
                    for (a, b, name) in &s.parts {
                        emit(
                            &mut w,
                            &X {
                                ph: "X",
                                name,
                                cat: s.cat,
                                ts: us(*a),
                                dur: (b - a) as f64 / 1000.0,
                                pid,
                                tid,
                                args: &Value::Null,
                            },
                        )?;
                    }
                }
                Item::Counter(c) => {
                    let args: serde_json::Map<String, Value> =
                        c.values.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                    emit(
                        &mut w,
                        &C { ph: "C", name: "GPU time (ms per window)", ts: us(c.ts), pid: pid_of[&c.proc], args },
                    )?;
                }
                Item::Instant(i) => emit(
                    &mut w,
                    &I {
                        ph: "i",
                        s: "p",
                        name: &i.name,
                        cat: "gpu_event",
                        ts: us(i.ts),
                        pid: pid_of[&i.proc],
                        tid: 0,
                        args: &i.args,
                    },
                )?,
            }
        }
        w.write_all(b"]}\n")?;
        w.flush()
    })();
    res.with_context(|| format!("cannot write {}", opts.out.display()))?;
    Ok(summary)
}

/// The events, each written as one JSON object.
mod erased {
    pub trait Ev {
        fn write(&self, w: &mut dyn std::io::Write) -> std::io::Result<()>;
    }
    impl<T: serde::Serialize> Ev for T {
        fn write(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
            serde_json::to_writer(w, self).map_err(std::io::Error::other)
        }
    }
}

#[derive(Serialize)]
struct Meta {
    ph: &'static str,
    name: &'static str,
    pid: usize,
    tid: usize,
    args: Value,
}

#[derive(Serialize)]
struct X<'a> {
    ph: &'static str,
    name: &'a str,
    cat: &'static str,
    ts: f64,
    dur: f64,
    pid: usize,
    tid: usize,
    #[serde(skip_serializing_if = "Value::is_null")]
    args: &'a Value,
}

#[derive(Serialize)]
struct C {
    ph: &'static str,
    name: &'static str,
    ts: f64,
    pid: usize,
    args: serde_json::Map<String, Value>,
}

#[derive(Serialize)]
struct I<'a> {
    ph: &'static str,
    s: &'static str,
    name: &'a str,
    cat: &'static str,
    ts: f64,
    pid: usize,
    tid: usize,
    args: &'a Value,
}

/// The default path of the export: next to a postmortem's report.
pub fn default_path(dir: &Path) -> PathBuf {
    dir.join("trace.json")
}

#[cfg(test)]
mod tests;
