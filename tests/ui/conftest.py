"""Fixtures of the window tests (tests/ui/): isolated settings with answered dialogs, and a
window. Only these tests load Qt; the engine's tests in tests/ never do. Helpers that are not
fixtures are in ``helpers.py`` beside this file."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings

from transfer_gui.ui import dialogs, theme

from .helpers import close_window, new_window


@pytest.fixture
def ui_env(tmp_path, monkeypatch, qapp):
    """Isolated settings and data folders, answered dialogs, light theme."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    answers = {"save_changes": dialogs.DISCARD, "yes_no": True, "errors": []}
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, what: answers["save_changes"])
    monkeypatch.setattr(dialogs, "ask_yes_no", lambda parent, title, text: answers["yes_no"])
    monkeypatch.setattr(dialogs, "show_error", lambda parent, title, text: answers["errors"].append(text))

    def no_file_dialog(parent, title, *args):  # a real one would block the test until its timeout
        raise AssertionError(f"a test opened the file dialog {title!r} without answering it")

    for name in ("open_file", "open_files", "save_file", "choose_folder"):
        monkeypatch.setattr(dialogs, name, no_file_dialog)
    theme.apply_theme(qapp, "light")
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    return {"settings": settings, "answers": answers, "tmp": tmp_path}


@pytest.fixture
def window(qtbot, ui_env):
    w = new_window(qtbot, ui_env["settings"])
    yield w
    close_window(w)
