"""How a run stands when its process is gone: the training lock (engine/runlock.py) tells a run
still training from one that was killed; which run a project shows (never an unfinished one
over a finished one) and which it offers to resume (engine/runs.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transfer_gui.engine import runlock
from transfer_gui.engine import runs as runs_mod

from test_runs import fake_run

HOLD = ("import sys; from transfer_gui.engine import runlock; runlock.acquire(sys.argv[1]); "
        "print('locked', flush=True); sys.stdin.read()")


def _holder(run_dir: Path) -> subprocess.Popen:
    """Another process that holds ``run_dir``'s training lock until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"  # blocks until the lock is held, no fixed wait
    return proc


def _with_last(run: Path) -> Path:
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"a checkpoint")
    return run


def test_a_killed_process_leaves_an_interrupted_run_that_can_be_resumed(tmp_path):
    run = _with_last(fake_run(tmp_path / "r", {"train.epochs": 5}, [(0.5, 1.0), (0.6, 0.9)], time.time()))
    proc = _holder(run)
    try:
        info = runs_mod.run_info(run)
        assert info.live and info.state == "running" and not info.resumable  # never resume a run being trained
        assert "process" in runlock.holder(run) and str(proc.pid) in runlock.holder(run)
        with pytest.raises(runlock.RunInUse, match="being trained by process"):
            runlock.acquire(run, tries=2)
        assert runlock.in_use_elsewhere(run) and not runlock.held_here(run)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    info = runs_mod.run_info(run)
    assert not info.live and info.state == "interrupted" and info.label.endswith("interrupted")
    assert info.resumable and info.resume_epoch == 3
    runlock.acquire(run)  # the folder is free again
    try:
        assert runlock.held_here(run) and runs_mod.run_info(run).state == "running"
    finally:
        runlock.release(run)
    assert not runlock.in_use(run)


@pytest.mark.parametrize("status, resumable", [("completed", False), ("early_stopped", False),
                                               ("stopped", True), ("failed", True)])
def test_only_a_run_that_ended_early_is_offered_for_resuming(tmp_path, status, resumable):
    run = _with_last(fake_run(tmp_path / "r", {"train.epochs": 5}, [(0.5, 1.0)], time.time(), {"status": status}))
    info = runs_mod.run_info(run)
    assert info.state == status and info.resumable is resumable
    (run / "checkpoints" / "last.pt").unlink()
    assert not runs_mod.run_info(run).resumable  # nothing to go on from


def test_a_run_with_every_epoch_is_not_resumed(tmp_path):
    run = _with_last(fake_run(tmp_path / "r", {"train.epochs": 2}, [(0.5, 1.0), (0.6, 0.9)], time.time()))
    assert runs_mod.run_info(run).state == "interrupted" and not runs_mod.run_info(run).resumable


def test_the_project_shows_the_newest_finished_run_never_an_unfinished_one_over_it(tmp_path):
    now = time.time()
    done = fake_run(tmp_path / "a", {}, [(0.9, 0.1)] * 3, now - 30, {"status": "completed"})
    early = fake_run(tmp_path / "b", {}, [(0.7, 0.3)] * 2, now - 20, {"status": "early_stopped"})
    killed = _with_last(fake_run(tmp_path / "c", {"train.epochs": 9}, [(0.95, 0.1)] * 4, now - 10))
    stopped = _with_last(fake_run(tmp_path / "d", {"train.epochs": 9}, [(0.99, 0.1)] * 5, now, {"status": "stopped"}))
    runs = runs_mod.list_runs(tmp_path)
    assert [r.run_dir for r in runs] == [stopped, killed, early, done]
    assert runs_mod.latest_finished(runs).run_dir == early  # better figures in c and d, but they did not finish
    assert runs_mod.latest_finished([r for r in runs if r.run_dir in (killed, stopped)]).run_dir == stopped
    # offered for resuming: the newest run, or the one shown when it can be
    assert runs_mod.resume_offer(runs, shown=early).run_dir == stopped
    assert runs_mod.resume_offer(runs, shown=killed).run_dir == killed
    assert runs_mod.resume_offer(runs[2:], shown=early) is None  # only finished runs
    assert runs_mod.resume_offer(runs[1:], shown=None).run_dir == killed
    assert runs_mod.resume_offer([], shown=None) is None


def test_resume_config_is_the_runs_own_in_its_own_folder(tmp_path):
    from transfer_gui.engine.rundir import RunFolderError

    run = fake_run(tmp_path / "r", {"train.epochs": 7, "output.dir": "/elsewhere"}, [(0.5, 1.0)], time.time())
    with pytest.raises(RunFolderError, match="no checkpoints/last.pt"):
        runs_mod.resume_config(run)
    cfg = runs_mod.resume_config(_with_last(run))
    assert cfg.output.dir == str(run) and cfg.train.epochs == 7
    with pytest.raises(RunFolderError, match="no config.toml"):
        runs_mod.resume_config(tmp_path / "absent")


def test_a_second_trainer_is_refused_the_folder_and_writes_nothing_there(image_folders, tmp_path):
    from conftest import tiny_config
    from transfer_gui.engine.loop import Trainer

    run = tmp_path / "run"
    run.mkdir()
    proc = _holder(run)
    try:
        result = Trainer().fit(tiny_config(image_folders, run))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert result.status == "failed" and result.bad_input and "being trained by process" in result.message
    assert sorted(p.name for p in run.iterdir()) == [runlock.LOCK_NAME]  # no config, no summary of ours


def test_a_resumed_run_is_running_until_it_writes_its_new_summary(image_folders, tmp_path):
    from conftest import tiny_config
    from transfer_gui.engine import events as ev
    from transfer_gui.engine.control import RunControl
    from transfer_gui.engine.loop import Trainer

    cfg = tiny_config(image_folders, tmp_path / "run", **{"train.epochs": 3})
    control = RunControl()
    first = Trainer().fit(cfg, lambda e: isinstance(e, ev.EpochEnd) and control.stop(), control)
    assert first.status == "stopped" and runs_mod.run_info(cfg.output.dir).resumable
    seen = []

    def during(e):
        if isinstance(e, ev.EpochEnd):
            info = runs_mod.run_info(cfg.output.dir)
            seen.append((info.state, (Path(cfg.output.dir) / "summary.json").exists()))

    result = Trainer().fit(runs_mod.resume_config(cfg.output.dir), during, resume=True)
    assert result.status == "completed"
    assert seen and all(s == ("running", False) for s in seen)  # the stopped run's summary is gone while it trains
    info = runs_mod.run_info(cfg.output.dir)
    assert info.state == "completed" and not info.live and not info.resumable
    assert [r["epoch"] for r in runs_mod.read_history(cfg.output.dir)] == [1, 2, 3]
    assert json.loads((Path(cfg.output.dir) / "summary.json").read_text())["status"] == "completed"


def test_the_project_reads_its_runs_again_only_when_they_changed(tmp_path):
    from transfer_gui.state.project import Project

    p = Project()
    p.save(tmp_path / "cells.toml")
    root = p.runs_dir()
    assert p.runs_to_watch() == [tmp_path.absolute()]  # no runs folder yet: where it will appear
    changed = []
    p.runs_changed.connect(lambda: changed.append(len(p.runs)))
    assert not p.reread_runs() and changed == []
    run = _with_last(fake_run(root / "a", {"train.epochs": 4}, [(0.5, 1.0)], time.time()))
    assert p.reread_runs() and changed == [1] and not p.reread_runs() and changed == [1]
    assert p.runs_to_watch() == [root, run]
    proc = _holder(run)
    try:
        assert p.reread_runs() and p.runs[0].state == "running" and p.has_live_run()
        assert not p.live_run_ended() and p.resume_offer() is None
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert p.live_run_ended() and p.reread_runs() and p.runs[0].state == "interrupted"
    assert not p.has_live_run() and p.resume_offer().run_dir == run
    p.set_training(True)
    assert p.resume_offer() is None  # not while the window trains


def test_a_file_system_without_locks_trains_unlocked_and_counts_no_run_as_live(tmp_path, monkeypatch):
    import errno

    run = fake_run(tmp_path / "r", {}, [(0.5, 1.0)], time.time())

    def no_locks(fd, how, *args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runlock.fcntl, "lockf", no_locks)
    runlock.acquire(run)  # not refused as "being trained by another process"
    assert not runlock.held_here(run) and not runlock.in_use(run)
    assert runs_mod.run_info(run).state == "interrupted"
