#!/usr/bin/env bash
# Renders a strand HTML page (postmortem or fleet report) in headless Chromium and checks that its charts
# are there and drew: the DOM after rendering holds the inline SVG charts with
# their shapes, the page asked for nothing over the network, the browser
# logged no error, and the screenshot is not blank.
#
#   bench/render_check.sh [report.html]
#
# Without an argument it builds a report from ../shared/data/kineto first
# (needs target/release/strand or STRAND=path). Needs `chromium`
# (Debian: apt-get install -y chromium, about 1 minute).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
strand=${STRAND:-$here/target/release/strand}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

report=${1:-}
if [[ -z "$report" ]]; then
  data=${STRAND_TEST_DATA:-$here/../shared/data/kineto}
  [[ -d "$data" ]] || data=$here/../../shared/data/kineto
  "$strand" postmortem "$data/sampled_world128_rank0.json.gz" "$data/sampled_world128_rank1.json.gz" \
    --out "$work/pm" --no-progress 2>/dev/null
  report=$work/pm/report.html
fi

browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[[ -n "$browser" ]] || { echo "render_check: no chromium found (apt-get install -y chromium)" >&2; exit 2; }

flags=(--headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update
       --disable-sync --no-first-run --user-data-dir="$work/profile" --enable-logging=stderr --v=0
       --host-resolver-rules="MAP * ~NOTFOUND" --window-size=1100,2400 --virtual-time-budget=5000)
url="file://$(realpath "$report")"

"$browser" "${flags[@]}" --dump-dom "$url" > "$work/dom.html" 2> "$work/dom.log"
"$browser" "${flags[@]}" --screenshot="$work/shot.png" "$url" > /dev/null 2> "$work/shot.log"

fail=0
check() { if ! eval "$2"; then echo "render_check: FAIL: $1" >&2; fail=1; else echo "render_check: ok: $1"; fi; }
svgs=$(grep -o '<svg' "$work/dom.html" | wc -l)
shapes=$(grep -oE '<(rect|path|circle)' "$work/dom.html" | wc -l)
min_svgs=${MIN_SVGS:-6}     # the postmortem draws 6+ charts; the fleet report 3
min_shapes=${MIN_SHAPES:-50}
check "rendered DOM has the charts ($svgs svg, $shapes shapes)" '[[ $svgs -ge $min_svgs && $shapes -ge $min_shapes ]]'
check "no script, no external resource" '! grep -qE "<script|(src|href)=\"https?:" "$work/dom.html"'
check "no browser errors on the page" '! grep -qiE "Uncaught|CONSOLE.*(error|Error)|Failed to load|ERR_" "$work/dom.log" "$work/shot.log"'
size=$(stat -c %s "$work/shot.png" 2>/dev/null || echo 0)
check "screenshot written and not blank ($size bytes)" '[[ $size -gt 20000 ]]'
if [[ -n "${KEEP_SCREENSHOT:-}" ]]; then cp "$work/shot.png" "$KEEP_SCREENSHOT"; echo "screenshot: $KEEP_SCREENSHOT"; fi
exit $fail
