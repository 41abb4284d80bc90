"""The test set of a run (data.test_folders, data.test_fraction): its split, its evaluation once
after training with the chosen checkpoint, and the per-image logits files beside the predictions."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_class_folders, tiny_config
from transfer_gui.engine.loop import Trainer
from transfer_gui.engine.rundir import load_run


def _fit(cfg, **kw):
    events: list = []
    return Trainer().fit(cfg, events.append, **kw), events


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("cache", ["auto", "off"])
def test_val_logits_match_the_best_epochs_predictions(image_folders, tmp_path, cache):
    out = tmp_path / "run"
    result, _ = _fit(tiny_config(image_folders, out, **{"train.feature_cache": cache, "train.epochs": 2}))
    assert result.status == "completed", result.message
    rec = load_run(out)
    logits = rec.logits("val")
    assert logits is not None and logits.dtype == np.float32 and logits.shape == (len(rec.predictions), 3)
    probs = _softmax(logits.astype(np.float64))
    assert [int(i) for i in probs.argmax(1)] == [p["pred"] for p in rec.predictions]
    assert np.allclose(probs.max(1), [p["confidence"] for p in rec.predictions], atol=1e-4)
    assert rec.logits("test") is None and rec.test_predictions == []
