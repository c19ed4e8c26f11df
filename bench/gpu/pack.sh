#!/usr/bin/env bash
# Builds the folder of binaries that bench/gpu/validate.sh runs on a GPU
# machine without cargo (docs/gpu-validation.md), and checks that it and the
# working tree fit in what one device call carries (64 MiB together).
#
#   bench/gpu/pack.sh                 release build, stripped, into target/gpu-pack,
#                                     `strand` included (the offline tools alone:
#                                     strand-cli without its fleet and service halves)
#   bench/gpu/pack.sh --without-strand  leave `strand` out
#   bench/gpu/pack.sh --link-from target/debug --out DIR
#                                     no build: links what `cargo test` built (the
#                                     dry-run test); not stripped, not a release pack
#
# The folder: strand-agent, libstrand_inject.so, strand (if built), the
# kernels_bench example, the test executables gpu_equals_cpu, gpu_probe and
# kernels_unit (strand-kernels' unit tests, for the NVRTC test), lib/libelf.so.1
# (the agent links it; the device image may lack it), and PACK (what it holds).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT_DIR=target/gpu-pack
LINK_FROM=""
WITH_STRAND=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT_DIR=$2; shift 2 ;;
    --link-from) LINK_FROM=$2; shift 2 ;;
    --with-strand) WITH_STRAND=1; shift ;;
    --without-strand) WITH_STRAND=0; shift ;;
    *) echo "pack.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
rm -rf "$OUT_DIR" && mkdir -p "$OUT_DIR/lib"

# The newest executable file among a glob (test binaries carry a hash suffix).
newest() { ls -t "$@" 2>/dev/null | while read -r f; do [ -f "$f" ] && [ -x "$f" ] && { echo "$f"; break; }; done; }

if [ -n "$LINK_FROM" ]; then
  # What `cargo test` built: link, do not copy (debug binaries are large and never travel).
  T=$(cd "$LINK_FROM" && pwd)
  declare -A SRC=(
    [strand-agent]=$T/strand-agent
    # `cargo test` builds the injection library as a dependency: it stays in deps/.
    [libstrand_inject.so]=$( [ -f "$T/libstrand_inject.so" ] && echo "$T/libstrand_inject.so" || echo "$T/deps/libstrand_inject.so")
    [strand]=$T/strand
    [kernels_bench]=$T/examples/kernels_bench
    [gpu_equals_cpu]=$(newest "$T"/deps/gpu_equals_cpu-*)
    [gpu_probe]=$(newest "$T"/deps/gpu_probe-*)
    [kernels_unit]=$(newest "$T"/deps/strand_kernels-*)
  )
  PROFILE=debug
else
  cargo build --release -p strand-agent -p strand-inject
  cargo build --release -p strand-kernels --example kernels_bench
  # Test executables, by name, from cargo's own report of what it built.
  tests=$(cargo test --release -p strand-kernels --no-run --lib --test gpu_equals_cpu --test gpu_probe \
    --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        name = "kernels_unit" if m["target"]["kind"] == ["lib"] else m["target"]["name"]
        print(name, m["executable"])')
  T=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release
  if [ "$WITH_STRAND" = 1 ]; then
    # shellcheck disable=SC2086  # the arguments are meant to split
    cargo build --release ${STRAND_CARGO_ARGS:--p strand-cli --no-default-features --bin strand}
  fi
  declare -A SRC=(
    [strand-agent]=$T/strand-agent
    # `cargo test` builds the injection library as a dependency: it stays in deps/.
    [libstrand_inject.so]=$( [ -f "$T/libstrand_inject.so" ] && echo "$T/libstrand_inject.so" || echo "$T/deps/libstrand_inject.so")
    [strand]=$T/strand
    [kernels_bench]=$T/examples/kernels_bench
  )
  while read -r name path; do [ -n "$name" ] && SRC[$name]=$path; done <<<"$tests"
  PROFILE=release
fi

missing=()
for name in strand-agent libstrand_inject.so strand kernels_bench gpu_equals_cpu gpu_probe kernels_unit; do
  src=${SRC[$name]:-}
  if [ -z "$src" ] || [ ! -f "$src" ]; then
    missing+=("$name")
    continue
  fi
  if [ "$PROFILE" = debug ]; then
    ln -s "$src" "$OUT_DIR/$name"
  else
    cp "$src" "$OUT_DIR/$name"
    strip --strip-all "$OUT_DIR/$name"
  fi
done
for name in "${missing[@]}"; do
  case "$name" in
    strand) echo "pack.sh: strand is not built: it comes from \`cargo build --release ${STRAND_CARGO_ARGS:--p strand-cli --no-default-features --bin strand}\` (pack.sh builds it unless --without-strand). validate.sh skips its two cross-checks without it." ;;
    *) echo "pack.sh: $name is missing (expected at ${SRC[$name]:-?})" >&2; exit 1 ;;
  esac
done

# libelf: the agent's eBPF loader links it dynamically; carried in case the device has none
# (validate.sh uses it only when the system's is missing).
libelf=$(ldd "$OUT_DIR/strand-agent" | awk '/libelf/ {print $3}')
[ -n "$libelf" ] && cp -L "$libelf" "$OUT_DIR/lib/"

{
  echo "profile $PROFILE"
  echo "built $(date -u +%FT%TZ) from $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+changes') on $(uname -m), glibc $(ldd --version | head -1 | awk '{print $NF}')"
  for f in "$OUT_DIR"/* "$OUT_DIR"/lib/*; do
    [ -f "$f" ] && [ "$(basename "$f")" != PACK ] && echo "file $(basename "$f") $(stat -L -c %s "$f")"
  done
  for name in "${missing[@]}"; do echo "missing $name"; done
} > "$OUT_DIR/PACK"
cat "$OUT_DIR/PACK"

# The size check that validate.sh also makes: working tree + this folder <= 64 MiB.
python3 bench/gpu/common.py carry-size "$ROOT" "$OUT_DIR"
