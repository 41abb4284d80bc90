"""What is wrong with my data? Label issues, duplicates and leaks, outliers and imbalance,
from the configured model's frozen backbone features.

:func:`audit` computes (or reuses) the features of every training, validation and test image
through the engine's own feature cache and hands them to :func:`audit_features`, the pure
function on arrays that does the work (and that tests and the benchmark time):

* **Label issues** (engine/confident.py): out-of-fold probabilities of the app's own linear
  head (AdamW, its default recipe) from k stratified, seeded folds of the training and
  validation images, then confident learning; ranked by self-confidence.
* **Duplicates and leaks** (engine/duplicates.py): the same bytes, or near duplicates: the
  features' nearest neighbours and the grey thumbnails' nearest neighbours are candidates, and
  a candidate is kept when its pixels, aligned, correlate from ``duplicates.VERIFY_MIN`` up
  (``VERIFY_SAME`` for two images of one size): copies resized, re-encoded, trimmed, in grey
  or with another tone are found, look-alikes are not (benchmarks/bench_dups.py). Without
  thumbnails (arrays only) the features and hashes decide as before. A pair in two different
  sets among training / validation / test is a ``leak``; inside one set it is a ``duplicate``
  (the same bytes, or the same pixels: score >= SAME_PIXELS at one size) or ``near``. A pair
  labelled with two classes says so in its reason.
* **Outliers**: images far from every class. Two distances per image, 1 - the cosine
  similarity to the nearest class centroid and 1 - the mean similarity to its
  :data:`OUTLIER_K` nearest images, each standardised robustly (median and MAD over all the
  images); their mean is the outlier's z. ``z >= Z_OUTLIER`` (3.5, the usual cut for robust
  z-scores) flags it; its score is ``z / (z + Z_OUTLIER)``, in [0.5, 1).
* **Balance**: training images per class; a warning and advice when the largest class has
  more than :data:`IMBALANCE_RATIO` times the images of the smallest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from transfer_gui.engine import confident
from transfer_gui.engine import duplicates as dup
from transfer_gui.engine import frozen
from transfer_gui.engine import rules
from transfer_gui.engine.control import StopRequested
from transfer_gui.engine.events import PhaseChanged, Progress, Warning

Emit = Callable[[object], None]
SET_WORDS = {"train": "training", "val": "validation", "test": "test"}
OUTLIER_K = 5
Z_OUTLIER = 3.5
IMBALANCE_RATIO = rules.IMBALANCE_RATIO


@dataclass(frozen=True)
class LabelIssue:
    path: str
    given: str
    suggested: str
    score: float  # in [0, 1], higher = more suspicious
    reason: str


@dataclass(frozen=True)
class DuplicatePair:
    a: str
    b: str
    similarity: float  # cosine similarity of the features (1.0 for the same bytes)
    kind: str  # "duplicate" | "near" | "leak"
    reason: str


@dataclass(frozen=True)
class Outlier:
    path: str
    score: float  # in [0.5, 1): z / (z + Z_OUTLIER)
    reason: str


@dataclass
class AuditResult:
    label_issues: list[LabelIssue]
    duplicates: list[DuplicatePair]
    outliers: list[Outlier]
    class_counts: dict[str, int]
    imbalance: dict | None
    seconds: float
    classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    search: str = "blocked"  # "blocked" | "faiss": how the nearest neighbours were found
    _x: np.ndarray | None = field(default=None, repr=False, compare=False)  # L2-normalised features
    _labels: np.ndarray | None = field(default=None, repr=False, compare=False)
    _paths: list[str] = field(default_factory=list, repr=False, compare=False)

    def neighbours(self, path: str, class_name: str, k: int = 3) -> list[str]:
        """The ``k`` images labelled ``class_name`` nearest to ``path`` in feature space (the
        image itself left out), nearest first."""
        if self._x is None or class_name not in self.classes:
            return []
        try:
            i = self._paths.index(path)
        except ValueError:
            raise KeyError(f"{path} is not among the audited images") from None
        rows = np.flatnonzero((self._labels == self.classes.index(class_name)) & (np.arange(len(self._paths)) != i))
        order = np.argsort(-(self._x[rows] @ self._x[i]), kind="stable")[:k]
        return [self._paths[r] for r in rows[order]]

    def to_dict(self) -> dict:
        """The audit.json document."""
        return {
            "label_issues": [vars(x).copy() for x in self.label_issues],
            "duplicates": [vars(x).copy() for x in self.duplicates],
            "outliers": [vars(x).copy() for x in self.outliers],
            "class_counts": dict(self.class_counts),
            "imbalance": self.imbalance,
            "classes": list(self.classes),
            "seconds": round(self.seconds, 3),
            "search": self.search,
            "notes": list(self.notes),
        }


def _checker(cancel: Callable[[], bool] | None) -> Callable[[], None]:
    def check() -> None:
        if cancel is not None and cancel():
            raise StopRequested()
    return check


def audit_features(features, labels, sets: Sequence[str], paths: Sequence[str], classes: Sequence[str] | None = None,
                   *, folds: int = 5, seed: int = 0, digests: Sequence[str | None] | None = None,
                   phashes: Sequence[int | None] | None = None, thumbs: Sequence | None = None,
                   on_event: Emit | None = None, cancel: Callable[[], bool] | None = None) -> AuditResult:
    """The audit of images given as arrays: ``features`` (N, D), ``labels`` (N,) class indices
    (-1: left out, e.g. failed to decode), ``sets`` each "train" | "val" | "test", ``paths``
    as they are reported; optional file ``digests``, 64-bit ``phashes`` and
    ``duplicates.thumbnail`` results ``thumbs`` (None where unknown) for the duplicate search.
    Stops with a Cancelled (StopRequested) when ``cancel()`` is true."""
    t0 = time.perf_counter()
    emit, check = on_event or (lambda e: None), _checker(cancel)
    feats = np.asarray(features, dtype=np.float32).reshape(len(paths), -1)
    labels = np.asarray(labels, dtype=np.int64)
    sets_a = np.asarray(list(sets), dtype=object)
    paths = [str(p) for p in paths]
    classes = list(classes) if classes is not None else [str(c) for c in range(int(labels.max(initial=-1)) + 1)]
    notes: list[str] = []
    issues = _label_issues(feats, labels, sets_a, paths, classes, folds, seed, emit, check, notes)
    x = dup.normalise(feats)
    sims, idx, search = _neighbours(x, emit, check)
    if thumbs is not None and any(t is not None for t in thumbs):
        pairs = _verified_duplicates(x, sims, idx, labels, sets_a, paths, classes, digests, list(thumbs), emit, check)
    else:
        pairs = _duplicates(x, sims, idx, labels, sets_a, paths, classes, digests, phashes, emit)
    outliers = _outliers(x, sims, labels, paths, classes)
    counts = {c: int(((labels == i) & (sets_a == "train")).sum()) for i, c in enumerate(classes)}
    imbalance = imbalance_of(counts)
    if imbalance:
        emit(Warning(imbalance["advice"]))
    emit(PhaseChanged("audit", f"Audit done: {len(issues)} label issues, {len(pairs)} duplicate pairs, "
                               f"{len(outliers)} outliers"))
    return AuditResult(issues, pairs, outliers, counts, imbalance, time.perf_counter() - t0, classes, notes, search,
                       x, labels, paths)


def _label_issues(feats: np.ndarray, labels: np.ndarray, sets: np.ndarray, paths: list[str], classes: list[str],
                  folds: int, seed: int, emit: Emit, check, notes: list[str]) -> list[LabelIssue]:
    import torch

    rows = np.flatnonzero((labels >= 0) & np.isin(sets, ["train", "val"]))
    if len(rows) < 2 or len(np.unique(labels[rows])) < 2:
        notes.append("label issues need at least two labelled classes; none were looked for")
        return []
    emit(PhaseChanged("audit", f"Out-of-fold predictions: {folds} linear heads on {len(rows):,} images"))
    probs = confident.out_of_fold(torch.from_numpy(feats[rows]), labels[rows], len(classes), folds, seed, check,
                                  lambda d, t: emit(Progress("audit_folds", d, t, f"Fold {d} of {t}")))
    found, t = confident.find_issues(probs, labels[rows])
    notes.append(f"label issues: out-of-fold probabilities from {min(folds, len(rows))} stratified folds, "
                 f"of the app's own head, confident learning, ranked by self-confidence")
    out = []
    for s in found:
        given, sug = classes[s.given], classes[s.suggested]
        reason = (f"predicted {sug} with {s.p_suggested:.2f} out of fold ({given}: {s.p_given:.2f}); {sug}'s own "
                  f"images average {t[s.suggested]:.2f} for {sug}")
        out.append(LabelIssue(paths[rows[s.index]], given, sug, round(s.score, 4), reason))
    return out


def _neighbours(x: np.ndarray, emit: Emit, check) -> tuple[np.ndarray, np.ndarray, str]:
    n = len(x)
    emit(PhaseChanged("audit", f"Nearest neighbours of {n:,} images"))
    if n >= dup.FAISS_FROM:
        if dup.faiss_available():
            check()
            sims, idx = dup.knn_faiss(x, dup.NEIGHBOURS)
            check()
            return sims, idx, "faiss"
        emit(Warning(f"{n:,} images: the exact search in blocks takes a while (about n^2); "
                     f"`pip install transfer-gui[audit]` (faiss-cpu) makes it faster"))
    sims, idx = dup.knn_blocked(x, dup.NEIGHBOURS, check,
                                lambda d, t: emit(Progress("audit_search", d, t, "Comparing images")))
    return sims, idx, "blocked"


def _pair_kind(i: int, j: int, sets: np.ndarray, exact: bool, same_hash: bool, sim: float) -> str:
    if sets[i] != sets[j]:
        return "leak"
    return "duplicate" if exact or (same_hash and sim >= dup.COS_SAME) else "near"


def _duplicates(x: np.ndarray, sims: np.ndarray, idx: np.ndarray, labels: np.ndarray, sets: np.ndarray,
                paths: list[str], classes: list[str], digests, phashes, emit: Emit) -> list[DuplicatePair]:
    emit(PhaseChanged("audit", "Looking for duplicates and leaks"))
    n = len(paths)
    have = np.array([h is not None for h in phashes], bool) if phashes is not None else np.zeros(n, bool)
    hashes = np.array([h or 0 for h in phashes], dtype=np.uint64) if phashes is not None else np.zeros(n, np.uint64)
    exact = dup.digest_pairs(list(digests)) if digests is not None else np.zeros((0, 2), np.int64)
    cand = dup.candidate_pairs(sims, idx, dup.COS_NEAR)
    pairs = np.unique(np.concatenate([np.sort(exact, 1), cand]).astype(np.int64).reshape(-1, 2), axis=0)
    a, b = pairs[:, 0], pairs[:, 1]
    is_exact = np.zeros(len(pairs), bool)
    if len(exact):
        exact_keys = set(map(tuple, np.sort(exact, 1).tolist()))
        is_exact = np.array([(int(p), int(q)) in exact_keys for p, q in pairs], bool)
    sim = np.where(is_exact, 1.0, np.einsum("ij,ij->i", x[a], x[b]) if len(pairs) else np.zeros(0))
    hashed = have[a] & have[b]
    bits = np.where(hashed, dup.hamming(hashes[a], hashes[b]), -1)
    close = (((bits >= 0) & (bits <= dup.HAMMING_CLOSE)) | ((bits <= dup.HAMMING_NEAR) & (sim >= dup.COS_FAR))
             | (sim >= dup.COS_HIGH))
    keep = is_exact | np.where(hashed, close, sim >= dup.COS_ALONE)
    out = []
    for p, q, s, e, h in zip(a[keep], b[keep], sim[keep], is_exact[keep], bits[keep]):
        kind = _pair_kind(p, q, sets, bool(e), h == 0, float(s))
        out.append(DuplicatePair(paths[p], paths[q], round(min(float(s), 1.0), 4), kind,
                                 _pair_reason(p, q, sets, labels, classes, bool(e), float(s), int(h))))
    out.sort(key=lambda d: ({"leak": 0, "duplicate": 1, "near": 2}[d.kind], -d.similarity, d.a, d.b))
    return out


def _verified_duplicates(x: np.ndarray, sims: np.ndarray, idx: np.ndarray, labels: np.ndarray, sets: np.ndarray,
                         paths: list[str], classes: list[str], digests, thumbs: list, emit: Emit,
                         check) -> list[DuplicatePair]:
    """Exact copies by digest; near copies among the features' and the thumbnails' neighbours,
    kept when ``duplicates.verify`` finds their pixels alike, or, for a trimmed copy, the files'
    own pixels (``duplicates.fine_scores``, ``duplicates.verified``)."""
    emit(PhaseChanged("audit", "Looking for duplicates and leaks"))
    n = len(paths)
    have = np.array([t is not None for t in thumbs], bool)
    grey = np.stack([t[0] if t is not None else np.zeros((dup.THUMB, dup.THUMB), np.uint8) for t in thumbs])
    sizes = np.array([t[1] if t is not None else (0, 0) for t in thumbs], np.int64).reshape(n, 2)
    exact = dup.digest_pairs(list(digests)) if digests is not None else np.zeros((0, 2), np.int64)
    rows = np.flatnonzero(have)
    near = rows[dup.thumb_candidates(grey[rows], check)].reshape(-1, 2) if len(rows) > 1 else np.zeros((0, 2), np.int64)
    cand = np.concatenate([dup.candidate_pairs(sims, idx, dup.COS_NEAR), near])
    cand = np.unique(np.sort(cand[have[cand[:, 0]] & have[cand[:, 1]]], 1), axis=0) if len(cand) else cand
    score = dup.verify(grey, sizes, cand, check=check)
    fine = dup.fine_scores(score, sizes, cand, lambda i: dup.grey_file(paths[i]))
    ok = dup.verified(score, sizes, cand, fine)
    score = np.where(ok & np.isfinite(fine), np.fmax(score, fine), score)  # a trim found at its own pixels
    exact_keys = set(map(tuple, np.sort(exact, 1).tolist()))
    out = [_exact_pair(int(p), int(q), sets, labels, paths, classes) for p, q in sorted(exact_keys)]
    for (p, q), s in zip(cand[ok].tolist(), score[ok].tolist()):
        if (p, q) in exact_keys:
            continue
        same = s >= dup.SAME_PIXELS and bool((sizes[p] == sizes[q]).all())
        kind = "leak" if sets[p] != sets[q] else ("duplicate" if same else "near")
        what = f"near-identical: pixel correlation {s:.3f} after alignment" + (
            f" (feature similarity {float(x[p] @ x[q]):.3f})" if len(x) else "")
        out.append(DuplicatePair(paths[p], paths[q], round(min(s, 1.0), 4), kind,
                                 what + _pair_tail(p, q, sets, labels, classes)))
    out.sort(key=lambda d: ({"leak": 0, "duplicate": 1, "near": 2}[d.kind], -d.similarity, d.a, d.b))
    return out


def _exact_pair(p: int, q: int, sets: np.ndarray, labels: np.ndarray, paths: list[str],
                classes: list[str]) -> DuplicatePair:
    kind = "leak" if sets[p] != sets[q] else "duplicate"
    return DuplicatePair(paths[p], paths[q], 1.0, kind, "the same file content" + _pair_tail(p, q, sets, labels, classes))


def _pair_tail(a: int, b: int, sets: np.ndarray, labels: np.ndarray, classes: list[str]) -> str:
    what = ""
    if sets[a] != sets[b]:
        what += (f"; one in {SET_WORDS.get(sets[a], sets[a])}, one in {SET_WORDS.get(sets[b], sets[b])}: a leak "
                 f"that inflates the measured accuracy")
    la, lb = int(labels[a]), int(labels[b])
    if la != lb and la >= 0 and lb >= 0:
        what += f"; labelled {classes[la]} and {classes[lb]}: one of them is mislabelled"
    return what


def _pair_reason(a: int, b: int, sets: np.ndarray, labels: np.ndarray, classes: list[str], exact: bool, sim: float,
                 bits: int) -> str:
    what = "the same file content" if exact else (
        f"near-identical: feature similarity {sim:.3f}" + (f", perceptual hashes {bits} of 64 bits apart"
                                                           if bits >= 0 else ""))
    return what + _pair_tail(a, b, sets, labels, classes)


def _robust_z(d: np.ndarray) -> np.ndarray:
    med = np.median(d)
    mad = 1.4826 * np.median(np.abs(d - med))
    return (d - med) / max(mad, 1e-3 * max(abs(float(med)), 1e-3), 1e-6)


def _outliers(x: np.ndarray, sims: np.ndarray, labels: np.ndarray, paths: list[str],
              classes: list[str]) -> list[Outlier]:
    known = labels >= 0
    if len(x) < 3 * OUTLIER_K or not known.any():
        return []
    present = [c for c in range(len(classes)) if (labels == c).any()]
    cent = dup.normalise(np.stack([x[labels == c].mean(0) for c in present]))
    to_cent = x @ cent.T
    best = to_cent.max(1)
    knn = sims[:, :OUTLIER_K].mean(1)
    z = (_robust_z(1.0 - best) + _robust_z(1.0 - knn)) / 2
    out = []
    for i in np.flatnonzero(z >= Z_OUTLIER):
        c = present[int(to_cent[i].argmax())]
        reason = (f"far from every class: nearest class {classes[c]} at similarity {best[i]:.2f} (typical "
                  f"{np.median(best):.2f}), its {OUTLIER_K} nearest images at {knn[i]:.2f} (typical "
                  f"{np.median(knn):.2f}); {z[i]:.1f} robust standard deviations out")
        out.append(Outlier(paths[i], round(float(z[i] / (z[i] + Z_OUTLIER)), 4), reason))
    out.sort(key=lambda o: (-o.score, o.path))
    return out


def imbalance_of(counts: dict[str, int]) -> dict | None:
    """The rulebook's imbalance (``rules.imbalance``: the largest class has more than 3x the
    training images of the smallest), so the audit, the Data step and the scan say the same."""
    return rules.imbalance(counts)


def _hash_files(paths: list[str], emit: Emit, check) -> tuple[list, list, list]:
    emit(PhaseChanged("audit", f"Hashing {len(paths):,} files"))
    return dup.hashes(paths, check=check, progress=lambda d, t: emit(Progress("audit_hash", d, t, "Hashing files")))


def audit(cfg, on_event: Emit | None = None, cancel: Callable[[], bool] | None = None, folds: int = 5) -> AuditResult:
    """Audit ``cfg``'s training, validation and test images with the configured model's frozen
    backbone features (the engine's feature cache: computed once per process). Stops with a
    Cancelled (StopRequested) when ``cancel()`` turns true."""
    t0 = time.perf_counter()
    emit, check = on_event or (lambda e: None), _checker(cancel)
    fz = frozen.setup(cfg, emit, cancel or (lambda: False))
    for w in fz.split.warnings:
        emit(Warning(w))
    feats, labels, sets, paths, reused = [], [], [], [], []
    for name, samples in (("train", fz.split.train), ("val", fz.split.val), ("test", fz.split.test)):
        fs, again = frozen.backbone_features(fz, samples, SET_WORDS[name], emit, check)
        reused.append(again)
        if samples:
            feats.append(fs.features.numpy())
            labels.extend(s.label if int(ok) >= 0 else -1 for s, ok in zip(samples, fs.labels))
            sets.extend([name] * len(samples))
            paths.extend(s.path for s in samples)
    digests, phashes, thumbs = _hash_files(paths, emit, check)
    res = audit_features(np.concatenate(feats), labels, sets, paths, fz.split.classes, folds=folds,
                         seed=cfg.train.seed, digests=digests, phashes=phashes, thumbs=thumbs, on_event=emit,
                         cancel=cancel)
    res.notes.insert(0, f"{cfg.model.name} backbone features at {fz.built.preprocessing.input_size} px"
                        f"{' (from the cache)' if all(reused) else ''}")
    res.seconds = time.perf_counter() - t0
    return res


__all__ = ["AuditResult", "DuplicatePair", "LabelIssue", "Outlier", "audit", "audit_features", "imbalance_of"]
