"""From folders to batches: scan, split, decode once into a uint8 cache, transform, load.

Decoding a JPEG costs more than a small network's forward pass, so every image is decoded
once, resized to the preprocessing's ``resize_size`` and kept as a uint8 tensor when it fits
the memory budget; epochs 2..N then do no decoding at all. Images that fail to decode are
skipped and reported with their reason, never a crash.
"""

from __future__ import annotations

import copy
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from transfer_gui.engine.control import StopRequested
from transfer_gui.engine.imageio import ImageError, open_image
from transfer_gui.engine.preprocess import Preprocessing, resize_transform
from transfer_gui.engine.ranks import SINGLE, ShardedSampler
from transfer_gui.engine.scan import DatasetIndex, Sample, Skipped, scan_sources, stratified_split

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Split:
    """Training and validation samples; a step that drops or skips images makes a new one."""

    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def class_counts(self, which: str = "train") -> list[int]:
        counts = [0] * len(self.classes)
        for s in getattr(self, which):
            counts[s.label] += 1
        return counts


def build_split(data_cfg, seed: int, progress: Callable[[int, str], None] | None = None,
                cancel: Callable[[], bool] | None = None) -> Split:
    """Scan the configured folders and split them into training and validation samples."""
    index = scan_sources(list(data_cfg.folders), data_cfg.exclude_classes, dict(data_cfg.rename_classes),
                         progress=progress, cancel=cancel)
    warnings = list(index.warnings())
    skipped = list(index.skipped)
    if data_cfg.val_folders:
        val_index = scan_sources_lenient(list(data_cfg.val_folders), data_cfg, progress, cancel)
        skipped += val_index.skipped
        mapping = {name: i for i, name in enumerate(index.classes)}
        val = []
        unknown = set()
        for s in val_index.samples:
            name = val_index.classes[s.label]
            if name in mapping:
                val.append(Sample(s.path, mapping[name]))
            else:
                unknown.add(name)
        if unknown:
            warnings.append(f"validation classes not in the training data were ignored: {', '.join(sorted(unknown))}")
        train = list(index.samples)
    else:
        train_idx, val_idx = stratified_split(index, data_cfg.val_fraction, seed)
        train = [index.samples[i] for i in train_idx]
        val = [index.samples[i] for i in val_idx]
    if not val:
        warnings.append("no validation images: accuracy is measured on nothing; add a validation split")
    return Split(index.classes, train, val, skipped, warnings)


def scan_sources_lenient(folders: list[str], data_cfg, progress, cancel) -> DatasetIndex:
    """A validation folder may hold a single class; the training classes are the reference."""
    return scan_sources(folders, data_cfg.exclude_classes, dict(data_cfg.rename_classes),
                        progress=progress, cancel=cancel, min_classes=1)


# ----------------------------------------------------------------------------- decode cache


class DecodedCache:
    """uint8 CHW tensors, shorter side resized to ``pre.resize_size``; ``None`` for failures."""

    def __init__(self, samples: list[Sample], pre: Preprocessing, threads: int | None = None,
                 progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None):
        self.pre = pre
        resize = resize_transform(pre)
        self.images: list[torch.Tensor | None] = [None] * len(samples)
        self.failed: list[Skipped] = []
        threads = threads or min(8, (os.cpu_count() or 2))

        def work(i: int) -> tuple[int, torch.Tensor | None, str]:
            try:
                return i, resize(open_image(samples[i].path)).contiguous(), ""
            except ImageError as exc:
                return i, None, exc.reason
            except Exception as exc:  # noqa: BLE001 - a bad file must never end the run
                return i, None, f"{type(exc).__name__}: {exc}"

        done = 0
        last = 0.0
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for i, img, reason in pool.map(work, range(len(samples))):
                self.images[i] = img
                if img is None:
                    self.failed.append(Skipped(samples[i].path, reason))
                done += 1
                now = time.perf_counter()
                if progress and (now - last > 0.1 or done == len(samples)):
                    progress(done, len(samples))
                    last = now
                if cancel and cancel():
                    raise StopRequested()
        self.nbytes = sum(t.numel() for t in self.images if t is not None)

    def kept(self, samples: list[Sample]) -> tuple[list[Sample], "DecodedCache"]:
        """The samples whose image decoded, and a cache aligned with them (this one when none
        failed); this cache is left as it is."""
        keep = [i for i, img in enumerate(self.images) if img is not None]
        if len(keep) == len(samples):
            return samples, self
        aligned = copy.copy(self)
        aligned.images = [self.images[i] for i in keep]
        return [samples[i] for i in keep], aligned


def estimate_cache_bytes(n_images: int, pre: Preprocessing) -> int:
    """Rough size of the decode cache (4:3 images at the resize size)."""
    return int(n_images * 3 * pre.resize_size * pre.resize_size * 4 / 3)


class ImageDataset(Dataset):
    """Samples through a transform, from the decode cache when there is one.

    Returns ``(image, label, index)``; an image that fails to decode on the fly comes back
    with label -1 and is dropped by the loop.
    """

    def __init__(self, samples: list[Sample], transform, pre: Preprocessing, cache: DecodedCache | None = None):
        self.samples = samples
        self.transform = transform
        self.cache = cache
        self.pre = pre
        self._resize = resize_transform(pre)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        if self.cache is not None:
            img = self.cache.images[i]
        else:
            try:
                img = self._resize(open_image(s.path))
            except Exception:  # noqa: BLE001 - reported by the caller as skipped
                img = None
        if img is None:
            return torch.zeros(3, self.pre.input_size, self.pre.input_size), -1, i
        return self.transform(img), s.label, i


def _labels(ds) -> list[int]:
    if hasattr(ds, "samples"):
        return [s.label for s in ds.samples]
    return [int(v) for v in ds.tensors[1]]  # a TensorDataset of cached features


def make_loader(ds, batch_size: int, shuffle: bool, seed: int, workers: int = 0, pin_memory: bool = False,
                weighted: bool = False, dist=None, drop_last: bool = False) -> DataLoader:
    """A loader whose order is one seeded permutation per epoch (``sampler.set_epoch``),
    sharded across ranks under torchrun; class-balanced draws on request."""
    dist = dist or SINGLE
    weights = None
    if weighted and shuffle:
        labels = _labels(ds)
        counts: dict[int, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        weights = torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.double)
    sampler = ShardedSampler(len(ds), shuffle, seed, dist, drop_uneven=shuffle, weights=weights)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=workers > 0, drop_last=drop_last)


def auto_workers(requested: int, device: torch.device, cached: bool) -> int:
    """Workers for the DataLoader: none on CPU when images come from memory (both cores are
    better spent on the network), a few on GPU machines to keep the device fed."""
    if requested >= 0:
        return requested
    cpus = os.cpu_count() or 1
    if device.type == "cpu":
        return 0 if cached or cpus <= 2 else min(4, cpus // 2)
    return min(8, max(1, cpus - 1))
