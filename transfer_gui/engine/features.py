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

from transfer_gui.engine import boundary as bmod
from transfer_gui.engine import fastpath
from transfer_gui.engine.memory import Trimmer

_MEMORY: dict[str, "FeatureSet"] = {}
_MEMORY_LIMIT_BYTES = 1 << 30  # keep at most this much of earlier runs' features in the process


@dataclass
class FeatureSet:
    features: torch.Tensor  # (N, D) float32 on CPU (activations: (N, C, H, W))
    labels: torch.Tensor  # (N,) int64; -1 where the image failed to decode
    seconds: float
    note: str = ""  # the runtime the pass ran in, for the log ("via ONNX Runtime: 145 images/s ...")


fingerprint = fastpath.fingerprint  # hash of a module's weights and buffers


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


def pass_dtype(device: torch.device, autocast: torch.dtype | None) -> torch.dtype | None:
    """The precision :func:`compute` runs in (and a cache key names): fp32 on a CPU, else ``autocast``."""
    return None if device.type == "cpu" else autocast


def _autocast_forward(module: nn.Module, device: torch.device, dtype: torch.dtype | None) -> fastpath.Forward:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return module(x).float()
    return run


def _frozen_pass(loader: DataLoader, device: torch.device, choose: Callable[[torch.Tensor, int], tuple],
                 progress: Callable[[int, int], None] | None, check: Callable[[], None] | None,
                 flatten: bool) -> FeatureSet:
    """Every batch of ``loader`` through the forward ``choose(first batch, images)`` picks:
    (rows on CPU, labels, seconds, a note naming the runtime and its speed)."""
    t0 = time.perf_counter()
    out, labels = [], []
    total = len(loader.dataset)  # type: ignore[arg-type]
    done = 0
    forward, runtime, how = None, "", ""
    trimmer = Trimmer()
    for x, y, _idx in loader:
        if check:
            check()
        trimmer()
        x = x.to(device, non_blocking=True)
        if forward is None:
            forward, runtime, how = choose(x, total)
        f = forward(x)
        out.append((f.flatten(1) if flatten else f).float().cpu())
        labels.append(torch.as_tensor(y))
        done += len(y)
        if progress:
            progress(done, total)
    seconds = time.perf_counter() - t0
    if not out:
        return FeatureSet(torch.zeros(0), torch.zeros(0, dtype=torch.long), seconds)
    note = f"via {runtime}: {done / max(seconds, 1e-9):.0f} images/s over {done:,} images ({how})"
    return FeatureSet(torch.cat(out), torch.cat(labels).long(), seconds, note)


def compute(backbone: nn.Module, loader: DataLoader, device: torch.device, autocast_dtype: torch.dtype | None,
            progress: Callable[[int, int], None] | None = None, check: Callable[[], None] | None = None) -> FeatureSet:
    """Run the frozen backbone once over ``loader`` (in eval mode). On a CPU it runs in fp32
    through the fastest exact runtime (engine/fastpath.py; ``autocast_dtype`` is not used
    there: the cached features must equal torch's within 1e-4); on a GPU under ``autocast_dtype``."""
    backbone.eval()

    def choose(x: torch.Tensor, images: int) -> tuple:
        if device.type != "cpu":
            return _autocast_forward(backbone, device, autocast_dtype), f"torch on {device}", str(autocast_dtype or "fp32")
        return fastpath.fast_forward(backbone, x, images=images)

    return _frozen_pass(loader, device, choose, progress, check, flatten=True)


def prefix_activations(model: nn.Module, boundary: str, loader: DataLoader, device: torch.device,
                       progress: Callable[[int, int], None] | None = None,
                       check: Callable[[], None] | None = None) -> FeatureSet:
    """The input of module ``boundary`` for every image of ``loader`` (the frozen prefix,
    engine/boundary.py), through the fastest runtime that reproduces :func:`boundary.capture`
    within 1e-4: the prefix traced into a module of its own (torch.fx), exported or in
    ``channels_last``; plain capture where the model cannot be traced."""
    model.eval()
    # Traced before the loader yields its first batch: torch.fx patches nn.Module.__call__ for the
    # whole process while it traces, so a transform running then on one of data.Prefetched's
    # decoding threads was traced too and failed (an image dropped, or "module is not installed
    # as a submodule").
    prefix = fastpath.prefix_module(model, boundary) if device.type == "cpu" else None

    def reference(x: torch.Tensor) -> torch.Tensor:
        return bmod.capture(model, boundary, x).float()

    def choose(x: torch.Tensor, images: int) -> tuple:
        if device.type != "cpu":
            return reference, f"torch on {device}", "fp32"
        if prefix is None:
            return reference, fastpath.TORCH, "the model cannot be traced to its boundary"
        return fastpath.fast_forward(prefix, x, images=images, reference=reference,
                                     key=f"{fastpath.fingerprint(prefix)}:{boundary}")

    return _frozen_pass(loader, device, choose, progress, check, flatten=False)


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
