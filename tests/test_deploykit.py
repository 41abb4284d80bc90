"""The deploy kit runs where transfer_gui is not installed and gives the app's predictions; the
exports say what they are (constructor, versioned preprocessing spec); predict's exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transfer_gui.engine.catalog import build_model, constructor_of
from transfer_gui.engine.deploykit import write_kit
from transfer_gui.engine.export import export_model
from transfer_gui.engine.formats import CHECKPOINT_FORMAT
from transfer_gui.engine.predict import Predictor
from transfer_gui.engine.preprocess import PREPROCESSING_SPEC_VERSION, Preprocessing
from transfer_gui.errors import UserError

CLASSES = ["ant", "bee", "cat"]
PRE = Preprocessing(64, 72, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.manual_seed(0)
    built = build_model("resnet18", "none", num_classes=len(CLASSES))
    folder = tmp_path_factory.mktemp("run")
    (folder / "checkpoints").mkdir()
    torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "arch": "resnet18", "classes": CLASSES,
                "preprocessing": PRE.to_dict(), "head_path": built.head_path, "state_dict": built.model.state_dict(),
                "metrics": {}, "config": "", "calibration": {"temperature": 1.7, "threshold": 0.0}},
               folder / "checkpoints" / "best.pt")
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    out = []
    for name, size in (("chelsea", None), ("coffee", (333, 517)), ("astronaut", (1400, 1100))):
        im = Image.fromarray(getattr(data, name)()).convert("RGB")
        path = folder / f"{name}.jpg"
        (im.resize(size, Image.BICUBIC) if size else im).save(path, quality=92)
        out.append(path)
    grey = folder / "grey.png"
    Image.fromarray(data.camera()).save(grey)
    return [*out, grey]


@pytest.fixture(scope="module")
def clean_python(tmp_path_factory) -> str:
    """A fresh venv with only onnxruntime, numpy and Pillow (from pip's index or its cache)."""
    env = tmp_path_factory.mktemp("venv") / "v"
    venv.create(env, with_pip=True)
    py = str(env / "bin" / "python")
    got = subprocess.run([py, "-m", "pip", "install", "-q", "onnxruntime", "numpy", "pillow"], capture_output=True,
                         text=True, timeout=600)
    if got.returncode != 0:
        pytest.skip(f"cannot install onnxruntime numpy pillow in a fresh venv: {got.stderr[-300:]}")
    assert subprocess.run([py, "-c", "import transfer_gui"], capture_output=True, cwd=env).returncode != 0
    return py


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "onnx-rgb"])
def test_the_kit_alone_gives_the_apps_predictions(fmt, run, photos, clean_python, tmp_path):
    report = export_model(run, fmt, tmp_path / "cats", parity_images=photos)
    kit = write_kit(report.path)
    assert sorted(p.name for p in kit.iterdir()) == ["README.md", "labels.txt", "model.onnx", "predict.py"]
    assert (kit / "labels.txt").read_text().splitlines() == CLASSES
    assert len((kit / "predict.py").read_text().splitlines()) <= 50
    out = subprocess.run([clean_python, str(kit / "predict.py"), *map(str, photos)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    app = Predictor.load(run).predict(photos, top_k=1)
    assert [r[1] for r in rows] == [a[0][0] for a in app]
    assert np.allclose([float(r[2]) for r in rows], [a[0][1] for a in app], atol=1e-3)


def test_a_kit_needs_an_onnx_export(run, tmp_path):
    report = export_model(run, "safetensors", tmp_path / "cats")
    with pytest.raises(UserError, match="needs an ONNX export"):
        write_kit(report.path)


def test_metadata_names_the_constructor_and_a_versioned_spec(run, tmp_path):
    import onnx

    report = export_model(run, "onnx", tmp_path / "m.onnx")
    props = {p.key: json.loads(p.value) if p.key != "format" and p.key != "arch" and p.key != "head_path" else p.value
             for p in onnx.load(report.path).metadata_props}
    assert props["constructor"]["name"] == "torchvision:resnet18" and props["num_classes"] == 3
    spec = props["preprocessing_spec"]
    assert spec["version"] == PREPROCESSING_SPEC_VERSION
    assert [s["op"] for s in spec["steps"]] == ["decode", "resize", "center_crop", "to_float", "normalize", "layout"]
    assert spec["steps"][1]["shorter_side"] == 72 and spec["steps"][2]["size"] == [64, 64]
    assert props["output"]["probabilities"] == "softmax(output)"


def test_the_offline_model_is_timms_tf_efficientnet_lite0_with_every_key():
    import timm

    ctor = constructor_of("efficientnet_lite0", 5)
    assert ctor["name"] == "timm:tf_efficientnet_lite0" and ctor["library_version"] == timm.__version__
    ours = build_model("efficientnet_lite0", "none", num_classes=5).model
    theirs = timm.create_model(ctor["model"], pretrained=False, **ctor["kwargs"])
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(ours.eval()(x), theirs.eval()(x), atol=1e-5)


def test_predict_exit_codes(run, photos, tmp_path):
    bad = tmp_path / "fake.jpg"
    bad.write_text("not an image")

    def predict(*items):
        return subprocess.run([sys.executable, "-m", "transfer_gui", "predict", str(run), *map(str, items)],
                              capture_output=True, text=True, timeout=300)

    some = predict(photos[0], bad, tmp_path / "gone.png")
    assert some.returncode == 4 and str(photos[0]) in some.stdout
    assert str(bad) in some.stderr and "gone.png" in some.stderr and "2 of 3" in some.stderr
    none = predict(bad)
    assert none.returncode == 3 and "no image could be predicted" in none.stderr and str(bad) in none.stderr
    assert predict(photos[1]).returncode == 0
