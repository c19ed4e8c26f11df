#!/usr/bin/env python3
"""CUPTI check (validate.sh): strand's kernel records against torch.profiler's,
and the step-time cost of `strand-agent wrap`.

  check_cupti.py WORK RESULT.json

WORK holds, as validate.sh writes them for the fixed bf16 training loop
(train_bf16.py; seeded, fixed shapes, so every run launches the same kernels):
  plain-N.json, strand-N.json, torch-profiler-N.json  step times and window per run
  trace-N.json               torch.profiler's Chrome trace of the measured steps
  data/                      the agent's Parquet (kernel_events)
  metrics-strand-N.txt       the agent's /metrics right after strand run N
  import.txt                 optional: `strand import kineto trace-0.json` output

Pass criteria, per strand run against torch.profiler's trace:
  - the same number of kernels in the measured window (and more than 0);
  - total kernel time within 2 %;
  - no record dropped: by the library, by CUPTI, or by the agent's writer;
and over the runs (mean of each run's median step time):
  - `wrap` costs under 1 % of the plain step time, and less than torch.profiler.
Also, when import.txt exists: `strand import kineto` reads every GPU record of the trace.
"""
import glob
import json
import re
import statistics
import sys

from common import metric_sum, read_table, run_check


def load(path):
    with open(path) as f:
        return json.load(f)


def median_step_ms(run):
    return statistics.median(run["step_ns"]) / 1e6


def profiler_kernels(trace):
    t = load(trace)
    events = t["traceEvents"] if isinstance(t, dict) else t
    cats = {"kernel": "kernel", "gpu_memcpy": "memcpy", "gpu_memset": "memset"}
    kinds = {"kernel": [0, 0], "memcpy": [0, 0], "memset": [0, 0]}
    for e in events:
        k = cats.get(e.get("cat"))
        if k and e.get("ph") == "X":
            kinds[k][0] += 1
            kinds[k][1] += round(float(e["dur"]) * 1000)
    return kinds


def strand_kernels(rows, run):
    t0, t1 = run["window_utc_ns"]
    kinds = {"kernel": [0, 0], "memcpy": [0, 0], "memset": [0, 0]}
    for r in rows:
        if r["pid"] == run["pid"] and r["kind"] in kinds and t0 <= r["start_ns"] <= t1:
            kinds[r["kind"]][0] += 1
            kinds[r["kind"]][1] += r["end_ns"] - r["start_ns"]
    return kinds


def analyse(work, res):
    runs = {m: [load(p) for p in sorted(glob.glob(f"{work}/{m}-[0-9]*.json"))] for m in ["plain", "strand", "torch-profiler"]}
    traces = sorted(glob.glob(f"{work}/trace-[0-9]*.json"))
    res.numbers["runs"] = {m: len(r) for m, r in runs.items()}
    if not (runs["plain"] and runs["strand"] and traces):
        res.criterion("plain, strand and torch.profiler runs completed", False, res.numbers["runs"], ">= 1 each")
        return
    first = runs["plain"][0]
    res.numbers.update(gpu=first["gpu"], torch=first["torch"], cuda=first["cuda"], steps=first["steps"])
    rows = read_table(f"{work}/data", "kernel_events", ["pid", "kind", "start_ns", "end_ns"])
    theirs = profiler_kernels(traces[0])
    res.numbers["torch_profiler"] = {k: {"count": n, "total_ms": t / 1e6} for k, (n, t) in theirs.items()}

    for i, s in enumerate(runs["strand"]):
        ours = strand_kernels(rows, s)
        (n1, t1), (n2, t2) = ours["kernel"], theirs["kernel"]
        res.numbers[f"strand_{i}"] = {k: {"count": n, "total_ms": t / 1e6} for k, (n, t) in ours.items()}
        res.criterion(f"run {i}: kernels in the window, strand = torch.profiler", n1 == n2 and n1 > 0, f"{n1} / {n2}", "equal, > 0")
        diff = (t1 - t2) / t2 * 100 if t2 else None
        res.criterion(f"run {i}: total kernel time, strand vs torch.profiler (%)",
                      diff is not None and abs(diff) < 2.0, None if diff is None else round(diff, 3), "within ±2")
        try:
            text = open(f"{work}/metrics-strand-{i}.txt").read()
        except OSError:
            text = ""
        pid = s["pid"]
        received = metric_sum(text, "strand_cupti_records_total", pid=pid)
        dropped = metric_sum(text, "strand_cupti_records_dropped_total", pid=pid)
        lost = metric_sum(text, "strand_cupti_frames_lost_total") + metric_sum(text, "strand_cupti_decode_errors_total")
        writer = metric_sum(text, "strand_agent_rows_dropped_total", table="kernel_events")
        res.numbers[f"strand_{i}"].update(records_received=received, dropped=dropped, frames_lost=lost, writer_dropped=writer)
        # No received-records series for the pid means the drop counters cannot be trusted either.
        res.criterion(f"run {i}: records dropped (library, CUPTI, wire, writer)",
                      received > 0 and dropped == 0 and lost == 0 and writer == 0,
                      f"received {received:.0f}, dropped {dropped:.0f}, frames lost {lost:.0f}, writer {writer:.0f}",
                      "received > 0, 0 dropped")

    base = statistics.mean(median_step_ms(r) for r in runs["plain"])
    res.numbers["median_step_ms"] = {"plain": base}
    over = {}
    for m in ["strand", "torch-profiler"]:
        if runs[m]:
            t = statistics.mean(median_step_ms(r) for r in runs[m])
            res.numbers["median_step_ms"][m] = t
            over[m] = (t - base) / base * 100
    res.numbers["overhead_pct"] = over
    res.criterion("step-time overhead of `strand-agent wrap` (%)", over["strand"] < 1.0, round(over["strand"], 3), "< 1")
    if "torch-profiler" in over:
        res.criterion("wrap's overhead below torch.profiler's (%)", over["strand"] < over["torch-profiler"],
                      f"{over['strand']:.3f} vs {over['torch-profiler']:.3f}", "strand < torch.profiler")

    try:
        text = open(f"{work}/import.txt").read()
    except OSError:
        res.note("strand import not run (no `strand` binary carried)")
        return
    # import counts every GPU record (kernels, copies, sets) as a kernel_events row.
    m = re.search(r": (\d+) kernels,", text)
    got = int(m.group(1)) if m else None
    want = sum(n for n, _ in theirs.values())
    res.criterion("`strand import kineto` GPU records = the trace's", got == want, got, want)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(0 if run_check("cupti", sys.argv[2], lambda r: analyse(sys.argv[1], r)).status() == "pass" else 1)
