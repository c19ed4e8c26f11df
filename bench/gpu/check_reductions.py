#!/usr/bin/env python3
"""GPU reductions check (validate.sh): strand-kernels on the GPU against its CPU
backend, and against the device's copy bandwidth.

  check_reductions.py WORK RESULT.json

WORK holds the output of the carried test binaries and the benchmark:
  gpu_equals_cpu.log   kernels/tests/gpu_equals_cpu.rs run with --ignored: every
                       operation's GPU result equals the CPU's, random inputs
  gpu_probe.log        kernels/tests/gpu_probe.rs: Auto and Gpu both see the GPU
  nvrtc.log            the embedded CUDA compiles for sm_75, sm_80, sm_90
  bench.md             the kernels_bench example's table (rows, op, device ms,
                       GB/s, % of the device-to-device copy, end-to-end ms, CPU ms)

Pass criteria:
  - the three test binaries ran their tests (not ignored) and passed;
  - stats and histogram (one streaming pass) reach >= 80 % of the measured
    copy bandwidth at the largest batch, data already on the device.
Reported: GB/s and speedups per op and size, the smallest batch where the GPU
(transfers included) beats the CPU backend per op, and from that what
gpu::AUTO_MIN_ROWS should be (now 65536).
"""
import os
import re
import sys

from common import run_check

AUTO_MIN_ROWS_NOW = 1 << 16
STREAMING = ("stats", "histogram")


def test_passed(res, work, log, what):
    try:
        text = open(os.path.join(work, log)).read()
    except OSError:
        res.criterion(what, False, f"{log} missing", "ran and passed")
        return
    m = re.search(r"test result: (\w+)\. (\d+) passed; (\d+) failed; (\d+) ignored", text)
    ok = bool(m) and m[1] == "ok" and int(m[2]) >= 1 and m[3] == "0"
    res.criterion(what, ok, m[0] if m else "no test result line", ">= 1 passed, 0 failed")


def number(cell):
    try:
        return float(cell.rstrip("%×"))
    except ValueError:
        return None


def analyse(work, res):
    test_passed(res, work, "gpu_equals_cpu.log", "GPU results = CPU results for every operation (gpu_equals_cpu)")
    test_passed(res, work, "gpu_probe.log", "Auto and Gpu reducers both open the GPU (gpu_probe)")
    test_passed(res, work, "nvrtc.log", "the embedded CUDA compiles with the device's NVRTC (sm_75, sm_80, sm_90)")
    try:
        bench = open(os.path.join(work, "bench.md")).read()
    except OSError:
        res.criterion("kernels_bench ran", False, "bench.md missing", "present")
        return
    m = re.search(r"device-to-device copy \(1 GiB, read \+ write\): (\d+) GB/s", bench)
    res.numbers["d2d_gbps"] = float(m[1]) if m else None
    table = {}
    for line in bench.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[0].isdigit():
            rows, op = int(cells[0]), cells[1]
            table.setdefault(op, {})[rows] = {"dev_ms": number(cells[2]), "gbps": number(cells[3]), "pct_d2d": number(cells[4]),
                                              "e2e_ms": number(cells[5]), "cpu_ms": number(cells[6]),
                                              "speedup_e2e": number(cells[7]), "speedup_dev": number(cells[8])}
    res.numbers["table"] = table
    for op in STREAMING:
        sizes = sorted(table.get(op, {}))
        pct = table[op][sizes[-1]]["pct_d2d"] if sizes else None
        res.criterion(f"{op}: share of the copy bandwidth at {sizes[-1] if sizes else '?'} rows (%)",
                      pct is not None and pct >= 80, pct, ">= 80")
    wins = dict(re.findall(r"^- (\w+): (\d+) rows", bench, re.M))
    never = re.findall(r"^- (\w+): none", bench, re.M)
    res.numbers["break_even_rows"] = {op: int(n) for op, n in wins.items()}
    res.numbers["gpu_never_faster"] = never
    if wins:
        # One threshold serves every op: the largest break-even keeps each op on its faster side.
        res.numbers["auto_min_rows_suggested"] = max(int(n) for n in wins.values())
        res.note(f"AUTO_MIN_ROWS is {AUTO_MIN_ROWS_NOW}; the measured break-even says "
                 f"{res.numbers['auto_min_rows_suggested']} (largest over {sorted(wins)})"
                 + (f"; the GPU never beat the CPU for {never} at the sizes run" if never else ""))
    res.criterion("break-even batch sizes measured", bool(wins) or bool(never), res.numbers["break_even_rows"], "present")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(0 if run_check("reductions", sys.argv[2], lambda r: analyse(sys.argv[1], r)).status() == "pass" else 1)
