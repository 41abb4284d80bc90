"""Soak: 100 start/stop cycles of short runs in the window leak no threads and little memory;
closing the window at any moment returns promptly."""

from __future__ import annotations

import os
import threading
import time

import pytest
from PySide6.QtCore import QCoreApplication, QEvent

from .helpers import close_window, new_window, wait_for


pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CYCLES = int(os.environ.get("TRANSFER_GUI_SOAK_CYCLES", "100"))


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _prepare(qtbot, w, tmp):
    w.data.load_sample()
    wait_for(qtbot, lambda: w.project.scan is not None)
    w.project.update({"data.image_size": 32, "model.name": "resnet18", "model.weights": "none",
                      "train.epochs": 50, "train.batch_size": 16, "train.feature_cache": "off",
                      "layers.train_from": "layer4", "output.dir": str(tmp / "soak-run")})


def test_hundred_start_stop_cycles(qtbot, ui_env):
    from transfer_gui.engine.events import BatchEnd

    w = new_window(qtbot, ui_env["settings"])
    _prepare(qtbot, w, ui_env["tmp"])
    ui_env["answers"]["yes_no"] = True  # "train into the same folder again?"
    marks = {}
    stop_points = ("at once", "first batch", "few batches")
    seen = {"batches": 0}
    for cycle in range(CYCLES):
        seen["batches"] = 0
        w.training.start()
        assert w.training.is_running()
        point = stop_points[cycle % 3]
        if point != "at once":
            need = 1 if point == "first batch" else 4
            conn = w.training.run.event.connect(
                lambda e: isinstance(e, BatchEnd) and seen.__setitem__("batches", seen["batches"] + 1))
            wait_for(qtbot, lambda: seen["batches"] >= need or not w.training.is_running(), 60)
            w.training.run.event.disconnect(conn)
        t0 = time.perf_counter()
        w.training.stop()
        wait_for(qtbot, lambda: not w.training.is_running(), 60)
        assert time.perf_counter() - t0 < 30
        assert w.training.last_finished is not None and w.training.last_finished.status in ("stopped", "completed")
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)  # free the run's objects
        if cycle == 9:
            marks["start"] = (_rss_mb(), threading.active_count())
        if cycle % 10 == 9:
            print(f"cycle {cycle + 1}: RSS {_rss_mb():.0f} MB")
    rss, threads = _rss_mb(), threading.active_count()
    print(f"\nsoak: {CYCLES} cycles; RSS {marks['start'][0]:.0f} MB after 10 -> {rss:.0f} MB after {CYCLES}; "
          f"threads {marks['start'][1]} -> {threads}")
    assert threads <= marks["start"][1] + 1
    assert rss - marks["start"][0] < 100
    t0 = time.perf_counter()
    close_window(w)
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize("moment", ["preparing", "training", "paused"])
def test_closing_at_any_moment_returns_promptly(qtbot, ui_env, moment):
    from transfer_gui.engine.events import BatchEnd

    w = new_window(qtbot, ui_env["settings"])
    _prepare(qtbot, w, ui_env["tmp"])
    w.training.start()
    if moment != "preparing":
        got = []
        w.training.run.event.connect(lambda e: isinstance(e, BatchEnd) and got.append(1))
        wait_for(qtbot, lambda: got, 60)
    if moment == "paused":
        w.training.toggle_pause()
        assert w.training.is_paused()
    thread = w.training.run.qthread
    ui_env["answers"]["yes_no"] = True
    w.project.dirty = False
    t0 = time.perf_counter()
    assert w.close()
    elapsed = time.perf_counter() - t0
    assert thread.isFinished() and elapsed < 15, elapsed
    w.tasks.shutdown()
