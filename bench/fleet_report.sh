#!/usr/bin/env bash
# Fleet report benchmark (docs/performance.md, "Fleet report"): simulated fleets
# of N nodes × 8 GPUs × 1 hour; `strand report stranded` (DataFusion) against
# DuckDB running the same aggregation SQL (collector/fleet/sql) on the same files,
# comparing every result. Wall time and peak RSS from /usr/bin/time.
#
#   bench/fleet_report.sh [NODES...]        # default: 8 64 512
#
# Needs: a release build (cargo build --release -p strand-cli -p strand-sim),
# python3 with duckdb (pip install duckdb), /usr/bin/time. Data goes to
# $STRAND_BENCH_DIR (default /tmp/strand-fleet-bench), about 1.2 GB for 512 nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${STRAND_BIN:-target/release/strand}
SIM=${STRAND_SIM:-target/release/strand-sim}
WORK=${STRAND_BENCH_DIR:-/tmp/strand-fleet-bench}
START=1767571200000000000   # 2026-01-05T00:00:00Z
END=$((START + 3600000000000))
MEM=${STRAND_BENCH_MEMORY:-1GiB}   # both engines' memory pool
[ -x "$BIN" ] && [ -x "$SIM" ] || { echo "build first: cargo build --release -p strand-cli -p strand-sim" >&2; exit 1; }
python3 -c "import duckdb" 2>/dev/null || { echo "needs duckdb: pip install duckdb" >&2; exit 1; }
mkdir -p "$WORK"

peak() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$1"; }
cpu() { awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.1f", u+s}' "$1"; }
wall() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; printf "%.1f", s}' "$1"; }

printf "| nodes | GPUs | rows | on disk | strand report (wall / CPU) | strand peak RSS | of which SQL | DuckDB SQL (wall / CPU) | DuckDB peak RSS | results |\n"
printf "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
for n in "${@:-8 64 512}"; do
  for nodes in $n; do
    data="$WORK/fleet-$nodes"
    if [ ! -d "$data/windows" ]; then
      "$SIM" --out "$data" --nodes "$nodes" --hours 1 --faults 2> "$WORK/sim-$nodes.log"
    fi
    rows=$(grep -o '[0-9]* rows' "$WORK/sim-$nodes.log" | awk '{print $1}')
    size=$(du -sh "$data" | cut -f1)
    rm -rf "$WORK/report-$nodes" "$WORK/dump-$nodes"
    /usr/bin/time -v "$BIN" report stranded --data "$data" --from "$START" --to "$END" --store --memory-limit "$MEM" \
      --out "$WORK/report-$nodes" --dump-sql "$WORK/dump-$nodes" 2> "$WORK/strand-$nodes.time" >/dev/null
    sql=$(python3 -c "import json; r=json.load(open('$WORK/report-$nodes/stranded.json')); print('%.1f' % sum(t[2] for t in r['timings'] if t[0] != 'collective_stalls'))")
    /usr/bin/time -v python3 bench/fleet_duckdb.py --data "$data" --compare "$WORK/dump-$nodes" --memory-limit "$MEM" \
      > "$WORK/duckdb-$nodes.out" 2> "$WORK/duckdb-$nodes.time" || true
    dsql=$(awk '/queries in/ {print $(NF-1)}' "$WORK/duckdb-$nodes.out")
    same=$(grep -E '^[0-9]+ passed' "$WORK/duckdb-$nodes.out" || echo "see $WORK/duckdb-$nodes.time")
    printf "| %s | %s | %s | %s | %s s / %s s | %s MiB | %s s | %.1f s / %s s | %s MiB | %s |\n" "$nodes" "$((nodes * 8))" "$rows" "$size" \
      "$(wall "$WORK/strand-$nodes.time")" "$(cpu "$WORK/strand-$nodes.time")" "$(peak "$WORK/strand-$nodes.time")" "$sql" \
      "$dsql" "$(cpu "$WORK/duckdb-$nodes.time")" "$(peak "$WORK/duckdb-$nodes.time")" "$same"
  done
done
