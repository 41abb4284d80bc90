"""The command line refuses bad arguments before torch loads, and the bundled model names are true.

A refusal must not wait for torch (seconds): the checks use transfer_gui.config and the name
lists in resources/model_names.json. The lists are held here against what the installed
torchvision, timm and engine.catalog accept, so they cannot go stale without a failing test;
``python tools/make_model_names.py`` rewrites them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transfer_gui import model_names

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "timm", "PySide6", "onnxruntime")
REGENERATE = "run `python tools/make_model_names.py` and commit resources/model_names.json"


@pytest.fixture(autouse=True)
def _fresh_memo():
    model_names.clear_memo()
    yield
    model_names.clear_memo()


# ----------------------------------------------------------------------------- the bundled lists


def _make_model_names_tool():
    spec = importlib.util.spec_from_file_location("make_model_names", ROOT / "tools" / "make_model_names.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundled_versions_are_the_installed_ones():
    shipped = model_names.bundled()
    assert shipped, f"{model_names.bundled_path()} is missing or unreadable: {REGENERATE}"
    for library in ("torchvision", "timm"):
        installed = model_names.installed_version(library)
        assert shipped[library]["version"] == installed, (
            f"model_names.json lists {library} {shipped[library]['version']} but {installed} is installed; "
            f"the CLI falls back to importing {library} to check names: {REGENERATE}")


def test_bundled_file_is_what_the_generator_writes_now():
    tool = _make_model_names_tool()
    expected = tool.render(model_names.collect_all())
    assert model_names.bundled_path().read_text(encoding="utf-8") == expected, REGENERATE


def test_torchvision_names_are_what_the_catalog_accepts():
    from transfer_gui.engine import catalog

    names = model_names.torchvision_names()
    assert names is not None and names.version == model_names.installed_version("torchvision")
    catalog_names = {s.name for s in catalog.list_models(include_timm=False) if s.source == "torchvision"}
    assert set(names.names) == catalog_names, REGENERATE
    for name in sorted(names.names):
        assert catalog.get_spec(name).source == "torchvision"
    assert model_names.OFFLINE_MODEL == catalog.OFFLINE_MODEL
    assert catalog.get_spec(model_names.OFFLINE_MODEL).source == "offline"


def test_timm_names_are_what_timm_knows():
    import timm

    from transfer_gui.engine import catalog

    names = model_names.timm_names()
    assert names is not None and names.version == timm.__version__
    assert set(names.archs) == set(timm.list_models()), REGENERATE
    tagged = {n for n in timm.list_models(include_tags=True) if "." in n}
    assert {f"{a}.{t}" for a, tags in names.tags.items() for t in tags} == tagged, REGENERATE
    assert set(catalog.TIMM_FEATURED) <= names.archs


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18", "vit_b_16", "convnext_tiny"])
def test_known_catalog_names_pass(name):
    from transfer_gui.engine import catalog

    catalog.get_spec(name)
    assert model_names.model_name_problem(name) is None


@pytest.mark.parametrize("name, close", [
    ("resnet81", "resnet18"), ("resnet5O", "resnet50"), ("vit_b16", "vit_b_16"), ("ResNet18", "resnet18"),
    ("efficientnet_lite", "efficientnet_lite0"), ("resnet50d", "timm:resnet50d"),
])
def test_unknown_names_are_refused_like_the_catalog_with_a_suggestion(name, close):
    from transfer_gui.engine import catalog

    with pytest.raises(catalog.ModelError):
        catalog.get_spec(name)
    problem = model_names.model_name_problem(name)
    assert problem is not None and problem.startswith(f"unknown model '{name}'.")
    assert "Did you mean" in problem and close in problem and "\n" not in problem


@pytest.mark.parametrize("name, ok", [
    ("resnet18", True), ("resnet18.a1_in1k", True), ("resnet18.no_such_tag", False), ("resnet1888", False),
    ("mobilenetv3_small_050", True),
])
def test_timm_names_agree_with_timm_create_model(name, ok):
    import timm

    problem = model_names.model_name_problem("timm:" + name)
    try:
        timm.create_model(name, pretrained=False)
        created = True
    except RuntimeError:
        created = False
    assert created is ok and (problem is None) is ok, problem
    if not ok:
        assert problem.startswith(f"unknown model 'timm:{name}'") and "Did you mean timm:resnet18" in problem


def test_hub_names_are_left_to_timm():
    assert model_names.model_name_problem("timm:hf-hub:timm/resnet18.a1_in1k") is None


def test_other_versions_are_read_from_the_library_once_then_cached(monkeypatch, tmp_path):
    real = model_names.installed_version
    monkeypatch.setattr(model_names, "installed_version",
                        lambda dist: "0.0.0+other" if dist == "torchvision" else real(dist))
    monkeypatch.setattr(model_names, "cache_dir", lambda: tmp_path / "cache")
    names = model_names.torchvision_names()  # not the bundled version: collected from torchvision
    assert names is not None and names.version == real("torchvision")
    assert set(names.names) == set(model_names.bundled()["torchvision"]["names"])
    # the collected section names the real version, so it is cached under that one only
    assert not list((tmp_path / "cache").glob("*0.0.0*"))

    monkeypatch.setattr(model_names, "collect_torchvision", lambda: {
        "version": "0.0.0+other", "names": ["resnet18"]})
    model_names.clear_memo()
    assert model_names.torchvision_names().names == frozenset({"resnet18"})
    assert (tmp_path / "cache" / "torchvision-0.0.0+other.json").is_file()

    def must_not_run():
        raise AssertionError("the cached names should have been used")

    monkeypatch.setattr(model_names, "collect_torchvision", must_not_run)
    model_names.clear_memo()
    assert model_names.torchvision_names().names == frozenset({"resnet18"})
    assert model_names.model_name_problem("resnet50").startswith("unknown model 'resnet50'")


def test_without_the_library_the_engine_decides(monkeypatch):
    monkeypatch.setattr(model_names, "installed_version", lambda dist: None)
    assert model_names.model_name_problem("no_such_model") is None
    assert model_names.model_name_problem("timm:no_such_model") is None


# ----------------------------------------------------------------------------- refusals without torch

PROBE = """
import json, sys
from transfer_gui import cli
try:
    code = cli.main(json.loads(sys.argv[1]))
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": [m for m in json.loads(sys.argv[2]) if m in sys.modules]}))
"""


def _refuse(args: list[str], tmp_path: Path) -> tuple[dict, list[str]]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg_cache")}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr.strip().splitlines()


@pytest.fixture
def layout(tmp_path):
    data = tmp_path / "data"
    (data / "cats").mkdir(parents=True)
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "model.onnx").write_bytes(b"not really")

    def config(**changes):
        from transfer_gui import config as C

        path = tmp_path / f"cfg{len(list(tmp_path.glob('cfg*.toml')))}.toml"
        C.save(C.RunConfig().replace(**{"data.folders": [str(data)], "output.dir": str(tmp_path / "run"),
                                        **changes}), path)
        return str(path)

    return {"data": str(data), "tmp": str(tmp_path), "config": config}


CASES = [
    ("train quick form, wrong folder", ["train", "--data", "{tmp}/no_such", "--out", "{tmp}/r"],
     "folder does not exist: {tmp}/no_such"),
    ("train quick form, wrong model", ["train", "--data", "{data}", "--out", "{tmp}/r", "--model", "resnet81"],
     "unknown model 'resnet81'. Did you mean resnet18"),
    ("train quick form, wrong timm model", ["train", "--data", "{data}", "--model", "timm:convnext_tinny"],
     "Did you mean timm:convnext_tiny"),
    ("train quick form, wrong validation folder", ["train", "--data", "{data}", "--val-data", "{tmp}/nope"],
     "folder does not exist: {tmp}/nope"),
    ("train quick form, missing weights file", ["train", "--data", "{data}", "--weights", "{tmp}/w.pt"],
     "weights file does not exist: {tmp}/w.pt"),
    ("train config file, wrong folder", ["train", "{cfg_bad_folder}"], "folder does not exist: {tmp}/gone"),
    ("train config file, wrong model", ["train", "{cfg_bad_model}"], "unknown model 'vit_b16'. Did you mean vit_b_16"),
    ("train config file missing", ["train", "{tmp}/none.toml"], "config file not found: {tmp}/none.toml"),
    ("train --set wrong model", ["train", "{cfg_ok}", "--set", "model.name='resnet5O'"], "Did you mean resnet50"),
    ("train --resume missing", ["train", "--resume", "{tmp}/no_run"], "cannot resume {tmp}/no_run"),
    ("lr-find wrong folder", ["lr-find", "--data", "{tmp}/no_such"], "folder does not exist: {tmp}/no_such"),
    ("lr-find wrong model", ["lr-find", "{cfg_ok}", "--model", "resnet5O"], "unknown model 'resnet5O'"),
    ("lr-find bad steps", ["lr-find", "{cfg_ok}", "--steps", "1"], "--steps >= 2"),
    ("predict missing model", ["predict", "{tmp}/missing.onnx", "{data}"], "model file not found: {tmp}/missing.onnx"),
    ("predict run folder without checkpoint", ["predict", "{tmp}/empty_run", "{data}"], "no checkpoint in run folder"),
    ("predict missing image", ["predict", "{tmp}/model.onnx", "{tmp}/no.png"],
     "image file or folder not found: {tmp}/no.png"),
    ("export missing run", ["export", "{tmp}/no_run", "--format", "onnx", "--out", "{tmp}/m.onnx"],
     "run folder or checkpoint not found: {tmp}/no_run"),
    ("export missing parity folder", ["export", "{tmp}/model.onnx", "--format", "onnx", "--out", "{tmp}/m.onnx",
                                      "--parity-images", "{tmp}/no_imgs"], "folder does not exist: {tmp}/no_imgs"),
    ("argparse error", ["train", "--epochs", "many"], "argument --epochs: invalid int value"),
]


@pytest.mark.parametrize("label, args, message", CASES, ids=[c[0] for c in CASES])
def test_refused_with_one_line_before_torch_is_imported(layout, label, args, message):
    tmp = layout["tmp"]
    fill = {"data": layout["data"], "tmp": tmp}
    if any("{cfg_" in a for a in args):
        fill.update(cfg_ok=layout["config"](), cfg_bad_folder=layout["config"](**{"data.folders": [f"{tmp}/gone"]}),
                    cfg_bad_model=layout["config"](**{"model.name": "vit_b16"}))
    args = [a.format(**fill) for a in args]
    result, err = _refuse(args, Path(tmp))
    assert result["code"] == 2, (result, err)
    assert len(err) == 1 and err[0].startswith("transfer-gui: error: "), err
    assert message.format(**fill) in err[0]
    assert result["heavy"] == [], f"{label}: imported {result['heavy']} before refusing"


def test_importing_the_cli_imports_no_torch():
    code = (f"import sys, transfer_gui.cli, transfer_gui.model_names; "
            f"bad = [m for m in {HEAVY!r} if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_export_formats_are_the_engines():
    from transfer_gui import cli
    from transfer_gui.engine.export import FORMATS

    assert cli.EXPORT_FORMATS == FORMATS


def _one_class_data(root: Path) -> Path:
    from PIL import Image

    (root / "data" / "cats").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (24, 24), (200, 30 * i, 0)).save(root / "data" / "cats" / f"{i}.png")
    return root / "data"


def test_one_class_is_refused_at_scan_time_and_nothing_is_written(tmp_path):
    data = _one_class_data(tmp_path)
    result, err = _refuse(["train", "--data", str(data), "--out", str(tmp_path / "run")], tmp_path)
    assert result["code"] == 2, (result, err)
    assert len(err) == 1 and err[0].startswith("transfer-gui: error: Only one class ('cats')"), err
    assert result["heavy"] == [], f"imported {result['heavy']} before refusing"
    assert not (tmp_path / "run").exists()
    # a config file's runs would go beside it, in <stem>-runs/: not made either
    from transfer_gui import config as C

    C.save(C.RunConfig().replace(**{"data.folders": [str(data)]}), tmp_path / "one.toml")
    result, err = _refuse(["train", str(tmp_path / "one.toml")], tmp_path)
    assert result["code"] == 2 and "Only one class" in err[0], (result, err)
    assert {p.name for p in tmp_path.iterdir()} - {"xdg_cache"} == {"data", "one.toml"}  # no one-runs/


def test_a_config_with_two_mistakes_is_refused_naming_both(tmp_path):
    (tmp_path / "hand.toml").write_text("[train]\nepochs = 0\n\n[optim]\nname = 'adam'\n")
    result, err = _refuse(["train", str(tmp_path / "hand.toml")], tmp_path)
    assert result["code"] == 2 and result["heavy"] == [], (result, err)
    assert len(err) == 1 and "2 problems" in err[0], err
    assert "(1) optim.name: must be one of adamw, sgd, got 'adam'" in err[0]
    assert "(2) train.epochs: must be >= 1, got 0" in err[0]
