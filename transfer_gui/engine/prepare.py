"""Everything a run needs before its first step: device, data, model, groups, freezing,
learning rates, caches. Shared by the trainer and the LR finder."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from transfer_gui.config import RunConfig
from transfer_gui.engine import data as data_mod
from transfer_gui.engine import features as feat_mod
from transfer_gui.engine.catalog import BuiltModel, build_model
from transfer_gui.engine.control import RunControl
from transfer_gui.engine.ranks import SINGLE, Dist
from transfer_gui.engine.events import PhaseChanged, Progress, Warning
from transfer_gui.config import ConfigError
from transfer_gui.engine.freezing import (GroupError, apply_freeze, check_group_names, frozen_at_epoch,
                                          resolve_frozen)
from transfer_gui.engine.optim import group_lrs
from transfer_gui.engine.preprocess import (augment_is_random, eval_from_resized, train_from_resized)
from transfer_gui.engine.surgery import LayerGroup, backbone_and_head, split_groups

Emit = Callable[[object], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GroupError("train.device: CUDA was asked for but no CUDA device is available; use 'auto' or 'cpu'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise GroupError("train.device: MPS was asked for but is not available; use 'auto' or 'cpu'")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """(autocast dtype or None for fp32, label)."""
    if device.type != "cuda":
        return None, "fp32"
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"fp32": (None, "fp32"), "bf16": (torch.bfloat16, "bf16"), "fp16": (torch.float16, "fp16")}[precision]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class Prepared:
    cfg: RunConfig
    device: torch.device
    autocast: torch.dtype | None
    precision: str
    split: data_mod.Split
    built: BuiltModel
    groups: list[LayerGroup]
    frozen: set[str]
    lrs: dict[str, float]
    use_features: bool
    module: nn.Module  # what the optimizer trains: the whole model, or its head on cached features
    train_loader: DataLoader
    val_loader: DataLoader
    workers: int
    notes: list[str] = field(default_factory=list)
    feature_seconds: float = 0.0

    @property
    def model(self) -> nn.Module:
        return self.built.model

    def close(self) -> None:
        """Take the activation cache's hook off the model (it would swap inputs otherwise)."""
        detach = getattr(self.module, "detach", None)
        if callable(detach):
            detach()

    @property
    def train_groups(self) -> list[LayerGroup]:
        return [g for g in self.groups if g.is_head] if self.use_features else self.groups


def prepare(cfg: RunConfig, emit: Emit, control: RunControl, dist: Dist = SINGLE) -> Prepared:
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    if dist.active and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    autocast, precision = resolve_precision(cfg.train.precision, device)

    emit(PhaseChanged("prepare", "Scanning image folders"))
    split = data_mod.build_split(cfg.data, cfg.train.seed,
                                 progress=lambda n, msg: emit(Progress("scan", n, 0, msg)),
                                 cancel=lambda: control.stop_requested)
    for w in split.warnings:
        emit(Warning(w))

    emit(PhaseChanged("prepare", f"Loading model {cfg.model.name}"))
    built = build_model(cfg.model.name, cfg.model.weights, num_classes=len(split.classes),
                        progress=lambda d, t: emit(Progress("download", d, t, "Downloading weights")),
                        cancel=lambda: control.stop_requested)
    if built.classes and built.classes != split.classes:
        emit(Warning(_fit_head_to_classes(built, split.classes)))
    built.preprocessing = built.preprocessing.at_size(cfg.data.image_size)
    pre = built.preprocessing
    model = built.model.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)

    groups = split_groups(model, built.head_path)
    frozen = resolve_frozen(groups, cfg.layers.frozen, cfg.layers.train_from)
    check_group_names(groups, cfg.layers.lr.keys(), "layers.lr")
    check_group_names(groups, cfg.layers.unfreeze_at.keys(), "layers.unfreeze_at")
    if frozen_at_epoch(frozen, cfg.layers.unfreeze_at, 0) >= {g.name for g in groups}:
        raise GroupError("layers.frozen: every layer group is frozen in the first epoch, so nothing would train; "
                         "unfreeze at least the head")
    _check_input_size(model, pre, device, cfg)
    apply_freeze(model, groups, frozen)
    lrs = group_lrs(groups, cfg.layers.head_lr, cfg.layers.lr_decay, cfg.layers.lr)

    notes: list[str] = []
    non_head = {g.name for g in groups if not g.is_head}
    use_features = (cfg.train.feature_cache == "auto" and non_head <= frozen
                    and not (set(cfg.layers.unfreeze_at) & non_head)
                    and not augment_is_random(cfg.data.augment) and "head" not in frozen)
    budget = cfg.data.decode_cache_mb * 1024 * 1024
    n_images = len(split.train) + len(split.val)
    # With the feature cache every image is decoded exactly once anyway: no decode cache.
    want_cache = not use_features and data_mod.estimate_cache_bytes(n_images, pre) <= budget
    train_cache = val_cache = None
    if want_cache:
        emit(PhaseChanged("prepare", f"Decoding {n_images:,} images once"))
        t0 = time.perf_counter()
        prog = lambda d, t: emit(Progress("decode", d, n_images, "Decoding images"))  # noqa: E731
        train_cache = data_mod.DecodedCache(split.train, pre, progress=prog, cancel=lambda: control.stop_requested)
        off = len(split.train)
        val_cache = data_mod.DecodedCache(split.val, pre, progress=lambda d, t: prog(off + d, n_images),
                                          cancel=lambda: control.stop_requested)
        split.skipped += train_cache.failed + val_cache.failed
        split.train = _drop_failed(split.train, train_cache)  # every rank then runs the same batches
        split.val = _drop_failed(split.val, val_cache)
        notes.append(f"decoded {n_images:,} images once in {time.perf_counter() - t0:.1f} s "
                     f"({(train_cache.nbytes + val_cache.nbytes) / 2**20:.0f} MB in memory)")
    elif not use_features:
        notes.append("images are decoded every epoch (more than data.decode_cache_mb)")
    for s in (train_cache.failed if train_cache else []) + (val_cache.failed if val_cache else []):
        emit(Warning(f"skipped {s.path}: {s.reason}"))

    if not split.train:
        raise ConfigError("none of the training images could be decoded; see skipped.json for the reasons",
                          "data.folders")
    workers = data_mod.auto_workers(cfg.data.num_workers, device, want_cache)
    pin = device.type == "cuda"
    eval_tf = eval_from_resized(pre)
    val_ds = data_mod.ImageDataset(split.val, eval_tf, pre, val_cache)
    bs = max(1, cfg.train.batch_size // dist.world)  # train.batch_size is the global batch
    if dist.active and cfg.train.batch_size % dist.world:
        emit(Warning(f"train.batch_size {cfg.train.batch_size} is not divisible by {dist.world} processes; "
                     f"each uses {bs}"))
    feature_seconds = 0.0
    if use_features:
        backbone, head = backbone_and_head(model, built.head_path)
        fingerprint = feat_mod.fingerprint(backbone)
        feats = []
        for name, samples, cache in (("training", split.train, train_cache), ("validation", split.val, val_cache)):
            ds = data_mod.ImageDataset(samples, eval_tf, pre, cache)
            key = feat_mod.cache_key(fingerprint, pre, [s.path for s in samples], autocast)
            emit(PhaseChanged("features", f"Computing frozen features of {len(samples):,} {name} images once"))
            fs, reused = feat_mod.get_or_compute(key, lambda ds=ds, name=name: _sharded(
                ds, dist, _frozen_batch(bs, device), workers, pin, lambda loader: feat_mod.compute(
                    backbone, loader, device, autocast,
                    progress=lambda d, t: emit(Progress("features", d, t, f"Features of {name} images")),
                    check=control.checkpoint)))
            feature_seconds += 0.0 if reused else fs.seconds
            feats.append(fs)
            for i in (fs.labels < 0).nonzero().flatten().tolist():  # failed to decode: say why
                split.skipped.append(_skip_reason(samples[i].path))
                emit(Warning(f"skipped {split.skipped[-1].path}: {split.skipped[-1].reason}"))
        if not bool((feats[0].labels >= 0).any()):
            raise ConfigError("none of the training images could be decoded; see skipped.json for the reasons",
                              "data.folders")
        train_loader = data_mod.make_loader(_tensor_ds(feats[0].features, feats[0].labels), bs, True,
                                            cfg.train.seed, weighted=cfg.data.weighted_sampler, dist=dist)
        val_loader = data_mod.make_loader(_tensor_ds(feats[1].features, feats[1].labels), max(bs, 256), False,
                                          cfg.train.seed, dist=dist)
        module: nn.Module = head
        notes.append(f"features computed once: {n_images:,} images, {feature_seconds:.1f} s; "
                     f"only the head trains on them")
    else:
        module = model
        boundary = _boundary_cache(cfg, model, groups, frozen, split, pre, (train_cache, val_cache), device, workers,
                                   pin, emit, control, notes, dist, bs)
        if boundary is not None:
            module, train_loader, val_loader = boundary
        else:
            train_ds = data_mod.ImageDataset(split.train, train_from_resized(pre, cfg.data.augment), pre, train_cache)
            drop_last = _single_sample_batch_with_bn(model, groups, frozen, len(split.train), bs, dist)
            train_loader = data_mod.make_loader(train_ds, bs, True, cfg.train.seed, workers, pin,
                                                weighted=cfg.data.weighted_sampler, dist=dist, drop_last=drop_last)
            if drop_last:
                notes.append("the last training batch would hold one image, which BatchNorm cannot train on; "
                             "it is left out each epoch (a different image each time)")
            val_loader = data_mod.make_loader(val_ds, bs, False, cfg.train.seed, workers, pin, dist=dist)
    notes.append(f"device {device}, {precision}, {workers} loader workers, pin_memory={pin}")
    return Prepared(cfg, device, autocast, precision, split, built, groups, frozen, lrs, use_features, module,
                    train_loader, val_loader, workers, notes, feature_seconds)


def _frozen_batch(bs: int, device: torch.device) -> int:
    """Batch for the one-time pass through frozen layers: on a CPU, 16 images keep the
    activations in cache (EfficientNet-Lite0 at 224 px: 52 images/s at 16, 35 at 32, and
    0.3 GB less memory); on a GPU, larger is better."""
    return min(bs, 16) if device.type == "cpu" else max(bs, 64)


def _tensor_ds(x: torch.Tensor, labels: torch.Tensor) -> TensorDataset:
    """Cached inputs with their labels and sample index; images that failed to decode dropped."""
    keep = labels >= 0
    return TensorDataset(x[keep], labels[keep], torch.arange(len(labels))[keep])


def _sharded(ds, dist: Dist, bs: int, workers: int, pin: bool, compute):
    """Run ``compute(loader)`` on this rank's share of ``ds`` and gather every rank's rows, so a
    cache is built once across all processes and every process ends with all of it."""
    from torch.utils.data import Subset

    part = Subset(ds, range(dist.rank, len(ds), dist.world)) if dist.active else ds
    loader = DataLoader(part, batch_size=bs, shuffle=False, num_workers=workers, pin_memory=pin)
    fs = compute(loader)
    if dist.active:
        fs.features = dist.gather_sharded(fs.features, len(ds))
        fs.labels = dist.gather_sharded(fs.labels, len(ds))
    return fs


def _boundary_cache(cfg: RunConfig, model: nn.Module, groups: list[LayerGroup], frozen: set[str], split, pre,
                    caches, device, workers: int, pin: bool, emit: Emit, control: RunControl, notes: list[str],
                    dist: Dist = SINGLE, bs: int = 32):
    """(module, train_loader, val_loader) training on cached activations of a frozen prefix,
    or None (with the reason in ``notes``) when that cannot be used."""
    from transfer_gui.engine import boundary as bmod

    if cfg.train.feature_cache != "auto":
        return None
    found = bmod.boundary_of(groups, frozen)
    if found is None:
        notes.append("no feature cache: no frozen layers at the input side")
        return None
    k, path = found
    prefix = {g.name for g in groups[:k]}
    if augment_is_random(cfg.data.augment):
        notes.append("no activation cache: random augmentation is on")
        return None
    if cfg.layers.train_bn or prefix & set(cfg.layers.unfreeze_at):
        notes.append("no activation cache: frozen layers change during the run (train_bn or gradual unfreezing)")
        return None
    eval_tf = eval_from_resized(pre)
    datasets = [data_mod.ImageDataset(s, eval_tf, pre, c) for s, c in zip((split.train, split.val), caches)]
    sample = torch.stack([datasets[0][i][0] for i in range(min(4, len(datasets[0])))]).to(device)
    dummy = bmod.choose_dummy_size(model, path, sample, pre.input_size)
    if dummy is None:
        notes.append(f"no activation cache: this architecture cannot start at {path}")
        return None
    per_image = bmod.capture(model, path, sample[:1]).numel() * 4
    need = per_image * (len(split.train) + len(split.val))
    budget = cfg.train.cache_memory_mb * 2**20
    if need > budget:
        notes.append(f"no activation cache: {need / 2**20:,.0f} MB needed at {path}, budget "
                     f"train.cache_memory_mb = {cfg.train.cache_memory_mb:,} MB")
        return None
    emit(PhaseChanged("features", f"Computing the frozen layers ({', '.join(g.name for g in groups[:k])}) once"))
    out = []
    total = len(split.train) + len(split.val)
    offset = 0
    t0 = time.perf_counter()
    for ds in datasets:
        fs = _sharded(ds, dist, _frozen_batch(bs, device), workers, pin, lambda loader, o=offset: feat_mod.FeatureSet(*bmod.compute_activations(
            model, path, loader, device,
            progress=lambda d, t: emit(Progress("features", o + d, total, "Frozen layers, once")),
            check=control.checkpoint)))
        out.append(_tensor_ds(fs.features, fs.labels))
        offset += len(ds)
    notes.append(f"frozen layers computed once: {total:,} images at {path}, {time.perf_counter() - t0:.1f} s, "
                 f"{need / 2**20:,.0f} MB; training runs from {path} on")
    return (bmod.BoundaryModel(model, path, dummy),
            data_mod.make_loader(out[0], bs, True, cfg.train.seed, weighted=cfg.data.weighted_sampler, dist=dist),
            data_mod.make_loader(out[1], bs, False, cfg.train.seed, dist=dist))


def _fit_head_to_classes(built: BuiltModel, classes: list[str]) -> str:
    """A checkpoint trained on other classes: keep its head rows for the same class names (in
    the new order), else start a new head."""
    from transfer_gui.engine.surgery import replace_head

    old = built.classes
    head = built.model.get_submodule(built.head_path)
    if sorted(old) == sorted(classes) and isinstance(head, nn.Linear):
        order = torch.tensor([old.index(c) for c in classes])
        with torch.no_grad():
            head.weight.copy_(head.weight[order])
            if head.bias is not None:
                head.bias.copy_(head.bias[order])
        built.classes = list(classes)
        return "the weights file lists the same classes in another order; its head rows were reordered to match"
    replace_head(built.model, len(classes), built.head_path)
    built.classes = list(classes)
    return (f"the weights file was trained on other classes ({', '.join(old[:6])}"
            f"{', ...' if len(old) > 6 else ''}); its head was replaced by a new one")


@torch.no_grad()
def _check_input_size(model: nn.Module, pre, device: torch.device, cfg: RunConfig) -> None:
    """One image through the network before any work, so a size it cannot take is a clear error."""
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, pre.input_size, pre.input_size, device=device))
    except Exception as exc:  # noqa: BLE001 - any failure here is about the input size
        raise ConfigError(f"{cfg.model.name} cannot take {pre.input_size} px images ({str(exc).splitlines()[0][:160]}); "
                          f"use 0 for the model's own size", "data.image_size") from None
    finally:
        model.train(was_training)


def _drop_failed(samples: list, cache) -> list:
    """Samples whose image decoded, with the cache's list kept aligned."""
    keep = [i for i, img in enumerate(cache.images) if img is not None]
    if len(keep) == len(samples):
        return samples
    cache.images = [cache.images[i] for i in keep]
    return [samples[i] for i in keep]


def _single_sample_batch_with_bn(model: nn.Module, groups: list[LayerGroup], frozen: set[str], n: int, bs: int,
                                 dist: Dist) -> bool:
    per_rank = (n - n % dist.world) // dist.world if dist.active else n
    if per_rank % bs != 1:
        return False
    bn = nn.modules.batchnorm._BatchNorm
    return any(isinstance(m, bn) for g in groups if g.name not in frozen for path in g.modules
               for m in model.get_submodule(path).modules())


def _skip_reason(path: str):
    from transfer_gui.engine.imageio import ImageError, open_image
    from transfer_gui.engine.scan import Skipped

    try:
        open_image(path)
    except ImageError as exc:
        return Skipped(path, exc.reason)
    except Exception as exc:  # noqa: BLE001
        return Skipped(path, f"{type(exc).__name__}: {exc}")
    return Skipped(path, "could not be decoded")
