#!/usr/bin/env python
"""Are copies found after what people do to them, and are look-alikes left alone? (issue #23)

    python benchmarks/bench_dups.py [--quick] [--per-set N] [--kinds "trim a few px"] [--out FILE.json]

The near-duplicate rule of ``transfer_gui.engine.duplicates`` (candidates from the nearest
thumbnails and trimmed thumbnails, each pair verified by :func:`duplicates.verify`, kept from
``VERIFY_MIN`` up, or by :func:`duplicates.fine_scores` on the images' pixels from ``FINE_MIN``) is run
on sets of distinct originals, each set with one copy of every original made one way:

* **kinds of copy**: resized to 0.5x, 0.75x, 0.9x, 1.5x, 2x (bicubic); re-encoded as JPEG
  quality 50, 70, 95 and as PNG; a few pixels trimmed (each side 0-2 px at 28-32 px and 0-6 px
  on photo tiles, at least 2 px in all, seeded per image); brightness and contrast x0.9 and
  x1.1 (``PIL.ImageEnhance``); converted to grey; and issue #23's case, resized to 90 % then
  JPEG quality 70.
* **recall** of a kind: the share of its originals whose copy is reported with it.
  **precision**: the share of reported pairs that are an original and its own copy, over all
  kinds' sets of one data set; every other pair joins distinct items (look-alikes: the other
  items of the same class, or other tiles of the same photo).
* **data**: the thresholds (``duplicates.VERIFY_MIN``, ``THUMB_FLOOR``) were chosen on
  ``fmnist_tune`` (Fashion-MNIST's training split, the first items) only. They are judged on
  data that did not choose them: ``fmnist_judge`` (Fashion-MNIST's test split), ``digits``
  (scikit-learn's 8x8 digits upscaled to 32 px; ``pip install scikit-learn`` into the venv for
  this benchmark only, it is no dependency of the app) and ``photos`` (scikit-image's bundled
  photos cut into 128 px tiles; tiles with a grey standard deviation under 8 are left out, as
  two near-uniform tiles are the same picture). Fashion-MNIST comes from Debian's
  dataset-fashion-mnist (28 px).

The candidates are the engine's thumbnail neighbours alone (no network: the audit adds the
frozen features' neighbours on top, which can only add candidates for the verifier). Prints a
table per data set, the CPU (model, torch capability, load) and the verifier's speed; writes
every figure as JSON. ``--quick`` is a smoke run on a few images.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from transfer_gui.engine import duplicates as dup  # noqa: E402

FMNIST = Path("/usr/share/datasets/fashion-mnist")
TUNE = ("fmnist_tune",)
JUDGE = ("fmnist_judge", "digits", "photos")
PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "moon",
          "brick", "grass", "gravel", "cell", "retina", "clock", "coins", "page", "text")
TILE = 128
FLAT_STD = 8.0
TARGETS = {"recall": 0.95, "precision": 0.9}
PRESETS = {"full": {"per_set": 600}, "quick": {"per_set": 60}}


# =============================================================================== copies


def _encode(im: Image.Image, fmt: str, **kw) -> Image.Image:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return Image.open(io.BytesIO(b.getvalue())).copy()


def _resize(im: Image.Image, f: float) -> Image.Image:
    return im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.Resampling.BICUBIC)


def _trim(im: Image.Image, seed: int) -> Image.Image:
    """Each side trimmed by 0-2 px (0-6 px from 64 px up), at least 2 px in all, seeded."""
    most = 2 if min(im.size) < 64 else 6
    rng = np.random.default_rng(seed)
    while True:
        l, t, r, b = (int(v) for v in rng.integers(0, most + 1, 4))
        if l + t + r + b >= 2:
            return im.crop((l, t, im.width - r, im.height - b))


KINDS = {
    "resize 0.5x": lambda im, s: _resize(im, 0.5),
    "resize 0.75x": lambda im, s: _resize(im, 0.75),
    "resize 0.9x": lambda im, s: _resize(im, 0.9),
    "resize 1.5x": lambda im, s: _resize(im, 1.5),
    "resize 2x": lambda im, s: _resize(im, 2.0),
    "JPEG 50": lambda im, s: _encode(im, "JPEG", quality=50),
    "JPEG 70": lambda im, s: _encode(im, "JPEG", quality=70),
    "JPEG 95": lambda im, s: _encode(im, "JPEG", quality=95),
    "PNG": lambda im, s: _encode(im, "PNG"),
    "trim a few px": _trim,
    "brightness +10 %": lambda im, s: ImageEnhance.Brightness(im).enhance(1.1),
    "brightness -10 %": lambda im, s: ImageEnhance.Brightness(im).enhance(0.9),
    "contrast +10 %": lambda im, s: ImageEnhance.Contrast(im).enhance(1.1),
    "contrast -10 %": lambda im, s: ImageEnhance.Contrast(im).enhance(0.9),
    "grey": lambda im, s: im.convert("L"),
    "resize 90 % + JPEG 70": lambda im, s: _encode(_resize(im, 0.9), "JPEG", quality=70),
}


# =============================================================================== data


def _idx(name: str) -> np.ndarray:
    with gzip.open(FMNIST / name, "rb") as fh:
        raw = fh.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion(split: str, n: int) -> tuple[list[Image.Image], np.ndarray]:
    """The first ``n`` items of Fashion-MNIST's ``split`` ("train" or "t10k") as 28 px grey images."""
    x, y = _idx(f"{split}-images-idx3-ubyte.gz")[:n], _idx(f"{split}-labels-idx1-ubyte.gz")[:n]
    return [Image.fromarray(a) for a in x], y.astype(np.int64)


def digits(n: int) -> tuple[list[Image.Image], np.ndarray]:
    """scikit-learn's 8x8 digits (0-16) as 32 px grey images (bicubic), the first ``n``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    ims = [Image.fromarray((a * 255 / 16).clip(0, 255).astype(np.uint8)).resize((32, 32), Image.Resampling.BICUBIC)
           for a in d.images[:n]]
    return ims, d.target[:n].astype(np.int64)


def photos(n: int) -> tuple[list[Image.Image], np.ndarray]:
    """Tiles of TILE px of scikit-image's bundled photos (the photo is the class), those with
    some structure (grey standard deviation >= FLAT_STD); at most ``n``, spread over the photos."""
    import skimage.data

    per = []
    for c, name in enumerate(PHOTOS):
        a = getattr(skimage.data, name)()
        im = Image.fromarray(a if a.dtype == np.uint8 else (a * 255).astype(np.uint8))
        im = im.convert("RGB") if im.mode not in ("RGB", "L") else im
        tiles = [im.crop((x, y, x + TILE, y + TILE)) for y in range(0, im.height - TILE + 1, TILE)
                 for x in range(0, im.width - TILE + 1, TILE)]
        per.append([(t, c) for t in tiles if np.asarray(t.convert("L"), np.float32).std() >= FLAT_STD])
    out = []
    while len(out) < n and any(per):
        for tiles in per:
            if tiles and len(out) < n:
                out.append(tiles.pop(0))
    return [t for t, _ in out], np.array([c for _, c in out], np.int64)


def load(name: str, n: int) -> tuple[list[Image.Image], np.ndarray]:
    if name == "fmnist_tune":
        return fashion("train", n)
    if name == "fmnist_judge":
        return fashion("t10k", n)
    return digits(n) if name == "digits" else photos(n)


# =============================================================================== measuring


def one_kind(orig: list, ims: list[Image.Image], kind: str) -> dict:
    """Originals plus one copy of each made as ``kind``: the engine's candidates and verdicts."""
    copies = [KINDS[kind](im, i) for i, im in enumerate(ims)]
    t0 = time.perf_counter()
    both = orig + [dup.thumbnail(c) for c in copies]
    thumb_s = time.perf_counter() - t0
    thumbs, sizes = np.stack([t for t, _ in both]), np.array([s for _, s in both])
    n = len(ims)
    t0 = time.perf_counter()
    cand = dup.thumb_candidates(thumbs)
    t1 = time.perf_counter()
    score = dup.verify(thumbs, sizes, cand)
    pictures = list(ims) + copies
    fine = dup.fine_scores(score, sizes, cand, lambda i: np.asarray(pictures[i].convert("L")))
    verify_s = time.perf_counter() - t1
    kept = dup.verified(score, sizes, cand, fine)
    true = cand[:, 1] - cand[:, 0] == n
    truth = dup.verify(thumbs, sizes, np.stack([np.arange(n), np.arange(n) + n], 1))
    return {"originals": n, "found": int((kept & true).sum()), "false": int((kept & ~true).sum()),
            "recall": float((kept & true).sum() / n), "candidate_recall": float(true.sum() / n),
            "copy_score": {q: round(float(np.percentile(truth, v)), 4) for q, v in (("min", 0), ("p5", 5), ("median", 50))},
            "lookalike_score_max": round(float(score[~true].max()), 4) if (~true).any() else None,
            "candidates": len(cand), "fine_checked": int(np.isfinite(fine).sum()),
            "fine_kept": int((kept & ~dup.verified(score, sizes, cand)).sum()), "search_s": t1 - t0, "verify_s": verify_s, "thumb_s": thumb_s,
            "images": 2 * n}


def one_set(name: str, n: int, log, only: list[str] | None = None) -> dict:
    ims, _labels = load(name, n)
    orig = [dup.thumbnail(im) for im in ims]
    kinds = {}
    for kind in only or KINDS:
        kinds[kind] = one_kind(orig, ims, kind)
        k = kinds[kind]
        log(f"{name}: {kind}: recall {k['recall']:.3f}, {k['false']} false pairs")
    found = sum(k["found"] for k in kinds.values())
    false = sum(k["false"] for k in kinds.values())
    pairs = sum(k["candidates"] for k in kinds.values())
    seconds = sum(k["verify_s"] for k in kinds.values())
    return {"role": "tune" if name in TUNE else "judge", "originals": len(ims),
            "size": f"{ims[0].width} px" if ims else "", "kinds": kinds,
            "precision": found / (found + false) if found + false else float("nan"),
            "min_recall": min(k["recall"] for k in kinds.values()),
            "verify_pairs_per_s": pairs / seconds if seconds else float("nan"),
            "thumbs_per_s": sum(k["images"] for k in kinds.values()) / max(sum(k["thumb_s"] for k in kinds.values()), 1e-9)}


def machine() -> dict:
    import torch

    model, flags = platform.processor() or "?", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for ln in fh:
                if ln.startswith("model name") and model in ("?", ""):
                    model = ln.split(":", 1)[1].strip()
                if ln.startswith("flags") and not flags:
                    have = set(ln.split(":", 1)[1].split())
                    flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile", "fma") if f in have)
    except OSError:
        pass
    return {"cpu": model, "flags": flags, "capability": torch.backends.cpu.get_cpu_capability(),
            "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_before": [round(x, 2) for x in os.getloadavg()]}


def table(results: dict) -> list[str]:
    names = list(results)
    lines = ["| kind of copy | " + " | ".join(f"{n} ({results[n]['role']}, {results[n]['size']})" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for kind in [k for k in KINDS if k in results[names[0]]["kinds"]]:
        lines.append(f"| {kind} | " + " | ".join(f"{results[n]['kinds'][kind]['recall']:.3f}" for n in names) + " |")
    lines.append("| **precision** (all kinds' sets) | " + " | ".join(f"**{results[n]['precision']:.3f}**" for n in names)
                 + " |")
    lines.append("| lowest recall | " + " | ".join(f"{results[n]['min_recall']:.3f}" for n in names) + " |")
    lines.append("| met (recall >= 0.95 every kind, precision >= 0.9) | " + " | ".join(
        "yes" if results[n]["min_recall"] >= TARGETS["recall"] and results[n]["precision"] >= TARGETS["precision"]
        else "**no**" for n in names) + " |")
    lines.append("| verifier, pairs per second | " + " | ".join(f"{results[n]['verify_pairs_per_s']:.0f}" for n in names)
                 + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run on a few images")
    ap.add_argument("--sets", default=",".join(TUNE + JUDGE), help="comma-separated: " + ", ".join(TUNE + JUDGE))
    ap.add_argument("--per-set", type=int, help="originals per data set (600; quick: 60)")
    ap.add_argument("--kinds", help="comma-separated kinds of copy to measure (all when left out), e.g. 'trim a few px'")
    ap.add_argument("--out", help="write every figure as JSON to this file")
    args = ap.parse_args(argv)
    n = args.per_set or PRESETS["quick" if args.quick else "full"]["per_set"]
    m = machine()
    t0 = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    only = [k.strip() for k in args.kinds.split(",")] if args.kinds else None
    bad = [k for k in only or [] if k not in KINDS]
    if bad:
        ap.error(f"--kinds: unknown kind(s) {bad}; known: {list(KINDS)}")
    results = {name: one_set(name, n, log, only) for name in args.sets.split(",") if name}
    minutes = (time.perf_counter() - t0) / 60
    print(f"\n{m['cpu']} ({m['flags']}), torch capability {m['capability']}, {m['cores']} cores, torch {m['torch']} "
          f"with {m['threads']} threads, load {m['load_before']} before the run; {minutes:.1f} min. Thresholds: "
          f"VERIFY_SAME {dup.VERIFY_SAME}, VERIFY_MIN {dup.VERIFY_MIN}, THUMB_FLOOR {dup.THUMB_FLOOR} (chosen on "
          f"{', '.join(TUNE)}). Recall per kind of copy, {n} originals per data set:\n")
    print("\n".join(table(results)))
    if args.out:
        doc = {"machine": m, "minutes": minutes, "per_set": n, "targets": TARGETS, "tune": list(TUNE),
               "judge": list(JUDGE), "thresholds": {"VERIFY_SAME": dup.VERIFY_SAME, "VERIFY_MIN": dup.VERIFY_MIN,
                                                     "THUMB_FLOOR": dup.THUMB_FLOOR, "TRIM_MOST": dup.TRIM_MOST,
                                                     "FINE_FROM": dup.FINE_FROM, "FINE_MIN": dup.FINE_MIN,
                                                     "TRIM_QUERIES": len(dup.TRIM_QUERIES)},
               "sets": results}
        from transfer_gui.atomic import atomic_write_text

        atomic_write_text(Path(args.out), json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
