"""Several formats exported one after the other, each reported as it goes: the Export step's job.

``export_formats`` writes each format with :func:`transfer_gui.engine.export.export_model`, times
it (``measure.latency``) and, asked to, writes the deploy kit beside each ONNX file. It calls
``on_progress`` with a :class:`FormatProgress` at every stage of every format and once more when
a format is finished (``status`` "ok", "error" or "cancelled", with its report or message), so a
window can show each row as soon as its file is on disk, with a time-left estimate. Why: an
export of several formats takes minutes, and a table that stays empty until the last one looks
like a hang.

An int8 file goes to its pending name (``quantize.pending_path``) until the user keeps it; one
finished after Cancel is deleted here, since nobody is left to decide on it. ``cancelled()`` is
polled at every stage: the format in progress stops before its file moves into place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from transfer_gui.engine.formats import QUANTIZED, SUFFIXES

KIT_FORMATS = ("onnx", "onnx-rgb")  # the formats deploykit.write_kit takes
# Where a format's own stages sit in its bar: export_model (load, write, check), then timing, then the kit
_EXPORT_SHARE, _TIMING_SHARE = 0.85, 0.1
_ETA_FROM = 0.05  # no estimate before this share of a format is done (the first stage says little)


@dataclass
class FormatProgress:
    """One format's progress in :func:`export_formats`."""

    index: int  # 0-based position among the formats asked for
    total: int
    format: str
    stage: str  # what is happening, in words
    fraction: float  # of this format, 0..1
    elapsed_s: float  # since this format started
    eta_s: float | None  # this format's time left; None while it cannot be guessed
    total_eta_s: float | None  # the whole export's time left, from the formats finished so far
    status: str = "running"  # then "ok", "error" or "cancelled"
    result: Any = None  # the ExportReport when "ok", the message otherwise


def time_left(elapsed_s: float, fraction: float) -> float | None:
    """The rest of a job that took ``elapsed_s`` for ``fraction`` of it, at the same pace."""
    if fraction < _ETA_FROM or fraction >= 1.0 or elapsed_s <= 0:
        return None if fraction < 1.0 else 0.0
    return elapsed_s * (1.0 - fraction) / fraction


def eta_words(seconds: float | None) -> str:
    """``about 40 s left`` / ``about 3 min left``; "estimating…" when unknown."""
    if seconds is None:
        return "estimating time left…"
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left"
    return f"about {round(seconds / 60)} min left"


class _Clock:
    """The times of one export: when the current format started, how long finished ones took."""

    def __init__(self, total: int, clock: Callable[[], float]):
        self.total, self.clock, self.took = total, clock, []
        self.start = clock()

    def begin(self) -> None:
        self.start = self.clock()

    def event(self, i: int, fmt: str, stage: str, fraction: float, status: str = "running",
              result: Any = None) -> FormatProgress:
        elapsed = self.clock() - self.start
        eta = time_left(elapsed, fraction)
        rest = self.total - i - 1
        mean = sum(self.took) / len(self.took) if self.took else None
        if status != "running":
            self.took.append(elapsed)
            total_eta = (sum(self.took) / len(self.took)) * rest
        else:
            total_eta = None if eta is None or (rest and mean is None) else eta + (mean or 0.0) * rest
        return FormatProgress(i, self.total, fmt, stage, fraction, elapsed, eta, total_eta, status, result)


def export_formats(source: str, formats: list[str], folder: str, stem: str = "", kit: bool = False,
                   on_progress: Callable[[FormatProgress], None] | None = None,
                   cancelled: Callable[[], bool] | None = None, parity_images: list | None = None,
                   clock: Callable[[], float] = time.monotonic) -> list[tuple]:
    """Export ``source`` as each of ``formats`` into ``folder`` (files named ``stem`` + suffix,
    or after the run). Returns ``(status, format, ExportReport or message)`` per format."""
    emit = on_progress or (lambda _p: None)
    stop = cancelled or (lambda: False)
    Path(folder).mkdir(parents=True, exist_ok=True)
    times, out = _Clock(len(formats), clock), []
    for i, fmt in enumerate(formats):
        times.begin()
        if stop():
            row = ("cancelled", fmt, "Cancelled before this format was written.")
        else:
            def stage(what: str, fraction: float, i=i, fmt=fmt) -> None:
                emit(times.event(i, fmt, what, fraction))

            target = Path(folder) / f"{stem}{SUFFIXES[fmt]}" if stem else Path(folder)
            row = _one_format(source, fmt, target, kit, stage, stop, parity_images)
        out.append(row)
        emit(times.event(i, fmt, "finished", 1.0, status=row[0], result=row[2]))
    return out


def _one_format(source: str, fmt: str, target: Path, kit: bool, stage: Callable[[str, float], None],
                stop: Callable[[], bool], parity_images: list | None) -> tuple:
    """One format written, timed and (for ONNX with ``kit``) packaged: ``(status, fmt, report or message)``."""
    from transfer_gui.engine import export, quantize

    try:
        if fmt in QUANTIZED:
            final = target if target.suffix else export.default_export_path(source, fmt, target)
            target = quantize.pending_path(final)
        rep = export.export_model(source, fmt, target, parity_images=parity_images, cancelled=stop,
                                  progress=lambda what, f: stage(what, _EXPORT_SHARE * f))
        if stop():
            if fmt in QUANTIZED:  # nobody is left to keep or discard it
                quantize.discard(rep.path)
                return ("cancelled", fmt, "Cancelled; the int8 file was not kept.")
            return ("ok", fmt, rep)  # written and checked before Cancel came: it stays
        stage("timing one image", _EXPORT_SHARE)
        rep.latency = _latency(rep.path, fmt)
        if kit and fmt in KIT_FORMATS and not stop():
            stage("writing the deploy kit", _EXPORT_SHARE + _TIMING_SHARE)
            _write_kit(rep)
        return ("ok", fmt, rep)
    except export.ExportCancelled:
        return ("cancelled", fmt, "Cancelled; nothing was written for this format.")
    except export.ExportError as exc:
        return ("error", fmt, str(exc))
    except ImportError as exc:
        return ("error", fmt, f"This export needs a part of the engine that is missing: {exc}")


def _latency(path: str, fmt: str):
    """``measure.Latency`` at batch 1, or None when the file cannot be timed (it is still written)."""
    from transfer_gui.engine import measure

    try:
        return measure.latency(path, fmt="onnx" if fmt in QUANTIZED else None)
    except Exception:  # noqa: BLE001 - timing is a figure for the table, not a condition of the export
        return None


def _write_kit(rep) -> None:
    from transfer_gui.engine.deploykit import write_kit
    from transfer_gui.errors import UserError

    rep.kit, rep.kit_error = None, ""
    try:
        rep.kit = str(write_kit(rep.path))
    except (UserError, OSError) as exc:
        rep.kit_error = str(exc)
