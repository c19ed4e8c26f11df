#!/usr/bin/env python3
"""A training loop that sends strand workload markers.

Runs a small transformer-like MLP with PyTorch when it is installed (on the
GPU when there is one), and a timed stand-in otherwise, so the marker flow
can be tried anywhere:

    # terminal 1: the agent (markers.enabled = true by default)
    strand-agent --data-dir /tmp/strand
    # terminal 2:
    STRAND_MARKERS_SOCKET=/tmp/strand/markers.sock python3 examples/markers_training_loop.py --steps 50

Each step reports its model FLOPs: for a dense model, a forward and backward
pass cost about 6 FLOPs per parameter per token (2 forward, 4 backward).
The agent turns the markers into `steps` rows; its windows then carry
`model_flops` and `mfu` (MFU = achieved model FLOP/s ÷ the GPU's peak dense
FLOP/s for the dtype). `strand postmortem` shows MFU against reported
utilization.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from strand_markers import Markers  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--checkpoint-every", type=int, default=10)
    a = ap.parse_args()

    try:
        import torch
    except ImportError:
        torch = None

    tokens = a.batch * a.seq
    params = a.layers * 2 * a.width * 4 * a.width  # two projections per layer, 4x wide
    flops_per_step = 6 * params * tokens
    markers = Markers(gpu_index=0 if torch is not None and torch.cuda.is_available() else None)

    if torch is not None:
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if dev == "cuda" else torch.float32
        layers = []
        for _ in range(a.layers):
            layers += [torch.nn.Linear(a.width, 4 * a.width, bias=False), torch.nn.GELU(), torch.nn.Linear(4 * a.width, a.width, bias=False)]
        model = torch.nn.Sequential(*layers).to(dev, dtype)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(tokens, a.width, device=dev, dtype=dtype)

        def train_step():
            opt.zero_grad(set_to_none=True)
            loss = model(x).float().pow(2).mean()
            loss.backward()
            opt.step()
            if dev == "cuda":
                torch.cuda.synchronize()

        def save():
            torch.save(model.state_dict(), "/tmp/strand-example-ckpt.pt")

        dtype_name = "bf16" if dtype == torch.bfloat16 else "fp32"
    else:
        print("PyTorch not installed: timing a stand-in step", file=sys.stderr)

        def train_step():
            time.sleep(0.05)

        def save():
            time.sleep(0.2)

        dtype_name = "bf16"

    for step in range(a.steps):
        with markers.step(step, flops=flops_per_step, tokens=tokens, dtype=dtype_name):
            train_step()
        if a.checkpoint_every and (step + 1) % a.checkpoint_every == 0:
            with markers.checkpoint(step, kind="save"):
                save()
    print(f"{a.steps} steps, {flops_per_step:.3e} model FLOPs each; markers sent {markers.sent}, dropped {markers.dropped}")


if __name__ == "__main__":
    main()
