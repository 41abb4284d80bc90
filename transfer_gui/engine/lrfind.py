"""Learning-rate finder: raise the learning rate exponentially over a few hundred batches,
record the loss, suggest a rate where the loss falls fastest. Each batch goes through the
training step itself (engine/step.py), so the losses are the ones training would see. The
model's weights are restored afterwards, so the sweep leaves no trace."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from transfer_gui.config import RunConfig
from transfer_gui.engine.control import RunControl, StopRequested
from transfer_gui.engine.events import PhaseChanged, Progress
from transfer_gui.engine.optim import make_optimizer
from transfer_gui.engine.prepare import Prepared, prepare
from transfer_gui.engine.rules import lr_sweep_ok
from transfer_gui.engine.step import Batch, TrainStep
from transfer_gui.errors import UserError


@dataclass(frozen=True)
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # smoothed
    suggestion: float
    stopped_early: bool  # the loss diverged before end_lr


def suggest(lrs: list[float], losses: list[float]) -> float:
    """The rate where the smoothed loss falls fastest (steepest negative slope in log-lr),
    ignoring the first and last few points, which are noisy."""
    if len(lrs) < 5:
        return lrs[len(lrs) // 2] if lrs else 1e-3
    lo, hi = max(1, len(lrs) // 10), min(len(lrs) - 1, max(2, len(lrs) - len(lrs) // 10))
    best, best_i = math.inf, lo
    for i in range(lo, hi):
        slope = (losses[i + 1] - losses[i - 1]) / (math.log10(lrs[i + 1]) - math.log10(lrs[i - 1]))
        if slope < best:
            best, best_i = slope, i
    return lrs[best_i]


class SweepError(UserError, ValueError):
    """Sweep bounds that cannot work."""


class _Diverged(Exception):
    pass


def _check(steps: int, start_lr: float, end_lr: float) -> None:
    if not lr_sweep_ok(steps, start_lr, end_lr):
        raise SweepError(f"the sweep needs at least 2 steps and 0 < start_lr < end_lr; got {steps} steps, "
                         f"{start_lr:g} to {end_lr:g}")


def _stop_on_divergence(loss: torch.Tensor) -> None:
    if not torch.isfinite(loss).all():
        raise _Diverged()


def _batches(p: Prepared, step: TrainStep) -> Iterator[Batch]:
    """The training batches on the device, round and round (batches with no image left out)."""
    while True:
        for x, y, _ in p.train_loader:
            batch = step.batch(x, y)
            if batch is not None:
                yield batch


def sweep(p: Prepared, steps: int = 100, start_lr: float = 1e-7, end_lr: float = 1.0, smooth: float = 0.9,
          diverge: float = 4.0, emit: Callable[[object], None] = lambda e: None,
          control: RunControl | None = None) -> LRFindResult:
    """Run the sweep on a prepared run, through the training step itself (the same loss with
    label smoothing, precision, channels_last and gradient clipping). Every group keeps its
    ratio to the head's rate."""
    control = control or RunControl()
    _check(steps, start_lr, end_lr)
    saved = copy.deepcopy(p.model.state_dict())
    opt = make_optimizer(p.model, p.train_groups, p.lrs, p.cfg.optim)
    ratio = {pg["group_name"]: pg["base_lr"] / p.lrs["head"] for pg in opt.param_groups}
    step = TrainStep.for_run(p, opt)
    p.train_mode(p.frozen)
    step.clip(p.module)
    lrs: list[float] = []
    losses: list[float] = []
    avg, best, stopped_early = 0.0, math.inf, False
    mult = (end_lr / start_lr) ** (1 / max(1, steps - 1))
    batches = _batches(p, step)
    try:
        for k in range(steps):
            control.checkpoint()
            lr = start_lr * mult**k
            for pg in opt.param_groups:
                pg["lr"] = lr * ratio[pg["group_name"]]
            try:
                out = step(p.module, next(batches), guard=_stop_on_divergence)
            except _Diverged:
                stopped_early = True
                break
            avg = smooth * avg + (1 - smooth) * float(out.loss)
            smoothed = avg / (1 - smooth ** (k + 1))
            lrs.append(lr)
            losses.append(smoothed)
            emit(Progress("lr_find", k + 1, steps, f"lr {lr:.1e}: loss {smoothed:.3f}"))
            best = min(best, smoothed)
            if not math.isfinite(smoothed) or (k > 10 and smoothed > diverge * best):
                stopped_early = True
                break
    finally:
        p.model.load_state_dict(saved)
    finite = [(a, b) for a, b in zip(lrs, losses) if math.isfinite(b)]
    lrs, losses = [a for a, _ in finite], [b for _, b in finite]
    return LRFindResult(lrs, losses, suggest(lrs, losses), stopped_early)


def lr_find(cfg: RunConfig, on_event: Callable[[object], None] | None = None, control: RunControl | None = None,
            steps: int = 100, start_lr: float = 1e-7, end_lr: float = 1.0) -> LRFindResult:
    """Prepare the run exactly as training would (same freezing, caches) and sweep."""
    emit = on_event or (lambda e: None)
    control = control or RunControl()
    _check(steps, start_lr, end_lr)  # before the minutes that prepare may take
    p = prepare(cfg, emit, control)
    emit(PhaseChanged("lr_find", f"Sweeping the learning rate from {start_lr:g} to {end_lr:g}"))
    try:
        return sweep(p, steps, start_lr, end_lr, emit=emit, control=control)
    finally:
        p.close()


__all__ = ["LRFindResult", "SweepError", "lr_find", "suggest", "sweep", "StopRequested"]
