"""A minimal observer: ``sig.connect(fn)``, ``sig.disconnect(fn)``, ``sig.emit(*args)``.

It stands in for Qt's Signal so that the project model needs no Qt: slots are called at once,
in the order they were connected, on the thread that emits (the GUI thread; nothing here is
locked). As with a Qt signal, a slot that raises does not stop the others: the error goes to
``sys.excepthook`` (the window reports it; pytest-qt fails the test)."""

from __future__ import annotations

import sys
from typing import Any, Callable


class Signal:
    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: list[Callable[..., Any]] = []

    def connect(self, slot: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(slot):
            raise TypeError(f"cannot connect {slot!r}: not callable")
        self._slots.append(slot)
        return slot

    def disconnect(self, slot: Callable[..., Any] | None = None) -> None:
        """Remove one connection of ``slot`` (every connection when None)."""
        if slot is None:
            self._slots.clear()
        elif slot in self._slots:
            self._slots.remove(slot)
        else:
            raise ValueError(f"{slot!r} is not connected")

    def emit(self, *args: Any) -> None:
        for slot in tuple(self._slots):
            if slot not in self._slots:  # disconnected by an earlier slot of this emission
                continue
            try:
                slot(*args)
            except Exception:  # noqa: BLE001 - reported like an exception in a Qt slot
                sys.excepthook(*sys.exc_info())

    def __len__(self) -> int:
        return len(self._slots)
