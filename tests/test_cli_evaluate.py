"""`transfer-gui evaluate` and `transfer-gui predict --csv`: files, summary, exit codes, and
refusals before torch loads."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_class_folders, trained_run
from transfer_gui import cli

HEAVY = ("torch", "torchvision", "timm", "PySide6", "onnxruntime")
PROBE = """
import json, sys
from transfer_gui import cli
try:
    code = cli.main(json.loads(sys.argv[1]))
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": [m for m in json.loads(sys.argv[2]) if m in sys.modules]}))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cli_evaluate")
    trained_run(root, "train", per_class=8, **{"train.epochs": 1, "data.test_fraction": 0.25})
    return {"root": root, "run": root / "run", "test": make_class_folders(root / "test", per_class=4, seed=9)}


def _csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_evaluate_writes_the_report_and_prints_a_summary(trained, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli.main(["evaluate", str(trained["run"]), "--data", str(trained["test"]), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["n"] == 12 and doc["classes"] == ["blue", "green", "red"]
    assert f"accuracy {doc['accuracy']:.1%}" in printed and f"macro F1 {doc['macro']['f1']:.3f}" in printed
    assert f"ECE {doc['ece']:.3f}" in printed and str(out / "report.html") in printed
    assert _csv(out / "predictions.csv")[0] == ["path", "true", "pred", "confidence", "blue", "green", "red"]
    assert len(_csv(out / "predictions.csv")) == 13


def test_evaluate_a_runs_saved_validation_set(trained, tmp_path, capsys):
    from transfer_gui.engine import rundir

    out = tmp_path / "report"
    assert cli.main(["evaluate", str(trained["run"]), "--out", str(out), "--split", "val"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["set"] == "validation" and doc["confusion"] == rundir.load_run(trained["run"]).confusion()
    assert "(validation)" in capsys.readouterr().out


def test_evaluate_a_run_reports_its_test_set_by_default(trained, tmp_path, capsys):
    from transfer_gui.engine import rundir

    rec = rundir.load_run(trained["run"])
    assert rec.test_predictions, "the run should have a test set"
    out = tmp_path / "report"
    assert cli.main(["evaluate", str(trained["run"]), "--out", str(out)]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["set"] == "test" and doc["n"] == len(rec.test_predictions)
    assert doc["accuracy"] == pytest.approx(sum(r["true"] == r["pred"] for r in rec.test_predictions) / doc["n"])
    paths = [row[0] for row in _csv(out / "predictions.csv")[1:]]
    assert paths == [r["path"] for r in rec.test_predictions]
    assert "(test)" in capsys.readouterr().out


def test_a_class_folder_the_model_does_not_know_exits_2(trained, tmp_path, capsys):
    data = make_class_folders(tmp_path / "d", per_class=2, classes=("red", "mauve"))
    with pytest.raises(SystemExit) as info:
        cli.main(["evaluate", str(trained["run"]), "--data", str(data), "--out", str(tmp_path / "r")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'mauve' is not a class of the model" in err[0]
    assert not (tmp_path / "r").exists()


def test_ctrl_c_exits_130(trained, tmp_path, monkeypatch, capsys):
    from transfer_gui.engine import evaluate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "evaluate_model", interrupted)
    code = cli.main(["evaluate", str(trained["run"]), "--data", str(trained["test"]), "--out", str(tmp_path / "r")])
    assert code == 130 and capsys.readouterr().err.strip() == "interrupted"


def test_predict_csv_one_row_per_file_and_errors_kept(trained, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("001.png", "002.png"):
        (images / name).write_bytes((trained["test"] / "red" / name).read_bytes())
    (images / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "p.csv"
    # 4: some inputs predicted, some not (the broken one is a row with its error, and named on stderr)
    assert cli.main(["predict", str(trained["run"]), str(images), "--csv", str(out), "--top-k", "1"]) == 4
    rows = _csv(out)
    assert rows[0] == ["path", "pred", "confidence", "blue", "green", "red", "error"]
    by_name = {Path(r[0]).name: r for r in rows[1:]}
    assert sorted(by_name) == ["001.png", "002.png", "broken.png"]
    broken = by_name["broken.png"]
    assert broken[1:6] == [""] * 5 and broken[6]
    good = by_name["001.png"]
    probs = [float(v) for v in good[3:6]]
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)
    assert good[1] == ["blue", "green", "red"][probs.index(max(probs))] and float(good[2]) == max(probs)
    printed = capsys.readouterr().out
    assert "broken.png: skipped" in printed and printed.count(", ") == 0  # --top-k 1: one class a line


def test_predict_csv_answer_column_and_unsure_lines(trained, tmp_path, monkeypatch, capsys):
    from transfer_gui.engine.predict import Predictor

    load = Predictor.load

    def strict(path, fmt=None):
        p = load(path, fmt)
        p.threshold = 0.999  # nothing this small model says is that sure
        return p

    monkeypatch.setattr(Predictor, "load", staticmethod(strict))
    out = tmp_path / "p.csv"
    assert cli.main(["predict", str(trained["run"]), str(trained["test"] / "blue"), "--csv", str(out)]) == 0
    rows = _csv(out)
    assert rows[0] == ["path", "pred", "confidence", "blue", "green", "red", "answer", "error"]
    assert len(rows) == 5 and all(r[6] == "unsure" and r[1] in ("blue", "green", "red") for r in rows[1:])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(": unsure, best guess " in line for line in lines)


def _refuse(args: list[str], tmp_path: Path) -> tuple[dict, list[str]]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg_cache")}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr.strip().splitlines()


REFUSALS = [
    ("missing model", ["evaluate", "{tmp}/none.onnx", "--data", "{data}", "--out", "{tmp}/r"],
     "run folder or model file not found: {tmp}/none.onnx"),
    ("missing data", ["evaluate", "{tmp}/model.onnx", "--data", "{tmp}/nope", "--out", "{tmp}/r"],
     "--data: folder does not exist: {tmp}/nope"),
    ("out is a file", ["evaluate", "{tmp}/model.onnx", "--data", "{data}", "--out", "{tmp}/model.onnx"],
     "--out: {tmp}/model.onnx is a file"),
    ("model file without data", ["evaluate", "{tmp}/model.onnx", "--out", "{tmp}/r"], "give --data DIR"),
    ("run without saved predictions", ["evaluate", "{tmp}/run", "--out", "{tmp}/r"], "no saved predictions yet"),
    ("split with data", ["evaluate", "{tmp}/run", "--data", "{data}", "--out", "{tmp}/r", "--split", "val"],
     "leave it out when --data is given"),
    ("missing test split", ["evaluate", "{tmp}/run", "--out", "{tmp}/r", "--split", "test"],
     "no test_predictions.json"),
    ("no --out", ["evaluate", "{tmp}/model.onnx", "--data", "{data}"], "the following arguments are required: --out"),
    ("predict csv is a folder", ["predict", "{tmp}/model.onnx", "{data}", "--csv", "{data}"], "--csv: {data} is a folder"),
]


@pytest.mark.parametrize("label, args, message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_with_one_line_before_torch_is_imported(tmp_path, label, args, message):
    (tmp_path / "data" / "cats").mkdir(parents=True)
    (tmp_path / "model.onnx").write_bytes(b"not really")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "best.pt").write_bytes(b"x")
    (tmp_path / "run" / "config.toml").write_text("")
    fill = {"tmp": str(tmp_path), "data": str(tmp_path / "data")}
    result, err = _refuse([a.format(**fill) for a in args], tmp_path)
    assert result["code"] == 2, (result, err)
    assert len(err) == 1 and err[0].startswith("transfer-gui: error: "), err
    assert message.format(**fill) in err[0]
    assert result["heavy"] == [], f"{label}: imported {result['heavy']} before refusing"
