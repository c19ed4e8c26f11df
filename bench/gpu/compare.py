#!/usr/bin/env python3
"""Compares strand's CUPTI records with torch.profiler over the same
iterations, and step times across modes (docs/gpu-validation.md).

usage: compare.py OUT_DIR
OUT_DIR holds plain-*.json, strand-*.json + strand-*.jsonl (cupti_dump output),
torch-profiler-*.json + trace-*.json, as bench/gpu/cupti_validate.sh writes them.
Exits non-zero when a check fails: kernel counts differ, total kernel time
differs by more than 2%, strand's step-time overhead is 1% or more, or a drop
was counted.
"""
import glob
import json
import statistics
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def median_step_ms(run):
    return statistics.median(run["step_ns"]) / 1e6


def strand_kernels(jsonl, run):
    t0, t1 = run["window_monotonic_ns"]
    kinds = {"kernel": [0, 0], "memcpy": [0, 0], "memset": [0, 0]}
    summary = {}
    with open(jsonl) as f:
        for line in f:
            r = json.loads(line)
            if "summary" in r:
                summary = r["summary"]
                continue
            if r.get("pid") != run["pid"] or r["kind"] not in kinds or not (t0 <= r["start"] <= t1):
                continue
            kinds[r["kind"]][0] += 1
            kinds[r["kind"]][1] += r["end"] - r["start"]
    return kinds, summary.get(str(run["pid"]), {})


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


def main():
    out = sys.argv[1]
    runs = {m: [load(p) for p in sorted(glob.glob(f"{out}/{m}-[0-9]*.json"))] for m in ["plain", "strand", "torch-profiler"]}
    ok = True
    print(f"GPU: {runs['plain'][0]['gpu']}, torch {runs['plain'][0]['torch']}, CUDA {runs['plain'][0]['cuda']}")
    print(f"steps per run: {runs['plain'][0]['steps']}, runs per mode: " + ", ".join(f"{m} {len(r)}" for m, r in runs.items()))

    # Same iterations: strand's records in the measured window vs torch.profiler's trace.
    for i, s in enumerate(runs["strand"]):
        ours, summary = strand_kernels(f"{out}/strand-{i}.jsonl", s)
        theirs = profiler_kernels(f"{out}/trace-{min(i, len(runs['torch-profiler']) - 1)}.json")
        print(f"run {i}: strand summary {summary}")
        for k in ["kernel", "memcpy", "memset"]:
            (n1, t1), (n2, t2) = ours[k], theirs[k]
            diff = (t1 - t2) / t2 * 100 if t2 else 0.0
            print(f"  {k:7s} count strand {n1:8d} torch.profiler {n2:8d}   total time strand {t1 / 1e6:10.3f} ms  torch.profiler {t2 / 1e6:10.3f} ms  ({diff:+.2f}%)")
            if k == "kernel":
                ok &= n1 == n2 and n1 > 0
                ok &= abs(diff) < 2.0
        ok &= summary.get("dropped", 1) == 0 and summary.get("cupti_dropped", 1) == 0

    base = statistics.mean(median_step_ms(r) for r in runs["plain"])
    print(f"median step time, mean over runs: plain {base:.3f} ms")
    for m in ["strand", "torch-profiler"]:
        t = statistics.mean(median_step_ms(r) for r in runs[m])
        over = (t - base) / base * 100
        print(f"  {m:15s} {t:.3f} ms  overhead {over:+.2f}%")
        if m == "strand":
            ok &= over < 1.0
            strand_over = over
        else:
            prof_over = over
    ok &= strand_over < prof_over
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
