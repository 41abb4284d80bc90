#!/usr/bin/env python
"""Where a full fine-tuning step's time goes: ResNet-18, 224 px, batch 32, through the engine's
own TrainStep with what ``train.precision = "auto"`` picks on this CPU (bf16 autocast and
channels_last where the CPU has bf16 in hardware, fp32 elsewhere).

    python benchmarks/profile_step.py [--steps 3] [--batch 32] [--precision auto|fp32]

Prints the share of the profiled steps' CPU time per kind of operator (convolutions, BatchNorm,
casts and copies, ReLU, pooling, the optimizer, the rest), the convolutions' own GFLOP/s, and
the bf16 and fp32 matmul rates measured in the same process: if the convolutions already run at
about the matmul rate, the rest of the step is what keeps the whole step below it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KINDS = (  # (kind, substrings of the profiler's operator names), the first match wins
    ("convolution", ("convolution", "conv2d", "mkldnn_conv")),
    ("BatchNorm", ("batch_norm",)),
    ("casts and copies", ("copy_", "to_copy", "_to_copy", "clone", "contiguous")),
    ("ReLU", ("relu", "threshold_backward")),
    ("pooling", ("pool",)),
    ("optimizer", ("_foreach", "sgd", "adam")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
)


def _kind(name: str) -> str:
    low = name.lower()
    return next((k for k, keys in KINDS if any(s in low for s in keys)), "the rest")


def _matmul_rate(dtype, n: int = 4096, reps: int = 3) -> float:
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = min(_time(lambda: torch.mm(a, b)) for _ in range(reps))
    return 2.0 * n ** 3 / best / 1e9


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="profiled steps, after 2 warm-up steps")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32"))
    args = ap.parse_args(argv)

    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the profiler's own start/stop lines on stderr
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from transfer_gui.config import RunConfig
    from transfer_gui.engine.catalog import build_model
    from transfer_gui.engine.prepare import resolve_precision, use_channels_last
    from transfer_gui.engine.step import TrainStep

    device = torch.device("cpu")
    autocast, why = resolve_precision(args.precision, device)
    torch.manual_seed(0)
    model = build_model("resnet18", "none", num_classes=10).model.train()
    channels_last = use_channels_last(RunConfig(), device, model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = TrainStep(opt, device, autocast, channels_last=channels_last)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    b = step.batch(x, y)
    for _ in range(2):
        step(model, b)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step(model, b)
    wall = time.perf_counter() - t0
    with FlopCounterMode(display=False) as fc, torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
        torch.nn.functional.cross_entropy(model(b.x).float(), b.y).backward()
    opt.zero_grad(set_to_none=True)
    flop_per_step = fc.get_total_flops()

    shares: dict[str, float] = {}
    for ev in prof.key_averages():
        shares[_kind(ev.key)] = shares.get(_kind(ev.key), 0.0) + ev.self_cpu_time_total
    total = sum(shares.values()) or 1.0
    conv_s = shares.get("convolution", 0.0) / 1e6 / args.steps
    bf16 = _matmul_rate(torch.bfloat16) if autocast is not None else float("nan")
    fp32 = _matmul_rate(torch.float32)
    print(f"ResNet-18 training step, {args.size} px, batch {args.batch}, {why} "
          f"(channels_last {'on' if channels_last else 'off'}), CPU {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads")
    print(f"{args.steps} steps in {wall:.2f} s: {args.batch * args.steps / wall:.1f} images/s, "
          f"{flop_per_step * args.steps / wall / 1e9:.0f} GFLOP/s over the whole step")
    print("| kind of operator | share of CPU time |\n|---|---|")
    for kind, us in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {us / total:.0%} |")
    if conv_s > 0:
        print(f"convolutions alone: {flop_per_step / 1e9 / conv_s:.0f} GFLOP/s (all the step's FLOPs over "
              f"their time: an upper bound of their rate)")
    print(f"matmul 4096x4096 in this process: bf16 {bf16:.0f} GFLOP/s, fp32 {fp32:.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
