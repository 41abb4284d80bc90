"""Short background jobs (scanning, thumbnails, building a model, exporting) on a thread pool.

A job is a plain function ``fn(task, *args)`` that may call ``task.report(value)`` and poll
``task.cancelled``; its return value or exception comes back on the GUI thread through the
callbacks given to :meth:`TaskRunner.start`. Starting a job under a name that is already
running cancels the older one and ignores whatever it still returns, so only the latest
scan/preview/build is shown.

Jobs that build or run torch models go one at a time through a second pool (``heavy=True``):
building two models at once on two threads has crashed torch here, and on a small machine
they would only slow each other down. Scans and thumbnails run in parallel beside them.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class _Signals(QObject):
    progress = Signal(object)
    done = Signal(object)
    failed = Signal(object)


class Task(QRunnable):
    def __init__(self, fn: Callable[..., Any], args: tuple, name: str, throttle_s: float):
        super().__init__()
        self.setAutoDelete(False)
        self.fn, self.args, self.name = fn, args, name
        self.signals = _Signals()
        self._cancel = threading.Event()
        self._throttle = throttle_s
        self._last = 0.0
        self.finished = threading.Event()

    # --- called from the job ----------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def report(self, value: Any, force: bool = False) -> None:
        """Send progress to the GUI, at most ~1/throttle_s times a second unless forced."""
        now = time.monotonic()
        if force or now - self._last >= self._throttle:
            self._last = now
            if not self.cancelled:
                self.signals.progress.emit(value)

    # --- called from the GUI ------------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> None:  # worker thread
        try:
            result = self.fn(self, *self.args)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the GUI
            self.signals.failed.emit(exc)
        else:
            self.signals.done.emit(result)
        finally:
            self.finished.set()


IDLE_THREAD_EXPIRY_MS = 1000


class TaskRunner(QObject):
    """Owns a thread pool and the tasks on it; ``shutdown`` cancels and waits for all."""

    def __init__(self, parent: QObject | None = None, threads: int = 4):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self.heavy_pool = QThreadPool(self)
        self.heavy_pool.setMaxThreadCount(1)
        # A thread that ran torch operators keeps an OpenMP team of helper threads until it
        # exits. With more of those than cores, OpenMP stops spinning between parallel regions
        # and sleeps instead, and a training run started later was ~5 % slower. Idle pool
        # threads therefore exit after a second (Qt's default keeps them 30 s).
        for pool in (self.pool, self.heavy_pool):
            pool.setExpiryTimeout(IDLE_THREAD_EXPIRY_MS)
        self._current: dict[str, Task] = {}
        self._alive: set[Task] = set()
        self._closed = False

    def start(self, name: str, fn: Callable[..., Any], *args: Any,
              on_done: Callable[[Any], None] | None = None,
              on_error: Callable[[BaseException], None] | None = None,
              on_progress: Callable[[Any], None] | None = None,
              throttle_s: float = 0.05, heavy: bool = False) -> Task:
        old = self._current.get(name)
        if old is not None:
            old.cancel()
        task = Task(fn, args, name, throttle_s)
        self._current[name] = task
        self._alive.add(task)

        def latest() -> bool:
            return not self._closed and self._current.get(name) is task and not task.cancelled

        def finish() -> None:
            self._alive.discard(task)
            if self._current.get(name) is task:
                del self._current[name]

        def done(result: Any) -> None:
            ok = latest()
            finish()
            if ok and on_done is not None:
                on_done(result)

        def failed(exc: BaseException) -> None:
            ok = latest()
            finish()
            if ok and on_error is not None:
                on_error(exc)

        def progress(value: Any) -> None:
            if latest() and on_progress is not None:
                on_progress(value)

        task.signals.done.connect(done)
        task.signals.failed.connect(failed)
        task.signals.progress.connect(progress)
        (self.heavy_pool if heavy else self.pool).start(task)
        return task

    def running(self, name: str) -> bool:
        return name in self._current

    def cancel(self, name: str) -> None:
        task = self._current.pop(name, None)
        if task is not None:
            task.cancel()

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel everything, wait for the threads, and drop any result still on its way."""
        self._closed = True
        for task in list(self._alive):
            task.cancel()
        self._current.clear()
        ok = self.pool.waitForDone(timeout_ms)
        return self.heavy_pool.waitForDone(timeout_ms) and ok
