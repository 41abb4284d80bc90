"""Partial fine-tuning without recomputing the frozen prefix.

When the first k layer groups are frozen (BatchNorm in eval) and augmentation is off, the
input of the first trainable group is the same every epoch. We compute it once, keep it in
memory within a budget the user sets (``train.cache_memory_mb``), and train the rest of the
network on it.

The network's own ``forward`` still runs, so any architecture works: a forward pre-hook on the
boundary module swaps in the cached activation, and the frozen prefix is fed a tiny dummy
image so that it costs next to nothing. Before the cache is used, the cached path is checked
against the full model on real images; if they differ, the run falls back to the full path.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from transfer_gui.engine.memory import Trimmer


class _Captured(Exception):
    def __init__(self, value: torch.Tensor):
        self.value = value


@torch.no_grad()
def capture(model: nn.Module, boundary: str, x: torch.Tensor) -> torch.Tensor:
    """The input of module ``boundary`` for images ``x``; the rest of the network is skipped."""
    module = model.get_submodule(boundary)

    def hook(_m, args):
        raise _Captured(args[0])

    handle = module.register_forward_pre_hook(hook)
    try:
        model(x)
    except _Captured as c:
        return c.value
    finally:
        handle.remove()
    raise RuntimeError(f"module {boundary} was not reached by the forward pass")


class BoundaryModel(nn.Module):
    """``forward(activations)``: the network from the boundary on, given cached inputs."""

    def __init__(self, model: nn.Module, boundary: str, dummy_size: int):
        super().__init__()
        self.model = model
        self.boundary = boundary
        self.dummy_size = dummy_size
        self._pending: torch.Tensor | None = None
        self._handle = model.get_submodule(boundary).register_forward_pre_hook(self._swap)

    def detach(self) -> None:
        self._handle.remove()

    def _swap(self, _m, args):
        if self._pending is None:
            return None
        value, self._pending = self._pending, None
        return (value, *args[1:])

    def forward(self, acts: torch.Tensor) -> torch.Tensor:
        self._pending = acts
        dummy = torch.zeros(acts.shape[0], 3, self.dummy_size, self.dummy_size, device=acts.device)
        try:
            return self.model(dummy)
        finally:
            self._pending = None


@torch.no_grad()
def choose_dummy_size(model: nn.Module, boundary: str, sample: torch.Tensor, full_size: int) -> int | None:
    """The smallest dummy input for which the cached path reproduces the full model."""
    model.eval()
    reference = model(sample)
    acts = capture(model, boundary, sample)
    for size in (8, 16, 32, 64, full_size):
        if size > full_size:
            continue
        wrapper = BoundaryModel(model, boundary, size)
        try:
            out = wrapper(acts)
        except Exception:  # noqa: BLE001 - this size does not fit the architecture; try a larger one
            out = None
        finally:
            wrapper.detach()
        if out is not None and out.shape == reference.shape and torch.allclose(out, reference, atol=1e-4, rtol=1e-4):
            return size
    return None


@torch.no_grad()
def compute_activations(model: nn.Module, boundary: str, loader: DataLoader, device: torch.device,
                        progress: Callable[[int, int], None] | None = None,
                        check: Callable[[], None] | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    t0 = time.perf_counter()
    model.eval()
    acts, labels = [], []
    done, total = 0, len(loader.dataset)  # type: ignore[arg-type]
    trimmer = Trimmer()
    for x, y, _ in loader:
        if check:
            check()
        trimmer()
        acts.append(capture(model, boundary, x.to(device)).cpu())
        labels.append(torch.as_tensor(y))
        done += len(y)
        if progress:
            progress(done, total)
    if not acts:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long), time.perf_counter() - t0
    return torch.cat(acts), torch.cat(labels).long(), time.perf_counter() - t0
