//! One answer to one question (DESIGN §8a): the same data gives the same
//! figures and the same findings through every door — the agent's live
//! Prometheus totals, `strand import`, `strand postmortem` and `strand
//! report stranded` — to the nanosecond.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use strand_tests::*;

const T0: i64 = 1_767_571_200_000_000_000; // 2026-01-05T00:00:00Z, the simulator's default start
const HOUR: i64 = 3_600_000_000_000;
const MS: i64 = 1_000_000;

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_file(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// `[[leaf, ns], …]` as a map.
fn leaves(v: &Value) -> BTreeMap<String, i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a leaf list: {v}"))
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_i64().unwrap()))
        .collect()
}

fn report(data: &Path, out: &Path, from: i64, to: i64, window: &str) -> Value {
    report_with(data, out, from, to, window, &[])
}

fn report_with(data: &Path, out: &Path, from: i64, to: i64, window: &str, extra: &[&str]) -> Value {
    run(
        Command::new(bin("strand"))
            .args([
                "report",
                "stranded",
                "--window",
                window,
                "--from",
                &from.to_string(),
                "--to",
                &to.to_string(),
                "--data",
            ])
            .arg(data)
            .arg("--out")
            .arg(out)
            .args(extra),
        "strand report stranded",
    );
    json_file(&out.join("stranded.json"))
}

fn postmortem(inputs: &[PathBuf], job: Option<&str>, out: &Path) -> Value {
    let mut cmd = Command::new(bin("strand"));
    cmd.arg("postmortem").args(inputs).arg("--out").arg(out).arg("--no-progress");
    if let Some(j) = job {
        cmd.args(["--job", j]);
    }
    run(&mut cmd, "strand postmortem");
    json_file(&out.join("report.json"))
}

/// (kind, node, rank, comm_hash, start) of the findings of some kinds.
fn named(findings: &Value, kinds: &[&str]) -> Vec<(String, Value, Value, Value, i64)> {
    let mut v: Vec<_> = findings
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| kinds.contains(&f["kind"].as_str().unwrap()))
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["node"].clone(),
                f["rank"].clone(),
                f["comm_hash"].clone(),
                f["start_ns"].as_i64().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    v
}

#[test]
fn a_simulated_fleet_gives_the_same_answer_through_every_door() {
    // 8 nodes, 4 two-node jobs: a straggler rank (job 0), a slow bus on the
    // NVML-only nodes 2 and 3 (job 1), a crash and restart (job 2), a slow
    // node (job 3). Raw rows; windows by the agent's WindowBuilder.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fleet");
    run(
        Command::new(bin("strand-sim"))
            .args(["--nodes", "8", "--faults", "--nvml-only", "2", "--nvml-only", "3", "--out"])
            .arg(&data),
        "strand-sim",
    );
    let r = report(&data, &dir.path().join("report"), T0, T0 + HOUR, "10s");
    let by_job: BTreeMap<String, &Value> =
        r["by_job"].as_array().unwrap().iter().map(|s| (s["key"].as_str().unwrap().to_string(), s)).collect();
    assert_eq!(by_job.keys().collect::<Vec<_>>(), ["sim/job-0000", "sim/job-0001", "sim/job-0002", "sim/job-0003"]);
    let mut fleet_named = named(&r["findings"], &["straggler", "restart"]);
    assert!(!fleet_named.is_empty());
    let mut postmortems_named = Vec::new();
    for (key, slice) in &by_job {
        let job = key.trim_start_matches("sim/");
        let pm = postmortem(std::slice::from_ref(&data), Some(job), &dir.path().join(format!("pm-{job}")));
        assert_eq!(pm["windows_source"], json!("recorded"), "the postmortem reads the agents' windows");
        // Every category, to the nanosecond.
        assert_eq!(
            leaves(&pm["run"]["leaves_ns"]),
            leaves(&slice["leaves_ns"]),
            "{job}: postmortem and fleet report disagree"
        );
        postmortems_named.extend(named(&pm["findings"], &["straggler", "restart"]));
    }
    // The same straggler (rank 3 of job 0; node 7's ranks of job 3) and the same restart.
    postmortems_named.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    fleet_named.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(postmortems_named, fleet_named);
    let kinds: Vec<&str> = fleet_named.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "restart").count(), 1, "{fleet_named:?}");
    assert!(
        fleet_named.iter().any(|f| f.0 == "straggler" && f.2 == json!(3)),
        "rank 3 of job 0 is named: {fleet_named:?}"
    );
    assert!(
        fleet_named.iter().any(|f| f.0 == "straggler" && f.1 == json!("node-0007") && f.2.is_null()),
        "the slow node is named: {fleet_named:?}"
    );
    // The NVML-only job is measured by NVML: busy (unclassified), hollow busy, idle.
    let nvml = leaves(&by_job["sim/job-0001"]["leaves_ns"]);
    assert!(nvml["busy_unclassified"] > 0 && nvml["hollow_busy"] > 0 && nvml["productive_compute"] == 0, "{nvml:?}");
}

/// A Kineto trace of one rank of a 4-rank job: 24 steps of 20 ms, each a
/// GEMM then an all-reduce; `late` computes `late_ns` longer per step.
fn kineto_rank(rank: i64, late_rank: i64, late_ns: i64) -> Value {
    kineto_rank_with(rank, late_rank, late_ns, NCCL_ALLREDUCE, true)
}

const NCCL_ALLREDUCE: &str = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)";
/// DeepEP's intranode dispatch as Kineto names it (demangled).
const DEEP_EP_DISPATCH: &str = "void deep_ep::intranode::dispatch<8, 768, 8192>(int4*, float*, int*, int const*)";

/// [`kineto_rank`] with another communication kernel, with or without the
/// collective metadata newer PyTorch puts on NCCL kernels (`Collective
/// name`, `Process Group Name`, `Seq`, …).
fn kineto_rank_with(rank: i64, late_rank: i64, late_ns: i64, comm_kernel: &str, metadata: bool) -> Value {
    let base: i64 = 1_767_571_200_000_000_000 + 3 * 3_600_000_000_000;
    let us = |ns: i64| ns as f64 / 1000.0;
    let compute = |r: i64| 10 * MS + if r == late_rank { late_ns } else { 0 } + r * 20_000;
    let mut ev = Vec::new();
    for step in 0..24i64 {
        let t = 1_000 * MS + step * 20 * MS;
        let c = compute(rank);
        let start_ar = t + MS / 2 + c;
        let last = (0..4).map(|r| t + MS / 2 + compute(r)).max().unwrap();
        let end_ar = last + MS;
        ev.push(json!({"ph": "X", "cat": "user_annotation", "name": format!("ProfilerStep#{step}"), "pid": 100, "tid": 100, "ts": us(t), "dur": us(20 * MS)}));
        ev.push(json!({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 100, "tid": 100, "ts": us(t + 10_000), "dur": 5.0, "args": {"correlation": 2 * step + 1}}));
        ev.push(json!({"ph": "X", "cat": "kernel", "name": "sm90_xmma_gemm_bf16bf16_bf16f32", "pid": 0, "tid": 7, "ts": us(t + MS / 2), "dur": us(c),
            "args": {"device": 0, "stream": 7, "correlation": 2 * step + 1}}));
        ev.push(json!({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 100, "tid": 100, "ts": us(t + 20_000), "dur": 5.0, "args": {"correlation": 2 * step + 2}}));
        let mut args = json!({"device": 0, "stream": 9, "correlation": 2 * step + 2});
        if metadata {
            let meta = json!({"Collective name": "allreduce", "In msg nelems": 1 << 20, "Group size": 4, "dtype": "BFloat16",
                              "Process Group Name": "0", "Process Group Ranks": "[0, 1, 2, 3]", "Seq": step});
            args.as_object_mut().unwrap().extend(meta.as_object().unwrap().clone());
        }
        ev.push(json!({"ph": "X", "cat": "kernel", "name": comm_kernel, "pid": 0, "tid": 9,
            "ts": us(start_ar), "dur": us(end_ar - start_ar), "args": args}));
    }
    json!({"schemaVersion": 1, "distributedInfo": {"rank": rank, "world_size": 4, "backend": "nccl"},
           "deviceProperties": [{"id": 0, "name": "NVIDIA H100 80GB HBM3"}], "baseTimeNanoseconds": base, "traceEvents": ev})
}

#[test]
fn imported_kineto_traces_name_the_late_rank_in_the_fleet_report_as_in_the_postmortem() {
    let dir = tempfile::tempdir().unwrap();
    let traces: Vec<PathBuf> = (0..4)
        .map(|r| {
            let p = dir.path().join(format!("rank{r}.json"));
            std::fs::write(&p, kineto_rank(r, 2, 3 * MS).to_string()).unwrap();
            p
        })
        .collect();
    let data = dir.path().join("ds");
    let out = run(
        Command::new(bin("strand")).args(["import", "kineto", "--job", "j1", "--out"]).arg(&data).args(&traces),
        "strand import kineto",
    );
    assert!(out.lines().count() == 4 && out.contains("windows"), "{out}");
    let day = T0 + 3 * HOUR - HOUR;
    let r = report(&data, &dir.path().join("report"), day, day + 3 * HOUR, "10s");
    let fleet = named(&r["findings"], &["straggler"]);
    assert_eq!(fleet.len(), 1, "only the late rank is named: {:#?}", r["findings"]);
    assert_eq!((fleet[0].1.clone(), fleet[0].2.clone()), (json!("rank2"), json!(2)));
    // The postmortem of the traces themselves: the same rank, the same stalls.
    let pm = postmortem(&traces, Some("j1"), &dir.path().join("pm"));
    assert_eq!(named(&pm["findings"], &["straggler"]), fleet);
    let stall = |v: &Value| leaves(v)["sync_stall"];
    assert_eq!(stall(&pm["run"]["leaves_ns"]), stall(&r["totals"]["leaves_ns"]), "the stall total is one figure");
    assert!(stall(&pm["run"]["leaves_ns"]) > 0);
    let caused = |f: &Value| f["figures"]["caused_stall_gpu_s"].as_f64().unwrap();
    let fleet_f = r["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "straggler").unwrap();
    let pm_f = pm["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "straggler").unwrap();
    assert_eq!(caused(fleet_f), caused(pm_f));
    // 3 peers wait 3 ms (+ the small rank offsets) in each of 24 all-reduces.
    assert!((caused(pm_f) - 24.0 * 3.0 * 3e-3).abs() < 24.0 * 3.0 * 0.1e-3, "{}", caused(pm_f));
    assert!(pm_f["summary"].as_str().unwrap().contains("of their GPU time"), "{}", pm_f["summary"]);
}

/// The stored `collective_stalls` rows of a dataset (`--store`), in (seq, rank) order.
fn stored_stalls(data: &Path) -> Vec<strand_schemas::CollectiveStall> {
    let mut rows = Vec::new();
    let mut dirs = vec![data.join("collective_stalls")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                rows.extend(strand_schemas::parquet_io::read_file::<strand_schemas::CollectiveStall>(&p).unwrap());
            }
        }
    }
    rows.sort_by_key(|r| (r.comm_hash, r.seq, r.rank));
    rows
}

/// Four ranks' traces whose communication kernels carry no collective
/// identity, imported together and reported on by the fleet, and the same
/// traces through the postmortem, of the traces and of the import:
/// (fleet report, stored stall rows, postmortems).
fn without_identity(
    dir: &Path,
    comm_kernel: &str,
    drop_one: bool,
) -> (Value, Vec<strand_schemas::CollectiveStall>, [Value; 2]) {
    let traces: Vec<PathBuf> = (0..4)
        .map(|r| {
            let mut t = kineto_rank_with(r, 2, 3 * MS, comm_kernel, false);
            if drop_one && r == 1 {
                // Rank 1's trace lost its last communication kernel.
                let ev = t["traceEvents"].as_array_mut().unwrap();
                let last = ev.iter().rposition(|e| e["name"] == json!(comm_kernel)).unwrap();
                ev.remove(last);
            }
            let p = dir.join(format!("rank{r}.json"));
            std::fs::write(&p, t.to_string()).unwrap();
            p
        })
        .collect();
    let data = dir.join("ds");
    run(
        Command::new(bin("strand")).args(["import", "kineto", "--job", "j1", "--out"]).arg(&data).args(&traces),
        "strand import kineto",
    );
    let day = T0 + 2 * HOUR;
    let r = report_with(&data, &dir.join("report"), day, day + 3 * HOUR, "10s", &["--store"]);
    let pm = postmortem(&traces, Some("j1"), &dir.join("pm"));
    let pm_import = postmortem(std::slice::from_ref(&data), Some("j1"), &dir.join("pm-import"));
    (r, stored_stalls(&data), [pm, pm_import])
}

/// Traces of older PyTorch (no collective metadata on NCCL kernels) and of a
/// library other than NCCL (DeepEP) give the fleet report what they give
/// the postmortem (of the traces, and of their import): each rank's k-th
/// kernel of a kind is one instance (`matched_by = order`), the late rank is
/// named, and its peers' sync stall is exactly its lateness.
#[test]
fn kernels_without_collective_identity_are_matched_by_order_in_the_fleet_report_as_in_the_postmortem() {
    for (kernel, library) in [(NCCL_ALLREDUCE, "nccl"), (DEEP_EP_DISPATCH, "deep_ep")] {
        let dir = tempfile::tempdir().unwrap();
        let (r, rows, pms) = without_identity(dir.path(), kernel, false);
        // 24 instances of 4 ranks, all matched by order, on device times.
        assert_eq!(rows.len(), 96, "{library}: {:#?}", r["notes"]);
        assert!(rows.iter().all(|x| x.matched_by.as_deref() == Some("order") && x.time_source == "kernel"));
        assert!(rows.iter().all(|x| x.comm_name.as_deref() == Some("stream 9") && x.nranks == 4));
        // Rank r starts 3 ms + (2 − r)·20 µs before rank 2 in every step: its stall, exactly.
        for x in &rows {
            let want = if x.rank == 2 { 0 } else { 3 * MS + (2 - i64::from(x.rank)) * 20_000 };
            assert_eq!(x.stall_ns, want, "{library}: rank {} seq {}", x.rank, x.seq);
            assert_eq!(x.is_last, x.rank == 2);
        }
        let stats = (r["stalls"]["instances_by_order"].as_i64(), r["stalls"]["order_kinds_matched"].as_i64());
        assert_eq!(stats, (Some(24), Some(1)), "{library}");
        let fleet = named(&r["findings"], &["straggler"]);
        assert_eq!(fleet.len(), 1, "{library}: {:#?}", r["findings"]);
        assert_eq!((fleet[0].1.clone(), fleet[0].2.clone()), (json!("rank2"), json!(2)));
        let caused = |v: &Value| {
            let f = v["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "straggler").unwrap();
            f["figures"]["caused_stall_gpu_s"].as_f64().unwrap()
        };
        // Rank 2 leads rank 3 by 2.98 ms: each peer's stall it caused is at most that (figure in 3 decimals).
        assert!((caused(&r) - 24.0 * 3.0 * 2.98e-3).abs() < 0.5e-3, "{library}: {}", caused(&r));
        let fleet_leaves = leaves(&r["totals"]["leaves_ns"]);
        assert_eq!(fleet_leaves["comm_split_unknown"], 0, "{library}: every communication kernel is split");
        assert!(fleet_leaves["sync_stall"] > 0);
        let said = |v: &Value| {
            v["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("matched_by = order"))
        };
        assert!(said(&r), "{library}: {:#?}", r["notes"]);
        // The same instances, late rank, stall caused, time split and notes through the postmortems.
        for pm in &pms {
            for k in ["instances_by_order", "order_kinds_matched", "instances_exact"] {
                assert_eq!(r["stalls"][k], pm["collectives"][k], "{library}: {k}");
            }
            assert_eq!(named(&pm["findings"], &["straggler"]), fleet, "{library}");
            assert_eq!(caused(&r), caused(pm), "{library}");
            assert_eq!(
                leaves(&pm["run"]["leaves_ns"]),
                fleet_leaves,
                "{library}: postmortem and fleet report disagree"
            );
            assert!(said(pm), "{library}: {:#?}", pm["notes"]);
        }
    }
}

/// When one rank's sequence of a kind is shorter, no door guesses: no
/// instance is matched by order, nobody is named, the split stays unknown,
/// and each says why in the same words.
#[test]
fn order_matching_refused_in_the_postmortem_is_refused_in_the_fleet_report_too() {
    let dir = tempfile::tempdir().unwrap();
    let (r, rows, pms) = without_identity(dir.path(), DEEP_EP_DISPATCH, true);
    assert!(rows.is_empty(), "{rows:?}");
    assert_eq!(r["stalls"]["order_refused_length"], json!(1));
    assert!(named(&r["findings"], &["straggler"]).is_empty());
    let refusal = |v: &Value| -> Vec<String> {
        let notes = v["notes"].as_array().unwrap().iter().filter_map(Value::as_str);
        notes.filter(|n| n.contains("not matched by order")).map(str::to_string).collect()
    };
    let want = "deep_ep kernel void deep_ep::intranode::dispatch<8, 768, 8192>(int4*, float*, int*, int const*) (stream 9): \
                not matched by order, the ranks ran it a different number of times \
                (rank0 GPU 0: 24, rank1 GPU 0: 23, rank2 GPU 0: 24, rank3 GPU 0: 24)";
    assert_eq!(refusal(&r), [want], "{:#?}", r["notes"]);
    let fleet_leaves = leaves(&r["totals"]["leaves_ns"]);
    assert_eq!(fleet_leaves["sync_stall"], 0);
    assert!(fleet_leaves["comm_split_unknown"] > 0, "the split is unknown, not guessed");
    for pm in &pms {
        assert_eq!(r["stalls"]["order_refused_length"], pm["collectives"]["order_refused_length"]);
        assert!(named(&pm["findings"], &["straggler"]).is_empty());
        assert_eq!(refusal(pm), [want]);
        assert_eq!(leaves(&pm["run"]["leaves_ns"]), fleet_leaves);
    }
}

fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// `strand_gpu_time_seconds_total` of GPU `gpu`, by category.
fn live_totals(metrics: &str, gpu: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with("strand_gpu_time_seconds_total{")) {
        let (labels, value) = line.rsplit_once(' ').unwrap();
        let get = |k: &str| {
            labels.split(&format!("{k}=\"")).nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_string()
        };
        if get("gpu") == gpu {
            out.insert(get("category"), value.parse().unwrap());
        }
    }
    out
}

#[test]
fn the_agents_live_totals_are_the_accounting_of_its_windows() {
    use strand_inject::sender::{Batch, Sender, SenderConfig};
    use strand_inject::wire::{Activity, Device, Kernel};
    use strand_schemas::clock::{MonoToUtc, utc_now_ns};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    // One NVML sample per hour (the first at start), 2 s windows: after the
    // kernels' window closes, no window is left open.
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n[nvml]\nperiod = \"1h\"\ninfiniband = false\n\
             [windows]\nperiod = \"2s\"\nlateness = \"2s\"\nnccl_join_hold = \"1s\"\n[ebpf]\nenabled = false\n",
            data.display()
        ),
    )
    .unwrap();
    let socket = data.join("cupti.sock");
    let mut agent = simulated_agent(&cfg, &socket);
    let period = 2_000 * MS;
    let t0 = (utc_now_ns() / period + 2) * period;
    let clock = MonoToUtc::measure();
    let k = |corr: u32, name: u32, stream: u32, s: i64, e: i64| {
        Activity::Kernel(Kernel {
            start: clock.to_monotonic(s) as u64,
            end: clock.to_monotonic(e) as u64,
            correlation_id: corr,
            device_id: 0,
            context_id: 1,
            stream_id: stream,
            name,
            grid: [132, 1, 1],
            block: [256, 1, 1],
        })
    };
    let acts = vec![
        Activity::Device(Device {
            id: 0,
            uuid: [0x51, 0x73, 0xa1, 0xd0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0],
            name: 3,
        }),
        k(1, 1, 7, t0 + 100 * MS, t0 + 400 * MS),
        k(2, 2, 9, t0 + 300 * MS, t0 + 900 * MS),
    ];
    let names = vec![
        (1u32, b"_Z19sm90_xmma_gemm_bf16PKvS0_Pv".to_vec().into_boxed_slice()),
        (2u32, b"ncclDevKernel_AllReduce_Sum_bf16_RING_LL".to_vec().into_boxed_slice()),
        (3u32, b"NVIDIA H100 80GB HBM3 (simulated)".to_vec().into_boxed_slice()),
    ];
    let sender = Sender::start(SenderConfig::new(socket, std::process::id(), 130002), None).unwrap();
    assert!(sender.submit(Batch { activities: acts, names }));
    assert!(sender.flush(Duration::from_secs(10)), "the agent took the records");
    sender.shutdown(Duration::from_secs(2));
    // Wait until the kernels' window has closed and been counted.
    let closed = eventually(Duration::from_secs(30), || {
        live_totals(&scrape(port), "0").get("comm_split_unknown").is_some_and(|v| *v > 0.0)
    });
    assert!(closed, "the kernels' window closes:\n{}", scrape(port));
    let live = live_totals(&scrape(port), "0");
    agent.signal(SIGTERM);
    assert!(agent.wait(Duration::from_secs(30)).success());

    // The same windows through the postmortem and the fleet report.
    let pm = postmortem(std::slice::from_ref(&data), None, &dir.path().join("pm"));
    let gpu0 = pm["gpus"].as_array().unwrap().iter().find(|g| g["gpu_index"] == json!(0)).unwrap();
    let pm_leaves = leaves(&gpu0["time"]["leaves_ns"]);
    let r = report(&data, &dir.path().join("report"), t0 - 2 * HOUR, t0 + HOUR, "2s");
    let node = r["by_node"].as_array().unwrap()[0]["key"].clone();
    assert!(node.as_str().is_some());
    for (leaf, ns) in &pm_leaves {
        let live_s = live.get(leaf).copied().unwrap_or(0.0);
        assert!((live_s - *ns as f64 * 1e-9).abs() < 1e-9, "{leaf}: live {live_s} s, postmortem {ns} ns\n{live:?}");
    }
    assert_eq!(
        pm_leaves["comm_split_unknown"],
        500 * MS,
        "the all-reduce's part not under the GEMM, split unknown (no NCCL calls)"
    );
    let gpus: i64 = r["by_node"].as_array().unwrap().iter().map(|s| s["gpus"].as_i64().unwrap()).sum();
    assert_eq!(gpus, 1);
    assert_eq!(leaves(&r["totals"]["leaves_ns"]), pm_leaves, "the fleet report of the agent's data");
}
