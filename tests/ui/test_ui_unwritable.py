"""The window's Save report into a folder it may not write: the engine's one sentence (the
command line's), naming the folder, not the hidden temporary file (issue #24)."""

from __future__ import annotations

import errno
import os

import pytest

from test_unwritable_folder import make_read_only
from transfer_gui.ui import dialogs

from .helpers import make_class_folders, wait_for


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from conftest import tiny_config
    from transfer_gui.engine.loop import Trainer

    root = tmp_path_factory.mktemp("report_ro")
    make_class_folders(root / "data", {"red": 8, "blue": 8})
    result = Trainer().fit(tiny_config(root / "data", root / "run", **{"train.epochs": 1}))
    assert result.status == "completed", result.message
    return root / "run"


def test_save_report_into_a_read_only_folder_names_the_folder(qtbot, window, small_run, ui_env, monkeypatch):
    w = window
    w.results.open_run(str(small_run))
    wait_for(qtbot, lambda: w.project.record is not None, 60)
    out = ui_env["tmp"] / "report"
    out.mkdir()
    make_read_only(monkeypatch, out)
    monkeypatch.setattr(dialogs, "choose_folder", lambda *a: str(out))
    w.results.report_btn.click()
    wait_for(qtbot, lambda: "cannot write" in w.results.action_note.text(), 120)
    note = w.results.action_note.text()
    assert f"cannot write the report folder {out}: {os.strerror(errno.EROFS)}. Choose another folder" in note
    assert ".part" not in note and "Errno" not in note and not list(out.iterdir())
