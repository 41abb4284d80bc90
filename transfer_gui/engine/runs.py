"""Where run folders go, how they are named, and the list of a project's runs.

One rule for every front door: a run whose ``output.dir`` is empty gets a new time-stamped
folder (``20261201-142501``, then ``-2``, ``-3`` within the same second) inside the runs
folder of its project. The runs folder of ``/lab/cells.toml`` is ``/lab/cells-runs/``, for
the window and for ``transfer-gui train /lab/cells.toml`` alike, so a run started headless
shows up in the window's list. An untitled project (and the quick form of the command line
in the window's absence) uses a runs folder of its own.

Reading the list needs no torch: a run is described by its ``config.toml``,
``metrics.jsonl`` and ``summary.json``, and by its training lock (engine/runlock.py): a run
without a summary is ``running`` while a process holds the lock, ``interrupted`` once none does
(killed). :func:`latest_finished` is the run a project shows, never an unfinished one over one
that trained to its end; :func:`resume_offer` the run a front end offers to resume, with
:func:`resume_config`, the config ``transfer-gui train --resume`` trains with.

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

from transfer_gui.engine import runlock

RUNS_SUFFIX = "-runs"
FINISHED = ("completed", "early_stopped")  # the statuses of a run that trained to its end


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
    status: str  # summary.json's: completed | stopped | early_stopped | failed; "" while training or once killed
    epochs_done: int
    best_val_acc: float  # nan when no epoch has finished or there was no validation set
    started: float  # seconds since the epoch (the folder's creation time as far as we know)
    best_epoch: int = 0  # counted from 1 (metrics.jsonl's "epoch"); 0 when no epoch has finished
    test_acc: float = math.nan  # once the test set was evaluated (summary.json)
    seconds: float = math.nan  # the run's time: summary.json's, else the finished epochs' sum
    config: dict = field(default_factory=dict, compare=False, hash=False, repr=False)  # dotted key -> value
    live: bool = False  # a process trains it now (engine/runlock.py)
    has_last: bool = False  # checkpoints/last.pt, what a resume starts from

    @property
    def has_finished_epoch(self) -> bool:
        return self.epochs_done > 0

    @property
    def state(self) -> str:
        """How the run stands: summary.json's status once it ended; else ``running`` while a
        process holds its lock, ``interrupted`` when none does (killed, crashed, power cut)."""
        return self.status or ("running" if self.live else "interrupted")

    @property
    def finished(self) -> bool:
        """It trained to the end: every epoch, or until early stopping said so."""
        return self.status in FINISHED and self.has_finished_epoch

    @property
    def resumable(self) -> bool:
        """It ended before its last epoch (interrupted, stopped or failed) with a ``last.pt`` to go on from."""
        epochs = self.config.get("train.epochs")
        more = not isinstance(epochs, int) or self.epochs_done < epochs
        return self.has_last and more and not self.live and self.status not in FINISHED

    @property
    def resume_epoch(self) -> int:
        """The epoch a resume trains first, counted from 1."""
        return self.epochs_done + 1

    @property
    def label(self) -> str:
        """``20261201-142501 · resnet18 · 3 epochs · best 91.2 % · completed``."""
        parts = [self.run_dir.name, self.model, f"{self.epochs_done} epoch{'s' if self.epochs_done != 1 else ''}"]
        if not math.isnan(self.best_val_acc):
            parts.append(f"best {self.best_val_acc:.1%}")
        parts.append(self.state.replace("_", " "))
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
                   config=cfg, live=not summary and runlock.in_use(run_dir),
                   has_last=(run_dir / "checkpoints" / "last.pt").is_file())


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
    """The run to show for a project (``runs`` newest first): the newest that trained to its end;
    without one, the newest with a finished epoch. A run that was interrupted, stopped or failed
    is never shown over a finished one: its figures are not the project's result."""
    return next((r for r in runs if r.finished), None) or next((r for r in runs if r.has_finished_epoch), None)


def resume_offer(runs: list[RunInfo], shown: Path | None = None) -> RunInfo | None:
    """The run a front end offers to resume (``runs`` newest first): the run shown when it can
    be resumed, else the newest run when it can (an old interrupted run under newer ones is
    left to the runs list, not offered again and again)."""
    by_dir = {r.run_dir.absolute(): r for r in runs}
    shown_info = by_dir.get(Path(shown).absolute()) if shown is not None else None
    for info in (shown_info, runs[0] if runs else None):
        if info is not None and info.resumable:
            return info
    return None


def resume_config(run_dir: str | os.PathLike[str]):
    """The config a resume of ``run_dir`` trains with: the run's own ``config.toml``, its folder as
    ``output.dir`` (what ``transfer-gui train --resume RUN_DIR`` does). A ConfigError names the
    file and field; a RunFolderError says why there is nothing to resume."""
    from transfer_gui import config as config_mod
    from transfer_gui.engine.rundir import RunFolderError

    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise RunFolderError(f"cannot resume {run_dir}: no config.toml there")
    if not (run_dir / "checkpoints" / "last.pt").is_file():
        raise RunFolderError(f"nothing to resume in {run_dir}: no checkpoints/last.pt")
    cfg = config_mod.load(run_dir / "config.toml")
    return cfg.replace(**{"output.dir": str(run_dir)})


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
                    timespec="seconds"), "status": i.state, "epochs_done": i.epochs_done,
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
