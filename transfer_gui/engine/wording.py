"""The sentences a run's events become, for every front end: the command line prints them and
the window's log shows them, so a run reads the same wherever it is watched. No torch, no Qt.

:func:`describe` returns ``(text, kind)`` or None for events that are not worth a line
(batches, progress ticks, the start of each training and validation phase); ``kind`` is
"" (plain), "muted" (what the engine is doing), "ok", "warn" or "error".
"""

from __future__ import annotations

import math

from transfer_gui.engine import events as ev

KINDS = ("", "muted", "ok", "warn", "error")
FINISHED_KIND = {"completed": "ok", "early_stopped": "ok", "stopped": "warn", "failed": "error"}
QUIET_PHASES = ("train", "validate")  # their start is shown by the progress bars, not a line


def pct(value: float) -> str:
    """``93.8%``, or ``n/a`` where there is nothing to measure (NaN, e.g. no validation images)."""
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.1%}"


def number(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def run_started(e: ev.RunStarted) -> str:
    cache = " Frozen backbone: features computed once, only the head trains." if e.feature_cache else ""
    resumed = f" Resuming after epoch {e.start_epoch}." if e.start_epoch else ""
    return (f"Training on {e.device} ({e.precision}): {e.train_size:,} training and {e.val_size:,} validation "
            f"images, {len(e.classes)} classes, {e.total_steps:,} steps; training {', '.join(e.trainable_groups)}."
            f"{cache}{resumed}")


def epoch_end(e: ev.EpochEnd) -> str:
    if e.val_loss is not None and math.isfinite(e.val_loss):
        val = f"validation loss {number(e.val_loss)}, accuracy {pct(e.val_acc)}"
    else:
        val = "no validation images"
    best = " (best so far)" if e.is_best else ""
    return (f"Epoch {e.epoch + 1}/{e.epochs}: training loss {number(e.train_loss)}, accuracy {pct(e.train_acc)}; "
            f"{val} ({e.seconds:.1f} s){best}")


def describe(e: object) -> tuple[str, str] | None:
    """The line for event ``e`` and its kind, or None when it is not worth one."""
    if isinstance(e, ev.RunStarted):
        return run_started(e), "muted"
    if isinstance(e, ev.EpochEnd):
        return epoch_end(e), "ok" if e.is_best else ""
    if isinstance(e, ev.Warning):
        return f"Warning: {e.message}", "warn"
    if isinstance(e, ev.Finished):
        return e.message, FINISHED_KIND.get(e.status, "error")
    if isinstance(e, ev.PhaseChanged) and e.message and e.phase not in QUIET_PHASES:
        return e.message, "muted"
    return None
