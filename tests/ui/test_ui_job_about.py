"""File > Export as Job and Help > About."""

from __future__ import annotations

import pytest

from transfer_gui import config as C

from .helpers import wait_for


def test_export_as_job_writes_config_and_launchers(qtbot, window, ui_env):
    from transfer_gui.ui.job_dialog import JobDialog

    w = window
    w.data.load_sample()
    wait_for(qtbot, lambda: w.project.scan is not None)
    dlg = JobDialog(w.project.cfg, w)
    qtbot.addWidget(dlg)
    dlg.nodes.setValue(2)
    dlg.gpus.setValue(4)
    dlg.partition.setText("gpu")
    assert "--nnodes=2 --nproc_per_node=4" in dlg.preview.text()
    dlg.folder.setText(str(ui_env["tmp"] / "job"))
    dlg.buttons.button(dlg.buttons.StandardButton.Save).click()
    assert dlg.result() == dlg.DialogCode.Accepted
    job = ui_env["tmp"] / "job"
    cfg = C.load(job / "config.toml")
    assert cfg.data.folders == w.project.cfg.data.folders and cfg.output.dir == "run"
    assert "#SBATCH --nodes=2" in (job / "job.slurm").read_text()
    assert (job / "run_torchrun.sh").is_file()
    assert w.act_job.text().startswith("Export as")


def test_about_names_versions_and_device():
    import timm
    import torch

    from transfer_gui.ui.menus import about_text

    text = about_text()
    assert f"torch {torch.__version__}" in text and f"timm {timm.__version__}" in text
    assert "torchvision" in text and "Qt 6." in text and "Device: CPU" in text


def test_file_export_model_goes_to_the_export_step(qtbot, window):
    w = window
    assert w.current_step() != "Export"
    file_menu = w.menuBar().actions()[0].menu()
    assert w.act_export in file_menu.actions()
    assert w.act_export.shortcut().toString() == "Ctrl+E"
    w.act_export.trigger()
    wait_for(qtbot, lambda: w.current_step() == "Export")
    assert w.stack.currentWidget() is w.scrollers["Export"]
