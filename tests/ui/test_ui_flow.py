"""From an empty window to an exported model, driving the real widgets: drop class folders,
choose the offline model, freeze groups, set rates and warmup, train (pause, resume, stop),
read the results, export and load the exported file."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from transfer_gui.ui.steps import readiness

from .helpers import drop_paths, make_class_folders, wait_for

pytestmark = pytest.mark.timeout(240)


def _click_row(qtbot, view, row: int) -> None:
    rect = view.visualRect(view.model().index(row, 0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def _click(qtbot, button) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_empty_window_to_exported_model(qtbot, window, ui_env):
    w, p, tmp = window, window.project, ui_env["tmp"]
    # --- an empty project: only Data is open, and it says why it is not ready
    assert w.current_step() == "Data"
    assert "Add image folders" in readiness(p, "Data")
    assert not w.steps.item(1).flags() & Qt.ItemFlag.ItemIsEnabled
    assert not w.next_btn.isEnabled()

    # --- Data: drop several class folders from the file manager
    folders = make_class_folders(tmp / "images", {"red": 14, "green": 14, "blue": 14})
    entered, dropped = drop_paths(w, folders)
    assert entered and dropped
    wait_for(qtbot, lambda: p.scan is not None)
    assert [r.name for r in w.data.table.rows] == ["blue", "green", "red"]
    assert p.class_counts() == {"blue": 14, "green": 14, "red": 14}
    assert readiness(p, "Data") == ""
    wait_for(qtbot, lambda: w.steps.item(1).flags() & Qt.ItemFlag.ItemIsEnabled)
    _click(qtbot, w.next_btn)
    assert w.current_step() == "Model"

    # --- Model: a model that needs a download is not ready; the offline model is
    wait_for(qtbot, lambda: bool(w.model.specs))
    qtbot.keyClicks(w.model.search, "resnet18")
    assert w.model.proxy.rowCount() == 1
    _click_row(qtbot, w.model.table, 0)
    assert p.cfg.model.name == "resnet18"
    assert "not on this computer" in readiness(p, "Model")
    assert w.model.download_btn.isVisible()
    w.model.search.clear()
    qtbot.keyClicks(w.model.search, "lite0")
    assert w.model.proxy.rowCount() == 1
    _click_row(qtbot, w.model.table, 0)
    assert p.cfg.model.name == "efficientnet_lite0"
    assert readiness(p, "Model") == ""
    w.model.size_spin.setValue(64)
    assert p.cfg.data.image_size == 64

    # --- Layers: train the last two groups, discriminative rates, warmup
    _click(qtbot, w.next_btn)
    assert w.current_step() == "Layers"
    wait_for(qtbot, lambda: w.layers._info() is not None)
    names = w.layers._info().names
    assert names[-1] == "head" and len(names) >= 3
    w.layers.slider.setValue(len(names) - 2)  # train conv_head and head
    assert p.cfg.layers.train_from == names[-2]
    frozen_ticks = [w.layers.table.item(r, 0).checkState() == Qt.CheckState.Checked for r in range(len(names))]
    assert frozen_ticks == [True] * (len(names) - 2) + [False, False]
    w.layers.lr_panel.head_lr.setValue(3e-3)
    w.layers.lr_panel.decay.setValue(0.5)
    assert p.cfg.layers.head_lr == pytest.approx(3e-3) and p.cfg.layers.lr_decay == pytest.approx(0.5)
    assert w.layers.spins[-2].value() == pytest.approx(1.5e-3)
    w.layers.lr_panel.warmup_unit.setCurrentText("epochs")
    w.layers.lr_panel.warmup.setValue(1.0)
    assert p.cfg.schedule.warmup_epochs == 1.0
    curves = w.layers.lr_panel.curve_data()
    assert len(curves) == 2 and all(len(x) > 2 for x, _y in curves)
    assert curves[0][1][0] == 0.0  # warmup starts at zero
    assert "Trainable:" in w.layers.totals.text()

    # --- Training: small and short
    _click(qtbot, w.next_btn)
    assert w.current_step() == "Training"
    w.training.epochs.setValue(2)
    w.training.batch.setValue(8)
    assert (p.cfg.train.epochs, p.cfg.train.batch_size) == (2, 8)

    # a first run, paused at once and stopped: nothing trains while paused
    _click(qtbot, w.training.start_btn)
    assert w.training.is_running()
    _click(qtbot, w.training.pause_btn)
    assert w.training.is_paused() and w.training.pause_btn.text() == "Resume"
    # preparation goes on until its first pause point, then waits there
    wait_for(qtbot, lambda: w.training.run.control.holding, 120)
    QApplication.processEvents()  # deliver whatever the run sent before it stopped
    assert w.training.monitor.loss == [] and w.training.is_running()
    from PySide6.QtWidgets import QProgressBar

    bars = [b for b in w.findChildren(QProgressBar) if b.isVisible()]
    assert bars and all(b.maximum() > 0 for b in bars)  # no busy bar animating behind the training
    _click(qtbot, w.training.stop_btn)
    wait_for(qtbot, lambda: not w.training.is_running(), 60)
    assert w.training.last_finished.status == "stopped"
    assert w.training.start_btn.isEnabled()
    first_run = w.training.last_finished.run_dir
    assert first_run.startswith(str(tmp / "xdg-data"))  # the default run folder

    # the real run, with pause and resume in the middle
    run_dir = tmp / "run"
    w.training.out_dir.setText(str(run_dir))
    w.training.out_dir.editingFinished.emit()
    assert p.cfg.output.dir == str(run_dir)
    _click(qtbot, w.training.start_btn)
    wait_for(qtbot, lambda: len(w.training.monitor.loss) >= 1, 60)
    _click(qtbot, w.training.pause_btn)
    wait_for(qtbot, lambda: w.training.run.control.holding, 60)  # the current batch has ended
    QApplication.processEvents()  # deliver the batches that ran before the pause point
    n_paused = len(w.training.monitor.loss)
    for _ in range(3):  # while it holds, no batch runs and none arrives
        QApplication.processEvents()
        assert w.training.run.control.holding
        assert len(w.training.monitor.loss) == n_paused
    assert "paused" in w.training.run_bar.format().lower()
    _click(qtbot, w.training.pause_btn)  # resume
    wait_for(qtbot, lambda: not w.training.is_running(), 90)
    fin = w.training.last_finished
    assert fin.status == "completed", fin.message
    lengths = w.training.plots.lengths()
    assert lengths["loss"] > 0 and lengths["loss_smooth"] == lengths["loss"]
    assert lengths["val_loss"] == 2 and lengths["val_acc"] == 2
    assert lengths[f"lr:{names[-2]}"] > 0 and lengths["lr:head"] > 0
    assert "Epoch 2/2" in w.training.log.toPlainText()

    # --- Results: opened automatically
    wait_for(qtbot, lambda: p.record is not None and str(p.record.run_dir) == str(run_dir), 30)
    wait_for(qtbot, lambda: w.current_step() == "Results")
    conf = w.results.quality.confusion.table
    assert conf.rowCount() == 3 and conf.columnCount() == 3
    total = sum(int(conf.item(i, j).text()) for i in range(3) for j in range(3))
    assert total == len(p.record.predictions) > 0
    assert w.results.quality.per_class.rowCount() == 3 and w.results.quality.averages.rowCount() == 2
    assert readiness(p, "Results") == "" and readiness(p, "Export") == ""
    # try it on an image
    w.results.try_images([str(folders[0] / "000.png")])
    wait_for(qtbot, lambda: bool(w.results.try_it.results), 60)
    assert {c for c, _p in w.results.try_it.results} <= {"blue", "green", "red"}
    assert w.results.try_it.bars[0].value() > 0

    # --- Export: checkpoint and ONNX, then load them with the Predictor
    _click(qtbot, w.next_btn)
    assert w.current_step() == "Export"
    w.export.set_formats(["checkpoint", "onnx"])
    out = tmp / "exported"
    w.export.folder.setText(str(out))
    _click(qtbot, w.export.export_btn)
    wait_for(qtbot, lambda: bool(w.export.reports), 120)
    statuses = {fmt: status for status, fmt, _r in w.export.reports}
    assert statuses == {"checkpoint": "ok", "onnx": "ok"}, w.export.reports
    onnx_report = next(r for s, f, r in w.export.reports if f == "onnx")
    assert onnx_report.parity_max_abs_diff < 1e-3 and onnx_report.parity_top1_agree == 1.0
    assert "max diff" in w.export.table.item(1, 3).text()
    assert sorted(x.suffix for x in out.iterdir()) == [".onnx", ".pt"]
    from transfer_gui.engine.predict import Predictor

    for report in (r for _s, _f, r in w.export.reports):
        top = Predictor.load(report.path).predict([str(folders[2] / "001.png")], top_k=3)[0]
        assert len(top) == 3 and top[0][0] in {"blue", "green", "red"}
