#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build and test strand.
# Rust itself comes from rustup. Safe to run again; uses sudo when not root.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# gcc: linker and test fixtures; clang + libelf + zlib: the eBPF programs (libbpf-cargo);
# pkg-config: -sys crates;
# systemd: systemd-analyze verifies the unit; python3-pip: test readers (pyarrow).
PKGS="gcc clang llvm libelf-dev zlib1g-dev pkg-config systemd python3 python3-pip"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "install-deps: installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# An independent Parquet reader for the tests (pyarrow); quiet when present.
python3 -c "import pyarrow" 2>/dev/null || python3 -m pip install -q --disable-pip-version-check pyarrow \
  || python3 -m pip install -q --break-system-packages pyarrow
