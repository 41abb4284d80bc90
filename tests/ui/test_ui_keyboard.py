"""Keyboard: arrow keys in the step list, and the shortcuts for Open, Save, Start and Stop."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence

from transfer_gui.ui import dialogs

from .helpers import wait_for

CTRL = Qt.KeyboardModifier.ControlModifier


def test_arrow_keys_move_through_open_steps(qtbot, window):
    w = window
    w.steps.setFocus()
    qtbot.keyClick(w.steps, Qt.Key.Key_Down)
    assert w.current_step() == "Data"  # wizard: Model opens once Data is ready
    w.data.load_sample()
    wait_for(qtbot, lambda: w.project.scan is not None and w.steps.item(1).flags() & Qt.ItemFlag.ItemIsEnabled)
    qtbot.keyClick(w.steps, Qt.Key.Key_Down)
    assert w.current_step() == "Model"
    qtbot.keyClick(w.steps, Qt.Key.Key_Down)
    qtbot.keyClick(w.steps, Qt.Key.Key_Down)
    assert w.current_step() == "Training"
    qtbot.keyClick(w.steps, Qt.Key.Key_Down)
    assert w.current_step() == "Training"  # Results opens after a run
    qtbot.keyClick(w.steps, Qt.Key.Key_Up)
    assert w.current_step() == "Layers"
    qtbot.keyClick(w.steps, Qt.Key.Key_Home)
    assert w.current_step() == "Data"
    qtbot.keyClick(w, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    assert w.current_step() == "Model"


def test_open_and_save_shortcuts(qtbot, window, monkeypatch, tmp_path):
    w = window
    assert w.act_open.shortcut() == QKeySequence(QKeySequence.StandardKey.Open)
    assert w.act_save.shortcut() == QKeySequence(QKeySequence.StandardKey.Save)
    asked = []
    monkeypatch.setattr(dialogs, "open_file", lambda *a: asked.append("open") or "")
    qtbot.keyClick(w, Qt.Key.Key_O, CTRL)
    assert asked == ["open"]
    monkeypatch.setattr(dialogs, "save_file", lambda *a: asked.append("save") or str(tmp_path / "k.toml"))
    w.project.set("train.epochs", 5)
    qtbot.keyClick(w, Qt.Key.Key_S, CTRL)
    assert asked[-1] == "save" and (tmp_path / "k.toml").is_file() and not w.project.dirty


def test_start_and_stop_shortcuts(qtbot, window):
    w = window
    w.data.load_sample()
    wait_for(qtbot, lambda: w.project.scan is not None)
    w.project.update({"data.image_size": 64, "train.epochs": 50, "output.dir": ""})
    assert w.act_start.shortcut() == QKeySequence("Ctrl+Return")
    assert w.act_stop.shortcut() == QKeySequence("Ctrl+.")
    qtbot.keyClick(w, Qt.Key.Key_Return, CTRL)
    assert w.training.is_running() and w.current_step() == "Data"  # works from any step
    assert not w.act_start.isEnabled() and w.act_stop.isEnabled()
    wait_for(qtbot, lambda: len(w.training.monitor.loss) > 0, 60)
    qtbot.keyClick(w, Qt.Key.Key_Period, CTRL)
    wait_for(qtbot, lambda: not w.training.is_running(), 60)
    assert w.training.last_finished.status == "stopped"
    assert w.act_start.isEnabled() and not w.act_stop.isEnabled()
