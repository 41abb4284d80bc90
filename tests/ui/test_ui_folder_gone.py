"""A data folder renamed while the window trains (issue #24): the Training step says which folder
went and that the last checkpoint is kept, instead of training on without a word."""

from __future__ import annotations

import pytest

from .helpers import make_class_folders, wait_for

pytestmark = pytest.mark.timeout(240)


def test_renaming_the_data_folder_mid_run_stops_it_with_the_folders_name(qtbot, window, ui_env):
    w, tmp = window, ui_env["tmp"]
    data = tmp / "data"
    make_class_folders(data, {"red": 8, "blue": 8}, size=24)
    w.project.update({"data.folders": [str(data)], "data.image_size": 32, "model.name": "resnet18",
                      "model.weights": "none", "layers.train_from": "head", "train.epochs": 300,
                      "output.dir": str(tmp / "run")})
    wait_for(qtbot, lambda: w.project.scan is not None, 60)
    w.go_to("Training")
    w.training.start()
    wait_for(qtbot, lambda: w.training.monitor.last_epoch is not None, 120)  # an epoch ended: a checkpoint exists
    data.rename(tmp / "data-renamed")
    wait_for(qtbot, lambda: not w.training.is_running(), 120)
    fin = w.training.last_finished
    assert fin.status == "failed" and fin.epochs_done < 300
    text = w.training.message.text()
    assert w.training.message.isVisible() and f"The data folder {data} is gone" in text
    assert "checkpoint" in text and "Traceback" not in text
    assert (tmp / "run" / "checkpoints" / "last.pt").is_file()
