"""The Results step's Qt-free view of one set of a run: probabilities from the saved logits with
the run's temperature, or rebuilt from the top-5 lists of older runs; class labels that stay
apart when shortened."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from transfer_gui.config import RunConfig, save
from transfer_gui.engine.rundir import load_run
from transfer_gui.state import evaluation_view
from transfer_gui.engine.metrics import probs_from_top
from transfer_gui.state.evaluation_view import short_names


def _write_run(folder: Path, logits: np.ndarray, labels: list[int], classes: list[str],
               temperature: float | None = None, with_logits: bool = True) -> Path:
    folder.mkdir(parents=True)
    save(RunConfig(), folder / "config.toml")
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    items = []
    for i, (row, y) in enumerate(zip(probs, labels)):
        order = np.argsort(-row)[:5]
        items.append({"path": f"/img/{i}.png", "true": int(y), "pred": int(order[0]),
                      "confidence": float(row[order[0]]), "top": [[int(j), float(row[j])] for j in order]})
    (folder / "val_predictions.json").write_text(json.dumps({"classes": classes, "items": items}))
    if with_logits:
        np.save(folder / "val_logits.npy", logits.astype(np.float32))
    if temperature is not None:
        (folder / "calibration.json").write_text(json.dumps({"temperature": temperature, "threshold": 0.5}))
    return folder


def test_view_applies_the_runs_temperature_to_the_saved_logits(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (40, 4))
    labels = list(rng.integers(0, 4, 40))
    run = _write_run(tmp_path / "run", logits, labels, ["a", "b", "c", "d"], temperature=2.0)
    view = evaluation_view.build(load_run(run), "val")
    assert view.exact and view.temperature == 2.0 and view.threshold == 0.5
    z = logits.astype(np.float32).astype(np.float64) / 2.0
    expected = np.exp(z - z.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    assert np.allclose(view.probs, expected, atol=1e-6)
    hand_acc = float(np.mean(expected.argmax(1) == np.asarray(labels)))
    assert abs(view.report["accuracy"] - hand_acc) < 1e-12
    answered = expected.max(1) >= 0.6
    coverage, accuracy, n = view.coverage_at(0.6)
    assert n == int(answered.sum()) and abs(coverage - answered.mean()) < 1e-12
    if n:
        assert abs(accuracy - np.mean(expected.argmax(1)[answered] == np.asarray(labels)[answered])) < 1e-12
    assert evaluation_view.sets_of(load_run(run)) == ["val"]
    assert evaluation_view.build(load_run(run), "test") is None


def test_older_runs_are_shown_from_their_top5_lists(tmp_path):
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (30, 3))
    labels = list(rng.integers(0, 3, 30))
    run = _write_run(tmp_path / "old", logits, labels, ["x", "y", "z"], with_logits=False)
    view = evaluation_view.build(load_run(run), "val")
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert not view.exact and np.allclose(view.probs, probs, atol=1e-6)  # 3 classes: the top 5 is everything


def test_top5_rebuild_keeps_each_row_a_distribution():
    items = [{"true": 0, "pred": 2, "confidence": 0.5, "top": [[2, 0.5], [0, 0.2], [1, 0.1], [3, 0.1], [4, 0.05]]}]
    probs = probs_from_top(items, 10)
    assert abs(probs.sum() - 1.0) < 1e-9 and probs[0, 2] == 0.5 and probs.argmax() == 2
    assert np.allclose(probs[0, 5:], 0.05 / 5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="abcde_ ", min_size=1, max_size=40), min_size=1, max_size=30, unique=True),
       st.integers(min_value=3, max_value=20))
def test_short_names_tell_every_class_apart(names, width):
    short = short_names(names, width)
    assert len(set(short)) == len(names)
    for full, label in zip(names, short):
        assert label == full or ("…" in label and len(label) <= len(full))


def test_short_names_of_a_150_class_run_stay_readable():
    names = [f"{kind} {i}" for i in range(75) for kind in ("eastern bluebird", "eastern bobolink")]
    short = short_names(names, 14)
    assert len(set(short)) == len(names) and all(len(s) <= 20 for s in short)
    assert short[0].startswith("eastern") and short[0].endswith(" 0")
