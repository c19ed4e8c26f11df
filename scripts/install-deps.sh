#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build strand, and with
# --test also what its tests use. Rust itself comes from rustup. Safe to run
# again: it installs only what is missing; uses sudo when not root.
#
#   scripts/install-deps.sh          # build: the agent and the collector
#   scripts/install-deps.sh --test   # build + tests
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# gcc: linker and C test fixtures; clang + llvm + libelf + zlib: the eBPF
# programs (libbpf-cargo); make: libbpf-sys builds its vendored libbpf;
# pkg-config: -sys crates.
PKGS="gcc make clang llvm libelf-dev zlib1g-dev pkg-config"
TESTING=0
if [ "${1:-}" = "--test" ]; then
  TESTING=1
  # systemd-analyze verifies the unit; python3 runs the independent readers
  # (pyarrow, DuckDB) and the markers client, and pip fetches NVIDIA's wheels
  # for the real-library tests; chromium renders the HTML reports; g++
  # compiles NCCL's own hash code (ebpf/tests/real/nccl_src); the arm64 cross
  # toolchain checks that strand-ebpf builds for arm64 (ebpf/tests/cross_arm64.rs).
  PKGS="$PKGS systemd python3 python3-pip chromium g++ gcc-aarch64-linux-gnu libc6-dev-arm64-cross linux-libc-dev-arm64-cross"
  # prometheus (with promtool): the dashboard's queries against a real
  # Prometheus and the alert rules' unit tests; lintian and dpkg-dev check
  # the .deb packages; protobuf-compiler builds the kubelet pod-resources
  # test server from its proto (tests/build.rs).
  PKGS="$PKGS prometheus lintian dpkg-dev protobuf-compiler"
  # A JRE runs Spark (pyspark) in the external-engine tests
  # (tests/tests/engines.rs, bench/external_count.py). Checked by command:
  # any Java 17+ will do.
  command -v java >/dev/null || PKGS="$PKGS default-jre-headless"
  # node and npm run TypeScript against Grafana's dashboard schema
  # (tests/grafana). Checked by command, not package: a NodeSource nodejs
  # bundles npm, and Debian's npm package would conflict with it.
  command -v npm >/dev/null || PKGS="$PKGS nodejs npm"
fi

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "install-deps: installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ "$TESTING" = 1 ]; then
  # The Rust standard library for the arm64 check.
  if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    echo "install-deps: rustup target add aarch64-unknown-linux-gnu"
    rustup target add aarch64-unknown-linux-gnu
  fi
  # cargo-deb builds the .deb packages (tests/tests/packaging.rs); a few
  # minutes of compiling the first time.
  if ! command -v cargo-deb >/dev/null; then
    echo "install-deps: cargo install cargo-deb"
    cargo install --locked --quiet cargo-deb@3.8.0
  fi
  # cargo-fuzz runs the fuzz targets (tests/tests/fuzz.rs) on stable rustc;
  # libfuzzer-sys compiles libFuzzer with g++.
  if ! command -v cargo-fuzz >/dev/null; then
    echo "install-deps: cargo install cargo-fuzz"
    cargo install --locked --quiet cargo-fuzz@0.13.2
  fi
  # TypeScript and Grafana's published dashboard schema (@grafana/schema),
  # pinned by tests/grafana/package-lock.json, check the dashboard.
  GRAFANA_CHECK="$(dirname "$0")/../tests/grafana"
  if ! cmp -s "$GRAFANA_CHECK/package-lock.json" "$GRAFANA_CHECK/node_modules/.installed-lock.json" 2>/dev/null; then
    echo "install-deps: npm ci in tests/grafana"
    (cd "$GRAFANA_CHECK" && npm ci --no-audit --no-fund --loglevel=error >/dev/null \
      && cp package-lock.json node_modules/.installed-lock.json)
  fi
  # Independent readers of strand's Parquet: pyarrow and DuckDB everywhere,
  # pandas, Polars and Spark in tests/tests/engines.rs.
  for mod in pyarrow duckdb pandas polars pyspark; do
    python3 -c "import $mod" 2>/dev/null && continue
    echo "install-deps: pip install $mod"
    python3 -m pip install -q --disable-pip-version-check "$mod" 2>/dev/null \
      || python3 -m pip install -q --disable-pip-version-check --break-system-packages "$mod"
  done
  # A local S3-compatible server for the S3 tests (tests/tests/s3_store.rs).
  if ! python3 -c "import moto.server, flask, flask_cors" 2>/dev/null; then
    echo "install-deps: pip install moto[server]"
    python3 -m pip install -q --disable-pip-version-check "moto[server]" 2>/dev/null \
      || python3 -m pip install -q --disable-pip-version-check --break-system-packages "moto[server]"
  fi
fi
