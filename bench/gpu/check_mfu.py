#!/usr/bin/env python3
"""MFU check (validate.sh): a GEMM loop of known FLOPs reports its steps through
the markers client (python/strand_markers.py); the agent's windows must show
the MFU the loop itself measures.

  check_mfu.py run SOCKET SECONDS OUT.json    the loop (needs torch and a GPU)
  check_mfu.py fake SOCKET SECONDS OUT.json   the same markers, each step a 0.1 s sleep
                                              (the dry run, against an agent that
                                              simulates its GPUs)
  check_mfu.py analyse WORK RESULT.json       WORK holds data/ (the agent's),
                                              loop.json, and optionally report.json
                                              (`strand postmortem` of data/)

A step is 16 bf16 8192x8192x8192 matrix products on random data, then a
synchronize: 16 * 2 * 8192^3 FLOPs, sent as the step's model FLOPs.
The loop's own MFU = FLOPs / loop time / peak, with the peak the agent used
(windows.peak_flops_per_s: its table's dense bf16 figure for this GPU).

Pass criteria:
  - windows lying wholly inside the loop: their mean MFU within 2 points of the loop's;
  - the windows' model FLOPs add up to the FLOPs sent (the agent apportions
    each step over the windows it overlaps; nothing is lost or counted twice);
  - with report.json: `strand postmortem` counts the same total model FLOPs.
"""
import json
import os
import sys
import time

from common import read_table, run_check

N = 8192
MATMULS_PER_STEP = 16
STEP_FLOPS = MATMULS_PER_STEP * 2 * N ** 3


def run(socket_path, seconds, out, fake=False):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    from strand_markers import Markers
    if fake:
        def work():
            time.sleep(0.1)
        gpu = "none (fake loop)"
    else:
        import torch
        dev = torch.device("cuda", 0)
        a = torch.randn(N, N, device=dev, dtype=torch.bfloat16)
        b = torch.randn(N, N, device=dev, dtype=torch.bfloat16)
        for _ in range(20):  # cuBLAS picks its kernel, clocks ramp up
            a @ b
        torch.cuda.synchronize()

        def work():
            for _ in range(MATMULS_PER_STEP):
                a @ b
            torch.cuda.synchronize()
        gpu = torch.cuda.get_device_name(0)
    m = Markers(socket_path=socket_path, gpu_index=0, rank=0)
    t0 = time.time_ns()
    step = 0
    while time.time_ns() - t0 < seconds * 1e9:
        with m.step(step, flops=STEP_FLOPS, dtype="bf16"):
            work()
        step += 1
    t1 = time.time_ns()
    doc = {"start_ns": t0, "end_ns": t1, "steps": step, "step_flops": STEP_FLOPS, "flops": step * STEP_FLOPS,
           "flops_per_s": step * STEP_FLOPS / ((t1 - t0) / 1e9), "markers_sent": m.sent, "markers_dropped": m.dropped,
           "gpu": gpu}
    with open(out, "w") as f:
        json.dump(doc, f)
    print(json.dumps(doc))


def analyse(work, res):
    loop = json.load(open(os.path.join(work, "loop.json")))
    res.numbers.update(loop)
    res.criterion("every marker reached the socket", loop["markers_dropped"] == 0 and loop["markers_sent"] == 2 * loop["steps"],
                  f"{loop['markers_sent']} sent, {loop['markers_dropped']} dropped", f"{2 * loop['steps']} sent, 0 dropped")
    windows = [w for w in read_table(os.path.join(work, "data"), "windows") if w["gpu_index"] == 0]
    inside = [w for w in windows if loop["start_ns"] <= w["start_ns"] and w["end_ns"] <= loop["end_ns"]]
    res.numbers["windows"] = len(windows)
    res.numbers["windows_inside_loop"] = len(inside)
    peaks = {w["peak_flops_per_s"] for w in inside}
    res.numbers["peak_flops_per_s"] = sorted(p for p in peaks if p is not None)
    res.numbers["gpu_name_in_windows"] = sorted({w["gpu_name"] for w in inside if w["gpu_name"]})
    if not inside or None in peaks or len(peaks) != 1:
        res.criterion("windows inside the loop with MFU and one peak", False, f"{len(inside)} windows, peaks {peaks}", ">= 1, one peak")
        return
    peak = peaks.pop()
    loop_mfu = loop["flops_per_s"] / peak
    mfus = [w["mfu"] for w in inside]
    if None in mfus:
        res.criterion("windows inside the loop have an MFU", False, mfus, "no null")
        return
    strand_mfu = sum(mfus) / len(mfus)
    res.numbers.update(loop_mfu=loop_mfu, strand_mfu=strand_mfu, strand_mfu_per_window=mfus)
    res.criterion("strand's MFU vs the loop's own (points)", abs(strand_mfu - loop_mfu) * 100 <= 2,
                  f"{strand_mfu * 100:.2f} vs {loop_mfu * 100:.2f}", "within 2")
    total = sum(w["model_flops"] or 0 for w in windows)
    res.criterion("model FLOPs over all windows = FLOPs sent", abs(total - loop["flops"]) <= 1e-6 * loop["flops"],
                  f"{total:.6e}", f"{loop['flops']:.6e}")
    path = os.path.join(work, "report.json")
    if not os.path.exists(path):
        res.note("strand postmortem not run (no `strand` binary carried)")
        return
    run_flops = json.load(open(path)).get("run", {}).get("model_flops")
    res.criterion("`strand postmortem` run model FLOPs = FLOPs sent",
                  run_flops is not None and abs(run_flops - loop["flops"]) <= 1e-6 * loop["flops"], run_flops, loop["flops"])


def main(argv):
    if len(argv) == 5 and argv[1] in ("run", "fake"):
        run(argv[2], float(argv[3]), argv[4], fake=argv[1] == "fake")
        return 0
    if len(argv) == 4 and argv[1] == "analyse":
        return 0 if run_check("mfu", argv[3], lambda r: analyse(argv[2], r)).status() == "pass" else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
