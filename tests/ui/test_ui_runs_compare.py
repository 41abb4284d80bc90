"""The Results step's Runs tab: the table of the project's runs, several selected to overlay their
curves and compare their settings, a double-click to show one, and Use these settings with its
confirmation and undo (ui/widgets/runs_table.py over state/runs_view.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt

from transfer_gui import config as config_mod
from transfer_gui.engine import runs as runs_mod
from transfer_gui.ui import dialogs

from .helpers import wait_for


def _run(folder: Path, changes: dict, vals: list[float], mtime: float, status: str = "completed") -> Path:
    folder.mkdir(parents=True)
    cfg = config_mod.RunConfig().replace(**{"model.name": "resnet18", "output.dir": str(folder), **changes})
    config_mod.save(cfg, folder / "config.toml")
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": i + 1, "val_acc": a, "val_loss": 1 - a, "seconds": 2.0}) + "\n" for i, a in enumerate(vals)))
    (folder / "summary.json").write_text(json.dumps({"status": status, "seconds": 2.0 * len(vals)}))
    os.utime(folder / "config.toml", (mtime, mtime))
    return folder


def _project(tmp: Path) -> tuple[Path, list[Path]]:
    project = tmp / "cells.toml"
    config_mod.save(config_mod.RunConfig().replace(**{"model.name": "resnet18"}), project)
    root = runs_mod.project_runs_dir(project)
    now = time.time()
    runs = [_run(root / "20260101-090000", {}, [0.5, 0.625], now - 30),
            _run(root / "20260101-100000", {"layers.head_lr": 0.01}, [0.75, 0.875, 0.8125], now - 20),
            _run(root / "20260101-110000", {"layers.head_lr": 0.01, "train.epochs": 4}, [0.25], now - 10, "stopped")]
    return project, runs


def _click_row(qtbot, table, row: int, ctrl: bool = False, double: bool = False) -> None:
    rect = table.visualItemRect(table.item(row, 0))
    mods = Qt.KeyboardModifier.ControlModifier if ctrl else Qt.KeyboardModifier.NoModifier
    if double:  # a view takes a double-click on the item that was pressed: the press comes first
        qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, mods, rect.center())
        qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, mods, rect.center())
    else:
        qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, mods, rect.center())


def _open(qtbot, w, ui_env):
    project, runs = _project(ui_env["tmp"])
    assert w.open_project(project)
    wait_for(qtbot, lambda: w.project.record is not None, 60)
    w.go_to("Results")
    r = w.results
    r.tabs.setCurrentWidget(r.runs_compare)
    return r, r.runs_compare, runs


def test_the_runs_tab_lists_every_run_with_what_changed(qtbot, window, ui_env):
    r, compare, (first, second, third) = _open(qtbot, window, ui_env)
    assert r.tabs.tabText(r.tabs.indexOf(compare)) == "Runs (3)"
    rows = compare.rows()
    assert [row[0] for row in rows] == [third.name, second.name, first.name]
    assert rows[1][3:6] == ["3", "87.5% @2", "–"] and rows[1][6] == "6 s"
    assert rows[0][7] == "stopped" and rows[0][8] == "train.epochs 10 \u2192 4"
    assert rows[1][8] == "layers.head_lr 0.001 \u2192 0.01" and rows[2][8] == "first run"


def test_selected_runs_overlay_their_curves_and_settings_side_by_side(qtbot, window, ui_env):
    _r, compare, (first, second, third) = _open(qtbot, window, ui_env)
    _click_row(qtbot, compare.table, 0)
    _click_row(qtbot, compare.table, 2, ctrl=True)
    assert window.project.runs and compare.view.selected == [third, first]
    names = [name for name, _acc, _loss in compare.curves]
    assert names == [third.name, first.name]
    xs, ys = compare.curves[1][1].getData()
    assert list(xs) == [1.0, 2.0] and np.allclose(ys, [0.5, 0.625])
    assert np.allclose(compare.curves[0][2].getData()[1], [0.75])  # loss = 1 - acc
    assert compare.settings_rows() == [["layers.head_lr", "0.01", "0.001"], ["train.epochs", "4", "10"]]
    t = compare.settings
    assert [t.horizontalHeaderItem(c).text() for c in range(t.columnCount())] == ["Setting", third.name, first.name]
    assert compare.settings.item(0, 2).background().style() != Qt.BrushStyle.NoBrush  # unlike the first run's
    assert compare.settings.item(0, 1).background().style() == Qt.BrushStyle.NoBrush
    assert not compare.use_btn.isEnabled()  # settings come from one run at a time


def test_double_click_shows_the_run_in_the_other_tabs(qtbot, window, ui_env):
    r, compare, (first, _second, _third) = _open(qtbot, window, ui_env)
    _click_row(qtbot, compare.table, 2, double=True)
    wait_for(qtbot, lambda: window.project.run_dir == first, 30)
    assert r.tabs.currentWidget() is r.quality


def test_use_these_settings_asks_when_unsaved_copies_and_undoes(qtbot, window, ui_env, monkeypatch):
    _r, compare, (_first, second, _third) = _open(qtbot, window, ui_env)
    p = window.project
    asked: list[str] = []
    answer = {"yes": False}
    monkeypatch.setattr(dialogs, "ask_yes_no", lambda parent, title, text: asked.append(text) or answer["yes"])
    p.set("train.batch_size", 16)  # unsaved changes
    _click_row(qtbot, compare.table, 1)
    assert compare.use_btn.isEnabled()
    qtbot.mouseClick(compare.use_btn, Qt.MouseButton.LeftButton)
    assert len(asked) == 1 and second.name in asked[0] and p.cfg.layers.head_lr == 0.001  # declined
    answer["yes"] = True
    qtbot.mouseClick(compare.use_btn, Qt.MouseButton.LeftButton)
    assert p.cfg.layers.head_lr == 0.01 and p.cfg.train.batch_size == 32 and p.cfg.output.dir == ""
    assert "layers.head_lr" in compare.note.text() and compare.undo_btn.isVisible()
    qtbot.mouseClick(compare.undo_btn, Qt.MouseButton.LeftButton)
    assert p.cfg.layers.head_lr == 0.001 and p.cfg.train.batch_size == 16 and not compare.undo_btn.isVisible()


def test_a_saved_project_takes_a_runs_settings_without_asking(qtbot, window, ui_env, monkeypatch):
    _r, compare, (_first, _second, third) = _open(qtbot, window, ui_env)
    asked: list[str] = []
    monkeypatch.setattr(dialogs, "ask_yes_no", lambda parent, title, text: asked.append(text) or True)
    assert not window.project.dirty
    _click_row(qtbot, compare.table, 0)
    qtbot.mouseClick(compare.use_btn, Qt.MouseButton.LeftButton)
    assert window.project.cfg.train.epochs == 4 and window.project.dirty and asked == []
    qtbot.mouseClick(compare.use_btn, Qt.MouseButton.LeftButton)  # now unsaved: asked, then nothing to change
    assert len(asked) == 1 and "already has" in compare.note.text()


def test_the_summary_and_the_table_agree_on_the_best_epoch_by_the_runs_metric(qtbot, window, ui_env):
    project = ui_env["tmp"] / "loss.toml"
    config_mod.save(config_mod.RunConfig(), project)
    run = _run(runs_mod.project_runs_dir(project) / "r", {"train.early_stopping_metric": "val_loss"},
               [0.5, 0.75, 0.625], time.time())
    lines = [json.dumps({"epoch": e, "val_acc": a, "val_loss": loss}) for e, a, loss in
             ((1, 0.5, 0.9), (2, 0.75, 0.6), (3, 0.625, 0.4))]  # the lowest loss is not the top accuracy
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert window.open_project(project)
    wait_for(qtbot, lambda: window.project.record is not None, 60)
    assert "<b>62.5%</b> at epoch 3" in window.results.summary.text()
    assert window.results.runs_compare.rows()[0][4] == "62.5% @3"
