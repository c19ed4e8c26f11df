#!/usr/bin/env python3
"""Writes seed inputs for the wire_decoder fuzz target into corpus/wire_decoder/:
valid frames of wire version 1 (see agent/inject/src/wire.rs), each prefixed
with its 2-byte length, the way the target splits its input into frames."""
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
