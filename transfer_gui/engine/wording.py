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
    test = f" {e.test_size:,} test images are held out and evaluated once, after training." if e.test_size else ""
    return (f"Training on {e.device} ({e.precision}): {e.train_size:,} training and {e.val_size:,} validation "
            f"images, {len(e.classes)} classes, {e.total_steps:,} steps; training {', '.join(e.trainable_groups)}."
            f"{cache}{resumed}{test}")


def epoch_end(e: ev.EpochEnd) -> str:
    if e.val_loss is not None and math.isfinite(e.val_loss):
        val = f"validation loss {number(e.val_loss)}, accuracy {pct(e.val_acc)}"
    else:
        val = "no validation images"
    best = " (best so far)" if e.is_best else ""
    return (f"Epoch {e.epoch + 1}/{e.epochs}: training loss {number(e.train_loss)}, accuracy {pct(e.train_acc)}; "
            f"{val} ({e.seconds:.1f} s){best}")


def testset_result(acc: float, n: int, epoch: int, checkpoint: str, undecoded: int = 0, stopped: bool = False) -> str:
    """The test set's result, said once after training (engine/testeval.py)."""
    which = f"the epoch {epoch} checkpoint ({checkpoint})" if epoch else f"the checkpoint {checkpoint}"
    note = f" {undecoded:,} test image(s) could not be decoded and were left out." if undecoded > 0 else ""
    stop = " The run was stopped before its last epoch, so this is the best epoch so far." if stopped else ""
    return (f"Test accuracy {pct(acc)} on {n:,} test image{'s' if n != 1 else ''} with {which}; the test set "
            f"took no part in choosing it.{note}{stop}")


def testset_short(acc: float, n: int) -> str:
    """The test result in the sentence that ends a run (the command line prints it last)."""
    return f"Test accuracy {pct(acc)} on {n:,} test image{'s' if n != 1 else ''}."


def testset_not_evaluated(reason: str) -> str:
    return f"the test set was not evaluated: {reason}"


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
    if isinstance(e, ev.PhaseChanged) and e.phase == "test" and e.message:
        return e.message, "ok"
    if isinstance(e, ev.PhaseChanged) and e.message and e.phase not in QUIET_PHASES:
        return e.message, "muted"
    return None


# ----------------------------------------------------------------------------- layer-group warnings
# engine/drift.py emits these as Warning events; the CLI prints them and the window shows them.


def loss_spike_warning(first: float, peak: float, step: int, window: int, warmup_epochs: float,
                       head_lr: float) -> str:
    """The loss rose far above its first value early in the run."""
    warm = (f"schedule.warmup_epochs is {warmup_epochs:g}; try {max(1.0, warmup_epochs * 2):g}"
            if warmup_epochs > 0 else "schedule.warmup_epochs is 0; try 1")
    return (f"the training loss rose to {number(peak)} at step {step}, {peak / first:.1f}x its first value "
            f"{number(first)}, within the first {window} steps: the warmup is too short or the learning rate "
            f"too high. Lengthen the warmup ({warm}) or lower layers.head_lr (now {head_lr:g}; try "
            f"{head_lr / 10:g}).")


def drift_warning(drifts: dict[str, float], rates: dict[str, float], head_lr: float, limit: float) -> str:
    """Groups that train at a low rate and still moved far from their pretrained weights."""
    which = ", ".join(f"{g} ({drifts[g]:.0%} at rate {rates[g]:.2g})" for g in drifts)
    many = len(drifts) > 1
    return (f"layer group{'s' if many else ''} {which} moved more than {limit:.0%} away from the pretrained "
            f"weights although {'they train' if many else 'it trains'} at a tenth of the head's rate "
            f"({head_lr:g}) or less: the pretrained features are being changed a lot. Lower "
            f"{'their' if many else 'its'} rate (layers.lr or layers.lr_decay) or freeze "
            f"{'them' if many else 'it'} (layers.train_from or layers.frozen).")


def no_gradient_warning(groups: list[str], norms: dict[str, float], largest: tuple[str, float],
                        train_from: str) -> str:
    """Groups whose gradient stays about zero next to the others': training them is wasted time."""
    which = ", ".join(f"{g} ({norms[g]:.1e})" for g in groups)
    many = len(groups) > 1
    return (f"layer group{'s' if many else ''} {which} get{'' if many else 's'} almost no gradient "
            f"(gradient norm next to {largest[1]:.2g} for {largest[0]}): training {'them' if many else 'it'} "
            f"is wasted time. Freeze {'them' if many else 'it'}: set layers.train_from to {train_from} "
            f"(or list {'them' if many else 'it'} in layers.frozen).")


# Short forms for the window's per-group table (the full sentence is in the log).
GROUP_FLAGS = {"drift": "moved far at a low rate: lower its rate or freeze it",
               "no_gradient": "almost no gradient: freeze it (layers.train_from)"}
