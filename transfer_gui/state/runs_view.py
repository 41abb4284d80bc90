"""The runs of a project as the Results step compares them, in plain Python (no Qt, no torch).

The rows are the engine's (engine/runs.py :func:`~transfer_gui.engine.runs.table`: newest first,
each with what its config changed from the run before). This view adds what the window needs
around them: which runs are selected, their validation curves for the overlay plot, the
settings that differ between them for the side-by-side table, and "Use these settings": the
run's config copied into the project through :meth:`Project.update` (one change, validated like
any other), with one step of undo.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_gui import config as config_mod
from transfer_gui.config import ConfigError, RunConfig
from transfer_gui.engine import runs as runs_mod

NOT_COPIED = ("output.dir",)  # a new run gets its own folder


@dataclass(frozen=True)
class Curves:
    """One selected run's validation curves: x = epoch from 1; NaN where an epoch had no value."""

    name: str
    run_dir: Path
    epochs: list[int]
    val_acc: list[float]
    val_loss: list[float]


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else math.nan


def settings(cfg: RunConfig, prefix: str = "") -> dict[str, Any]:
    """Every setting of ``cfg`` as ``dotted key -> value``: sections are descended, a table value
    (``layers.lr``) is one setting, as :meth:`Project.update` sets it."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(settings(value, key + "."))
        else:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


class RunsView:
    def __init__(self) -> None:
        self.rows: list[runs_mod.RunRow] = []
        self.selected: list[Path] = []  # in the table's order, newest first
        self._history: dict[Path, tuple[float, list[dict]]] = {}  # run -> (mtime of metrics.jsonl, records)
        self.undo_changes: dict[str, Any] | None = None  # what "Use these settings" replaced
        self.used_run: Path | None = None

    # ------------------------------------------------------------------ the table
    def set_runs(self, runs: list[runs_mod.RunInfo]) -> None:
        """The project's runs (newest first); the selection keeps the runs still listed."""
        self.rows = runs_mod.table(runs)
        listed = {r.info.run_dir for r in self.rows}
        self.selected = [p for p in self.selected if p in listed]

    def select(self, run_dirs: list[Path | str]) -> None:
        wanted = {Path(p) for p in run_dirs}
        self.selected = [r.info.run_dir for r in self.rows if r.info.run_dir in wanted]

    def selected_rows(self) -> list[runs_mod.RunRow]:
        chosen = set(self.selected)
        return [r for r in self.rows if r.info.run_dir in chosen]

    def row(self, run_dir: Path | str) -> runs_mod.RunRow | None:
        return next((r for r in self.rows if r.info.run_dir == Path(run_dir)), None)

    # ------------------------------------------------------------------ curves
    def history(self, run_dir: Path) -> list[dict]:
        """metrics.jsonl of a run, read again only when the file changed (a run still training grows)."""
        f = run_dir / "metrics.jsonl"
        try:
            mtime = f.stat().st_mtime
        except OSError:
            return []
        cached = self._history.get(run_dir)
        if cached is None or cached[0] != mtime:
            self._history[run_dir] = cached = (mtime, runs_mod.read_history(run_dir))
        return cached[1]

    def curves(self) -> list[Curves]:
        out = []
        for row in self.selected_rows():
            h = self.history(row.info.run_dir)
            epochs = [int(r["epoch"]) if isinstance(r.get("epoch"), int) else i + 1 for i, r in enumerate(h)]
            out.append(Curves(row.info.run_dir.name, row.info.run_dir, epochs,
                              [_num(r.get("val_acc")) for r in h], [_num(r.get("val_loss")) for r in h]))
        return out

    # ------------------------------------------------------------------ side by side
    def comparison(self) -> tuple[list[str], list[tuple[str, list[Any]]]]:
        """(column names, [(dotted key, one value per column)]) of only the settings that differ.

        Two or more runs selected: the selected runs, side by side. One: the run before it and
        this one (its row's diff). ``output.dir`` is never a difference.
        """
        rows = self.selected_rows()
        if len(rows) == 1:
            row = rows[0]
            if row.previous is None:
                return [row.info.run_dir.name], []
            return [row.previous.name, row.info.run_dir.name], [(k, list(v)) for k, v in row.diff.items()]
        configs = [r.info.config for r in rows]
        keys = sorted({k for c in configs for k in c} - set(runs_mod.NOT_COMPARED))
        differ = [(k, [c.get(k) for c in configs]) for k in keys
                  if any(c.get(k) != configs[0].get(k) for c in configs[1:])]
        return [r.info.run_dir.name for r in rows], differ

    # ------------------------------------------------------------------ use these settings
    def changes_for(self, run_dir: Path | str, current: RunConfig) -> dict[str, Any]:
        """What setting the project to ``run_dir``'s config changes: ``dotted key -> value``.
        A config file that this version cannot read is a ConfigError naming the file and field."""
        theirs = settings(config_mod.load(Path(run_dir) / "config.toml"))
        ours = settings(current)
        return {k: v for k, v in theirs.items() if k not in NOT_COPIED and ours.get(k) != v}

    def use_settings(self, project, run_dir: Path | str) -> dict[str, Any]:
        """Copy ``run_dir``'s settings into ``project`` (one validated update); returns the changes
        (empty when the project already has them). The replaced values can be restored with :meth:`undo`."""
        changes = self.changes_for(run_dir, project.cfg)
        if not changes:
            return {}
        before = settings(project.cfg)
        if not project.update(changes):
            raise ConfigError(f"the settings of {run_dir} were refused; the project is unchanged")
        self.undo_changes = {k: before[k] for k in changes}
        self.used_run = Path(run_dir)
        return changes

    def undo(self, project) -> bool:
        """Put back the settings the last "Use these settings" replaced; False when there is nothing to undo."""
        if self.undo_changes is None:
            return False
        changes, self.undo_changes, self.used_run = self.undo_changes, None, None
        return project.update(changes)
