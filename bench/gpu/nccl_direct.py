#!/usr/bin/env python3
"""Calls the real libnccl.so.2 directly (ctypes) with known arguments, for
the eBPF check of bench/gpu/validate.sh (docs/gpu-validation.md).

One rank (nranks 1) on GPU 0: ncclGetVersion, ncclGetUniqueId, ncclCommInitRank,
all-reduces of known sizes and types, a send to itself and the matching
receive in one group, ncclCommDestroy. Writes what it did, including the
unique id bytes, to EXPECT (JSON), so the checker can compute NCCL's commHash
of that id itself.

Usage: nccl_direct.py LIBNCCL EXPECT.json
"""
import ctypes
import json
import os
import sys

import torch  # device buffers and the stream; loads the same libnccl as PyTorch

NCCL_FLOAT32, NCCL_BFLOAT16, NCCL_INT64, NCCL_SUM, NCCL_MAX = 7, 9, 4, 0, 2
CALLS = [  # (count, ncclDataType_t, torch dtype, ncclRedOp_t)
    (1, NCCL_FLOAT32, torch.float32, NCCL_SUM),
    (1024, NCCL_FLOAT32, torch.float32, NCCL_SUM),
    (1 << 20, NCCL_BFLOAT16, torch.bfloat16, NCCL_SUM),
    (12345, NCCL_INT64, torch.int64, NCCL_MAX),
]
DTYPE_NAMES = {NCCL_FLOAT32: ("float32", 4), NCCL_BFLOAT16: ("bfloat16", 2), NCCL_INT64: ("int64", 8)}


class UniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_char * 128)]


def check(what, r):
    if r != 0:
        sys.exit(f"nccl_direct: {what} returned {r}")


def main():
    lib_path, expect_path = sys.argv[1], sys.argv[2]
    nccl = ctypes.CDLL(lib_path)
    torch.cuda.set_device(0)
    stream = torch.cuda.current_stream()

    version = ctypes.c_int()
    check("ncclGetVersion", nccl.ncclGetVersion(ctypes.byref(version)))
    uid = UniqueId()
    check("ncclGetUniqueId", nccl.ncclGetUniqueId(ctypes.byref(uid)))
    comm = ctypes.c_void_p()
    nccl.ncclCommInitRank.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, UniqueId, ctypes.c_int]
    check("ncclCommInitRank", nccl.ncclCommInitRank(ctypes.byref(comm), 1, uid, 0))

    nccl.ncclAllReduce.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                   ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    done = []
    for count, dt, tdt, op in CALLS:
        buf = torch.ones(count, dtype=tdt, device="cuda")
        check("ncclAllReduce", nccl.ncclAllReduce(buf.data_ptr(), buf.data_ptr(), count, dt, op, comm,
                                                  ctypes.c_void_p(stream.cuda_stream)))
        stream.synchronize()
        name, size = DTYPE_NAMES[dt]
        done.append({"op": "allreduce", "count": count, "datatype": name, "bytes": count * size,
                     "stream": hex(stream.cuda_stream), "comm_ptr": hex(comm.value)})

    # Point-to-point with itself: NCCL allows it inside a group.
    count = 3000
    for f in (nccl.ncclSend, nccl.ncclRecv):
        f.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    src = torch.arange(count, dtype=torch.float32, device="cuda")
    dst = torch.zeros_like(src)
    check("ncclGroupStart", nccl.ncclGroupStart())
    check("ncclSend", nccl.ncclSend(src.data_ptr(), count, NCCL_FLOAT32, 0, comm, ctypes.c_void_p(stream.cuda_stream)))
    check("ncclRecv", nccl.ncclRecv(dst.data_ptr(), count, NCCL_FLOAT32, 0, comm, ctypes.c_void_p(stream.cuda_stream)))
    check("ncclGroupEnd", nccl.ncclGroupEnd())
    stream.synchronize()
    if not torch.equal(src, dst):
        sys.exit("nccl_direct: the receive did not get what was sent")
    for op in ("send", "recv"):
        done.append({"op": op, "count": count, "datatype": "float32", "bytes": count * 4, "peer": 0})
    check("ncclCommDestroy", nccl.ncclCommDestroy(comm))

    with open(expect_path, "w") as f:
        json.dump({"scenario": "direct", "pid": os.getpid(), "nccl_version_code": version.value,
                   "unique_id_hex": bytes(uid.internal).hex(), "comm_ptr": hex(comm.value),
                   "nccl_comm_id_env": os.environ.get("NCCL_COMM_ID"), "calls": done,
                   # torch's Stream.synchronize is cudaStreamSynchronize: at least this many rows
                   "syncs": {"cudaStreamSynchronize": len(CALLS) + 1}}, f, indent=1)
    print(f"nccl_direct: NCCL {version.value}, {len(done)} calls on comm {hex(comm.value)}")


if __name__ == "__main__":
    main()
