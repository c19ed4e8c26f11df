#!/usr/bin/env python3
"""eBPF check (validate.sh): what strand-agent's probes wrote to nccl_calls and
cuda_sync_calls on the real libnccl.so.2, against what the scripts called and
what NCCL itself printed with NCCL_DEBUG=INFO.

  check_nccl.py WORK RESULT.json
  check_nccl.py --self-test        the hashes and the log parser, no GPU needed

WORK/data is the agent's data directory; each scenario directory
(WORK/direct: nccl_direct.py, ctypes; WORK/torch: torch_collectives.py,
torch.distributed) holds expect.json (what the process called) and
nccl.*.log (NCCL_DEBUG_FILE). WORK/bpf.txt is `strand-agent check`'s output.

Pass criteria, per scenario:
  - every NCCL call made is in nccl_calls, in order, with its op, count,
    datatype and bytes, returned 0 (calls PyTorch makes on its own are noted);
  - every communicator NCCL reports ("Init COMPLETE", split children too) has
    a comm_init_rank / comm_split row with that pointer, and its comm_hash
    equals the commId NCCL printed (NCCL >= 2.26 prints the commHash);
  - direct: the comm_hash equals NCCL's hash of the unique id the script got,
    computed here (a third implementation, after strand's and NCCL's);
  - collectives numbered 0, 1, 2... per communicator;
  - each CUDA synchronize call made shows up in cuda_sync_calls;
  - process_events has the process's start and exit.
"""
import glob
import json
import os
import re
import sys

from common import read_table, run_check, unsigned64

M64 = (1 << 64) - 1


def djb2a(b):  # NCCL <= 2.25 getHash; char is signed on x86-64
    h = 5381
    for c in b:
        c = c - 256 if c > 127 else c
        h = (((h << 5) + h) & M64) ^ (c & M64)
    return h


def eat(acc, b):  # NCCL >= 2.26 eatHash
    acc[0] ^= len(b)
    for i in range(0, len(b), 8):
        acc[0] = (acc[0] + acc[1]) & M64
        acc[1] ^= acc[0]
        acc[0] ^= acc[0] >> 31
        acc[0] = (acc[0] * 0x9DE62BBC8CEF3CE3) & M64
        acc[1] ^= acc[1] >> 32
        acc[1] = (acc[1] * 0x485CD6311B599E79) & M64
        acc[0] = (acc[0] + int.from_bytes(b[i:i + 8].ljust(8, b"\0"), "little")) & M64


def digest(acc):
    h = acc[0]
    h ^= h >> 31
    h = (h * 0xBAC3BD562846DE6B) & M64
    h = (h + acc[1]) & M64
    h ^= h >> 32
    return (h * 0x995A187A14E7B445) & M64


def comm_hash(version, uid):
    if version >= (2, 26):
        acc = [1, 1]
        eat(acc, uid)
        return digest(acc)
    return djb2a(uid)


def hash_unique_id(uid):  # what NCCL 2.16-2.25 print as "commId"
    h = 0xDEADBEEF
    for c in uid:
        c = c - 256 if c > 127 else c
        h ^= h >> 32
        h = (h * 0x8DB3DB47FA2994AD) & M64
        h = (h + (c & M64)) & M64
    return h


def version_of_code(code):
    return (code // 10000, code // 100 % 100, code % 100) if code >= 10000 else (code // 1000, code // 100 % 10, code % 100)


# "host:pid:tid [dev] NCCL INFO <func> comm 0x.. rank R nranks N ... commId 0x.. [parent 0x.. childCount ..] - Init COMPLETE"
INIT = re.compile(r"^\S+?:(\d+):\d+ .*?(\w+) comm (0x[0-9a-f]+) rank (-?\d+) nranks (\d+) .*?commId (0x[0-9a-f]+)"
                  r"(?: parent (0x[0-9a-f]+|\(nil\)))?.* - Init COMPLETE")
VERSION = re.compile(r"NCCL version (\d+)\.(\d+)\.(\d+)")
COLLECTIVES = ("allreduce", "broadcast", "reduce", "allgather", "reducescatter", "alltoall")
SYNC_APIS = {"device": ("cudaDeviceSynchronize", "cuCtxSynchronize"),
             "stream": ("cudaStreamSynchronize", "cuStreamSynchronize"),
             "event": ("cudaEventSynchronize", "cuEventSynchronize")}


def parse_logs(paths):
    inits, version = [], None
    for f in paths:
        for line in open(f, errors="replace"):
            m = INIT.search(line)
            if m:
                inits.append({"pid": int(m[1]), "func": m[2], "comm": int(m[3], 16), "rank": int(m[4]),
                              "nranks": int(m[5]), "comm_id": int(m[6], 16), "split": m[7] is not None})
            v = VERSION.search(line)
            if v and version is None:
                version = tuple(int(x) for x in v.groups())
    return inits, version


def in_order(want, got):
    """Is `want` a subsequence of `got`? Returns (ok, extra calls in got)."""
    i = 0
    for g in got:
        if i < len(want) and g == want[i]:
            i += 1
    return i == len(want), len(got) - i


def call_key(c):
    return (c["op"], c["count"], c["datatype"], c["bytes"])


def scenario(res, name, d, nccl, syncs, procs):
    expect_path = os.path.join(d, "expect.json")
    if not os.path.exists(expect_path):
        res.criterion(f"{name}: the workload wrote what it called", False, "no expect.json", "present")
        return
    e = json.load(open(expect_path))
    if e.get("status", "ok") != "ok":
        res.criterion(f"{name}: the workload ran", False, e["status"], "ok")
        return
    pid = e["pid"]
    inits, version = parse_logs(glob.glob(os.path.join(d, "nccl.*.log")))
    inits = [i for i in inits if i["pid"] == pid]
    res.numbers[f"{name}_nccl_version"] = version
    res.criterion(f"{name}: NCCL printed its version and Init COMPLETE lines", version is not None and inits,
                  f"{version}, {len(inits)} communicators", "both")
    mine = sorted((r for r in nccl if r["pid"] == pid), key=lambda r: r["enter_ns"])
    res.numbers[f"{name}_rows"] = len(mine)

    # Communicators: NCCL's printed commId against the captured hash of the same pointer.
    made = {unsigned64(r["new_comm_ptr"]): r for r in mine if r["op"] in ("comm_init_rank", "comm_split") and r["new_comm_ptr"]}
    for li in inits:
        row = made.get(li["comm"])
        what = f"{name}: {li['func']} comm {li['comm']:#x}"
        if row is None:
            res.criterion(f"{what}: captured", False, "no comm_init_rank/comm_split row", "a row")
            continue
        got = unsigned64(row["comm_hash"])
        if version and version >= (2, 26):
            res.criterion(f"{what}: comm_hash = NCCL's printed commId", got == li["comm_id"],
                          None if got is None else f"{got:#x}", f"{li['comm_id']:#x}")
        else:
            res.note(f"{what}: NCCL {version} prints hashUniqueId, not the commHash; compared below where the id is known")
        if row["op"] == "comm_init_rank":
            res.criterion(f"{what}: rank/nranks", (row["rank"], row["nranks"]) == (li["rank"], li["nranks"]),
                          f"{row['rank']}/{row['nranks']}", f"{li['rank']}/{li['nranks']}")
    if "unique_id_hex" in e:
        uid = bytes.fromhex(e["unique_id_hex"])
        v = version_of_code(e["nccl_version_code"])
        got = [unsigned64(r["comm_hash"]) for r in mine if r["op"] == "comm_init_rank"]
        want = comm_hash(v, uid)
        res.criterion(f"{name}: comm_hash = NCCL {v} hash of the id the script got (computed here)", got == [want],
                      [f"{g:#x}" if g is not None else None for g in got], f"[{want:#x}]")
        if v < (2, 26):
            printed = [i["comm_id"] for i in inits if not i["split"]]
            res.criterion(f"{name}: NCCL's printed commId = hashUniqueId(id)", printed == [hash_unique_id(uid)],
                          [f"{p:#x}" for p in printed], f"{hash_unique_id(uid):#x}")

    # The calls: every one made, in order, with its bytes.
    data = [r for r in mine if r["op"] in COLLECTIVES + ("send", "recv")]
    split_children = {unsigned64(r["new_comm_ptr"]) for r in mine if r["op"] == "comm_split" and r["new_comm_ptr"]}
    on_child = [r for r in data if unsigned64(r["comm_ptr"]) in split_children]
    on_parent = [r for r in data if unsigned64(r["comm_ptr"]) not in split_children]
    for label, want, got in [("calls", e["calls"], on_parent), ("calls on the split communicator", e.get("sub_calls", []), on_child)]:
        if not want and label != "calls":
            continue
        ok, extra = in_order([call_key(c) for c in want], [call_key(r) for r in got])
        res.criterion(f"{name}: {len(want)} {label} captured in order with op, count, datatype and bytes", ok,
                      f"{len(got)} rows", f"{len(want)} calls")
        if extra:
            res.note(f"{name}: {extra} rows beyond the script's own {label} (made by PyTorch or NCCL itself)")
    if e.get("sub_calls"):
        res.criterion(f"{name}: the sub-group was made by one ncclCommSplit", len(split_children) == 1, len(split_children), 1)
    res.criterion(f"{name}: every captured call returned 0", all(r["ret"] == 0 and r["exit_ns"] is not None for r in data),
                  sum(1 for r in data if r["ret"] != 0 or r["exit_ns"] is None), "0 failed or unfinished")
    seqs = {}
    for r in data:
        if r["op"] in COLLECTIVES:
            seqs.setdefault(r["comm_ptr"], []).append(r["seq"])
    res.criterion(f"{name}: collectives numbered 0, 1, 2... per communicator",
                  bool(seqs) and all(v == list(range(len(v))) for v in seqs.values()),
                  {f"{unsigned64(k):#x}": v[:5] for k, v in seqs.items()}, "0..n-1")

    # CUDA synchronize probes: the runtime call, or the driver call when torch links cudart statically.
    want_syncs = e.get("syncs", {})
    mine_syncs = [r for r in syncs if r["pid"] == pid]
    for kind, n in want_syncs.items():
        key = "stream" if kind == "cudaStreamSynchronize" else kind
        got = sum(1 for r in mine_syncs if r["api"] in SYNC_APIS[key])
        res.criterion(f"{name}: {key} synchronize calls in cuda_sync_calls", got >= n, got, f">= {n}")
    kinds = [p["kind"] for p in procs if p["pid"] == pid]
    res.criterion(f"{name}: process_events start and exit", kinds[:1] in (["exec"], ["running"]) and "exit" in kinds, kinds, "exec|running ... exit")


def analyse(work, res):
    try:
        bpf = open(os.path.join(work, "bpf.txt")).read()
    except OSError:
        bpf = ""
    line = next((l for l in bpf.splitlines() if l.startswith("eBPF")), "eBPF  ?  `strand-agent check` did not run")
    res.numbers["bpf_allowed"] = line.split()[1] == "ok" if len(line.split()) > 1 else None
    res.numbers["bpf_check"] = line
    if not res.numbers["bpf_allowed"]:
        res.criterion("BPF allowed on this machine (strand-agent check)", False, line, "eBPF ok")
        return
    nccl = read_table(os.path.join(work, "data"), "nccl_calls")
    syncs = read_table(os.path.join(work, "data"), "cuda_sync_calls")
    procs = read_table(os.path.join(work, "data"), "process_events")
    res.numbers.update(nccl_rows=len(nccl), sync_rows=len(syncs), process_rows=len(procs))
    for name in ("direct", "torch"):
        scenario(res, name, os.path.join(work, name), nccl, syncs, procs)


def self_test():
    """Known answers printed by NCCL's own hash code (ebpf/src/nccl.rs tests), and both log formats."""
    id_a = bytes((i * 37 + 11) & 0xFF for i in range(128))
    id_b = (0x0280028002800280).to_bytes(8, "little") + bytes([2, 0, 0x30, 0x39, 127, 0, 0, 1]) + bytes(112)
    checks = [
        (comm_hash((2, 28, 3), id_a), 0x3002DCD1BBE6653D),
        (comm_hash((2, 25, 1), id_a), 0x65BB3B0CBA527185),
        (hash_unique_id(id_a), 0xAE3632082B38C8D3),
        (comm_hash((2, 28, 3), id_b), 0x8F7B854715D9B257),
        (comm_hash((2, 25, 1), id_b), 0xA3351AB3D15E8610),
        (hash_unique_id(id_b), 0xFBAE0B4A07B7357D),
    ]
    bad = [(hex(g), hex(w)) for g, w in checks if g != w]
    lines = [
        "h1:4242:4250 [0] NCCL INFO ncclCommInitRankConfig comm 0x5e30 rank 0 nranks 1 cudaDev 0 nvmlDev 0 busId 1000 commId 0xadcb - Init COMPLETE",
        "h1:4242:4250 [0] NCCL INFO ncclCommSplit comm 0x6f00 rank 0 nranks 1 cudaDev 0 nvmlDev 0 busId 1000 commId 0xbeef parent 0x5e30 childCount 1 color 0 key 0 - Init COMPLETE",
        "h1:4242:4250 [0] NCCL INFO comm 0x5e30 rank 0 nranks 1 cudaDev 0 busId 1000 commId 0xadcb - Destroy COMPLETE",
    ]
    parsed = [INIT.search(l) for l in lines]
    got = [(int(m[3], 16), int(m[6], 16), m[7] is not None) if m else None for m in parsed]
    want = [(0x5E30, 0xADCB, False), (0x6F00, 0xBEEF, True), None]
    if got != want:
        bad.append((got, want))
    print("check_nccl self-test: " + ("ok (6 known hashes, 3 log lines)" if not bad else f"FAILED {bad}"))
    return 0 if not bad else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(0 if run_check("nccl", sys.argv[2], lambda r: analyse(sys.argv[1], r)).status() == "pass" else 1)
