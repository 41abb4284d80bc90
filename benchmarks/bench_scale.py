"""Large datasets: scan a synthetic tree of 100,000 small image files, cache the index, and
check that memory does not grow with the dataset beyond the index.

    python benchmarks/bench_scale.py [--files 100000] [--keep DIR]

Prints the scan time, the index's memory and on-disk size, the time to reload the cached index,
and the process's peak memory before and after a short training run that decodes images on
the fly (decode cache off), against the same run on 1,000 files.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image


def make_tree(root: Path, files: int, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    blobs = []
    for c in range(classes):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
        blobs.append(buf.getvalue())
    for c in range(classes):
        (root / f"class_{c:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(files):
        c = i % classes
        (root / f"class_{c:02d}" / f"{i:06d}.png").write_bytes(blobs[c])


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def train_memory(root: Path, steps_note: str) -> dict:
    """Peak RSS growth of a 1-epoch run limited to a few hundred batches, decoding on the fly."""
    from transfer_gui.config import RunConfig
    from transfer_gui.engine.control import RunControl
    from transfer_gui.engine.events import BatchEnd
    from transfer_gui.engine.loop import Trainer

    control = RunControl()
    out = Path(tempfile.mkdtemp())
    cfg = RunConfig().replace(**{"data.folders": [str(root)], "output.dir": str(out / "run"), "model.name": "resnet18",
                                 "model.weights": "none", "data.image_size": 32, "data.decode_cache_mb": 0,
                                 "train.feature_cache": "off", "train.epochs": 1, "train.batch_size": 64,
                                 "layers.train_from": "layer4"})
    before = rss_mb()
    seen = {"n": 0}

    def on_event(e):
        if isinstance(e, BatchEnd):
            seen["n"] += 1
            if seen["n"] >= 150:
                control.stop()

    t0 = time.perf_counter()
    Trainer().fit(cfg, on_event, control)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shutil.rmtree(out, ignore_errors=True)
    return {"rss_before_mb": round(before), "peak_rss_mb": round(peak), "batches": seen["n"],
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--keep", help="reuse/keep the synthetic tree in this folder")
    ap.add_argument("--memory", choices=("small", "large", "none"), default="none",
                    help="(internal) measure training memory on the small or the large tree")
    args = ap.parse_args()
    from transfer_gui.engine.scan import DatasetIndex, scan_sources

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp()) / "tree"
    if not (root / "class_00").is_dir():
        t0 = time.perf_counter()
        make_tree(root, args.files)
        print(f"wrote {args.files:,} files in {time.perf_counter() - t0:.1f} s")
    if args.memory != "none":
        print(json.dumps(train_memory(root, args.memory)))
        return

    tracemalloc.start()
    t0 = time.perf_counter()
    index = scan_sources([str(root)])
    scan_s = time.perf_counter() - t0
    index_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    blob = json.dumps(index.to_json())
    t0 = time.perf_counter()
    again = DatasetIndex.from_json(json.loads(blob))
    load_s = time.perf_counter() - t0
    assert len(again.samples) == len(index.samples)
    rows = [("files scanned", f"{len(index.samples):,}"), ("scan time", f"{scan_s:.2f} s"),
            ("index in memory", f"{index_bytes / 2**20:.1f} MB"), ("index as JSON", f"{len(blob) / 2**20:.1f} MB"),
            ("reload cached index", f"{load_s:.2f} s")]

    # training memory: same run on a 1,000-file tree and on the large tree, each in its own process
    import subprocess

    small = root.parent / "small"
    if not (small / "class_00").is_dir():
        make_tree(small, 1_000)
    for label, tree in (("1,000 files", small), (f"{args.files:,} files", root)):
        out = subprocess.run([sys.executable, __file__, "--keep", str(tree), "--memory", "large"],
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        m = json.loads(out)
        rows.append((f"peak RSS, training (up to 150 batches), {label}", f"{m['peak_rss_mb']:,} MB (start {m['rss_before_mb']:,} MB)"))
    print("\n| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    if not args.keep:
        shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
