"""Readable and usable without a mouse: contrast of curves and texts in both themes, a visible
focus ring, tooltips that wrap, a name for every control, and the whole flow by keyboard."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication, QLabel, QPushButton, QToolTip, QWidget

from transfer_gui.ui import access, theme

from .helpers import make_class_folders, wait_for

THEMES = ("light", "dark")


@pytest.mark.parametrize("name", THEMES)
def test_curves_on_every_plot_stand_out_from_their_background(qtbot, window, name):
    import pyqtgraph as pg

    w = window
    w.set_theme(name)
    w.training.plots.reset(["stem", "layer4", "head"], ["layer4", "head"])
    plots = w.findChildren(pg.PlotWidget)
    assert len(plots) >= 5
    checked = 0
    for plot in plots:
        bg = plot.backgroundBrush().color()
        for curve in plot.getPlotItem().listDataItems():
            pen = curve.opts["pen"].color()
            seen = theme.blend(pen, bg, pen.alphaF())  # what a translucent line looks like
            assert theme.contrast(seen, bg) >= 3.0, (name, curve.name(), pen.name(), bg.name())
            checked += 1
    assert checked >= 8  # batch and smoothed loss, epoch curves, learning rates


@pytest.mark.parametrize("name", THEMES)
def test_status_texts_and_drop_zones_stand_out(qtbot, window, name):
    w = window
    w.set_theme(name)
    pal = QApplication.palette()
    for role in ("Window", "Base"):
        bg = pal.color(getattr(pal.ColorRole, role))
        for kind, colour in theme.status_colors().items():
            assert theme.contrast(colour, bg) >= 3.0, (name, kind, role)
        for role_fg in ("Text", "WindowText", "PlaceholderText", "Link"):
            assert theme.contrast(pal.color(getattr(pal.ColorRole, role_fg)), bg) >= 3.0, (name, role_fg, role)
    css = w.results.try_it.image.styleSheet()
    border = css.split("dashed ")[1].split(";")[0]
    assert theme.contrast(border, pal.color(pal.ColorRole.Window)) >= 3.0
    for fill in (theme.status_colors()["ok"], theme.status_colors()["warn"]):  # ticks on the step badges
        assert theme.contrast(theme.text_on(fill), fill) >= 3.0


def test_readable_moves_lightness_only_as_far_as_needed():
    orange = "#E69F00"
    assert theme.contrast(orange, "#ffffff") < 3.0
    darker = theme.readable(orange, "#ffffff")
    assert theme.contrast(darker, "#ffffff") >= 3.0
    assert abs(QColor(darker).hslHueF() - QColor(orange).hslHueF()) < 0.02  # still orange
    assert theme.readable("#1d1d1f", "#ffffff") == "#1d1d1f"  # already fine: unchanged


@pytest.mark.parametrize("name", THEMES)
def test_focus_ring_is_drawn_in_the_highlight_colour(qtbot, window, name):
    w = window
    w.set_theme(name)
    box = QWidget()
    qtbot.addWidget(box)
    a, b = QPushButton("First", box), QPushButton("Second", box)
    b.move(0, 40)
    box.resize(200, 80)
    box.show()
    qtbot.waitExposed(box)
    box.activateWindow()
    b.setFocus()
    qtbot.keyClick(b, Qt.Key.Key_Tab)  # focus moved by the keyboard: the ring shows
    wait_for(qtbot, lambda: a.hasFocus())
    box.setAttribute(Qt.WidgetAttribute.WA_KeyboardFocusChange)  # as Qt marks a window once Tab is used
    focused = a.grab().toImage()
    qtbot.keyClick(a, Qt.Key.Key_Tab)
    wait_for(qtbot, lambda: b.hasFocus())
    plain = a.grab().toImage()
    hl = QColor(QApplication.palette().color(QApplication.palette().ColorRole.Highlight))

    def ring_pixels(img):
        n = 0
        for x in range(img.width()):
            for y in range(img.height()):
                c = QColor(img.pixel(x, y))
                n += abs(c.red() - hl.red()) + abs(c.green() - hl.green()) + abs(c.blue() - hl.blue()) < 60
        return n

    assert ring_pixels(focused) > 2 * (a.width() + a.height()) * 0.5  # a ring most of the way round
    assert ring_pixels(plain) < ring_pixels(focused) / 4


def test_long_tooltips_wrap_at_a_readable_width(qtbot, window):
    w = window
    # ~100 characters: narrower than the screen, so Qt alone would show it on one long line
    long_tip = ("Images per optimizer step (train.batch_size). Larger is faster on GPUs; halve it if "
                "memory runs out.")
    assert w.fontMetrics().horizontalAdvance(long_tip) < w.screen().geometry().width()
    QToolTip.showText(w.mapToGlobal(QPoint(100, 100)), long_tip, w)
    label = None

    def shown():
        nonlocal label
        label = next((x for x in QApplication.topLevelWidgets() if isinstance(x, QLabel)
                      and x.objectName() == "qtooltip_label" and x.isVisible()), None)
        return label is not None

    wait_for(qtbot, shown)
    wait_for(qtbot, lambda: label.wordWrap())
    assert label.height() > 1.8 * label.fontMetrics().height()  # two lines or more
    assert label.width() < label.fontMetrics().horizontalAdvance(long_tip)
    assert "halve it" in label.text()
    QToolTip.hideText()
    assert access.wrap_tip("short") == "short" and access.wrap_tip("<b>rich</b> " * 20).startswith("<b>")


def test_every_control_on_every_step_has_a_name(qtbot, window, ui_env):
    w, p = window, window.project
    make_class_folders(ui_env["tmp"] / "data", {"red": 4, "blue": 4})
    w.data.add_folders([str(ui_env["tmp"] / "data")])
    wait_for(qtbot, lambda: p.scan is not None and p.groups is not None and w.layers._info() is not None, 120)
    w.project.has_trained = True  # every step open
    missing = []
    for step in ("Data", "Model", "Layers", "Training", "Results", "Export"):
        w.go_to(step)
        page = w.pages[step]
        for c in page.findChildren(QWidget):
            if access.is_control(c) and not access.accessible_name(c):
                missing.append((step, type(c).__name__, c.toolTip()[:40]))
    assert missing == []


def _tab_to(qtbot, target: QWidget, limit: int = 400) -> None:
    """Press Tab until ``target`` has the focus, as a keyboard user would."""
    for _ in range(limit):
        if QApplication.focusWidget() is target:
            return
        qtbot.keyClick(QApplication.focusWidget() or target.window(), Qt.Key.Key_Tab)
    raise AssertionError(f"Tab never reaches {type(target).__name__} {target.toolTip()[:40]!r}")


def test_the_whole_flow_by_keyboard(qtbot, window, ui_env, monkeypatch):
    from transfer_gui.ui import dialogs

    w, p = window, window.project
    data = ui_env["tmp"] / "data"
    make_class_folders(data, {"red": 10, "blue": 10})
    monkeypatch.setattr(dialogs, "choose_folder", lambda *a: str(data))
    w.steps.setFocus()
    # Data: Tab to "Add folder…", Space (the folder dialog is answered)
    _tab_to(qtbot, w.data.add_btn)
    qtbot.keyClick(w.data.add_btn, Qt.Key.Key_Space)
    wait_for(qtbot, lambda: p.scan is not None and p.groups is not None, 120)
    # Model: type in the search, Tab to the table, an arrow key chooses; then random weights
    qtbot.keyClick(w, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    assert w.current_step() == "Model"
    wait_for(qtbot, lambda: w.model.catalog.model.rowCount() > 10, 120)
    _tab_to(qtbot, w.model.search)
    qtbot.keyClicks(w.model.search, "resnet18")
    _tab_to(qtbot, w.model.table)
    qtbot.keyClick(w.model.table, Qt.Key.Key_Down)
    assert p.cfg.model.name == "resnet18"
    _tab_to(qtbot, w.model.w_pre)  # Tab reaches the chosen radio button; arrows move among them
    qtbot.keyClick(w.model.w_pre, Qt.Key.Key_Down)
    assert w.model.w_none.isChecked() and p.cfg.model.weights == "none"
    p.update({"data.image_size": 32, "train.epochs": 1, "train.batch_size": 8})  # small and quick
    wait_for(qtbot, lambda: w.layers._info() is not None, 120)
    # Layers: Tab past the table to the slider; the arrow key trains one more group
    qtbot.keyClick(w, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    assert w.current_step() == "Layers"
    _tab_to(qtbot, w.layers.slider)
    qtbot.keyClick(w.layers.slider, Qt.Key.Key_Left)
    names = w.layers._info().names
    assert p.cfg.layers.train_from == names[-2]
    # Training: Ctrl+Return, then Results opens by itself
    qtbot.keyClick(w, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    out = ui_env["tmp"] / "run"
    _tab_to(qtbot, w.training.out_dir)
    qtbot.keyClicks(w.training.out_dir, str(out))
    qtbot.keyClick(w.training.out_dir, Qt.Key.Key_Tab)
    assert p.cfg.output.dir == str(out)
    qtbot.keyClick(w, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    wait_for(qtbot, lambda: w.current_step() == "Results" and p.record is not None, 180)
    # Export: type a name, Tab to Export, Space
    qtbot.keyClick(w, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    assert w.current_step() == "Export"
    w.export.set_formats(["checkpoint"])
    _tab_to(qtbot, w.export.folder)
    qtbot.keyClicks(w.export.folder, str(ui_env["tmp"] / "exported"))
    _tab_to(qtbot, w.export.name)
    qtbot.keyClicks(w.export.name, "by-keyboard")
    _tab_to(qtbot, w.export.export_btn)
    qtbot.keyClick(w.export.export_btn, Qt.Key.Key_Space)
    wait_for(qtbot, lambda: bool(w.export.reports), 120)
    assert Path(ui_env["tmp"] / "exported" / "by-keyboard.pt").is_file()
