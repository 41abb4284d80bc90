"""Run control shared between a front end and the training thread.

The front end calls these methods directly from its own thread (a queued signal would never
reach a thread busy inside ``fit``); the loop polls them between batches.
"""

from __future__ import annotations

import threading

from transfer_gui.errors import Cancelled


class StopRequested(Cancelled):
    """Raised inside the loop when a stop was asked for; caught by the trainer."""


class RunControl:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()  # set = not paused
        self._running.set()
        self._holding = threading.Event()  # set while the loop waits at a pause point

    # --- called by the front end -------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # wake a paused loop so it can see the stop

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def holding(self) -> bool:
        """True while the loop is stopped at a pause point: from then until resume, no batch
        runs. ``paused`` turns true at once; ``holding`` once the current batch has ended."""
        return self._holding.is_set()

    # --- called by the loop -----------------------------------------------------------
    def checkpoint(self) -> None:
        """Block while paused; raise StopRequested if a stop was asked for."""
        if not self._running.is_set():
            self._holding.set()
            try:
                while not self._running.wait(timeout=0.1):
                    if self._stop.is_set():
                        break
            finally:
                self._holding.clear()
        if self._stop.is_set():
            raise StopRequested()
