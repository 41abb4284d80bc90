"""Feature cache: when everything below the head is frozen and no random augmentation is on,
the backbone's output for an image never changes, so compute it once and train the head on it.

Kept in memory, keyed by everything that changes the features (model, weights, preprocessing,
files), so a second run with the same data and backbone in the same process reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from transfer_gui.engine.memory import Trimmer

_MEMORY: dict[str, "FeatureSet"] = {}
_MEMORY_LIMIT_BYTES = 1 << 30  # keep at most this much of earlier runs' features in the process


@dataclass
class FeatureSet:
    features: torch.Tensor  # (N, D) float32 on CPU (activations: (N, C, H, W))
    labels: torch.Tensor  # (N,) int64; -1 where the image failed to decode
    seconds: float


def fingerprint(module: nn.Module) -> str:
    """Hash of a module's weights and buffers: two backbones share features only if equal."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_key(backbone_fingerprint: str, preprocessing, paths: list[str], dtype: object = None) -> str:
    """Everything that changes the features: the backbone's weights, the preprocessing, the
    precision, and each file's path, size and modification time."""
    h = hashlib.sha256()
    h.update(json.dumps([backbone_fingerprint, preprocessing.to_dict(), str(dtype)]).encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


@torch.inference_mode()
def compute(backbone: nn.Module, loader: DataLoader, device: torch.device, autocast_dtype: torch.dtype | None,
            progress: Callable[[int, int], None] | None = None, check: Callable[[], None] | None = None) -> FeatureSet:
    """Run the frozen backbone once over ``loader`` (in eval mode)."""
    t0 = time.perf_counter()
    backbone.eval()
    feats, labels = [], []
    total = len(loader.dataset)  # type: ignore[arg-type]
    done = 0
    trimmer = Trimmer()
    for x, y, _idx in loader:
        if check:
            check()
        trimmer()
        x = x.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            f = backbone(x)
        feats.append(f.float().flatten(1).cpu())
        labels.append(torch.as_tensor(y))
        done += len(y)
        if progress:
            progress(done, total)
    if not feats:
        return FeatureSet(torch.zeros(0), torch.zeros(0, dtype=torch.long), time.perf_counter() - t0)
    return FeatureSet(torch.cat(feats), torch.cat(labels).long(), time.perf_counter() - t0)


def get_or_compute(key: str, make: Callable[[], FeatureSet]) -> tuple[FeatureSet, bool]:
    """(features, reused?) from the in-process cache."""
    if key in _MEMORY:
        return _MEMORY[key], True
    fs = make()
    _MEMORY[key] = fs
    while len(_MEMORY) > 2 and sum(f.features.numel() * 4 for f in _MEMORY.values()) > _MEMORY_LIMIT_BYTES:
        _MEMORY.pop(next(iter(_MEMORY)))  # oldest first; the current run's two sets stay
    return fs, False


def clear() -> None:
    _MEMORY.clear()
