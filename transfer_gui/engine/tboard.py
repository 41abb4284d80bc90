"""TensorBoard event files in the run folder, one part (engine/parts.py).

``tensorboard --logdir RUNS_FOLDER`` then shows every run of a project side by side, each under
its folder's name. The part writes with ``torch.utils.tensorboard.SummaryWriter`` (the optional
``tensorboard`` package) into the run folder itself, on rank 0 only:

* every optimizer step (``after_backward``, x = the optimizer step, from 1): ``batch/loss`` (the
  step's loss, averaged over the ranks as the progress bar shows it) and ``batch/lr/<group>``,
  the learning rate each layer group stepped with;
* every epoch (``after_epoch``, x = the epoch, from 1): ``epoch/train_loss``, ``epoch/val_loss``,
  ``epoch/train_acc``, ``epoch/val_acc``, ``epoch/seconds``, ``epoch/images_per_s``,
  ``lr/<group>``, and from engine/drift.py's record ``drift/<group>``, ``grad_norm/<group>``
  (``norm_growth/head`` for the new head);
* once, at the start: the run's config as text (``config``); at the end (``after_fit``): the
  test set's ``test/acc`` and ``test/loss`` at the epoch of the checkpoint tested, when the run
  has a test set.

``output.tensorboard``: ``auto`` (the default) writes when tensorboard is installed and says
once, in a note, that it is not; ``on`` requires it (the run fails at its start with a message
naming the field); ``off`` writes nothing. A new run in a folder removes the event files an
earlier run left there (a resume keeps and extends them). A write that fails (a full disk) is
said once as a warning and ends the writing, not the run.
"""

from __future__ import annotations

import math
import weakref
from pathlib import Path

from transfer_gui.engine import runs
from transfer_gui.engine.events import PhaseChanged, Warning
from transfer_gui.engine.optim import current_lrs
from transfer_gui.engine.parts import Part, Run
from transfer_gui.engine.step import StepOut
from transfer_gui.errors import UserError

EVENTS_GLOB = "events.out.tfevents.*"
NOT_INSTALLED = ("TensorBoard is not installed, so this run writes no event files "
                 "(pip install tensorboard, or set output.tensorboard = \"off\" to silence this)")
EPOCH_KEYS = ("train_loss", "val_loss", "train_acc", "val_acc", "seconds", "images_per_s")
GROUP_KEYS = ("drift", "grad_norm", "norm_growth")


def writer_class():
    """``SummaryWriter``, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class TensorBoard(Part):
    def __init__(self, mode: str, main: bool = True):
        self.mode, self.main = mode, main
        self.writer = None

    def before_fit(self, run: Run) -> None:
        if self.mode == "off" or not self.main:
            return
        cls = writer_class()
        if cls is None:
            if self.mode == "on":
                raise UserError(f"output.tensorboard is \"on\" but tensorboard is not installed: pip install "
                                f"tensorboard, or set output.tensorboard to \"auto\" or \"off\" ({run.run_dir})")
            run.emit(PhaseChanged("prepare", NOT_INSTALLED))
            return
        if run.state.epoch == 0:  # a new run: not the event files of an earlier run in this folder
            for old in Path(run.run_dir).glob(EVENTS_GLOB):
                old.unlink(missing_ok=True)
        self.writer = cls(log_dir=str(run.run_dir), flush_secs=10)
        weakref.finalize(self, self.writer.close)  # a run that fails never reaches after_fit
        self._do(run, lambda w: w.add_text("config", "```toml\n" + run.config_text + "\n```", 0))

    def after_backward(self, run: Run, out: StepOut) -> None:
        if self.writer is None:
            return
        step = run.state.step + 1  # the step being taken now

        def write(w) -> None:
            w.add_scalar("batch/loss", float(out.global_loss), step)
            for group, lr in current_lrs(run.optimizer).items():
                w.add_scalar(f"batch/lr/{group}", lr, step)

        self._do(run, write)

    def after_epoch(self, run: Run) -> None:
        if self.writer is None or run.epoch is None:
            return
        record, n = run.epoch.record, run.epoch.index + 1

        def write(w) -> None:
            for key in EPOCH_KEYS:
                if _number(record.get(key)):
                    w.add_scalar(f"epoch/{key}", record[key], n)
            for group, lr in (record.get("lrs") or {}).items():
                w.add_scalar(f"lr/{group}", lr, n)
            for group, stats in (record.get("groups") or {}).items():
                for key in GROUP_KEYS:
                    if _number((stats or {}).get(key)):
                        w.add_scalar(f"{key}/{group}", stats[key], n)
            w.flush()  # a run that fails later keeps its finished epochs

        self._do(run, write)

    def after_fit(self, run: Run) -> None:
        if self.writer is None:
            return
        figures = {k: v for part in run.parts for k, v in getattr(part, "figures", {}).items()}
        if _number(figures.get("test_acc")):
            n = self._tested_epoch(run, str(figures.get("test_checkpoint", "")))

            def write(w) -> None:
                w.add_scalar("test/acc", figures["test_acc"], n)
                if _number(figures.get("test_loss")):
                    w.add_scalar("test/loss", figures["test_loss"], n)

            self._do(run, write)
        self.close(run)

    @staticmethod
    def _tested_epoch(run: Run, checkpoint: str) -> int:
        """The epoch (from 1) of the checkpoint the test set was evaluated with: best.pt's or the last."""
        history = run.state.history
        if checkpoint.endswith("best.pt"):
            return runs.best_epoch(history, run.cfg.train.early_stopping_metric)
        return int(history[-1].get("epoch", len(history))) if history else 0

    def close(self, run: Run | None = None) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:
                if run is not None:
                    run.emit(Warning(f"TensorBoard event files could not be written: {exc}"))

    def _do(self, run: Run, write) -> None:
        """Write through the writer; the first failure is said once and ends the writing, not the run."""
        try:
            write(self.writer)
        except OSError as exc:
            run.emit(Warning(f"TensorBoard event files could not be written, so none are from now on: {exc}"))
            self.writer = None
