"""The test set, evaluated once after training with the checkpoint the run chose, one part.

A run with a test set (``data.test_folders`` or a ``data.test_fraction`` share, split off in
engine/data.py before validation) trains and picks its best epoch on validation alone: this part
only acts in ``after_fit``, so nothing of the test set can reach the best epoch, early stopping or
any checkpoint. Then, on a completed or early-stopped run (and a stopped one with at least one
finished epoch, with a note), it loads ``checkpoints/best.pt`` (``last.pt`` when there is no best)
into the model and evaluates the test loader exactly as validation is evaluated (the loop's
``_validate``, handed in: the same module, features or activations, gathered across ranks). Rank 0
writes ``test_predictions.json`` and ``test_logits.npy``; :attr:`TestEvaluation.figures` holds
``test_acc``, ``test_loss``, ``test_n``, ``test_epoch`` (1-based like ``best_epoch``) and
``test_checkpoint`` for summary.json; and
a ``PhaseChanged("test", ...)`` event says the result in words (engine/wording.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from transfer_gui.engine import rundir, wording
from transfer_gui.engine.checkpoint import load_checkpoint
from transfer_gui.engine.control import RunControl, StopRequested
from transfer_gui.engine.events import PhaseChanged, Warning
from transfer_gui.engine.formats import checkpoint_in
from transfer_gui.engine.parts import Part, Run
from transfer_gui.errors import UserError

Evaluate = Callable[..., dict]  # (run, loader, samples, check=...) -> the dict of the loop's _validate


def _no_check() -> None:
    """The test pass of a run that was stopped: the stop was for training, not for this pass."""


class TestEvaluation(Part):
    __test__ = False  # not a pytest class

    def __init__(self, evaluate: Evaluate, control: RunControl):
        self.evaluate, self.control = evaluate, control
        self.figures: dict = {}  # what summary.json gains; empty until the test set was evaluated
        self.result: dict | None = None  # the evaluation itself (preds, logits, confusion, ...)

    def after_fit(self, run: Run) -> None:
        p = run.prepared
        if p.test_loader is None:
            return
        if not run.state.history:
            run.emit(Warning(wording.testset_not_evaluated("no epoch finished, so there is no checkpoint to test")))
            return
        found = checkpoint_in(run.run_dir) if run.dist.main else None
        path = run.dist.broadcast_object(str(found) if found is not None else None)  # after rank 0 wrote it
        if path is None:
            run.emit(Warning(wording.testset_not_evaluated(f"no checkpoint in {run.run_dir}")))
            return
        stopped = self.control.stop_requested
        try:
            self._evaluate(run, Path(path), stopped)
        except StopRequested:
            run.emit(Warning(wording.testset_not_evaluated("stopped on request")))
        except (UserError, OSError) as exc:
            run.emit(Warning(wording.testset_not_evaluated(str(exc))))

    def _evaluate(self, run: Run, path: Path, stopped: bool) -> None:
        p = run.prepared
        blob = load_checkpoint(path)
        p.model.load_state_dict(blob["state_dict"])
        run.emit(PhaseChanged("testing", f"Evaluating the {len(p.split.test):,} test images with checkpoints/{path.name}"))
        res = self.result = self.evaluate(run, p.test_loader, p.split.test, check=_no_check if stopped else None)
        if run.dist.main:
            rundir.write_predictions(run.run_dir, "test", p.split.classes, res["preds"], res["logits"])
        epoch = int((blob.get("metrics") or {}).get("epoch", 0))
        self.figures = {"test_acc": res["acc"], "test_loss": res["loss"], "test_n": res["n"],
                        "test_epoch": epoch, "test_checkpoint": f"checkpoints/{path.name}"}  # 1-based, as best_epoch
        run.emit(PhaseChanged("test", wording.testset_result(res["acc"], res["n"], epoch, path.name,
                                                          undecoded=len(p.split.test) - res["n"], stopped=stopped)))


def with_test_result(message: str, figures: dict) -> str:
    """A run's closing sentence with the test result after it, when the test set was evaluated."""
    if "test_acc" not in figures:
        return message
    return f"{message} {wording.testset_short(figures['test_acc'], figures['test_n'])}"
