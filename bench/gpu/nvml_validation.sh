#!/usr/bin/env bash
# Issue 2 GPU check: run strand-agent for 60 s while a PyTorch bf16 matmul loop
# runs for the first 30 s, sampling `nvidia-smi --query-gpu=utilization.gpu`
# each second at the same time. Then compare (nvml_validation.py):
#   - reported utilization vs nvidia-smi: mean absolute difference (target < 5 points)
#   - GPM SM active and tensor active: non-null, high during the matmul, near 0 after.
# Usage (on a GPU machine, from the repo root): bench/gpu/nvml_validation.sh [out_dir]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
BIN=${STRAND_AGENT:-target/release/strand-agent}
[ -x "$BIN" ] || cargo build --release -q -p strand-agent
GPU=${GPU:-0}

"$BIN" --data-dir "$OUT/data" --metrics-listen "" 2>"$OUT/agent.log" &
AGENT=$!
nvidia-smi --query-gpu=timestamp,index,utilization.gpu --format=csv,noheader,nounits -lms 1000 -i "$GPU" > "$OUT/smi.csv" &
SMI=$!
sleep 2
python3 - "$GPU" > "$OUT/load.log" 2>&1 <<'PY'
import sys, time, torch
dev = torch.device(f"cuda:{int(sys.argv[1])}")
a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
t0 = time.time(); n = 0
print(f"load_start {time.time_ns()}", flush=True)
while time.time() - t0 < 30:
    for _ in range(20):
        c = a @ b
    torch.cuda.synchronize(); n += 20
print(f"load_end {time.time_ns()} matmuls {n} tflops {n*2*8192**3/(time.time()-t0)/1e12:.0f}", flush=True)
PY
sleep 30
kill -TERM "$AGENT"; wait "$AGENT" || true
kill "$SMI" || true
python3 bench/gpu/nvml_validation.py "$OUT" "$GPU" | tee "$OUT/result.txt"
