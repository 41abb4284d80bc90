"""The batches a run trains on, built the way its cache plan says (engine/rules.py decides):

* "features": the frozen backbone runs once over every image; the head trains on its output.
* "prefix": the frozen groups at the input side run once; every epoch runs the network from
  the first trainable group on, fed the cached activations (engine/boundary.py). Whether the
  activations fit ``train.cache_memory_mb`` and whether the architecture can start there is
  measured here; when not, the plan falls back to "none".
* "none": images through the whole network every epoch, decoded once into memory when they fit
  ``data.decode_cache_mb``.

A test set (``split.test``) gets its loader too, fed like validation's (the same features or
activations, or the same images through the same eval transform), so that the test images go
through the very model validation measures; it is read once, after training.

Every builder returns new objects: the split it is given is never changed (images that fail to
decode go into a new split's ``skipped``).
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from transfer_gui.config import ConfigError, RunConfig
from transfer_gui.engine import boundary as bmod
from transfer_gui.engine import features as feat_mod
from transfer_gui.engine.catalog import BuiltModel
from transfer_gui.engine.control import RunControl
from transfer_gui.engine.data import (DecodedCache, ImageDataset, Prefetched, Split, auto_workers,
                                      estimate_cache_bytes, make_loader)
from transfer_gui.engine.events import PhaseChanged, Progress, Warning
from transfer_gui.engine.imageio import ImageError, open_image
from transfer_gui.engine.preprocess import eval_from_resized, train_from_resized
from transfer_gui.engine.ranks import Dist
from transfer_gui.engine.rules import MB, CachePlan, plan_cache_for
from transfer_gui.engine.scan import Skipped
from transfer_gui.engine.surgery import LayerGroup, backbone_and_head

Emit = Callable[[object], None]
DECODE_THREADS = 2  # decoding threads beside the network in the one-time passes (bench_photos.py)
NO_TRAINING_IMAGE = "none of the training images could be decoded; see skipped.json for the reasons"


@dataclass(frozen=True)
class Setup:
    """What every builder needs to know about the run."""

    cfg: RunConfig
    device: torch.device
    autocast: torch.dtype | None
    dist: Dist
    emit: Emit
    control: RunControl

    @property
    def pin(self) -> bool:
        return self.device.type == "cuda"

    @property
    def batch(self) -> int:
        return max(1, self.cfg.train.batch_size // self.dist.world)  # train.batch_size is the global batch

    def cancelled(self) -> bool:
        return self.control.stop_requested


@dataclass
class Data:
    split: Split
    plan: CachePlan
    module: nn.Module  # what the optimizer trains: the whole model, its head, or the model from a boundary
    train_loader: DataLoader
    val_loader: DataLoader
    workers: int
    notes: list[str] = field(default_factory=list)
    feature_seconds: float = 0.0
    test_loader: DataLoader | None = None  # None without a test set


def build(s: Setup, built: BuiltModel, groups: list[LayerGroup], frozen: set[str], plan: CachePlan,
          split: Split) -> Data:
    """The loaders (and the module they feed) for ``plan``."""
    caches: tuple[DecodedCache | None, DecodedCache | None] = (None, None)
    notes: list[str] = []
    if plan.kind != "features":  # with the feature cache every image is decoded exactly once anyway
        split, caches, note = decode_once(s, split, built.preprocessing)
        notes.append(note)
    if not split.train:
        raise ConfigError(NO_TRAINING_IMAGE, "data.folders")
    workers = auto_workers(s.cfg.data.num_workers, s.device, caches[0] is not None)
    if s.dist.active and s.cfg.train.batch_size % s.dist.world:
        s.emit(Warning(f"train.batch_size {s.cfg.train.batch_size} is not divisible by {s.dist.world} processes; "
                       f"each uses {s.batch}"))
    if plan.kind == "features":
        return _feature_data(s, built, plan, split, workers, notes)
    if plan.kind == "prefix":
        data = _prefix_data(s, built, groups, frozen, plan, split, caches, workers, notes)
        if isinstance(data, Data):
            return data
        plan = data
    if not plan.silent:
        notes.append(plan.reason)
    return _image_data(s, built, groups, frozen, plan, split, caches, workers, notes)


def decode_once(s: Setup, split: Split, pre) -> tuple[Split, tuple, str]:
    """Decode every image once into memory when they fit ``data.decode_cache_mb``: (the split
    without the images that failed, the two caches, the note for the log)."""
    n_images = len(split.train) + len(split.val)
    if estimate_cache_bytes(n_images, pre) > s.cfg.data.decode_cache_mb * MB:
        return split, (None, None), "images are decoded every epoch (more than data.decode_cache_mb)"
    s.emit(PhaseChanged("prepare", f"Decoding {n_images:,} images once"))
    t0 = time.perf_counter()
    prog = lambda d, t: s.emit(Progress("decode", d, n_images, "Decoding images"))  # noqa: E731
    train_cache = DecodedCache(split.train, pre, progress=prog, cancel=s.cancelled)
    off = len(split.train)
    val_cache = DecodedCache(split.val, pre, progress=lambda d, t: prog(off + d, n_images), cancel=s.cancelled)
    failed = train_cache.failed + val_cache.failed
    train, train_cache = train_cache.kept(split.train)  # every rank then runs the same batches
    val, val_cache = val_cache.kept(split.val)
    note = (f"decoded {n_images:,} images once in {time.perf_counter() - t0:.1f} s "
            f"({(train_cache.nbytes + val_cache.nbytes) / 2**20:.0f} MB in memory)")
    for skip in failed:
        s.emit(Warning(f"skipped {skip.path}: {skip.reason}"))
    return dataclasses.replace(split, train=train, val=val, skipped=split.skipped + failed), (train_cache, val_cache), note


def _feature_data(s: Setup, built: BuiltModel, plan: CachePlan, split: Split, workers: int,
                  notes: list[str]) -> Data:
    pre = built.preprocessing
    backbone, head = backbone_and_head(built.model, built.head_path)
    fingerprint = feat_mod.fingerprint(backbone)
    feats, skipped, seconds = [], [], 0.0
    for name, samples in _sets(split):
        ds = ImageDataset(samples, eval_from_resized(pre), pre)
        key = feat_mod.cache_key(fingerprint, pre, [x.path for x in samples], feat_mod.pass_dtype(s.device, s.autocast))
        s.emit(PhaseChanged("features", f"Computing frozen features of {len(samples):,} {name} images once"))
        fs, reused = feat_mod.get_or_compute(key, lambda ds=ds, name=name: _sharded(s, ds, lambda loader: feat_mod.compute(
            backbone, loader, s.device, s.autocast, check=s.control.checkpoint,
            progress=lambda d, t: s.emit(Progress("features", d, t, f"Features of {name} images"))), workers))
        seconds += 0.0 if reused else fs.seconds
        notes.extend([f"frozen features of the {name} images {fs.note}"] if fs.note and not reused else [])
        feats.append(_with_labels_of(fs, samples))
        for i in (fs.labels < 0).nonzero().flatten().tolist():  # failed to decode: say why
            skipped.append(_skip_reason(samples[i].path))
            s.emit(Warning(f"skipped {skipped[-1].path}: {skipped[-1].reason}"))
    if not bool((feats[0].labels >= 0).any()):
        raise ConfigError(NO_TRAINING_IMAGE, "data.folders")
    train_loader = make_loader(_tensor_ds(feats[0].features, feats[0].labels), s.batch, True, s.cfg.train.seed,
                               weighted=s.cfg.data.weighted_sampler, dist=s.dist)
    val_loader = _cached_eval_loader(s, feats[1].features, feats[1].labels, max(s.batch, 256))
    test_loader = _cached_eval_loader(s, feats[2].features, feats[2].labels, max(s.batch, 256)) if split.test else None
    notes.append(f"features computed once: {sum(len(x) for _, x in _sets(split)):,} images, {seconds:.1f} s; "
                 f"only the head trains on them")
    return Data(dataclasses.replace(split, skipped=split.skipped + skipped), plan, head, train_loader, val_loader,
                workers, notes, seconds, test_loader)


def _prefix_data(s: Setup, built: BuiltModel, groups: list[LayerGroup], frozen: set[str], plan: CachePlan,
                 split: Split, caches: tuple, workers: int, notes: list[str]) -> Data | CachePlan:
    """Train from the first trainable group on cached activations, or the plan without a cache
    (with its reason) when the architecture cannot start there or they do not fit the budget."""
    model, pre = built.model, built.preprocessing
    path = next(g for g in groups if g.name == plan.start_group).modules[0]
    datasets = [ImageDataset(x, eval_from_resized(pre), pre, c) for (_, x), c in zip(_sets(split), (*caches, None))]
    sample = torch.stack([datasets[0][i][0] for i in range(min(4, len(datasets[0])))]).to(s.device)
    dummy = bmod.choose_dummy_size(model, path, sample, pre.input_size)
    need = None if dummy is None else bmod.capture(model, path, sample[:1]).numel() * 4 * sum(map(len, datasets))
    plan = plan_cache_for([g.name for g in groups], s.cfg, frozen=frozen, activation_bytes=need,
                          dummy_ok=dummy is not None, start_module=path)
    if plan.kind != "prefix":
        return plan
    s.emit(PhaseChanged("features", f"Computing the frozen layers ({', '.join(plan.computed_once)}) once"))
    out, offset, total, t0 = [], 0, sum(map(len, datasets)), time.perf_counter()
    for ds in datasets:
        fs = _sharded(s, ds, lambda loader, o=offset: feat_mod.prefix_activations(
            model, path, loader, s.device, check=s.control.checkpoint,
            progress=lambda d, t: s.emit(Progress("features", o + d, total, "Frozen layers, once"))), workers)
        notes.extend([f"frozen layers {fs.note}"] if fs.note else [])
        out.append(_tensor_ds(fs.features, fs.labels))
        offset += len(ds)
    notes.append(f"frozen layers computed once: {total:,} images at {path}, {time.perf_counter() - t0:.1f} s, "
                 f"{need / 2**20:,.0f} MB; training runs from {path} on")
    test_loader = make_loader(out[2], s.batch, False, s.cfg.train.seed, dist=s.dist) if split.test else None
    return Data(split, plan, bmod.BoundaryModel(model, path, dummy),
                make_loader(out[0], s.batch, True, s.cfg.train.seed, weighted=s.cfg.data.weighted_sampler, dist=s.dist),
                make_loader(out[1], s.batch, False, s.cfg.train.seed, dist=s.dist), workers, notes,
                test_loader=test_loader)


def _image_data(s: Setup, built: BuiltModel, groups: list[LayerGroup], frozen: set[str], plan: CachePlan,
                split: Split, caches: tuple, workers: int, notes: list[str]) -> Data:
    model, pre, cfg, bs = built.model, built.preprocessing, s.cfg, s.batch
    train_ds = ImageDataset(split.train, train_from_resized(pre, cfg.data.augment), pre, caches[0])
    val_ds = ImageDataset(split.val, eval_from_resized(pre), pre, caches[1])
    drop_last = _single_sample_batch_with_bn(model, groups, frozen, len(split.train), bs, s.dist)
    train_loader = make_loader(train_ds, bs, True, cfg.train.seed, workers, s.pin,
                               weighted=cfg.data.weighted_sampler, dist=s.dist, drop_last=drop_last)
    if drop_last:
        notes.append("the last training batch would hold one image, which BatchNorm cannot train on; "
                     "it is left out each epoch (a different image each time)")
    val_loader = make_loader(val_ds, bs, False, cfg.train.seed, workers, s.pin, dist=s.dist)
    test_loader = make_loader(ImageDataset(split.test, eval_from_resized(pre), pre), bs, False, cfg.train.seed,
                              workers, s.pin, dist=s.dist) if split.test else None  # read once: not decoded ahead
    return Data(split, plan, model, train_loader, val_loader, workers, notes, test_loader=test_loader)


def _frozen_batch(bs: int, device: torch.device) -> int:
    """Batch for the one-time pass through frozen layers: on a CPU, 16 images keep the
    activations in cache (EfficientNet-Lite0 at 224 px: 52 images/s at 16, 35 at 32, and
    0.3 GB less memory); on a GPU, larger is better."""
    return min(bs, 16) if device.type == "cpu" else max(bs, 64)


def _sets(split: Split) -> list[tuple[str, list]]:
    """The sets whose inputs a cache computes, in order: training, validation and the test set if any."""
    sets = [("training", split.train), ("validation", split.val)]
    return [*sets, ("test", split.test)] if split.test else sets


def _with_labels_of(fs: feat_mod.FeatureSet, samples: list) -> feat_mod.FeatureSet:
    """The cached features with the labels of this split: the cache is keyed by the files, not their
    classes, so a run after a relabel (``data.relabel``) reuses the features but not the old labels.
    An image that failed to decode keeps -1."""
    labels = torch.tensor([x.label for x in samples], dtype=torch.long)
    return dataclasses.replace(fs, labels=torch.where(fs.labels < 0, fs.labels, labels))


def _cached_eval_loader(s: Setup, x: torch.Tensor, labels: torch.Tensor, batch: int) -> DataLoader:
    return make_loader(_tensor_ds(x, labels), batch, False, s.cfg.train.seed, dist=s.dist)


def _tensor_ds(x: torch.Tensor, labels: torch.Tensor) -> TensorDataset:
    """Cached inputs with their labels and sample index; images that failed to decode dropped."""
    keep = labels >= 0
    return TensorDataset(x[keep], labels[keep], torch.arange(len(labels))[keep])


def _sharded(s: Setup, ds, compute, workers: int):
    """Run ``compute(loader)`` on this rank's share of ``ds`` and gather every rank's rows, so a
    cache is built once across all processes and every process ends with all of it."""
    part = Subset(ds, range(s.dist.rank, len(ds), s.dist.world)) if s.dist.active else ds
    batch = _frozen_batch(s.batch, s.device)
    decodes = isinstance(ds, ImageDataset) and ds.cache is None
    with Prefetched(part, DECODE_THREADS, 2 * batch) if decodes and workers == 0 else nullcontext(part) as part:
        loader = DataLoader(part, batch_size=batch, shuffle=False, num_workers=workers, pin_memory=s.pin)
        fs = compute(loader)  # with no worker processes, threads decode the next batch meanwhile
    if s.dist.active:
        fs.features = s.dist.gather_sharded(fs.features, len(ds))
        fs.labels = s.dist.gather_sharded(fs.labels, len(ds))
    return fs


def _single_sample_batch_with_bn(model: nn.Module, groups: list[LayerGroup], frozen: set[str], n: int, bs: int,
                                 dist: Dist) -> bool:
    per_rank = (n - n % dist.world) // dist.world if dist.active else n
    if per_rank % bs != 1:
        return False
    bn = nn.modules.batchnorm._BatchNorm
    return any(isinstance(m, bn) for g in groups if g.name not in frozen for path in g.modules
               for m in model.get_submodule(path).modules())


def _skip_reason(path: str) -> Skipped:
    try:
        open_image(path)
    except ImageError as exc:
        return Skipped(path, exc.reason)
    except Exception as exc:  # noqa: BLE001
        return Skipped(path, f"{type(exc).__name__}: {exc}")
    return Skipped(path, "could not be decoded")
