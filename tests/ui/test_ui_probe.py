"""The depth probe on the Layers step: the button runs it on a task thread with progress, the
table shows the accuracy at every group boundary, "Use this" sets layers.train_from, and Cancel
stops it."""

from __future__ import annotations

from PySide6.QtCore import Qt

from .helpers import make_class_folders, wait_for

NAME, PROBE = 1, 4  # columns of the Layers step's table


def _project(qtbot, w, tmp):
    make_class_folders(tmp / "data", {"red": 12, "green": 12, "blue": 12}, size=32)
    w.data.add_folders([str(tmp / "data")])
    w.project.update({"model.name": "resnet18", "model.weights": "none", "data.image_size": 32,
                      "data.val_fraction": 0.34, "train.batch_size": 4, "layers.train_from": "",
                      "layers.frozen": []})
    w.go_to("Layers")
    wait_for(qtbot, lambda: w.project.scan is not None and w.layers._info() is not None, 120)
    wait_for(qtbot, lambda: w.layers.probe_view.run_btn.isEnabled(), 30)


def test_probe_shows_accuracy_per_boundary_and_use_this_sets_train_from(qtbot, window, ui_env):
    w = window
    _project(qtbot, w, ui_env["tmp"])
    view, table = w.layers.probe_view, w.layers.table
    assert table.horizontalHeaderItem(PROBE).text() == "Probe" and table.item(1, PROBE).text() == ""
    view.run_btn.click()
    assert w.tasks.running("probe") and view.cancel_btn.isVisible() and not view.run_btn.isEnabled()
    wait_for(qtbot, lambda: view.use_btn.isVisible(), 180)
    result = w.layers.probe_result
    names = [table.item(r, NAME).text().split("  ")[0] for r in range(table.rowCount())]
    assert names == result.groups == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    shown = {n: table.item(r, PROBE).text() for r, n in enumerate(names)}
    assert shown["stem"] == "—"  # the image itself is not probed
    for d in result.depths:
        assert shown[d.train_from] == f"{d.val_accuracy:.1%}"
    row = names.index(result.suggestion)
    assert table.item(row, PROBE).font().bold() and not table.item(0, PROBE).font().bold()
    assert "Suggested" in view.result.text() and "tolerance" in view.result.text()
    assert w.project.cfg.layers.train_from == ""  # nothing changes until "Use this"
    view.use_btn.click()
    assert w.project.cfg.layers.train_from == result.suggestion and w.project.cfg.layers.frozen == ()
    assert w.layers.slider.value() == row
    frozen = [table.item(r, 0).checkState() == Qt.CheckState.Checked for r in range(len(names))]
    assert frozen == [r < row for r in range(len(names))]
    w.project.set("data.image_size", 40)  # other images: the figures no longer apply
    assert w.layers.probe_result is None and table.item(1, PROBE).text() == "" and not view.use_btn.isVisible()


def test_cancel_stops_the_probe(qtbot, window, ui_env):
    from transfer_gui.engine import probe as engine_probe

    w = window
    _project(qtbot, w, ui_env["tmp"])
    engine_probe._MEMORY.clear()  # the forward pass runs, batch by batch
    view = w.layers.probe_view
    seen: list = []
    view.run_btn.click()
    task = w.tasks._current["probe"]
    task.signals.progress.connect(seen.append)
    wait_for(qtbot, lambda: any(getattr(e, "phase", "") == "probe_features" for e in seen), 120)
    view.cancel_btn.click()
    assert "cancelled" in view.result.text() and view.run_btn.isEnabled() and not view.cancel_btn.isVisible()
    assert task.finished.wait(30)  # the worker stopped at its next batch
    assert w.layers.probe_result is None and not view.use_btn.isVisible()
