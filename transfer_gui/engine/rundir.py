"""The run folder: what a run leaves behind, written atomically, and read back by the window.

```
RUN_DIR/
  config.toml            the resolved config of the run
  metrics.jsonl          one JSON object per finished epoch
  checkpoints/last.pt    after every epoch (with optimizer state, to resume)
  checkpoints/best.pt    the best epoch by the validation metric
  skipped.json           files that were skipped, with the reason
  val_predictions.json   the best model's prediction for every validation image
  summary.json           how the run ended
```
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from transfer_gui import config as config_mod
from transfer_gui.atomic import atomic_write_text, remove_stale_parts
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

    preds = read("val_predictions.json", {})
    return RunRecord(run_dir, cfg, classes=list(preds.get("classes", [])) or read("summary.json", {}).get("classes", []),
                     history=read_metrics(run_dir / "metrics.jsonl"), predictions=list(preds.get("items", [])),
                     skipped=read("skipped.json", []), summary=read("summary.json", {}))


RUN_FILES = ("config.toml", "metrics.jsonl", "skipped.json", "val_predictions.json", "summary.json", "error.log",
             "checkpoints/last.pt", "checkpoints/best.pt")


def clear_previous_run(run_dir: Path) -> bool:
    """Remove what an earlier run left in ``run_dir`` (its checkpoints, metrics, predictions),
    so that a new run never shows beside another run's files. Returns True if there was one.

    A folder that holds other files and no run is refused: it is somebody's folder, not ours.
    """
    if not run_dir.is_dir():
        return False
    ours = {run_dir / name for name in RUN_FILES} | {run_dir / "checkpoints"}
    present = [p for p in ours if p.exists()]
    others = [p for p in run_dir.iterdir() if p not in ours and not p.name.startswith(".")]
    if others and not (run_dir / "config.toml").exists():
        raise FileExistsError(f"output.dir {run_dir} already holds other files ({others[0].name}, ...); "
                              f"choose an empty or new folder for the run")
    for p in present:
        if p.is_file():
            p.unlink()
    return bool(present)


def open_run_folder(run_dir: Path, cfg: config_mod.RunConfig, resume: bool, emit: Callable[[object], None]) -> None:
    """Make ``run_dir`` ready for a run (rank 0 only): half-written temporaries that a killed
    run left are removed, an earlier run's files are cleared (not when resuming), and the run's
    config is written. Any problem is a RunFolderError that says what to do."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        stale = [*remove_stale_parts(run_dir, tuple(n for n in RUN_FILES if "/" not in n)),
                 *remove_stale_parts(run_dir / "checkpoints", ("last.pt", "best.pt"))]
        if stale:
            emit(Warning(f"removed {len(stale)} half-written temporary file(s) left by an interrupted run"))
        if not resume and clear_previous_run(run_dir):
            emit(Warning(f"{run_dir} held an earlier run; its files were replaced by this run's"))
        config_mod.save(cfg, run_dir / "config.toml")
    except FileExistsError as exc:
        raise RunFolderError(str(exc)) from None
    except OSError as exc:
        raise RunFolderError(f"cannot write the run folder {run_dir}: {exc.strerror or exc}. Choose another "
                             f"output folder (output.dir).") from None
