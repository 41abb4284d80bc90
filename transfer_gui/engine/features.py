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

_MEMORY: dict[str, "FeatureSet"] = {}
_MEMORY_LIMIT = 4


@dataclass
class FeatureSet:
    features: torch.Tensor  # (N, D) float32 on CPU (activations: (N, C, H, W))
    labels: torch.Tensor  # (N,) int64; -1 where the image failed to decode
    seconds: float


def cache_key(arch: str, weights: str, preprocessing, paths: list[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([arch, weights, preprocessing.to_dict()]).encode())
    if weights not in ("pretrained", "none") and os.path.isfile(weights):
        st = os.stat(weights)
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


@torch.no_grad()
def compute(backbone: nn.Module, loader: DataLoader, device: torch.device, autocast_dtype: torch.dtype | None,
            progress: Callable[[int, int], None] | None = None, check: Callable[[], None] | None = None) -> FeatureSet:
    """Run the frozen backbone once over ``loader`` (in eval mode)."""
    t0 = time.perf_counter()
    backbone.eval()
    feats, labels = [], []
    total = len(loader.dataset)  # type: ignore[arg-type]
    done = 0
    for x, y, _idx in loader:
        if check:
            check()
        x = x.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            f = backbone(x)
        feats.append(f.float().flatten(1).cpu())
        labels.append(torch.as_tensor(y))
        done += len(y)
        if progress:
            progress(done, total)
    return FeatureSet(torch.cat(feats), torch.cat(labels).long(), time.perf_counter() - t0)


def get_or_compute(key: str, make: Callable[[], FeatureSet]) -> tuple[FeatureSet, bool]:
    """(features, reused?) from the in-process cache."""
    if key in _MEMORY:
        return _MEMORY[key], True
    fs = make()
    if len(_MEMORY) >= _MEMORY_LIMIT:
        _MEMORY.pop(next(iter(_MEMORY)))
    _MEMORY[key] = fs
    return fs, False


def clear() -> None:
    _MEMORY.clear()
