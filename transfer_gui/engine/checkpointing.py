"""Checkpoints of a run, two parts: the writer (rank 0, after every epoch: ``best.pt`` when the
epoch is the best, ``last.pt`` always, ``metrics.jsonl``, ``val_predictions.json`` with
``val_logits.npy`` when the best epoch changes) and the
resume (``last.pt`` back into the model, the optimizer and the run state, before the first
epoch). :func:`training_state` and :meth:`Resume.before_fit` are the two sides of one format."""

from __future__ import annotations

import math
from pathlib import Path

from transfer_gui.config import ConfigError
from transfer_gui.engine import rundir
from transfer_gui.engine.checkpoint import load_checkpoint, save_checkpoint
from transfer_gui.engine.parts import Part, Run


def last_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.pt"


def read_resume(run_dir: Path) -> dict:
    """The interrupted run's ``last.pt``, read and checked like every checkpoint."""
    path = last_path(run_dir)
    if not path.is_file():
        raise rundir.RunFolderError(f"nothing to resume in {run_dir}: no checkpoints/last.pt")
    return load_checkpoint(path)


def training_state(run: Run) -> dict:
    """What ``last.pt`` adds to a checkpoint so that a resume continues where the run was."""
    st = run.state
    return {"optimizer": run.optimizer.state_dict(), "epoch": st.epoch, "step": st.step,
            "best_score": st.best_score, "best_epoch": st.best_epoch, "epoch_base": 1, "best_val_acc": st.best_val_acc,
            "history": st.history, "patience_left": st.patience_left,
            "test_paths": sorted(x.path for x in getattr(run.prepared.split, "test", ()))}


class CheckpointWriter(Part):
    def __init__(self, run_dir: Path, main: bool = True):
        self.run_dir, self.main = run_dir, main
        self.meta: dict = {}
        self.best_logits = None  # the best epoch's validation logits, rows as in run.state.best_predictions

    def before_fit(self, run: Run) -> None:
        p = run.prepared
        self.meta = dict(model=p.model, arch=p.built.arch, classes=p.split.classes, preprocessing=p.built.preprocessing,
                         head_path=p.built.head_path, config_text=run.config_text)

    def after_epoch(self, run: Run) -> None:
        if not self.main:
            return
        ep = run.epoch
        if ep.is_best:
            save_checkpoint(self.run_dir / "checkpoints" / "best.pt", metrics=ep.record, **self.meta)
        # last.pt first: it is the truth a resume starts from (metrics.jsonl is at most one line behind)
        save_checkpoint(last_path(self.run_dir), metrics=ep.record, extra=training_state(run), **self.meta)
        rundir.write_metrics(self.run_dir / "metrics.jsonl", run.state.history)
        if ep.is_best:
            self.best_logits = ep.val.get("logits")
        if ep.is_best or not (self.run_dir / rundir.PREDICTIONS["val"]).exists():
            # both set by the same best epoch (tracking and this part), so their rows match; after a resume both are empty
            logits = self.best_logits if self.best_logits is not None else []
            rundir.write_predictions(self.run_dir, "val", run.prepared.split.classes, run.state.best_predictions, logits)


class Resume(Part):
    def __init__(self, blob: dict, run_dir: Path):
        self.blob, self.run_dir = blob, run_dir

    def before_fit(self, run: Run) -> None:
        blob, st = self.blob, run.state
        run.prepared.model.load_state_dict(blob["state_dict"])
        try:
            run.optimizer.load_state_dict(blob["optimizer"])
        except ValueError:
            raise ConfigError(f"cannot resume {self.run_dir}: the layers that train differ from the interrupted "
                              f"run's (frozen groups, feature cache or augmentation changed); resume with the "
                              f"run's own config.toml") from None
        self._check_test_set(run)
        st.epoch, st.step = int(blob["epoch"]), int(blob["step"])
        st.history = list(blob.get("history") or rundir.read_metrics(self.run_dir / "metrics.jsonl"))[:st.epoch]
        st.best_score = float(blob.get("best_score", st.best_score))
        st.patience_left = int(blob.get("patience_left", st.patience_left))
        # best_epoch is 1-based; a last.pt without "epoch_base" counted from 0
        st.best_epoch = int(blob.get("best_epoch", -1)) + (0 if blob.get("epoch_base") == 1 else 1)
        st.best_val_acc = float(blob.get("best_val_acc", math.nan))

    def _check_test_set(self, run: Run) -> None:
        """A resume keeps the run's test set: images it held out must not train now, and no new
        test set can appear (its images trained in the earlier epochs). A last.pt from before test
        sets had none."""
        before = list(self.blob.get("test_paths") or [])
        now = sorted(x.path for x in getattr(run.prepared.split, "test", ()))
        if before != now:
            raise ConfigError(f"cannot resume {self.run_dir}: its test set differs from the interrupted run's "
                              f"({len(before)} images then, {len(now)} now), so test images would be trained on "
                              f"or trained images tested; resume with the run's own data.test_folders, "
                              f"data.test_fraction and train.seed (its config.toml)", "data.test_fraction")
