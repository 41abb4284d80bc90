"""Evaluate a trained model on a folder of class folders, or read back what a run measured, and
write the three files of a report: ``metrics.json``, ``predictions.csv`` and ``report.html``.

Both roads give one :class:`Evaluation`, so the window's *Save report* and ``transfer-gui
evaluate`` write the same files:

* :func:`evaluate_model` loads any export (``Predictor.load``), scans ``data_dir`` with the
  engine's scanner and classifies every image;
* :func:`evaluation_from_run` takes a run folder's saved ``val``/``test`` predictions (and their
  raw logits when the run wrote them).

Torch is imported only by :func:`evaluate_model` (through the Predictor); reading a run back and
writing the files need numpy and Pillow alone.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from transfer_gui.atomic import atomic_write_text
from transfer_gui.engine import metrics
from transfer_gui.engine.imageio import ImageError, open_image
from transfer_gui.errors import Cancelled, UserError

BATCH_SIZE = 32
OUTPUT_FILES = ("metrics.json", "predictions.csv", "report.html")
SPLIT_NAMES = {"val": "validation", "test": "test", "data": "data folder"}
ProgressFn = Callable[[int, int], None]  # (images done, images in all)


class EvaluationError(UserError, ValueError):
    """The model and the data do not fit together, or there is nothing to evaluate."""


class EvaluationCancelled(Cancelled):
    """``cancel()`` returned True during an evaluation."""


@dataclass
class Evaluation:
    """One evaluated set: per-image rows and the figures of :func:`metrics.report`.

    ``probs`` have ``temperature`` applied; ``logits`` are raw (None when only the stored top-5
    lists were known). ``which`` is "data" (a folder given), "val" or "test" (a run's sets).
    """

    classes: list[str]
    paths: list[str]
    labels: np.ndarray
    probs: np.ndarray
    logits: np.ndarray | None
    temperature: float
    metrics: dict
    source: str
    which: str = "data"
    data_dir: str = ""
    skipped: list[dict] = field(default_factory=list)  # {path, reason}: images that could not be read
    run_dir: Path | None = None
    config: Any = None  # the run's RunConfig when known
    history: list[dict] = field(default_factory=list)  # metrics.jsonl of the run
    calibration: dict = field(default_factory=dict)  # calibration.json of the run

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(axis=1) if len(self.paths) else np.zeros(0, dtype=np.int64)

    @property
    def confidences(self) -> np.ndarray:
        return self.probs.max(axis=1) if len(self.paths) else np.zeros(0)

    def uncalibrated_probs(self) -> np.ndarray | None:
        """Probabilities at temperature 1 (from the raw logits), or None without logits."""
        return None if self.logits is None else metrics.softmax(self.logits)


def _build(classes, paths, labels, logits, probs, temperature, **extra) -> Evaluation:
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64).reshape(len(paths), len(classes))
    return Evaluation(list(classes), [str(p) for p in paths], labels, probs, logits, float(temperature),
                      metrics.report(probs, labels, classes), **extra)


# ----------------------------------------------------------------------------- a model on a folder


def _run_dir_of(source: Path) -> Path | None:
    """The run folder behind a model path: the folder itself, or a checkpoint's run folder."""
    from transfer_gui.engine.formats import checkpoint_in

    for folder in ((source,) if source.is_dir() else (source.parent, source.parent.parent)):
        if (folder / "config.toml").is_file() and checkpoint_in(folder) is not None:
            return folder
    return None


def _run_context(source: Path) -> dict:
    """The run folder's config, history and calibration when ``source`` is part of one."""
    from transfer_gui.engine import rundir

    run_dir = _run_dir_of(source)
    if run_dir is None:
        return {}
    try:
        rec = rundir.load_run(run_dir)
    except UserError:
        return {"run_dir": run_dir}
    return {"run_dir": run_dir, "config": rec.config, "history": rec.history,
            "calibration": dict(getattr(rec, "calibration", {}) or {})}


def _labelled_samples(data_dir: str, model_classes: list[str], cancel) -> tuple[list[str], list[int], list[dict]]:
    """(paths, labels as indices of the model's classes, skipped) of the class folders in ``data_dir``."""
    from transfer_gui.engine.scan import scan_sources

    index = scan_sources([data_dir], cancel=cancel, min_classes=1)
    unknown = [name for name in index.classes if name not in model_classes]
    if unknown:
        known = ", ".join(f"'{c}'" for c in model_classes)
        raise EvaluationError(
            f"{data_dir}: the class folder '{unknown[0]}' is not a class of the model (its classes: {known}); "
            f"rename the folder to one of them or move it out of {data_dir}")
    at = {name: model_classes.index(name) for name in index.classes}
    paths = [s.path for s in index.samples]
    labels = [at[index.classes[s.label]] for s in index.samples]
    return paths, labels, [{"path": s.path, "reason": s.reason} for s in index.skipped]


def _classify(predictor, paths: list[str], progress, cancel,
              batch_size: int = BATCH_SIZE) -> tuple[list[int], np.ndarray, list[dict]]:
    """(indices of the readable paths, their raw logits, the unreadable ones), in batches."""
    kept: list[int] = []
    chunks: list[np.ndarray] = []
    skipped: list[dict] = []
    for start in range(0, len(paths), batch_size):
        if cancel is not None and cancel():
            raise EvaluationCancelled("evaluation cancelled")
        images, where = [], []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                images.append(open_image(paths[i], reduce_for=predictor.preprocessing.resize_size))
                where.append(i)
            except (ImageError, OSError, ValueError) as exc:
                skipped.append({"path": paths[i], "reason": getattr(exc, "reason", None) or str(exc)})
        if images:
            chunks.append(np.asarray(predictor.logits(images, batch_size=len(images)), dtype=np.float32))
            kept.extend(where)
        if progress is not None:
            progress(min(start + batch_size, len(paths)), len(paths))
    n_classes = len(predictor.classes)
    logits = np.concatenate(chunks) if chunks else np.zeros((0, n_classes), dtype=np.float32)
    return kept, logits, skipped


def evaluate_model(model_path_or_run_dir, data_dir, progress: ProgressFn | None = None,
                   cancel: Callable[[], bool] | None = None, batch_size: int = BATCH_SIZE) -> Evaluation:
    """Classify every image in the class folders of ``data_dir`` with the model at
    ``model_path_or_run_dir`` (a run folder or any export) and measure it.

    A class folder the model does not know is an :class:`EvaluationError` naming it; model
    classes missing from the data are fine. Images that cannot be decoded are left out and
    listed in ``skipped``. ``progress(done, total)`` is called after each batch of ``batch_size``;
    ``cancel()`` returning True raises a :class:`Cancelled` (:class:`EvaluationCancelled` between
    batches, the scanner's ``ScanCancelled`` while the folders are scanned).
    """
    from transfer_gui.engine.predict import Predictor

    source = Path(model_path_or_run_dir)
    predictor = Predictor.load(source)
    paths, labels, skipped = _labelled_samples(str(data_dir), list(predictor.classes), cancel)
    kept, logits, unreadable = _classify(predictor, paths, progress, cancel, max(1, int(batch_size)))
    if not kept:
        raise EvaluationError(f"{data_dir}: none of the {len(paths)} images could be read "
                              f"(first: {unreadable[0]['path']}: {unreadable[0]['reason']})")
    temperature = float(getattr(predictor, "temperature", 1.0) or 1.0)
    return _build(predictor.classes, [paths[i] for i in kept], [labels[i] for i in kept], logits,
                  metrics.softmax(logits, temperature), temperature, source=str(source), which="data",
                  data_dir=str(data_dir), skipped=skipped + unreadable, **_run_context(source))


# ----------------------------------------------------------------------------- a run's saved predictions


def _run_rows(rec, which: str) -> list[dict]:
    if which == "val":
        rows = list(rec.predictions)
        if not rows:
            raise EvaluationError(f"{rec.run_dir} has no validation predictions yet (val_predictions.json); "
                                  f"they are written after the first epoch")
        return rows
    rows = list(getattr(rec, "test_predictions", []) or [])
    if not rows:
        raise EvaluationError(f"{rec.run_dir} has no test predictions (test_predictions.json): the run had no "
                              f"test set; evaluate it on a folder with --data instead")
    return rows


def evaluation_from_run(run_dir, which: str = "val") -> Evaluation:
    """The :class:`Evaluation` of a run folder's saved ``"val"`` or ``"test"`` predictions."""
    from transfer_gui.engine import rundir

    if which not in ("val", "test"):
        raise ValueError(f"which must be 'val' or 'test', not {which!r}")
    return evaluation_from_record(rundir.load_run(run_dir), which)


def evaluation_from_record(rec, which: str = "val") -> Evaluation:
    """The :class:`Evaluation` of one set of a run already read (``rundir.load_run``): the window's
    Results step and the report start from the same one.

    With the run's raw logits (``RunRecord.logits``) the probabilities are ``softmax(logits / T)``
    with T from ``calibration.json`` (1.0 without); older runs without logits fall back to the
    top lists of the predictions JSON at the temperature they were stored with (1.0).
    """
    rows = _run_rows(rec, which)
    classes = list(rec.classes)
    calibration = dict(getattr(rec, "calibration", {}) or {})
    logits = rec.logits(which) if hasattr(rec, "logits") else None
    if logits is not None and len(logits) != len(rows):
        logits = None  # written by another epoch than the predictions (cannot happen atomically; be safe)
    if logits is not None:
        temperature = float(calibration.get("temperature") or 1.0)
        probs = metrics.softmax(logits, temperature)
    else:
        temperature, probs = 1.0, metrics.probs_from_top(rows, len(classes))
    return _build(classes, [r["path"] for r in rows], [int(r["true"]) for r in rows], logits, probs, temperature,
                  source=str(rec.run_dir), which=which, run_dir=Path(rec.run_dir), config=rec.config,
                  history=list(rec.history), calibration=calibration)


# ----------------------------------------------------------------------------- the files


def metrics_document(evaluation: Evaluation) -> dict:
    """What ``metrics.json`` holds: the figures of :func:`metrics.report` (``top5_accuracy`` only
    where defined, i.e. more than 5 classes) with where they come from."""
    figures = dict(evaluation.metrics)
    if figures.get("top5_accuracy") is None:
        figures.pop("top5_accuracy", None)
    doc: dict[str, Any] = {"source": evaluation.source, "set": SPLIT_NAMES.get(evaluation.which, evaluation.which)}
    if evaluation.data_dir:
        doc["data_dir"] = evaluation.data_dir
    doc.update(figures)
    doc["temperature"] = evaluation.temperature
    uncalibrated = evaluation.uncalibrated_probs()
    if uncalibrated is not None and not math.isclose(evaluation.temperature, 1.0):
        doc["ece_at_temperature_1"] = metrics.ece(uncalibrated, evaluation.labels)
    doc["most_confused"] = [{"true": t, "pred": p, "count": c}
                            for t, p, c in metrics.most_confused(evaluation.metrics["confusion"], evaluation.classes)]
    doc["skipped"] = list(evaluation.skipped)
    if evaluation.calibration:
        doc["calibration"] = dict(evaluation.calibration)
    return doc


def predictions_csv(evaluation: Evaluation) -> str:
    """``path,true,pred,confidence`` and one probability column per class (named by the class)."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["path", "true", "pred", "confidence", *evaluation.classes])
    classes = evaluation.classes
    for path, label, pred, row in zip(evaluation.paths, evaluation.labels, evaluation.preds, evaluation.probs):
        out.writerow([path, classes[int(label)], classes[int(pred)], f"{row[int(pred)]:.6g}",
                      *(f"{p:.6g}" for p in row)])
    return buf.getvalue()


def write_outputs(evaluation: Evaluation, out_dir, heatmap_for: Callable[[str], Any] | None = None) -> dict[str, Path]:
    """Write ``metrics.json``, ``predictions.csv`` and ``report.html`` into ``out_dir``, each
    atomically, after the report is built (a cancel while its heat maps are drawn writes nothing);
    ``heatmap_for(path) -> PIL image | None`` adds overlays to the mistakes gallery.
    Returns {file name: path}. A folder that cannot be written is an :class:`EvaluationError` naming
    the folder (``rundir.cannot_write``, the run folder's wording), not the temporary file."""
    from transfer_gui.engine import report, rundir

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EvaluationError(f"{out_dir} is a file; choose a folder for the report")
    written = {name: out_dir / name for name in OUTPUT_FILES}
    html = report.build_html(evaluation, heatmap_for=heatmap_for)  # the long part (heat maps): before any file
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(written["metrics.json"], json.dumps(rundir.jsonable(metrics_document(evaluation)), indent=1))
        atomic_write_text(written["predictions.csv"], predictions_csv(evaluation))
        atomic_write_text(written["report.html"], html)
    except OSError as exc:  # each file is written whole or not at all: what was there before stays
        raise EvaluationError(rundir.cannot_write("report folder", out_dir, exc, "Choose another folder for the "
                                                  "report; no file there was left half-written.")) from None
    return written


# ----------------------------------------------------------------------------- predictions without labels


def predict_csv_rows(classes: list[str], rows: list[dict], with_answer: bool) -> list[list[str]]:
    """The rows of ``transfer-gui predict --csv`` and the window's *Classify a folder*, from
    ``Predictor.predict_paths`` results (with every class in ``top``): ``path,pred,confidence``,
    one probability column per class, ``answer`` (the class or ``unsure``; only ``with_answer``)
    and ``error`` (the reason a file could not be read; such a file keeps its row)."""
    out = [["path", "pred", "confidence", *classes, *(["answer"] if with_answer else []), "error"]]
    for row in rows:
        if row.get("error") or "top" not in row:
            out.append([str(row["path"]), "", "", *([""] * len(classes)), *([""] if with_answer else []),
                        row.get("error") or "no result"])
            continue
        probs = dict(row["top"])
        pred, confidence = row["top"][0]
        answer = ["unsure" if row.get("unsure") else pred] if with_answer else []
        out.append([str(row["path"]), pred, f"{confidence:.6g}", *(f"{probs.get(c, 0.0):.6g}" for c in classes),
                    *answer, ""])
    return out


def write_predict_csv(path, classes: list[str], rows: list[dict], threshold: float = 0.0) -> None:
    """Write :func:`predict_csv_rows` atomically; the ``answer`` column is there when the model has a
    threshold (or a row says unsure)."""
    with_answer = threshold > 0 or any(row.get("unsure") for row in rows)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(predict_csv_rows(list(classes), rows, with_answer))
    atomic_write_text(Path(path), buf.getvalue())
