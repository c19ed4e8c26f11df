#!/usr/bin/env python3
"""PyTorch torch.distributed with the NCCL backend: all-reduces of known sizes,
for strand-ebpf's GPU validation (bench/gpu/nccl_validate.sh, docs/gpu-validation.md).

Each rank writes what it called to EXPECT_DIR/rank<r>.json. With --world 2 on a
single GPU both ranks use cuda:0; NCCL may refuse that ("Duplicate GPU"), which
the checker reports as such.

Usage: torch_allreduce.py --world N --expect-dir DIR [--port P]
"""
import argparse
import json
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

SIZES = [  # (elements, dtype, name, bytes per element)
    (1, torch.float32, "float32", 4),
    (4096, torch.float32, "float32", 4),
    (1 << 20, torch.bfloat16, "bfloat16", 2),
    (3 << 20, torch.float16, "float16", 2),
    (777, torch.int64, "int64", 8),
]
REPEAT = 3


def rank_main(rank, world, expect_dir, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    ngpu = torch.cuda.device_count()
    dev = torch.device("cuda", rank % ngpu)
    torch.cuda.set_device(dev)
    calls = []
    status = "ok"
    try:
        try:  # eager NCCL init where this PyTorch supports device_id
            dist.init_process_group("nccl", rank=rank, world_size=world, device_id=dev)
        except TypeError:
            dist.init_process_group("nccl", rank=rank, world_size=world)
        for _ in range(REPEAT):
            for n, dtype, name, size in SIZES:
                t = torch.ones(n, dtype=dtype, device=dev)
                dist.all_reduce(t)
                calls.append({"op": "allreduce", "count": n, "datatype": name, "bytes": n * size, "redop": "sum"})
        torch.cuda.synchronize()
    except Exception as e:  # NCCL refusing two ranks on one GPU ends up here
        status = f"error: {e}"
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    with open(os.path.join(expect_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"scenario": f"torch{world}", "pid": os.getpid(), "rank": rank, "world": world,
                   "gpus": ngpu, "status": status, "nccl_version": list(torch.cuda.nccl.version()),
                   "calls": calls}, f, indent=1)
    print(f"torch_allreduce: rank {rank}/{world} on {dev}: {len(calls)} all-reduces, {status}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--world", type=int, default=1)
    p.add_argument("--expect-dir", required=True)
    p.add_argument("--port", type=int, default=29531)
    a = p.parse_args()
    os.makedirs(a.expect_dir, exist_ok=True)
    if a.world == 1:
        rank_main(0, 1, a.expect_dir, a.port)
    else:
        mp.spawn(rank_main, args=(a.world, a.expect_dir, a.port), nprocs=a.world, join=True)


if __name__ == "__main__":
    main()
