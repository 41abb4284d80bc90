"""How long the Data step's folder scan takes on many small files, against a plain walk.

Makes N small PNG files (default 10,000) in 10 class folders, then times, in this process and
interleaved, best of --repeats:

* ``walk+stat``: the reference, what an extension-only scan costs at least: ``os.scandir`` of
  every folder and one ``stat`` per image-named file (what ``scan_sources`` did before it
  looked at the files' first bytes);
* ``scan``: ``scan_sources(folders)``, the Data step's scan (first bytes of every file);
* ``scan probe``: ``scan_sources(folders, probe=True)`` (Pillow's header parse of every file).

The files are read warm (page cache), as a second look at a folder is; the first scan of a
folder on a cold disk is bound by the disk, the same for every variant. Prints the CPU model
and the ratios to the reference.

    python benchmarks/bench_scan.py [--files 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
from pathlib import Path

from PIL import Image

from transfer_gui.engine.imageio import IMAGE_EXTENSIONS
from transfer_gui.engine.scan import scan_sources


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_files(root: Path, n: int, classes: int = 10) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (28, 28), (120, 30, 200)).save(buf, "PNG")
    data = buf.getvalue()
    for i in range(n):
        folder = root / f"class{i % classes:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"{i:06d}.png").write_bytes(data)


def walk_stat(root: Path) -> int:
    found = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir():
                    stack.append(e.path)
                elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.stat().st_size > 0:
                    found += 1
    return found


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_files(root, args.files)
        variants = {"walk+stat": lambda: walk_stat(root), "scan": lambda: scan_sources([root]),
                    "scan probe": lambda: scan_sources([root], probe=True)}
        for fn in variants.values():  # warm the page cache and the imports
            fn()
        times = {name: [] for name in variants}
        for _ in range(args.repeats):  # interleaved: a busy moment hits every variant alike
            for name, fn in variants.items():
                times[name].append(best(fn, 1))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"{args.files:,} PNG files of 28x28, best of {args.repeats}")
    ref = min(times["walk+stat"])
    for name, values in times.items():
        t = min(values)
        print(f"{name:12s} {t * 1000:8.1f} ms  {args.files / t:10,.0f} files/s  {t / ref:5.2f}x walk+stat")


if __name__ == "__main__":
    main()
