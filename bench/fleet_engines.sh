#!/usr/bin/env bash
# The fleet report on one machine against the Spark path (docs/fleet-scale.md,
# "When one machine is not enough"): simulated fleets of N nodes × 8 GPUs ×
# 1 hour; `strand report stranded` in one process, then the same report as
# strand's stall pass (--stalls-only --store), Spark running the twelve SQL
# files (bench/fleet_spark.py, local[CORES]) and strand rendering from their
# results (--from-results). Wall, CPU (user + system, child processes
# included: Spark's JVM, from a cgroup) and peak RSS of the one process
# from /usr/bin/time; the two
# stranded.json must be equal but for their timings.
#
#   bench/fleet_engines.sh [NODES...]        # default: 64 512
#
# Needs: a release build (cargo build --release -p strand-cli; cargo build
# --release -p strand-sim --bin strand-sim), pyspark and a JRE 17+
# (scripts/install-deps.sh --test), /usr/bin/time. Data: $STRAND_BENCH_DIR
# (default /tmp/strand-engines-bench), about 1.2 GB for 512 nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${STRAND_BIN:-target/release/strand}
SIM=${STRAND_SIM:-target/release/strand-sim}
WORK=${STRAND_BENCH_DIR:-/tmp/strand-engines-bench}
CORES=${SPARK_CORES:-2}
START=1767571200000000000   # 2026-01-05T00:00:00Z
END=$((START + 3600000000000))
MEM=${STRAND_BENCH_MEMORY:-1GiB}
[ -x "$BIN" ] && [ -x "$SIM" ] || { echo "build first: cargo build --release -p strand-cli -p strand-sim" >&2; exit 1; }
mkdir -p "$WORK"

peak() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$1"; }
cpu() { awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.1f", u+s}' "$1"; }
wall() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; printf "%.1f", s}' "$1"; }
# CPU of a command and of every process it starts, from a cgroup v1 cpuacct
# group where there is one: Spark's JVM is not a child python waits for, so
# /usr/bin/time does not count it. Written as "$out.cpu" (seconds).
CG=/sys/fs/cgroup/cpuacct/strand-bench-$$
mkdir -p "$CG" 2>/dev/null || CG=
trap '[ -n "$CG" ] && rmdir "$CG" 2>/dev/null' EXIT
timed() {
  local out=$1 before=0; shift
  [ -n "$CG" ] && before=$(cat "$CG/cpuacct.usage")
  /usr/bin/time -v bash -c '[ -n "$0" ] && echo $$ > "$0/tasks"; exec "$@"' "$CG" "$@" > "$out.log" 2> "$out.time" || { cat "$out.time" >&2; exit 1; }
  if [ -n "$CG" ]; then echo "scale=1; ($(cat "$CG/cpuacct.usage") - $before) / 1000000000" | bc > "$out.cpu"; else cpu "$out.time" > "$out.cpu"; fi
}

printf "| nodes | one process (wall / CPU / RSS) | stall pass | Spark local[%s] SQL | render from results | Spark path total (wall / CPU) | stranded.json |\n" "$CORES"
printf "|---:|---:|---:|---:|---:|---:|---|\n"
for nodes in ${@:-64 512}; do
  data="$WORK/fleet-$nodes"
  rm -rf "$data" "$WORK"/{single,results,spark}-"$nodes"
  "$SIM" --out "$data" --nodes "$nodes" --hours 1 --faults 2> "$WORK/sim-$nodes.log"
  range=(--from "$START" --to "$END")
  timed "$WORK/t-single-$nodes" "$BIN" report stranded --data "$data" "${range[@]}" --memory-limit "$MEM" --kernels cpu --out "$WORK/single-$nodes"
  timed "$WORK/t-stalls-$nodes" "$BIN" report stranded --data "$data" "${range[@]}" --memory-limit "$MEM" --kernels cpu \
    --store --stalls-only --dump-sql "$WORK/results-$nodes"
  timed "$WORK/t-spark-$nodes" python3 bench/fleet_spark.py --master "local[$CORES]" --driver-memory 4g \
    --shuffle-partitions "$((CORES * 4))" --data "$data" "${range[@]}" --out "$WORK/results-$nodes"
  timed "$WORK/t-render-$nodes" "$BIN" report stranded --from-results "$WORK/results-$nodes" "${range[@]}" --out "$WORK/spark-$nodes"
  same=$(python3 - "$WORK/single-$nodes/stranded.json" "$WORK/spark-$nodes/stranded.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
for r in (a, b):
    r.pop("timings", None); r.pop("elapsed_s", None)
print("identical" if a == b else "DIFFERENT")
PY
)
  tw=0; tc=0
  for s in stalls spark render; do
    tw=$(echo "$tw + $(wall "$WORK/t-$s-$nodes.time")" | bc); tc=$(echo "$tc + $(cat "$WORK/t-$s-$nodes.cpu")" | bc)
  done
  cell() { printf "%s s / %s s" "$(wall "$1.time")" "$(cat "$1.cpu")"; }
  printf "| %s | %s / %s MiB | %s | %s | %s | %s s / %s s | %s |\n" "$nodes" "$(cell "$WORK/t-single-$nodes")" "$(peak "$WORK/t-single-$nodes.time")" \
    "$(cell "$WORK/t-stalls-$nodes")" "$(cell "$WORK/t-spark-$nodes")" "$(cell "$WORK/t-render-$nodes")" "$tw" "$tc" "$same"
done
