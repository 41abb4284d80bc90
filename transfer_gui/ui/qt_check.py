"""A check of the installed Qt binding that the window runs at start-up.

PySide6 6.12.0 drops one reference to ``None`` on every call of a method that returns
nothing. On Python 3.12+ ``None`` is immortal and nothing happens; on 3.11 its count runs
down with every paint, and after a few minutes the interpreter aborts with "deallocating
None", taking the window with it. pyproject.toml excludes that release; this check names the
problem if such a binding is installed anyway (by hand, or by a distribution).
"""

from __future__ import annotations

import sys
from typing import Callable


def none_refs_lost(call: Callable[[], object] | None = None, n: int = 200) -> int:
    """How many references to ``None`` ``n`` calls of ``call`` lose (0 for a sound binding).
    The default call is a void method of a QtCore value type (no QApplication needed)."""
    if call is None:
        from PySide6.QtCore import QRectF

        rect = QRectF()

        def call() -> None:
            rect.setWidth(1.0)

    call()  # warm up: first calls may create caches that hold None
    before = sys.getrefcount(None)
    for _ in range(n):
        call()
    return max(0, before - sys.getrefcount(None))


def binding_problem(call: Callable[[], object] | None = None) -> str:
    """A message for the user if the Qt binding corrupts reference counts, else ""."""
    if sys.version_info >= (3, 12) and call is None:
        return ""  # None is immortal: the count cannot run out
    lost = none_refs_lost(call)
    if lost < 100:  # a few may be cached elsewhere; a defect loses one per call
        return ""
    try:
        import PySide6

        version = PySide6.__version__
    except (ImportError, AttributeError):
        version = "?"
    return (f"The installed PySide6 {version} loses a reference to None on every Qt call (a known "
            f"defect of PySide6 6.12.0 on Python {sys.version_info.major}.{sys.version_info.minor}); the "
            f"window would abort after a few minutes. Install another version: "
            f"pip install 'PySide6-Essentials!=6.12.0'")
