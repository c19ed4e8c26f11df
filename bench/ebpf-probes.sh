#!/usr/bin/env bash
# Benchmark of strand-ebpf's probes (docs/performance.md, "eBPF probes"):
# cost per probed NCCL call (entry + return uprobe) and the record rate the
# tracer sustains without loss. Needs root and a C compiler.
#
#   sudo -E bench/ebpf-probes.sh [--calls N] [--procs P] [--seconds S] [--poll-ms MS] [--ring-mib M]
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "ebpf-probes.sh: run as root (BPF)"; exit 2; }
cargo build --release -p strand-ebpf --example probe_bench
BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/probe_bench
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
"$BIN" "$@"
