"""A day's use: a project remembers its runs and is reopened at start; a run stopped before its
first epoch never replaces the run on Results; the sidebar agrees with the pages; Export asks
for the file name; the run-folder dialog starts where the runs are."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from transfer_gui import config as config_mod
from transfer_gui.engine import runs as runs_mod
from transfer_gui.ui import dialogs
from transfer_gui.ui.steps import READY_ROLE, STEPS, readiness, summary

from .helpers import close_window, make_class_folders, new_window, wait_for

TINY = {"model.name": "resnet18", "model.weights": "none", "data.image_size": 32, "train.batch_size": 8,
        "train.epochs": 1, "data.augment.enabled": False, "layers.train_from": "head"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A project file and, in its runs folder, one real finished run (engine alone)."""
    from transfer_gui.engine.loop import Trainer

    root = tmp_path_factory.mktemp("lab")
    make_class_folders(root / "data", {"red": 12, "blue": 12})
    cfg = config_mod.RunConfig().replace(**{"data.folders": [str(root / "data")], **TINY})
    project = root / "cells.toml"
    config_mod.save(cfg, project)
    run = runs_mod.new_run_dir(runs_mod.project_runs_dir(project))
    result = Trainer().fit(cfg.replace(**{"output.dir": str(run)}))
    assert result.status == "completed", result.message
    return project, run


def _copy_project(trained, tmp: Path) -> tuple[Path, Path]:
    """A private copy of the project and its runs folder (tests change them)."""
    project, run = trained
    dest = tmp / "proj"
    shutil.copytree(project.parent, dest)
    return dest / project.name, dest / run.relative_to(project.parent)


def _fake_run(folder: Path, epochs: int, status: str, mtime: float) -> Path:
    """A run folder as the engine leaves it, without training (no checkpoint)."""
    folder.mkdir(parents=True)
    config_mod.save(config_mod.RunConfig().replace(**{"model.name": "resnet18"}), folder / "config.toml")
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "val_acc": 0.5 + i / 10}) + "\n"
                                                  for i in range(epochs)))
    (folder / "summary.json").write_text(json.dumps({"status": status}))
    os.utime(folder / "config.toml", (mtime, mtime))
    return folder


def test_run_folders_are_named_once_listed_newest_first(tmp_path):
    root = tmp_path / "runs"
    old = _fake_run(root / "a", 2, "completed", time.time() - 100)
    empty = _fake_run(root / "b", 0, "stopped", time.time())
    (root / "not-a-run").mkdir()
    runs = runs_mod.list_runs(root)
    assert [r.run_dir for r in runs] == [empty, old]
    assert runs_mod.latest_finished(runs).run_dir == old
    assert "2 epochs" in runs[1].label and "best 60.0%" in runs[1].label and "completed" in runs[1].label
    assert runs_mod.list_runs(tmp_path / "absent") == []
    first = runs_mod.new_run_dir(root)
    first.mkdir()
    second = runs_mod.new_run_dir(root)
    assert second != first and second.name.startswith(first.name) and second.name.endswith("-2")
    assert runs_mod.project_runs_dir(tmp_path / "cells.toml") == tmp_path.absolute() / "cells-runs"


def test_opening_a_project_lists_its_runs_and_shows_the_newest_finished(qtbot, window, ui_env, trained):
    w, p = window, window.project
    project, run = _copy_project(trained, ui_env["tmp"])
    empty = _fake_run(run.parent / "zz-stopped", 0, "stopped", time.time() + 10)  # newer, but no epoch
    assert w.open_project(project)
    wait_for(qtbot, lambda: p.record is not None, 60)
    assert p.run_dir == run  # not the newer run that never finished an epoch
    items = [w.results.run_list.itemData(i) for i in range(w.results.run_list.count())]
    assert items == [str(empty), str(run)]
    assert w.results.run_list.currentIndex() == 1
    assert "best accuracy" in summary(p, "Results")

    # choosing the other run in the list shows it
    w.results.run_list.setCurrentIndex(0)
    w.results.run_list.activated.emit(0)
    wait_for(qtbot, lambda: p.run_dir == empty, 30)
    assert summary(p, "Results").endswith("no finished epoch")
    assert summary(p, "Export") == "nothing to export" and readiness(p, "Export")


def test_window_reopens_the_last_project_with_its_runs(qtbot, ui_env, trained):
    project, run = _copy_project(trained, ui_env["tmp"])
    w = new_window(qtbot, ui_env["settings"])
    assert w.open_project(project)
    wait_for(qtbot, lambda: w.project.record is not None, 60)
    close_window(w)

    w2 = new_window(qtbot, ui_env["settings"])
    try:
        assert w2.project.path is None  # a window starts empty; the app restores the session
        assert w2.restore_session()
        assert w2.project.path == project and "cells.toml" in w2.windowTitle()
        wait_for(qtbot, lambda: w2.project.record is not None, 60)
        assert w2.project.run_dir == run
        w2.new_project()  # a new project is what the next start shows
        assert not w2.restore_session()
    finally:
        close_window(w2)


def test_a_run_stopped_before_its_first_epoch_keeps_the_finished_one(qtbot, window, ui_env, trained):
    w, p = window, window.project
    project, run = _copy_project(trained, ui_env["tmp"])
    assert w.open_project(project)
    wait_for(qtbot, lambda: p.record is not None and readiness(p, "Training") == "", 60)
    w.training.start()
    w.training.toggle_pause()  # paused before any batch, then stopped
    wait_for(qtbot, lambda: w.training.run.control.holding or not w.training.is_running(), 120)
    assert summary(p, "Training") == "paused" and w.training.is_paused()
    w.training.stop()
    assert summary(p, "Training") == "running…"  # stopping: no longer paused
    wait_for(qtbot, lambda: not w.training.is_running(), 120)
    assert w.training.last_finished.status == "stopped"
    wait_for(qtbot, lambda: w.results.run_list.count() == 2)  # the stopped run is listed...
    wait_for(qtbot, lambda: not w.tasks.running("load-run"))
    assert p.run_dir == run and p.record.history  # ... but the finished run is still shown
    assert summary(p, "Export") == "ready to export" and readiness(p, "Export") == ""
    assert w.export.export_btn.isEnabled()


def test_export_asks_for_the_file_name(qtbot, window, ui_env, trained, monkeypatch):
    w, p = window, window.project
    project, run = _copy_project(trained, ui_env["tmp"])
    assert w.open_project(project)
    wait_for(qtbot, lambda: p.record is not None, 60)
    w.go_to("Export")
    w.export.set_formats(["checkpoint"])
    target = ui_env["tmp"] / "out" / "cells-v1.pt"
    asked = []
    monkeypatch.setattr(dialogs, "save_file", lambda parent, title, start, filters: asked.append(start) or
                        str(target))
    w.export.folder_btn.click()
    assert asked and asked[0].endswith(f"{run.name}.pt")  # proposes a name for the one format chosen
    assert w.export.folder.text() == str(target.parent) and w.export.name.text() == "cells-v1"
    assert "cells-v1.pt" in w.export.targets.text()
    w.export.export_btn.click()
    wait_for(qtbot, lambda: bool(w.export.reports), 120)
    assert [s for s, _f, _r in w.export.reports] == ["ok"]
    assert target.is_file()
    # the same name again: asks before replacing, and No leaves the file alone
    ui_env["answers"]["yes_no"] = False
    before = target.stat().st_mtime_ns
    w.export.reports = []
    w.export.export_btn.click()
    QApplication.processEvents()
    assert w.export.reports == [] and target.stat().st_mtime_ns == before


def test_open_run_folder_starts_where_the_runs_are(window, ui_env, monkeypatch):
    w = window
    started = []
    monkeypatch.setattr(dialogs, "choose_folder", lambda parent, title, start: started.append(start) or "")
    w.act_open_run.trigger()
    root = runs_mod.user_runs_root()
    assert started == [str(root)] and root.is_dir()  # the hidden default, made visible to the dialog
    assert str(root).startswith(str(ui_env["tmp"]))


def test_sidebar_ticks_only_what_is_done(qtbot, window, ui_env):
    w, p = window, window.project

    def ticks():
        w.steps.refresh()
        return [bool(w.steps.item(i).data(READY_ROLE)) for i in range(len(STEPS))]

    assert ticks() == [False] * 6  # nothing is done before there are images
    make_class_folders(ui_env["tmp"] / "data", {"red": 6, "blue": 6})
    w.data.add_folders([str(ui_env["tmp"] / "data")])
    wait_for(qtbot, lambda: p.scan is not None and p.groups is not None, 120)
    assert ticks()[:4] == [True, True, True, True] and ticks()[4:] == [False, False]
    assert summary(p, "Export") == "after training" and summary(p, "Results") == "no run yet"


def test_a_run_started_headless_shows_up_in_the_window(qtbot, window, ui_env, trained, capsys):
    from transfer_gui import cli

    w, p = window, window.project
    project, run = _copy_project(trained, ui_env["tmp"])
    assert cli.main(["train", str(project), "--quiet"]) == 0
    printed = capsys.readouterr().out
    runs = runs_mod.list_runs(runs_mod.project_runs_dir(project))
    assert len(runs) == 2 and str(runs[0].run_dir) in printed  # beside the project, in cells-runs/
    assert w.open_project(project)
    wait_for(qtbot, lambda: p.record is not None, 60)
    assert p.run_dir == runs[0].run_dir  # the newest finished run is the headless one
    assert w.results.run_list.count() == 2
