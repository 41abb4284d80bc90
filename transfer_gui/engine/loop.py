"""The training loop: ``Trainer().fit(config, on_event, control) -> RunResult``.

Runs the same in the window's QThread, on the command line and under torchrun. Reports
through small events, polls ``control`` between batches, and turns every failure into a message
a person can act on. The loop itself only trains and validates, in small steps (``_do_epoch``,
``_train_batches``, ``_one_batch``, ``_validate``), each emitting its events; best-epoch
tracking, early stopping, checkpoints, resuming and DistributedDataParallel are parts
(engine/parts.py) that the loop calls through their hooks.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from transfer_gui import config as config_mod
from transfer_gui.config import RunConfig
from transfer_gui.engine import rundir, runlock
from transfer_gui.engine.calibration import Calibrate
from transfer_gui.engine.checkpointing import CheckpointWriter, Resume, read_resume
from transfer_gui.engine.control import RunControl, StopRequested
from transfer_gui.engine.ddp import DdpWrap
from transfer_gui.engine.drift import GroupDrift
from transfer_gui.engine.events import BatchEnd, EpochEnd, Finished, PhaseChanged, RunStarted
from transfer_gui.engine.folderwatch import DataFolders
from transfer_gui.engine.freezing import apply_freeze
from transfer_gui.engine.optim import current_lrs, make_optimizer, set_lr_factor
from transfer_gui.engine.parts import EpochOutcome, Part, Run, RunState, call
from transfer_gui.engine.prepare import Prepared, prepare
from transfer_gui.engine.ranks import SINGLE, Dist
from transfer_gui.engine.rules import frozen_at_epoch
from transfer_gui.engine.runs import new_run_dir
from transfer_gui.engine.schedule import from_config, lr_factor
from transfer_gui.engine.step import StepOut, TrainStep
from transfer_gui.engine.tboard import TensorBoard
from transfer_gui.engine.testeval import TestEvaluation, with_test_result
from transfer_gui.engine.tracking import BestEpoch, finished_message
from transfer_gui.errors import Cancelled, UserError


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class RunResult:
    status: str  # completed | stopped | early_stopped | failed
    message: str
    run_dir: Path
    classes: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_acc: float = float("nan")
    seconds: float = 0.0
    bad_input: bool = False  # failed because of the config, data or weights the user gave
    figures: dict = field(default_factory=dict)  # what parts add to summary.json (test_acc, test_n, ...)


def default_run_dir(runs_root: Path | None = None) -> Path:
    """A new time-stamped folder in ``runs_root`` (a project's runs folder), by default in ``runs/``
    under the working directory: where a run goes when its config names no ``output.dir``."""
    return new_run_dir(runs_root if runs_root is not None else Path("runs"))


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class _EpochMeter:
    """Loss, accuracy and throughput of one epoch's batches (images/s over the last 20)."""

    def __init__(self, batches: int, world: int):
        self.batches, self.world = batches, world
        self.loss, self.correct, self.n = 0.0, 0, 0
        self.recent: list[tuple[int, float]] = []
        self.t_last = time.perf_counter()

    def add(self, out: StepOut, y: torch.Tensor, valid: torch.Tensor | None, n_valid: int) -> None:
        self.loss += float(out.loss) * n_valid
        hits = out.logits.argmax(1) == y
        self.correct += int((hits & valid).sum() if valid is not None else hits.sum())
        self.n += n_valid
        now = time.perf_counter()
        self.recent = [*self.recent[-19:], (n_valid * self.world, now - self.t_last)]
        self.t_last = now

    def images_per_s(self) -> float:
        return sum(k for k, _ in self.recent) / max(1e-9, sum(t for _, t in self.recent)) if self.recent else 0.0

    def totals(self, dist: Dist) -> tuple[float, float, float]:
        """(loss, accuracy) over every rank's images, and this rank's images/s."""
        sums = dist.all_reduce_sum(torch.tensor([self.loss, float(self.correct), float(self.n)], dtype=torch.float64))
        n = max(1, float(sums[2]))
        return float(sums[0]) / n, float(sums[1]) / n, self.images_per_s()


class Trainer:
    """One run. ``fit`` never raises for problems a user can cause: it returns a failed result
    whose message says what to change (and emits the same as a ``Finished`` event)."""

    def __init__(self) -> None:
        self._reset(SINGLE, RunControl())

    def _reset(self, dist: Dist, control: RunControl) -> None:
        """The state of one run: set before every fit, so a Trainer can run again."""
        self.dist = dist
        self.control = control
        self.state = RunState()
        self.classes: list[str] = []
        self.device: torch.device | None = None
        self.run: Run | None = None
        self._prepared: Prepared | None = None

    def parts(self, cfg: RunConfig, run_dir: Path, resume_blob: dict | None) -> list[Part]:
        """The parts of a run, in the order their hooks are called (tracking decides the best
        epoch before the writer saves it; drift copies the pretrained weights before a resume
        loads last.pt, and adds its metrics before the writer saves them). A subclass may add its own."""
        parts: list[Part] = [BestEpoch(cfg.train), GroupDrift(self.dist.main)]
        if resume_blob is not None:
            parts.append(Resume(resume_blob, run_dir))
        parts.append(CheckpointWriter(run_dir, self.dist.main))
        parts.append(DataFolders(cfg.data))  # after the writer: a run it stops keeps that epoch's checkpoint
        parts.append(Calibrate(run_dir, self.dist.main))  # after the last checkpoint, before test evaluation
        parts.append(TestEvaluation(self._validate, self.control))  # after_fit only: never sees an epoch
        parts.append(TensorBoard(cfg.output.tensorboard, self.dist.main))  # after drift and the test: writes their figures
        if self.dist.active:
            parts.append(DdpWrap(self.dist))
        return parts

    def fit(self, cfg: RunConfig, on_event: Callable[[object], None] | None = None,
            control: RunControl | None = None, resume: bool = False, dist: Dist = SINGLE,
            runs_root: Path | None = None) -> RunResult:
        emit = on_event or (lambda e: None)
        self._reset(dist, control or RunControl())
        t0 = time.perf_counter()
        run_dir = Path(cfg.output.dir) if cfg.output.dir else Path(dist.broadcast_object(str(default_run_dir(runs_root))))
        if not cfg.output.dir:
            cfg = cfg.replace(**{"output.dir": str(run_dir)})
        try:
            result = self._fit(cfg, run_dir, emit, resume, t0)
        except Exception as exc:  # noqa: BLE001 - the front end shows a message, never a traceback
            result = self._failed(exc, cfg, run_dir, t0)
        if self._prepared is not None:
            self._prepared.close()
        self._write_summary(result)
        runlock.release(run_dir)  # after the summary: a reader never sees a run neither live nor ended
        emit(Finished(result.status, result.message, str(result.run_dir), result.best_epoch,
                      result.best_val_acc, len(result.history), result.seconds,
                      {"classes": result.classes, **result.figures}))
        return result

    # ------------------------------------------------------------------------------------ outcome
    def _result(self, status: str, message: str, run_dir: Path, t0: float) -> RunResult:
        st = self.state
        return RunResult(status, message, run_dir, list(self.classes), list(st.history), st.best_epoch,
                         st.best_val_acc, time.perf_counter() - t0)

    def _failed(self, exc: Exception, cfg: RunConfig, run_dir: Path, t0: float) -> RunResult:
        """The result of a run that raised: stopped (a cancel), the user's to fix (bad_input),
        diverged, or a fault whose traceback goes to error.log."""
        if isinstance(exc, Cancelled):
            return self._result("stopped", "Stopped before training began.", run_dir, t0)
        if isinstance(exc, (UserError, NonFiniteLoss)):
            result = self._result("failed", str(exc), run_dir, t0)
            result.bad_input = isinstance(exc, UserError)
            return result
        if isinstance(exc, OSError) and exc.errno is not None:
            where = Path(exc.filename).absolute() if isinstance(exc.filename, str) else run_dir.absolute()
            if where == run_dir.absolute() or run_dir.absolute() in where.parents:  # not the temporary file's name
                msg = rundir.cannot_write("run folder", run_dir, exc, "Free some space or choose another output "
                                          "folder (output.dir). The last complete checkpoint is intact.")
            else:
                msg = (f"Cannot write to {where}: {exc.strerror}. Free some space or choose another output "
                       f"folder. Files already written (the last complete checkpoint) are intact.")
        elif _is_oom(exc):
            device = self.device if self.device is not None else "the device"
            msg = (f"Out of memory on {device} with batch size {cfg.train.batch_size}. Try a batch size of "
                   f"{max(1, cfg.train.batch_size // 2)}, a smaller image size, or freeze more layers. "
                   f"The last checkpoint is kept.")
        else:
            msg = f"Training failed: {type(exc).__name__}: {exc}. The last checkpoint is kept."
        self._write_error(run_dir, exc)
        return self._result("failed", msg, run_dir, t0)

    def _write_error(self, run_dir: Path, exc: BaseException) -> None:
        if not self.dist.main:
            return
        try:
            if run_dir.is_dir():
                (run_dir / "error.log").write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        except OSError:
            pass

    def _write_summary(self, result: RunResult) -> None:
        if not self.dist.main or not result.run_dir.is_dir() or runlock.in_use_elsewhere(result.run_dir):
            return  # (another process trains there: refused, and its files are not ours to write)
        try:
            rundir.write_json(result.run_dir / "summary.json", {
                "status": result.status, "message": result.message, "classes": result.classes,
                "best_epoch": result.best_epoch, "best_val_acc": result.best_val_acc,
                "epochs_done": len(result.history), "seconds": round(result.seconds, 3), **result.figures})
        except OSError:
            pass

    # ------------------------------------------------------------------------------------ the run
    def _fit(self, cfg: RunConfig, run_dir: Path, emit, resume: bool, t0: float) -> RunResult:
        blob = read_resume(run_dir) if resume else None
        config_mod.check_paths(cfg)
        if self.dist.main:
            rundir.open_run_folder(run_dir, cfg, resume, emit)
        p = self._prepared = prepare(cfg, emit, self.control, self.dist)
        self.device, self.classes = p.device, p.split.classes
        if self.dist.main:
            rundir.write_json(run_dir / "skipped.json", [{"path": s.path, "reason": s.reason} for s in p.split.skipped])
            rundir.write_decisions(run_dir, p.split.decisions)
        for note in p.notes:
            emit(PhaseChanged("prepare", note))
        run = self.run = self._start(cfg, run_dir, p, emit, blob)
        status, message = self._epochs(run)
        call(run, "after_fit")
        figures = {k: v for part in run.parts for k, v in getattr(part, "figures", {}).items()}
        if p.class_weights is not None:
            figures["class_weights"] = dict(zip(p.split.classes, p.class_weights))
        result = self._result(status, with_test_result(message, figures), run_dir, t0)
        result.figures = figures
        return result

    def _start(self, cfg: RunConfig, run_dir: Path, p: Prepared, emit, blob: dict | None) -> Run:
        """The optimizer, schedule and step of the run; the parts' ``before_fit``; RunStarted."""
        epochs = cfg.train.epochs
        steps_per_epoch = max(1, len(p.train_loader))
        opt = make_optimizer(p.model, p.train_groups, p.lrs, cfg.optim)
        run = Run(cfg, run_dir, p, opt, self.state, emit, self.dist, TrainStep.for_run(p, opt, self.dist),
                  from_config(cfg.schedule, steps_per_epoch, epochs), config_mod.dumps(cfg),
                  parts=self.parts(cfg, run_dir, blob))
        call(run, "before_fit")
        run.start_epoch = self.state.epoch
        emit(RunStarted(str(run_dir), str(p.device), p.precision, p.split.classes, [g.name for g in p.groups],
                        [g.name for g in p.groups if g.name not in p.frozen], len(p.split.train), len(p.split.val),
                        epochs, steps_per_epoch, steps_per_epoch * epochs, p.use_features, run.start_epoch,
                        len(p.split.test)))
        return run

    def _epochs(self, run: Run) -> tuple[str, str]:
        """Every epoch still to run: (status, message) of how they ended."""
        epochs = run.cfg.train.epochs
        try:
            for epoch in range(run.state.epoch, epochs):
                self._do_epoch(run, epoch)
                if run.stop is not None:
                    return run.stop
        except StopRequested:
            done = len(run.state.history)
            return "stopped", (f"Stopped by request after {done} complete epoch(s); the last checkpoint is kept."
                               if done else "Stopped by request before the first epoch finished.")
        return "completed", finished_message(epochs, run.state)

    def _do_epoch(self, run: Run, epoch: int) -> None:
        p, cfg, epochs = run.prepared, run.cfg, run.cfg.train.epochs
        run.frozen_now = self._freeze_for(run, epoch)
        torch.manual_seed(cfg.train.seed * 1000 + epoch + 7919 * self.dist.rank)
        if hasattr(p.train_loader.sampler, "set_epoch"):
            p.train_loader.sampler.set_epoch(epoch)
        run.train_module = p.module
        call(run, "before_epoch")
        run.emit(PhaseChanged("train", f"Epoch {epoch + 1} of {epochs}"))
        t_ep = time.perf_counter()
        train_loss, train_acc, ips = self._train_batches(run, epoch)
        run.emit(PhaseChanged("validate", f"Validating epoch {epoch + 1}"))
        val = self._validate(run)
        seconds = time.perf_counter() - t_ep
        lrs = current_lrs(run.optimizer)
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                  "val_loss": val["loss"], "val_acc": val["acc"], "seconds": round(seconds, 3),
                  "images_per_s": round(ips, 2), "lrs": lrs, "per_class_acc": val["per_class"]}
        run.state.history.append(record)
        run.state.epoch = epoch + 1
        run.epoch = EpochOutcome(epoch, record, val)
        call(run, "after_epoch")
        run.emit(EpochEnd(epoch, epochs, train_loss, train_acc, val["loss"], val["acc"], val["per_class"],
                          val["confusion"], seconds, lrs, run.epoch.is_best, ips))
        if epoch == run.start_epoch and p.use_features:
            images = len(p.split.train) + len(p.split.val) + len(p.split.test)
            run.emit(PhaseChanged("train", f"features computed once: {images:,} images, {p.feature_seconds:.1f} s; "
                                           f"epochs now take {seconds:.2f} s"))

    def _freeze_for(self, run: Run, epoch: int) -> set[str]:
        """The groups frozen in ``epoch`` (gradual unfreezing), applied to the model."""
        p, layers = run.prepared, run.cfg.layers
        if p.use_features:
            return p.frozen
        frozen_now = frozen_at_epoch(p.frozen, layers.unfreeze_at, epoch)
        thawed = p.frozen - frozen_now
        if thawed and epoch in set(layers.unfreeze_at.values()):
            run.emit(PhaseChanged("train", f"epoch {epoch + 1}: unfreezing {', '.join(sorted(thawed))}"))
        apply_freeze(p.model, p.groups, frozen_now)
        return frozen_now

    # ------------------------------------------------------------------------------------ training
    def _forward(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module(x)

    def _train_batches(self, run: Run, epoch: int) -> tuple[float, float, float]:
        """One epoch of optimizer steps: (loss, accuracy, images/s)."""
        p = run.prepared
        p.train_mode(run.frozen_now)
        run.step.clip(p.module)
        meter = _EpochMeter(len(p.train_loader), self.dist.world)
        for b, (x, y, _idx) in enumerate(p.train_loader, start=1):
            self._one_batch(run, epoch, b, x, y, meter)
        return meter.totals(self.dist)

    def _one_batch(self, run: Run, epoch: int, b: int, x, y, meter: _EpochMeter) -> None:
        self.control.checkpoint()
        batch = run.step.batch(x, y)
        if batch is None:
            return
        set_lr_factor(run.optimizer, lr_factor(run.state.step, run.schedule))
        out = run.step(lambda inputs: self._forward(run.train_module, inputs), batch,
                       guard=lambda loss: self._check_finite(run, loss, epoch, b),
                       after_backward=lambda o: call(run, "after_backward", o))
        run.state.step += 1
        lrs = current_lrs(run.optimizer)
        meter.add(out, batch.y, batch.valid, batch.n_valid)
        run.emit(BatchEnd(epoch, run.state.step, b, meter.batches, float(out.global_loss), lrs, meter.images_per_s()))

    def _check_finite(self, run: Run, loss: torch.Tensor, epoch: int, b: int) -> None:
        if not torch.isfinite(loss).all():
            lr = run.cfg.layers.head_lr
            raise NonFiniteLoss(f"The loss became {loss.item()} at epoch {epoch + 1}, batch {b}: training "
                                f"diverged. Lower the learning rate (head lr is {lr:g}; try {lr / 10:g}) or add "
                                f"warmup. The last checkpoint is kept.")

    @torch.no_grad()
    def _validate(self, run: Run, loader=None, samples=None, check: Callable[[], None] | None = None) -> dict:
        """Loss, accuracy, confusion, per-class accuracy, per-image predictions (``preds``, by path)
        and their raw logits (``logits``, float32 N x C, rows in the order of ``preds``) of the
        validation images, or of ``loader`` over ``samples`` (the test set), on every rank's share."""
        p, dist = run.prepared, self.dist
        loader, samples = (p.val_loader, p.split.val) if loader is None else (loader, samples)
        check = check or self.control.checkpoint
        p.module.eval()
        n_cls = len(p.split.classes)
        confusion = torch.zeros(n_cls, n_cls, dtype=torch.long)
        total_loss, n = 0.0, 0
        rows: list[tuple[dict, np.ndarray]] = []
        for x, y, idx in loader:
            check()
            y = torch.as_tensor(y)
            keep = y >= 0
            x, y, idx = x[keep], y[keep], torch.as_tensor(idx)[keep]
            if len(y) == 0:
                continue
            # fp32, whatever the training step's autocast: the saved logits, the calibration and the
            # reported accuracy are then those of the weights every export carries
            logits = p.module(x.to(p.device)).float().cpu()
            total_loss += float(run.step.criterion(logits, y)) * len(y)
            n += len(y)
            confusion += self._predictions(n_cls, samples, logits, y, idx, rows)
        sums = dist.all_reduce_sum(torch.tensor([total_loss, float(n)], dtype=torch.float64))
        total_loss, n = float(sums[0]), int(sums[1])
        confusion = dist.all_reduce_sum(confusion)
        rows = sorted(dist.gather_objects(rows), key=lambda r: r[0]["path"])
        row = confusion.sum(1).float()
        per_class = [float("nan") if r == 0 else float(d) / float(r) for d, r in zip(confusion.diag(), row)]
        return {"loss": total_loss / n if n else float("nan"), "acc": float(confusion.diag().sum()) / n if n else float("nan"),
                "n": n, "confusion": confusion.tolist(), "per_class": per_class, "preds": [r[0] for r in rows],
                "logits": np.stack([r[1] for r in rows]) if rows else np.zeros((0, n_cls), np.float32)}

    @staticmethod
    def _predictions(n_cls: int, samples: list, logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
                     out: list[tuple[dict, np.ndarray]]) -> torch.Tensor:
        """Append each image's prediction (top 5) and raw logits to ``out``; this batch's confusion counts."""
        prob = logits.softmax(1)
        conf, pred = prob.max(1)
        topv, topi = prob.topk(min(5, n_cls), dim=1)
        raw = logits.numpy().astype(np.float32)
        for k in range(len(y)):
            out.append(({"path": samples[int(idx[k])].path, "true": int(y[k]), "pred": int(pred[k]),
                         "confidence": round(float(conf[k]), 5),
                         "top": [[int(i), round(float(v), 5)] for v, i in zip(topv[k], topi[k])]}, raw[k].copy()))
        return torch.bincount(y * n_cls + pred, minlength=n_cls * n_cls).view(n_cls, n_cls)
