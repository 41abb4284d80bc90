"""engine/evaluate.py: a model on a folder, a run's saved predictions, the three files, and the
figures against onnxruntime on the exported model with the preprocessing stored in the file."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_class_folders, trained_run
from transfer_gui.engine import evaluate, metrics
from transfer_gui.engine.evaluate import EvaluationCancelled, EvaluationError, evaluate_model, evaluation_from_run
from transfer_gui.errors import Cancelled

CLASSES = ["blue", "green", "red"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("evaluate")
    trained_run(root, "train", **{"train.epochs": 2, "layers.head_lr": 0.01})
    test = make_class_folders(root / "test", per_class=6, seed=5, size=48)
    for i in range(2):  # two blue images filed as red: mistakes whatever the model learnt
        shutil.copy(test / "blue" / f"{i:03d}.png", test / "red" / f"blue_{i}.png")
    return {"root": root, "run": root / "run", "test": test}


def _images(folder: Path) -> list[tuple[str, str]]:
    return sorted((str(p), p.parent.name) for p in folder.rglob("*.png"))


def test_evaluate_model_on_a_folder(trained):
    from transfer_gui.engine.predict import Predictor

    calls = []
    ev = evaluate_model(trained["run"], trained["test"], progress=lambda done, total: calls.append((done, total)))
    expected = _images(trained["test"])
    assert sorted(zip(ev.paths, (ev.classes[i] for i in ev.labels))) == expected
    assert ev.classes == CLASSES and ev.which == "data" and ev.run_dir == trained["run"]
    assert calls[-1] == (len(expected), len(expected)) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    predictor = Predictor.load(trained["run"])
    assert np.allclose(ev.probs, predictor.probabilities(ev.paths), atol=1e-5)
    assert np.allclose(ev.probs, metrics.softmax(ev.logits, ev.temperature))
    assert ev.metrics == metrics.report(ev.probs, ev.labels, CLASSES)
    assert ev.metrics["per_class"]["red"]["support"] == 8 and ev.metrics["accuracy"] < 1.0
    assert ev.history and ev.config is not None  # the run is known: its curves and settings go in the report


def test_the_predictors_temperature_is_applied(trained, monkeypatch):
    from transfer_gui.engine.predict import Predictor

    load = Predictor.load

    def hot(path, fmt=None):
        p = load(path, fmt)
        p.temperature = 2.5
        return p

    monkeypatch.setattr(Predictor, "load", staticmethod(hot))
    ev = evaluate_model(trained["run"], trained["test"])
    assert ev.temperature == 2.5
    assert np.allclose(ev.probs, metrics.softmax(ev.logits, 2.5))
    assert ev.metrics["ece"] == pytest.approx(metrics.ece(metrics.softmax(ev.logits, 2.5), ev.labels))


def test_a_class_folder_the_model_does_not_know_is_named(trained, tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=2, classes=("red", "purple"))
    with pytest.raises(EvaluationError, match="'purple' is not a class of the model"):
        evaluate_model(trained["run"], data)


def test_model_classes_missing_from_the_data_and_unreadable_files(trained, tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=3, classes=("red", "blue"))
    (data / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    ev = evaluate_model(trained["run"], data)
    assert ev.metrics["n"] == 6 and ev.metrics["per_class"]["green"]["support"] == 0
    assert [Path(s["path"]).name for s in ev.skipped] == ["broken.png"] and ev.skipped[0]["reason"]
    assert str(data / "red" / "broken.png") not in ev.paths


def test_cancel_stops_an_evaluation(trained):
    done: list[int] = []
    with pytest.raises(EvaluationCancelled):
        evaluate_model(trained["run"], trained["test"], progress=lambda d, t: done.append(d), cancel=lambda: bool(done),
                       batch_size=4)
    assert done == [4]  # stopped before the second batch
    with pytest.raises(Cancelled):  # already while scanning
        evaluate_model(trained["run"], trained["test"], cancel=lambda: True)


def test_evaluation_from_a_runs_validation_predictions(trained, tmp_path):
    from transfer_gui.engine import rundir

    rec = rundir.load_run(trained["run"])
    ev = evaluation_from_run(trained["run"], "val")
    assert ev.paths == [r["path"] for r in rec.predictions]
    assert ev.labels.tolist() == [r["true"] for r in rec.predictions]
    assert ev.preds.tolist() == [r["pred"] for r in rec.predictions]
    assert ev.metrics["confusion"] == rec.confusion()
    # a run folder without logits (older runs): the stored top lists give the same figures for 3 classes
    old = tmp_path / "old_run"
    shutil.copytree(trained["run"], old)
    (old / "val_logits.npy").unlink()
    (old / "calibration.json").write_text(json.dumps({"temperature": 3.0}))  # unusable without logits
    fallback = evaluation_from_run(old, "val")
    assert fallback.logits is None and fallback.temperature == 1.0
    assert np.allclose(fallback.probs, ev.uncalibrated_probs(), atol=1e-4)
    assert fallback.metrics["confusion"] == ev.metrics["confusion"]


def test_evaluation_from_a_run_applies_its_calibration(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    (run / "calibration.json").write_text(json.dumps({"temperature": 0.5, "threshold": 0.0, "ece_before": 0.2,
                                                      "ece_after": 0.1, "fitted_on": "validation", "n": 6}))
    ev = evaluation_from_run(run, "val")
    assert ev.temperature == 0.5 and np.allclose(ev.probs, metrics.softmax(ev.logits, 0.5))
    assert ev.calibration["ece_after"] == 0.1
    with pytest.raises(EvaluationError, match="no test predictions"):
        evaluation_from_run(run, "test")


def test_write_outputs(trained, tmp_path):
    ev = evaluate_model(trained["run"], trained["test"])
    written = evaluate.write_outputs(ev, tmp_path / "report")
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["metrics.json", "predictions.csv", "report.html"]
    doc = json.loads(written["metrics.json"].read_text())
    for key in ("classes", "accuracy", "ece", "per_class", "confusion", "macro", "weighted"):
        assert doc[key] == ev.metrics[key], key
    assert "top5_accuracy" not in doc  # 3 classes: not defined
    assert set(doc["per_class"]["red"]) == {"precision", "recall", "f1", "support"}
    with open(written["predictions.csv"], newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["path", "true", "pred", "confidence", *CLASSES]
    assert len(rows) == 1 + len(ev.paths)
    for row, path, label, probs in zip(rows[1:], ev.paths, ev.labels, ev.probs):
        assert row[0] == path and row[1] == CLASSES[label] and row[2] == CLASSES[int(probs.argmax())]
        assert float(row[3]) == pytest.approx(probs.max(), rel=1e-5)
        assert [float(v) for v in row[4:]] == pytest.approx(probs.tolist(), rel=1e-5)
    assert "<html" in written["report.html"].read_text()


def test_write_outputs_refuses_a_file_as_folder(trained, tmp_path):
    ev = evaluation_from_run(trained["run"], "val")
    (tmp_path / "taken").write_text("x")
    with pytest.raises(EvaluationError, match="is a file"):
        evaluate.write_outputs(ev, tmp_path / "taken")


# ----------------------------------------------------------------------------- Done when: equal to onnxruntime


def _stored_preprocessing(path: Path, meta: dict) -> np.ndarray:
    """The file's preprocessing by hand: shorter side to resize_size (bilinear), centre crop,
    scale to [0, 1], normalise, CHW."""
    pre = json.loads(meta["preprocessing"])
    image = Image.open(path).convert("RGB")
    w, h = image.size
    r, c = pre["resize_size"], pre["input_size"]
    size = (r, int(r * h / w)) if w <= h else (int(r * w / h), r)
    image = image.resize(size, Image.BILINEAR)
    left, top = int(round((size[0] - c) / 2)), int(round((size[1] - c) / 2))
    a = np.asarray(image.crop((left, top, left + c, top + c)), dtype=np.float32) / 255.0
    a = (a - np.asarray(pre["mean"], dtype=np.float32)) / np.asarray(pre["std"], dtype=np.float32)
    return a.transpose(2, 0, 1)


def test_evaluate_equals_onnxruntime_on_the_exported_model(trained, tmp_path):
    import onnxruntime as ort

    from transfer_gui.engine.export import export_model

    onnx_path = tmp_path / "model.onnx"
    export_model(trained["run"], "onnx", onnx_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    meta = dict(session.get_modelmeta().custom_metadata_map)
    classes = json.loads(meta["classes"])
    images = _images(trained["test"])
    x = np.stack([_stored_preprocessing(Path(p), meta) for p, _ in images])
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    truth = np.array([classes.index(name) for _, name in images])
    pred = out.argmax(axis=1)

    ev = evaluate_model(onnx_path, trained["test"])
    assert ev.source == str(onnx_path) and sorted(ev.paths) == [p for p, _ in images]
    order = [ev.paths.index(p) for p, _ in images]
    assert np.allclose(ev.probs[order], metrics.softmax(out), atol=1e-3)  # the graph's outputs: logits / T
    assert ev.metrics["accuracy"] == pytest.approx(float(np.mean(pred == truth)))
    assert 0.0 < ev.metrics["accuracy"] < 1.0
    for k, name in enumerate(classes):
        tp = int(np.sum((pred == k) & (truth == k)))
        row = ev.metrics["per_class"][name]
        assert row["support"] == int(np.sum(truth == k))
        assert row["precision"] == pytest.approx(tp / max(1, int(np.sum(pred == k))))
        assert row["recall"] == pytest.approx(tp / max(1, int(np.sum(truth == k))))
    assert ev.metrics["confusion"] == [[int(np.sum((truth == t) & (pred == p))) for p in range(3)] for t in range(3)]
