"""`transfer-gui runs`: the runs table on the command line, its JSON, and its refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from transfer_gui import cli
from transfer_gui import config as config_mod

from tests.test_runs import fake_run


def _lab(tmp_path):
    project = tmp_path / "cells.toml"
    config_mod.save(config_mod.RunConfig(), project)
    root = tmp_path / "cells-runs"
    now = time.time()
    old = fake_run(root / "20260101-100000", {}, [(0.5, 1.0), (0.75, 0.8)], now - 60,
                   {"status": "completed", "seconds": 30.0})
    new = fake_run(root / "20260101-110000", {"train.epochs": 4, "layers.head_lr": 0.003}, [(0.625, 0.9)], now,
                   {"status": "early_stopped", "seconds": 9.0, "test_acc": 0.6})
    return project, root, old, new


def test_runs_prints_one_line_per_run_newest_first_with_what_changed(tmp_path, capsys):
    project, root, old, new = _lab(tmp_path)
    assert cli.main(["runs", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("run") and len(lines) == 3
    assert lines[1].startswith(new.name) and "early stopped" in lines[1] and "60.0%" in lines[1]
    assert "layers.head_lr 0.001 \u2192 0.003" in lines[1] and "train.epochs 10 \u2192 4" in lines[1]
    assert lines[2].startswith(old.name) and "75.0% @2" in lines[2] and lines[2].endswith("first run")
    assert cli.main(["runs", str(project)]) == 0  # a project file stands for its runs folder
    assert capsys.readouterr().out.splitlines()[1:] == lines[1:]


def test_runs_json_gives_one_object_per_run(tmp_path, capsys):
    _project, root, old, new = _lab(tmp_path)
    assert cli.main(["runs", str(root), "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert [d["run_dir"] for d in docs] == [str(new), str(old)]
    assert docs[0]["config_diff"] == {"layers.head_lr": [0.001, 0.003], "train.epochs": [10, 4]}
    assert docs[0]["status"] == "early_stopped" and docs[0]["seconds"] == 9.0 and docs[0]["best_epoch"] == 1
    assert docs[1]["best_epoch"] == 2 and docs[1]["best_val_acc"] == 0.75 and docs[1]["config_diff"] is None


def test_one_run_folder_lists_that_run(tmp_path, capsys):
    _project, _root, old, _new = _lab(tmp_path)
    assert cli.main(["runs", str(old), "--json"]) == 0
    assert [d["run_dir"] for d in json.loads(capsys.readouterr().out)] == [str(old)]


def test_a_folder_without_runs_exits_1_and_a_missing_one_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["runs", str(tmp_path / "empty"), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == [] and "no runs in" in captured.err
    with pytest.raises(SystemExit) as info:
        cli.main(["runs", str(tmp_path / "absent")])
    assert info.value.code == 2
    assert "no runs folder" in capsys.readouterr().err


def test_runs_does_not_load_torch(tmp_path):
    _project, root, _old, _new = _lab(tmp_path)
    code = (f"import sys; from transfer_gui import cli; rc = cli.main(['runs', {str(root)!r}, '--json']); "
            "assert rc == 0 and 'torch' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
