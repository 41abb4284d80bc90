"""Write files so that a reader never sees half of one: temp file, fsync, rename. Below the
config and the engine (both write through it); no torch."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, BinaryIO

_UMASK = os.umask(0)  # read once at import: os.umask can only be read by setting it
os.umask(_UMASK)


def default_file_mode() -> int:
    """The permission bits a new file gets from ``open()`` under this process's umask (0o644 under
    the usual 022): what every finished file written here is given."""
    return 0o666 & ~_UMASK


def chmod_default(path: str | os.PathLike[str]) -> None:
    """Give ``path`` :func:`default_file_mode` (``mkstemp`` and some writers, e.g. safetensors,
    make files 0600)."""
    os.chmod(path, default_file_mode())


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``.

    On any error the temporary file is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    chmod_default(tmp_path)  # mkstemp makes 0600; finished files follow the umask
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_with(target: Path, writer: Callable[[BinaryIO], None]) -> None:
    """Call ``writer(fileobj)`` on a temporary file, then move it into place."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            writer(fh)


def remove_stale_parts(folder: Path, names: tuple[str, ...] | str) -> list[Path]:
    """Delete the temporary files that a killed writer (``kill -9``, power loss) left for the
    targets ``names`` in ``folder``: only our own hidden ``.NAME.*.part`` files, nothing else."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = (names,) if isinstance(names, str) else names
    found = [p for name in names for p in folder.glob(f".{name}.*.part")]
    for path in found:
        with contextlib.suppress(OSError):
            path.unlink()
    return found


def read_json_table(path: Path) -> dict:
    """A JSON object kept in a cache file, or {} when the file is missing, unreadable or not one."""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember_in_json_table(path: Path, key: str, value, keep: int = 64) -> None:
    """Set ``key`` in the cache file's JSON object, newest last, keeping the newest ``keep``
    entries; written atomically, and a failure to write is no error (a cache only saves time)."""
    import json

    data = read_json_table(path)
    data.pop(key, None)
    data[key] = value
    data = dict(list(data.items())[-keep:])
    with contextlib.suppress(OSError):
        atomic_write_text(Path(path), json.dumps(data, indent=1))
