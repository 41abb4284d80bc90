"""Comparing runs without torch: the best epoch read one way, what changed from the run before,
the rows of the runs table and their JSON (engine/runs.py)."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import pytest

from transfer_gui import config as config_mod
from transfer_gui.engine import runs as runs_mod


def fake_run(folder: Path, changes: dict, vals: list[tuple[float, float]], mtime: float,
             summary: dict | None = None) -> Path:
    """A run folder as the engine leaves it: config.toml, metrics.jsonl (val_acc, val_loss per
    epoch, 1.5 s each) and summary.json."""
    folder.mkdir(parents=True)
    cfg = config_mod.RunConfig().replace(**{"model.name": "resnet18", "output.dir": str(folder), **changes})
    config_mod.save(cfg, folder / "config.toml")
    lines = [json.dumps({"epoch": i + 1, "val_acc": a, "val_loss": loss, "seconds": 1.5})
             for i, (a, loss) in enumerate(vals)]
    (folder / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    os.utime(folder / "config.toml", (mtime, mtime))
    return folder


def test_best_epoch_is_counted_from_1_by_the_runs_own_metric():
    h = [{"epoch": 1, "val_acc": 0.5, "val_loss": 0.9}, {"epoch": 2, "val_acc": 0.7, "val_loss": 0.6},
         {"epoch": 3, "val_acc": 0.7, "val_loss": 0.7}, {"epoch": 4, "val_acc": 0.6, "val_loss": 0.5}]
    assert runs_mod.best_epoch(h, "val_acc") == 2  # a tie does not move it (the tracker's strict rule)
    assert runs_mod.best_epoch(h, "val_loss") == 4
    assert runs_mod.best_epoch([], "val_acc") == 0
    no_val = [{"epoch": 1, "val_acc": None}, {"epoch": 2, "val_acc": None}]
    assert runs_mod.best_epoch(no_val) == 2  # without validation every epoch counts as the best
    resumed = [{"epoch": 6, "val_acc": 0.4}, {"epoch": 7, "val_acc": 0.8}]
    assert runs_mod.best_epoch(resumed) == 7  # the record's own number


@pytest.mark.parametrize("written", [1, 2])  # summary.json's best_epoch from 0 (older) or from 1
def test_run_info_does_not_depend_on_how_summary_counts_the_best_epoch(tmp_path, written):
    run = fake_run(tmp_path / "r", {"train.early_stopping_metric": "val_loss"},
                   [(0.6, 0.8), (0.55, 0.4), (0.9, 0.5)], time.time(),
                   {"status": "completed", "best_epoch": written, "seconds": 12.25, "test_acc": 0.81})
    info = runs_mod.run_info(run)
    assert info.best_epoch == 2 and info.best_val_acc == pytest.approx(0.55)  # by val_loss, not the top accuracy
    assert info.seconds == pytest.approx(12.25) and info.test_acc == pytest.approx(0.81)
    assert info.config["train.early_stopping_metric"] == "val_loss" and info.model == "resnet18"


def test_an_unfinished_run_counts_its_epochs_time_and_has_no_test(tmp_path):
    info = runs_mod.run_info(fake_run(tmp_path / "r", {}, [(0.5, 1.0), (0.6, 0.9)], time.time()))
    assert info.status == "" and info.seconds == pytest.approx(3.0) and math.isnan(info.test_acc)
    assert info.best_epoch == 2
    empty = runs_mod.run_info(fake_run(tmp_path / "e", {}, [], time.time()))
    assert empty.best_epoch == 0 and math.isnan(empty.seconds) and math.isnan(empty.best_val_acc)


def test_config_diff_names_dotted_keys_and_leaves_the_run_folder_out(tmp_path):
    now = time.time()
    a = runs_mod.run_info(fake_run(tmp_path / "a", {}, [(0.5, 1.0)], now - 10))
    b = runs_mod.run_info(fake_run(tmp_path / "b", {"layers.head_lr": 0.01, "data.folders": ["x", "y"],
                                                    "layers.lr": {"layer4": 0.0001}}, [(0.6, 0.9)], now))
    diff = runs_mod.config_diff(a.config, b.config)
    assert diff == {"data.folders": [[], ["x", "y"]], "layers.head_lr": [0.001, 0.01],
                    "layers.lr.layer4": [None, 0.0001]}
    assert a.config["output.dir"] != b.config["output.dir"]  # differs, but is not a setting
    assert runs_mod.config_diff(a.config, a.config) == {}


def test_an_older_config_file_gets_this_versions_defaults_for_keys_it_lacks(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.toml").write_text('version = 1\n[model]\nname = "resnet18"\n[train]\nepochs = 3\n')
    new = fake_run(tmp_path / "new", {"train.epochs": 3, "data.test_fraction": 0.1}, [(0.5, 1.0)], time.time())
    diff = runs_mod.config_diff(runs_mod.run_info(old).config, runs_mod.run_info(new).config)
    assert diff == {"data.test_fraction": [0.0, 0.1]}


def test_the_table_compares_each_run_with_the_one_before_and_says_it_in_json(tmp_path):
    now = time.time()
    first = fake_run(tmp_path / "1", {}, [(0.5, 1.0)], now - 20, {"status": "completed", "seconds": 3.0})
    second = fake_run(tmp_path / "2", {"layers.head_lr": 0.01}, [(0.6, 0.9), (0.7, 0.8)], now - 10,
                      {"status": "completed", "seconds": 4.0, "test_acc": 0.66})
    third = fake_run(tmp_path / "3", {"layers.head_lr": 0.01}, [(0.4, 1.2)], now)
    rows = runs_mod.table(runs_mod.list_runs(tmp_path))
    assert [r.info.run_dir for r in rows] == [third, second, first]
    assert [r.previous for r in rows] == [second, first, None]
    assert [r.diff_text() for r in rows] == ["same settings", "layers.head_lr 0.001 \u2192 0.01", "first run"]
    docs = json.loads(json.dumps([r.as_json() for r in rows], allow_nan=False))
    assert docs[1]["config_diff"] == {"layers.head_lr": [0.001, 0.01]} and docs[2]["config_diff"] is None
    assert docs[1]["best_epoch"] == 2 and docs[1]["best_val_acc"] == pytest.approx(0.7)
    assert docs[1]["test_acc"] == pytest.approx(0.66) and docs[1]["seconds"] == pytest.approx(4.0)
    assert docs[0]["status"] == "interrupted" and docs[0]["test_acc"] is None  # no summary, no process holds it
    assert set(docs[0]) >= {"run_dir", "model", "best_epoch", "best_val_acc", "status", "seconds", "config_diff"}


def test_diff_text_keeps_to_a_few_changes():
    info = runs_mod.RunInfo(Path("r"), "m", "", 0, math.nan, 0.0)
    diff = {f"train.k{i}": [i, i + 1] for i in range(5)}
    text = runs_mod.RunRow(info, Path("p"), diff).diff_text(limit=2)
    assert text == "train.k0 0 \u2192 1, train.k1 1 \u2192 2, +3 more"
    assert runs_mod.short_value(["a", "b"]) == "[2 items]" and runs_mod.short_value(True) == "true"


def test_reading_runs_needs_no_torch(tmp_path):
    import subprocess

    fake_run(tmp_path / "r", {}, [(0.5, 1.0)], time.time())
    code = ("import sys; from transfer_gui.engine import runs; "
            f"rows = runs.table(runs.list_runs({str(tmp_path)!r})); "
            "assert len(rows) == 1 and 'torch' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
