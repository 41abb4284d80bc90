"""The application log, and what happens to an error nobody caught: it goes to the log with
its traceback, and the person sees one readable sentence and where the details are."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import time
from pathlib import Path

_LOADED = time.monotonic()

LOGGER = "transfer_gui"
_state: dict[str, object] = {}


def log_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_log_dir("transfer_gui"))


def log_file() -> Path:
    return log_dir() / "transfer_gui.log"


def setup_logging() -> Path | None:
    """Log to ``log_file()`` (1 MB, 3 old files kept); returns the file, or None when it cannot
    be written (a read-only home must not stop the window)."""
    logger = logging.getLogger(LOGGER)
    if _state.get("handler") is not None:
        return log_file()
    try:
        log_dir().mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(log_file(), maxBytes=1 << 20, backupCount=3,
                                                       encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    _state["handler"] = handler
    return log_file()


def process_age() -> float:
    """Seconds since this process started (from /proc on Linux; since this module loaded elsewhere)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _LOADED


def info(message: str) -> None:
    logging.getLogger(LOGGER).info(message)


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def install_excepthook(show) -> None:
    """Route uncaught exceptions (GUI thread and other threads) to the log and to ``show(text)``,
    which tells the user in a sentence; the window keeps running."""

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        logging.getLogger(LOGGER).error("uncaught exception", exc_info=(exc_type, exc, tb))
        where = f" The details are in {log_file()}." if _state.get("handler") is not None else ""
        try:
            show(f"Something went wrong: {describe(exc)}.{where} Your project and runs are not affected.")
        except Exception:  # noqa: BLE001 - never raise from the hook itself
            sys.__excepthook__(exc_type, exc, tb)

    def thread_hook(args):
        if args.exc_type is not SystemExit:
            hook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook
