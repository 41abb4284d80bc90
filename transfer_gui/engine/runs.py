"""Where run folders go, how they are named, and the list of a project's runs.

One rule for every front door: a run whose ``output.dir`` is empty gets a new time-stamped
folder (``20261201-142501``, then ``-2``, ``-3`` within the same second) inside the runs
folder of its project. The runs folder of ``/lab/cells.toml`` is ``/lab/cells-runs/``, for
the window and for ``transfer-gui train /lab/cells.toml`` alike, so a run started headless
shows up in the window's list. An untitled project (and the quick form of the command line
in the window's absence) uses a runs folder of its own.

Reading the list needs no torch: a run is described by its ``config.toml``,
``metrics.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

RUNS_SUFFIX = "-runs"


def user_runs_root() -> Path:
    """The runs folder of untitled projects: ``~/.local/share/transfer_gui/runs`` on Linux."""
    import platformdirs

    return Path(platformdirs.user_data_dir("transfer_gui")) / "runs"


def project_runs_dir(project_file: str | os.PathLike[str] | None) -> Path:
    """The runs folder of a project (or config) file; of untitled projects for ``None``."""
    if not project_file:
        return user_runs_root()
    p = Path(project_file).absolute()
    return p.parent / f"{p.stem}{RUNS_SUFFIX}"


def new_run_dir(root: str | os.PathLike[str], now: datetime | None = None) -> Path:
    """A name for a new run folder in ``root`` that no folder has yet (nothing is created)."""
    root = Path(root)
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    path, k = root / stamp, 1
    while path.exists():
        k += 1
        path = root / f"{stamp}-{k}"
    return path


@dataclass(frozen=True)
class RunInfo:
    """One line of the runs list: what a person needs to tell runs apart."""

    run_dir: Path
    model: str
    status: str  # completed | stopped | early_stopped | failed | running or killed ("")
    epochs_done: int
    best_val_acc: float  # nan when no epoch has finished or there was no validation set
    started: float  # seconds since the epoch (the folder's creation time as far as we know)

    @property
    def has_finished_epoch(self) -> bool:
        return self.epochs_done > 0

    @property
    def label(self) -> str:
        """``20261201-142501 · resnet18 · 3 epochs · best 91.2 % · completed``."""
        parts = [self.run_dir.name, self.model, f"{self.epochs_done} epoch{'s' if self.epochs_done != 1 else ''}"]
        if not math.isnan(self.best_val_acc):
            parts.append(f"best {self.best_val_acc:.1%}")
        parts.append(self.status.replace("_", " ") if self.status else "unfinished")
        return " · ".join(parts)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _epochs(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            break  # a torn last line: keep what is whole
        if isinstance(row, dict):
            out.append(row)
    return out


def _model_name(config_file: Path) -> str:
    import tomllib

    try:
        data = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "?"
    model = data.get("model", {})
    return str(model.get("name", "?")) if isinstance(model, dict) else "?"


def run_info(run_dir: str | os.PathLike[str]) -> RunInfo | None:
    """What ``run_dir`` holds, or None when it is not a run folder (no ``config.toml``)."""
    run_dir = Path(run_dir)
    config_file = run_dir / "config.toml"
    if not config_file.is_file():
        return None
    history = _epochs(run_dir / "metrics.jsonl")
    accs = [h.get("val_acc") for h in history]
    accs = [a for a in accs if isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a)]
    summary = _read_json(run_dir / "summary.json")
    try:
        started = config_file.stat().st_mtime
    except OSError:
        started = 0.0
    return RunInfo(run_dir=run_dir, model=_model_name(config_file), status=str(summary.get("status", "")),
                   epochs_done=len(history), best_val_acc=max(accs) if accs else float("nan"), started=started)


def list_runs(root: str | os.PathLike[str]) -> list[RunInfo]:
    """The run folders directly inside ``root``, newest first (an absent root has none)."""
    root = Path(root)
    try:
        children = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    runs = [info for info in map(run_info, children) if info is not None]
    return sorted(runs, key=lambda r: (r.started, r.run_dir.name), reverse=True)


def latest_finished(runs: list[RunInfo]) -> RunInfo | None:
    """The newest run with at least one finished epoch: the one worth showing."""
    return next((r for r in runs if r.has_finished_epoch), None)
