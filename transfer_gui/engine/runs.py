"""Where run folders go, how they are named, and the list of a project's runs.

One rule for every front door: a run whose ``output.dir`` is empty gets a new time-stamped
folder (``20261201-142501``, then ``-2``, ``-3`` within the same second) inside the runs
folder of its project. The runs folder of ``/lab/cells.toml`` is ``/lab/cells-runs/``, for
the window and for ``transfer-gui train /lab/cells.toml`` alike, so a run started headless
shows up in the window's list. An untitled project (and the quick form of the command line
in the window's absence) uses a runs folder of its own.

Reading the list needs no torch: a run is described by its ``config.toml``,
``metrics.jsonl`` and ``summary.json``.

Comparing runs (the Results step's table and ``transfer-gui runs``): :func:`table` gives one
:class:`RunRow` per run, newest first, each with :func:`config_diff` against the run before it
(the next older one in the list): the dotted config keys whose values differ, ``key -> [old,
new]``, with the defaults of this version filled in for keys an older config file lacks and
``output.dir`` left out (every run has its own).

The best epoch is counted from 1, as the epoch lines and ``metrics.jsonl``'s ``epoch`` field
count it, and it is read in one place, :func:`best_epoch`: from ``metrics.jsonl`` by the run's
own ``train.early_stopping_metric`` and the tracker's rule (engine/tracking.py: the first epoch
that beats every earlier one; every epoch when there are no validation images), never from
``summary.json``'s ``best_epoch`` (whose base changed: 0-based in older run folders).
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

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
    best_epoch: int = 0  # counted from 1 (metrics.jsonl's "epoch"); 0 when no epoch has finished
    test_acc: float = math.nan  # once the test set was evaluated (summary.json)
    seconds: float = math.nan  # the run's time: summary.json's, else the finished epochs' sum
    config: dict = field(default_factory=dict, compare=False, hash=False, repr=False)  # dotted key -> value

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


def read_history(run_dir: str | os.PathLike[str]) -> list[dict]:
    """A run's ``metrics.jsonl``: one record per finished epoch (a torn last line left out)."""
    return _epochs(Path(run_dir) / "metrics.jsonl")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys: ``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}``
    (an empty table has no keys, so ``layers.lr = {}`` and ``{"layer4": 0.01}`` differ in one key)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def read_config(config_file: Path) -> dict[str, Any]:
    """The run's config as dotted keys, this version's defaults under what the file says (an
    older file lacks the newer keys); empty when the file cannot be read."""
    import tomllib

    try:
        data = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {**_defaults(), **flatten(data)}


@functools.cache
def _defaults() -> dict[str, Any]:
    from transfer_gui import config as config_mod

    return flatten(config_mod.to_dict(config_mod.RunConfig()))


def best_epoch(history: list[dict], metric: str = "val_acc") -> int:
    """The best epoch of ``history`` (metrics.jsonl's records), counted from 1; 0 when none finished.

    The tracker's rule: by ``metric`` (``val_acc`` higher is better, ``val_loss`` lower), the first
    epoch that beats every one before it; an epoch without a finite value (no validation images)
    counts as the best, as the tracker counts it.
    """
    best, best_score = 0, math.nan
    higher = metric != "val_loss"
    for i, record in enumerate(history):
        score = record.get(metric)
        if not _finite(score):
            best = i + 1
        elif math.isnan(best_score) or (score > best_score if higher else score < best_score):
            best, best_score = i + 1, float(score)
    if best and _finite(history[best - 1].get("epoch")):
        return int(history[best - 1]["epoch"])
    return best


def run_info(run_dir: str | os.PathLike[str]) -> RunInfo | None:
    """What ``run_dir`` holds, or None when it is not a run folder (no ``config.toml``)."""
    run_dir = Path(run_dir)
    config_file = run_dir / "config.toml"
    if not config_file.is_file():
        return None
    history = _epochs(run_dir / "metrics.jsonl")
    summary = _read_json(run_dir / "summary.json")
    cfg = read_config(config_file)
    best = best_epoch(history, str(cfg.get("train.early_stopping_metric", "val_acc")))
    by_epoch = {r.get("epoch"): r for r in history}
    acc = (by_epoch.get(best) or {}).get("val_acc")
    seconds = summary.get("seconds")
    if not _finite(seconds):
        seconds = sum(r["seconds"] for r in history if _finite(r.get("seconds"))) if history else math.nan
    try:
        started = config_file.stat().st_mtime
    except OSError:
        started = 0.0
    test = summary.get("test_acc")
    return RunInfo(run_dir=run_dir, model=str(cfg.get("model.name", "?")), status=str(summary.get("status", "")),
                   epochs_done=len(history), best_val_acc=float(acc) if _finite(acc) else math.nan, started=started,
                   best_epoch=best, test_acc=float(test) if _finite(test) else math.nan, seconds=float(seconds),
                   config=cfg)


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


# ------------------------------------------------------------------------------- comparing runs

NOT_COMPARED = ("output.dir",)  # every run has its own folder


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list]:
    """The dotted keys whose values differ between two configs (as :func:`read_config` gives
    them), sorted: ``{"layers.head_lr": [0.001, 0.01]}``; a key one of them lacks is None there."""
    keys = sorted((set(old) | set(new)) - set(NOT_COMPARED))
    return {k: [old.get(k), new.get(k)] for k in keys if old.get(k) != new.get(k)}


@dataclass(frozen=True)
class RunRow:
    """One line of the runs table: a run and what its config changed from the run before it."""

    info: RunInfo
    previous: Path | None  # the next older run, None for the oldest
    diff: dict = field(default_factory=dict, compare=False, hash=False)  # config_diff(previous, this)

    def diff_text(self, limit: int = 3) -> str:
        """``layers.head_lr 0.001 → 0.01, train.epochs 10 → 5`` (the first ``limit``, then how many more)."""
        if self.previous is None:
            return "first run"
        if not self.diff:
            return "same settings"
        items = [f"{k} {short_value(a)} \u2192 {short_value(b)}" for k, (a, b) in self.diff.items()]
        more = len(items) - limit
        return ", ".join(items[:limit]) + (f", +{more} more" if more > 0 else "")

    def as_json(self) -> dict[str, Any]:
        """The ``transfer-gui runs --json`` object of this run (NaN as null)."""
        i = self.info

        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {"run_dir": str(i.run_dir), "model": i.model, "started": datetime.fromtimestamp(i.started).isoformat(
                    timespec="seconds"), "status": i.status or "unfinished", "epochs_done": i.epochs_done,
                "best_epoch": i.best_epoch or None, "best_val_acc": num(i.best_val_acc), "test_acc": num(i.test_acc),
                "seconds": num(i.seconds), "previous": str(self.previous) if self.previous else None,
                "config_diff": None if self.previous is None else {k: list(v) for k, v in self.diff.items()}}


def short_value(v: Any) -> str:
    """A config value in a few characters: ``0.001``, ``true``, ``[2 items]``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return str(v[0]) if len(v) == 1 else f"[{len(v)} items]"
    if isinstance(v, dict):
        return "{}" if not v else f"{{{len(v)} keys}}"
    text = str(v)
    return text if len(text) <= 24 else "…" + text[-23:]


def table(runs: list[RunInfo]) -> list[RunRow]:
    """The runs table: ``runs`` newest first, each compared with the next older one."""
    rows = []
    for k, info in enumerate(runs):
        prev = runs[k + 1] if k + 1 < len(runs) else None
        rows.append(RunRow(info, prev.run_dir if prev else None, config_diff(prev.config, info.config) if prev else {}))
    return rows
