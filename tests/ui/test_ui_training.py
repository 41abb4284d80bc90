"""The Training step beyond the happy path: a failure shows a readable message and leaves the
window usable; the learning-rate finder; closing the window while training; the device list."""

from __future__ import annotations

import pytest

from transfer_gui.ui.pages import training_page

from .helpers import wait_for

pytestmark = pytest.mark.timeout(180)


def _sample(qtbot, w, **changes):
    w.data.load_sample()
    wait_for(qtbot, lambda: w.project.scan is not None)
    w.project.update({"data.image_size": 64, **changes})


def test_failure_is_a_message_not_a_traceback(qtbot, window, ui_env):
    w, tmp = window, ui_env["tmp"]
    garbage = tmp / "weights.pth"
    garbage.write_bytes(b"this is not a weights file")
    _sample(qtbot, w, **{"model.weights": str(garbage), "train.epochs": 1, "output.dir": str(tmp / "run")})
    w.go_to("Training")
    w.training.start()
    wait_for(qtbot, lambda: not w.training.is_running(), 60)
    fin = w.training.last_finished
    assert fin.status == "failed"
    text = w.training.message.text()
    assert w.training.message.isVisible() and "Training failed" in text and "weights.pth" in text
    assert "Traceback" not in text and "Traceback" not in w.training.log.toPlainText()
    assert w.training.start_btn.isEnabled() and not w.training.stop_btn.isEnabled()
    assert not w.project.training
    # the window stays usable: fix the problem and train
    w.project.set("model.weights", "pretrained")
    w.training.start()
    assert not w.training.message.isVisible()
    wait_for(qtbot, lambda: not w.training.is_running(), 60)
    assert w.training.last_finished.status == "completed"


def test_worker_turns_an_exception_into_finished():
    from transfer_gui.engine.control import StopRequested
    from transfer_gui.ui.worker import finished_from_exception

    assert finished_from_exception(StopRequested(), "r").status == "stopped"
    from transfer_gui.engine.rules import GroupError

    f = finished_from_exception(GroupError("layers.frozen: unknown layer group 'x'"), "r")
    assert f.status == "failed" and f.message == "layers.frozen: unknown layer group 'x'"  # the user's to fix
    assert finished_from_exception(ValueError("shape mismatch"), "r").message == "ValueError: shape mismatch"
    assert finished_from_exception(RuntimeError("boom"), "r").message == "RuntimeError: boom"


def test_lr_finder_suggests_and_applies(qtbot, window):
    w = window
    if not training_page.lrfind_available():
        pytest.skip("engine without lrfind")
    _sample(qtbot, w)
    w.go_to("Training")
    w.training.lrfind_btn.click()
    assert w.training.is_running() and not w.training.start_btn.isEnabled()
    wait_for(qtbot, lambda: not w.training.is_running(), 120)
    assert "finding" not in w.training.run_bar.format().lower()  # the bars say it has ended
    assert "finished" in w.training.progress.epoch_bar.format().lower()
    dlg = w.training.lrfind_dialog
    assert dlg.isVisible()
    x, y = dlg.curve.getData()
    assert len(x) > 10
    assert dlg.plot.getPlotItem().ctrl.logXCheck.isChecked()
    dlg.use_btn.click()
    assert w.project.cfg.layers.head_lr == pytest.approx(dlg.suggestion, rel=0.01)
    assert not dlg.isVisible()


def test_closing_while_training_asks_then_stops_the_thread(qtbot, ui_env):
    from .helpers import new_window

    w = new_window(qtbot, ui_env["settings"])
    _sample(qtbot, w, **{"train.epochs": 200})
    w.training.start()
    wait_for(qtbot, lambda: len(w.training.monitor.loss) > 0, 60)
    ui_env["answers"]["yes_no"] = False
    w.project.dirty = False
    assert not w.close()
    assert w.isVisible() and w.training.is_running()
    ui_env["answers"]["yes_no"] = True
    thread = w.training.run.qthread
    assert w.close()
    assert thread.isFinished() and not w.isVisible()
    w.tasks.shutdown()


def test_device_list_names_what_exists(qtbot, window):
    w = window
    w.go_to("Training")
    wait_for(qtbot, lambda: w.training.device.count() >= 2 and w.training.settings_box.devices_loaded
             and not w.tasks.running("devices"), 30)
    values = [w.training.device.itemData(i) for i in range(w.training.device.count())]
    assert values[0] == "auto" and "cpu" in values
    import torch

    assert sum(v.startswith("cuda:") for v in values) == torch.cuda.device_count()
    w.training.device.setCurrentIndex(values.index("cpu"))
    assert w.project.cfg.train.device == "cpu"


def test_a_run_folder_in_use_is_not_overwritten_without_asking(qtbot, window, ui_env):
    w, tmp = window, ui_env["tmp"]
    used = tmp / "used"
    used.mkdir()
    (used / "config.toml").write_text("# an earlier run\n")
    _sample(qtbot, w, **{"output.dir": str(used), "train.epochs": 1})
    ui_env["answers"]["yes_no"] = False
    w.training.start()
    assert not w.training.is_running()
    assert (used / "config.toml").read_text() == "# an earlier run\n"
