#!/usr/bin/env bash
# Agent overhead: CPU time and peak RSS of strand-agent sampling N simulated
# GPUs at 1 s for D seconds (defaults: 8 GPUs, 600 s), standalone mode.
# Targets (issue 2): under 1% of one core, under 64 MiB RSS.
# Usage: bench/agent_overhead.sh [gpus] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
GPUS=${1:-8}
SECS=${2:-600}
cargo build --release -q -p strand-agent
BIN=${CARGO_TARGET_DIR:-target}/release/strand-agent
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
HZ=$(getconf CLK_TCK)
"$BIN" --data-dir "$DIR/data" --metrics-listen "" --simulate-gpus "$GPUS" 2>"$DIR/log" &
PID=$!
sleep 2
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
T0=$(ticks); S0=$(date +%s.%N)
sleep "$SECS"
T1=$(ticks); S1=$(date +%s.%N)
HWM=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
RSS=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
kill -TERM "$PID"; wait "$PID"
ROWS=$(python3 -c "
import sys, glob, pyarrow.parquet as pq
print(sum(pq.ParquetFile(f).metadata.num_rows for f in glob.glob('$DIR/data/**/*.parquet', recursive=True)))")
BYTES=$(du -sb "$DIR/data" | cut -f1)
python3 - <<PY
cpu = ($T1 - $T0) / $HZ
wall = $S1 - $S0
print(f"gpus={$GPUS} seconds={wall:.0f} cpu_seconds={cpu:.2f} cpu_percent_of_one_core={100*cpu/wall:.3f}")
print(f"peak_rss_mib={$HWM/1024:.1f} rss_end_mib={$RSS/1024:.1f} rows_written=$ROWS bytes_on_disk=$BYTES")
PY
