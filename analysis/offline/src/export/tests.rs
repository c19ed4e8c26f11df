//! The export read back (serde_json) and checked against the source rows:
//! the real Kineto traces (`../shared/data/kineto`) and an agent-style
//! dataset written by `strand import kineto`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;
use strand_analysis::{Leaf, collective};
use strand_schemas::{Step, Window, read_file};

use super::*;
use crate::kineto::{self, KinetoOptions};
use crate::postmortem::tests::{nccl_kernels, without_collective_metadata, write_trace};
use crate::tests_support::kineto_dir;

fn run_options(inputs: Vec<PathBuf>) -> RunOptions {
    RunOptions {
        inputs,
        job: None,
        window_ns: None,
        launch_gap_ns: 50_000,
        lateness_ns: None,
        sample_period_ns: 1_000_000_000,
        kineto: KinetoOptions { cluster: "kineto".into(), ..Default::default() },
        flops_per_step: None,
        dtype: None,
        gpu_name: None,
        peaks: Default::default(),
        progress: false,
        comm_kernels: Default::default(),
    }
}

fn export(inputs: Vec<PathBuf>, out: &Path, max_events: usize, range: (Option<i64>, Option<i64>)) -> ExportSummary {
    export_trace(&ExportOptions {
        run: run_options(inputs),
        backend: Backend::Cpu,
        out: out.to_path_buf(),
        max_events,
        from_ns: range.0,
        to_ns: range.1,
    })
    .unwrap()
}

/// The trace read back: events, and the names of processes and threads.
struct Back {
    events: Vec<Value>,
    procs: HashMap<u64, String>,
    threads: HashMap<(u64, u64), String>,
}

impl Back {
    fn read(path: &Path) -> Self {
        let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(v["displayTimeUnit"], "ns");
        let events = v["traceEvents"].as_array().unwrap().clone();
        let mut procs = HashMap::new();
        let mut threads = HashMap::new();
        for e in events.iter().filter(|e| e["ph"] == "M") {
            let (pid, tid) = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
            let name = e["args"]["name"].as_str().map(str::to_string);
            match (e["name"].as_str().unwrap(), name) {
                ("process_name", Some(n)) => {
                    procs.insert(pid, n);
                }
                ("thread_name", Some(n)) => {
                    threads.insert((pid, tid), n);
                }
                _ => {}
            }
        }
        Self { events, procs, threads }
    }

    fn of(&self, ph: &str, cat: Option<&str>) -> impl Iterator<Item = &Value> {
        let cat = cat.map(str::to_string);
        self.events.iter().filter(move |e| e["ph"] == ph && cat.as_ref().is_none_or(|c| e["cat"] == c.as_str()))
    }

    /// The GPU of an event's process ("node GPU g", without the rank).
    fn gpu(&self, e: &Value) -> String {
        let n = &self.procs[&e["pid"].as_u64().unwrap()];
        n.split(" (rank").next().unwrap().to_string()
    }

    /// The thread's track name without its lane.
    fn track(&self, e: &Value) -> String {
        let n = &self.threads[&(e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap())];
        n.split(" (").next().unwrap().to_string()
    }
}

fn ns(v: &Value) -> i64 {
    (v.as_f64().unwrap() * 1000.0).round() as i64
}

#[test]
fn kineto_export_has_every_kernel_on_its_stream_nested_collectives_and_the_postmortem_figures() {
    // The real 2-rank NCCL trace as two ranks; rank 1 starts one all-reduce 100 µs late.
    let tmp = tempfile::tempdir().unwrap();
    let r0 = without_collective_metadata(0);
    let mut r1 = without_collective_metadata(1);
    let late = nccl_kernels(&r0)[5];
    let e = &mut r1["traceEvents"][late];
    e["ts"] = serde_json::json!(e["ts"].as_f64().unwrap() + 100.0);
    e["dur"] = serde_json::json!(e["dur"].as_f64().unwrap() - 100.0);
    let inputs = vec![tmp.path().join("rank0.json"), tmp.path().join("rank1.json")];
    write_trace(&inputs[0], &r0);
    write_trace(&inputs[1], &r1);
    let out = tmp.path().join("trace.json");
    let s = export(inputs.clone(), &out, 10_000_000, (None, None));
    assert_eq!(s.dropped, 0);
    assert!(s.truncation(10_000_000).is_none());
    let back = Back::read(&out);

    // Kernels: count and total duration per GPU and stream, as the traces hold them.
    let mut want: BTreeMap<(String, String), (usize, i64)> = BTreeMap::new();
    for f in &inputs {
        let t = kineto::read_trace(f, &KinetoOptions { cluster: "kineto".into(), ..Default::default() }).unwrap();
        for k in t.kernels() {
            let e = want
                .entry((format!("{} GPU {}", k.node, k.gpu_index.unwrap()), format!("stream {}", k.stream_id)))
                .or_default();
            e.0 += 1;
            e.1 += k.end_ns - k.start_ns;
        }
    }
    let mut got: BTreeMap<(String, String), (usize, i64)> = BTreeMap::new();
    for e in back.of("X", Some("kernel")) {
        let x = got.entry((back.gpu(e), back.track(e))).or_default();
        x.0 += 1;
        x.1 += ns(&e["dur"]);
    }
    assert!(!want.is_empty());
    assert_eq!(got, want);
    assert_eq!(s.kernels, want.values().map(|v| v.0).sum::<usize>());

    // Collectives: the matcher's rows, the stall nested first, the transfer after it.
    let reducer = Arc::new(Reducer::new(Backend::Cpu).unwrap());
    let run = run::read(&run_options(inputs.clone()), &reducer, |_| Ok(())).unwrap();
    let mut stats = run.order_stats.clone();
    let stalls: Vec<_> = collective::match_all(&reducer, &run.calls, &run.ordered, &mut stats)
        .unwrap()
        .into_iter()
        .filter(|s| s.gpu_index.is_some())
        .collect();
    assert!(stalls.iter().any(|s| s.stall_ns > 0), "the test needs a collective that stalled");
    let parents: Vec<&Value> =
        back.of("X", Some("collective")).filter(|e| e["args"]["sync_stall_ns"].is_i64()).collect();
    assert_eq!(parents.len(), stalls.len());
    let stall_sum: i64 =
        back.of("X", Some("collective")).filter(|e| e["name"] == "sync stall").map(|e| ns(&e["dur"])).sum();
    let want_stall: i64 = stalls.iter().map(|s| s.stall_ns.clamp(0, s.end_ns - s.start_ns)).sum();
    assert_eq!(stall_sum, want_stall);
    for (i, p) in back.events.iter().enumerate().filter(|(_, e)| e["args"]["sync_stall_ns"].is_i64()) {
        let (ts, dur) = (ns(&p["ts"]), ns(&p["dur"]));
        let stall = p["args"]["sync_stall_ns"].as_i64().unwrap().clamp(0, dur);
        let mut at = ts;
        for (k, name) in [(stall, "sync stall"), (dur - stall, "transfer")].into_iter().filter(|(k, _)| *k > 0) {
            let c = back.events[i + 1..]
                .iter()
                .find(|e| e["name"] == name && e["tid"] == p["tid"] && e["pid"] == p["pid"])
                .unwrap();
            assert_eq!((ns(&c["ts"]), ns(&c["dur"])), (at, k), "{name} of {p}");
            at += k;
        }
    }

    // Counters: per GPU, the window leaves add up to the postmortem's figures.
    let pm = crate::postmortem::postmortem(&crate::postmortem::PostmortemOptions {
        run: run_options(inputs),
        backend: Backend::Cpu,
        top_kernels: 1,
        thresholds: Default::default(),
    })
    .unwrap();
    assert_eq!(s.gpus, pm.gpus.len());
    for g in &pm.gpus {
        let name = format!("{} GPU {}", g.node, g.gpu_index);
        let samples: Vec<&Value> = back.of("C", None).filter(|e| back.gpu(e) == name).collect();
        assert!(!samples.is_empty(), "{name}");
        for l in strand_analysis::accounting::LEAVES {
            let sum: f64 = samples.iter().filter_map(|e| e["args"][l.name()].as_f64()).sum();
            let want = g.time.leaf(l);
            assert!(
                (sum * 1e6 - want as f64).abs() < 1.0 + want as f64 * 1e-9,
                "{name} {}: {sum} ms vs {want} ns",
                l.name()
            );
        }
    }
}

#[test]
fn dataset_export_has_the_tables_rows_steps_and_windows() {
    let data = kineto_dir();
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("data");
    let imported = crate::import::import_kineto(&crate::import::ImportOptions {
        traces: vec![data.join("alexnet_single_gpu.json.gz"), data.join("nccl_2rank_a100_rank0.json.gz")],
        out: ds.clone(),
        cluster: "lab".into(),
        node: None,
        job: Some("j1".into()),
        hta_scope: false,
        comm_kernels: Default::default(),
        max_json_value: None,
        window_ns: 1_000_000_000,
        launch_gap_ns: 50_000,
        backend: Backend::Cpu,
    })
    .unwrap();
    let out = tmp.path().join("trace.json");
    let s = export(vec![ds.clone()], &out, 10_000_000, (None, None));
    let back = Back::read(&out);
    assert_eq!(back.of("X", Some("kernel")).count(), imported.iter().map(|t| t.kernels).sum::<usize>());

    let mut files = Vec::new();
    walk(&ds, &mut files);
    let windows: Vec<Window> = files
        .iter()
        .filter(|f| f.starts_with(ds.join("windows")))
        .flat_map(|f| read_file::<Window>(f).unwrap())
        .collect();
    let steps: Vec<Step> =
        files.iter().filter(|f| f.starts_with(ds.join("steps"))).flat_map(|f| read_file::<Step>(f).unwrap()).collect();
    assert!(!windows.is_empty() && !steps.is_empty());
    assert_eq!(back.of("X", Some("step")).count() + back.of("X", Some("checkpoint")).count(), steps.len());
    assert_eq!(s.steps, steps.len());
    // One counter sample per window, and a zero after each window that a gap follows.
    let mut by_gpu: BTreeMap<(String, i32), Vec<&Window>> = BTreeMap::new();
    for w in &windows {
        by_gpu.entry((w.node.to_string(), w.gpu_index)).or_default().push(w);
    }
    let mut want = 0;
    for ws in by_gpu.values_mut() {
        ws.sort_by_key(|w| w.start_ns);
        want += ws.len()
            + ws.iter().enumerate().filter(|(i, w)| ws.get(i + 1).is_none_or(|n| n.start_ns > w.end_ns)).count();
    }
    assert_eq!(back.of("C", None).count(), want);
    // The leaves of every window add up to its length.
    let total_ms: f64 =
        back.of("C", None).flat_map(|e| e["args"].as_object().unwrap().values().map(|v| v.as_f64().unwrap())).sum();
    let powered: i64 = windows.iter().map(|w| w.end_ns - w.start_ns).sum();
    assert!((total_ms * 1e6 - powered as f64).abs() < windows.len() as f64, "{total_ms} ms vs {powered} ns");
    let _ = Leaf::ProductiveCompute;
}

#[test]
fn max_events_keeps_the_earliest_and_says_so_and_a_range_keeps_what_overlaps_it() {
    let data = kineto_dir();
    let tmp = tempfile::tempdir().unwrap();
    let input = vec![data.join("alexnet_single_gpu.json.gz")];
    let full = export(input.clone(), &tmp.path().join("full.json"), 10_000_000, (None, None));
    let out = tmp.path().join("cut.json");
    let s = export(input.clone(), &out, 100, (None, None));
    let back = Back::read(&out);
    let kept: Vec<&Value> = back.events.iter().filter(|e| e["ph"] != "M").collect();
    assert!(kept.len() <= 100 && kept.len() > 90, "{}", kept.len());
    let cut = s.cut_at_ns.unwrap();
    assert!(kept.iter().all(|e| ns(&e["ts"]) <= cut));
    let msg = s.truncation(100).unwrap();
    assert!(msg.contains("--max-events 100") && msg.contains("--from/--to"), "{msg}");
    let full_events = full.kernels + full.collectives + full.counters + full.steps + full.instants;
    assert!(
        s.dropped > 0 && s.dropped + kept.len() >= full_events - 10,
        "{} + {} vs {full_events}",
        s.dropped,
        kept.len()
    );

    // A range: every slice overlaps it, and only those.
    let mut starts: Vec<i64> =
        Back::read(&tmp.path().join("full.json")).of("X", Some("kernel")).map(|e| ns(&e["ts"])).collect();
    starts.sort_unstable();
    let (from, to) = (starts[starts.len() / 3], starts[starts.len() / 2]);
    let out = tmp.path().join("range.json");
    let r = export(input, &out, 10_000_000, (Some(from), Some(to)));
    assert!(r.kernels >= starts.len() / 2 - starts.len() / 3 && r.kernels < full.kernels, "{r:?}");
    for e in Back::read(&out).of("X", None) {
        let (ts, dur) = (ns(&e["ts"]), ns(&e["dur"]));
        assert!(ts < to && ts + dur >= from, "{e}");
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
}
