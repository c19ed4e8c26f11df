#!/usr/bin/env bash
# Range-bounded reads (issue 17): `strand report stranded` for one hour of a
# simulated fleet, alone and with a day of older history in the same dataset
# (two days earlier). With partition pruning the two times should match.
#
#   bench/store_history.sh [NODES] [HISTORY_HOURS]     # default: 8 24
#
# Needs strand and strand-sim built (STRAND_BIN, STRAND_SIM; default
# target/debug). Data goes to $STRAND_BENCH_DIR (default /tmp/strand-history-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${STRAND_BIN:-target/debug/strand}
SIM=${STRAND_SIM:-target/debug/strand-sim}
WORK=${STRAND_BENCH_DIR:-/tmp/strand-history-bench}
NODES=${1:-8}
HIST=${2:-24}
START=1767571200000000000   # 2026-01-05T00:00:00Z
END=$((START + 3600000000000))
OLD=$((START - 2 * 86400000000000))
mkdir -p "$WORK"
[ -d "$WORK/hour/windows" ] || "$SIM" --out "$WORK/hour" --nodes "$NODES" --hours 1 --start-ns "$START" 2>/dev/null
[ -d "$WORK/old/windows" ] || "$SIM" --out "$WORK/old" --nodes "$NODES" --hours "$HIST" --start-ns "$OLD" 2>/dev/null
rm -rf "$WORK/both" && cp -r "$WORK/hour" "$WORK/both" && cp -r "$WORK/old/." "$WORK/both/"
for d in hour both; do
  files=$(find "$WORK/$d" -name '*.parquet' | wc -l)
  rm -rf "$WORK/report-$d"
  t0=$(date +%s.%N)
  "$BIN" report stranded --data "$WORK/$d" --from "$START" --to "$END" --out "$WORK/report-$d" >/dev/null 2>&1
  t1=$(date +%s.%N)
  stall=$(python3 -c "import json; r=json.load(open('$WORK/report-$d/stranded.json')); print('%.1f' % sum(t[2] for t in r['timings'] if t[0] == 'collective_stalls'))")
  printf "%-5s %6d files  report %6.1f s  stall pass %s s\n" "$d" "$files" "$(echo "$t1 - $t0" | bc)" "$stall"
done
