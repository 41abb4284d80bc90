"""Temperature scaling fitted on the validation set, stored in the checkpoints and applied by
Predictor and every export; the stored confidence threshold and "unsure"."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_class_folders, tiny_config
from transfer_gui.engine import metrics
from transfer_gui.engine.calibration import (CALIBRATION_FILE, MIN_IMAGES, Calibrate, CalibrationError, calibrate_run,
                                             fit_calibration, set_threshold)
from transfer_gui.engine.checkpoint import calibration_of, load_checkpoint
from transfer_gui.engine.export import FORMATS, export_model
from transfer_gui.engine.loop import Trainer
from transfer_gui.engine.predict import Predictor
from transfer_gui.engine.preprocess import eval_transform
from transfer_gui.errors import UserError

JSON_KEYS = {"temperature", "threshold", "ece_before", "ece_after", "fitted_on", "n"}


def _noisy_labels(root: Path, flip: int) -> Path:
    """Colour classes with ``flip`` images of each class filed under the next class: the
    validation set then has mistakes, so there is a temperature to fit."""
    data = make_class_folders(root, per_class=30, size=24, seed=2)
    names = ["red", "green", "blue"]
    for i, name in enumerate(names):
        for k in range(flip):
            (data / name / f"{k:03d}.png").rename(data / names[(i + 1) % 3] / f"from_{name}_{k}.png")
    return data


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished tiny real run (resnet18 from scratch, 2 epochs, 27 validation images). The seed
    is chosen: with train.seed 0-2 a temperature is fitted and kept (0.09-0.25), with 3 the fit
    does not lower the binned error and 1.0 is kept; the same on 1 and 2 threads."""
    root = tmp_path_factory.mktemp("calib")
    data = _noisy_labels(root / "data", flip=5)
    cfg = tiny_config(data, root / "run", **{"data.val_fraction": 0.3, "data.image_size": 24, "train.seed": 2})
    result = Trainer().fit(cfg)
    assert result.status == "completed", result.message
    return root / "run"


def _val_images(run_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    preds = json.loads((run_dir / "val_predictions.json").read_text())
    labels = np.array([item["true"] for item in preds["items"]])
    return [item["path"] for item in preds["items"]], np.load(run_dir / "val_logits.npy"), labels


def test_a_real_run_is_calibrated_on_its_validation_set(run):
    record = json.loads((run / CALIBRATION_FILE).read_text())
    assert set(record) == JSON_KEYS, record  # no "note": a temperature was fitted and kept
    paths, logits, labels = _val_images(run)
    t = record["temperature"]
    assert record["fitted_on"] == "validation" and record["n"] == len(paths) == len(logits) >= MIN_IMAGES
    assert record["threshold"] == 0.0 and abs(t - 1.0) > 0.01
    assert record["ece_before"] == pytest.approx(metrics.ece(metrics.softmax(logits), labels))
    assert record["ece_after"] == pytest.approx(metrics.ece(metrics.softmax(logits, t), labels))
    assert record["ece_after"] <= record["ece_before"]
    assert t == pytest.approx(metrics.fit_temperature(logits, labels))
    for name in ("best.pt", "last.pt"):
        ck = load_checkpoint(run / "checkpoints" / name)
        assert ck["calibration"] == {"temperature": t, "threshold": 0.0}
    pred = Predictor.load(run)
    assert (pred.temperature, pred.threshold) == (t, 0.0)


def test_probabilities_agree_across_formats_with_the_temperature_applied(run, tmp_path):
    paths, val_logits, _ = _val_images(run)
    paths = paths[:8]
    local = Predictor.load(run)
    raw = local.logits(paths)
    assert np.allclose(raw, val_logits[:8], atol=1e-3)  # the raw logits the run itself recorded
    expected = metrics.softmax(raw, local.temperature)
    assert not np.allclose(expected, metrics.softmax(raw), atol=1e-3)  # the temperature changes them
    got, files = {"run folder": local.probabilities(paths)}, {}
    for fmt in ("torchscript", "onnx"):
        report = export_model(run, fmt, tmp_path, parity_images=paths)
        files[fmt] = report.path
        exported = Predictor.load(report.path)
        assert exported.temperature == local.temperature and exported.temperature_in_graph
        got[fmt] = exported.probabilities(paths)
        assert np.allclose(exported.logits(paths), raw, atol=1e-4)  # raw logits from every format
        top = [row[0][1] for row in exported.predict(paths, top_k=1)]
        assert np.allclose(top, expected.max(1), atol=1e-5)
    for where, probs in got.items():
        assert np.abs(probs - expected).max() <= 1e-5, where
    # anyone's softmax of the ONNX graph's output gives the app's probabilities
    import onnxruntime as ort

    session = ort.InferenceSession(files["onnx"], providers=["CPUExecutionProvider"])
    transform = eval_transform(local.preprocessing)
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths]).numpy()
    stranger = metrics.softmax(session.run(None, {"input": batch})[0])
    assert np.abs(stranger - expected).max() <= 1e-5


def test_set_threshold_flags_exactly_the_images_below_it_and_exports_carry_it(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    paths = _val_images(copy)[0]
    tops = np.sort(Predictor.load(copy).probabilities(paths).max(1))
    threshold = float((tops[len(tops) // 2 - 1] + tops[len(tops) // 2]) / 2)  # between two images
    assert tops[len(tops) // 2 - 1] < threshold < tops[len(tops) // 2]
    set_threshold(copy, threshold)

    record = json.loads((copy / CALIBRATION_FILE).read_text())
    original = json.loads((run / CALIBRATION_FILE).read_text())
    assert record == {**original, "threshold": threshold}
    for name in ("best.pt", "last.pt"):
        assert calibration_of(load_checkpoint(copy / "checkpoints" / name))["threshold"] == threshold
    pred = Predictor.load(copy)
    results = pred.predict_paths(paths)
    flagged = [r["unsure"] for r in results]
    assert flagged == [r["top"][0][1] < threshold for r in results]
    assert sum(flagged) == len(tops) // 2 and not all(flagged)
    for fmt in FORMATS:
        exported = Predictor.load(export_model(copy, fmt, tmp_path).path)
        assert (exported.threshold, exported.temperature) == (threshold, pred.temperature), fmt
        assert [r["unsure"] for r in exported.predict_paths(paths)] == flagged, fmt


def test_set_threshold_refuses_a_folder_without_a_checkpoint_and_bad_values(tmp_path, run):
    empty = tmp_path / "empty run"
    empty.mkdir()
    for folder in (empty, tmp_path / "missing"):
        with pytest.raises(CalibrationError) as info:
            set_threshold(folder, 0.5)
        assert isinstance(info.value, UserError) and str(folder) in str(info.value)
    assert not (empty / CALIBRATION_FILE).exists()
    for bad in (-0.1, 1.5, math.nan, "high"):
        with pytest.raises(CalibrationError, match="threshold"):
            set_threshold(run, bad)
    assert json.loads((run / CALIBRATION_FILE).read_text())["threshold"] == 0.0


def test_old_checkpoints_without_calibration_read_as_temperature_1_threshold_0(run, tmp_path):
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    ck = load_checkpoint(run / "checkpoints" / "best.pt")
    del ck["calibration"]
    torch.save(ck, old / "checkpoints" / "best.pt")
    assert calibration_of(ck) == {"temperature": 1.0, "threshold": 0.0}
    pred = Predictor.load(old)
    assert (pred.temperature, pred.threshold) == (1.0, 0.0)
    paths = _val_images(run)[0][:4]
    assert np.allclose(pred.probabilities(paths), metrics.softmax(pred.logits(paths)), atol=1e-6)
    assert not any(r["unsure"] for r in pred.predict_paths(paths))
    set_threshold(old, 0.9)  # a run from before calibration can still get a threshold
    record = json.loads((old / CALIBRATION_FILE).read_text())
    assert (record["temperature"], record["threshold"]) == (1.0, 0.9) and "note" in record
    assert Predictor.load(old).threshold == 0.9


def _scaled_logits(n: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(base); logits ``scale`` times base: overconfident by ``scale``."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 2.0, size=(n, 4))
    probs = metrics.softmax(base)
    labels = np.array([rng.choice(4, p=p) for p in probs])
    return base * scale, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_recovers_the_temperature_of_overconfident_logits(seed):
    logits, labels = _scaled_logits(3000, 3.0, seed)
    fitted = fit_calibration(logits, labels)
    assert "note" not in fitted and fitted["n"] == 3000
    assert 2.5 < fitted["temperature"] < 3.6
    assert fitted["ece_after"] < fitted["ece_before"] / 2


def test_degenerate_validation_sets_keep_temperature_1_and_say_why():
    logits, labels = _scaled_logits(200, 3.0, 5)
    cases = {
        "validation image": (logits[:MIN_IMAGES - 1], labels[:MIN_IMAGES - 1]),
        "one class": (logits, np.zeros_like(labels)),
        "correctly": (logits, logits.argmax(1)),
        "not finite": (np.where(np.arange(200)[:, None] == 3, np.nan, logits), labels),
    }
    for why, (z, y) in cases.items():
        fitted = fit_calibration(z, y)
        assert fitted["temperature"] == 1.0 and why in fitted["note"], (why, fitted)
        assert fitted["ece_after"] == fitted["ece_before"] == (None if why == "not finite" else fitted["ece_before"])


def test_a_fit_that_would_raise_the_binned_error_is_not_kept():
    # a confident right answer, a barely wrong one and a barely right one: the likelihood wants a
    # temperature near 0.47, which sharpens the barely right and wrong ones alike and raises the
    # binned error on these very images (at that temperature and around it: not a bin edge)
    z = np.array([[3.7, 0.0], [0.2, 0.0], [0.4, 0.0]] * 8)
    y = np.array([0, 1, 0] * 8)
    t = metrics.fit_temperature(z, y)
    before = metrics.ece(metrics.softmax(z), y)
    assert 0.4 < t < 0.55 and all(metrics.ece(metrics.softmax(z, t * f), y) > before + 0.1 for f in (0.8, 1, 1.25))
    fitted = fit_calibration(z, y)
    assert fitted["temperature"] == 1.0 and "would raise" in fitted["note"]


def test_calibrate_run_from_written_files(run, tmp_path):
    folder = tmp_path / "r"
    shutil.copytree(run, folder)
    (folder / CALIBRATION_FILE).write_text(json.dumps({"threshold": 0.4}))  # a resumed run keeps its threshold
    logits, labels = _scaled_logits(60, 3.0, 7)
    np.save(folder / "val_logits.npy", logits[:, :3].astype(np.float32))
    items = [{"path": f"x{i}.png", "true": int(min(v, 2)), "pred": 0, "confidence": 0.5, "top": []}
             for i, v in enumerate(labels)]
    (folder / "val_predictions.json").write_text(json.dumps({"classes": ["a", "b", "c"], "items": items}))
    record = calibrate_run(folder)
    assert record == json.loads((folder / CALIBRATION_FILE).read_text())
    assert record["threshold"] == 0.4 and record["n"] == 60
    expected = fit_calibration(logits[:, :3], [item["true"] for item in items])
    assert record["temperature"] == pytest.approx(expected["temperature"])
    assert load_checkpoint(folder / "checkpoints" / "last.pt")["calibration"] == {
        "temperature": record["temperature"], "threshold": 0.4}

    np.save(folder / "val_logits.npy", logits[:10, :3].astype(np.float32))  # rows do not match
    record = calibrate_run(folder)
    assert record["temperature"] == 1.0 and "does not match" in record["note"]
    assert Predictor.load(folder).temperature == 1.0


def test_only_the_main_rank_writes_and_a_folder_without_checkpoint_is_left_alone(run, tmp_path):
    folder = tmp_path / "r"
    shutil.copytree(run, folder)
    (folder / CALIBRATION_FILE).unlink()
    Calibrate(folder, main=False).after_fit(None)
    assert not (folder / CALIBRATION_FILE).exists()
    events = []

    class _Run:
        emit = staticmethod(events.append)

    Calibrate(folder, main=True).after_fit(_Run())
    assert (folder / CALIBRATION_FILE).exists() and "temperature" in events[0].message
    bare = tmp_path / "bare"
    bare.mkdir()
    assert calibrate_run(bare) is None and not (bare / CALIBRATION_FILE).exists()
