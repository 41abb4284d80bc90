"""The parts of a run around its epoch loop, and the hooks the loop calls them through.

The loop (engine/loop.py) trains and validates. What a run does besides, at fixed points, is a
:class:`Part`: best-epoch tracking and early stopping (engine/tracking.py), resuming and writing
checkpoints (engine/checkpointing.py), DistributedDataParallel (engine/ddp.py). The loop calls
each hook of every part, in the order of the list, from one place (:func:`call`):

* ``before_fit(run)``: the model, optimizer and :class:`RunState` exist; no epoch has run.
* ``before_epoch(run)``: the epoch's frozen groups are applied (``run.frozen_now``).
* ``after_backward(run, out)``: once per optimizer step, after the backward pass and before the
  optimizer steps (and before gradient clipping): the gradients of this step are in the
  parameters' ``.grad`` and ``out`` is the step's :class:`~transfer_gui.engine.step.StepOut`
  (``run.state.step`` still counts the steps before this one). Under a GradScaler the gradients
  are still scaled; a part that reads them calls ``run.step.unscaled()`` first. Keep it cheap:
  it runs on every step (engine/drift.py measures every few steps).
* ``after_epoch(run)``: the epoch trained and validated: ``run.epoch`` holds its record, which a
  part may add keys to before the checkpoint writer saves it to ``metrics.jsonl``.
* ``after_fit(run)``: the epochs have ended (completed, stopped or stopped early).

A part may end the run after the current epoch by setting ``run.stop = (status, message)``.
Adding a concern means adding a part, not editing the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    import torch

    from transfer_gui.config import RunConfig
    from transfer_gui.engine.prepare import Prepared
    from transfer_gui.engine.ranks import Dist
    from transfer_gui.engine.schedule import Schedule
    from transfer_gui.engine.step import StepOut, TrainStep


@dataclass
class RunState:
    """What a run has done so far; ``last.pt`` keeps it for a resume (all but the predictions)."""

    history: list[dict] = field(default_factory=list)  # one metrics.jsonl record per finished epoch
    epoch: int = 0  # epochs finished (the 0-based index of the next one)
    step: int = 0  # optimizer steps taken
    best_epoch: int = -1  # 0-based; -1 before the first epoch
    best_score: float = math.nan  # of train.early_stopping_metric at the best epoch
    best_val_acc: float = math.nan
    patience_left: int = 0  # epochs without improvement still allowed (train.early_stopping)
    best_predictions: list[dict] = field(default_factory=list)  # the best epoch's, for val_predictions.json


@dataclass
class EpochOutcome:
    index: int  # 0-based
    record: dict  # the epoch's metrics.jsonl line
    val: dict  # loss, acc, n, per_class, confusion, preds
    is_best: bool = False  # set by the tracking part


@dataclass
class Run:
    """One run as the parts see it."""

    cfg: "RunConfig"
    run_dir: Path
    prepared: "Prepared"
    optimizer: "torch.optim.Optimizer"
    state: RunState
    emit: Callable[[object], None]
    dist: "Dist"
    step: "TrainStep"
    schedule: "Schedule"
    config_text: str
    parts: Sequence["Part"] = ()
    start_epoch: int = 0
    frozen_now: set[str] = field(default_factory=set)
    train_module: Any = None  # what the optimizer steps through: the module, or DDP around it
    epoch: EpochOutcome | None = None
    stop: tuple[str, str] | None = None


class Part:
    """A concern of a run with hooks; every hook does nothing unless overridden."""

    def before_fit(self, run: Run) -> None:
        pass

    def before_epoch(self, run: Run) -> None:
        pass

    def after_backward(self, run: Run, out: "StepOut") -> None:
        pass

    def after_epoch(self, run: Run) -> None:
        pass

    def after_fit(self, run: Run) -> None:
        pass


HOOKS = ("before_fit", "before_epoch", "after_backward", "after_epoch", "after_fit")


def call(run: Run, hook: str, *args: Any) -> None:
    """Call ``hook`` of every part of ``run``, in order (``after_backward`` takes the step's output)."""
    assert hook in HOOKS, hook
    for part in run.parts:
        getattr(part, hook)(run, *args)
