#!/usr/bin/env python3
"""Checks what strand-ebpf captured on a GPU machine against the scripts'
own records and NCCL's NCCL_DEBUG=INFO output (bench/gpu/nccl_validate.sh).

Usage: compare.py OUT_DIR
  OUT_DIR/<scenario>/rows.jsonl     rows written by the trace_run example
  OUT_DIR/<scenario>/expect/*.json  what each process called
  OUT_DIR/<scenario>/nccl.*.log     NCCL_DEBUG_FILE output
Prints one PASS/FAIL/SKIP line per check and exits 1 if any check failed.
"""
import glob
import json
import os
import re
import sys

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


def printed_comm_id(version, uid):
    return comm_hash(version, uid) if version >= (2, 26) else hash_unique_id(uid)


def version_of_code(code):
    return (code // 10000, code // 100 % 100, code % 100) if code >= 10000 else (code // 1000, code // 100 % 10, code % 100)


INIT = re.compile(r"^\S+?:(\d+):\d+ .*?comm (0x[0-9a-f]+) rank (\d+) nranks (\d+) .*commId (0x[0-9a-f]+) - Init COMPLETE")
VERSION = re.compile(r"NCCL version (\d+)\.(\d+)\.(\d+)")

results = []


def check(ok, what):
    results.append(("PASS" if ok else "FAIL", what))


def skip(what):
    results.append(("SKIP", what))


def hexint(v):
    return int(v, 16) if isinstance(v, str) else v


def scenario(d):
    name = os.path.basename(d)
    rows = [json.loads(l) for l in open(os.path.join(d, "rows.jsonl")) if l.strip()]
    nccl = [r for r in rows if r["table"] == "nccl_calls"]
    procs = [r for r in rows if r["table"] == "process_events"]
    expects = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(d, "expect", "*.json")))]
    inits, version = [], None
    for f in glob.glob(os.path.join(d, "nccl.*.log")):
        for line in open(f, errors="replace"):
            m = INIT.search(line)
            if m:
                inits.append({"pid": int(m[1]), "comm": int(m[2], 16), "rank": int(m[3]), "nranks": int(m[4]),
                              "comm_id": int(m[5], 16)})
            v = VERSION.search(line)
            if v and version is None:
                version = tuple(int(x) for x in v.groups())
    if not expects:
        check(False, f"{name}: no expectation files (the script did not run)")
        return
    if any(e.get("status", "ok") != "ok" for e in expects):
        skip(f"{name}: workload did not run: {[e.get('status') for e in expects]}")
        return
    check(version is not None, f"{name}: NCCL version in the NCCL_DEBUG log ({version})")
    check(len(inits) > 0, f"{name}: 'Init COMPLETE ... commId' lines in the NCCL_DEBUG log ({len(inits)})")

    for e in expects:
        pid = e["pid"]
        mine = sorted((r for r in nccl if r["pid"] == pid), key=lambda r: r["enter_ns"])
        init_rows = [r for r in mine if r["op"] == "comm_init_rank"]
        check(len(init_rows) > 0, f"{name} pid {pid}: comm_init_rank captured ({len(init_rows)})")
        for li in (i for i in inits if i["pid"] == pid):
            row = next((r for r in init_rows if hexint(r["new_comm_ptr"]) == li["comm"]), None)
            if row is None:
                check(False, f"{name} pid {pid}: no comm_init_rank row for comm {li['comm']:#x}")
                continue
            check((row["rank"], row["nranks"]) == (li["rank"], li["nranks"]),
                  f"{name} pid {pid}: rank/nranks {row['rank']}/{row['nranks']} == NCCL's {li['rank']}/{li['nranks']}")
            got = hexint(row["comm_hash"])
            if version and version >= (2, 26):
                check(got == li["comm_id"], f"{name} pid {pid}: commHash {got:#x} == NCCL's printed commId {li['comm_id']:#x}"
                      if got is not None else f"{name} pid {pid}: commHash captured (null)")
            elif "unique_id_hex" in e:
                uid = bytes.fromhex(e["unique_id_hex"])
                check(printed_comm_id(version, uid) == li["comm_id"],
                      f"{name} pid {pid}: NCCL {version} printed commId {li['comm_id']:#x} == hashUniqueId(id)")
            else:
                skip(f"{name} pid {pid}: NCCL {version} prints hashUniqueId, not commHash; id unknown here")
        if "unique_id_hex" in e:
            uid = bytes.fromhex(e["unique_id_hex"])
            v = version_of_code(e["nccl_version_code"])
            want = comm_hash(v, uid)
            got = [hexint(r["comm_hash"]) for r in init_rows]
            check(got == [want], f"{name} pid {pid}: commHash {got} == NCCL {v} commHash of the captured-by-script id {want:#x}")

        calls = [(r["count"], r["datatype"], r["bytes"]) for r in mine if r["op"] == "allreduce"]
        want = [(c["count"], c["datatype"], c["bytes"]) for c in e["calls"]]
        check(calls == want, f"{name} pid {pid}: {len(calls)} all-reduces captured, {len(want)} made; sizes and types equal")
        ar = [r for r in mine if r["op"] == "allreduce"]
        check(all(r["ret"] == 0 and r["exit_ns"] is not None for r in ar), f"{name} pid {pid}: all-reduces returned 0")
        colls = {}
        for r in mine:
            if r["op"] in ("allreduce", "broadcast", "reduce", "allgather", "reducescatter", "alltoall") \
                    and r["comm_ptr"] not in (None, "0x0"):
                colls.setdefault(r["comm_ptr"], []).append(r["seq"])
        check(all(v == list(range(len(v))) for v in colls.values()),
              f"{name} pid {pid}: collectives numbered 0, 1, 2… per communicator ({ {k: v[:6] for k, v in colls.items()} })")
        kinds = [p["kind"] for p in procs if p["pid"] == pid]
        check(kinds[:1] in (["exec"], ["running"]) and "exit" in kinds, f"{name} pid {pid}: process_events {kinds}")

    if len(expects) > 1:
        series = []
        for e in expects:
            ar = sorted((r for r in nccl if r["pid"] == e["pid"] and r["op"] == "allreduce"), key=lambda r: r["enter_ns"])
            series.append([(r["comm_hash"], r["seq"], r["count"]) for r in ar])
        check(all(s == series[0] for s in series), f"{name}: every rank has the same (commHash, seq, count) series")


def main():
    out = sys.argv[1]
    for d in sorted(glob.glob(os.path.join(out, "*"))):
        if os.path.exists(os.path.join(d, "rows.jsonl")):
            scenario(d)
    for status, what in results:
        print(f"{status}  {what}")
    failed = sum(1 for s, _ in results if s == "FAIL")
    print(f"\n{len(results)} checks, {failed} failed")
    sys.exit(1 if failed or not results else 0)


if __name__ == "__main__":
    main()
