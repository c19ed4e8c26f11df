#!/usr/bin/env python3
"""Wall time and peak memory: Holistic Trace Analysis against strand.

For each trace set, runs in a fresh process (1) HTA 0.5.0 loading the traces
and computing the temporal breakdown, the idle time breakdown of every rank
and the comm/compute overlap, and (2) `strand postmortem` on the same files,
which computes the same figures and more and writes the HTML, Markdown and
JSON reports. Peak memory is the largest sum of the resident set sizes of the
process and all its children (HTA parses ranks in worker processes), sampled
every 2 ms with psutil, or the main process's own high-water mark if larger. Times come from separate runs with no sampler beside them (it would
take CPU from the process timed). Each run is repeated and the median kept.

    /tmp/hta/bin/python bench/speed_memory.py --strand target/release/strand \\
        ../shared/data/kineto/sampled_world128_rank0.json.gz+../shared/data/kineto/sampled_world128_rank1.json.gz ...

`--dataset DIR` times `strand postmortem DIR` alone (a strand dataset, e.g.
from `cargo run --release -p strand-analysis --example synth_run`).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

HTA_SCRIPT = r"""
import logging, os, sys, time
logging.disable(logging.WARNING)
os.environ["HTA_DISABLE_NS_ROUNDING"] = "1"
t0 = time.perf_counter()
from hta.trace_analysis import TraceAnalysis
t1 = time.perf_counter()
ta = TraceAnalysis(trace_dir=sys.argv[1], include_last_profiler_step=True)
ta.get_temporal_breakdown(visualize=False)
for r in ta.t.traces:
    ta.get_idle_time_breakdown(ranks=[r], visualize=False, consecutive_kernel_delay=30)
ta.get_comm_comp_overlap(visualize=False)
t2 = time.perf_counter()
print(f"{t1 - t0:.4f} {t2 - t1:.4f}")
"""


def hwm(pid):
    """The peak resident set of a process since exec, bytes (0 if gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(cmd, sample):
    """Runs cmd; returns (wall s, CPU s of the process and the children it
    waited for, peak RSS bytes, stdout).

    With `sample`, the resident set of the whole process tree is summed every
    2 ms (HTA parses ranks in worker processes) and the peak is the larger of
    that and the main process's high-water mark (`VmHWM`) at the last sample.
    (Not `ru_maxrss`: it includes the memory of the forked Python before
    exec.) Without
    it nothing runs beside the measured process but a blocking wait: the
    sampler costs CPU, and on a 2-core machine it takes that CPU from the
    process being timed. So times come from unsampled runs and memory from
    sampled ones."""
    out = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
    peak = 0
    if sample:
        ps = psutil.Process(p.pid)
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                break
            try:
                rss = 0
                for q in [ps] + ps.children(recursive=True):
                    try:
                        rss += q.memory_info().rss
                    except psutil.Error:
                        pass
                peak = max(peak, rss, hwm(p.pid))
            except psutil.Error:
                pass
            time.sleep(0.002)
    else:
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with {status}")
    out.seek(0)
    return wall, ru.ru_utime + ru.ru_stime, peak, out.read().decode()


def median_run(cmd, reps):
    """Median wall and CPU of `reps` unsampled runs, median peak memory of
    `reps` sampled runs, and the stdout of the last timed run."""
    timed = [run(cmd, sample=False) for _ in range(reps)]
    sampled = [run(cmd, sample=True) for _ in range(reps)]
    return (
        statistics.median(r[0] for r in timed),
        statistics.median(r[1] for r in timed),
        statistics.median(r[2] for r in sampled),
        timed[-1][3],
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strand", default="target/release/strand")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dataset", action="append", default=[], help="strand dataset directory to time alone")
    ap.add_argument("sets", nargs="*", help="trace file, or files of one job joined with +")
    a = ap.parse_args()
    mb = lambda b: b / 2**20  # noqa: E731

    if a.sets:
        print("| trace | input MB (gz) | HTA wall s (analysis only) | strand wall s | wall speed-up (whole / analysis only) | HTA CPU s | strand CPU s | CPU ratio | HTA peak MiB | strand peak MiB | memory ratio |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    for spec in a.sets:
        files = [os.path.abspath(p) for p in spec.split("+")]
        name = "+".join(os.path.basename(p).replace(".json.gz", "") for p in files)
        size = sum(os.path.getsize(p) for p in files)
        work = tempfile.mkdtemp(prefix="speed-")
        try:
            d = os.path.join(work, "traces")
            os.mkdir(d)
            for p in files:
                shutil.copy(p, d)
            hw, hc, hp, hout = median_run([sys.executable, "-c", HTA_SCRIPT, d], a.reps)
            h_analysis = float(hout.split()[1])
            sw, sc, sp, _ = median_run([a.strand, "postmortem", *files, "--out", os.path.join(work, "pm"), "--launch-gap", "30us", "--hta-scope", "--no-progress"], a.reps)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(
            f"| {name} | {mb(size):.2f} | {hw:.2f} ({h_analysis:.2f}) | {sw:.3f} | {hw / sw:.0f}× / {h_analysis / sw:.0f}× "
            f"| {hc:.2f} | {sc:.3f} | {hc / max(sc, 1e-3):.0f}× | {mb(hp):.0f} | {mb(sp):.1f} | 1/{hp / sp:.0f} |"
        )

    for d in a.dataset:
        size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
        out = tempfile.mkdtemp(prefix="speed-")
        try:
            w, c, p, _ = median_run([a.strand, "postmortem", d, "--out", out, "--no-progress"], max(1, a.reps // 2))
        finally:
            shutil.rmtree(out, ignore_errors=True)
        print(f"dataset {d}: {mb(size):.0f} MiB of Parquet, strand postmortem {w:.2f} s wall, {c:.2f} s CPU, peak {mb(p):.0f} MiB")


if __name__ == "__main__":
    main()
