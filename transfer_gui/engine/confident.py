"""Label issues by confident learning (Northcutt, Jiang and Chuang, "Confident Learning:
Estimating Uncertainty in Dataset Labels", JAIR 2021), written here from the paper (the
well-known implementation, cleanlab, is AGPL-3.0 and is neither used nor copied).

1. Out-of-fold probabilities (:func:`out_of_fold`): the images are dealt into k folds,
   stratified by their given label and shuffled by a seeded generator; a linear head
   (engine/linear.py) is fitted on k-1 folds and predicts the fold left out. No image is ever
   predicted by a head that saw it: an in-sample head memorises a wrong label and would
   vouch for it. Features wider than :data:`PCA_DIMS` are first projected on their top
   principal components (of all the rows; it uses no label, so no held-out label reaches its
   own prediction): five fits on 10,000 x 1,280 features cost 5x less, with the same
   predictions to within a point of accuracy on the benchmark.
2. Per-class thresholds (:func:`thresholds`): t_j = the mean probability of class j over the
   images labelled j (the class's average self-confidence).
3. The confident joint (:func:`confident_joint`): an image counts for class k when its
   probability of k reaches t_k; among such classes it goes to the most probable one. Image i
   labelled y lands in cell C[y, k].
4. Suspects (:func:`find_issues`): the images in off-diagonal cells whose confident class
   also beats the given one (p_k > p_y).

Ranking: by the normalised margin p_given - max_other (the most negative first); the score
is ``max_other - p_given``, in (0, 1], higher = more suspicious. Self-confidence alone
(p_given) ranks an ambiguous image (low on every class) like a confidently different one;
the margin asks how far another class beats the given one, which is what a mislabelling
looks like, and the paper measured it the better of the two rankings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from transfer_gui.engine.linear import fit_logistic

PCA_DIMS = 256  # wider features are projected on their top principal components before the fits
# L2 on the out-of-fold heads, much stronger than the probe's: a head fitted to convergence with 1e-3
# is over-confident out of fold (wrong answers near probability 1, every top suspect tied at 1.00).
# Measured on benchmarks/bench_audit.py's planted flips (Fashion-MNIST, 5 % / 20 % noise), precision
# at N of confident learning + margin: 0.44 / 0.59 at 1e-3, 0.64 / 0.77 at 1e-1, 0.64 / 0.80 at 1.
OOF_WEIGHT_DECAY = 1.0


@dataclass(frozen=True)
class Issue:
    index: int  # row of the probabilities
    given: int
    suggested: int  # the most probable class
    score: float  # max_other - p_given, in (0, 1]
    p_given: float
    p_suggested: float


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number (0..folds-1) of every row: each label's rows shuffled with ``seed`` and
    dealt in turn, so every fold holds about 1/folds of every class."""
    labels = np.asarray(labels)
    out = np.zeros(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    start = 0
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rng.shuffle(rows)
        out[rows] = (np.arange(len(rows)) + start) % folds  # a class smaller than k starts where the last left off
        start += len(rows)
    return out


def out_of_fold(x: torch.Tensor, labels: np.ndarray, num_classes: int, folds: int = 5, seed: int = 0,
                check: Callable[[], None] | None = None,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(N, num_classes) probabilities, each row predicted by a head fitted without that row."""
    labels = np.asarray(labels)
    folds = max(2, min(folds, len(labels)))
    fold = stratified_folds(labels, folds, seed)
    probs = np.zeros((len(labels), num_classes), dtype=np.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    x = principal(x.float(), PCA_DIMS)
    for f in range(folds):
        held = torch.as_tensor(fold == f)
        if bool(held.any()):
            head = fit_logistic(x[~held], y[~held], num_classes, weight_decay=OOF_WEIGHT_DECAY, check=check)
            probs[held.numpy()] = head.probs(x[held]).double().numpy()
        if progress:
            progress(f + 1, folds)
    return probs


def principal(x: torch.Tensor, dims: int) -> torch.Tensor:
    """``x`` centred and projected on its ``dims`` top principal components (as it is when it
    is no wider)."""
    if x.shape[1] <= dims or len(x) <= dims:
        return x
    xc = x - x.mean(0)
    _vals, vecs = torch.linalg.eigh((xc.T @ xc).double())
    return xc @ vecs[:, -dims:].float()


def thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """t_j: the mean probability of class j over the rows labelled j (1.0, unreachable in
    practice, for a class with no rows)."""
    k = probs.shape[1]
    t = np.ones(k)
    for j in range(k):
        rows = labels == j
        if rows.any():
            t[j] = probs[rows, j].mean()
    return t


def confident_class(probs: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Each row's confident class: the most probable among the classes whose probability
    reaches their threshold; -1 when none does."""
    above = probs >= t[None, :] - 1e-12
    masked = np.where(above, probs, -1.0)
    best = masked.argmax(1)
    return np.where(above.any(1), best, -1)


def confident_joint(probs: np.ndarray, labels: np.ndarray, t: np.ndarray | None = None) -> np.ndarray:
    """C[given, confident class]: counts of the rows with a confident class."""
    t = thresholds(probs, labels) if t is None else t
    conf = confident_class(probs, t)
    k = probs.shape[1]
    c = np.zeros((k, k), dtype=np.int64)
    ok = conf >= 0
    np.add.at(c, (labels[ok], conf[ok]), 1)
    return c


def find_issues(probs: np.ndarray, labels: np.ndarray) -> tuple[list[Issue], np.ndarray]:
    """(suspects, most suspicious first; the thresholds t)."""
    labels = np.asarray(labels)
    t = thresholds(probs, labels)
    conf = confident_class(probs, t)
    rows = np.arange(len(labels))
    p_given = probs[rows, labels]
    others = probs.copy()
    others[rows, labels] = -1.0
    p_other = others.max(1)
    suspect = (conf >= 0) & (conf != labels) & (probs[rows, np.maximum(conf, 0)] > p_given)
    issues = [Issue(int(i), int(labels[i]), int(probs[i].argmax()), float(p_other[i] - p_given[i]),
                    float(p_given[i]), float(probs[i].max())) for i in np.flatnonzero(suspect)]
    issues.sort(key=lambda s: (-s.score, s.index))
    return issues, t


__all__ = ["Issue", "confident_class", "confident_joint", "find_issues", "out_of_fold", "principal", "stratified_folds",
           "thresholds"]
