"""The bridge between the engine's training loop and the window.

``EngineRun`` owns one QThread with one worker QObject in it. The worker calls a job such as
``Trainer().fit(cfg, on_event, control)``; ``on_event`` emits a Qt signal carrying the engine's
small immutable event objects, which Qt queues across to the GUI thread. Pause, resume and
stop call the ``RunControl`` directly from the GUI thread (a queued signal would never reach a
thread that is busy inside ``fit``); the loop polls it between batches. ``wait`` joins the
thread, so closing the window never leaves a run behind.
"""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from transfer_gui.engine.control import RunControl  # threading only, no torch
from transfer_gui.engine.events import Finished
from transfer_gui.errors import Cancelled, UserError

Job = Callable[[Callable[[object], None], RunControl], Any]


def fit_job(cfg) -> Job:
    """A job that trains ``cfg``; torch is imported on the worker thread, not the GUI's."""

    def job(emit, control):
        from transfer_gui.engine.loop import Trainer

        return Trainer().fit(cfg, emit, control)

    return job


def finished_from_exception(exc: BaseException, run_dir: str) -> Finished:
    """A readable Finished event for an exception a job raised (Trainer.fit catches its own;
    other jobs such as the LR finder may raise)."""
    if isinstance(exc, Cancelled):
        return Finished("stopped", "Stopped by request.", run_dir)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, UserError) and text:  # the engine's messages for problems the user can fix
        return Finished("failed", text, run_dir)
    return Finished("failed", f"{type(exc).__name__}: {text}" if text else type(exc).__name__, run_dir)


def release_memory() -> None:
    """Hand memory freed by a finished run (model, caches) back to the system, so a window
    that trains many times does not keep the high-water mark of every run (glibc only)."""
    import gc

    from transfer_gui.engine.memory import trim

    gc.collect()
    trim()


class _Worker(QObject):
    event = Signal(object)
    result = Signal(object)
    finished = Signal()

    def __init__(self, job: Job, control: RunControl, run_dir: str):
        super().__init__()
        self.job, self.control, self.run_dir = job, control, run_dir

    @Slot()
    def run(self) -> None:
        result = None
        try:
            result = self.job(self.event.emit, self.control)
        except BaseException as exc:  # noqa: BLE001 - shown as a message, never a traceback
            self.event.emit(finished_from_exception(exc, self.run_dir))
        self.result.emit(result)
        release_memory()
        self.finished.emit()


class EngineRun(QObject):
    """One run of a job on its own thread. Signals arrive on the GUI thread."""

    event = Signal(object)  # engine events, in order
    result = Signal(object)  # the job's return value (None if it failed)
    done = Signal()  # the thread has ended

    def __init__(self, job: Job, run_dir: str = "", parent: QObject | None = None):
        super().__init__(parent)
        self.control = RunControl()
        self.qthread = QThread()
        self.qthread.setObjectName("transfer_gui-engine")
        self.worker = _Worker(job, self.control, run_dir)
        self.worker.moveToThread(self.qthread)
        self.qthread.started.connect(self.worker.run)
        self.worker.event.connect(self.event)
        self.worker.result.connect(self.result)
        # quit() is thread-safe; a direct call ends the thread's event loop even while the GUI
        # thread is blocked in wait() (a queued call to the QThread object, which lives in the
        # GUI thread, would never be delivered then).
        self.worker.finished.connect(self.qthread.quit, Qt.ConnectionType.DirectConnection)
        self.qthread.finished.connect(self._ended)
        self._running = False

    def start(self) -> None:
        self._running = True
        self.qthread.start()

    def _ended(self) -> None:
        self._running = False
        self.done.emit()

    @property
    def running(self) -> bool:
        """True until every event of the run has been delivered (``done``)."""
        return self._running

    @property
    def paused(self) -> bool:
        return self.control.paused

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def stop(self) -> None:
        self.control.stop()

    def wait(self, timeout_ms: int = 60000) -> bool:
        """Stop and join the thread (used when the window closes)."""
        self.control.stop()
        ok = bool(self.qthread.wait(timeout_ms))
        if ok:
            self._running = False
        return ok
