"""Freed memory goes back to the system during the one-time frozen passes (glibc)."""

from __future__ import annotations

import sys

import pytest
import torch

from transfer_gui.engine import memory


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_trimmer_trims_at_most_once_per_interval(monkeypatch):
    now = [100.0]
    calls = []
    monkeypatch.setattr(memory, "trim", lambda: calls.append(now[0]) or True)
    t = memory.Trimmer(every_s=1.0, clock=lambda: now[0])
    for _ in range(5):  # many batches within one second: no trim
        now[0] += 0.1
        t()
    assert calls == []
    now[0] += 0.6  # 1.1 s after the start
    t()
    t()
    assert calls == [pytest.approx(101.1)] and t.count == 1
    now[0] += 2.5
    t()
    assert len(calls) == 2 and t.count == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_trim_returns_freed_heap_pages():
    assert memory.trim() is True
    # Many small blocks on the heap (below malloc's mmap threshold), then free all but one at
    # the end: the freed pages stay resident until trimmed.
    keep = []
    blocks = [bytearray(64 * 1024) for _ in range(4000)]  # ~250 MB
    for b in blocks:
        b[::4096] = b"\x01" * len(b[::4096])  # touch every page
    keep.append(blocks[-1])
    del blocks
    before = _rss_mb()
    assert memory.trim() is True
    after = _rss_mb()
    assert after < before - 100, (before, after)  # most of the 250 MB went back


def test_feature_pass_trims_while_it_runs(monkeypatch):
    from torch.utils.data import DataLoader, TensorDataset

    from transfer_gui.engine import features

    trims = []
    monkeypatch.setattr(memory, "trim", lambda: trims.append(1) or True)
    ticks = iter(range(0, 10_000, 2))  # the clock moves 2 s per call: every batch may trim
    monkeypatch.setattr(memory, "_now", lambda: float(next(ticks)))
    ds = TensorDataset(torch.randn(12, 3, 8, 8), torch.arange(12) % 2, torch.arange(12))
    fs = features.compute(torch.nn.Sequential(torch.nn.Flatten()), DataLoader(ds, batch_size=4), torch.device("cpu"),
                          None)
    assert fs.features.shape == (12, 192)
    assert len(trims) == 3  # once per batch here, as the (fake) seconds pass
