#!/usr/bin/env bash
# Benchmark of strand-kernels reductions (docs/performance.md, "Reductions").
#
#   bench/kernels_bench.sh            # GPU and CPU, 1e4..1e9 rows (needs a GPU)
#   bench/kernels_bench.sh cpu        # CPU backend only (any machine)
#   ROWS=1e4,1e5,1e6 bench/kernels_bench.sh cpu
#   CPU_THREADS=0 bench/kernels_bench.sh   # CPU backend on every core (default 1)
#
# On a GPU machine it first runs the GPU-equals-CPU test up to 1e7 rows, so
# the timings are only reported for results that were checked. On a GPU
# machine without cargo, bench/gpu/validate.sh runs both prebuilt.
# Output: a Markdown table on stdout; logs under ${OUT:-target/kernels-bench}.
set -euo pipefail
cd "$(dirname "$0")/.."

backend="${1:-both}"
rows="${ROWS:-1e4,1e5,1e6,1e7,1e8,1e9}"
cpu_max="${CPU_MAX_ROWS:-1e8}"
out="${OUT:-target/kernels-bench}"
mkdir -p "$out"

{
  echo "# $(date -u +%FT%TZ) $(uname -srm)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  grep -m1 'model name' /proc/cpuinfo || true
  echo "cpus: $(nproc)"
} | tee "$out/host.txt"

# NVRTC is loaded at run time; point the loader at a copy if none is registered.
if [[ "$backend" != cpu ]] && ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
  wheel="$(python3 -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null || true)"
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib "$wheel"; do
    if [[ -n "$d" ]] && compgen -G "$d/libnvrtc.so*" >/dev/null; then
      export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      echo "using NVRTC from $d"
      break
    fi
  done
fi

if [[ "$backend" != cpu ]]; then
  STRAND_GPU_TESTS_MAX_ROWS="${CHECK_MAX_ROWS:-10000000}" \
    cargo test --release -p strand-kernels --test gpu_equals_cpu -- --ignored --nocapture 2>&1 | tee "$out/gpu_equals_cpu.log"
fi

cargo run --release -q -p strand-kernels --example kernels_bench -- \
  --backend "$backend" --rows "$rows" --cpu-max-rows "$cpu_max" --reps "${REPS:-5}" \
  --cpu-threads "${CPU_THREADS:-1}" \
  2> >(tee "$out/bench.err" >&2) | tee "$out/bench.md"
