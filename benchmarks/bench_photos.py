#!/usr/bin/env python
"""Phone photos: what decoding costs a real user's run, and what draft decoding saves.

    python benchmarks/bench_photos.py [--photos 20] [--out results.json]

Makes "phone photos" from Fashion-MNIST (Debian's dataset-fashion-mnist, offline): each 28 px
image upscaled (bicubic) onto a 4032x3024 canvas, Gaussian noise (sigma 6) added, saved as a
JPEG of quality 90 (about 2.5-3 MB, like a 12 MP phone's). Then it prints:

1. decode + resize of one photo to the model's 256 px (and the 224 px centre crop), full
   decoding vs ``open_image(reduce_for=256)`` (JPEG DCT draft): milliseconds (median of
   several passes over the photos), the ratio (target >= 4x), the mean and largest pixel
   difference after resize + crop, and the agreement of a trained model's predictions;
2. a head-only run of 3 epochs on 120 photos (12 per class) against the same run on the
   28 px originals (target <= 1.4x), through ``Trainer().fit`` as ``transfer-gui train`` runs
   it, each run in a child process of its own; and the same photo run without draft decoding
   and without the decoding threads, to show what each part gives.

The machine may be shared: ratios come from runs in the same script, one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "tools")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

RESULT_TAG = "@@BENCH_RESULT "
PHOTO_SIZE = (4032, 3024)
PER_CLASS = 12
EPOCHS = 3


def make_photos(small_dir: Path, photo_dir: Path, seed: int = 0) -> list[Path]:
    """A 4032x3024 noisy JPEG for every PNG under ``small_dir``, in the same class folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for png in sorted(small_dir.rglob("*.png")):
        side = PHOTO_SIZE[1]
        big = Image.open(png).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", PHOTO_SIZE, (128, 128, 128))
        canvas.paste(big, ((PHOTO_SIZE[0] - side) // 2, 0))
        arr = np.asarray(canvas, dtype=np.int16) + rng.normal(0, 6, (PHOTO_SIZE[1], PHOTO_SIZE[0], 3)).astype(np.int16)
        target = photo_dir / png.relative_to(small_dir).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(target, quality=90)
        out.append(target)
    return out


def run_config(data_dir: Path, run_dir: Path):
    from transfer_gui.config import RunConfig

    return RunConfig().replace(**{
        "data.folders": [str(data_dir)],
        "data.augment.enabled": False,
        "model.name": "efficientnet_lite0",
        "model.weights": "pretrained",
        "layers.train_from": "head",
        "train.epochs": EPOCHS,
        "train.batch_size": 32,
        "train.device": "cpu",
        "train.seed": 0,
        "output.dir": str(run_dir),
    })


def child(spec: dict) -> dict:
    """One run end to end in this process; ``spec["variant"]`` turns parts off for the reference."""
    from contextlib import nullcontext

    from transfer_gui.engine import imageio, loaders
    from transfer_gui.engine.loop import Trainer

    if "no-draft" in spec["variant"]:
        imageio.DRAFT_MARGIN = 10 ** 9  # never reduce: full decoding, as before
    if "no-threads" in spec["variant"]:
        loaders.Prefetched = lambda part, threads, ahead: nullcontext(part)  # decode in the loop, as before
    t0 = time.perf_counter()
    result = Trainer().fit(run_config(Path(spec["data"]), Path(spec["run_dir"])), lambda event: None)
    wall = time.perf_counter() - t0
    summary = json.loads((Path(result.run_dir) / "summary.json").read_text()) if result.run_dir else {}
    return {"wall_s": wall, "status": result.status, "run_dir": str(result.run_dir),
            "best_val_acc": summary.get("best_val_acc", summary.get("best_metric"))}


def run_child(spec: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", ""))
    env = {k: v for k, v in env.items() if v != ""}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    raise RuntimeError(f"child {spec['variant']} failed:\n{proc.stderr[-3000:]}")


def _decode_ms(paths: list[Path], reduce_for: int | None, resize, passes: int) -> tuple[float, list]:
    from transfer_gui.engine.imageio import open_image

    times, crops = [], []
    for k in range(passes):
        t0 = time.perf_counter()
        out = [resize(open_image(p, reduce_for=reduce_for)) for p in paths]
        times.append((time.perf_counter() - t0) * 1000 / len(paths))
        if k == 0:
            crops = out
    return statistics.median(times), crops


def decode_part(photos: list[Path], run_dir: str | None, passes: int) -> dict:
    import torch
    from torchvision.transforms import v2

    from transfer_gui.engine.preprocess import Preprocessing, resize_transform

    torch.set_num_threads(1)
    pre = Preprocessing()
    resize = v2.Compose([resize_transform(pre), v2.CenterCrop(pre.input_size)])
    full_ms, full = _decode_ms(photos, None, resize, passes)
    draft_ms, draft = _decode_ms(photos, pre.resize_size, resize, passes)
    diffs = [(a.int() - b.int()).abs() for a, b in zip(full, draft)]
    out = {"photos": len(photos), "full_ms": full_ms, "draft_ms": draft_ms, "speedup": full_ms / draft_ms,
           "mean_abs_diff": float(np.mean([d.float().mean().item() for d in diffs])),
           "max_abs_diff": int(max(d.max().item() for d in diffs))}
    if run_dir:
        out.update(_agreement(photos, run_dir, pre))
    return out


def _agreement(photos: list[Path], run_dir: str, pre) -> dict:
    """Top-1 agreement and the largest probability change of the trained model, full vs draft."""
    from transfer_gui.engine.imageio import open_image
    from transfer_gui.engine.predict import Predictor

    predictor = Predictor.load(run_dir)
    full = predictor.logits([open_image(p) for p in photos])
    draft = predictor.logits([open_image(p, reduce_for=pre.resize_size) for p in photos])
    pf, pd = (np.exp(x - x.max(1, keepdims=True)) for x in (full, draft))
    pf, pd = pf / pf.sum(1, keepdims=True), pd / pd.sum(1, keepdims=True)
    return {"top1_agreement": float((full.argmax(1) == draft.argmax(1)).mean()),
            "max_prob_change": float(np.abs(pf - pd).max())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=20, help="photos timed in part 1 (default 20)")
    ap.add_argument("--passes", type=int, default=3, help="timing passes over them; the median is kept")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(RESULT_TAG + json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    from make_sample_data import CLASS_NAMES, write_fashion_mnist_folders

    tmp = Path(tempfile.mkdtemp(prefix="bench_photos_"))
    small, photos_dir = tmp / "small", tmp / "photos"
    write_fashion_mnist_folders(small, CLASS_NAMES, PER_CLASS, seed=1, split="train")
    t0 = time.perf_counter()
    photos = make_photos(small, photos_dir)
    size_mb = statistics.mean(p.stat().st_size for p in photos) / 2 ** 20
    print(f"{len(photos)} photos {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}, {size_mb:.1f} MB each on average, written in "
          f"{time.perf_counter() - t0:.0f} s under {tmp}")
    runs = {}
    for variant, data in (("small", small), ("photos", photos_dir), ("photos-no-threads", photos_dir),
                          ("photos-no-draft-no-threads", photos_dir)):
        runs[variant] = run_child({"variant": variant, "data": str(data), "run_dir": str(tmp / "runs" / variant)})
        print(f"  run {variant}: {runs[variant]['wall_s']:.1f} s ({runs[variant]['status']})", flush=True)
    dec = decode_part(photos[:: max(1, len(photos) // args.photos)][: args.photos], runs["photos"]["run_dir"],
                      args.passes)
    report(dec, runs, size_mb)
    if args.out:
        args.out.write_text(json.dumps({"decode": dec, "runs": runs, "photo_mb": size_mb}, indent=2) + "\n")
    return 0


def report(dec: dict, runs: dict, size_mb: float) -> None:
    base = runs["small"]["wall_s"]
    print("\n| decode + resize to 256 + crop 224, one photo | ms | ratio |")
    print("|---|---|---|")
    print(f"| full decoding | {dec['full_ms']:.0f} | 1.00 |")
    print(f"| open_image(reduce_for=256) (draft) | {dec['draft_ms']:.0f} | {dec['speedup']:.1f}x faster "
          f"(target >= 4x) |")
    print(f"\npixel difference after resize + crop: mean {dec['mean_abs_diff']:.2f}, max {dec['max_abs_diff']} "
          f"(of 255)")
    if "top1_agreement" in dec:
        print(f"trained model, full vs draft: top-1 agreement {dec['top1_agreement']:.0%}, largest probability "
              f"change {dec['max_prob_change']:.3f}")
    print(f"\n| head-only run, {PER_CLASS * 10} images, {EPOCHS} epochs, end to end | s | vs 28 px PNGs |")
    print("|---|---|---|")
    names = {"small": "28 px PNGs", "photos": f"{size_mb:.1f} MB phone JPEGs (draft + decoding threads)",
             "photos-no-threads": "phone JPEGs, draft, decoded in the loop",
             "photos-no-draft-no-threads": "phone JPEGs, full decoding in the loop (before)"}
    for key, name in names.items():
        target = " (target <= 1.4x)" if key == "photos" else ""
        print(f"| {name} | {runs[key]['wall_s']:.1f} | {runs[key]['wall_s'] / base:.2f}x{target} |")


if __name__ == "__main__":
    sys.exit(main())
