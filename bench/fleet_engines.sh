#!/usr/bin/env bash
# The fleet report on one machine against the Spark path and a Ballista
# cluster (docs/fleet-scale.md, "When one machine is not enough"): simulated
# fleets of N nodes × 8 GPUs × 1 hour; `strand report stranded` in one
# process, then the same report as strand's stall pass (--stalls-only
# --store), Spark running the twelve SQL files (bench/fleet_spark.py,
# local[CORES]) and strand rendering from their results (--from-results);
# then with `--engine ballista://` on a scheduler and 1, 2 and 4 executors
# (`strand-ballista`, each its own process on loopback). Wall, CPU (user +
# system, child processes included: Spark's JVM, from a cgroup) and peak RSS
# of the one process from /usr/bin/time; each executor's CPU from
# /proc/PID/stat; every stranded.json must equal the single-process one but
# for its timings.
#
#   bench/fleet_engines.sh [NODES...]        # default: 64 512
#   BALLISTA_EXECUTORS="1 2 4" SKIP_SPARK=1 bench/fleet_engines.sh 64
#
# Needs: a release build (cargo build --release -p strand-cli -p
# strand-ballista; cargo build --release -p strand-sim --bin strand-sim),
# pyspark and a JRE 17+
# (scripts/install-deps.sh --test), /usr/bin/time. Data: $STRAND_BENCH_DIR
# (default /tmp/strand-engines-bench), about 1.2 GB for 512 nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${STRAND_BIN:-target/release/strand}
BALLISTA=${STRAND_BALLISTA:-target/release/strand-ballista}
EXECUTORS=${BALLISTA_EXECUTORS:-1 2 4}
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

same_json() {
  python3 - "$1" "$2" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
for r in (a, b):
    r.pop("timings", None); r.pop("elapsed_s", None)
print("identical" if a == b else "DIFFERENT")
PY
}
# Seconds of the stall pass (stranded.json's timings).
stalls_s() {
  python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["timings"]; print("%.1f" % sum(x[2] for x in t if x[0] == "collective_stalls"))' "$1"
}
# Seconds the report's twelve queries took (stranded.json's timings).
sql_s() {
  python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["timings"]; print("%.1f" % sum(x[2] for x in t if x[0] not in ("collective_stalls", "results")))' "$1"
}
# CPU seconds (user + system) of a running process.
proc_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

declare -A SINGLE
SPARK=(); BALL=()
for nodes in ${@:-64 512}; do
  data="$WORK/fleet-$nodes"
  rm -rf "$data" "$WORK"/{single,results,spark,ballista}-"$nodes"*
  "$SIM" --out "$data" --nodes "$nodes" --hours 1 --faults 2> "$WORK/sim-$nodes.log"
  range=(--from "$START" --to "$END")
  timed "$WORK/t-single-$nodes" "$BIN" report stranded --data "$data" "${range[@]}" --memory-limit "$MEM" --kernels cpu --out "$WORK/single-$nodes"
  SINGLE[$nodes]="$(wall "$WORK/t-single-$nodes.time") s / $(cat "$WORK/t-single-$nodes.cpu") s / $(peak "$WORK/t-single-$nodes.time") MiB (SQL $(sql_s "$WORK/single-$nodes/stranded.json") s)"
  echo "single process, $nodes nodes: ${SINGLE[$nodes]}" >&2
  if [ -z "${SKIP_SPARK:-}" ]; then
    timed "$WORK/t-stalls-$nodes" "$BIN" report stranded --data "$data" "${range[@]}" --memory-limit "$MEM" --kernels cpu \
      --store --stalls-only --dump-sql "$WORK/results-$nodes"
    timed "$WORK/t-spark-$nodes" python3 bench/fleet_spark.py --master "local[$CORES]" --driver-memory 4g \
      --shuffle-partitions "$((CORES * 4))" --data "$data" --out "$WORK/results-$nodes"
    timed "$WORK/t-render-$nodes" "$BIN" report stranded --from-results "$WORK/results-$nodes" "${range[@]}" --out "$WORK/spark-$nodes"
    tw=0; tc=0
    for s in stalls spark render; do
      tw=$(echo "$tw + $(wall "$WORK/t-$s-$nodes.time")" | bc); tc=$(echo "$tc + $(cat "$WORK/t-$s-$nodes.cpu")" | bc)
    done
    cell() { printf "%s s / %s s" "$(wall "$1.time")" "$(cat "$1.cpu")"; }
    SPARK+=("$(printf "| %s | %s | %s | %s | %s | %s s / %s s | %s |" "$nodes" "${SINGLE[$nodes]}" \
      "$(cell "$WORK/t-stalls-$nodes")" "$(cell "$WORK/t-spark-$nodes")" "$(cell "$WORK/t-render-$nodes")" "$tw" "$tc" \
      "$(same_json "$WORK/single-$nodes/stranded.json" "$WORK/spark-$nodes/stranded.json")")")
  fi
  if [ -x "$BALLISTA" ]; then
    for n in $EXECUTORS; do
      # The whole report each time: the stall pass's scans on the cluster too.
      rm -rf "$data/collective_stalls" "$data/findings"
      port=$(free_port); pids=()
      "$BALLISTA" scheduler --bind "127.0.0.1:$port" --external-host 127.0.0.1 2> "$WORK/ballista-$nodes-$n-scheduler.log" &
      pids+=($!)
      for i in $(seq "$n"); do
        mkdir -p "$WORK/ballista-$nodes-$n-work$i"
        "$BALLISTA" executor --scheduler "127.0.0.1:$port" --port "$(free_port)" --grpc-port "$(free_port)" \
          --concurrent-tasks "$CORES" --work-dir "$WORK/ballista-$nodes-$n-work$i" 2> "$WORK/ballista-$nodes-$n-executor$i.log" &
        pids+=($!)
      done
      for _ in $(seq 300); do
        [ "$(grep -c 'register executor request' "$WORK/ballista-$nodes-$n-scheduler.log")" -ge "$n" ] && break
        sleep 0.2
      done
      out="$WORK/ballista-$nodes-$n"
      timed "$WORK/t-ballista-$nodes-$n" "$BIN" report stranded --data "$data" "${range[@]}" --memory-limit "$MEM" --kernels cpu \
        --store --engine "ballista://127.0.0.1:$port" --out "$out"
      execs=(); total=0
      for p in "${pids[@]:1}"; do c=$(proc_cpu "$p"); execs+=("$c"); total=$(echo "$total + $c" | bc); done
      sched=$(proc_cpu "${pids[0]}")
      kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null || true
      BALL+=("$(printf "| %s | %s | %s s / %s s | %s s | %s s | %s | %s s | %s s | %s |" "$nodes" "$n" "$(wall "$WORK/t-ballista-$nodes-$n.time")" \
        "$(cat "$WORK/t-ballista-$nodes-$n.cpu")" "$(stalls_s "$out/stranded.json")" "$(sql_s "$out/stranded.json")" \
        "$(echo "${execs[*]}" | sed 's/ / + /g') s" "$total" "$sched" \
        "$(same_json "$WORK/single-$nodes/stranded.json" "$out/stranded.json")")")
    done
  fi
done
if [ ${#SPARK[@]} -gt 0 ]; then
  printf "| nodes | one process (wall / CPU / RSS, SQL) | stall pass | Spark local[%s] SQL | render from results | Spark path total (wall / CPU) | stranded.json |\n" "$CORES"
  printf "|---:|---:|---:|---:|---:|---:|---|\n"
  printf "%s\n" "${SPARK[@]}"
  echo
fi
if [ ${#BALL[@]} -gt 0 ]; then
  printf "Single process: %s\n\n" "$(for n in "${!SINGLE[@]}"; do printf "%s nodes %s (stall pass %s s); " "$n" "${SINGLE[$n]}" "$(stalls_s "$WORK/single-$n/stranded.json")"; done)"
  printf "| nodes | executors | strand --engine ballista (wall / CPU of strand) | stall pass | SQL | executors' CPU | executors total | scheduler CPU | stranded.json |\n"
  printf "|---:|---:|---:|---:|---:|---|---:|---:|---|\n"
  printf "%s\n" "${BALL[@]}"
fi
