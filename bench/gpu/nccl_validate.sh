#!/usr/bin/env bash
# strand-ebpf on a machine with an NVIDIA GPU: attach to the real libnccl.so.2
# that PyTorch loads, run known NCCL work, and check what was captured against
# NCCL's own NCCL_DEBUG=INFO output. See docs/gpu-validation.md.
#
#   sudo -E bench/gpu/nccl_validate.sh [OUT_DIR]     (default /tmp/strand-ebpf-gpu)
#
# Needs: root, the Rust toolchain, clang, libelf-dev, zlib1g-dev, Python 3 with
# a CUDA build of PyTorch. Scenarios (each under OUT_DIR/<name>/):
#   direct   ctypes calls into libnccl.so.2, one rank; the id is known, so the
#            commHash is checked against NCCL's algorithm and NCCL's printout
#   commid   the same with NCCL_COMM_ID=127.0.0.1:<port> (a deterministic id)
#   torch1   torch.distributed, world size 1, all-reduces of known sizes
#   torch2   world size 2 (two GPUs, or both ranks on GPU 0 if NCCL allows it)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-/tmp/strand-ebpf-gpu}
PY=${PYTHON:-python3}
rm -rf "$OUT" && mkdir -p "$OUT"

[ "$(id -u)" = 0 ] || { echo "nccl_validate.sh: run as root (BPF)"; exit 2; }
nvidia-smi -L | tee "$OUT/gpus.txt"
uname -r | tee "$OUT/kernel.txt"

cargo build --release -p strand-ebpf --example trace_run
TRACE=$(cargo metadata --format-version 1 --no-deps | $PY -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/trace_run
[ -x "$TRACE" ] || TRACE=target/release/examples/trace_run

# The libnccl.so.2 PyTorch uses: probed before any workload starts.
NCCL_LIB=$($PY - <<'PY'
import torch  # noqa: F401  (maps libnccl.so.2)
for line in open("/proc/self/maps"):
    path = line.split()[-1]
    if "libnccl.so" in path:
        print(path)
        break
PY
)
echo "libnccl: $NCCL_LIB" | tee "$OUT/libnccl.txt"
$PY -c 'import torch; print("torch", torch.__version__, "nccl", torch.cuda.nccl.version())' | tee -a "$OUT/libnccl.txt"

run() {  # run NAME ENV... -- COMMAND...
  local name=$1; shift
  local dir=$OUT/$name; mkdir -p "$dir/expect"
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  echo "== $name"
  env NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,ENV NCCL_DEBUG_FILE="$dir/nccl.%h.%p.log" "${envs[@]}" \
    "$TRACE" "$dir/rows.jsonl" --lib "$NCCL_LIB" -- "$@" 2> >(tee "$dir/trace_run.log" >&2) || echo "$name: exit $?"
}

run direct -- $PY bench/gpu/nccl_direct.py "$NCCL_LIB" "$OUT/direct/expect/direct.json"
run commid NCCL_COMM_ID=127.0.0.1:29555 -- $PY bench/gpu/nccl_direct.py "$NCCL_LIB" "$OUT/commid/expect/direct.json"
run torch1 -- $PY bench/gpu/torch_allreduce.py --world 1 --expect-dir "$OUT/torch1/expect" --port 29531
run torch2 -- $PY bench/gpu/torch_allreduce.py --world 2 --expect-dir "$OUT/torch2/expect" --port 29532

$PY bench/gpu/nccl_compare.py "$OUT" | tee "$OUT/summary.txt"
