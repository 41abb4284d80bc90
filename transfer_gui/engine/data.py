"""From folders to batches: scan, split, decode once into a uint8 cache, transform, load.

Decoding a JPEG costs more than a small network's forward pass, so every image is decoded
once, resized to the preprocessing's ``resize_size`` and kept as a uint8 tensor when it fits
the memory budget; epochs 2..N then do no decoding at all. Images that fail to decode are
skipped and reported with their reason, never a crash.
"""

from __future__ import annotations

import copy
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from transfer_gui.config import ConfigError
from transfer_gui.engine import rules
from transfer_gui.engine.control import StopRequested
from transfer_gui.engine.imageio import ImageError, open_image
from transfer_gui.engine.preprocess import Preprocessing, resize_transform
from transfer_gui.engine.ranks import SINGLE, ShardedSampler
from transfer_gui.engine.scan import DatasetIndex, Sample, Skipped, scan_sources, stratified_split

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Split:
    """Training, validation and test samples; a step that drops or skips images makes a new one.
    The test samples (``data.test_folders`` or the ``data.test_fraction`` share) never train or
    validate: they are evaluated once, after training."""

    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)
    # what data.exclude_files and data.relabel did: {"excluded": [path], "relabelled": {path:
    # {"from", "to"}}, "missing": [path as written]} (the run folder's data_decisions.json)
    decisions: dict = field(default_factory=dict)

    def class_counts(self, which: str = "train") -> list[int]:
        counts = [0] * len(self.classes)
        for s in getattr(self, which):
            counts[s.label] += 1
        return counts


def build_split(data_cfg, seed: int, progress: Callable[[int, str], None] | None = None,
                cancel: Callable[[], bool] | None = None) -> Split:
    """Scan the configured folders and split them: the test set first (its own folders, or a
    held-out share of every class), then validation (its own folders, or a share of the rest).
    The file decisions (``data.exclude_files``, ``data.relabel``) apply to every set before it
    is split; decisions about files that no set holds are a warning."""
    index = scan_sources(list(data_cfg.folders), data_cfg.exclude_classes, dict(data_cfg.rename_classes),
                         progress=progress, cancel=cancel)
    decided = _Decisions(data_cfg, index.classes)
    index = DatasetIndex(index.classes, decided(index.samples), index.skipped, index.sources, index.seconds)
    warnings = list(index.warnings())
    skipped = list(index.skipped)
    rest, test = _test_set(index, data_cfg, seed, skipped, progress, cancel, decided)
    if data_cfg.val_folders:
        val_index = scan_sources_lenient(list(data_cfg.val_folders), data_cfg, progress, cancel)
        skipped += val_index.skipped
        val, unknown = _matched(val_index, index.classes)
        val = decided(val)
        if unknown:
            warnings.append(f"validation classes not in the training data were ignored: {', '.join(sorted(unknown))}")
        train = list(rest.samples)
    else:
        train_idx, val_idx = stratified_split(rest, data_cfg.val_fraction, seed)
        train = [rest.samples[i] for i in train_idx]
        val = [rest.samples[i] for i in val_idx]
    if data_cfg.test_folders:  # a held-out share is disjoint by construction
        train, val = _without(test, train, val, warnings)
    if not val:
        warnings.append("no validation images: accuracy is measured on nothing; add a validation split")
    record = decided.record()
    if record["missing"]:
        warnings.append(rules.missing_warning(record["missing"]))
    return Split(index.classes, train, val, skipped, warnings, test, record)


class _Decisions:
    """The file decisions applied to the sets of one split, remembering what they did."""

    def __init__(self, data_cfg, classes: list[str]):
        self.cfg, self.classes = data_cfg, classes
        self.label = {name: i for i, name in enumerate(classes)}
        self.excluded: list[str] = []
        self.relabelled: dict[str, dict[str, str]] = {}
        self.matched: set[str] = set()

    def __call__(self, samples: list[Sample]) -> list[Sample]:
        """``samples`` (labels of the training classes) without the excluded files, relabelled."""
        if not rules.has_decisions(self.cfg):
            return list(samples)
        d = rules.apply_decisions([s.path for s in samples], [self.classes[s.label] for s in samples],
                                  self.cfg, self.classes)
        if d.unknown:
            raise ConfigError(rules.unknown_class_message(d.unknown, self.classes), "data.relabel")
        self.excluded += d.excluded
        self.relabelled.update(d.relabelled)
        self.matched |= d.matched
        kept = [Sample(samples[i].path, self.label[name]) for i, name in d.kept]
        return sorted(kept, key=lambda s: (s.label, s.path))

    def record(self) -> dict:
        return {"excluded": sorted(self.excluded), "relabelled": dict(sorted(self.relabelled.items())),
                "missing": rules.missing_decisions(self.cfg, self.matched)}


def held_out_test(index: DatasetIndex, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(rest, test) indices into ``index.samples``: ``rules.test_count`` images of every class,
    drawn by a generator seeded from ``seed`` and the class name (not the one the validation
    split uses), so the same config always holds out the same images, also on a resume."""
    by_label: dict[int, list[int]] = {}
    for i, s in enumerate(index.samples):
        by_label.setdefault(s.label, []).append(i)
    rest: list[int] = []
    test: list[int] = []
    for label, members in sorted(by_label.items()):
        order = list(members)
        random.Random(f"test:{seed}:{index.classes[label]}").shuffle(order)
        k = rules.test_count(len(order), test_fraction)
        test.extend(order[:k])
        rest.extend(order[k:])
    return sorted(rest), sorted(test)


def _test_set(index: DatasetIndex, data_cfg, seed: int, skipped: list[Skipped], progress, cancel,
              decided: Callable[[list[Sample]], list[Sample]] = list) -> tuple[DatasetIndex, list[Sample]]:
    """(what is left for training and validation, the test samples; ``decided`` applies the file
    decisions to the test folders' samples)."""
    if data_cfg.test_folders:
        test_index = scan_sources_lenient(list(data_cfg.test_folders), data_cfg, progress, cancel)
        skipped += test_index.skipped
        test, unknown = _matched(test_index, index.classes)
        test = decided(test)
        if unknown:
            raise ConfigError(f"test classes that the training data lacks: {', '.join(sorted(unknown))}; the model "
                              f"cannot predict them. Add training images of them, or leave them out (remove the "
                              f"folders, or list them in data.exclude_classes)", "data.test_folders")
        return index, test
    if data_cfg.test_fraction <= 0:
        return index, []
    rest_idx, test_idx = held_out_test(index, data_cfg.test_fraction, seed)
    rest = DatasetIndex(index.classes, [index.samples[i] for i in rest_idx])
    return rest, [index.samples[i] for i in test_idx]


def _matched(other: DatasetIndex, classes: list[str]) -> tuple[list[Sample], set[str]]:
    """The samples of ``other`` relabelled to ``classes`` by name, and its class names not among them."""
    mapping = {name: i for i, name in enumerate(classes)}
    out, unknown = [], set()
    for s in other.samples:
        name = other.classes[s.label]
        if name in mapping:
            out.append(Sample(s.path, mapping[name]))
        else:
            unknown.add(name)
    return out, unknown


def _without(test: list[Sample], train: list[Sample], val: list[Sample], warnings: list[str]
             ) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples with every test file left out (a test folder inside a
    training folder would otherwise be trained on)."""
    if not test:
        return train, val
    key = lambda path: os.path.normcase(os.path.realpath(path))  # noqa: E731
    held = {key(s.path) for s in test}
    kept = [[s for s in samples if key(s.path) not in held] for samples in (train, val)]
    dropped = len(train) + len(val) - len(kept[0]) - len(kept[1])
    if dropped:
        warnings.append(f"{dropped} image(s) of the test folders are also in the training or validation "
                        f"folders; they were left out of training and validation")
    return kept[0], kept[1]


def scan_sources_lenient(folders: list[str], data_cfg, progress, cancel) -> DatasetIndex:
    """A validation or test folder may hold a single class; the training classes are the reference."""
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
                return i, resize(open_image(samples[i].path, reduce_for=pre.resize_size)).contiguous(), ""
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
                img = self._resize(open_image(s.path, reduce_for=self.pre.resize_size))
            except Exception:  # noqa: BLE001 - reported by the caller as skipped
                img = None
        if img is None:
            return torch.zeros(3, self.pre.input_size, self.pre.input_size), -1, i
        return self.transform(img), s.label, i


class Prefetched(Dataset):
    """``ds``'s items made by a thread pool ahead of the caller, for one in-order pass.

    The one-time passes (frozen features, frozen prefix) read every image once, in order, with
    no DataLoader workers on a small CPU: without this the network waits for each decode and
    the decoder for each batch. PIL's decoders and torch's resize release the GIL, so threads
    decode the next ``ahead`` images while the network runs on the current batch. Use it as a
    context manager so that the threads end with the pass."""

    def __init__(self, ds: Dataset, threads: int, ahead: int):
        self.ds, self.ahead = ds, max(1, ahead)
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="decode")
        self._futures: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        for j in range(i, min(i + self.ahead, len(self))):
            if j not in self._futures:
                self._futures[j] = self._pool.submit(self.ds.__getitem__, j)
        for stale in [j for j in self._futures if j < i]:  # out of order: drop what was not asked for
            self._futures.pop(stale).cancel()
        return self._futures.pop(i).result()

    def close(self) -> None:
        for fut in self._futures.values():
            fut.cancel()
        self._futures.clear()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "Prefetched":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
