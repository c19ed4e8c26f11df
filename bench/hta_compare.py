#!/usr/bin/env python3
"""Recompute Holistic Trace Analysis' figures and strand's side by side.

For every trace set (a directory of one job's rank traces, or single trace
files) this runs HTA 0.5.0 (`get_temporal_breakdown`,
`get_idle_time_breakdown`, `get_comm_comp_overlap`) and
`strand postmortem` on the same files, and prints one row per rank: HTA's
value, strand's, and the difference as a share of the window (percentage
points for the overlap). It exits 1 when a difference is over the tolerance
(1 % of the window, 1 point of overlap).

Run it with the Python that has HTA installed:

    python3 -m venv /tmp/hta && /tmp/hta/bin/pip install HolisticTraceAnalysis==0.5.0
    /tmp/hta/bin/python bench/hta_compare.py --strand target/release/strand \\
        ../shared/data/kineto/sampled_world128_rank0.json.gz+../shared/data/kineto/sampled_world128_rank1.json.gz \\
        ../shared/data/kineto/nccl_2rank_a100_rank0.json.gz ...

A set of several ranks of one job is written `a.json.gz+b.json.gz`.

By default both tools are set to look at the same thing (docs/validation.md
says why each setting is needed):

- HTA with `include_last_profiler_step=True` (by default it drops the last
  profiler step) and `HTA_DISABLE_NS_ROUNDING=1` (by default it shrinks every
  event of a nanosecond-resolution trace to whole microseconds);
- strand with `--hta-scope` (only GPU records whose launching CPU call is in
  the trace, as HTA keeps them; by default strand keeps every GPU record);
- a 30 µs kernel-wait threshold on both sides (`consecutive_kernel_delay=30`,
  `--launch-gap 30us`).

`--defaults` runs both tools with their own defaults instead, to show what
the differences in scope amount to; no tolerance is checked then.
"""

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile

TOL_WINDOW = 0.01  # 1 % of the window
TOL_OVERLAP = 1.0  # percentage points


def hta_figures(set_dir, defaults):
    logging.disable(logging.WARNING)
    if not defaults:
        os.environ["HTA_DISABLE_NS_ROUNDING"] = "1"
    from hta.trace_analysis import TraceAnalysis

    ta = TraceAnalysis(trace_dir=set_dir, include_last_profiler_step=not defaults)
    out = {}
    tb = ta.get_temporal_breakdown(visualize=False)
    for _, row in tb.iterrows():
        r = int(row["rank"])
        out[r] = {
            "window_us": float(row["kernel_time(us)"]),
            "idle_us": float(row["idle_time(us)"]),
            "compute_us": float(row["compute_time(us)"]),
            "non_compute_us": float(row["non_compute_time(us)"]),
        }
    for r in out:
        idle, _ = ta.get_idle_time_breakdown(ranks=[r], visualize=False, consecutive_kernel_delay=30)
        by = idle.groupby("idle_category")["idle_time"].sum()
        out[r]["host_wait_us"] = float(by.get("host_wait", 0.0))
        out[r]["kernel_wait_us"] = float(by.get("kernel_wait", 0.0))
        out[r]["other_idle_us"] = float(by.get("other", 0.0))
    ov = ta.get_comm_comp_overlap(visualize=False)
    for _, row in ov.iterrows():
        v = row["comp_comm_overlap_pctg"]
        out[int(row["rank"])]["overlap_pct"] = None if v != v else float(v)  # NaN: no communication
    return out


def strand_figures(strand, files, work, defaults):
    out_dir = os.path.join(work, "strand-report")
    cmd = [strand, "postmortem", *files, "--out", out_dir, "--launch-gap", "30us", "--no-progress"]
    if not defaults:
        cmd.append("--hta-scope")
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    with open(os.path.join(out_dir, "report.json")) as f:
        report = json.load(f)
    out = {}
    for g in report["gpus"]:
        rank = g["rank"]
        # The accounting's state columns (docs/decomposition.md), exact nanoseconds.
        t = g["time"]["state"]
        s = g["stream_idle_total"]
        comm = t["comm_ns"] or 0
        v = lambda k: (t[k] or 0) / 1e3  # noqa: E731
        out[rank] = {
            "window_us": t["powered_ns"] / 1e3,
            "idle_us": v("idle_ns"),
            "compute_us": v("compute_ns"),
            "non_compute_us": v("comm_exposed_ns") + v("memcpy_exposed_ns"),
            "host_wait_us": s["host_wait_ns"] / 1e3,
            "kernel_wait_us": s["kernel_wait_ns"] / 1e3,
            "other_idle_us": s["other_ns"] / 1e3,
            "overlap_pct": 100.0 * (t["comm_overlapped_ns"] or 0) / comm if comm > 0 else None,
            # strand's own GPU-level idle classes, for information.
            "gpu_host_bound_us": v("idle_host_bound_ns"),
            "gpu_launch_gap_us": v("idle_launch_gap_ns"),
            "gpu_other_idle_us": v("idle_other_ns"),
        }
    return out


METRICS = [
    ("idle", "idle_us"),
    ("compute", "compute_us"),
    ("non-compute", "non_compute_us"),
    ("host wait", "host_wait_us"),
    ("kernel wait", "kernel_wait_us"),
    ("other idle", "other_idle_us"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strand", default="target/release/strand")
    ap.add_argument("--markdown", help="also write the table as Markdown to this file")
    ap.add_argument("--defaults", action="store_true", help="each tool with its own defaults; no tolerance check")
    ap.add_argument("sets", nargs="+", help="trace file, or files of one job joined with +")
    a = ap.parse_args()

    rows = []
    failed = []
    for spec in a.sets:
        files = [os.path.abspath(p) for p in spec.split("+")]
        name = "+".join(os.path.basename(p).replace(".json.gz", "").replace(".json", "") for p in files)
        work = tempfile.mkdtemp(prefix="hta-compare-")
        try:
            set_dir = os.path.join(work, "traces")
            os.mkdir(set_dir)
            for p in files:
                shutil.copy(p, set_dir)
            hta = hta_figures(set_dir, a.defaults)
            ours = strand_figures(a.strand, files, work, a.defaults)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for rank in sorted(hta):
            h, s = hta[rank], ours.get(rank)
            if s is None:
                failed.append(f"{name} rank {rank}: strand has no such rank")
                continue
            win = h["window_us"]
            row = {"set": name, "rank": rank, "window_hta_ms": win / 1e3, "window_strand_ms": s["window_us"] / 1e3}
            worst = abs(s["window_us"] - win) / win
            row["window"] = (win / 1e3, s["window_us"] / 1e3, 100 * worst)
            for label, key in METRICS:
                if a.defaults:
                    # Different windows: each figure as a share of its own tool's window.
                    hp, sp = 100 * h[key] / win, 100 * s[key] / s["window_us"]
                    row[label] = (hp, sp, abs(hp - sp))
                    continue
                d = abs(s[key] - h[key]) / win
                row[label] = (100 * h[key] / win, 100 * s[key] / win, 100 * d)
                if d > TOL_WINDOW:
                    failed.append(f"{name} rank {rank}: {label} differs by {100 * d:.2f}% of the window")
            ho, so = h.get("overlap_pct"), s["overlap_pct"]
            if ho is None and so is None:
                row["overlap"] = (None, None, 0.0)
            elif ho is None or so is None:
                row["overlap"] = (ho, so, float("nan"))
                failed.append(f"{name} rank {rank}: overlap only on one side ({ho}, {so})")
            else:
                row["overlap"] = (ho, so, abs(ho - so))
                if abs(ho - so) > TOL_OVERLAP:
                    failed.append(f"{name} rank {rank}: overlap differs by {abs(ho - so):.2f} points")
            row["gpu_idle_classes"] = (
                100 * s["gpu_host_bound_us"] / win,
                100 * s["gpu_launch_gap_us"] / win,
                100 * s["gpu_other_idle_us"] / win,
            )
            rows.append(row)

    fmt = lambda x: "—" if x is None else f"{x:.2f}"  # noqa: E731
    header = "| trace | rank | window ms (HTA / strand) | " + " | ".join(
        f"{label} % (HTA / strand / Δ)" for label, _ in METRICS
    ) + " | overlap % (HTA / strand / Δ pt) |"
    lines = [header, "|" + "---|" * (4 + len(METRICS))]
    for r in rows:
        cells = [r["set"], str(r["rank"]), f"{r['window'][0]:.3f} / {r['window'][1]:.3f}"]
        for label, _ in METRICS:
            h, s, d = r[label]
            cells.append(f"{h:.2f} / {s:.2f} / {d:.2f}")
        h, s, d = r["overlap"]
        cells.append(f"{fmt(h)} / {fmt(s)} / {fmt(d)}")
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(table + "\n")
    print()
    print("strand's GPU-level idle classes (host_bound / launch_gap / other, % of window):")
    for r in rows:
        hb, lg, ot = r["gpu_idle_classes"]
        print(f"  {r['set']} rank {r['rank']}: {hb:.2f} / {lg:.2f} / {ot:.2f}")
    if a.defaults:
        print(f"\n{len(rows)} ranks compared with each tool's defaults (no tolerance check)")
        return
    if failed:
        print("\nOUT OF TOLERANCE:\n  " + "\n  ".join(failed))
        sys.exit(1)
    print(f"\nall {len(rows)} ranks within 1% of the window and 1 point of overlap")


if __name__ == "__main__":
    main()
