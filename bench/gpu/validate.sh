#!/usr/bin/env bash
# Every GPU check of strand in one run of at most 8 minutes, on a machine with
# an NVIDIA GPU, python3 with torch, and no cargo (docs/gpu-validation.md).
#
#   bench/gpu/validate.sh [--bin DIR] [--only CHECK,...] [--dry-run]
#
#   --bin DIR   prebuilt binaries, as bench/gpu/pack.sh makes them
#               (default target/gpu-pack)
#   --only ...  a subset of: nvml cupti nccl mfu reductions agent_cost
#   --dry-run   no GPU needed: the carry size, then each check's CPU-side
#               setup, and one line per check saying what it needs
#
# Writes results.json, results.md and logs.tar.gz to $OUT (without $OUT:
# target/gpu-validation), working in $WORK (default: a fresh /tmp folder; a
# rerun with --only in the same $WORK replaces those checks' results and
# reports them with the others).
# Each check has a time budget and the run a deadline (DEADLINE_S, 470 s from
# the start); a check that fails or runs out of time is recorded, and the next
# one starts. Knobs (environment): PYTHON, DEADLINE_S, STEPS, WARMUP, REPEATS,
# PROFILER_RUNS, NVML_MATMUL_S, NVML_COPY_S, NVML_IDLE_S, MFU_SECONDS,
# CHECK_MAX_ROWS, BENCH_ROWS.
set -uo pipefail  # no -e: a failing step is recorded, it does not end the run

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ALL_CHECKS="nvml cupti nccl mfu reductions agent_cost"

# ---- options (the parent parses them; --collect/--analyse are its own re-invocations)
MODE=run
ONLY=$ALL_CHECKS
STEP_NAME=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --only) ONLY=${2//,/ }; shift 2 ;;
    --dry-run) MODE=dry; shift ;;
    --collect | --analyse) MODE=${1#--}; STEP_NAME=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "validate.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
for c in $ONLY; do
  case " $ALL_CHECKS " in *" $c "*) ;; *) echo "validate.sh: unknown check $c (checks: $ALL_CHECKS)" >&2; exit 2 ;; esac
done

export HERE ROOT
export BIN=$(cd "${BIN:-$ROOT/target/gpu-pack}" 2>/dev/null && pwd || echo "${BIN:-$ROOT/target/gpu-pack}")
# The carried injection library, wherever the agent binary itself resolves to
# (the dry run links binaries from cargo's target directory).
export STRAND_INJECT_LIB=$BIN/libstrand_inject.so
export PY=${PYTHON:-python3}
export AGENT=$BIN/strand-agent
export STEPS=${STEPS:-200} WARMUP=${WARMUP:-20} REPEATS=${REPEATS:-3} PROFILER_RUNS=${PROFILER_RUNS:-2}
export NVML_MATMUL_S=${NVML_MATMUL_S:-12} NVML_COPY_S=${NVML_COPY_S:-5} NVML_IDLE_S=${NVML_IDLE_S:-10}
export MFU_SECONDS=${MFU_SECONDS:-12} CHECK_MAX_ROWS=${CHECK_MAX_ROWS:-10000000}
export BENCH_ROWS=${BENCH_ROWS:-1e4,3e4,1e5,3e5,1e6,1e7,1e8}
if [ "$MODE" = run ] || [ "$MODE" = dry ]; then
  export OUT=${OUT:-$ROOT/target/gpu-validation}
  export WORK=${WORK:-$(mktemp -d /tmp/strand-validate.XXXXXX)}
  export RES=$WORK/results
fi

budget_of() {  # seconds for a check's workloads; its analysis gets ANALYSE_S more
  case $1 in nvml) echo 55 ;; cupti) echo 130 ;; nccl) echo 60 ;; mfu) echo 50 ;; reductions) echo 90 ;; agent_cost) echo 30 ;; esac
}
ANALYSE_S=20
needs_of() {  # what a check needs beyond this script and the carried binaries
  case $1 in
    nvml) echo "an NVIDIA GPU with NVML and GPM (Hopper or newer), nvidia-smi, python3 with CUDA torch" ;;
    cupti) echo "an NVIDIA GPU and driver, CUPTI (torch's libcupti), python3 with CUDA torch (torch.profiler)" ;;
    nccl) echo "an NVIDIA GPU, torch with NCCL (libnccl.so.2), and BPF: root or CAP_BPF+CAP_PERFMON, uprobes, BTF" ;;
    mfu) echo "an NVIDIA GPU in strand's peak table (H100/H200…), NVML, python3 with CUDA torch" ;;
    reductions) echo "an NVIDIA GPU, libcuda and libnvrtc (torch's nvidia-cuda-nvrtc wheel)" ;;
    agent_cost) echo "an NVIDIA GPU with nvidia-smi, libnvrtc, and the CUPTI and reductions checks' numbers" ;;
  esac
}

# ---- the agent --------------------------------------------------------------

agent_start() {  # agent_start DIR [TOML]: strand-agent with its data in DIR/data, /metrics on a free port
  local dir=$1 extra=${2:-} port
  mkdir -p "$dir"
  port=$($PY "$HERE/common.py" free-port) || return 1
  AGENT_URL=http://127.0.0.1:$port/metrics
  cat >"$dir/agent.toml" <<EOF
data_dir = "$dir/data"
[metrics]
listen = "127.0.0.1:$port"
[nvml]
period = "${NVML_PERIOD:-1s}"
infiniband = false
$extra
EOF
  # shellcheck disable=SC2086  # AGENT_ARGS (the dry run's --simulate-gpus) splits on purpose
  STRAND_LOG=${STRAND_LOG:-info} "$AGENT" --config "$dir/agent.toml" ${AGENT_ARGS:-} >"$dir/agent.log" 2>&1 &
  AGENT_PID=$!
  if ! $PY "$HERE/common.py" wait-http "$AGENT_URL" 20; then
    echo "strand-agent did not serve $AGENT_URL within 20 s; the end of its log:"
    tail -n 20 "$dir/agent.log"
    kill -KILL "$AGENT_PID" 2>/dev/null
    return 1
  fi
  # /metrics is served first; the sources (markers socket, eBPF, …) start after it.
  for _ in $(seq 100); do grep -q "strand-agent running" "$dir/agent.log" && break; sleep 0.2; done
  echo "strand-agent $AGENT_PID up ($dir/agent.toml)"
}

agent_stop() {  # agent_stop DIR: saves /metrics, then SIGTERM (the agent flushes every open batch); its exit status
  local dir=$1 rc
  $PY "$HERE/common.py" scrape "$AGENT_URL" "$dir/metrics-end.txt"
  kill -TERM "$AGENT_PID" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$AGENT_PID" 2>/dev/null; then
    echo "strand-agent ignored SIGTERM for 20 s: killed"
    kill -KILL "$AGENT_PID"
  fi
  wait "$AGENT_PID"
  rc=$?
  echo "strand-agent exited with status $rc"
  AGENT_PID=""
  return $rc
}

# ---- the checks: collect (workloads, under the budget), then analyse (Python) --

collect_nvml() {
  local d=$WORK/nvml smi
  NVML_PERIOD=500ms agent_start "$d" || return 1
  nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits -lms 500 -i 0 >"$d/smi.csv" &
  smi=$!
  sleep 2  # an idle baseline before the load
  $PY "$HERE/check_nvml.py" load "$NVML_MATMUL_S" "$NVML_COPY_S" "$d/load.json"
  sleep "$NVML_IDLE_S"  # the idle part: GPM must fall back to about zero
  kill "$smi"
  agent_stop "$d"
}
analyse_nvml() { $PY "$HERE/check_nvml.py" analyse "$WORK/nvml" "$RES/nvml.json"; }

collect_cupti() {
  local d=$WORK/cupti sampler i
  agent_start "$d" || return 1  # the default configuration: every source on
  $PY "$HERE/common.py" sample "$AGENT_PID" "$d/samples.jsonl" 1 &
  sampler=$!
  train() { $PY "$HERE/train_bf16.py" --steps "$STEPS" --warmup "$WARMUP" "$@"; }
  # plain and strand runs alternate, so that a drift of the GPU's clocks hits both
  for i in $(seq 0 $((REPEATS - 1))); do
    echo "== plain $i"
    train --mode plain --out "$d/plain-$i.json"
    echo "== strand $i"
    STRAND_INJECT_LOG=info "$AGENT" --config "$d/agent.toml" wrap -- \
      $PY "$HERE/train_bf16.py" --steps "$STEPS" --warmup "$WARMUP" --mode strand --out "$d/strand-$i.json" \
      2>"$d/strand-$i.stderr"
    grep "strand-inject\[" "$d/strand-$i.stderr" || echo "strand run $i: no line from the injection library: it did not start"
    sleep 2  # the library's last records reach the agent
    $PY "$HERE/common.py" scrape "$AGENT_URL" "$d/metrics-strand-$i.txt"
  done
  for i in $(seq 0 $((PROFILER_RUNS - 1))); do
    echo "== torch-profiler $i"
    train --mode torch-profiler --out "$d/torch-profiler-$i.json" --trace "$d/trace-$i.json"
  done
  kill "$sampler"
  agent_stop "$d"
  if [ -x "$BIN/strand" ]; then
    "$BIN/strand" import kineto "$d/trace-0.json" --out "$d/imported" | tee "$d/import.txt"
  fi
}
analyse_cupti() { $PY "$HERE/check_cupti.py" "$WORK/cupti" "$RES/cupti.json"; }

collect_nccl() {
  local d=$WORK/nccl
  mkdir -p "$d/direct" "$d/torch"
  (cd "$d" && "$AGENT" check) >"$d/bpf.txt" 2>&1
  cat "$d/bpf.txt"
  if ! grep -q "^eBPF *ok" "$d/bpf.txt"; then
    echo "BPF is not usable on this machine: the NCCL workloads are skipped"
    return 0
  fi
  agent_start "$d" || return 1
  # Map torch's libraries until the agent probes them: later processes are then traced from their first call.
  $PY "$HERE/common.py" prime-ebpf "$AGENT_URL" 15 | tee "$d/prime.json"
  local nccl_env=(NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,ENV)
  if [ -n "${LIBNCCL:-}" ]; then
    echo "== direct (ctypes into $LIBNCCL)"
    env "${nccl_env[@]}" NCCL_DEBUG_FILE="$d/direct/nccl.%h.%p.log" $PY "$HERE/nccl_direct.py" "$LIBNCCL" "$d/direct/expect.json"
  else
    echo "== direct: skipped, the preflight found no libnccl in torch's process"
  fi
  echo "== torch.distributed, world size 1, one new_group"
  env "${nccl_env[@]}" NCCL_DEBUG_FILE="$d/torch/nccl.%h.%p.log" \
    $PY "$HERE/torch_collectives.py" "$d/torch/expect.json" --port "$($PY "$HERE/common.py" free-port)"
  sleep 1  # two ring-buffer polls: the exit events
  agent_stop "$d"
}
analyse_nccl() { $PY "$HERE/check_nccl.py" "$WORK/nccl" "$RES/nccl.json"; }

collect_mfu() {
  local d=$WORK/mfu
  agent_start "$d" '[windows]
period = "2s"
lateness = "3s"
nccl_join_hold = "1s"' || return 1
  $PY "$HERE/check_mfu.py" run "$d/data/markers.sock" "$MFU_SECONDS" "$d/loop.json"
  sleep 1
  agent_stop "$d"  # closes every window
  if [ -x "$BIN/strand" ]; then
    "$BIN/strand" postmortem "$d/data" --out "$d/postmortem" --window 2s --no-progress && cp "$d/postmortem/report.json" "$d/report.json"
  fi
}
analyse_mfu() { $PY "$HERE/check_mfu.py" analyse "$WORK/mfu" "$RES/mfu.json"; }

collect_reductions() {
  local d=$WORK/reductions
  mkdir -p "$d"
  # Each binary's whole output is kept: the analysis reads cargo's "test result" line.
  STRAND_GPU_TESTS_MAX_ROWS=$CHECK_MAX_ROWS "$BIN/gpu_equals_cpu" --ignored --nocapture 2>&1 | tee "$d/gpu_equals_cpu.log"
  "$BIN/gpu_probe" --nocapture 2>&1 | tee "$d/gpu_probe.log"
  "$BIN/kernels_unit" --ignored embedded_cuda --nocapture 2>&1 | tee "$d/nvrtc.log"
  "$BIN/kernels_bench" --backend both --rows "$BENCH_ROWS" --reps 5 --cpu-max-rows 1e7 --cpu-threads 1 | tee "$d/bench.md"
}
analyse_reductions() { $PY "$HERE/check_reductions.py" "$WORK/reductions" "$RES/reductions.json"; }

collect_agent_cost() {
  local d=$WORK/agent_cost before
  mkdir -p "$d"
  before=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0) || return 1
  # backend = gpu opens the reducer's CUDA context at start: its price in nvidia-smi
  agent_start "$d" '[kernels]
backend = "gpu"' || return 1
  $PY "$HERE/check_agent_cost.py" context "$AGENT_PID" "$before" "$d/context.json"
  agent_stop "$d"
}
analyse_agent_cost() {
  $PY "$HERE/check_agent_cost.py" analyse "$WORK/cupti" "$WORK/agent_cost/context.json" "$RES/reductions.json" "$RES/agent_cost.json"
}

# ---- the dry run: CPU-side setup of each check --------------------------------

dry_nvml() {
  local d=$WORK/dry-nvml
  agent_start "$d" || return 1
  # The sources register their metrics as they start, after /metrics is up.
  for _ in $(seq 50); do
    $PY "$HERE/common.py" scrape "$AGENT_URL" "$d/metrics.txt"
    grep -q "^# TYPE strand_agent_samples counter" "$d/metrics.txt" && break
    sleep 0.2
  done
  grep -q "^# TYPE strand_agent_samples counter" "$d/metrics.txt" || { echo "/metrics lacks strand_agent_samples"; agent_stop "$d"; return 1; }
  grep -i "nvml" "$d/agent.log" | head -n 2  # what the agent says about NVML here
  agent_stop "$d"
}
dry_cupti() {
  local d=$WORK/dry-cupti got
  agent_start "$d" || return 1
  got=$("$AGENT" --config "$d/agent.toml" wrap -- sh -c 'echo "$CUDA_INJECTION64_PATH|$STRAND_CUPTI_SOCKET"' 2>&1)
  echo "wrap sets: $got"
  [ "$(readlink -f "${got%%|*}")" = "$(readlink -f "$BIN/libstrand_inject.so")" ] || { echo "wrap does not point at the carried library"; agent_stop "$d"; return 1; }
  [ -S "${got##*|}" ] || { echo "no agent socket at ${got##*|}"; agent_stop "$d"; return 1; }
  $PY -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1]).InitializeInjection; print("InitializeInjection exported")' "$BIN/libstrand_inject.so" || { agent_stop "$d"; return 1; }
  agent_stop "$d"
}
dry_nccl() {
  $PY "$HERE/check_nccl.py" --self-test || return 1
  # What the agent can attach here (its `check` exits 1 where a source is down: that is expected).
  (cd "$WORK" && "$AGENT" check 2>&1 || true) | grep "^ebpf" | sed 's/^/strand-agent check: /' || true
}
dry_mfu() {
  # The whole check against an agent simulating one H100, each step a sleep:
  # markers client -> agent -> windows Parquet -> the analysis, which must pass.
  local d=$WORK/mfu
  mkdir -p "$RES"
  AGENT_ARGS="--simulate-gpus 1" agent_start "$d" '[windows]
period = "2s"
lateness = "3s"
nccl_join_hold = "1s"' || return 1
  $PY "$HERE/check_mfu.py" fake "$d/data/markers.sock" 7 "$d/loop.json" >/dev/null || { agent_stop "$d"; return 1; }
  agent_stop "$d" || return 1
  analyse_mfu
}
dry_reductions() {
  local out
  out=$("$BIN/gpu_equals_cpu" 2>&1)
  echo "$out" | grep -E "every_operation|test result"
  # Without --ignored the GPU test must be reported ignored with its reason, never "ok".
  [[ $out == *"every_operation_matches_the_cpu_backend ... ignored, needs a GPU"* ]] || { echo "gpu_equals_cpu is not ignored with a reason"; return 1; }
  out=$("$BIN/kernels_unit" --list --ignored 2>&1)
  [[ $out == *"embedded_cuda_compiles_with_nvrtc: test"* ]] || { echo "the NVRTC test is not an ignored test of kernels_unit"; return 1; }
  "$BIN/gpu_probe" 2>&1 | grep "test result" || return 1
  "$BIN/kernels_bench" --backend cpu --rows 1e4 --reps 1 >"$WORK/dry-bench.md" || return 1
  [ "$(grep -c '^| 10000 |' "$WORK/dry-bench.md")" = 6 ] || { echo "kernels_bench did not print the 6 operations"; return 1; }
  echo "kernels_bench, CPU backend: 6 operations at 10000 rows"
}
dry_agent_cost() {
  local d=$WORK/dry-cost s
  agent_start "$d" || return 1
  $PY "$HERE/common.py" sample "$AGENT_PID" "$d/samples.jsonl" 0.5 &
  s=$!
  sleep 1.8
  kill "$s"
  agent_stop "$d" || return 1
  [ "$(grep -c cpu_s "$d/samples.jsonl")" -ge 2 ] || { echo "the sampler read nothing"; return 1; }
  echo "sampler: $(wc -l <"$d/samples.jsonl") samples of the agent's CPU time and RSS"
}

# ---- one check, run by the parent under its budget ------------------------------

cleanup() {  # whatever way a check ends, it leaves no agent or sampler running
  local j
  for j in $(jobs -p); do
    [ "$j" = "${AGENT_PID:-}" ] || kill "$j" 2>/dev/null
  done
  if [ -n "${AGENT_PID:-}" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
    echo "stopping the agent this check left running"
    kill -TERM "$AGENT_PID"
    for _ in $(seq 100); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$AGENT_PID" 2>/dev/null
  fi
}

if [ "$MODE" = collect ]; then
  trap cleanup EXIT
  trap 'exit 143' TERM INT
  "collect_$STEP_NAME"
  exit $?
fi
if [ "$MODE" = analyse ]; then
  "analyse_$STEP_NAME"
  exit $?
fi

# ---- the parent -------------------------------------------------------------------

START=$(date +%s)
END=$((START + ${DEADLINE_S:-470}))
mkdir -p "$OUT" "$RES"
echo "validate.sh: $MODE, binaries from $BIN, work in $WORK, results to $OUT"

# Where the carried binaries find what they link: the system's libraries first,
# the pack's lib/ only for what the system lacks (libelf).
# (No `| grep -q` in this script: with pipefail, grep's early exit fails the pipe.)
if [ -x "$AGENT" ] && [[ $(ldd "$AGENT" 2>/dev/null) == *"not found"* ]]; then
  export LD_LIBRARY_PATH=$BIN/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi

info() {  # info LABEL COMMAND...: "LABEL: <output>" into machine.txt, or "problem: LABEL: <error>"
  local label=$1 out
  shift
  if out=$("$@" 2>&1); then
    echo "$out" | sed "s/^/$label: /" >>"$WORK/machine.txt"
  else
    echo "problem: $label: $(echo "$out" | tail -n 1)" >>"$WORK/machine.txt"
  fi
}

preflight() {  # the binaries, the size of what was carried, the machine; fatal only if the agent cannot run
  local ok=0
  {
    echo "date: $(date -u +%FT%TZ)"
    echo "kernel: $(uname -srm)"
    echo "cpus: $(nproc)"
    grep -m1 "model name" /proc/cpuinfo | sed 's/^model name\s*:/cpu:/'
    [ -f "$BIN/PACK" ] && sed -n 's/^built /pack: /p' "$BIN/PACK"
  } >"$WORK/machine.txt"
  $PY "$HERE/common.py" carry-size "$ROOT" "$BIN" | tee "$WORK/carry.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || ok=1
  for f in strand-agent libstrand_inject.so strand kernels_bench gpu_equals_cpu gpu_probe kernels_unit; do
    if [ -e "$BIN/$f" ]; then
      echo "binary $f: $(stat -L -c %s "$BIN/$f") bytes"
    elif [ "$f" = strand ]; then
      echo "binary strand: missing (pack.sh --with-strand builds it): the import and postmortem cross-checks are skipped"
    else
      echo "binary $f: MISSING in $BIN (bench/gpu/pack.sh builds it)"
      ok=1
    fi
  done | tee -a "$WORK/binaries.txt"
  grep -q MISSING "$WORK/binaries.txt" && ok=1
  if ! "$AGENT" --version >"$WORK/agent-version.txt" 2>&1; then
    echo "FATAL: $AGENT does not run here: $(tail -n 3 "$WORK/agent-version.txt")"
    ldd "$AGENT" 2>&1 | grep "not found"
    return 2
  fi
  echo "agent: $(cat "$WORK/agent-version.txt")" >>"$WORK/machine.txt"
  [ "$MODE" = dry ] && return $ok
  command -v nvidia-smi >/dev/null || echo "no nvidia-smi: this is not a GPU machine, every check will fail (--dry-run is for such machines)"
  info "gpu" nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode,pci.bus_id --format=csv,noheader
  info "driver CUDA" bash -o pipefail -c 'nvidia-smi | grep -o "CUDA Version: [0-9.]*" | cut -d" " -f3'
  info "pyarrow" $PY -c 'import pyarrow; print(pyarrow.__version__)'
  # NVML and libcuda for the carried binaries, should the loader not know the driver's folder.
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    if [ -e "$d/libnvidia-ml.so.1" ] && [[ $(ldconfig -p 2>/dev/null) != *"libnvidia-ml.so.1"* ]]; then
      export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d
    fi
  done
  # The libraries torch uses: strand must load the same libcupti and probe the same libnccl.
  if $PY "$HERE/common.py" libs >"$WORK/libs.txt" 2>"$WORK/libs.err"; then
    grep "^torch: " "$WORK/libs.err" >>"$WORK/machine.txt"
    while IFS='=' read -r k v; do
      [ -n "$k" ] && export "$k=$v" && echo "library: $k=$v" >>"$WORK/machine.txt"
    done <"$WORK/libs.txt"
  else
    echo "problem: torch's libraries not found: $(tail -n 1 "$WORK/libs.err")" >>"$WORK/machine.txt"
  fi
  [ -n "${LIBCUPTI:-}" ] && export STRAND_CUPTI_LIB=$LIBCUPTI
  [ -n "${LIBNVRTC:-}" ] && export LD_LIBRARY_PATH=$(dirname "$LIBNVRTC")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  cat "$WORK/machine.txt"
  return $ok
}

preflight
pre=$?
if [ $pre = 2 ]; then
  $PY "$HERE/report.py" "$WORK" "$OUT" fatal
  exit 2
fi

if [ "$MODE" = dry ]; then
  failed=0
  for c in $ONLY; do
    if (trap cleanup EXIT; "dry_$c") >"$WORK/dry-$c.log" 2>&1; then
      line="setup ok"
    else
      line="setup FAILED (see below)"
      failed=1
    fi
    echo "$c: dry run: $line; needs $(needs_of "$c")" | tee -a "$WORK/dry.txt"
    [ "$line" = "setup ok" ] || sed 's/^/    /' "$WORK/dry-$c.log"
  done
  $PY "$HERE/report.py" "$WORK" "$OUT" dry
  [ $pre = 0 ] && [ $failed = 0 ]
  exit $?
fi

for c in $ONLY; do
  left=$((END - $(date +%s) - ANALYSE_S - 10))  # its analysis, then 10 s for the report
  b=$(budget_of "$c")
  [ "$b" -gt "$left" ] && b=$left
  if [ "$b" -lt 15 ]; then
    echo "{\"check\": \"$c\", \"not_run\": \"out of time\"}" >"$RES/$c.run.json"
    echo "$c: not run: out of time"
    continue
  fi
  t0=$(date +%s)
  # Its own process group under timeout: at the budget the whole check is killed
  # (the agent gets SIGTERM and flushes), and what it left is still analysed.
  rm -rf "${WORK:?}/$c" "$RES/$c.json" "$RES/$c.run.json"  # a rerun in the same $WORK starts clean
  timeout -k 5 "$b" bash "$HERE/validate.sh" --collect "$c" >"$WORK/$c.log" 2>&1
  rc=$?
  t1=$(date +%s)
  timeout -k 5 "$ANALYSE_S" bash "$HERE/validate.sh" --analyse "$c" >>"$WORK/$c.log" 2>&1
  arc=$?
  t2=$(date +%s)
  echo "{\"check\": \"$c\", \"budget_s\": $b, \"collect_s\": $((t1 - t0)), \"collect_rc\": $rc, \"analyse_s\": $((t2 - t1)), \"analyse_rc\": $arc}" >"$RES/$c.run.json"
  echo "$c: $($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["status"])' "$RES/$c.json" 2>/dev/null || echo "no result") ($((t2 - t0)) s of $b s$([ $rc = 124 ] || [ $rc = 137 ] && echo ", collection ran out of time"))"
done
$PY "$HERE/report.py" "$WORK" "$OUT" run
