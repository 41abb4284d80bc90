"""How good a classifier is, from its probabilities and the true labels: numpy only, no torch, so
the window and the command line can use it before torch loads.

Inputs everywhere: ``probs`` is an N x C array of class probabilities (rows sum to 1), ``labels``
an N array of true class indices in ``[0, C)``, ``logits`` an N x C array of raw scores.

A ratio with nothing under it is **0.0, never NaN** (so every figure is valid JSON and a table
needs no special case): the precision of a class that was never predicted, the recall of a class
with no image, the accuracy of an empty set or of a threshold that answers nothing, the average
precision of a class with no positive. Macro averages are taken over the classes that occur in
the labels or the predictions (a model class that is absent from both does not pull them down);
weighted averages are weighted by support.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

ECE_BINS = 15


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _check(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be N x C, got shape {probs.shape}")
    if probs.shape[0] != labels.shape[0]:
        raise ValueError(f"{probs.shape[0]} rows of probabilities but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must lie in [0, {probs.shape[1]})")
    return probs, labels


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (float64, numerically stable)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def confusion_matrix(labels, preds, n_classes: int) -> np.ndarray:
    """C x C counts, rows the true class, columns the predicted one."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    preds = np.asarray(preds, dtype=np.int64).reshape(-1)
    flat = np.bincount(labels * n_classes + preds, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def per_class(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, f1, support) per class from a confusion matrix; x/0 is 0.0."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.where(support > 0, support, 1), 0.0)
        both = precision + recall
        f1 = np.where(both > 0, 2 * precision * recall / np.where(both > 0, both, 1), 0.0)
    return precision, recall, f1, support.astype(np.int64)


def top_k_accuracy(probs, labels, k: int) -> float:
    """Share of rows whose true class is among the ``k`` most probable ones."""
    probs, labels = _check(probs, labels)
    if labels.size == 0:
        return 0.0
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def _averages(precision, recall, f1, support, present) -> tuple[dict, dict]:
    if present.any():
        macro = {"precision": float(precision[present].mean()), "recall": float(recall[present].mean()),
                 "f1": float(f1[present].mean())}
    else:
        macro = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    total = support.sum()
    weighted = {name: _ratio((values * support).sum(), total)
                for name, values in (("precision", precision), ("recall", recall), ("f1", f1))}
    return macro, weighted


def report(probs, labels, classes: Sequence[str]) -> dict:
    """Every figure of an evaluation, as plain JSON-ready Python values.

    Keys: ``classes, n, accuracy, top5_accuracy`` (None when there are 5 classes or fewer),
    ``ece``, ``per_class {class: {precision, recall, f1, support}}``, ``macro`` and ``weighted``
    ``{precision, recall, f1}``, ``confusion`` (rows the true class, a list of lists of ints).
    """
    probs, labels = _check(probs, labels)
    classes = [str(c) for c in classes]
    if probs.shape[1] != len(classes):
        raise ValueError(f"{probs.shape[1]} probability columns but {len(classes)} classes")
    preds = probs.argmax(axis=1) if labels.size else np.zeros(0, dtype=np.int64)
    confusion = confusion_matrix(labels, preds, len(classes))
    precision, recall, f1, support = per_class(confusion)
    present = (support > 0) | (confusion.sum(axis=0) > 0)
    macro, weighted = _averages(precision, recall, f1, support, present)
    return {
        "classes": classes,
        "n": int(labels.size),
        "accuracy": _ratio(np.trace(confusion), labels.size),
        "top5_accuracy": top_k_accuracy(probs, labels, 5) if len(classes) > 5 else None,
        "ece": ece(probs, labels),
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(support[i])} for i, name in enumerate(classes)},
        "macro": macro,
        "weighted": weighted,
        "confusion": confusion.astype(int).tolist(),
    }


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins (lo, hi] over [0, 1]; a confidence of exactly 0 goes to the first bin."""
    return np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)


def reliability(probs, labels, bins: int = ECE_BINS) -> list[dict]:
    """The reliability diagram: for each of ``bins`` equal-width bins of top-1 confidence,
    ``{lo, hi, count, confidence, accuracy}`` (mean confidence and accuracy of the rows in it;
    both 0.0 for an empty bin, whose count is 0)."""
    probs, labels = _check(probs, labels)
    confidence = probs.max(axis=1) if labels.size else np.zeros(0)
    correct = (probs.argmax(axis=1) == labels) if labels.size else np.zeros(0, dtype=bool)
    index = _bin_index(confidence, bins)
    count = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    acc_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=bins)
    return [{"lo": b / bins, "hi": (b + 1) / bins, "count": int(count[b]),
             "confidence": _ratio(conf_sum[b], count[b]), "accuracy": _ratio(acc_sum[b], count[b])}
            for b in range(bins)]


def ece(probs, labels, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the count-weighted mean over confidence bins of
    |accuracy - mean confidence| (top-1). 0.0 for no rows."""
    table = reliability(probs, labels, bins)
    n = sum(row["count"] for row in table)
    return _ratio(sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in table), n)


def pr_curve(probs, labels, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Precision-recall of class ``k`` against the rest, scored by ``probs[:, k]``.

    Returns ``(precision, recall, thresholds, average_precision)``: one point per distinct score,
    thresholds in decreasing order (so recall rises), a row counting as positive when its score
    is >= the threshold. Average precision is sum over points of (R_i - R_{i-1}) * P_i with
    R_0 = 0; with no positive row the recall is all 0.0 and so is the average precision.
    """
    probs, labels = _check(probs, labels)
    scores = probs[:, k]
    positive = labels == k
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1] if scores.size else np.zeros(0, dtype=np.int64)
    tp = np.cumsum(positive)[last].astype(np.float64)
    taken = (last + 1).astype(np.float64)
    total = float(positive.sum())
    precision = tp / taken if taken.size else np.zeros(0)
    recall = tp / total if total else np.zeros_like(tp)
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision)) if total else 0.0
    return precision, recall, scores[last], ap


def coverage_at(probs, labels, threshold: float) -> tuple[float, float, int]:
    """Answer only where the top probability is >= ``threshold``: ``(coverage, accuracy, answered)``
    = the share of rows answered, the accuracy among them (0.0 when none), and their count."""
    probs, labels = _check(probs, labels)
    if labels.size == 0:
        return 0.0, 0.0, 0
    answered = probs.max(axis=1) >= threshold
    correct = (probs.argmax(axis=1) == labels) & answered
    count = int(answered.sum())
    return _ratio(count, labels.size), _ratio(correct.sum(), count), count


def coverage_curve(probs, labels) -> list[tuple[float, float, float]]:
    """``(threshold, coverage, accuracy)`` for threshold 0.0 and every distinct top probability,
    thresholds increasing (coverage falls); the same figures as :func:`coverage_at`."""
    probs, labels = _check(probs, labels)
    if labels.size == 0:
        return [(0.0, 0.0, 0.0)]
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    order = np.argsort(confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    n = labels.size
    first = np.r_[0, np.flatnonzero(np.diff(confidence)) + 1]  # first row of each distinct value
    right_correct = np.cumsum(correct[::-1])[::-1]  # correct rows at or after each position
    out = [(0.0, 1.0, float(correct.mean()))] if confidence[0] > 0.0 else []
    out += [(float(confidence[i]), (n - i) / n, float(right_correct[i]) / (n - i)) for i in first]
    return out


def most_confused(confusion, classes: Sequence[str], min_count: int = 1) -> list[tuple[str, str, int]]:
    """The off-diagonal cells with at least ``min_count`` images as ``(true, pred, count)``,
    biggest first (ties: in the order of the true, then the predicted class)."""
    confusion = np.asarray(confusion, dtype=np.int64)
    cells = [(-int(confusion[t, p]), t, p) for t in range(confusion.shape[0]) for p in range(confusion.shape[1])
             if t != p and confusion[t, p] >= max(min_count, 1)]
    return [(str(classes[t]), str(classes[p]), -neg) for neg, t, p in sorted(cells)]


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels under ``softmax(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size == 0:
        return 0.0
    top = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_norm - z[np.arange(labels.size), labels]))


def fit_temperature(logits, labels, lo: float = -3.0, hi: float = 3.0, tol: float = 1e-6) -> float:
    """The one temperature T > 0 that minimises :func:`nll`, found by golden-section search over
    log T in [lo, hi] (the NLL is convex in 1/T, so it has one minimum there). 1.0 for no rows."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size == 0:
        return 1.0
    _check(logits, labels)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = float(lo), float(hi)
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(logits, labels, math.exp(c)), nll(logits, labels, math.exp(d))
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(logits, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(logits, labels, math.exp(d))
    return float(math.exp((a + b) / 2.0))


def probs_from_top(rows: list[dict], n_classes: int) -> np.ndarray:
    """Probabilities rebuilt from the stored top lists ``[[class index, probability], ...]``: the
    listed ones as stored, the rest of the mass shared evenly by the other classes (exact when the
    list holds every class, as it does for up to 5 classes)."""
    probs = np.zeros((len(rows), n_classes), dtype=np.float64)
    for r, row in enumerate(rows):
        top = [(int(i), float(p)) for i, p in row.get("top") or []] or [(int(row["pred"]), float(row["confidence"]))]
        for i, p in top:
            probs[r, i] = p
        others = n_classes - len({i for i, _ in top})
        if others:
            rest = max(0.0, 1.0 - sum(p for _, p in top)) / others
            probs[r, [j for j in range(n_classes) if j not in {i for i, _ in top}]] = rest
    return probs
