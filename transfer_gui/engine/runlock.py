"""Whether a run folder is being trained right now.

The process that trains a run holds a lock on ``RUN_DIR/.training.lock`` from before it writes
``config.toml`` until after ``summary.json``. A killed process (``kill -9``, a crash, a power
cut) writes no summary, and the operating system drops its lock with it, so a reader tells a run
that is still training (locked) from one that was interrupted (no lock, no summary) without
trusting a process id that may have been reused. A second trainer is refused the folder.

POSIX record locks (``lockf``): a forked data-loader worker does not inherit them, so a killed
run is seen as interrupted at once, not when its workers notice. Within one process such a lock
is dropped when *any* descriptor of the file closes, so this process never opens a lock file it
holds (:data:`_HELD` answers for it). Without ``fcntl`` (Windows) no run counts as live. No torch.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path

from transfer_gui.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".training.lock"
_HELD: dict[str, int] = {}  # resolved run folder -> descriptor whose lock this process holds
_GUARD = threading.Lock()  # a test by one thread never opens (and so drops) a lock another thread is taking
_BUSY = (errno.EAGAIN, errno.EACCES)  # what lockf says of a lock another process holds; other errors: no locks here


class RunInUse(UserError):
    """Another process is training in the run folder."""


def _key(run_dir: str | os.PathLike[str]) -> str:
    return str(Path(run_dir).resolve())


def holder(run_dir: str | os.PathLike[str]) -> str:
    """``process 1234 on host`` from the lock file, as its holder wrote it ("another process" if unreadable)."""
    try:
        pid, host = (Path(run_dir) / LOCK_NAME).read_text(encoding="utf-8").split()[:2]
    except (OSError, ValueError):
        return "another process"
    return f"process {pid} on {host}"


def acquire(run_dir: str | os.PathLike[str], tries: int = 40, pause: float = 0.025) -> None:
    """Hold ``run_dir``'s lock for this process (again: nothing to do). A reader's test takes
    the lock for microseconds, so a busy lock is tried ``tries`` times before :class:`RunInUse`.
    A file system without locks (some network or FUSE mounts) trains unlocked: refusing every run
    there would be worse than not telling running from interrupted."""
    key = _key(run_dir)
    if fcntl is None or key in _HELD:
        return
    fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        for k in range(tries):
            got = _try_lock(key, fd)
            if got is None:
                os.close(fd)
                return
            if got:
                break
            if k == tries - 1:
                raise RunInUse(f"{run_dir} is being trained by {holder(run_dir)}; wait until that run "
                               f"ends, or choose another run folder (output.dir)")
            time.sleep(pause)
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)


def _try_lock(key: str, fd: int) -> bool | None:
    """True: locked (and registered); False: another process holds it; None: no locks on this file system."""
    with _GUARD:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            return False if exc.errno in _BUSY else None
        _HELD[key] = fd
        return True


def release(run_dir: str | os.PathLike[str]) -> None:
    """Give the lock up (the run has written its summary); nothing when this process holds none."""
    with _GUARD:
        fd = _HELD.pop(_key(run_dir), None)
    if fd is not None:
        os.close(fd)  # closing drops the process's record locks on the file


def held_here(run_dir: str | os.PathLike[str]) -> bool:
    return _key(run_dir) in _HELD


def in_use(run_dir: str | os.PathLike[str]) -> bool:
    """True while a process (this one included) trains in ``run_dir``."""
    if fcntl is None:
        return False
    with _GUARD:
        return held_here(run_dir) or _locked(run_dir)


def _locked(run_dir: str | os.PathLike[str]) -> bool:
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file: a run from before locks, or one that never started
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in _BUSY
    finally:
        os.close(fd)
    return False


def in_use_elsewhere(run_dir: str | os.PathLike[str]) -> bool:
    """Another process trains in ``run_dir`` (this process must not write its files)."""
    return not held_here(run_dir) and in_use(run_dir)
