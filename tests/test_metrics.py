"""engine/metrics.py: hand-checked cases, direct counts, calibration and the temperature fit."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transfer_gui.engine import metrics

CLASSES = ["cat", "dog", "owl"]


def _one_hot_probs(preds, n_classes, confidence=0.9):
    """Rows whose top class is ``preds`` with the given top probability."""
    preds = np.asarray(preds)
    rest = (1.0 - confidence) / (n_classes - 1)
    probs = np.full((preds.size, n_classes), rest)
    probs[np.arange(preds.size), preds] = confidence
    return probs


def test_report_by_hand():
    labels = [0, 0, 0, 1, 1, 2]
    preds = [0, 0, 1, 1, 0, 0]  # owl is never predicted; cat is predicted 4 times, 2 of them right
    r = metrics.report(_one_hot_probs(preds, 3), labels, CLASSES)
    assert r["n"] == 6
    assert r["accuracy"] == pytest.approx(3 / 6)
    assert r["confusion"] == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]
    cat, dog, owl = (r["per_class"][c] for c in CLASSES)
    assert cat == pytest.approx({"precision": 2 / 4, "recall": 2 / 3, "f1": 2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3),
                                 "support": 3})
    assert dog == pytest.approx({"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2})
    assert owl == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}  # never predicted: 0.0, not NaN
    assert r["macro"]["precision"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert r["weighted"]["recall"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 2 + 0) / 6)
    assert r["top5_accuracy"] is None
    assert r["classes"] == CLASSES


def test_macro_skips_a_class_absent_from_labels_and_predictions():
    r = metrics.report(_one_hot_probs([0, 1], 3), [0, 1], CLASSES)
    assert r["per_class"]["owl"]["support"] == 0
    assert r["macro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8).flatmap(lambda c: st.tuples(
    st.just(c),
    st.lists(st.tuples(st.integers(0, c - 1), st.integers(0, c - 1)), min_size=1, max_size=60))))
def test_confusion_precision_recall_against_a_direct_count(case):
    n_classes, pairs = case
    labels = np.array([t for t, _ in pairs])
    preds = np.array([p for _, p in pairs])
    classes = [f"c{i}" for i in range(n_classes)]
    r = metrics.report(_one_hot_probs(preds, n_classes), labels, classes)
    for t in range(n_classes):
        for p in range(n_classes):
            assert r["confusion"][t][p] == sum(1 for a, b in pairs if a == t and b == p)
    for k, name in enumerate(classes):
        tp = sum(1 for a, b in pairs if a == k and b == k)
        predicted = sum(1 for _, b in pairs if b == k)
        actual = sum(1 for a, _ in pairs if a == k)
        row = r["per_class"][name]
        assert row["support"] == actual
        assert row["precision"] == pytest.approx(tp / predicted if predicted else 0.0)
        assert row["recall"] == pytest.approx(tp / actual if actual else 0.0)
    assert r["accuracy"] == pytest.approx(np.mean(labels == preds))


def test_top5_accuracy_counts_the_five_best():
    probs = np.array([[0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.05],   # true 4 is 5th: in
                      [0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.05],   # true 6 is 7th: out
                      [0.05, 0.08, 0.10, 0.12, 0.15, 0.20, 0.30]])  # true 6 is 1st: in
    r = metrics.report(probs, [4, 6, 6], [f"c{i}" for i in range(7)])
    assert r["top5_accuracy"] == pytest.approx(2 / 3)
    assert r["accuracy"] == pytest.approx(1 / 3)
    five = metrics.report(probs[:, :5] / probs[:, :5].sum(1, keepdims=True), [4, 0, 1], list("abcde"))
    assert five["top5_accuracy"] is None


def test_ece_near_zero_when_calibrated_and_large_when_over_confident():
    rng = np.random.default_rng(1)
    n, c = 40000, 4
    confidence = rng.uniform(0.3, 1.0, n)
    preds = rng.integers(0, c, n)
    right = rng.uniform(size=n) < confidence  # right exactly as often as it claims
    labels = np.where(right, preds, (preds + rng.integers(1, c, n)) % c)
    probs = np.full((n, c), 0.0)
    probs[np.arange(n), preds] = confidence
    for j in range(1, c):
        probs[np.arange(n), (preds + j) % c] = (1 - confidence) / (c - 1)
    assert metrics.ece(probs, labels) < 0.02
    # the same predictions claimed at 0.99 while right about 65 % of the time
    over = _one_hot_probs(preds, c, confidence=0.99)
    assert metrics.ece(over, labels) == pytest.approx(0.99 - np.mean(right), abs=0.01)
    assert metrics.ece(over, labels) > 0.3


def test_reliability_bins_by_hand():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.5, 0.5]])
    labels = [0, 1, 0, 1]
    table = metrics.reliability(probs, labels, bins=10)
    assert len(table) == 10 and table[0]["lo"] == 0.0 and table[-1]["hi"] == 1.0
    top = table[9]
    assert top["count"] == 2 and top["confidence"] == pytest.approx(0.95) and top["accuracy"] == 0.5
    assert table[5]["count"] == 1 and table[5]["accuracy"] == 1.0  # 0.55 in (0.5, 0.6]
    assert table[4]["count"] == 1 and table[4]["accuracy"] == 0.0  # 0.5 in (0.4, 0.5]; argmax is class 0
    assert table[2] == {"lo": 0.2, "hi": 0.3, "count": 0, "confidence": 0.0, "accuracy": 0.0}
    expected = (2 * 0.45 + 1 * 0.45 + 1 * 0.5) / 4
    assert metrics.ece(probs, labels, bins=10) == pytest.approx(expected)


def test_fit_temperature_recovers_the_temperature_that_sampled_the_labels():
    rng = np.random.default_rng(7)
    n, c = 20000, 5
    logits = rng.normal(0.0, 3.0, (n, c))
    for true_t in (0.5, 2.5):
        p = metrics.softmax(logits, true_t)
        labels = (rng.uniform(size=(n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
        labels = np.minimum(labels, c - 1)
        fitted = metrics.fit_temperature(logits, labels)
        assert fitted == pytest.approx(true_t, rel=0.08)
        assert metrics.nll(logits, labels, fitted) <= metrics.nll(logits, labels, 1.0)


def test_fit_temperature_cools_an_over_confident_model():
    logits = np.array([[8.0, 0.0], [8.0, 0.0], [0.0, 8.0], [0.0, 8.0]])
    labels = [0, 1, 1, 0]  # right half the time at 99.97 %: the best temperature is very high
    assert metrics.fit_temperature(logits, labels) > 10
    assert metrics.fit_temperature(np.zeros((0, 3)), []) == 1.0


def test_softmax_rows_sum_to_one_and_temperature_flattens():
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    p = metrics.softmax(logits)
    assert np.allclose(p.sum(axis=1), 1.0) and np.isfinite(p).all()
    hot, cold = metrics.softmax(logits[1:], 0.5), metrics.softmax(logits[1:], 4.0)
    assert hot.max() > p[1].max() > cold.max()
    with pytest.raises(ValueError):
        metrics.softmax(logits, 0.0)


def test_most_confused_biggest_first():
    confusion = [[5, 1, 3], [0, 4, 3], [2, 0, 9]]
    assert metrics.most_confused(confusion, CLASSES) == [
        ("cat", "owl", 3), ("dog", "owl", 3), ("owl", "cat", 2), ("cat", "dog", 1)]
    assert metrics.most_confused(confusion, CLASSES, min_count=3) == [("cat", "owl", 3), ("dog", "owl", 3)]
    assert metrics.most_confused(np.diag([3, 3, 3]), CLASSES) == []


def test_pr_curve_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    labels = [0, 1, 0, 1]
    precision, recall, thresholds, ap = metrics.pr_curve(probs, labels, 0)
    assert thresholds.tolist() == [0.9, 0.8, 0.6, 0.3]
    assert precision.tolist() == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    assert recall.tolist() == pytest.approx([0.5, 0.5, 1.0, 1.0])
    assert ap == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    _, recall_none, _, ap_none = metrics.pr_curve(probs, [1, 1, 1, 1], 0)
    assert ap_none == 0.0 and not recall_none.any()


def test_pr_curve_ties_are_one_point():
    probs = np.array([[0.7, 0.3], [0.7, 0.3], [0.2, 0.8]])
    precision, recall, thresholds, ap = metrics.pr_curve(probs, [0, 1, 0], 0)
    assert thresholds.tolist() == [0.7, 0.2]
    assert precision.tolist() == pytest.approx([0.5, 2 / 3])
    assert ap == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)


def test_coverage_at_and_curve_agree():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.3, 0.7], [0.2, 0.8]])
    labels = [0, 1, 0, 1, 0]
    assert metrics.coverage_at(probs, labels, 0.65) == (pytest.approx(3 / 5), pytest.approx(2 / 3), 3)
    assert metrics.coverage_at(probs, labels, 0.95) == (0.0, 0.0, 0)
    curve = metrics.coverage_curve(probs, labels)
    assert [t for t, _, _ in curve] == sorted(t for t, _, _ in curve)
    assert curve[0] == (0.0, 1.0, pytest.approx(3 / 5))
    for threshold, coverage, accuracy in curve:
        cov, acc, _ = metrics.coverage_at(probs, labels, threshold)
        assert (coverage, accuracy) == (pytest.approx(cov), pytest.approx(acc))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0.05, 0.95), st.integers(0, 1)), min_size=1, max_size=40))
def test_coverage_curve_matches_coverage_at(rows):
    probs = np.array([[p, 1 - p] for p, _ in rows])
    labels = [y for _, y in rows]
    for threshold, coverage, accuracy in metrics.coverage_curve(probs, labels):
        cov, acc, _ = metrics.coverage_at(probs, labels, threshold)
        assert coverage == pytest.approx(cov) and accuracy == pytest.approx(acc)


def test_empty_input_gives_zeros_not_nan():
    r = metrics.report(np.zeros((0, 3)), [], CLASSES)
    assert r["n"] == 0 and r["accuracy"] == 0.0 and r["ece"] == 0.0
    assert all(not math.isnan(v) for row in r["per_class"].values() for v in row.values())


def test_metrics_imports_no_torch():
    code = "import sys, transfer_gui.engine.metrics; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
