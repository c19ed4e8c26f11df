#!/usr/bin/env python3
"""PyTorch torch.distributed with the NCCL backend, world size 1 on GPU 0, for
the eBPF check of bench/gpu/validate.sh (docs/gpu-validation.md).

The default group is initialised eagerly (device_id), which makes PyTorch
create its communicator with ncclCommInitRank[Config] and later groups with
ncclCommSplit. It runs all-reduce, all-gather, reduce-scatter and broadcast of
known sizes and types on the default group, makes one sub-group (new_group:
one ncclCommSplit) and all-reduces on it, then calls the three CUDA
synchronize functions. Writes what it called to EXPECT (JSON): each NCCL call
with the count and bytes NCCL receives, and the least number of synchronize
calls of each kind.

Usage: torch_collectives.py EXPECT.json [--port P]
"""
import argparse
import json
import os

import torch
import torch.distributed as dist

# (op, elements, dtype, NCCL's name, bytes per element); for all-gather the
# count NCCL gets is the send count, for reduce-scatter the receive count.
CALLS = [
    ("allreduce", 1, torch.float32, "float32", 4),
    ("allreduce", 4096, torch.float32, "float32", 4),
    ("allreduce", 1 << 20, torch.bfloat16, "bfloat16", 2),
    ("allreduce", 3 << 20, torch.float16, "float16", 2),
    ("allreduce", 777, torch.int64, "int64", 8),
    ("allgather", 5000, torch.float32, "float32", 4),
    ("reducescatter", 1 << 16, torch.bfloat16, "bfloat16", 2),
    ("broadcast", 12345, torch.int32, "int32", 4),
]
REPEAT = 2
SUB_ALLREDUCES = 3


def call(op, n, dtype, group=None):
    t = torch.ones(n, dtype=dtype, device="cuda")
    if op == "allreduce":
        dist.all_reduce(t, group=group)
    elif op == "allgather":
        out = torch.empty(n * dist.get_world_size(group), dtype=dtype, device="cuda")
        dist.all_gather_into_tensor(out, t, group=group)
    elif op == "reducescatter":
        inp = torch.ones(n * dist.get_world_size(group), dtype=dtype, device="cuda")
        dist.reduce_scatter_tensor(t, inp, group=group)
    elif op == "broadcast":
        dist.broadcast(t, src=0, group=group)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("expect")
    p.add_argument("--port", type=int, default=29531)
    a = p.parse_args()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(a.port), RANK="0", WORLD_SIZE="1")
    dev = torch.device("cuda", 0)
    torch.cuda.set_device(dev)
    calls, sub_calls, status = [], [], "ok"
    syncs = {"stream": 0, "device": 0, "event": 0}
    try:
        dist.init_process_group("nccl", rank=0, world_size=1, device_id=dev)
        for _ in range(REPEAT):
            for op, n, dtype, name, size in CALLS:
                call(op, n, dtype)
                calls.append({"op": op, "count": n, "datatype": name, "bytes": n * size})
        sub = dist.new_group([0])
        for _ in range(SUB_ALLREDUCES):
            call("allreduce", 2048, torch.float32, group=sub)
            sub_calls.append({"op": "allreduce", "count": 2048, "datatype": "float32", "bytes": 2048 * 4})
        torch.cuda.synchronize()  # cudaDeviceSynchronize
        syncs["device"] += 1
        torch.cuda.current_stream().synchronize()  # cudaStreamSynchronize
        syncs["stream"] += 1
        e = torch.cuda.Event()
        e.record()
        e.synchronize()  # cudaEventSynchronize
        syncs["event"] += 1
    except Exception as e:  # reported by the checker, not a crash
        status = f"error: {type(e).__name__}: {e}"
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    with open(a.expect, "w") as f:
        json.dump({"scenario": "torch", "pid": os.getpid(), "status": status,
                   "nccl_version": list(torch.cuda.nccl.version()), "calls": calls, "sub_calls": sub_calls,
                   "syncs": syncs}, f, indent=1)
    print(f"torch_collectives: {len(calls)} calls on the default group, {len(sub_calls)} on the split group, {status}")


if __name__ == "__main__":
    main()
