"""Label issues by confident learning (Northcutt, Jiang and Chuang, "Confident Learning:
Estimating Uncertainty in Dataset Labels", JAIR 2021), written here from the paper (the
well-known implementation, cleanlab, is AGPL-3.0 and is neither used nor copied).

1. Out-of-fold probabilities (:func:`out_of_fold`): the images are dealt into k folds,
   stratified by their given label and shuffled by a seeded generator; a head fitted on k-1
   folds predicts the fold left out. No image is ever predicted by a head that saw it: an
   in-sample head memorises a wrong label and would vouch for it. The head
   (:func:`fit_head`) is the one the app trains on cached features: a linear layer, AdamW at
   the app's default rate and weight decay, 10 epochs of batches of 32, cosine schedule
   (linear.fit_adamw). Stopped there, it is not fitted to convergence: measured on
   benchmarks/bench_audit.py's planted flips (Fashion-MNIST, 5 % / 20 % noise), precision at N
   0.84 / 0.89 with this head, 0.64 / 0.80 with L-BFGS logistic regression at weight decay 1
   and 0.44 / 0.59 at 1e-3 (the converged head is over-confident out of fold).
2. Per-class thresholds (:func:`thresholds`): t_j = the mean probability of class j over the
   images labelled j (the class's average self-confidence).
3. The confident joint (:func:`confident_joint`): an image counts for class k when its
   probability of k reaches t_k; among such classes it goes to the most probable one. Image i
   labelled y lands in cell C[y, k].
4. How many (:func:`issue_counts`): row y of the joint calibrated to the number of images
   labelled y; its share off the diagonal is the number of mislabelled images of class y.
5. Which (:func:`find_issues`, the paper's "prune by class"): of each given class y, that many
   images with the lowest self-confidence p_y, keeping those that another class beats (p_k >
   p_y for some k, so there is a class to suggest).

Ranking: by self-confidence, lowest first; the score is ``1 - p_given``, in (0, 1], higher =
more suspicious. With the same head, the earlier rule (every image whose confident class is
another, ranked by the normalised margin) measured 0.80 / 0.75 at 5 % / 20 % noise.

Alternatives measured (2026-12-02, the benchmark's cached features, precision at N averaged
over 6 flip seeds each, for 5 % / 20 % uniform / 30 % class-dependent flips): this rule 0.830 /
0.883 / 0.496; 10 folds 0.837 / 0.885 / 0.507 (1.7x the time; the gain is below the seeds'
spread of 0.01-0.02); out-of-fold probabilities averaged over 3 fold seeds 0.843 / 0.885 / 0.492
(3x the time); ranked by the normalised margin 0.713 / 0.833 / 0.554; the paper's prune by noise
rate 0.683 / 0.816 / 0.564. The margin wins only on class-dependent noise and loses more on
uniform noise, so the rule stays. The baseline "lowest in-sample probability of the given label"
with the app's head measured 0.840 / 0.880 / 0.382: stopped after 10 epochs that head has not
memorised the wrong labels, and the images both rankings flag wrongly are mostly
Fashion-MNIST's own Shirt / Pullover / T-shirt ambiguities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from transfer_gui.engine.linear import LinearHead, fit_adamw


@dataclass(frozen=True)
class Issue:
    index: int  # row of the probabilities
    given: int
    suggested: int  # the most probable class
    score: float  # 1 - p_given, in (0, 1]
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
    x = x.float()
    for f in range(folds):
        held = torch.as_tensor(fold == f)
        if bool(held.any()):
            head = fit_head(x[~held], y[~held], num_classes, seed=seed + f, check=check)
            probs[held.numpy()] = head.probs(x[held]).double().numpy()
        if progress:
            progress(f + 1, folds)
    return probs


def fit_head(x: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int = 0,
             check: Callable[[], None] | None = None) -> LinearHead:
    """A fold's head: the app's own head-only recipe on the raw features (linear.fit_adamw)."""
    return fit_adamw(x, y, num_classes, seed=seed, check=check)


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


def issue_counts(joint: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """How many images of each given class are mislabelled, by the confident joint: its row j
    calibrated to the class's ``counts[j]`` images (the confident rows stand for all of them),
    the share off the diagonal, rounded."""
    rows = joint.sum(1, keepdims=True).astype(np.float64)
    cal = np.divide(joint, rows, out=np.zeros(joint.shape), where=rows > 0) * np.asarray(counts)[:, None]
    return np.rint(cal.sum(1) - np.diag(cal)).astype(np.int64)


def find_issues(probs: np.ndarray, labels: np.ndarray) -> tuple[list[Issue], np.ndarray]:
    """(suspects, most suspicious first; the thresholds t). Of each given class j, the
    ``issue_counts`` images with the lowest self-confidence p_j (the paper's "prune by class"),
    those that another class beats; ranked by self-confidence, lowest first."""
    labels = np.asarray(labels)
    k = probs.shape[1]
    t = thresholds(probs, labels)
    quota = issue_counts(confident_joint(probs, labels, t), np.bincount(labels, minlength=k))
    rows = np.arange(len(labels))
    p_given = probs[rows, labels]
    top = probs.argmax(1)
    suspect = np.zeros(len(labels), bool)
    for j in range(k):
        mine = np.flatnonzero(labels == j)
        suspect[mine[np.argsort(p_given[mine], kind="stable")[:quota[j]]]] = True
    suspect &= top != labels
    issues = [Issue(int(i), int(labels[i]), int(top[i]), float(1.0 - p_given[i]), float(p_given[i]),
                    float(probs[i, top[i]])) for i in np.flatnonzero(suspect)]
    issues.sort(key=lambda s: (-s.score, s.index))
    return issues, t


__all__ = ["Issue", "confident_class", "confident_joint", "find_issues", "fit_head", "issue_counts", "out_of_fold", "stratified_folds",
           "thresholds"]
