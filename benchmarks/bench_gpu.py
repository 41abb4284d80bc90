#!/usr/bin/env python
"""transfer_gui's training recipe on a CUDA GPU against the plain PyTorch loop, and the share of
the GPU's measured bf16 matmul peak each reaches.

    python benchmarks/bench_gpu.py [--out gpu.json] [--modes head,partial,full] [--compile]
    python benchmarks/bench_gpu.py --dry-run      # tiny, runs on a CPU too: checks the script works

Both sides train the same model (ResNet-50, random init; ResNet-18 in --dry-run) on the same
synthetic images (uint8 tensors held on the host, normalised on the device) with the same
batch, SGD(lr=1e-3, momentum=0.9) and cross-entropy:

* plain: fp32, contiguous, ``cudnn.benchmark`` off, a DataLoader with 2 workers and no pinned
  memory, every step through the whole network (frozen layers under ``requires_grad=False``);
* engine: the engine's own pieces: ``prepare.resolve_precision("auto")`` (bf16 autocast where the
  GPU has it, else fp16 with the GradScaler), channels_last, ``cudnn.benchmark``, pinned memory
  and ``data.auto_workers`` loader workers, ``engine/step.py``'s ``TrainStep``; head only trains on
  features computed once (``features.compute``), partial fine-tuning on the frozen prefix
  computed once (``features.prefix_activations`` + ``boundary.BoundaryModel``); with
  ``--compile``, ``torch.compile`` of the trained module (the compile time is reported apart).

Throughput is images/s over the timed steps after warm-up; for head only and partial the
one-time pass is counted in (``*_with_setup``), spread over ``--epochs`` epochs. FLOPs per
training image (forward + backward) come from ``torch.utils.flop_counter.FlopCounterMode``;
the bf16 peak is the best of a few ``torch.mm`` of bf16 8192 x 8192 matrices.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PRESETS = {
    "gpu": dict(model="resnet50", size=224, batch=128, images=4096, steps=30, warmup=5, epochs=10, mm_n=8192),
    "dry": dict(model="resnet18", size=32, batch=4, images=16, steps=2, warmup=1, epochs=2, mm_n=256),
}
CLASSES = 10


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bf16_peak(device, n: int, reps: int = 5) -> float:
    """Best bf16 matmul rate in GFLOP/s (on a CPU without bf16 this is an emulated rate)."""
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def _model(p: dict, mode: str, device):
    import torch

    from transfer_gui.engine.catalog import build_model

    torch.manual_seed(0)
    built = build_model(p["model"], "none", num_classes=CLASSES)
    trained = {"head": [built.head_path], "partial": ["layer4", built.head_path], "full": None}[mode]
    for name, prm in built.model.named_parameters():
        prm.requires_grad = trained is None or any(name.startswith(t + ".") for t in trained)
    return built, built.model.to(device)


def _data(p: dict):
    import torch
    from torch.utils.data import Dataset

    class Images(Dataset):  # uint8 on the host, like decoded images; normalised on the device
        def __init__(self) -> None:
            g = torch.Generator().manual_seed(0)
            self.x = torch.randint(0, 256, (p["images"], 3, p["size"], p["size"]), dtype=torch.uint8, generator=g)
            self.y = torch.randint(0, CLASSES, (p["images"],), generator=g)

        def __len__(self) -> int:
            return len(self.y)

        def __getitem__(self, i):
            return self.x[i], self.y[i], i

    return Images()


def _norm(x, device, channels_last: bool):
    import torch

    x = x.to(device, non_blocking=True).float().div_(255).sub_(0.5).div_(0.25)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def flops_per_image(p: dict, mode: str, device) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    _built, model = _model(p, mode, device)
    model.train()
    x = torch.randn(2, 3, p["size"], p["size"], device=device)
    with FlopCounterMode(display=False) as fc:
        torch.nn.functional.cross_entropy(model(x), torch.zeros(2, dtype=torch.long, device=device)).backward()
    return fc.get_total_flops() / 2


def _timed_steps(step_fn, batches, p: dict, device) -> float:
    """Images/s over ``p['steps']`` steps after ``p['warmup']``."""
    it = iter(batches)
    for _ in range(p["warmup"]):
        step_fn(*next(it))
    _sync(device)
    t0, n = time.perf_counter(), 0
    for _ in range(p["steps"]):
        x, y = next(it)
        step_fn(x, y)
        n += len(y)
    _sync(device)
    return n / (time.perf_counter() - t0)


def _forever(loader):
    while True:
        for batch in loader:
            yield batch[0], batch[1]


def plain(p: dict, mode: str, device) -> dict:
    import torch
    from torch.utils.data import DataLoader

    torch.backends.cudnn.benchmark = False
    _built, model = _model(p, mode, device)
    model.train()
    opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=1e-3, momentum=0.9)
    loader = DataLoader(_data(p), batch_size=p["batch"], shuffle=True, num_workers=0 if device.type == "cpu" else 2)

    def step(x, y):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(_norm(x, device, False)), y.to(device))
        loss.backward()
        opt.step()

    return {"images_per_s": _timed_steps(step, _forever(loader), p, device)}


def _cached_inputs(p: dict, mode: str, built, model, device, workers: int):
    """(module to train, loader of its inputs, one-time seconds) for the engine's caches."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from transfer_gui.engine import boundary as bmod
    from transfer_gui.engine import features as feat_mod
    from transfer_gui.engine.surgery import backbone_and_head

    class Normed(torch.utils.data.Dataset):
        def __init__(self, ds):
            self.ds = ds

        def __len__(self):
            return len(self.ds)

        def __getitem__(self, i):
            x, y, k = self.ds[i]
            return x.float().div(255).sub(0.5).div(0.25), y, k

    src = DataLoader(Normed(_data(p)), batch_size=max(p["batch"], 64), num_workers=workers,
                     pin_memory=device.type == "cuda")
    t0 = time.perf_counter()
    if mode == "head":
        backbone, head = backbone_and_head(model, built.head_path)
        fs = feat_mod.compute(backbone, src, device, None)
        module = head
    else:
        fs = feat_mod.prefix_activations(model, "layer4", src, device)
        sample = next(iter(src))[0][:2].to(device)
        module = bmod.BoundaryModel(model, "layer4", bmod.choose_dummy_size(model, "layer4", sample, p["size"]) or p["size"])
    _sync(device)
    seconds = time.perf_counter() - t0
    ds = TensorDataset(fs.features, fs.labels)
    return module, DataLoader(ds, batch_size=p["batch"], shuffle=True, pin_memory=device.type == "cuda"), seconds


def engine(p: dict, mode: str, device, compile_: bool) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from transfer_gui.engine import prepare as prep
    from transfer_gui.engine.data import auto_workers
    from transfer_gui.engine.step import TrainStep

    torch.backends.cudnn.benchmark = device.type == "cuda"
    autocast, label = prep.resolve_precision("auto", device)
    built, model = _model(p, mode, device)
    model.to(memory_format=torch.channels_last)
    workers = auto_workers(-1, device, False) if device.type == "cuda" else 0
    setup_s = 0.0
    if mode == "full":
        module = model
        loader = DataLoader(_data(p), batch_size=p["batch"], shuffle=True, num_workers=workers,
                            pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    else:
        module, loader, setup_s = _cached_inputs(p, mode, built, model, device, workers)
    model.eval()  # frozen layers (BatchNorm included) in eval mode, as the engine runs them
    for path in {"head": [built.head_path], "partial": ["layer4", built.head_path], "full": [""]}[mode]:
        model.get_submodule(path).train()
    opt = torch.optim.SGD([q for q in module.parameters() if q.requires_grad], lr=1e-3, momentum=0.9)
    ts = TrainStep(opt, device, autocast, channels_last=True)
    forward, compile_s = module, 0.0
    if compile_:
        t0 = time.perf_counter()
        forward = torch.compile(module)
        compile_s = time.perf_counter() - t0

    def step(x, y):
        if x.dtype == torch.uint8:
            x = _norm(x, device, True)
        b = ts.batch(x, y)
        ts(forward, b)

    rate = _timed_steps(step, _forever(loader), p, device)
    epoch_s = p["images"] / rate
    with_setup = p["images"] * p["epochs"] / (setup_s + p["epochs"] * epoch_s)
    return {"images_per_s": rate, "precision": label, "setup_s": setup_s, "compile_s": compile_s,
            "images_per_s_with_setup": with_setup, "workers": workers}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes; runs on a CPU when there is no GPU")
    ap.add_argument("--modes", default="head,partial,full", help="comma-separated: head, partial, full")
    ap.add_argument("--compile", action="store_true", help="also measure the engine side under torch.compile")
    ap.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.dry_run:
        print("bench_gpu: no CUDA device here; use --dry-run to check the script on a CPU", file=sys.stderr)
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    p = PRESETS["dry" if args.dry_run else "gpu"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.backends.cpu.get_cpu_capability()})"
    peak = bf16_peak(device, p["mm_n"])
    print(f"bench_gpu{' (dry run)' if args.dry_run else ''}: {name}, torch {torch.__version__}; "
          f"bf16 matmul peak {peak:,.0f} GFLOP/s")
    rows, results = [], {"device": name, "preset": p, "bf16_peak_gflops": peak, "modes": {}}
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        fl = flops_per_image(p, mode, device)
        a, b = plain(p, mode, device), engine(p, mode, device, False)
        r = {"plain": a, "engine": b, "gflop_per_image": fl / 1e9}
        if args.compile:
            r["engine_compiled"] = engine(p, mode, device, True)
        results["modes"][mode] = r
        best = max([b] + ([r["engine_compiled"]] if args.compile else []), key=lambda e: e["images_per_s"])
        rows.append(f"| {mode} | {a['images_per_s']:.1f} | {best['images_per_s']:.1f} ({best['precision']}) | "
                    f"{best['images_per_s'] / a['images_per_s']:.2f}x | {best['images_per_s_with_setup']:.1f} | "
                    f"{a['images_per_s'] * fl / 1e9 / peak:.0%} | {best['images_per_s'] * fl / 1e9 / peak:.0%} |")
    print("\n| mode | plain img/s (fp32) | engine img/s | ratio | engine img/s incl. one-time pass | "
          "plain % of bf16 peak | engine % of bf16 peak |\n|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    raise SystemExit(main())
