"""Issue #24, points 1 and 7: a second run killed with ``kill -9`` never replaces the finished run
on Results, Export or the sidebar, and the window resumes it through the engine's resume; runs
that appear, end or are killed in the runs folder while the window is open show up in the Runs
tab without a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from transfer_gui import config as config_mod
from transfer_gui.engine import runs as runs_mod
from transfer_gui.ui.steps import summary

from .helpers import make_class_folders, wait_for

EPOCHS = 12  # enough epochs that the CLI run is still training when its first epoch is seen and it is killed
TINY = {"model.name": "resnet18", "model.weights": "none", "data.image_size": 32, "train.batch_size": 8,
        "train.epochs": EPOCHS, "data.augment.enabled": False, "layers.train_from": "head"}
HOLD = ("import sys; from transfer_gui.engine import runlock; runlock.acquire(sys.argv[1]); "
        "print('locked', flush=True); sys.stdin.read()")


def _project(tmp: Path) -> Path:
    make_class_folders(tmp / "data", {"red": 12, "blue": 12})
    project = tmp / "cells.toml"
    config_mod.save(config_mod.RunConfig().replace(**{"data.folders": [str(tmp / "data")], **TINY}), project)
    return project


def _killed_cli_run(qtbot, project: Path, tmp: Path) -> Path:
    """Start ``transfer-gui train PROJECT`` in another process, wait for its first finished epoch
    in its run folder's metrics.jsonl, then ``kill -9`` it. Returns its run folder."""
    root = runs_mod.project_runs_dir(project)
    before = {p for p in root.iterdir()}
    with open(tmp / "cli.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "transfer_gui", "train", str(project), "--quiet"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        def first_epoch() -> bool:
            new = [p for p in root.iterdir() if p not in before]
            return bool(new) and bool(runs_mod.read_history(new[0])) or proc.poll() is not None

        wait_for(qtbot, first_epoch, 300)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (tmp / "cli.log").read_text()  # killed, not ended by itself
    (run,) = [p for p in root.iterdir() if p not in before]
    return run


def test_a_killed_second_run_is_offered_for_resuming_never_shown_as_the_result(qtbot, window, ui_env):
    from transfer_gui.engine.loop import Trainer

    w, p, tmp = window, window.project, ui_env["tmp"]
    project = _project(tmp)
    cfg = config_mod.load(project)
    first = runs_mod.new_run_dir(runs_mod.project_runs_dir(project))
    done = Trainer().fit(cfg.replace(**{"output.dir": str(first), "train.epochs": 2}))
    assert done.status == "completed", done.message
    second = _killed_cli_run(qtbot, project, tmp)
    killed = runs_mod.run_info(second)
    assert not (second / "summary.json").exists() and killed.state == "interrupted"
    assert 1 <= killed.epochs_done < EPOCHS and killed.resumable

    assert w.open_project(project)  # what a restart does (restore_session opens the last project)
    wait_for(qtbot, lambda: p.record is not None and not w.tasks.running("load-run"), 60)
    assert p.run_dir == first  # not the newer, unfinished run
    best = max(h["val_acc"] for h in runs_mod.read_history(first))
    assert summary(p, "Results") == f"best accuracy {best:.1%}" and summary(p, "Export") == "ready to export"
    assert first.name in w.results.summary.text() and "completed" in w.results.summary.text()
    w.go_to("Export")
    assert f"run <b>{first.name}</b>" in w.export.source.text()
    status = {row[0]: row[7] for row in w.results.runs_compare.rows()}
    assert status == {first.name: "completed", second.name: "interrupted"}

    # offered for resuming, on Results and on Training, from the epoch after its last finished one
    label = f"Resume run from epoch {killed.resume_epoch}"
    assert w.results.resume_btn.isVisibleTo(w.results) and w.results.resume_btn.text() == label
    assert f"Run {second.name} was interrupted after epoch {killed.epochs_done} of {EPOCHS}. Shown here: {first.name}, which finished." in \
        w.results.resume_note.text()
    assert w.training.resume_btn.isVisibleTo(w.training) and label in w.training.resume_btn.text()
    w.go_to("Results")
    with qtbot.waitSignal(w.training.run_finished, timeout=600_000) as finished:
        w.results.resume_btn.click()
        assert w.training.is_running() and w.current_step() == "Training"
        assert not w.training.resume_btn.isVisibleTo(w.training)
    assert finished.args == [str(second), True] and w.training.last_finished.status == "completed"
    assert [h["epoch"] for h in runs_mod.read_history(second)] == list(range(1, EPOCHS + 1))  # each once
    x = w.training.monitor.epoch_x  # the curves from epoch 1 (metrics.jsonl may be an epoch behind last.pt)
    assert x[0] == 1 and x[-1] == EPOCHS and x == sorted(set(x))
    assert json.loads((second / "summary.json").read_text())["status"] == "completed"
    wait_for(qtbot, lambda: p.run_dir == second and not w.tasks.running("load-run"), 60)
    wait_for(qtbot, lambda: {r[0]: r[7] for r in w.results.runs_compare.rows()}.get(second.name) == "completed")
    assert not w.results.resume_btn.isVisibleTo(w.results) and not w.training.resume_btn.isVisibleTo(w.training)


def _write_run(folder: Path, epochs: int, total: int, status: str | None) -> Path:
    """Into ``folder``, what the engine leaves there (no training): config, metrics, a last.pt, maybe a summary."""
    folder.mkdir(parents=True, exist_ok=True)
    config_mod.save(config_mod.RunConfig().replace(**{"model.name": "resnet18", "train.epochs": total}),
                    folder / "config.toml")
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "val_acc": 0.5}) + "\n"
                                                  for i in range(epochs)))
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.pt").write_bytes(b"x")
    if status:
        (folder / "summary.json").write_text(json.dumps({"status": status}))
    return folder


def test_the_runs_tab_follows_the_runs_folder_while_the_window_is_open(qtbot, window, ui_env):
    w, tmp = window, ui_env["tmp"]
    project = tmp / "lab" / "cells.toml"
    project.parent.mkdir()
    config_mod.save(config_mod.RunConfig(), project)
    assert w.open_project(project)
    root = runs_mod.project_runs_dir(project)
    assert not root.exists() and w.results.runs_compare.rows() == []

    def states() -> dict[str, str]:
        return {row[0]: row[7] for row in w.results.runs_compare.rows()}

    # another process starts a run: the runs folder is created, the run appears as running
    run = root / "20261208-031500"
    run.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        _write_run(run, 1, 3, None)
        wait_for(qtbot, lambda: states() == {run.name: "running"}, 30)
        assert not w.results.resume_btn.isVisibleTo(w.results)  # never offered while it trains
        # ... and is killed: no file changes, yet the window notices
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        wait_for(qtbot, lambda: states() == {run.name: "interrupted"}, 30)
        assert w.results.resume_btn.isVisibleTo(w.results)
        assert w.results.resume_btn.text() == "Resume run from epoch 2"
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # a run ends (its summary appears) and another appears beside it
    (run / "summary.json").write_text(json.dumps({"status": "stopped"}))
    other = _write_run(root / "20261208-031600", 3, 3, "completed")
    wait_for(qtbot, lambda: states() == {run.name: "stopped", other.name: "completed"}, 30)
    assert w.results.run_list.count() == 2 and w.results.tabs.tabText(4) == "Runs (2)"
    assert not w.results.runs_watcher.poll.isActive()  # no live run: nothing to poll for


def test_a_run_stopped_in_the_window_keeps_the_finished_one_shown_and_resumes(qtbot, window, ui_env):
    from transfer_gui.engine.loop import Trainer
    from transfer_gui.ui.steps import readiness

    w, p, tmp = window, window.project, ui_env["tmp"]
    project = _project(tmp)
    first = runs_mod.new_run_dir(runs_mod.project_runs_dir(project))
    done = Trainer().fit(config_mod.load(project).replace(**{"output.dir": str(first), "train.epochs": 2}))
    assert done.status == "completed", done.message
    assert w.open_project(project)
    wait_for(qtbot, lambda: p.record is not None and readiness(p, "Training") == "", 120)
    w.training.start()
    wait_for(qtbot, lambda: len(w.training.monitor.epoch_x) >= 1 or not w.training.is_running(), 300)
    w.training.stop()
    wait_for(qtbot, lambda: not w.training.is_running(), 120)
    assert w.training.last_finished.status == "stopped"  # (not completed: stopped with epochs to go)
    stopped = Path(w.training.last_finished.run_dir)
    wait_for(qtbot, lambda: w.results.run_list.count() == 2 and not w.tasks.running("load-run"))
    assert p.run_dir == first and summary(p, "Export") == "ready to export"  # the finished run stays the result
    info = runs_mod.run_info(stopped)
    assert info.state == "stopped" and info.resumable
    assert w.training.resume_btn.isVisibleTo(w.training)
    assert w.training.resume_btn.text().endswith(f"Resume run from epoch {info.resume_epoch}")
    with qtbot.waitSignal(w.training.run_finished, timeout=600_000) as finished:
        w.training.resume_btn.click()
    assert finished.args == [str(stopped), True] and w.training.last_finished.status == "completed"
    assert [h["epoch"] for h in runs_mod.read_history(stopped)] == list(range(1, EPOCHS + 1))
    wait_for(qtbot, lambda: p.run_dir == stopped and not w.tasks.running("load-run"), 60)
