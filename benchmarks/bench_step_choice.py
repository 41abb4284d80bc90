"""The measured training step against the fastest eager step, per model and input size.

For each model and size: every candidate step (engine/stepchoice.py's list for this machine) is
timed interleaved in rounds in this one process, and the best round of each is the reference;
then the engine chooses as a run would (a fresh choice, nothing remembered) and its candidate's
reference rate is divided by the fastest one's. Target (issue #26): >= 0.90 everywhere. The
flag rule (what `auto` picked before measuring) is shown beside it.

    python benchmarks/bench_step_choice.py [--sizes 112,160,224] [--models efficientnet_lite0,resnet18]
        [--batch 32] [--rounds 3] [--out benchmarks/bench_step_choice_results.json]

Prints the CPU model and flags, torch's version and threads beside every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from transfer_gui.engine import prepare as prep
from transfer_gui.engine import stepchoice as sc
from transfer_gui.engine.catalog import build_model


def machine() -> dict:
    flags = prep.cpu_flags()
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"}), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "load_before": list(__import__("os").getloadavg())}


def one(name: str, size: int, batch: int, rounds: int) -> dict:
    built = build_model(name, "pretrained" if name == "efficientnet_lite0" else "none", num_classes=10)
    model = built.model
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, 3, size, size, generator=gen), torch.randint(0, 10, (batch,), generator=gen)
    cands = sc.candidates(torch.device("cpu"), prep.cpu_has_bf16())
    bench = sc._Bench(model, x, y, time.perf_counter)
    best = {c.label: 0.0 for c in cands}
    for _ in range(rounds):  # interleaved: each round times every candidate once
        for c in cands:
            best[c.label] = max(best[c.label], bench.rate(c, sc.MEASURE_STEPS, sc.WARMUP_STEPS))
    flag = sc.Candidate("bf16" if prep.cpu_has_bf16() else "fp32",
                        torch.backends.cpu.get_cpu_capability().upper().startswith(("AVX512", "AMX")))
    flag_label = flag.label
    t0 = time.perf_counter()
    choice = sc.choose(model, cands, x, y, remember=False, prefer=flag)
    cost = time.perf_counter() - t0
    fastest = max(best, key=best.get)
    chosen = choice.candidate.label
    return {"model": name, "size": size, "batch": batch, "reference_images_per_s": best, "fastest": fastest,
            "chosen": chosen, "chosen_vs_fastest": round(best[chosen] / best[fastest], 3),
            "flag_rule": flag_label, "flag_rule_vs_fastest": round(best.get(flag_label, 0.0) / best[fastest], 3),
            "measuring_s": round(cost, 1), "rejected": choice.rejected}


def optimizer_step(rounds: int = 3) -> dict:
    """One AdamW step over ResNet-18's parameters: torch's default loop against the fused kernel
    the engine uses (optim.can_fuse), best of ``rounds`` interleaved rounds of 10 steps."""
    import torchvision

    params = list(torchvision.models.resnet18().parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    best = {"default": 1e9, "fused": 1e9}
    for _ in range(rounds):
        for kind in best:
            opt = torch.optim.AdamW(params, lr=1e-4, fused=kind == "fused")
            opt.step()
            t0 = time.perf_counter()
            for _ in range(10):
                opt.step()
            best[kind] = min(best[kind], (time.perf_counter() - t0) / 10)
    return {"default_ms": round(best["default"] * 1e3, 1), "fused_ms": round(best["fused"] * 1e3, 1),
            "speedup": round(best["default"] / best["fused"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="112,160,224")
    ap.add_argument("--models", default="efficientnet_lite0,resnet18")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).with_name("bench_step_choice_results.json")))
    args = ap.parse_args()
    info = machine()
    print(f"CPU: {info['cpu']} ({info['capability']}, {', '.join(info['bf16_flags']) or 'no bf16 flags'}), "
          f"torch {info['torch']}, {info['threads']} threads, load before {info['load_before'][0]:.1f}")
    opt = optimizer_step()
    print(f"AdamW step, ResNet-18 parameters: default {opt['default_ms']} ms, fused {opt['fused_ms']} ms "
          f"({opt['speedup']}x)", flush=True)
    rows = []
    for name in args.models.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            r = one(name, size, args.batch, args.rounds)
            rows.append(r)
            rates = ", ".join(f"{k} {v:.1f}" for k, v in r["reference_images_per_s"].items())
            print(f"{name:>18} {size:>3} px: chosen {r['chosen']:<20} {r['chosen_vs_fastest']:.2f}x of the fastest "
                  f"({r['fastest']}); flag rule {r['flag_rule']} {r['flag_rule_vs_fastest']:.2f}x; measuring "
                  f"{r['measuring_s']} s; images/s: {rates}", flush=True)
    info["load_after"] = list(__import__("os").getloadavg())
    Path(args.out).write_text(json.dumps({"machine": info, "optimizer": opt, "rows": rows}, indent=1))
    worst = min(r["chosen_vs_fastest"] for r in rows)
    print(f"worst chosen/fastest: {worst:.2f} (target >= 0.90): {'met' if worst >= 0.9 else 'missed'}")


if __name__ == "__main__":
    main()
