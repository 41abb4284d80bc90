"""The training loop: ``Trainer().fit(config, on_event, control) -> RunResult``.

Runs the same in the window's QThread, on the command line and under torchrun. Reports
through small events, polls ``control`` between batches, writes a checkpoint atomically after
every epoch, and turns every failure into a message a person can act on.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from transfer_gui import config as config_mod
from transfer_gui.atomic import remove_stale_parts
from transfer_gui.config import ConfigError, RunConfig
from transfer_gui.engine import checkpoint, rundir
from transfer_gui.engine.control import RunControl, StopRequested
from transfer_gui.engine.ranks import SINGLE, Dist
from transfer_gui.engine.events import BatchEnd, EpochEnd, Finished, PhaseChanged, RunStarted, Warning
from transfer_gui.engine.freezing import apply_freeze, frozen_at_epoch, set_train_mode
from transfer_gui.engine.optim import current_lrs, make_optimizer, set_lr_factor
from transfer_gui.engine.prepare import Prepared, prepare
from transfer_gui.engine.rundir import RunFolderError
from transfer_gui.engine.runs import new_run_dir
from transfer_gui.engine.schedule import from_config, lr_factor
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


def default_run_dir(runs_root: Path | None = None) -> Path:
    """A new time-stamped folder in ``runs_root`` (a project's runs folder), by default in ``runs/``
    under the working directory: where a run goes when its config names no ``output.dir``."""
    return new_run_dir(runs_root if runs_root is not None else Path("runs"))


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class Trainer:
    """One run. ``fit`` never raises for problems a user can cause: it returns a failed result
    whose message says what to change (and emits the same as a ``Finished`` event)."""

    def fit(self, cfg: RunConfig, on_event: Callable[[object], None] | None = None,
            control: RunControl | None = None, resume: bool = False, dist: Dist = SINGLE,
            runs_root: Path | None = None) -> RunResult:
        emit = on_event or (lambda e: None)
        control = control or RunControl()
        self.dist = dist
        t0 = time.perf_counter()
        run_dir = Path(cfg.output.dir) if cfg.output.dir else Path(dist.broadcast_object(str(default_run_dir(runs_root))))
        if not cfg.output.dir:
            cfg = cfg.replace(**{"output.dir": str(run_dir)})
        self.history: list[dict] = []
        self.best = (-1, float("nan"))
        self._prepared = None
        try:
            result = self._fit(cfg, run_dir, emit, control, resume, t0)
        except Cancelled:
            result = self._result("stopped", "Stopped before training began.", run_dir, t0)
        except NonFiniteLoss as exc:
            result = self._result("failed", str(exc), run_dir, t0)
        except UserError as exc:
            result = self._result("failed", str(exc), run_dir, t0)
            result.bad_input = True
        except Exception as exc:  # noqa: BLE001 - the front end shows a message, never a traceback
            if isinstance(exc, OSError) and exc.errno is not None:
                msg = (f"Cannot write to {exc.filename or run_dir}: {exc.strerror}. Free some space or choose "
                       f"another output folder. Files already written (the last complete checkpoint) are intact.")
            elif _is_oom(exc):
                msg = (f"Out of memory on {getattr(self, 'device', 'the device')} with batch size "
                       f"{cfg.train.batch_size}. Try a batch size of {max(1, cfg.train.batch_size // 2)}, a smaller "
                       f"image size, or freeze more layers. The last checkpoint is kept.")
            else:
                msg = f"Training failed: {type(exc).__name__}: {exc}. The last checkpoint is kept."
            self._write_error(run_dir, exc)
            result = self._result("failed", msg, run_dir, t0)
        if self._prepared is not None:
            self._prepared.close()
        self._write_summary(result)
        emit(Finished(result.status, result.message, str(result.run_dir), result.best_epoch,
                      result.best_val_acc, len(result.history), result.seconds,
                      {"classes": result.classes}))
        return result

    # ------------------------------------------------------------------------------------
    def _result(self, status: str, message: str, run_dir: Path, t0: float) -> RunResult:
        return RunResult(status, message, run_dir, list(getattr(self, "classes", [])), list(self.history),
                         self.best[0], self.best[1], time.perf_counter() - t0)

    def _write_error(self, run_dir: Path, exc: BaseException) -> None:
        if not self.dist.main:
            return
        try:
            if run_dir.is_dir():
                (run_dir / "error.log").write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        except OSError:
            pass

    def _write_summary(self, result: RunResult) -> None:
        if not self.dist.main or not result.run_dir.is_dir():
            return
        try:
            rundir.write_json(result.run_dir / "summary.json", {
                "status": result.status, "message": result.message, "classes": result.classes,
                "best_epoch": result.best_epoch, "best_val_acc": result.best_val_acc,
                "epochs_done": len(result.history), "seconds": round(result.seconds, 3)})
        except OSError:
            pass

    def _forward(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module(x)

    def _wrap(self, p: Prepared, frozen: set[str]) -> None:
        """The module the optimizer steps through: under torchrun, DistributedDataParallel,
        rebuilt when gradual unfreezing changes which parameters train."""
        self.train_module = p.module
        if not self.dist.active:
            return
        key = frozenset(frozen)
        if getattr(self, "_ddp_key", None) == key:
            self.train_module = self._ddp
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [p.device.index] if p.device.type == "cuda" else None
        # buffers (BatchNorm statistics) follow rank 0, so every rank validates the saved model
        self._ddp = DDP(p.module, device_ids=ids, broadcast_buffers=True)
        self._ddp_key = key
        self.train_module = self._ddp

    # ------------------------------------------------------------------------------------
    def _fit(self, cfg: RunConfig, run_dir: Path, emit, control: RunControl, resume: bool, t0: float) -> RunResult:
        last_path = run_dir / "checkpoints" / "last.pt"
        resume_blob = None
        if resume:
            if not last_path.is_file():
                raise RunFolderError(f"nothing to resume in {run_dir}: no checkpoints/last.pt")
            resume_blob = checkpoint.load_checkpoint(last_path)
        config_mod.check_paths(cfg)
        main = self.dist.main
        config_text = config_mod.dumps(cfg)
        if main:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
                stale = [*remove_stale_parts(run_dir, tuple(n for n in rundir.RUN_FILES if "/" not in n)),
                         *remove_stale_parts(run_dir / "checkpoints", ("last.pt", "best.pt"))]
                if stale:
                    emit(Warning(f"removed {len(stale)} half-written temporary file(s) left by an interrupted run"))
                if not resume and rundir.clear_previous_run(run_dir):
                    emit(Warning(f"{run_dir} held an earlier run; its files were replaced by this run's"))
                config_mod.save(cfg, run_dir / "config.toml")
            except FileExistsError as exc:
                raise RunFolderError(str(exc)) from None
            except OSError as exc:
                raise RunFolderError(f"cannot write the run folder {run_dir}: {exc.strerror or exc}. Choose another "
                                     f"output folder (output.dir).") from None

        p = prepare(cfg, emit, control, self.dist)
        self._prepared = p
        self.device = p.device
        self.classes = p.split.classes
        if main:
            rundir.write_json(run_dir / "skipped.json", [{"path": s.path, "reason": s.reason} for s in p.split.skipped])
        for note in p.notes:
            emit(PhaseChanged("prepare", note))

        epochs = cfg.train.epochs
        steps_per_epoch = max(1, len(p.train_loader))
        sched = from_config(cfg.schedule, steps_per_epoch, epochs)
        opt = make_optimizer(p.model, p.train_groups, p.lrs, cfg.optim)
        scaler = torch.amp.GradScaler("cuda", enabled=p.autocast == torch.float16)
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)

        start_epoch, step = 0, 0
        higher = cfg.train.early_stopping_metric == "val_acc"
        best_score = -math.inf if higher else math.inf
        best_preds: dict = {}
        if resume_blob is not None:
            p.model.load_state_dict(resume_blob["state_dict"])
            try:
                opt.load_state_dict(resume_blob["optimizer"])
            except ValueError:
                raise ConfigError(f"cannot resume {run_dir}: the layers that train differ from the interrupted "
                                  f"run's (frozen groups, feature cache or augmentation changed); resume with the "
                                  f"run's own config.toml") from None
            start_epoch, step = int(resume_blob["epoch"]), int(resume_blob["step"])
            self.history = list(resume_blob.get("history") or rundir.read_metrics(run_dir / "metrics.jsonl"))[:start_epoch]
            best_score = float(resume_blob.get("best_score", best_score))
            patience_resumed = int(resume_blob.get("patience_left", cfg.train.early_stopping))
            self.best = (int(resume_blob.get("best_epoch", -1)), float(resume_blob.get("best_val_acc", float("nan"))))

        emit(RunStarted(str(run_dir), str(p.device), p.precision, p.split.classes, [g.name for g in p.groups],
                        [g.name for g in p.groups if g.name not in p.frozen], len(p.split.train), len(p.split.val),
                        epochs, steps_per_epoch, steps_per_epoch * epochs, p.use_features, start_epoch))
        meta = dict(model=p.model, arch=p.built.arch, classes=p.split.classes, preprocessing=p.built.preprocessing,
                    head_path=p.built.head_path, config_text=config_text)
        patience_left = patience_resumed if resume_blob is not None else cfg.train.early_stopping
        status, message = "completed", ""
        try:
            for epoch in range(start_epoch, epochs):
                frozen_now = p.frozen if p.use_features else frozen_at_epoch(p.frozen, cfg.layers.unfreeze_at, epoch)
                if not p.use_features:
                    thawed = p.frozen - frozen_now
                    if thawed and epoch in set(cfg.layers.unfreeze_at.values()):
                        emit(PhaseChanged("train", f"epoch {epoch + 1}: unfreezing {', '.join(sorted(thawed))}"))
                    apply_freeze(p.model, p.groups, frozen_now)
                torch.manual_seed(cfg.train.seed * 1000 + epoch + 7919 * self.dist.rank)
                if hasattr(p.train_loader.sampler, "set_epoch"):
                    p.train_loader.sampler.set_epoch(epoch)
                self._wrap(p, frozen_now)
                emit(PhaseChanged("train", f"Epoch {epoch + 1} of {epochs}"))
                t_ep = time.perf_counter()
                train_loss, train_acc, step, ips = self._train_epoch(p, opt, scaler, criterion, sched, step, epoch,
                                                                     frozen_now, emit, control)
                emit(PhaseChanged("validate", f"Validating epoch {epoch + 1}"))
                val = self._validate(p, criterion, control)
                score = val["acc"] if higher else val["loss"]
                has_val = val["n"] > 0
                is_best = (not has_val) or (score > best_score if higher else score < best_score)
                seconds = time.perf_counter() - t_ep
                lrs = current_lrs(opt)
                record = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                          "val_loss": val["loss"], "val_acc": val["acc"], "seconds": round(seconds, 3),
                          "images_per_s": round(ips, 2), "lrs": lrs, "per_class_acc": val["per_class"]}
                self.history.append(record)
                if is_best:
                    best_score = score if has_val else best_score
                    self.best = (epoch, val["acc"])
                    best_preds = val["preds"]
                    if main:
                        checkpoint.save_checkpoint(run_dir / "checkpoints" / "best.pt", metrics=record, **meta)
                    patience_left = cfg.train.early_stopping
                else:
                    patience_left -= 1
                if main:  # the checkpoint first: it is the truth a resume starts from
                    checkpoint.save_checkpoint(last_path, metrics=record, extra={
                        "optimizer": opt.state_dict(), "epoch": epoch + 1, "step": step, "best_score": best_score,
                        "best_epoch": self.best[0], "best_val_acc": self.best[1], "history": self.history,
                        "patience_left": patience_left}, **meta)
                    rundir.write_metrics(run_dir / "metrics.jsonl", self.history)
                if main and (is_best or not (run_dir / "val_predictions.json").exists()):
                    rundir.write_json(run_dir / "val_predictions.json", {"classes": p.split.classes,
                                                                         "items": val["preds"] if is_best else best_preds})
                emit(EpochEnd(epoch, epochs, train_loss, train_acc, val["loss"], val["acc"], val["per_class"],
                              val["confusion"], seconds, lrs, is_best, ips))
                if epoch == start_epoch and p.use_features:
                    emit(PhaseChanged("train", f"features computed once: {len(p.split.train) + len(p.split.val):,} "
                                               f"images, {p.feature_seconds:.1f} s; epochs now take {seconds:.2f} s"))
                if cfg.train.early_stopping and patience_left <= 0 and epoch + 1 < epochs:
                    status = "early_stopped"
                    message = (f"Stopped early after epoch {epoch + 1}: {cfg.train.early_stopping_metric} did not "
                               f"improve for {cfg.train.early_stopping} epochs.")
                    break
        except StopRequested:
            status = "stopped"
            done = len(self.history)
            message = (f"Stopped by request after {done} complete epoch(s); the last checkpoint is kept."
                       if done else "Stopped by request before the first epoch finished.")
        if status == "completed":
            if math.isnan(self.best[1]):
                message = f"Finished {epochs} epochs (no validation images, so no accuracy was measured)."
            else:
                message = (f"Finished {epochs} epochs; best validation accuracy {self.best[1]:.1%} "
                           f"at epoch {self.best[0] + 1}.")
        return self._result(status, message, run_dir, t0)

    # ------------------------------------------------------------------------------------
    def _train_epoch(self, p: Prepared, opt, scaler, criterion, sched, step: int, epoch: int, frozen: set[str],
                     emit, control: RunControl) -> tuple[float, float, int, float]:
        if p.use_features:
            p.module.train()
        else:
            set_train_mode(p.model, p.groups, frozen, p.cfg.layers.train_bn)
        params = [q for q in p.module.parameters() if q.requires_grad]
        total_loss, total_correct, total_n = 0.0, 0, 0
        batches = len(p.train_loader)
        recent: list[tuple[int, float]] = []
        t_last = time.perf_counter()
        for b, (x, y, _idx) in enumerate(p.train_loader, start=1):
            control.checkpoint()
            y = torch.as_tensor(y)
            keep = y >= 0
            weight = None
            if not bool(keep.all()):
                if self.dist.active:  # every rank must run the same collectives: weight bad images 0
                    y = torch.where(keep, y, torch.zeros_like(y))
                    weight = keep.float()
                else:
                    x, y = x[keep], y[keep]
                    if len(y) == 0:
                        continue
            x = x.to(p.device, non_blocking=True)
            y = y.to(p.device, non_blocking=True)
            if p.cfg.train.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            set_lr_factor(opt, lr_factor(step, sched))
            with torch.autocast(p.device.type, dtype=p.autocast, enabled=p.autocast is not None):
                logits = self._forward(self.train_module, x)
                if weight is None:
                    loss = criterion(logits.float(), y)
                else:
                    w = weight.to(p.device)
                    per = nn.functional.cross_entropy(logits.float(), y, reduction="none",
                                                      label_smoothing=p.cfg.optim.label_smoothing)
                    loss = (per * w).sum() / w.sum().clamp(min=1)
            global_loss = self.dist.all_reduce_sum(loss.detach().float().clone().reshape(1)) / self.dist.world
            if not torch.isfinite(global_loss).all():
                raise NonFiniteLoss(f"The loss became {global_loss.item()} at epoch {epoch + 1}, batch {b}: training "
                                    f"diverged. Lower the learning rate (head lr is {p.cfg.layers.head_lr:g}; try "
                                    f"{p.cfg.layers.head_lr / 10:g}) or add warmup. The last checkpoint is kept.")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if p.cfg.train.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, p.cfg.train.grad_clip)
            scaler.step(opt)
            scaler.update()
            lrs = current_lrs(opt)
            step += 1
            valid = keep.to(p.device) if weight is not None else None
            n_valid = int(valid.sum()) if valid is not None else len(y)
            n = n_valid * self.dist.world
            loss_v = float(global_loss)
            total_loss += float(loss.detach()) * n_valid
            hits = logits.argmax(1) == y
            total_correct += int((hits & valid).sum() if valid is not None else hits.sum())
            total_n += n_valid
            now = time.perf_counter()
            recent.append((n, now - t_last))
            t_last = now
            recent = recent[-20:]
            ips = sum(k for k, _ in recent) / max(1e-9, sum(t for _, t in recent))
            emit(BatchEnd(epoch, step, b, batches, loss_v, lrs, ips))
        ips_epoch = sum(k for k, _ in recent) / max(1e-9, sum(t for _, t in recent)) if recent else 0.0
        sums = self.dist.all_reduce_sum(torch.tensor([total_loss, float(total_correct), float(total_n)], dtype=torch.float64))
        total_loss, total_correct, total_n = float(sums[0]), float(sums[1]), float(sums[2])
        return total_loss / max(1, total_n), total_correct / max(1, total_n), step, ips_epoch

    @torch.no_grad()
    def _validate(self, p: Prepared, criterion, control: RunControl) -> dict:
        p.module.eval()
        n_cls = len(p.split.classes)
        confusion = torch.zeros(n_cls, n_cls, dtype=torch.long)
        total_loss, n = 0.0, 0
        preds: list[dict] = []
        for x, y, idx in p.val_loader:
            control.checkpoint()
            y = torch.as_tensor(y)
            keep = y >= 0
            x, y, idx = x[keep], y[keep], torch.as_tensor(idx)[keep]
            if len(y) == 0:
                continue
            x = x.to(p.device)
            with torch.autocast(p.device.type, dtype=p.autocast, enabled=p.autocast is not None):
                logits = p.module(x).float().cpu()
            total_loss += float(criterion(logits, y)) * len(y)
            n += len(y)
            prob = logits.softmax(1)
            conf, pred = prob.max(1)
            confusion += torch.bincount(y * n_cls + pred, minlength=n_cls * n_cls).view(n_cls, n_cls)
            topv, topi = prob.topk(min(5, n_cls), dim=1)
            for k in range(len(y)):
                preds.append({"path": p.split.val[int(idx[k])].path, "true": int(y[k]), "pred": int(pred[k]),
                              "confidence": round(float(conf[k]), 5),
                              "top": [[int(i), round(float(v), 5)] for v, i in zip(topv[k], topi[k])]})
        sums = self.dist.all_reduce_sum(torch.tensor([total_loss, float(n)], dtype=torch.float64))
        total_loss, n = float(sums[0]), int(sums[1])
        confusion = self.dist.all_reduce_sum(confusion)
        preds = self.dist.gather_objects(preds)
        preds.sort(key=lambda d: d["path"])
        row = confusion.sum(1).float()
        per_class = [float("nan") if r == 0 else float(d) / float(r) for d, r in zip(confusion.diag(), row)]
        return {"loss": total_loss / n if n else float("nan"), "acc": float(confusion.diag().sum()) / n if n else float("nan"),
                "n": n, "confusion": confusion.tolist(), "per_class": per_class, "preds": preds}
