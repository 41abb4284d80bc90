"""Calibration: one temperature fitted on the validation set, and the stored confidence threshold.

After training, :class:`Calibrate` (a part; files are written on the main rank only) reads the
best epoch's raw validation logits (``val_logits.npy``, rows as in ``val_predictions.json``, whose
``true`` labels it uses), fits the temperature T that minimises their negative log-likelihood
(:func:`transfer_gui.engine.metrics.fit_temperature`), measures the expected calibration error
before and after (:func:`transfer_gui.engine.metrics.ece`), writes ``calibration.json`` and
stores ``{"temperature", "threshold"}`` under ``"calibration"`` in ``checkpoints/best.pt`` and
``checkpoints/last.pt``. ``Predictor`` then gives ``softmax(logits / T)`` everywhere, and every
export carries T (baked into the TorchScript and ONNX graphs).

``calibration.json``: ``{"temperature", "threshold" (0.0 = none), "ece_before", "ece_after",
"fitted_on": "validation", "n"}``, plus ``"note"`` when T was kept at 1 and why: fewer than
:data:`MIN_IMAGES` validation images, only one class among them, no mistake among them (then
the likelihood keeps rising as T falls to 0, and no temperature is the right one), or a fitted T
that would raise the calibration error on those same images (the likelihood and the binned
error disagree on small sets; the app never stores a temperature that looks worse).

:func:`set_threshold` changes the threshold in ``calibration.json`` and in the checkpoints; a
run that is calibrated again (a resumed run) keeps the threshold it had.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from transfer_gui.engine import metrics
from transfer_gui.engine.checkpoint import NO_CALIBRATION, calibration_of, load_checkpoint, store_calibration
from transfer_gui.engine.events import PhaseChanged
from transfer_gui.engine.formats import CHECKPOINT_PLACES, no_checkpoint_message
from transfer_gui.engine.parts import Part, Run
from transfer_gui.engine.rundir import write_json
from transfer_gui.errors import UserError

CALIBRATION_FILE = "calibration.json"
LOGITS_FILE = "val_logits.npy"
PREDICTIONS_FILE = "val_predictions.json"
MIN_IMAGES = 20  # fewer validation images than this: keep T = 1


class CalibrationError(UserError):
    """A threshold or run folder that calibration cannot use; the message says which and what to do."""


def checkpoints_of(run_dir: Path) -> list[Path]:
    """Every checkpoint a run folder holds (best and last), where :func:`find_checkpoint` looks."""
    return [run_dir / place for place in CHECKPOINT_PLACES if (run_dir / place).is_file()]


def _why_not(logits: np.ndarray, labels: np.ndarray) -> str:
    """Why no temperature can be fitted to these validation logits, or ""."""
    n = int(labels.size)
    if n < MIN_IMAGES:
        return (f"only {n} validation image(s); at least {MIN_IMAGES} are needed to fit a temperature, "
                f"so it stays 1 (probabilities as the network gives them)")
    if not np.isfinite(logits).all():
        return "some validation logits are not finite numbers; the temperature stays 1"
    if np.unique(labels).size < 2:
        return "the validation images are all of one class; the temperature stays 1"
    if bool(np.all(logits.argmax(axis=1) == labels)):
        return ("the model classifies every validation image correctly, so any temperature below 1 looks "
                "better on it and none is the right one; the temperature stays 1")
    return ""


def fit_calibration(logits: Any, labels: Any) -> dict[str, Any]:
    """``{"temperature", "ece_before", "ece_after", "n"}`` of raw logits (N x C) and true labels,
    with ``"note"`` when the temperature is kept at 1 (see :func:`_why_not`)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    note = _why_not(logits, labels)
    if not np.isfinite(logits).all():  # no error to measure either
        return {"temperature": 1.0, "ece_before": None, "ece_after": None, "n": int(labels.size), "note": note}
    temperature = 1.0 if note else float(metrics.fit_temperature(logits, labels))
    if not (math.isfinite(temperature) and temperature > 0):
        note, temperature = f"the temperature fit gave {temperature!r}; it stays 1", 1.0
    before = metrics.ece(metrics.softmax(logits), labels)
    after = metrics.ece(metrics.softmax(logits, temperature), labels)
    if after > before:
        note = (f"the fitted temperature {temperature:.3g} would raise the calibration error on the "
                f"{labels.size} validation images ({before:.3f} -> {after:.3f}); the temperature stays 1")
        temperature, after = 1.0, before
    out: dict[str, Any] = {"temperature": temperature, "ece_before": before, "ece_after": after,
                           "n": int(labels.size)}
    if note:
        out["note"] = note
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _validation_set(run_dir: Path) -> tuple[np.ndarray, np.ndarray] | str:
    """(raw logits, true labels) of the best epoch's validation images, or why there are none."""
    logits_path, preds_path = run_dir / LOGITS_FILE, run_dir / PREDICTIONS_FILE
    preds = _read_json(preds_path)
    items = preds.get("items") if isinstance(preds, dict) else None
    if not logits_path.is_file() or not isinstance(items, list):
        return f"no validation logits ({LOGITS_FILE}) or predictions ({PREDICTIONS_FILE}); the temperature stays 1"
    try:
        logits = np.load(logits_path, allow_pickle=False)
        labels = np.asarray([int(item["true"]) for item in items], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"cannot read the validation logits ({exc}); the temperature stays 1"
    if logits.ndim != 2 or logits.shape[0] != labels.size or (labels.size and labels.max() >= logits.shape[1]):
        return (f"{LOGITS_FILE} ({'x'.join(map(str, logits.shape))}) does not match the {labels.size} images of "
                f"{PREDICTIONS_FILE}; the temperature stays 1")
    return logits, labels


def _kept_threshold(run_dir: Path, checkpoints: list[Path]) -> float:
    """The threshold already chosen for this run (calibration.json, else the checkpoint's), or 0."""
    stored = _read_json(run_dir / CALIBRATION_FILE)
    try:
        if isinstance(stored, dict) and "threshold" in stored:
            return calibration_of({"calibration": {"threshold": stored["threshold"]}})["threshold"]
        return calibration_of(load_checkpoint(checkpoints[0]))["threshold"] if checkpoints else 0.0
    except UserError:
        return NO_CALIBRATION["threshold"]


def calibrate_run(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Fit the temperature of a finished run folder, write ``calibration.json`` and store the
    calibration in its checkpoints. Returns what ``calibration.json`` now holds, or None when the
    folder has no checkpoint (nothing to calibrate: the run ended before its first epoch)."""
    folder = Path(run_dir)
    checkpoints = checkpoints_of(folder)
    if not checkpoints:
        return None
    found = _validation_set(folder)
    if isinstance(found, str):
        fitted: dict[str, Any] = {"temperature": 1.0, "ece_before": None, "ece_after": None, "n": 0, "note": found}
    else:
        fitted = fit_calibration(*found)
    threshold = _kept_threshold(folder, checkpoints)
    for path in checkpoints:
        store_calibration(path, temperature=fitted["temperature"], threshold=threshold)
    record = {"temperature": fitted["temperature"], "threshold": threshold, "ece_before": fitted["ece_before"],
              "ece_after": fitted["ece_after"], "fitted_on": "validation", "n": fitted["n"]}
    if "note" in fitted:
        record["note"] = fitted["note"]
    write_json(folder / CALIBRATION_FILE, record)
    return record


def _checked_threshold(value: Any) -> float:
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = math.nan
    if not 0.0 <= threshold <= 1.0:
        raise CalibrationError(f"confidence threshold {value!r} is not a probability: choose a value from 0 "
                               f"(always answer) to 1")
    return threshold


def set_threshold(run_dir: str | os.PathLike[str], value: float) -> None:
    """Store ``value`` as the run's confidence threshold (0.0 = none): in ``calibration.json`` and in
    every checkpoint of the run folder, each file written atomically. ``Predictor`` and every
    export made afterwards use it."""
    threshold = _checked_threshold(value)
    folder = Path(run_dir)
    checkpoints = checkpoints_of(folder)
    if not checkpoints:
        if not folder.is_dir():
            raise CalibrationError(f"run folder not found: {folder}; choose an existing run to set its threshold")
        raise CalibrationError(no_checkpoint_message(folder))
    stored = [store_calibration(path, threshold=threshold) for path in checkpoints]
    record = _read_json(folder / CALIBRATION_FILE)
    if not isinstance(record, dict):
        record = {"temperature": stored[0]["temperature"], "ece_before": None, "ece_after": None,
                  "fitted_on": None, "n": 0, "note": "no calibration was fitted for this run"}
    record["threshold"] = threshold
    write_json(folder / CALIBRATION_FILE, record)


def summary(record: dict[str, Any]) -> str:
    """One sentence about a calibration record, for the run's log."""
    if record.get("note"):
        return f"Calibration: {record['note']}."
    return (f"Calibrated on {record['n']} validation images: temperature {record['temperature']:.3g}, "
            f"expected calibration error {record['ece_before']:.3f} -> {record['ece_after']:.3f}.")


class Calibrate(Part):
    """After the epochs: fit the temperature on the validation set (main rank only writes)."""

    def __init__(self, run_dir: Path, main: bool = True) -> None:
        self.run_dir, self.main = Path(run_dir), main

    def after_fit(self, run: Run) -> None:
        if not self.main:
            return
        record = calibrate_run(self.run_dir)
        if record is not None:
            run.emit(PhaseChanged("calibrate", summary(record)))
