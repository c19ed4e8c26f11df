#!/usr/bin/env python3
"""Agent cost on a GPU host (validate.sh), and the decision on the agent's
default reduction backend.

  check_agent_cost.py context PID BEFORE_MIB OUT.json
      waits (up to 20 s) for nvidia-smi to list PID (an agent started with
      kernels.backend = "gpu", which opens its CUDA context at start) and
      records its entry and the device memory it added
  check_agent_cost.py analyse CUPTI_WORK CONTEXT.json REDUCTIONS.json RESULT.json
      CUPTI_WORK: the CUPTI check's directory (samples.jsonl: the agent, default
      configuration, all sources on, sampled each second; strand-N.json: the
      training runs under `wrap`; data/: kernel_events)

Reported: the agent's CPU (share of one core) and RSS while the training loop
runs under `wrap`; whether the default backend (auto) opened a CUDA context on
the training GPU; the device memory and nvidia-smi entry of a GPU reducer's
context. Pass criteria: the agent uses under 5 % of one core and under
512 MiB RSS while tracing the loop (bounded cost); the measurements exist.

Decision rule for the agent's default backend (printed, and in results.md):
keep `auto` only if the GPU beats the CPU at the agent's own batch size (the
kernel rows of one GPU in one 10 s window of this loop >= the measured
break-even) AND the context costs at most 1 % of the GPU's memory; else the
agent's default should be `cpu` (the offline tools keep `auto`). Either way a
GPU reducer is a process on GPU 0 in nvidia-smi, which is said in
docs/kernels.md and docs/gpu-validation.md.
"""
import glob
import json
import os
import subprocess
import sys
import time

from common import gpu_apps, read_table, run_check

WINDOW_S = 10  # the agent's default windows.period


def smi(query):
    out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True, timeout=10).stdout.strip()
    return [x.strip() for x in out.split(",")]


def context(pid, before_mib, out):
    deadline = time.time() + 20
    apps = {}
    while time.time() < deadline and pid not in apps:
        apps = gpu_apps()
        time.sleep(0.5)
    used, total, mode = smi("memory.used,memory.total,compute_mode")
    doc = {"listed_by_nvidia_smi": pid in apps, "process_mib": apps.get(pid), "memory_before_mib": before_mib,
           "memory_after_mib": float(used), "memory_total_mib": float(total), "compute_mode": mode,
           "added_mib": float(used) - before_mib}
    with open(out, "w") as f:
        json.dump(doc, f)
    print(json.dumps(doc))


def analyse(work, ctx_path, red_path, res):
    samples = [json.loads(l) for l in open(os.path.join(work, "samples.jsonl")) if l.strip()]
    runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(work, "strand-[0-9]*.json")))]
    if not samples or not runs:
        res.criterion("agent samples and training runs exist", False, f"{len(samples)} samples, {len(runs)} runs", "> 0")
        return
    shares = []
    for r in runs:
        # Over the whole wrapped process (CUPTI records flow from its first kernel), else its measured steps.
        t0, t1 = r.get("process_utc_ns") or r["window_utc_ns"]
        inside = [s for s in samples if t0 <= s["t_ns"] <= t1]
        if len(inside) >= 2:
            a, b = inside[0], inside[-1]
            shares.append((b["cpu_s"] - a["cpu_s"]) / ((b["t_ns"] - a["t_ns"]) / 1e9))
    cpu = sum(shares) / len(shares) if shares else None
    rss = max(s["rss"] for s in samples)
    res.numbers.update(agent_cpu_share_of_one_core=cpu, agent_rss_max_mib=rss / 2**20, agent_rss_peak_mib=samples[-1]["hwm"] / 2**20)
    res.criterion("agent CPU while tracing the loop (share of one core)", cpu is not None and cpu < 0.05,
                  None if cpu is None else round(cpu, 4), "< 0.05")
    res.criterion("agent RSS while tracing the loop (MiB)", rss < 512 * 2**20, round(rss / 2**20, 1), "< 512")
    auto_ctx = [s for s in samples if s["listed_by_nvidia_smi"]]
    res.numbers["auto_opened_context_during_training"] = bool(auto_ctx)
    res.numbers["auto_context_mib"] = max((s["on_gpu_mib"] or 0 for s in auto_ctx), default=None)

    rows = read_table(os.path.join(work, "data"), "kernel_events", ["pid", "start_ns"])
    rates = []
    for r in runs:
        t0, t1 = r["window_utc_ns"]
        n = sum(1 for k in rows if k["pid"] == r["pid"] and t0 <= k["start_ns"] <= t1)
        rates.append(n / ((t1 - t0) / 1e9))
    rows_per_window = max(rates) * WINDOW_S if rates else None
    res.numbers["kernel_rows_per_gpu_window"] = rows_per_window

    try:
        ctx = json.load(open(ctx_path))
    except (OSError, ValueError):
        ctx = None
    res.numbers["gpu_reducer_context"] = ctx
    res.criterion("a GPU reducer's context measured (nvidia-smi entry, memory)", ctx is not None,
                  None if ctx is None else f"listed {ctx['listed_by_nvidia_smi']}, {ctx['process_mib']} MiB in nvidia-smi, +{ctx['added_mib']:.0f} MiB used",
                  "measured")
    try:
        break_even = json.load(open(red_path))["numbers"].get("auto_min_rows_suggested")
    except (OSError, ValueError, KeyError):
        break_even = None
    res.numbers["break_even_rows"] = break_even
    if ctx is None or break_even is None or rows_per_window is None:
        res.numbers["agent_default_backend"] = "undecided: a number is missing"
        res.note("agent default backend: undecided (context, break-even or window size not measured); stays `auto`")
        return
    ctx_mib = max(ctx["added_mib"], ctx["process_mib"] or 0)
    gpu_wins = rows_per_window >= break_even
    cheap = ctx_mib <= 0.01 * ctx["memory_total_mib"]
    verdict = "auto" if gpu_wins and cheap else "cpu"
    res.numbers["agent_default_backend"] = verdict
    res.note(f"agent default backend: `{verdict}` (GPU faster at the agent's {rows_per_window:.0f}-row windows: {gpu_wins}, "
             f"break-even {break_even}; context {ctx_mib:.0f} MiB of {ctx['memory_total_mib']:.0f} MiB <= 1 %: {cheap}; "
             f"compute mode {ctx['compute_mode']})")


def main(argv):
    if len(argv) == 5 and argv[1] == "context":
        context(int(argv[2]), float(argv[3]), argv[4])
        return 0
    if len(argv) == 6 and argv[1] == "analyse":
        return 0 if run_check("agent_cost", argv[5], lambda r: analyse(argv[2], argv[3], argv[4], r)).status() == "pass" else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
