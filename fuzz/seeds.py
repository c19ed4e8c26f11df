#!/usr/bin/env python3
"""Writes seed inputs for the fuzz targets into corpus/<target>/ (ingest_check's
Parquet seeds are written by tests/tests/fuzz.rs). wire_decoder:
valid frames of wire version 1 (see agent/inject/src/wire.rs), each prefixed
with its 2-byte length, the way the target splits its input into frames."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "wire_decoder")


def record(tag, payload):
    return struct.pack("<BH", tag, len(payload)) + payload


def frame(seq, records):
    body = b"".join(records)
    header = b"STRN" + struct.pack("<HHIIQQQII", 1, 48, 4242, 130001, seq, 5, 2, len(records), 0)
    return header + body


name = lambda i, s: record(1, struct.pack("<I", i) + s)
kernel = lambda c, n: record(2, struct.pack("<QQIIIII3i3i", 1000 + c, 2000 + c, c, 0, 1, 7, n, 132, 1, 1, 256, 1, 1))
memcpy = lambda c: record(3, struct.pack("<QQIIIIQBBBB", 10, 20, c, 0, 1, 7, 1 << 20, 1, 1, 3, 0))
memset = lambda c: record(4, struct.pack("<QQIIIIQIH", 10, 20, c, 0, 1, 7, 4096, 0, 3))
sync = lambda c: record(5, struct.pack("<QQIIIIII", 10, 20, c, 1, 7, 3, 0, 0xFFFFFFFF))
api = lambda c, n: record(6, struct.pack("<QQIIBIII", 5, 6, c, 77, 2, 211, n, 0))
device = lambda n: record(7, struct.pack("<I16sI", 0, bytes(range(16)), n))

seeds = {
    "one_of_each": [frame(0, [name(1, b"_Z6kernelPf"), name(2, b"cudaLaunchKernel_v7000"), device(0), api(1, 2), kernel(1, 1), memcpy(2), memset(3), sync(4)])],
    "names_then_use": [frame(0, [name(1, b"ncclDevKernel_AllReduce_Sum_bf16_RING_LL")]), frame(1, [kernel(5, 1), kernel(6, 1)])],
    "counts_only": [frame(3, [])],
}
os.makedirs(OUT, exist_ok=True)
for label, frames in seeds.items():
    with open(os.path.join(OUT, label), "wb") as f:
        for fr in frames:
            f.write(struct.pack("<H", len(fr)) + fr)
print(f"wrote {len(seeds)} seeds to {OUT}")


# Kineto traces for kineto_import, and the same with a read size in front
# for json_split (its first byte: 0 reads all at once, n reads n bytes).
def kineto(rank, steps):
    ts = 1712867402348000
    ev = [{"name": "process_name", "ph": "M", "ts": ts, "pid": 7, "tid": 0, "args": {"name": "python3"}}]
    for s in range(steps):
        t = ts + s * 1000
        ev += [
            {"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{s + 1}", "pid": 7, "tid": 7, "ts": t, "dur": 900},
            {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 7, "tid": 7, "ts": t + 10, "dur": 5,
             "args": {"External id": s, "cbid": 211, "correlation": 100 + s}},
            {"ph": "X", "cat": "kernel", "name": "ampere_sgemm_128x64_nn", "pid": 0, "tid": 20, "ts": t + 20, "dur": 123,
             "args": {"device": 0, "context": 1, "stream": 20, "correlation": 100 + s, "grid": [8, 16, 5], "block": [128, 1, 1]}},
            {"ph": "X", "cat": "kernel", "name": "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)",
             "pid": 0, "tid": 21, "ts": t + 200, "dur": 300,
             "args": {"device": 0, "stream": 21, "correlation": 200 + s, "Collective name": "allreduce",
                      "In msg nelems": 1024, "dtype": "BFloat16", "Group size": 2, "Process Group Ranks": "[0, 1]"}},
            {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy HtoD (Pageable -> Device)", "pid": 0, "tid": 20, "ts": t + 600,
             "dur": 4, "args": {"device": 0, "stream": 20, "correlation": 300 + s, "bytes": 4096}},
            {"ph": "X", "cat": "gpu_memset", "name": "Memset (Device)", "pid": 0, "tid": 20, "ts": t + 610, "dur": 1,
             "args": {"device": 0, "stream": 20, "correlation": 400 + s, "bytes": 512}},
            {"ph": "X", "cat": "cuda_runtime", "name": "cudaStreamSynchronize", "pid": 7, "tid": 7, "ts": t + 620, "dur": 50,
             "args": {"correlation": 500 + s}},
            {"ph": "X", "cat": "cuda_sync", "name": "Stream Sync", "pid": 0, "tid": 20, "ts": t + 620, "dur": 50,
             "args": {"device": 0, "stream": 20, "correlation": 500 + s, "cuda_sync_kind": "Stream Sync"}},
            {"ph": "s", "id": 100 + s, "pid": 7, "tid": 7, "ts": t + 10, "cat": "ac2g", "name": "ac2g"},
        ]
    return {
        "schemaVersion": 1,
        "distributedInfo": {"backend": "nccl", "rank": rank, "world_size": 2},
        "deviceProperties": [{"id": 0, "name": "NVIDIA A100-SXM4-80GB", "computeMajor": 8, "computeMinor": 0}],
        "traceEvents": ev,
        "baseTimeNanoseconds": 1712000000000000000,
    }


traces = {"two_steps": kineto(0, 2), "one_step_rank1": kineto(1, 1), "empty": {"traceEvents": []}}
for target, prefix in (("kineto_import", b""), ("json_split", b"\x00")):
    out = os.path.join(HERE, "corpus", target)
    os.makedirs(out, exist_ok=True)
    for label, trace in traces.items():
        with open(os.path.join(out, label), "wb") as f:
            f.write(prefix + json.dumps(trace, indent=1 if label == "two_steps" else None).encode())
    if prefix:
        with open(os.path.join(out, "small_reads"), "wb") as f:
            f.write(b"\x07" + json.dumps(traces["one_step_rank1"]).encode())
print(f"wrote {len(traces)} Kineto seeds to corpus/kineto_import and corpus/json_split")
