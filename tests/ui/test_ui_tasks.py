"""The window's background task pools: a thread that ran torch operators gives its OpenMP
helper threads back soon after it goes idle (with more OpenMP threads alive than cores, a
training run started afterwards slept between parallel regions and ran ~5 % slower)."""

from __future__ import annotations

import os
import sys

import pytest

from .helpers import wait_for


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _settled(qtbot, quiet_ms: int = 1500, max_s: float = 15) -> int:
    """The thread count once it has not changed for ``quiet_ms``."""
    import time

    t_end = time.monotonic() + max_s
    n = _threads()
    while time.monotonic() < t_end:
        qtbot.wait(quiet_ms)
        m = _threads()
        if m == n:
            return n
        n = m
    return n


def _torch_work(task) -> int:
    import torch

    torch.ones(1024, 1024).matmul(torch.ones(1024, 1024)).sum().item()  # a parallel region
    return _threads()


@pytest.mark.parametrize("heavy", [True, False])
def test_idle_pool_threads_and_their_openmp_helpers_exit(qtbot, heavy):
    import torch

    from transfer_gui.ui.tasks import TaskRunner

    if torch.get_num_threads() < 2:
        pytest.skip("torch runs single-threaded here: no OpenMP helpers to give back")
    runner = TaskRunner()
    before = _settled(qtbot)  # earlier tests' idle pool threads may still be on their way out
    seen: list[int] = []
    runner.start("work", _torch_work, heavy=heavy, on_done=seen.append)
    wait_for(qtbot, lambda: bool(seen), 60)
    assert seen[0] >= before + 2  # the pool's thread and at least one OpenMP helper of its own
    wait_for(qtbot, lambda: _threads() <= before, 10)  # all of them gone again, well before Qt's 30 s
    assert _threads() <= before
    runner.shutdown()
