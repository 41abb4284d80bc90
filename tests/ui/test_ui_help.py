"""The Help menu: the guide draws the open project's own groups and the engine's schedule, the
shortcut list is read from the window's actions, and the locations are the real ones; the
application log and the handler of uncaught errors."""

from __future__ import annotations

import logging
import sys

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QColor, QKeySequence

from transfer_gui.config import RunConfig
from transfer_gui.ui import applog, help as help_pages

from .helpers import make_class_folders, wait_for


def _image(dlg, name):
    doc = dlg.browser.document()
    return doc.resource(doc.ResourceType.ImageResource.value, QUrl(f"tg:{name}"))


def test_guide_shows_the_projects_groups_frozen_and_trainable(qtbot, window, ui_env):
    w, p = window, window.project
    make_class_folders(ui_env["tmp"] / "data", {"red": 4, "blue": 4})
    w.data.add_folders([str(ui_env["tmp"] / "data")])
    wait_for(qtbot, lambda: p.groups is not None and p.groups.model == p.cfg.model.name, 120)
    qtbot.keyClick(w, Qt.Key.Key_F1)  # F1 opens it
    dlg = w.help_dialog
    assert dlg.isVisible() and dlg.windowTitle() == "Guide to transfer learning"
    text = dlg.browser.toPlainText()
    assert "Freezing" in text and "Warmup" in text and p.cfg.model.name in text
    pic = _image(dlg, "freezing")
    n = len(p.groups.names)
    assert not pic.isNull() and pic.width() >= n * 50
    # head only: the last box is coloured (trains), the first grey (frozen)
    box = pic.width() / pic.devicePixelRatio() / n
    y = int(30 * pic.devicePixelRatio())
    first = QColor(pic.pixel(int(box / 2 * pic.devicePixelRatio()), y))
    last = QColor(pic.pixel(int((pic.width() / pic.devicePixelRatio() - box / 2) * pic.devicePixelRatio()), y))
    assert first.saturation() < 40 < last.saturation()
    assert not _image(dlg, "schedule").isNull()
    dlg.close()


def test_schedule_picture_starts_at_zero_and_follows_the_engine():
    cfg = RunConfig().replace(**{"schedule.name": "constant", "schedule.warmup_steps": 50, "train.epochs": 100})
    view = help_pages.schedule_view(cfg, ["stem", "head"], {"stem"}, steps_per_epoch=1)
    img = help_pages.schedule_picture(view)
    # a constant schedule after warmup: the top of the curve is flat on the right half
    ys = []
    for x in (int(img.width() * 0.8), int(img.width() * 0.95)):
        col = [y for y in range(img.height()) if QColor(img.pixel(x, y)).alpha() > 200
               and QColor(img.pixel(x, y)).saturation() > 100]
        ys.append(min(col))
    assert abs(ys[0] - ys[1]) <= 1
    near_start = [y for y in range(img.height()) if QColor(img.pixel(40, y)).saturation() > 100
                  and QColor(img.pixel(40, y)).alpha() > 200]
    assert near_start and min(near_start) > ys[0] + 50  # warmup: starts near 0, far below the target


def _swatch_color(table, row: int) -> str:
    from transfer_gui.ui.pages.layers_page import NAME

    return table.item(row, NAME).icon().pixmap(12, 12).toImage().pixelColor(6, 6).name()


def test_guide_draws_the_open_projects_warmup_rates_and_table_colours(qtbot, window, ui_env):
    """Issue #24: the guide showed 30 warmup steps and conv_head at 1e-4 where the project had 8 and
    3e-4, with head's and blocks.6's colours swapped against the Layers table."""
    from transfer_gui import config as C

    w, p, tmp = window, window.project, ui_env["tmp"]
    make_class_folders(tmp / "data", {"red": 10, "blue": 10})
    cfg = RunConfig().replace(**{"data.folders": [str(tmp / "data")], "data.val_fraction": 0.2,
                                 "train.batch_size": 4, "train.epochs": 6, "schedule.warmup_steps": 8,
                                 "layers.train_from": "blocks.6", "layers.head_lr": 1e-3, "layers.lr_decay": 0.1,
                                 "layers.lr": {"conv_head": 3e-4}})
    C.save(cfg, tmp / "project.toml")
    assert w.open_project(tmp / "project.toml")
    w.go_to("Layers")
    wait_for(qtbot, lambda: p.groups is not None and p.groups.model == p.cfg.model.name
             and w.layers.table.rowCount() == len(p.groups.names), 120)
    wait_for(qtbot, lambda: p.split_counts()[0] > 0)  # the scan: 16 training images, 4 steps an epoch
    names = list(p.groups.names)
    assert names[-3:] == ["blocks.6", "conv_head", "head"]
    qtbot.keyClick(w, Qt.Key.Key_F1)
    dlg = w.help_dialog
    view = dlg.schedule_view
    assert (view.warmup_steps, view.steps_per_epoch, view.total_steps) == (8, 4, 24)
    assert view.frozen == tuple(names[:-3]) and list(view.curves) == ["head", "conv_head", "blocks.6"]
    assert view.rates["conv_head"] == 3e-4 and view.rates["head"] == 1e-3
    assert view.rates["blocks.6"] == 1e-3 * 0.1 ** 2  # the decay, two groups below the head
    steps, lrs = view.curves["conv_head"]
    assert steps == list(range(24))
    assert lrs[:9] == pytest.approx([3e-4 * k / 8 for k in range(9)], rel=1e-12)  # from 0, linearly, to the group's rate at step 8
    assert max(lrs) == lrs[8] and all(a >= b for a, b in zip(lrs[8:], lrs[9:]))  # then the cosine decay
    assert view.labels == ("head: 1e-3", "conv_head: 3e-4", "blocks.6: 1e-5")
    text = dlg.browser.toPlainText()
    assert "head: 1e-3, conv_head: 3e-4, blocks.6: 1e-5; 8 warmup steps of 24" in text
    # each group's colour is the Layers table's swatch, and the picture draws the curve in it
    pic = _image(dlg, "schedule")
    drawn = {pic.pixelColor(x, y).name() for x in range(pic.width()) for y in range(pic.height())
             if pic.pixelColor(x, y).alpha() == 255}
    for group, color in view.colors.items():
        row = names.index(group)
        assert color == _swatch_color(w.layers.table, row), group
        spin_text = w.layers.spins[row].text()
        assert f"{group}: {spin_text}" in view.labels  # the rate as the table shows it
        assert color in drawn, group
    assert len(set(view.colors.values())) == 3
    dlg.close()


def test_shortcut_list_is_every_action_with_a_shortcut(window):
    w = window
    w.act_shortcuts.trigger()
    text = w.help_dialog.browser.toPlainText()
    for act in w.actions():
        for key in act.shortcuts():
            assert key.toString(QKeySequence.SequenceFormat.NativeText) in text, act.text()
    assert "Start Training" in text and "Tab" in text


def test_locations_name_the_runs_folder_log_and_settings(window, ui_env):
    w = window
    w.act_locations.trigger()
    text = w.help_dialog.browser.toPlainText()
    assert str(w.project.runs_dir()) in text and str(applog.log_file()) in text
    assert w.settings.fileName() in text and str(ui_env["tmp"]) in w.settings.fileName()


def test_uncaught_error_is_logged_and_told_in_a_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(applog, "_state", {})
    logger = logging.getLogger(applog.LOGGER)
    before = list(logger.handlers)
    shown = []
    old_hook = sys.excepthook
    try:
        path = applog.setup_logging()
        assert path is not None and str(path).startswith(str(tmp_path))
        applog.install_excepthook(shown.append)
        try:
            raise RuntimeError("the disk said no\nsecond line")
        except RuntimeError:
            sys.excepthook(*sys.exc_info())
        assert shown == [f"Something went wrong: RuntimeError: the disk said no. The details are in {path}. "
                         f"Your project and runs are not affected."]
        for h in logger.handlers:
            h.flush()
        logged = path.read_text()
        assert "Traceback" in logged and "the disk said no" in logged
    finally:
        sys.excepthook = old_hook
        import threading

        threading.excepthook = threading.__excepthook__
        for h in logger.handlers[:]:
            if h not in before:
                logger.removeHandler(h)
                h.close()
