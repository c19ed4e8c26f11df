#!/usr/bin/env python3
"""Merges what validate.sh's checks wrote into OUT/results.json and a readable
OUT/results.md, and packs the small logs into OUT/logs.tar.gz (the device tool
brings back at most 8 files from $OUT).

Usage: report.py WORK OUT run|dry|fatal
"""
import glob
import json
import os
import sys
import tarfile

CHECKS = ["nvml", "cupti", "nccl", "mfu", "reductions", "agent_cost"]
TITLES = {
    "nvml": "NVML/GPM vs nvidia-smi",
    "cupti": "CUPTI vs torch.profiler, wrap overhead",
    "nccl": "eBPF on the real libnccl, CUDA synchronize probes",
    "mfu": "MFU from markers",
    "reductions": "GPU reductions (strand-kernels)",
    "agent_cost": "agent cost on a GPU host, default backend",
}
LOG_LIMIT = 12 << 20  # logs.tar.gz stays well under the 16 MiB a returned file may have


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def load(path):
    text = read(path)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def check_entry(work, name, mode):
    run = load(f"{work}/results/{name}.run.json") or {}
    res = load(f"{work}/results/{name}.json")
    entry = {"check": name, "title": TITLES[name], **run}
    if res and mode == "dry":
        entry.update(res)
        entry["status"] = f"dry run: {res['status']} against a simulated GPU"
    elif res:
        entry.update(res)
        if run.get("collect_rc") in (124, 137):
            entry["status"] += " (its workloads ran out of time: partial data)"
    elif mode == "dry":
        entry["status"] = "not run (dry run)"
    elif run.get("not_run"):
        entry["status"] = f"not run ({run['not_run']})"
    elif run.get("collect_rc") in (124, 137):
        entry["status"] = "timeout"
    elif run:
        entry["status"] = "error (no result written)"
    else:
        entry["status"] = "not run"
    log = read(f"{work}/{name}.log", "")
    if entry["status"] != "pass" and mode != "dry" and log:
        entry["log_tail"] = log[-3000:]
    return entry


def key_numbers(checks):
    """The numbers a closing note quotes, where the checks measured them."""
    n = {c["check"]: c.get("numbers", {}) for c in checks}
    crit = {c["check"]: {k["what"]: k["value"] for k in c.get("criteria", [])} for c in checks}
    out = []

    def add(label, value):
        if value not in (None, {}, []):
            out.append(f"- {label}: {value}")
    add("reported utilization vs nvidia-smi, mean |Δ| (points)",
        crit["nvml"].get("reported utilization vs nvidia-smi, mean |difference| over matched samples (points)"))
    for phase in ("matmul", "copy", "idle"):
        p = n["nvml"].get(phase)
        if p:
            add(f"GPM under {phase}: SM / tensor / DRAM active", " / ".join(
                "null" if p.get(c) is None else f"{p[c]:.3f}" for c in ("sm_active_ratio", "tensor_active_ratio", "dram_active_ratio")))
    add("wrap / torch.profiler step-time overhead (%)", n["cupti"].get("overhead_pct"))
    add("median step (ms)", n["cupti"].get("median_step_ms"))
    add("BPF on this machine", n["nccl"].get("bpf_check"))
    add("NCCL", n["nccl"].get("torch_nccl_version") or n["nccl"].get("direct_nccl_version"))
    if n["mfu"].get("loop_mfu") is not None:
        add("MFU strand / loop (%)", f"{n['mfu']['strand_mfu'] * 100:.2f} / {n['mfu']['loop_mfu'] * 100:.2f}")
    add("device-to-device copy (GB/s)", n["reductions"].get("d2d_gbps"))
    add("GPU-beats-CPU batch (rows) per op", n["reductions"].get("break_even_rows"))
    add("AUTO_MIN_ROWS suggested (now 65536)", n["reductions"].get("auto_min_rows_suggested"))
    add("agent CPU (share of a core) / RSS max (MiB)",
        None if n["agent_cost"].get("agent_cpu_share_of_one_core") is None else
        f"{n['agent_cost']['agent_cpu_share_of_one_core']:.4f} / {n['agent_cost']['agent_rss_max_mib']:.1f}")
    add("GPU reducer context", n["agent_cost"].get("gpu_reducer_context"))
    add("auto opened a context during training", n["agent_cost"].get("auto_opened_context_during_training"))
    add("agent default backend (decision rule)", n["agent_cost"].get("agent_default_backend"))
    return out


def markdown(doc):
    m = doc["machine"]
    out = [f"# strand GPU validation ({doc['mode']})", ""]
    out += [f"- {k}: {', '.join(v)}" for k, v in m.items()]
    out += [f"- {doc['carry']}", ""]
    if doc.get("dry_run"):
        out += ["## Dry run", ""] + [f"- {l}" for l in doc["dry_run"]] + [""]
    out += ["| check | status | time (s) | budget (s) |", "|---|---|---:|---:|"]
    for c in doc["checks"]:
        t = (c.get("collect_s") or 0) + (c.get("analyse_s") or 0)
        out.append(f"| {c['title']} | **{c['status']}** | {t if 'collect_s' in c else '–'} | {c.get('budget_s', '–')} |")
    numbers = key_numbers(doc["checks"])
    if numbers:
        out += ["", "## Key numbers", ""] + numbers
    for c in doc["checks"]:
        if not c.get("criteria") and not c.get("notes") and not c.get("error"):
            continue
        out += ["", f"## {c['title']}: {c['status']}", ""]
        for k in c.get("criteria", []):
            out.append(f"- {'PASS' if k['ok'] else '**FAIL**'} {k['what']}: {k['value']} (target {k['target']})")
        for n in c.get("notes", []):
            out.append(f"- note: {n}")
        if c.get("error"):
            out.append(f"- error: `{c['error']}`")
        if c.get("log_tail"):
            out += ["", "<details><summary>end of the log</summary>", "", "```", c["log_tail"][-1500:], "```", "</details>"]
    return "\n".join(out) + "\n"


def pack_logs(work, out):
    """The logs and small analysis inputs first, then the agents' Parquet while
    room is left (to look again offline); never the torch.profiler traces."""
    path = os.path.join(out, "logs.tar.gz")
    files = [f for f in sorted(glob.glob(f"{work}/**/*", recursive=True))
             if os.path.isfile(f) and not f.endswith(".sock") and "/trace-" not in f and "/imported/" not in f]
    total = 0
    with tarfile.open(path, "w:gz") as tar:
        for f in [f for f in files if not f.endswith(".parquet")] + [f for f in files if f.endswith(".parquet")]:
            size = os.path.getsize(f)
            if size > 4 << 20 or total + size > LOG_LIMIT:
                continue
            total += size
            tar.add(f, arcname=os.path.relpath(f, work))


def main():
    work, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    machine = {}
    for line in read(f"{work}/machine.txt", "").splitlines():
        k, sep, v = line.partition(": ")
        if sep:
            machine.setdefault(k.strip(), []).append(v.strip())
    doc = {
        "mode": mode,
        "machine": machine,
        "carry": read(f"{work}/carry.txt", "carry: not measured").strip(),
        "binaries": read(f"{work}/binaries.txt", "").splitlines(),
        "dry_run": read(f"{work}/dry.txt", "").splitlines(),
        "checks": [check_entry(work, c, mode) for c in CHECKS],
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(doc, f, indent=1, default=str)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(doc))
    pack_logs(work, out)
    print(f"report: {out}/results.json, {out}/results.md, {out}/logs.tar.gz")
    for c in doc["checks"]:
        print(f"  {c['check']:11s} {c['status']}")


if __name__ == "__main__":
    main()
