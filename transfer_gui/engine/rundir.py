"""The run folder: what a run leaves behind, written atomically, and read back by the window.

```
RUN_DIR/
  config.toml            the resolved config of the run
  metrics.jsonl          one JSON object per finished epoch
  checkpoints/last.pt    after every epoch (with optimizer state, to resume)
  checkpoints/best.pt    the best epoch by the validation metric
  skipped.json           files that were skipped, with the reason
  data_decisions.json    what data.exclude_files / data.relabel did: {"excluded": [path],
                         "relabelled": {path: {"from", "to"}}, "missing": [path]} (the user's
                         files are never moved or deleted; the decisions live in the config)
  val_predictions.json   the best model's prediction for every validation image
  val_logits.npy         their raw logits (float32, N x classes, rows in the order of the JSON's items)
  test_predictions.json  with a test set: the chosen checkpoint's prediction for every test image, once
  test_logits.npy        their raw logits, same layout
  calibration.json       the temperature fitted on validation and the stored threshold (engine/calibration.py)
  summary.json           how the run ended (with a test set: test_acc and test_n; with class
                         weights in the loss: class_weights {class: weight})
```

Every file but config.toml may be missing: a run folder from an older version of the app
has no logits, no test files and no calibration, and :func:`load_run` gives empty values then.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from transfer_gui import config as config_mod
from transfer_gui.atomic import atomic_write_bytes, atomic_write_text, remove_stale_parts
from transfer_gui.engine import runlock
from transfer_gui.engine.events import Warning
from transfer_gui.engine.formats import checkpoint_in
from transfer_gui.errors import UserError


class RunFolderError(UserError, ValueError):
    """A folder that cannot serve as the run folder: not writable, somebody else's files, no run in it."""


def jsonable(obj: Any) -> Any:
    """``obj`` with every non-finite float as None (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(jsonable(obj), indent=1))


PREDICTIONS = {"val": "val_predictions.json", "test": "test_predictions.json"}
LOGITS = {"val": "val_logits.npy", "test": "test_logits.npy"}
DECISIONS = "data_decisions.json"


def write_logits(path: Path, logits: Any, n_classes: int) -> None:
    """Raw logits as float32 N x ``n_classes`` .npy (an empty set is 0 x ``n_classes``), atomically."""
    arr = np.asarray(logits, dtype=np.float32).reshape(-1, n_classes)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def read_logits(path: Path) -> np.ndarray | None:
    """A logits file as float32 N x C, or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return arr.astype(np.float32, copy=False) if arr.ndim == 2 else None


def write_predictions(run_dir: Path, which: str, classes: list[str], preds: list[dict], logits: Any) -> None:
    """``<which>_predictions.json`` and ``<which>_logits.npy`` (rows in the same order), the
    logits first: a reader that finds the JSON finds logits at least as new."""
    write_logits(run_dir / LOGITS[which], logits, len(classes))
    write_json(run_dir / PREDICTIONS[which], {"classes": classes, "items": preds})


def write_metrics(path: Path, history: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(jsonable(h)) + "\n" for h in history))


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line can only come from outside; keep what is whole
    return out


@dataclass
class RunRecord:
    """Everything the Results page shows, read back from a run folder."""

    run_dir: Path
    config: Any
    classes: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    predictions: list[dict] = field(default_factory=list)  # path, true, pred, confidence, top
    skipped: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    test_predictions: list[dict] = field(default_factory=list)  # same rows for the test set; [] without one
    calibration: dict = field(default_factory=dict)  # calibration.json; {} when the run has none
    decisions: dict = field(default_factory=dict)  # data_decisions.json; {} for runs from before it

    def logits(self, which: str) -> np.ndarray | None:
        """The raw logits (float32 N x C) of "val" or "test", rows in the order of ``predictions``
        or ``test_predictions``; None when the run folder has none (older runs, no test set) or
        when the file does not match its predictions."""
        if which not in LOGITS:
            raise ValueError(f"logits of 'val' or 'test', not {which!r}")
        arr = read_logits(self.run_dir / LOGITS[which])
        rows = self.predictions if which == "val" else self.test_predictions
        if arr is None or arr.shape[0] != len(rows) or (self.classes and arr.shape[1] != len(self.classes)):
            return None
        return arr

    @property
    def best_checkpoint(self) -> Path | None:
        return checkpoint_in(self.run_dir)

    def confusion(self) -> list[list[int]]:
        n = len(self.classes)
        m = [[0] * n for _ in range(n)]
        for p in self.predictions:
            m[p["true"]][p["pred"]] += 1
        return m


def load_run(run_dir: str | Path) -> RunRecord:
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise RunFolderError(f"{run_dir} is not a run folder (no config.toml)")
    cfg = config_mod.load(run_dir / "config.toml")

    def read(name: str, default: Any) -> Any:
        p = run_dir / name
        if not p.is_file():
            return default
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return default

    preds, test = read("val_predictions.json", {}), read("test_predictions.json", {})
    calibration = read("calibration.json", {})
    decisions = read(DECISIONS, {})
    return RunRecord(run_dir, cfg, classes=list(preds.get("classes", [])) or read("summary.json", {}).get("classes", []),
                     history=read_metrics(run_dir / "metrics.jsonl"), predictions=list(preds.get("items", [])),
                     skipped=read("skipped.json", []), summary=read("summary.json", {}),
                     test_predictions=list(test.get("items", [])) if isinstance(test, dict) else [],
                     calibration=calibration if isinstance(calibration, dict) else {},
                     decisions=decisions if isinstance(decisions, dict) else {})



def write_decisions(run_dir: Path, decisions: dict) -> None:
    """``data_decisions.json``: the files the run left out or relabelled, and the decisions that
    met no file; always written, empty lists when the config has no decisions."""
    write_json(run_dir / DECISIONS, {"excluded": list(decisions.get("excluded", [])),
                                     "relabelled": dict(decisions.get("relabelled", {})),
                                     "missing": list(decisions.get("missing", []))})


RUN_FILES = ("config.toml", "metrics.jsonl", "skipped.json", DECISIONS, "val_predictions.json", "val_logits.npy",
             "test_predictions.json", "test_logits.npy", "calibration.json", "summary.json", "error.log",
             "checkpoints/last.pt", "checkpoints/best.pt")


def _ours(run_dir: Path) -> set[Path]:
    return {run_dir / name for name in RUN_FILES} | {run_dir / "checkpoints"}


def refuse_foreign(run_dir: Path) -> None:
    """FileExistsError when ``run_dir`` holds other files and no run: somebody's folder, not ours."""
    if not run_dir.is_dir():
        return
    ours = _ours(run_dir)
    others = [p for p in run_dir.iterdir() if p not in ours and not p.name.startswith(".")]
    if others and not (run_dir / "config.toml").exists():
        raise FileExistsError(f"output.dir {run_dir} already holds other files ({others[0].name}, ...); "
                              f"choose an empty or new folder for the run")


def clear_previous_run(run_dir: Path) -> bool:
    """Remove what an earlier run left in ``run_dir`` (its checkpoints, metrics, predictions),
    so that a new run never shows beside another run's files. Returns True if there was one.

    A folder that holds other files and no run is refused: it is somebody's folder, not ours.
    """
    if not run_dir.is_dir():
        return False
    refuse_foreign(run_dir)
    present = [p for p in _ours(run_dir) if p.exists()]
    for p in present:
        if p.is_file():
            p.unlink()
    return bool(present)


def open_run_folder(run_dir: Path, cfg: config_mod.RunConfig, resume: bool, emit: Callable[[object], None]) -> None:
    """Make ``run_dir`` ready for a run (rank 0 only): this process takes the folder's training
    lock (engine/runlock.py; refused while another process trains there), half-written
    temporaries that a killed run left are removed, an earlier run's files are cleared (when
    resuming only its summary.json, which would say how an earlier attempt ended), and the run's
    config is written. Any problem is a RunFolderError that says what to do."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        refuse_foreign(run_dir)
        runlock.acquire(run_dir)
        if resume:
            (run_dir / "summary.json").unlink(missing_ok=True)
        stale = [*remove_stale_parts(run_dir, tuple(n for n in RUN_FILES if "/" not in n)),
                 *remove_stale_parts(run_dir / "checkpoints", ("last.pt", "best.pt"))]
        if stale:
            emit(Warning(f"removed {len(stale)} half-written temporary file(s) left by an interrupted run"))
        if not resume and clear_previous_run(run_dir):
            emit(Warning(f"{run_dir} held an earlier run; its files were replaced by this run's"))
        config_mod.save(cfg, run_dir / "config.toml")
    except (FileExistsError, runlock.RunInUse) as exc:
        raise RunFolderError(str(exc)) from None
    except OSError as exc:
        raise RunFolderError(cannot_write("run folder", run_dir, exc, "Choose another output folder (output.dir).")) from None


def cannot_write(what: str, folder: Path | str, exc: OSError, then: str) -> str:
    """The one sentence for a folder the app may not write into (read-only, full, not allowed),
    said alike by the command line and the window: it names the folder, never the hidden
    temporary file (``.name.XXXX.part``, engine's atomic writes) the write failed on."""
    return f"cannot write the {what} {folder}: {exc.strerror or exc}. {then}"
