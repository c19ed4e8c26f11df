#!/usr/bin/env bash
# Copies, unchanged, the functions that compute NCCL's commHash from a
# unique id out of NCCL's sources at the release tags strand's real-library
# tests use, so the tests compare the tracer with NCCL's own code for that
# release. Run it again when a tag is added:
#
#   ebpf/tests/real/nccl_src/extract.sh /path/to/NVIDIA/nccl   (a git clone)
set -euo pipefail
NCCL=${1:?usage: extract.sh NCCL_GIT_DIR}
cd "$(dirname "$0")"

# TAG FILE FIRST_LINE LAST_LINE: the getHash of that release and what it calls.
slice() {
  local tag=$1 file=$2 first=$3 last=$4 out="$1.h"
  {
    echo "/* Verbatim from NVIDIA/nccl $tag, $file, lines $first-$last"
    echo " * (written by extract.sh; NCCL's license: LICENSE.txt of that release). */"
    git -C "$NCCL" show "$tag:$file" | sed -n "${first},${last}p"
  } > "$out"
  echo "wrote $out"
}

# 2.16: DJB2a over chars (src/misc/utils.cc).
slice v2.16.2-1 src/misc/utils.cc 68 75
# 2.30: the two-word mixer (src/include/bitops.h).
slice v2.30.7-1 src/include/bitops.h 500 548
