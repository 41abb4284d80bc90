"""The open project: the current RunConfig, its file, the dirty flag, and what the window has
learned about it (scan of the folders, layer groups of the model, the run being shown).

Pages change the config only through :meth:`Project.set` / :meth:`Project.update` and redraw
on :attr:`Project.config_changed`; the config stays the single description of a run.
Plain Python (no Qt): the signals are :class:`transfer_gui.state.signals.Signal`, used on the GUI
thread only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_gui import config as config_mod
from transfer_gui.config import ConfigError, RunConfig
from transfer_gui.engine import runlock
from transfer_gui.engine import runs as runs_mod
from transfer_gui.state import dataset_view
from transfer_gui.state.signals import Signal


def default_config() -> RunConfig:
    """A new project: the offline model, head-only training and no augmentation, so the
    engine's feature cache applies and a first run on a CPU takes seconds."""
    return RunConfig().replace(**{
        "model.name": "efficientnet_lite0", "model.weights": "pretrained",
        "layers.train_from": "head", "data.augment.enabled": False,
        "train.epochs": 10, "train.batch_size": 32,
    })


@dataclass
class GroupInfo:
    """Layer groups of one architecture: names input to head, parameter counts."""

    model: str
    names: list[str]
    params: list[int]
    head_params_per_class: float  # the head is rebuilt for the number of classes

    def counts(self, num_classes: int | None) -> list[int]:
        if not num_classes:
            return list(self.params)
        return self.params[:-1] + [int(round(self.head_params_per_class * num_classes))]


def frozen_set(names: list[str], layers_cfg) -> set[str]:
    """Frozen groups as the engine resolves them (the engine's rule; unknown names are left out
    here, where the engine refuses them: the Layers step reports them)."""
    from transfer_gui.engine.rules import resolve_frozen

    return resolve_frozen(names, layers_cfg, strict=False)


def freeze_changes(names: list[str], frozen: set[str]) -> dict[str, Any]:
    """Config fields for a set of frozen groups: "train from X" when it is a prefix (the way
    people think about it, and robust to editing), else the explicit list."""
    k = next((i for i, n in enumerate(names) if n not in frozen), len(names))
    if k < len(names) and frozen == set(names[:k]):
        return {"layers.train_from": names[k] if k > 0 else "", "layers.frozen": []}
    return {"layers.train_from": "", "layers.frozen": [n for n in names if n in frozen]}


class Project:
    def __init__(self) -> None:
        self.config_changed = Signal()  # (set of the dotted keys changed; {""} = everything)
        self.state_changed = Signal()  # file, dirty flag
        self.scan_changed = Signal()
        self.groups_changed = Signal()
        self.run_changed = Signal()
        self.runs_changed = Signal()  # the list of the project's runs
        self.training_changed = Signal()  # (training: bool)
        self.config_error = Signal()  # (message: str) a change was refused; the message names the field
        self.cfg: RunConfig = default_config()
        self.path: Path | None = None
        self.dirty = False
        # what the window learned, not saved in the file
        self.scan = None  # engine.scan.DatasetIndex of data.folders, raw (no renames)
        self.scan_error = ""
        self.scanning = False
        self.val_scan = None
        self.val_scan_error = ""
        self.groups: GroupInfo | None = None
        self.groups_error = ""
        self.model_problem = ""  # e.g. weights that still need a download
        self.run_dir: Path | None = None
        self.record = None  # engine.rundir.RunRecord of run_dir
        self.runs: list[runs_mod.RunInfo] = []  # the project's runs (and any opened), newest first
        self.opened_runs: list[Path] = []  # run folders opened from elsewhere, listed with the project's
        self.training = False
        self.paused = False
        self.has_trained = False  # a run finished or was opened: free navigation

    # ------------------------------------------------------------------ config
    def set(self, key: str, value: Any) -> bool:
        return self.update({key: value})

    def update(self, changes: dict[str, Any]) -> bool:
        """Apply dotted-path changes. An invalid value is refused (the config stays valid) and
        reported through ``config_error`` with the field's name; returns whether it applied."""
        try:
            new = self.cfg.replace(**changes)
        except ConfigError as exc:
            self.config_error.emit(str(exc))
            self.config_changed.emit({k for k in changes})  # widgets show the kept value again
            return False
        if new == self.cfg:
            return True
        self.cfg = new
        self._set_dirty(True)
        self.config_changed.emit({k for k in changes})
        return True

    def replace_config(self, cfg: RunConfig, path: Path | None, dirty: bool = False) -> None:
        self.cfg = cfg
        self.path = path
        self.dirty = dirty
        self.state_changed.emit()
        self.config_changed.emit({""})

    def _set_dirty(self, dirty: bool) -> None:
        if dirty != self.dirty:
            self.dirty = dirty
            self.state_changed.emit()

    # ------------------------------------------------------------------ files
    def new(self) -> None:
        self.set_run(None, None)
        self.has_trained = False
        self.opened_runs = []
        self.replace_config(default_config(), None)
        self.set_runs([])

    def open(self, path: str | Path) -> None:
        cfg = config_mod.load(path)  # ConfigError with the file and field on problems
        self.set_run(None, None)
        self.has_trained = False
        self.opened_runs = []
        self.replace_config(cfg, Path(path).absolute())
        self.set_runs([])

    def save(self, path: str | Path | None = None) -> Path:
        target = Path(path) if path else self.path
        if target is None:
            raise ConfigError("no file name chosen")
        config_mod.save(self.cfg, target)
        if self.path is None:  # the untitled project's runs stay listed with it
            self.opened_runs.extend(r.run_dir for r in self.runs if r.run_dir not in self.opened_runs)
        self.path = target.absolute()
        self.dirty = False
        self.state_changed.emit()
        return target

    @property
    def title(self) -> str:
        return self.path.name if self.path else "Untitled"

    # ------------------------------------------------------------------ learned state
    def set_scan(self, index, error: str = "") -> None:
        self.scan, self.scan_error, self.scanning = index, error, False
        self.scan_changed.emit()

    def set_val_scan(self, index, error: str = "") -> None:
        self.val_scan, self.val_scan_error = index, error
        self.scan_changed.emit()

    def set_scanning(self, scanning: bool) -> None:
        self.scanning = scanning
        self.scan_changed.emit()

    def set_groups(self, info: GroupInfo | None, error: str = "") -> None:
        self.groups, self.groups_error = info, error
        self.groups_changed.emit()

    def set_model_problem(self, problem: str) -> None:
        if problem != self.model_problem:
            self.model_problem = problem
            self.groups_changed.emit()

    def set_run(self, run_dir: str | Path | None, record) -> None:
        self.run_dir = Path(run_dir) if run_dir else None
        self.record = record
        if record is not None:
            self.has_trained = True
        self.run_changed.emit()

    def set_runs(self, runs: list) -> None:
        self.runs = list(runs)
        self.runs_changed.emit()

    def runs_dir(self) -> Path:
        """Where this project's runs go (a new time-stamped folder each) when output.dir is empty."""
        return runs_mod.project_runs_dir(self.path)

    def find_runs(self) -> list:
        """The project's runs folder and the run folders opened with it, read from disk (no torch;
        a few small files per run, so it may run on the GUI thread for a few hundred runs)."""
        found = runs_mod.list_runs(self.runs_dir())
        known = {r.run_dir.resolve() for r in found}
        for folder in self.opened_runs:
            info = runs_mod.run_info(folder)
            if info is not None and info.run_dir.resolve() not in known:
                found.append(info)
        return sorted(found, key=lambda r: (r.started, r.run_dir.name), reverse=True)

    def reread_runs(self) -> bool:
        """Read the runs from disk again (a run trained elsewhere appeared, one ended or was
        killed); ``runs_changed`` only when the list differs. Returns whether it did."""
        found = self.find_runs()
        if found == self.runs:
            return False
        self.set_runs(found)
        return True

    def runs_to_watch(self) -> list[Path]:
        """The folders whose changes can change the runs list: the runs folder (its parent while
        it does not exist yet) and every listed run's folder (a run writes its files there)."""
        root = self.runs_dir()
        first = [d for d in (root, root.parent) if d.is_dir()][:1]
        return [*first, *(r.run_dir for r in self.runs if r.run_dir.is_dir())]

    def has_live_run(self) -> bool:
        """A listed run is being trained (here or by another process): it can end or be killed
        without a file changing, so the window asks again now and then."""
        return any(r.live for r in self.runs)

    def live_run_ended(self) -> bool:
        """A run listed as live is no longer (its process ended or was killed): one lock test per
        live run, cheap enough to ask every second or two while training runs."""
        return any(r.live and not runlock.in_use(r.run_dir) for r in self.runs)

    def resume_offer(self) -> runs_mod.RunInfo | None:
        """The run the window offers to resume (engine/runs.py's rule), None while training."""
        return None if self.training else runs_mod.resume_offer(self.runs, self.run_dir)

    def set_training(self, training: bool) -> None:
        self.training = training
        if not training:
            self.paused = False
        self.training_changed.emit(training)

    def set_paused(self, paused: bool) -> None:
        self.paused = paused and self.training
        self.training_changed.emit(self.training)

    # ------------------------------------------------------------------ derived
    def class_counts(self) -> dict[str, int]:
        return dataset_view.effective_counts(self.scan, self.cfg.data) if self.scan else {}

    def num_classes(self) -> int:
        return len(self.class_counts())

    def split_counts(self) -> tuple[int, int]:
        return dataset_view.split_counts(self.class_counts(), self.cfg.data)

    def steps_per_epoch(self) -> int:
        train, _ = self.split_counts()
        return dataset_view.steps_per_epoch(train or 1, self.cfg.train.batch_size)
