"""Build small real image folders from Debian's Fashion-MNIST (package dataset-fashion-mnist).

Run ``python tools/make_sample_data.py`` to (re)generate the bundled sample data in
``resources/sample_data/``: four classes x 60 greyscale 28x28 PNGs from the
training set, chosen with a fixed seed, plus ``CREDITS.txt``. Benchmarks and tests can call
:func:`write_fashion_mnist_folders` for bigger or upscaled sets.

The idx format (big-endian): a 4-byte magic ``0x0000 08 NN`` where ``08`` means unsigned
bytes and ``NN`` the number of dimensions, then one 4-byte size per dimension, then the data.
"""

from __future__ import annotations

import argparse
import gzip
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
COPYRIGHT_FILE = Path("/usr/share/doc/dataset-fashion-mnist/copyright")
#: Folder-safe names of the ten labels, in label order.
CLASS_NAMES = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot")
SAMPLE_CLASSES = ("T-shirt_top", "Trouser", "Sneaker", "Bag")
SAMPLE_PER_CLASS = 60
SAMPLE_SEED = 20240601
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a (gzipped) idx file of unsigned bytes into an array of its declared shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an idx file of unsigned bytes")
    ndim = data[3]
    header_end = 4 + 4 * ndim
    shape = tuple(int(x) for x in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    values = np.frombuffer(data, dtype=np.uint8, offset=header_end)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {int(np.prod(shape))} values, found {values.size}")
    return values.reshape(shape)


def load_fashion_mnist(split: str = "train", source: str | os.PathLike[str] = DEFAULT_SOURCE
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 28 x 28 uint8, labels N uint8) of the ``train`` or ``test`` split."""
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    images_name, labels_name = _FILES[split]
    images = read_idx(Path(source) / images_name)
    labels = read_idx(Path(source) / labels_name)
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(f"unexpected shapes {images.shape} and {labels.shape} in {source}")
    return images, labels


def _label_of(name: str | int) -> int:
    if isinstance(name, int):
        if not 0 <= name < len(CLASS_NAMES):
            raise ValueError(f"label {name} out of range 0..{len(CLASS_NAMES) - 1}")
        return name
    if name not in CLASS_NAMES:
        raise ValueError(f"unknown class {name!r}; choose from {', '.join(CLASS_NAMES)}")
    return CLASS_NAMES.index(name)


def write_fashion_mnist_folders(out_dir: str | os.PathLike[str], classes: Sequence[str | int],
                                per_class: int, seed: int, split: str = "train",
                                size: int | None = None,
                                source: str | os.PathLike[str] = DEFAULT_SOURCE
                                ) -> dict[str, list[Path]]:
    """Write ``per_class`` PNGs of each class to ``out_dir/<class>/NNN.png``.

    Images are picked without replacement by ``numpy.random.default_rng(seed)``, so the same
    arguments always give the same files. ``size`` upscales (bicubic) to ``size`` x ``size``,
    e.g. 224 for ImageNet models; otherwise the 28x28 originals are written. Returns the
    written paths per class name.
    """
    images, labels = load_fashion_mnist(split, source)
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    written: dict[str, list[Path]] = {}
    for cls in classes:
        label = _label_of(cls)
        name = CLASS_NAMES[label]
        members = np.flatnonzero(labels == label)
        if per_class > members.size:
            raise ValueError(f"{name}: asked for {per_class} images, the {split} split has "
                             f"{members.size}")
        chosen = rng.choice(members, size=per_class, replace=False)
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        digits = max(3, len(str(per_class - 1)))
        paths = []
        for n, idx in enumerate(chosen):
            im = Image.fromarray(images[idx])
            if size is not None and size != im.width:
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            path = folder / f"{n:0{digits}d}.png"
            im.save(path, optimize=True)
            paths.append(path)
        written[name] = paths
    return written


def credits_text() -> str:
    """Attribution for the bundled images, with the upstream copyright notice."""
    notice = COPYRIGHT_FILE.read_text(encoding="utf-8") if COPYRIGHT_FILE.exists() else ""
    return (
        "Sample images\n"
        "=============\n\n"
        "The images in this folder are a small subset of Fashion-MNIST by Zalando Research\n"
        "(https://github.com/zalandoresearch/fashion-mnist), copyright 2017 Zalando SE,\n"
        "released under the MIT licence. They were taken from Debian's dataset-fashion-mnist\n"
        "package by tools/make_sample_data.py "
        f"({len(SAMPLE_CLASSES)} classes x {SAMPLE_PER_CLASS} images of the training set,\n"
        f"seed {SAMPLE_SEED}).\n\n"
        "Xiao, Rasul and Vollgraf, \"Fashion-MNIST: a Novel Image Dataset for Benchmarking\n"
        "Machine Learning Algorithms\", arXiv:1708.07747, 2017.\n\n"
        "Copyright notice and licence as shipped by Debian\n"
        "-------------------------------------------------\n\n" + notice
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parent.parent
    parser.add_argument("--out", type=Path,
                        default=here / "resources" / "sample_data")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args(argv)
    for name in CLASS_NAMES:  # remove only what this script writes, then write afresh
        for old in (args.out / name).glob("*.png"):
            old.unlink()
    written = write_fashion_mnist_folders(args.out, SAMPLE_CLASSES, SAMPLE_PER_CLASS,
                                          SAMPLE_SEED, source=args.source)
    (args.out / "CREDITS.txt").write_text(credits_text(), encoding="utf-8")
    total = sum(p.stat().st_size for paths in written.values() for p in paths)
    print(f"wrote {sum(map(len, written.values()))} images ({total / 1024:.0f} KiB) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
