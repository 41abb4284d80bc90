"""Latency per image of an export file at batch 1 on this machine: the median of 50 timed runs
after a few warm-up runs, the figure the Export step's table shows (``ExportReport.latency``, set
by the page's job; ``export_model`` itself does not time) so the user can choose a format, and
the int8 comparison's fp32 / int8 latencies (``quantize.QuantReport``, which ``transfer-gui
export --format onnx-int8`` prints too).

ONNX files (fp32 or int8) run in their own onnxruntime session with the asked number of intra-op
threads; the PyTorch formats run through :class:`~transfer_gui.engine.predict.Predictor` with
torch's thread count set for the measurement and restored after. The input is one fixed
preprocessed-size tensor: the time of a forward pass does not depend on the pixels.
"""

from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from transfer_gui.engine.predict import Predictor, detect_format

RUNS = 50
WARMUP = 5


@dataclass(frozen=True)
class Latency:
    """``median_ms`` per image at batch 1 over ``runs`` timed runs with ``threads`` threads."""

    median_ms: float
    runs: int
    threads: int
    backend: str  # "onnxruntime" or "pytorch"

    def words(self) -> str:
        return f"{self.median_ms:.1f} ms per image (batch 1, median of {self.runs}, {self.threads} thread(s))"


def default_threads() -> int:
    """The threads a measurement uses unless told: this machine's cores, as onnxruntime and torch
    would use by default (at least 1)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def onnx_session(path: str | os.PathLike[str], threads: int):
    """An onnxruntime CPU session of ``path`` with ``threads`` intra-op threads (one inter-op)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def time_calls(call: Callable[[], object], runs: int = RUNS, warmup: int = WARMUP) -> float:
    """The median wall time of ``call()`` in milliseconds over ``runs`` calls after ``warmup``."""
    for _ in range(max(0, warmup)):
        call()
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _input_size(path: Path, fmt: str) -> tuple[int, Predictor | None]:
    """The side of the model's input, and the Predictor to time (None for ONNX: its own session)."""
    predictor = Predictor.load(path, fmt=fmt)
    return predictor.preprocessing.input_size, (None if fmt.startswith("onnx") else predictor)


def latency(path: str | os.PathLike[str], threads: int | None = None, runs: int = RUNS, warmup: int = WARMUP,
            fmt: str | None = None) -> Latency:
    """Latency per image of the export at ``path`` (any format :class:`Predictor` loads) at batch 1."""
    p = Path(path)
    fmt = fmt or ("checkpoint" if p.is_dir() else detect_format(p))
    threads = int(threads or default_threads())
    size, predictor = _input_size(p, fmt)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32))
    if predictor is None:
        session = onnx_session(p, threads)
        first = session.get_inputs()[0]
        image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)  # onnx-rgb's input
        feed = {first.name: image if first.type == "tensor(uint8)" else x.numpy()}
        ms = time_calls(lambda: session.run(None, feed), runs, warmup)
        return Latency(ms, runs, threads, "onnxruntime")
    with torch_threads(threads):
        ms = time_calls(lambda: predictor.calibrated_logits_from_batch(x), runs, warmup)
    return Latency(ms, runs, threads, "pytorch")
