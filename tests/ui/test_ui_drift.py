"""The Training step's layer-group view: drift from the pretrained weights per group over the
run, and a table of the latest drift, gradient norm and warning mark; with cached features it
says that only the head trains instead of showing an empty plot."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from transfer_gui.engine import events as ev
from transfer_gui.state.run_monitor import RunMonitor
from transfer_gui.ui import theme

from .helpers import wait_for

pytestmark = pytest.mark.timeout(240)

GROUPS = ["stem", "layer1", "layer2", "layer3", "layer4", "head"]


def _monitor(feature_cache: bool = False) -> RunMonitor:
    m = RunMonitor()
    m.ingest(ev.RunStarted("r", "cpu", "fp32", ["a", "b"], GROUPS, GROUPS[3:], 10, 4, 4, 10, 40, feature_cache))
    return m


def _stats(step: int, flags=None) -> ev.GroupStats:
    return ev.GroupStats((step - 1) // 10, step, {"layer3": 0.002 * step, "layer4": 0.001 * step},
                         {"layer3": 1e-9, "layer4": 0.25, "head": 1.5}, {"head": 1.0 + 0.01 * step}, flags or {})


@pytest.fixture
def view(qtbot):
    from transfer_gui.ui.widgets.train_plots import GroupView

    v = GroupView()
    v.resize(320, 520)
    qtbot.addWidget(v)
    v.show()
    return v


def test_table_and_plot_follow_the_measurements(view):
    m = _monitor()
    view.update_from(m)
    assert view.note.isVisible() and view.rows() == []  # nothing measured yet: it says what will come
    for step in (1, 6, 11):
        m.ingest(_stats(step))
    view.update_from(m)
    assert not view.note.isVisible() and view.plot.isVisible()
    assert view.rows() == [["layer3", "2.20%", "1.00e-09", ""], ["layer4", "1.10%", "2.50e-01", ""],
                           ["head", "×1.11", "1.50e+00", ""]]
    x, y = view.curves["layer3"].getData()
    assert list(x) == pytest.approx([0.1, 0.6, 1.1]) and list(y) == pytest.approx([0.2, 1.2, 2.2])  # percent
    assert set(view.curves) == {"layer3", "layer4"}  # the head has no pretrained weights to drift from
    m.ingest(_stats(16, {"layer3": "no_gradient"}))
    view.update_from(m)
    row = view.rows()[0]
    assert row[0] == "layer3" and row[3] == "⚠"
    assert "freeze" in view.table.item(0, 3).toolTip() and "layers.train_from" in view.table.item(0, 3).toolTip()
    for col in range(4):  # every column says what it means
        assert len(view.table.horizontalHeaderItem(col).toolTip()) > 40
    assert "pretrained" in view.plot.toolTip() and "pretrained" in view.table.item(2, 1).toolTip()


def test_cached_features_say_only_the_head_trains(view):
    m = _monitor(feature_cache=True)
    m.ingest(ev.GroupStats(0, 1, {}, {"head": 0.8}, {"head": 1.0}))
    view.update_from(m)
    assert not view.plot.isVisible() and view.note.isVisible()
    assert "Only the head trains" in view.note.text() and "computed once" in view.note.text()
    assert view.rows() == [["head", "×1.00", "8.00e-01", ""]]


@pytest.mark.parametrize("name", theme.THEMES)
def test_the_warning_mark_reads_in_both_themes(view, qapp, name):
    theme.apply_theme(qapp, name)
    try:
        m = _monitor()
        m.ingest(_stats(1, {"layer4": "drift"}))
        view.restyle()
        view.update_from(m)
        mark = view.table.item(1, 3)
        base = QApplication.instance().palette().color(QPalette.ColorRole.Base)
        assert mark.text() == "⚠"
        assert theme.contrast(mark.foreground().color(), base) >= theme.MIN_CONTRAST
    finally:
        theme.apply_theme(qapp, "light")


def test_a_real_run_shows_its_groups_live(qtbot, window, ui_env):
    w = window
    w.data.load_sample()
    wait_for(qtbot, lambda: w.project.scan is not None)
    w.project.update({"data.image_size": 64, "train.epochs": 1, "layers.train_from": "blocks.6",
                      "output.dir": str(ui_env["tmp"] / "run")})
    w.go_to("Training")
    w.training.start()
    wait_for(qtbot, lambda: not w.training.is_running(), 180)
    assert w.training.last_finished.status == "completed"
    gv = w.training.plots.groups_view
    assert [r[0] for r in gv.rows()] == ["blocks.6", "conv_head", "head"]
    # the window has moved on to Results: "shown" here means not hidden on its page
    assert set(gv.curves) == {"blocks.6", "conv_head"} and not gv.plot.isHidden() and gv.note.isHidden()
    assert all(r[2] != "–" for r in gv.rows())  # every group that trains has a gradient norm
    assert w.training.monitor.group_x and w.training.monitor.group_x[0] > 0
