"""The command line end to end, and the LR finder."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from transfer_gui.cli import main
from transfer_gui.engine.control import RunControl
from transfer_gui.engine.lrfind import lr_find, suggest, sweep
from transfer_gui.engine.prepare import prepare


def test_lr_finder_restores_the_model(image_folders, tmp_path):
    cfg = tiny_config(image_folders, tmp_path / "run", **{"train.feature_cache": "off", "layers.train_from": "layer4"})
    p = prepare(cfg, lambda e: None, RunControl())
    before = {k: v.clone() for k, v in p.model.state_dict().items()}
    res = sweep(p, steps=30, start_lr=1e-6, end_lr=10.0)
    after = p.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len(res.lrs) == len(res.losses) >= 10
    assert res.lrs == sorted(res.lrs) and res.lrs[0] == pytest.approx(1e-6)
    assert res.lrs[0] <= res.suggestion <= res.lrs[-1]


def test_suggestion_is_the_steepest_descent():
    lrs = [10 ** (-6 + k * 0.25) for k in range(25)]
    losses = [2.0] * 8 + [2.0 - 0.3 * k for k in range(1, 6)] + [0.5] * 12
    assert 1e-4 <= suggest(lrs, losses) <= 1e-3


def test_lr_find_from_config(image_folders, tmp_path):
    res = lr_find(tiny_config(image_folders, tmp_path / "run"), steps=20)
    assert len(res.lrs) >= 10


def test_quick_form_train_predict_export(image_folders, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", str(image_folders), "--out", str(out), "--model", "resnet18", "--weights", "none",
                 "--train-from", "layer4", "--lr", "layer4=1e-4", "--head-lr", "1e-2", "--warmup-steps", "2",
                 "--schedule", "cosine", "--epochs", "2", "--batch-size", "8", "--image-size", "32", "--no-augment",
                 "--seed", "3", "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "Finished 2 epochs" in text and str(out) in text
    from transfer_gui import config as C

    cfg = C.load(out / "config.toml")
    assert cfg.layers.lr == {"layer4": 1e-4} and cfg.train.seed == 3 and cfg.schedule.warmup_steps == 2

    onnx = tmp_path / "model.onnx"
    assert main(["export", str(out), "--format", "onnx", "--out", str(onnx),
                 "--parity-images", str(image_folders)]) == 0
    assert onnx.is_file() and "parity" in capsys.readouterr().out.lower()
    assert main(["predict", str(onnx), str(image_folders / "red"), "--json", "--top-k", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 10 and all(len(r["top"]) == 2 for r in rows)
    assert main(["predict", str(out), str(image_folders / "red" / "000.png")]) == 0
    assert "000.png" in capsys.readouterr().out


def test_config_file_with_set_overrides(image_folders, tmp_path, capsys):
    from transfer_gui import config as C

    cfg_path = tmp_path / "project.toml"
    C.save(tiny_config(image_folders, tmp_path / "run"), cfg_path)
    assert main(["train", str(cfg_path), "--set", "train.epochs=1", "--set", f"output.dir='{tmp_path / 'r2'}'",
                 "--quiet"]) == 0
    assert len((tmp_path / "r2" / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "/no/such/folder", "--out", "x"], "folder does not exist: /no/such/folder"),
    (["train", "--data", "{data}", "--out", "{tmp}/r", "--model", "resnet81"], "unknown model 'resnet81'"),
    (["train", "--data", "{data}", "--out", "{tmp}/r", "--model", "resnet18", "--weights", "none",
      "--freeze", "layer9"], "unknown layer group 'layer9'"),
    (["train", "--set", "train.batch_size=0", "--data", "{data}"], "train.batch_size: must be >= 1"),
    (["train", "--out", "x"], "no image folders"),
    (["predict", "{tmp}/missing.onnx", "{data}"], "missing.onnx"),
])
def test_bad_arguments_exit_2_with_one_line(image_folders, tmp_path, capsys, args, message):
    args = [a.format(data=image_folders, tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error" in line.lower()]
    assert len(errors) == 1 and errors == err[-1:]  # progress lines, then exactly one error line
    assert err[-1].startswith("transfer-gui: error:") and message in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_models_json_and_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "transfer_gui", "models", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = {m["name"] for m in json.loads(proc.stdout)}
    assert {"efficientnet_lite0", "resnet18", "vit_b_16"} <= names
    version = subprocess.run([sys.executable, "-m", "transfer_gui", "--version"], capture_output=True, text=True)
    assert version.stdout.strip().startswith("transfer-gui 0.")
