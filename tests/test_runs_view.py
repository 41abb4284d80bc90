"""The Results step's comparison of runs in plain Python (state/runs_view.py): selection, curves,
the side-by-side settings and "Use these settings" with its undo."""

from __future__ import annotations

import json
import math
import time

import pytest

from tests.test_runs import fake_run
from transfer_gui.config import ConfigError
from transfer_gui.engine import runs as runs_mod
from transfer_gui.state.project import Project
from transfer_gui.state.runs_view import RunsView, settings


@pytest.fixture
def three(tmp_path):
    now = time.time()
    a = fake_run(tmp_path / "a", {}, [(0.5, 1.0), (0.6, 0.9)], now - 20)
    b = fake_run(tmp_path / "b", {"layers.head_lr": 0.01, "train.epochs": 3}, [(0.7, 0.8)], now - 10)
    c = fake_run(tmp_path / "c", {"layers.head_lr": 0.01, "layers.lr": {"layer4": 0.0001}}, [(0.4, 1.2)], now)
    view = RunsView()
    view.set_runs(runs_mod.list_runs(tmp_path))
    return view, a, b, c


def test_selection_follows_the_table_order_and_drops_runs_no_longer_listed(three, tmp_path):
    view, a, b, c = three
    view.select([a, c])
    assert view.selected == [c, a]
    view.set_runs([r for r in runs_mod.list_runs(tmp_path) if r.run_dir != c])
    assert view.selected == [a] and [r.info.run_dir for r in view.rows] == [b, a]


def test_curves_are_the_selected_runs_validation_per_epoch_and_follow_a_growing_run(three):
    view, a, b, _c = three
    view.select([a, b])
    curves = view.curves()
    assert [c.name for c in curves] == ["b", "a"]
    assert curves[1].epochs == [1, 2] and curves[1].val_acc == [0.5, 0.6] and curves[1].val_loss == [1.0, 0.9]
    with (a / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"epoch": 3, "val_acc": None, "val_loss": 0.85}) + "\n")
    later = time.time() + 5
    import os

    os.utime(a / "metrics.jsonl", (later, later))
    grown = view.curves()[1]
    assert grown.epochs == [1, 2, 3] and math.isnan(grown.val_acc[2]) and grown.val_loss[2] == 0.85


def test_side_by_side_lists_only_what_differs(three):
    view, a, b, c = three
    view.select([a, b, c])
    names, rows = view.comparison()
    assert names == ["c", "b", "a"]
    assert rows == [("layers.head_lr", [0.01, 0.01, 0.001]), ("layers.lr.layer4", [0.0001, None, None]),
                    ("train.epochs", [10, 3, 10])]
    view.select([b])  # one run: against the run before it
    assert view.comparison() == (["a", "b"], [("layers.head_lr", [0.001, 0.01]), ("train.epochs", [10, 3])])
    view.select([a])
    assert view.comparison() == (["a"], [])


def test_use_these_settings_copies_a_run_into_the_project_and_undo_puts_them_back(three):
    view, a, b, c = three
    project = Project()
    before = settings(project.cfg)
    changes = view.use_settings(project, c)
    assert changes["layers.head_lr"] == 0.01 and changes["layers.lr"] == {"layer4": 0.0001}
    assert "output.dir" not in changes and project.cfg.output.dir == ""
    assert project.cfg.layers.head_lr == 0.01 and project.cfg.model.name == "resnet18" and project.dirty
    assert view.used_run == c
    assert view.use_settings(project, c) == {}  # already the project's settings
    assert view.undo(project) and settings(project.cfg) == before
    assert not view.undo(project)  # one step


def test_a_run_config_this_version_cannot_read_is_refused_naming_the_file(three):
    view, a, _b, _c = three
    (a / "config.toml").write_text("[train]\nepochs = 0\n")
    project = Project()
    with pytest.raises(ConfigError, match="train.epochs") as info:
        view.use_settings(project, a)
    assert str(a) in str(info.value) and project.cfg.train.epochs == 10 and view.undo_changes is None
