"""The history of one run as the window sees it: every engine event folded into plain lists
for the plots, progress fractions and an ETA. No Qt, no torch."""

from __future__ import annotations

import math
import time

from transfer_gui.engine import events as ev

SMOOTH = 0.9  # exponential moving average of the batch loss, bias-corrected


class RunMonitor:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.started: ev.RunStarted | None = None
        self.finished: ev.Finished | None = None
        self.phase = ""
        self.phase_message = ""
        self.phase_since = time.monotonic()  # when the current phase or its message began
        self.progress: ev.Progress | None = None
        self.step_x: list[float] = []  # x of every batch, in epochs
        self.loss: list[float] = []
        self.loss_smooth: list[float] = []
        self._ema = 0.0
        self._ema_n = 0
        self.lr_x: list[float] = []
        self.lrs: dict[str, list[float]] = {}
        self.epoch_x: list[int] = []
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.train_acc: list[float] = []
        self.val_acc: list[float] = []
        # per layer group (engine/drift.py's GroupStats), x in epochs; NaN where a group did not train
        self.group_x: list[float] = []
        self.drift: dict[str, list[float]] = {}
        self.grad_norm: dict[str, list[float]] = {}
        self.group_stats: ev.GroupStats | None = None  # the latest measurement
        self.group_flags: dict[str, str] = {}  # group -> "drift" | "no_gradient", once warned
        self.warnings: list[str] = []
        self.last_batch: ev.BatchEnd | None = None
        self.last_epoch: ev.EpochEnd | None = None
        self.images_per_s = 0.0
        self._t_train = None  # when the first batch of this session ended
        self._steps_at_t = 0
        self._paused_since = None
        self._paused_total = 0.0
        self.version = 0  # bumped on every change, so plots redraw only when needed

    def load_history(self, records: list[dict]) -> None:
        """The epochs a resumed run finished before (metrics.jsonl's records), so its curves start
        at epoch 1, not where the resume picks up; the engine's EpochEnd events add the rest."""
        def num(v) -> float:
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan

        for i, r in enumerate(records):
            self.epoch_x.append(int(r["epoch"]) if isinstance(r.get("epoch"), int) else i + 1)
            for series, key in ((self.train_loss, "train_loss"), (self.val_loss, "val_loss"),
                                (self.train_acc, "train_acc"), (self.val_acc, "val_acc")):
                series.append(num(r.get(key)))
        self.version += 1

    # ------------------------------------------------------------------
    def ingest(self, e: object) -> None:
        self.version += 1
        if isinstance(e, ev.RunStarted):
            self.started = e
            self.lrs = {g: [] for g in e.trainable_groups}
        elif isinstance(e, ev.PhaseChanged):
            if (e.phase, e.message) != (self.phase, self.phase_message):
                self.phase_since = time.monotonic()
            self.phase, self.phase_message = e.phase, e.message
            if e.phase in ("train", "validate"):
                self.progress = None
        elif isinstance(e, ev.Progress):
            self.progress = e
        elif isinstance(e, ev.BatchEnd):
            self._batch(e)
        elif isinstance(e, ev.EpochEnd):
            self.last_epoch = e
            self.epoch_x.append(e.epoch + 1)
            self.train_loss.append(e.train_loss)
            self.val_loss.append(e.val_loss)
            self.train_acc.append(e.train_acc)
            self.val_acc.append(e.val_acc)
        elif isinstance(e, ev.GroupStats):
            self._group_stats(e)
        elif isinstance(e, ev.Warning):
            self.warnings.append(e.message)
        elif isinstance(e, ev.Finished):
            self.finished = e
            self.phase = "finished"

    def _batch(self, e: ev.BatchEnd) -> None:
        now = time.monotonic()
        if self._t_train is None:
            self._t_train, self._steps_at_t = now, e.step
        self.last_batch = e
        self.images_per_s = e.images_per_s
        x = e.epoch + e.batch / max(1, e.batches)
        self.step_x.append(x)
        self.loss.append(e.loss)
        if math.isfinite(e.loss):
            self._ema = SMOOTH * self._ema + (1 - SMOOTH) * e.loss
            self._ema_n += 1
        self.loss_smooth.append(self._ema / (1 - SMOOTH ** max(1, self._ema_n)))
        self.lr_x.append(x)
        for g, series in self.lrs.items():
            series.append(e.lrs.get(g, math.nan))

    def _group_stats(self, e: ev.GroupStats) -> None:
        spe = self.started.steps_per_epoch if self.started is not None else 0
        self.group_x.append(e.step / spe if spe else float(e.epoch + 1))
        n = len(self.group_x)
        for store, values in ((self.drift, e.drift), (self.grad_norm, e.grad_norm)):
            for g in values:
                store.setdefault(g, [math.nan] * (n - 1))  # a group that began training later
            for g, series in store.items():
                series.append(values.get(g, math.nan))
        self.group_stats = e
        self.group_flags.update(e.flags)

    @property
    def head_only(self) -> bool:
        """Only the head trains on features computed once: no group but the head has stats."""
        return self.started is not None and self.started.feature_cache

    # ------------------------------------------------------------------
    def pause(self) -> None:
        if self._paused_since is None:
            self._paused_since = time.monotonic()

    def resume(self) -> None:
        if self._paused_since is not None:
            self._paused_total += time.monotonic() - self._paused_since
            self._paused_since = None

    def phase_seconds(self) -> float:
        return time.monotonic() - self.phase_since

    def epoch_fraction(self) -> float:
        b = self.last_batch
        return 0.0 if b is None else b.batch / max(1, b.batches)

    def run_fraction(self) -> float:
        s, b = self.started, self.last_batch
        if s is None or b is None:
            return 0.0
        return min(1.0, b.step / max(1, s.total_steps))

    def eta_seconds(self) -> float | None:
        s, b = self.started, self.last_batch
        if s is None or b is None or self._t_train is None:
            return None
        done = b.step - self._steps_at_t
        if done <= 0:
            return None
        now = self._paused_since or time.monotonic()
        elapsed = now - self._t_train - self._paused_total
        return max(0.0, elapsed / done * (s.total_steps - b.step))


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
