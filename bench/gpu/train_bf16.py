#!/usr/bin/env python3
"""A small bf16 transformer training loop for the CUPTI check of
bench/gpu/validate.sh (docs/gpu-validation.md).

Modes:
  plain           no profiler: the baseline step time
  strand          run it under `strand-agent wrap` (or with CUDA_INJECTION64_PATH set):
                  the script itself does nothing different
  torch-profiler  records the measured steps with torch.profiler and exports a
                  Chrome trace (trace.json) with the same kernels

Every step ends with torch.cuda.synchronize(), in every mode, so step times
are comparable. The measured window (after warm-up) is written in UTC
nanoseconds, the clock of the agent's kernel_events rows.
"""
import argparse
import json
import os
import time

import torch

PROCESS_START_NS = time.time_ns()  # after `import torch`: the agent's cost is read over the process's life


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["plain", "strand", "torch-profiler"], required=True)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--out", required=True, help="JSON file for step times and the window")
    p.add_argument("--trace", help="Chrome trace path (torch-profiler mode)")
    p.add_argument("--d-model", type=int, default=1024)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=512)
    a = p.parse_args()

    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = False
    dev = torch.device("cuda")
    layer = torch.nn.TransformerEncoderLayer(a.d_model, nhead=16, dim_feedforward=4 * a.d_model, batch_first=True, dropout=0.0)
    model = torch.nn.TransformerEncoder(layer, num_layers=a.layers).to(dev, dtype=torch.bfloat16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    x = torch.randn(a.batch, a.seq, a.d_model, device=dev, dtype=torch.bfloat16)

    def step() -> None:
        out = model(x)
        loss = out.float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()

    times = []
    prof = None
    if a.mode == "torch-profiler":
        from torch.profiler import ProfilerActivity, profile

        prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
        prof.__enter__()
    t0 = time.time_ns()
    for _ in range(a.steps):
        s = time.perf_counter_ns()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter_ns() - s)
    t1 = time.time_ns()
    if prof is not None:
        prof.__exit__(None, None, None)
        prof.export_chrome_trace(a.trace)

    with open(a.out, "w") as f:
        json.dump(
            {
                "mode": a.mode,
                "pid": os.getpid(),
                "window_utc_ns": [t0, t1],
                "process_utc_ns": [PROCESS_START_NS, time.time_ns()],
                "step_ns": times,
                "steps": a.steps,
                "torch": torch.__version__,
                "cuda": torch.version.cuda,
                "gpu": torch.cuda.get_device_name(0),
                "cuda_injection": os.environ.get("CUDA_INJECTION64_PATH", ""),
            },
            f,
        )


if __name__ == "__main__":
    main()
