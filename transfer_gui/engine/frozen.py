"""The frozen network on a config's data, for the tools that read it without training: the
depth probe (engine/probe.py) and the data audit (engine/audit.py).

:func:`setup` seeds, picks the device and the precision of a frozen pass (exact fp32 on a CPU), scans and splits the folders
(engine/data.py) and builds the model at the configured image size in eval mode.
:func:`backbone_features` computes the backbone's output for a list of samples through the
engine's feature cache (engine/features.py) under the very key a run's loaders use
(engine/loaders.py), so an audit and the head-only run after it share one computation in a
process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import DataLoader

from transfer_gui.config import RunConfig
from transfer_gui.engine import data as data_mod
from transfer_gui.engine import features as feat_mod
from transfer_gui.engine import prepare as prep
from transfer_gui.engine.catalog import BuiltModel, build_model
from transfer_gui.engine.events import PhaseChanged, Progress
from transfer_gui.engine.preprocess import eval_from_resized
from transfer_gui.engine.scan import Sample
from transfer_gui.engine.surgery import backbone_and_head

Emit = Callable[[object], None]


@dataclass
class Frozen:
    cfg: RunConfig
    device: torch.device
    autocast: torch.dtype | None
    split: data_mod.Split
    built: BuiltModel


def setup(cfg: RunConfig, emit: Emit, cancelled: Callable[[], bool]) -> Frozen:
    """Device, precision, split and the built model (eval mode, input size checked)."""
    prep.seed_everything(cfg.train.seed)
    device = prep.resolve_device(cfg.train.device)
    autocast = prep.frozen_pass_autocast(device, prep.resolve_precision(cfg.train.precision, device)[0])
    emit(PhaseChanged("prepare", "Scanning image folders"))
    split = data_mod.build_split(cfg.data, cfg.train.seed, progress=lambda n, msg: emit(Progress("scan", n, 0, msg)),
                                 cancel=cancelled)
    emit(PhaseChanged("prepare", f"Loading model {cfg.model.name}"))
    built = build_model(cfg.model.name, cfg.model.weights, num_classes=len(split.classes),
                        progress=lambda d, t: emit(Progress("download", d, t, "Downloading weights")), cancel=cancelled)
    built.preprocessing = built.preprocessing.at_size(cfg.data.image_size)
    built.model.to(device).eval()
    prep.check_input_size(built.model, built.preprocessing, device, cfg)
    return Frozen(cfg, device, autocast, split, built)


def batch_size(cfg: RunConfig, device: torch.device) -> int:
    """Images per batch of a one-time pass through a frozen network (see loaders._frozen_batch)."""
    return min(cfg.train.batch_size, 16) if device.type == "cpu" else max(cfg.train.batch_size, 64)


def backbone_features(fz: Frozen, samples: list[Sample], name: str, emit: Emit,
                      check: Callable[[], None] | None = None) -> tuple[feat_mod.FeatureSet, bool]:
    """(the backbone's features of ``samples``, reused from the cache?); labels -1 where an
    image failed to decode."""
    pre = fz.built.preprocessing
    backbone, _head = backbone_and_head(fz.built.model, fz.built.head_path)
    key = feat_mod.cache_key(feat_mod.fingerprint(backbone), pre, [s.path for s in samples], fz.autocast)
    workers = data_mod.auto_workers(fz.cfg.data.num_workers, fz.device, cached=False)

    def make() -> feat_mod.FeatureSet:
        emit(PhaseChanged("features", f"Computing frozen features of {len(samples):,} {name} images once"))
        loader = DataLoader(data_mod.ImageDataset(samples, eval_from_resized(pre), pre),
                            batch_size=batch_size(fz.cfg, fz.device), shuffle=False, num_workers=workers,
                            pin_memory=fz.device.type == "cuda")
        return feat_mod.compute(backbone, loader, fz.device, fz.autocast, check=check,
                                progress=lambda d, t: emit(Progress("features", d, t, f"Features of {name} images")))

    if not samples:
        return feat_mod.FeatureSet(torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.0), False
    return feat_mod.get_or_compute(key, make)


__all__ = ["Frozen", "backbone_features", "batch_size", "setup"]
