"""The Model step (catalog search, downloads that fail or are cancelled, weights files) and the
Layers step (freezing helpers, per-group rates, the schedule preview), plus a tooltip on
every control of every step."""

from __future__ import annotations

import threading

import pyqtgraph as pg
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractButton, QAbstractItemView, QAbstractSpinBox, QComboBox,
                               QHeaderView, QLineEdit, QSlider, QTabBar, QWidget)

from transfer_gui.ui.steps import readiness

from .helpers import wait_for


def _choose(w, name: str) -> None:
    w.model.search.setText(name)
    for row in range(w.model.proxy.rowCount()):
        if w.model.proxy.index(row, 0).data() == name:
            w.model.table.setFocus()
            w.model.table.selectRow(row)  # the current row moves, as with the arrow keys
            return
    raise AssertionError(f"{name} not listed")


def test_catalog_search_and_failed_download(qtbot, window, monkeypatch):
    from transfer_gui.engine import catalog

    w = window
    w.go_to("Model")
    wait_for(qtbot, lambda: bool(w.model.specs), 60)
    header = [w.model.catalog.model.headerData(i, Qt.Orientation.Horizontal) for i in range(6)]
    assert header == ["Model", "Family", "Parameters", "Input", "ImageNet top-1", "Weights"]
    w.model.search.setText("efficientnet_lite0")
    assert w.model.proxy.rowCount() == 1
    assert w.model.proxy.index(0, 5).data() == "installed (offline)"
    w.model.search.setText("")
    w.model.offline_only.setChecked(True)
    statuses = {w.model.proxy.index(r, 5).data() for r in range(w.model.proxy.rowCount())}
    assert "needs download" not in statuses and w.model.proxy.rowCount() >= 1
    w.model.offline_only.setChecked(False)

    def no_network(name, progress=None, cancel=None):
        progress(0, 0)
        raise catalog.ModelError(f"cannot download https://x/{name}.pth: [Errno -3] Temporary failure in name "
                                 f"resolution. Without a network, use the offline model 'efficientnet_lite0' or "
                                 f"import a weights file.")

    monkeypatch.setattr(catalog, "fetch_torchvision_weights", no_network)
    _choose(w, "resnet18")
    assert w.project.cfg.model.name == "resnet18"
    assert "Download weights" in readiness(w.project, "Model")
    assert w.model.download_btn.isVisible()
    w.model.download_btn.click()
    wait_for(qtbot, lambda: "Download failed" in w.model.message.text())
    assert "offline model" in w.model.message.text() and "import a weights file" in w.model.message.text()
    assert not w.model.progress.isVisible() and w.model.download_btn.isEnabled()


def test_download_progress_and_cancel(qtbot, window, monkeypatch):
    from transfer_gui.engine import catalog

    w = window
    w.go_to("Model")
    wait_for(qtbot, lambda: bool(w.model.specs), 60)
    finished = threading.Event()

    def slow(name, progress=None, cancel=None):
        total = 50 * 2**20
        for k in range(1, 100_000):
            progress(k * 2**16, total)
            if cancel():
                finished.set()
                raise catalog.DownloadCancelled("cancelled")
            threading.Event().wait(0.002)
        raise AssertionError("not cancelled")

    monkeypatch.setattr(catalog, "fetch_torchvision_weights", slow)
    _choose(w, "resnet18")
    w.model.download_btn.click()
    wait_for(qtbot, lambda: "MB" in w.model.progress.format() and w.model.progress.value() > 0)
    assert w.model.cancel_btn.isVisible()
    w.model.cancel_btn.click()
    assert "cancelled" in w.model.message.text()
    assert finished.wait(10) and not w.model.progress.isVisible()
    # a finished download marks the model as cached
    monkeypatch.setattr(catalog, "fetch_torchvision_weights", lambda name, progress=None, cancel=None: "/tmp/w.pth")
    w.model.download_btn.click()
    wait_for(qtbot, lambda: "Downloaded" in w.model.message.text())
    assert readiness(w.project, "Model") == "" and not w.model.download_btn.isVisible()


def test_weights_file_import_good_and_bad(qtbot, window, ui_env):
    import torch

    from transfer_gui.engine import catalog

    w, tmp = window, ui_env["tmp"]
    sd = catalog.build_model("efficientnet_lite0", "none").model.state_dict()
    good = tmp / "good.pth"
    torch.save(sd, good)
    w.model.import_weights(str(good))
    wait_for(qtbot, lambda: "fits" in w.model.message.text(), 60)
    assert w.project.cfg.model.weights == str(good.resolve()) and w.model.w_file.isChecked()
    assert readiness(w.project, "Model") == ""
    bad = tmp / "bad.pth"
    torch.save({"x": torch.zeros(3)}, bad)
    w.model.import_weights(str(bad))
    wait_for(qtbot, lambda: "do not fit" in w.model.message.text(), 60)
    assert "cannot be used" in readiness(w.project, "Model")
    w.model.w_pre.setChecked(True)
    assert w.project.cfg.model.weights == "pretrained" and readiness(w.project, "Model") == ""


def test_freezing_helpers_rates_and_preview(qtbot, window):
    w, p = window, window.project
    w.data.load_sample()
    w.go_to("Layers")
    wait_for(qtbot, lambda: w.layers._info() is not None and p.scan is not None, 60)
    names = w.layers._info().names
    n = len(names)
    lp = w.layers.lr_panel
    assert len(lp.curve_data()) == 1  # head only
    w.layers.unfreeze.click()
    assert p.cfg.layers.train_from == "" and p.cfg.layers.frozen == ()
    assert all(s.isEnabled() for s in w.layers.spins)
    assert len(lp.curve_data()) == n
    assert "100.0%" in w.layers.totals.text()
    # tick one middle group: an explicit list
    w.layers.table.item(2, 0).setCheckState(Qt.CheckState.Checked)
    assert p.cfg.layers.frozen == (names[2],) and p.cfg.layers.train_from == ""
    # tick the groups before it too: it becomes "train from"
    w.layers.table.item(0, 0).setCheckState(Qt.CheckState.Checked)
    w.layers.table.item(1, 0).setCheckState(Qt.CheckState.Checked)
    assert p.cfg.layers.train_from == names[3] and p.cfg.layers.frozen == ()
    assert w.layers.slider.value() == 3
    # discriminative rates, then one group's own rate
    lp.decay.setValue(0.5)
    assert w.layers.spins[n - 2].value() == pytest.approx(p.cfg.layers.head_lr * 0.5)
    w.layers.spins[n - 3].setValue(7e-4)
    assert p.cfg.layers.lr == {names[n - 3]: pytest.approx(7e-4)}
    assert lp.reset_btn.isEnabled()
    lp.reset_btn.click()
    assert p.cfg.layers.lr == {}
    # the preview follows the schedule: step decays, warmup in steps starts at 0
    lp.sched.setCurrentText("step")
    lp.step_epochs.setValue(2)
    lp.gamma.setValue(0.5)
    lp.warmup_unit.setCurrentText("steps")
    lp.warmup.setValue(4)
    assert p.cfg.schedule.warmup_steps == 4 and p.cfg.schedule.warmup_epochs == 0
    x, y = lp.curve_data()[-1]
    assert y[0] == 0.0 and max(y) == pytest.approx(p.cfg.layers.head_lr) and y[-1] < max(y) / 4
    assert x[-1] == pytest.approx(p.cfg.train.epochs, abs=0.2)
    lp.optimizer.setCurrentText("sgd")
    assert p.cfg.optim.name == "sgd" and lp.momentum.isVisible()
    lp.wd.setValue(5e-4)
    assert p.cfg.optim.weight_decay == pytest.approx(5e-4)
    # freeze everything: the step says why it is not ready
    w.layers.head_only.click()
    assert p.cfg.layers.train_from == "head"
    w.layers.table.item(n - 1, 0).setCheckState(Qt.CheckState.Checked)
    assert "nothing would train" in readiness(p, "Layers")
    assert "Layers step" in readiness(p, "Training")


def _inside(widget, kinds) -> bool:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, kinds):
            return True
        parent = parent.parentWidget()
    return False


def test_every_control_has_a_tooltip(qtbot, window):
    w = window
    w.data.load_sample()
    wait_for(qtbot, lambda: w.layers._info() is not None and w.project.scan is not None, 60)
    controls = (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QSlider, QAbstractItemView, pg.PlotWidget)
    missing, checked = [], 0
    roots = list(w.pages.items()) + [("window", w.steps), ("window", w.back_btn), ("window", w.next_btn)]
    for name, root in roots:
        for widget in [root] + root.findChildren(QWidget):
            if not isinstance(widget, controls) or isinstance(widget, (QTabBar, QHeaderView)):
                continue
            if _inside(widget, (QAbstractSpinBox, QComboBox, QLineEdit, QTabBar)) or widget.objectName().startswith("qt_"):
                continue  # parts of Qt widgets: a spin box editor, a clear button, tab scrollers
            checked += 1
            if not widget.toolTip().strip():
                text = widget.text() if hasattr(widget, "text") else ""
                missing.append(f"{name}: {type(widget).__name__} {text!r}")
    assert checked > 60
    assert not missing, missing


def _spec(name, family="ResNet", status="download"):
    from types import SimpleNamespace

    return SimpleNamespace(name=name, family=family, params=11_000_000, input_size=224, top1=70.0,
                           weights_status=status, description=name, source="torchvision")


def test_catalog_sorts_numbers_by_value_counts_matches_and_keeps_the_highlight(qtbot):
    from PySide6.QtCore import Qt

    from transfer_gui.ui.widgets.catalog_table import CatalogTable

    t = CatalogTable()
    qtbot.addWidget(t)
    t.load([_spec(n) for n in ("resnet101", "resnet18", "resnet152", "resnet34", "vgg11", "vgg16_bn")]
           + [_spec("efficientnet_lite0", "EfficientNet", "installed")])
    t.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    names = [t.proxy.index(r, 0).data() for r in range(t.proxy.rowCount())]
    assert names == ["efficientnet_lite0", "resnet18", "resnet34", "resnet101", "resnet152", "vgg11", "vgg16_bn"]
    assert t.note.text().startswith("7 models")

    t.show_current("resnet34")
    chosen = []
    t.chosen.connect(chosen.append)
    t.search.setText("vgg")
    assert t.note.text().startswith("2 of 7 models shown")
    assert not t.table.selectionModel().hasSelection()
    t.search.clear()  # the clear button does the same
    assert t.note.text().startswith("7 models")
    rows = t.table.selectionModel().selectedRows()
    assert [r.data() for r in rows] == ["resnet34"]  # highlighted again...
    assert chosen == []  # ...without choosing anything
