#!/usr/bin/env bash
# Lists the functions that `strand postmortem` and `strand import` run, in
# collector/hot-text.txt, for collector/build.rs to have the linker place them
# side by side. The `strand` binary carries ~95 MB of code (DataFusion, Arrow,
# the HTTP server); a short command touches ~1 MB of it spread over ~110
# windows of 64 KiB, and the kernel maps whole windows (fault-around), so
# ~7 MiB of code was resident for a 20 KB trace. Grouped, it is ~1 MiB
# (docs/performance.md, "Resident code").
#
# Run it after changes that add or rename functions on those paths, or after
# a Rust upgrade (symbol hashes change with the compiler): a stale list still
# links and works, only more code pages become resident again.
#
#   scripts/hot-text.sh            # needs valgrind; builds target/release/strand
set -euo pipefail
cd "$(dirname "$0")/.."
data=${STRAND_TEST_DATA:-../shared/data/kineto}
bin=target/release/strand
command -v valgrind >/dev/null || { echo "hot-text.sh: needs valgrind (apt install valgrind)" >&2; exit 1; }
cargo build --release -p strand-collector
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() {
    echo "  strand $*" >&2
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$tmp/cg.%p" "$bin" "$@" >/dev/null 2>&1
}
shopt -s nullglob
traces=("$data"/*.json.gz "$data"/*.json)
[ ${#traces[@]} -gt 0 ] || { echo "hot-text.sh: no Kineto traces in $data" >&2; exit 1; }
for t in "${traces[@]}"; do
    run postmortem "$t" -o "$tmp/pm" --no-progress
    run postmortem "$t" -o "$tmp/pm" --no-progress --hta-scope --launch-gap 30us
done
run import kineto "${traces[@]}" -o "$tmp/dataset"
run postmortem "$tmp/dataset" -o "$tmp/pm" --no-progress

python3 - "$bin" "$tmp" "$(rustc -V)" > collector/hot-text.txt <<'EOF'
import glob, re, subprocess, sys
binary, tmp, rustc = sys.argv[1:]
ran = set()
for f in glob.glob(f"{tmp}/cg.*"):
    for line in open(f, errors="replace"):
        m = re.match(r"^c?fn=\(\d+\) (\S+)$", line.rstrip("\n"))
        if m:
            ran.add(m.group(1))
text = {}
nm = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
for line in nm.splitlines():
    p = line.split()
    if len(p) == 3 and p[1] in "tTwW":
        text[p[2]] = int(p[0], 16)
hot = sorted((text[n], n) for n in ran if n in text)
print(f"# Functions run by `strand postmortem` and `strand import`, in address order.")
print(f"# Written by scripts/hot-text.sh with {rustc}; read by collector/build.rs.")
print(f"# `.llvm.*` stands for the number LLVM appends to symbols it makes global,")
print(f"# which changes from build to build.")
seen = set()
for _, n in hot:
    n = re.sub(r"\.llvm\.\d+$", ".llvm.*", n)
    if n not in seen:
        seen.add(n)
        print(n)
print(f"hot-text.sh: {len(hot)} functions", file=sys.stderr)
EOF
