#!/usr/bin/env python3
"""NVML/GPM check (validate.sh): strand-agent's gpu_samples against nvidia-smi.

  check_nvml.py load MATMUL_S COPY_S OUT.json   the load: bf16 8192^3 matmuls
                                                (tensor cores), then 4 GiB device
                                                copies (DRAM); prints phase times
  check_nvml.py analyse WORK RESULT.json        WORK holds data/ (the agent's),
                                                smi.csv (nvidia-smi -lms), load.json

Pass criteria:
  - reported utilization (NVML utilization.gpu) within 5 points of nvidia-smi on
    average, sample by sample (nearest nvidia-smi sample within 1 s; samples
    within 1.5 s of the load's start and end left out);
  - GPM SM active, tensor active and DRAM active never null on this GPU;
  - under the matmuls SM active >= 0.5 and tensor active >= 0.3; under the
    copies DRAM active >= 0.5; all three <= 0.05 once the GPU is idle.
"""
import datetime
import json
import sys
import time

from common import read_table, run_check

SKIP_NS = 2_000_000_000  # a sample describes the period before it: skip phase edges


def load(matmul_s, copy_s, out):
    import torch
    dev = torch.device("cuda", 0)
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)  # random data: zeros run faster
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    phases = {}
    t0, n = time.time_ns(), 0
    while time.time_ns() - t0 < matmul_s * 1e9:
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        n += 10
    t1 = time.time_ns()
    phases["matmul"] = [t0, t1]
    x = torch.empty(1 << 31, device=dev, dtype=torch.int16)  # 4 GiB each
    x.random_()
    y = torch.empty_like(x)
    t2, copies = time.time_ns(), 0
    while time.time_ns() - t2 < copy_s * 1e9:
        for _ in range(10):
            y.copy_(x)
        torch.cuda.synchronize()
        copies += 10
    t3 = time.time_ns()
    phases["copy"] = [t2, t3]
    del x, y
    torch.cuda.synchronize()
    doc = {"phases": phases, "matmuls": n, "tflops": n * 2 * 8192 ** 3 / ((t1 - t0) / 1e9) / 1e12,
           "copy_gbps": copies * 2 * (1 << 32) / ((t3 - t2) / 1e9) / 1e9, "gpu": torch.cuda.get_device_name(0)}
    with open(out, "w") as f:
        json.dump(doc, f)
    print(json.dumps(doc))


def smi_samples(path):
    """nvidia-smi's csv (timestamp, utilization.gpu): its timestamps are local time, like time.time()."""
    out = []
    for line in open(path):
        parts = [x.strip() for x in line.split(",")]
        if len(parts) < 2 or not parts[-1].isdigit():
            continue
        try:
            t = datetime.datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
        except ValueError:
            continue
        out.append((int(t * 1e9), float(parts[-1])))
    return out


def mean(xs):
    return sum(xs) / len(xs) if xs else None


def analyse(work, res):
    phases = json.load(open(f"{work}/load.json"))
    (m0, m1), (c0, c1) = phases["phases"]["matmul"], phases["phases"]["copy"]
    res.numbers.update(load_tflops=phases["tflops"], load_copy_gbps=phases["copy_gbps"], gpu=phases["gpu"])
    rows = sorted((r for r in read_table(f"{work}/data", "gpu_samples") if r["gpu_index"] == 0), key=lambda r: r["ts_ns"])
    smi = smi_samples(f"{work}/smi.csv")
    res.numbers.update(agent_samples=len(rows), smi_samples=len(smi))
    if not rows or not smi:
        res.criterion("gpu_samples rows and nvidia-smi samples exist", False, f"{len(rows)} / {len(smi)}", "> 0 each")
        return

    # Around the two load edges the tools read NVML's counter up to 250 ms apart, and each
    # reading averages a different stretch: a few 0-vs-100 pairs there say nothing.
    edges = [m0, c1]
    diffs = []
    for r in rows:
        if r["reported_utilization_ratio"] is None or any(abs(r["ts_ns"] - e) < 1.5e9 for e in edges):
            continue
        ts, util = min(smi, key=lambda s: abs(s[0] - r["ts_ns"]))
        if abs(ts - r["ts_ns"]) <= 1e9:
            diffs.append(abs(r["reported_utilization_ratio"] * 100 - util))
    d = mean(diffs)
    res.criterion("reported utilization vs nvidia-smi, mean |difference| over matched samples (points)",
                  d is not None and d < 5, None if d is None else round(d, 2), "< 5")
    res.numbers["matched_samples"] = len(diffs)

    def window(a, b):
        return [r for r in rows if a + SKIP_NS <= r["ts_ns"] <= b]
    under_mm, under_copy, after = window(m0, m1), window(c0, c1), window(c1 + SKIP_NS, rows[-1]["ts_ns"])
    cols = ["sm_active_ratio", "tensor_active_ratio", "dram_active_ratio", "reported_utilization_ratio"]
    for name, part in [("matmul", under_mm), ("copy", under_copy), ("idle", after)]:
        res.numbers[name] = {c: mean([r[c] for r in part if r[c] is not None]) for c in cols}
        res.numbers[name]["samples"] = len(part)
    nulls = {c: sum(r[c] is None for r in under_mm + under_copy + after) for c in cols[:3]}
    res.criterion("GPM SM/tensor/DRAM active never null", sum(nulls.values()) == 0 and len(after) > 0, nulls, "0 nulls")

    def at_least(phase, col, target):
        v = res.numbers[phase][col]
        res.criterion(f"{col} under the {phase} load", v is not None and v >= target, v if v is None else round(v, 3), f">= {target}")

    at_least("matmul", "sm_active_ratio", 0.5)
    at_least("matmul", "tensor_active_ratio", 0.3)
    at_least("copy", "dram_active_ratio", 0.5)
    for c in cols[:3]:
        v = res.numbers["idle"][c]
        res.criterion(f"{c} once idle", v is not None and v <= 0.05, v if v is None else round(v, 3), "<= 0.05")


def main(argv):
    if len(argv) == 5 and argv[1] == "load":
        load(float(argv[2]), float(argv[3]), argv[4])
        return 0
    if len(argv) == 4 and argv[1] == "analyse":
        return 0 if run_check("nvml", argv[3], lambda r: analyse(argv[2], r)).status() == "pass" else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
