"""Projects (new / open / save / save as / recent), the dirty flag and close prompts, QSettings,
and start-up: the window paints before torch is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from transfer_gui import config as config_mod
from transfer_gui.state.project import default_config
from transfer_gui.ui import dialogs

from .helpers import close_window, new_window

ROOT = Path(__file__).resolve().parents[2]


def test_new_project_defaults_are_the_fast_path(window):
    cfg = window.project.cfg
    assert cfg.model.name == "efficientnet_lite0" and cfg.model.weights == "pretrained"
    assert cfg.layers.train_from == "head" and not cfg.data.augment.enabled
    assert (cfg.train.epochs, cfg.train.batch_size) == (10, 32)
    assert cfg.output.dir == ""  # a new folder under the user data dir per run
    assert not window.project.dirty
    assert window.windowTitle().startswith("Untitled")


def test_save_open_round_trip_with_dirty_flag_and_recent(window, ui_env, monkeypatch):
    w, tmp = window, ui_env["tmp"]
    w.project.update({"train.epochs": 7, "layers.head_lr": 3e-4, "data.rename_classes": {"a": "b"}})
    assert w.project.dirty and w.isWindowModified()
    target = tmp / "proj"
    monkeypatch.setattr(dialogs, "save_file", lambda *a: str(target))
    assert w.save_project()  # untitled: asks for a name, adds .toml
    saved = tmp / "proj.toml"
    assert saved.is_file() and not w.project.dirty and not w.isWindowModified()
    cfg = config_mod.load(saved)  # the very file the command line reads
    assert cfg.train.epochs == 7 and cfg.layers.head_lr == 3e-4 and cfg.data.rename_classes == {"a": "b"}
    assert w.recent_files()[0] == str(saved.resolve())
    assert "proj.toml" in w.windowTitle()

    w.new_project()
    assert w.project.cfg == default_config() and w.project.path is None
    monkeypatch.setattr(dialogs, "open_file", lambda *a: str(saved))
    w.open_project_dialog()
    assert w.project.cfg.train.epochs == 7 and w.project.path == saved and not w.project.dirty
    assert w.training.epochs.value() == 7  # pages follow the opened config

    # Save writes to the same file without asking
    w.project.set("train.epochs", 9)
    monkeypatch.setattr(dialogs, "save_file", lambda *a: (_ for _ in ()).throw(AssertionError("asked")))
    assert w.save_project()
    assert config_mod.load(saved).train.epochs == 9

    # the recent menu lists it and opens it
    w._fill_recent()
    acts = [a for a in w.recent_menu.actions() if a.text() == "proj.toml"]
    assert acts
    w.project.set("train.epochs", 2)
    ui_env["answers"]["save_changes"] = dialogs.DISCARD
    acts[0].trigger()
    assert w.project.cfg.train.epochs == 9


def test_unsaved_changes_are_asked_about(window, ui_env, monkeypatch, tmp_path):
    w, answers = window, ui_env["answers"]
    w.project.set("train.epochs", 3)
    answers["save_changes"] = dialogs.CANCEL
    w.new_project()
    assert w.project.cfg.train.epochs == 3  # cancelled: nothing lost
    assert not w.close() and w.isVisible()
    answers["save_changes"] = dialogs.SAVE
    monkeypatch.setattr(dialogs, "save_file", lambda *a: str(tmp_path / "keep.toml"))
    w.new_project()
    assert (tmp_path / "keep.toml").is_file() and w.project.cfg.train.epochs == 10


def test_bad_project_file_says_why(window, ui_env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 0\n")
    assert not window.open_project(bad)
    assert "train.epochs" in ui_env["answers"]["errors"][-1]
    assert window.project.path is None


def test_settings_remember_window_and_theme(qtbot, ui_env):
    settings = ui_env["settings"]
    w = new_window(qtbot, settings, background=False)
    w.resize(1100, 700)
    w.splitter.setSizes([260, 840])
    w.set_theme("dark")
    close_window(w)
    assert settings.value("theme") == "dark"
    w2 = new_window(qtbot, settings, background=False)
    try:
        assert w2.theme_actions["dark"].isChecked()
        assert abs(w2.splitter.sizes()[0] - 260) <= 2
    finally:
        w2.set_theme("light")
        close_window(w2)


def test_window_paints_before_torch_is_imported(tmp_path):
    project = tmp_path / "p.toml"
    config_mod.save(default_config().replace(**{"train.epochs": 4}), project)
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
        app = QApplication(["x"])
        seen = {{}}
        def check():
            wins = [w for w in QApplication.topLevelWidgets() if w.isVisible() and w.inherits("QMainWindow")]
            seen["visible"] = bool(wins)
            seen["torch"] = "torch" in sys.modules
            opened(wins, 0)
        def opened(wins, k):  # the project opens after the first paint: wait for it, up to 10 s
            if wins and wins[0].project.path is None and k < 200:
                QTimer.singleShot(50, lambda: opened(wins, k + 1))
                return
            seen["title"] = wins[0].windowTitle() if wins else ""
            seen["epochs"] = wins[0].project.cfg.train.epochs if wins else None
            for w in wins:
                w.project.dirty = False
                w.close()
        QTimer.singleShot(60, check)
        from transfer_gui.ui.app import run_app
        code = run_app(["transfer-gui", {str(project)!r}])
        print("RESULT", seen["visible"], seen["torch"], seen["epochs"], repr(seen["title"]), code)
    """)
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_DATA_HOME=str(tmp_path / "data"),
               PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                         cwd=str(tmp_path))
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    assert line, out.stdout + out.stderr
    _, visible, torch_loaded, epochs, title, code = line[0].split(" ", 5)
    assert visible == "True" and torch_loaded == "False", line
    assert epochs == "4" and "p.toml" in title and code.endswith("0")


def test_an_invalid_value_is_refused_with_the_field_name(window):
    messages = []
    window.project.config_error.connect(messages.append)
    assert not window.project.set("train.epochs", 0)
    assert window.project.cfg.train.epochs == 10 and not window.project.dirty
    assert "train.epochs" in messages[0] and "train.epochs" in window.statusBar().currentMessage()
