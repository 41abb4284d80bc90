"""What the Results step shows about one set of a run (validation or test), in plain Python.

Built from a run folder's record (engine/rundir.py): the per-image logits when the run saved them
(``val_logits.npy``, ``test_logits.npy``), else the top-5 probabilities of the predictions files.
Every figure comes from ``engine/metrics.py``, the same functions the report and ``transfer-gui
evaluate`` use, so the window, the report and the command line agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from transfer_gui.engine import metrics

SET_NAMES = {"val": "Validation", "test": "Test"}


def sets_of(record: Any) -> list[str]:
    """The sets of a run that have predictions to show, validation first."""
    if record is None:
        return []
    out = ["val"] if record.predictions else []
    if getattr(record, "test_predictions", None):
        out.append("test")
    return out


def _items(record: Any, which: str) -> list[dict]:
    return list(record.predictions if which == "val" else getattr(record, "test_predictions", []) or [])


def probs_from_top(items: list[dict], n_classes: int) -> np.ndarray:
    """Probabilities rebuilt from each image's top-k list (older run folders have no logits):
    exact up to 5 classes; beyond, the remaining mass is spread evenly over the other classes."""
    probs = np.zeros((len(items), n_classes), dtype=np.float64)
    for r, item in enumerate(items):
        top = item.get("top") or [[item["pred"], item.get("confidence", 1.0)]]
        for j, p in top:
            probs[r, int(j)] = float(p)
        rest = n_classes - len(top)
        if rest > 0:
            left = max(0.0, 1.0 - probs[r].sum())
            others = probs[r] == 0
            probs[r, others] = left / max(1, int(others.sum()))
    return probs


@dataclass
class EvaluationView:
    """One set's predictions with the run's calibration, and the figures drawn from them."""

    which: str
    classes: list[str]
    paths: list[str]
    labels: np.ndarray
    probs: np.ndarray  # temperature applied
    raw_probs: np.ndarray  # without the temperature (the reliability diagram's "before")
    temperature: float = 1.0
    threshold: float = 0.0
    exact: bool = True  # probabilities from logits (False: rebuilt from the top-5 lists)
    report: dict = field(default_factory=dict)

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

    def indices_of(self, true: int | None, pred: int | None) -> list[int]:
        """Rows whose true and predicted class are these (None: any)."""
        predicted = self.probs.argmax(1) if self.n else np.zeros(0, dtype=int)
        return [i for i in range(self.n) if (true is None or self.labels[i] == true)
                and (pred is None or predicted[i] == pred)]


def build(record: Any, which: str = "val") -> EvaluationView | None:
    """The view of ``which`` ("val" or "test") of a run record, or None when it has no predictions."""
    if record is None or which not in sets_of(record):
        return None
    items = _items(record, which)
    classes = list(record.classes)
    calibration = dict(getattr(record, "calibration", None) or {})
    temperature = float(calibration.get("temperature", 1.0) or 1.0)
    logits = record.logits(which) if hasattr(record, "logits") else None
    exact = logits is not None and len(logits) == len(items)
    if exact:
        raw = metrics.softmax(np.asarray(logits, dtype=np.float64))
        probs = metrics.softmax(np.asarray(logits, dtype=np.float64), temperature)
    else:
        raw = probs = probs_from_top(items, len(classes))
    labels = np.asarray([int(it["true"]) for it in items], dtype=np.int64)
    view = EvaluationView(which, classes, [str(it["path"]) for it in items], labels, probs, raw,
                          temperature if exact else 1.0, float(calibration.get("threshold", 0.0) or 0.0), exact)
    view.report = metrics.report(probs, labels, classes)
    return view


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
