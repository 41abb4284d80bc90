"""What the Results step shows about one set of a run (validation or test), in plain Python.

Built from a run folder's record (engine/rundir.py) by ``engine/evaluate.evaluation_from_record``,
the same evaluation that the report and ``transfer-gui evaluate`` write: the per-image logits
when the run saved them (``val_logits.npy``, ``test_logits.npy``) with the run's temperature,
else the top-5 probabilities of the predictions files. Every figure comes from
``engine/metrics.py``, so the window, the report and the command line agree.
"""

from __future__ import annotations

from typing import Any

from transfer_gui.engine import metrics
from transfer_gui.engine.evaluate import Evaluation, evaluation_from_record

SET_NAMES = {"val": "Validation", "test": "Test"}


def sets_of(record: Any) -> list[str]:
    """The sets of a run that have predictions to show, validation first."""
    if record is None:
        return []
    out = ["val"] if record.predictions else []
    if getattr(record, "test_predictions", None):
        out.append("test")
    return out


class EvaluationView:
    """One set's :class:`~transfer_gui.engine.evaluate.Evaluation` (the run's calibration applied)
    and the figures the Results step draws from it."""

    def __init__(self, evaluation: Evaluation):
        self.evaluation = evaluation
        self.which = evaluation.which
        self.classes = evaluation.classes
        self.paths = evaluation.paths
        self.labels = evaluation.labels
        self.probs = evaluation.probs  # temperature applied
        raw = evaluation.uncalibrated_probs()
        self.exact = raw is not None  # False: rebuilt from the top-5 lists of an older run
        self.raw_probs = raw if raw is not None else evaluation.probs
        self.temperature = evaluation.temperature
        self.threshold = float(evaluation.calibration.get("threshold", 0.0) or 0.0)
        self.report = evaluation.metrics

    @property
    def title(self) -> str:
        return SET_NAMES.get(self.which, self.which)

    @property
    def n(self) -> int:
        return len(self.labels)

    def most_confused(self, limit: int = 20) -> list[tuple[str, str, int]]:
        return metrics.most_confused(self.report["confusion"], self.classes)[:limit]

    def coverage_at(self, threshold: float) -> tuple[float, float, int]:
        return metrics.coverage_at(self.probs, self.labels, threshold)

    def coverage_curve(self) -> list[tuple[float, float, float]]:
        return metrics.coverage_curve(self.probs, self.labels)

    def reliability(self, calibrated: bool = True) -> list[dict]:
        return metrics.reliability(self.probs if calibrated else self.raw_probs, self.labels)

    def ece(self, calibrated: bool = True) -> float:
        return metrics.ece(self.probs if calibrated else self.raw_probs, self.labels)

    def pr_curve(self, k: int):
        return metrics.pr_curve(self.probs, self.labels, k)


def build(record: Any, which: str = "val") -> EvaluationView | None:
    """The view of ``which`` ("val" or "test") of a run record, or None when it has no predictions."""
    if record is None or which not in sets_of(record):
        return None
    return EvaluationView(evaluation_from_record(record, which))


def short_names(names: list[str], width: int = 14) -> list[str]:
    """Labels of at most ``width`` characters that still tell every name apart: a long name
    keeps its start and end around an ellipsis, and grows until no two labels are equal."""
    out = list(names)
    for keep in range(max(3, width), max([len(n) for n in names] + [0]) + 1):
        out = [n if len(n) <= keep else n[:max(1, (keep - 1) * 3 // 5)] + "…" + n[len(n) - (keep - 1) * 2 // 5:]
               for n in names]
        if len(set(out)) == len(set(names)):
            return out
    return list(names)
