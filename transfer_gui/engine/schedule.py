"""Learning rate as a pure function of the step: warmup from 0, then constant, cosine, step or
one-cycle. The trainer and the window's preview plot both call :func:`lr_factor`."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    name: str  # constant | cosine | step | onecycle
    total_steps: int
    warmup_steps: int = 0
    min_factor: float = 0.0
    step_size: int = 1  # steps between decays (step schedule)
    gamma: float = 0.1


def lr_factor(step: int, s: Schedule) -> float:
    """Multiplier of each group's target rate at optimizer step ``step`` (0-based).

    Warmup: ``step / warmup_steps`` for the first ``warmup_steps`` steps, so the first step
    runs at 0 and the rate rises linearly to the target. One-cycle without an explicit warmup
    warms up over the first 30 % of the run.
    """
    total = max(1, s.total_steps)
    warm = s.warmup_steps
    if s.name == "onecycle" and warm == 0:
        warm = max(1, int(0.3 * total))
    if step < warm:
        return step / warm
    after = step - warm
    span = max(1, total - warm)
    t = min(1.0, after / span)
    if s.name == "constant":
        return 1.0
    if s.name in ("cosine", "onecycle"):
        return s.min_factor + (1.0 - s.min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
    if s.name == "step":  # decays at steps step_size, 2*step_size, ... counted from the start
        return s.gamma ** (step // max(1, s.step_size))
    raise ValueError(f"unknown schedule {s.name!r}")


def from_config(sched_cfg, steps_per_epoch: int, epochs: int) -> Schedule:
    """Build a :class:`Schedule` from a :class:`transfer_gui.config.ScheduleConfig`."""
    total = steps_per_epoch * epochs
    warm = sched_cfg.warmup_steps or int(round(sched_cfg.warmup_epochs * steps_per_epoch))
    return Schedule(sched_cfg.name, total, min(warm, total), sched_cfg.min_lr_factor,
                    max(1, sched_cfg.step_epochs * steps_per_epoch), sched_cfg.gamma)


def curve(schedule: Schedule, base_lr: float, points: int = 200) -> tuple[list[int], list[float]]:
    """(steps, lrs) sampled over the whole run, for plots."""
    n = max(1, schedule.total_steps)
    stride = max(1, n // points)
    steps = list(range(0, n, stride))
    if steps[-1] != n - 1:
        steps.append(n - 1)
    return steps, [base_lr * lr_factor(k, schedule) for k in steps]
