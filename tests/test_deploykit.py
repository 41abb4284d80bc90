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


# name: (array, the mode Pillow opens the file in). Values the app scales differently by mode:
# "I;16" always from 0..65535; "I" from 0..255 when it fits, else 0..65535; "F" 0..1 or 0..255;
# anything else from its minimum to its maximum.
WIDE_GREY = {
    "scan16.png": (65535, np.uint16, "I;16"), "dark16.png": (200, np.uint16, "I;16"),
    "scan12.tif": (4095, np.int32, "I"), "eight_bit_in_i.tif": (250, np.int32, "I"),
    "unit.tif": (1.0, np.float32, "F"), "signed.tif": (-3000.0, np.float32, "F"),
}


@pytest.fixture(scope="module")
def wide_grey(tmp_path_factory) -> list[Path]:
    """Greyscale scans of more than 8 bits: a shaded ramp with noise in each mode above."""
    rng = np.random.default_rng()
    folder = tmp_path_factory.mktemp("wide-grey")
    ramp = np.linspace(0, 1, 97)[None, :] * np.linspace(0.3, 1, 83)[:, None]
    out = []
    for name, (scale, dtype, mode) in WIDE_GREY.items():
        values = np.clip(ramp + rng.normal(0, 0.05, ramp.shape), 0, 1) * scale
        if scale < 0:  # negative and positive values: stretched from min to max
            values = values - scale / 2
        Image.fromarray(values.astype(dtype)).save(folder / name)
        with Image.open(folder / name) as im:
            assert im.mode == mode, (name, im.mode)  # the file exercises the mode it is meant to
        out.append(folder / name)
    return out


@pytest.fixture(scope="module")
def onnx_kit(run, tmp_path_factory) -> Path:
    return write_kit(export_model(run, "onnx", tmp_path_factory.mktemp("kit") / "cats").path)


def test_the_kits_decoding_of_wide_greyscale_is_the_apps(onnx_kit, wide_grey, monkeypatch):
    import runpy

    from transfer_gui.engine.imageio import open_image

    monkeypatch.setattr(sys, "argv", [str(onnx_kit / "predict.py")])  # no images: only its functions
    kit = runpy.run_path(str(onnx_kit / "predict.py"))
    for path in wide_grey:
        ours = np.asarray(open_image(path, reduce_for=PRE.resize_size))
        theirs = np.asarray(kit["load"](str(path)))
        assert theirs.dtype == np.uint8 and theirs.shape == ours.shape, path.name
        assert np.array_equal(theirs, ours), (path.name, np.abs(theirs.astype(int) - ours).max())
        assert len(np.unique(ours)) > 1  # not one flat grey: the comparison says something


def test_the_kit_gives_the_apps_probabilities_on_16_bit_scans(run, onnx_kit, wide_grey):
    out = subprocess.run([sys.executable, str(onnx_kit / "predict.py"), *map(str, wide_grey)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    app = Predictor.load(run).predict(wide_grey, top_k=1)
    assert [r[0] for r in rows] == list(map(str, wide_grey))
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
