"""The Data step's test set: a held-out share or a folder of its own, the figures the window
shows for it, and what the engine then holds out."""

from __future__ import annotations

import re

from transfer_gui.engine import rules
from transfer_gui.ui import dialogs

from .helpers import make_class_folders, wait_for


def _totals(w) -> str:
    return re.sub(r"<[^>]+>", "", w.data.totals.text())


def test_a_held_out_share_shows_the_engines_counts(qtbot, window, ui_env):
    w, p, tmp = window, window.project, ui_env["tmp"]
    w.data.add_folders([str(f) for f in make_class_folders(tmp / "tr", {"red": 11, "blue": 7, "green": 5})])
    wait_for(qtbot, lambda: p.scan is not None)
    box = w.data.test_set
    assert box.share_radio.isChecked() and "No test set" in box.test_info.text()
    assert "for test" not in _totals(w)
    box.test_pct.setValue(25)
    assert p.cfg.data.test_fraction == 0.25
    train, val, test = rules.split_sizes(p.class_counts(), p.cfg.data)
    assert (train, val, test) == (13, 4, 6)  # 3 + 2 + 1 held out first, then 20 % of the rest
    assert f"{train:,} for training, {val:,} for validation, {test:,} for test" in _totals(w)
    assert f"{test} test images held out" in box.test_info.text()
    assert p.split_counts() == (train, val) and p.steps_per_epoch() == -(-train // p.cfg.train.batch_size)


def test_a_test_folder_replaces_the_share_and_names_unknown_classes(qtbot, window, ui_env, monkeypatch):
    w, p, tmp = window, window.project, ui_env["tmp"]
    w.data.add_folders([str(f) for f in make_class_folders(tmp / "tr", {"red": 8, "blue": 8})])
    wait_for(qtbot, lambda: p.scan is not None)
    box = w.data.test_set
    box.test_pct.setValue(20)
    test = tmp / "test"
    make_class_folders(test, {"red": 3, "blue": 2})
    monkeypatch.setattr(dialogs, "choose_folder", lambda *a: str(test))
    box.folder_radio.setChecked(True)
    assert not box.test_pct.isEnabled() and box.test_browse.isEnabled()
    box.test_browse.click()
    assert p.cfg.data.test_folders == (str(test),) and p.cfg.data.test_fraction == 0.0
    wait_for(qtbot, lambda: "5 test images in 2 classes" in box.test_info.text())
    assert "test images from their own folder" in _totals(w)
    make_class_folders(test, {"purple": 1})
    p.set("data.test_folders", [])
    box.folder_radio.setChecked(True)
    box.test_browse.click()
    wait_for(qtbot, lambda: "purple" in box.test_info.text())
    assert box.info_text()[1]  # shown as a problem
    box.share_radio.setChecked(True)
    assert p.cfg.data.test_folders == () and box.test_pct.isEnabled()
