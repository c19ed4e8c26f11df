"""Compares strand-agent's gpu_samples with nvidia-smi (see nvml_validation.sh)."""
import glob, sys, datetime
import pyarrow.parquet as pq

out, gpu = sys.argv[1], int(sys.argv[2])
load = dict(l.split()[:2] for l in open(f"{out}/load.log") if l.startswith("load_"))
start, end = int(load["load_start"]), int(load["load_end"])

rows = []
for f in glob.glob(f"{out}/data/gpu_samples/**/*.parquet", recursive=True):
    t = pq.read_table(f, columns=["ts_ns", "gpu_index", "reported_utilization_ratio", "sm_active_ratio", "tensor_active_ratio"])
    rows += [r for r in t.to_pylist() if r["gpu_index"] == gpu]
rows.sort(key=lambda r: r["ts_ns"])

smi = []
for line in open(f"{out}/smi.csv"):
    ts, idx, util = [x.strip() for x in line.split(",")]
    t = datetime.datetime.strptime(ts, "%Y/%m/%d %H:%M:%S.%f").timestamp()  # local time, like the agent's host
    smi.append((int(t * 1e9), float(util)))

def nearest(ts):
    return min(smi, key=lambda s: abs(s[0] - ts))

diffs = [abs(r["reported_utilization_ratio"] * 100 - nearest(r["ts_ns"])[1]) for r in rows if r["reported_utilization_ratio"] is not None]
during = [r for r in rows if start + 2e9 < r["ts_ns"] < end]
after = [r for r in rows if r["ts_ns"] > end + 3e9]
mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
print(f"samples={len(rows)} smi_samples={len(smi)}")
print(f"reported_vs_smi_mean_abs_diff_points={mean(diffs):.2f} (target < 5)")
for name in ["reported_utilization_ratio", "sm_active_ratio", "tensor_active_ratio"]:
    d = [r[name] for r in during]; a = [r[name] for r in after]
    nulls = sum(v is None for v in d + a)
    print(f"{name}: during_mean={mean([v for v in d if v is not None]):.3f} after_mean={mean([v for v in a if v is not None]):.3f} nulls={nulls}")
