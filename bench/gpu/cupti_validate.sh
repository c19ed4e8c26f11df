#!/usr/bin/env bash
# GPU check of strand's CUPTI path (docs/gpu-validation.md, "CUPTI kernel timing").
#
# Runs a small bf16 transformer training loop (bench/gpu/train_bf16.py):
#   plain            REPEATS runs, the baseline step time
#   strand           REPEATS runs under `strand-agent wrap`, records received by
#                    the cupti_dump example (JSON lines, CLOCK_MONOTONIC)
#   torch-profiler   REPEATS runs recording the measured steps (Chrome traces)
# alternating plain and strand runs, then bench/gpu/compare.py checks: same
# kernel count, total kernel time within 2%, strand's step-time overhead under
# 1% and below torch.profiler's, no drops.
#
# Needs an NVIDIA GPU, its driver, python3 with a CUDA build of torch, cargo.
# Environment: PYTHON (python3), STEPS (500), WARMUP (50), REPEATS (3), OUT.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-500}
WARMUP=${WARMUP:-50}
REPEATS=${REPEATS:-3}
OUT=${OUT:-$ROOT/target/gpu-validation/cupti}
SOCK=$OUT/cupti.sock

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
"$PYTHON" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device for torch"; print("torch", torch.__version__, "CUDA", torch.version.cuda)'

(cd "$ROOT" && cargo build --release -p strand-agent -p strand-inject --examples)
AGENT=$ROOT/target/release/strand-agent
DUMP=$ROOT/target/release/examples/cupti_dump
LIB=$ROOT/target/release/libstrand_inject.so
test -f "$LIB"
nm -D --defined-only "$LIB"

rm -rf "$OUT" && mkdir -p "$OUT"

# `strand-agent wrap` sets CUDA_INJECTION64_PATH and STRAND_CUPTI_SOCKET; with
# --data-dir the socket is $OUT/cupti.sock. Should the binary at hand not
# implement wrap yet, set the same two variables directly.
if out=$("$AGENT" wrap --data-dir "$OUT" -- sh -c 'echo "$CUDA_INJECTION64_PATH|$STRAND_CUPTI_SOCKET"' 2>/dev/null) && [ "$out" = "$LIB|$SOCK" ]; then
  WRAP=("$AGENT" wrap --data-dir "$OUT" --)
else
  echo "note: strand-agent wrap not usable here ($out); setting the variables it sets" >&2
  WRAP=(env "CUDA_INJECTION64_PATH=$LIB" "STRAND_CUPTI_SOCKET=$SOCK")
fi

train() { "$PYTHON" "$ROOT/bench/gpu/train_bf16.py" --steps "$STEPS" --warmup "$WARMUP" "$@"; }

for i in $(seq 0 $((REPEATS - 1))); do
  echo "== plain $i"
  train --mode plain --out "$OUT/plain-$i.json"
  echo "== strand $i"
  "$DUMP" "$SOCK" --exit-after 1 > "$OUT/strand-$i.jsonl" &
  dump=$!
  for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
  STRAND_INJECT_LOG=info "${WRAP[@]}" "$PYTHON" "$ROOT/bench/gpu/train_bf16.py" --steps "$STEPS" --warmup "$WARMUP" \
    --mode strand --out "$OUT/strand-$i.json" 2> >(tee "$OUT/strand-$i.stderr" >&2)
  wait "$dump"
  grep -q "strand-inject\[[0-9]*\]: CUPTI" "$OUT/strand-$i.stderr" || { echo "the injection library did not start" >&2; exit 1; }
done
for i in $(seq 0 $((REPEATS - 1))); do
  echo "== torch-profiler $i"
  train --mode torch-profiler --out "$OUT/torch-profiler-$i.json" --trace "$OUT/trace-$i.json"
done

"$PYTHON" "$ROOT/bench/gpu/compare.py" "$OUT" | tee "$OUT/result.txt"
