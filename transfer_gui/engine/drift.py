"""Did fine-tuning wreck the pretrained features? One part (engine/parts.py) that watches every
layer group while the run trains and says so when the evidence is there.

What it measures, for each layer group that trains:

* **drift**: ``||w - w_start||_2 / ||w_start||_2`` over the group's parameters, where
  ``w_start`` are the weights the run started from (the pretrained ones; on a resume also the
  pretrained ones, since this part copies them before the resume loads ``last.pt``). The new
  head has no pretrained weights, so its drift is left out; its **norm growth**
  ``||w|| / ||w_start||`` is reported instead (how much the freshly initialised head has grown).
* **gradient norm**: the L2 norm over the group's parameter gradients, after unscaling when a
  GradScaler is used, before gradient clipping.

The starting weights are kept as a CPU copy, only for the groups that train at some point of
the run (never for a group frozen throughout, nor for the backbone when its features are
cached): 4 bytes per parameter, e.g. 90 MiB for a ResNet-50 trained end to end (23.5 M
backbone parameters), 57 MiB when it trains from ``layer4`` (15.0 M); nothing in GPU memory.

When: every ``every`` optimizer steps and at the first step of each epoch. By default ``every``
adapts so that measuring costs at most ``BUDGET`` (2 %) of the time of a step: the part times
its own measurements and the steps between them. Each measurement is a
:class:`~transfer_gui.engine.events.GroupStats` event; at the end of each epoch the drift and the
mean of the epoch's gradient norms go into the epoch's ``metrics.jsonl`` record as
``groups: {group: {drift, grad_norm}}`` (the head: ``drift`` null, plus ``norm_growth``).

The warnings (a ``Warning`` event each, at most once per run, naming the setting to change):

* **loss spike**: within the first ``SPIKE_WINDOW`` (5 %) of the run's steps (at least
  ``SPIKE_MIN_STEPS``), the loss rises above ``SPIKE_FACTOR`` x its first value: warmup too
  short or rate too high (``schedule.warmup_epochs``, ``layers.head_lr``).
* **low-rate drift**: a group whose rate is at most ``LOW_RATE`` (1/10) of the head's moves more
  than ``DRIFT_LIMIT`` from its pretrained weights: lower its rate or freeze it.
* **no gradient**: a trainable group whose gradient norm stays below ``DEAD_RATIO`` x the
  largest group's for ``DEAD_STREAK`` measurements in a row: freeze it (``layers.train_from``).

How the thresholds were chosen (CPU runs, efficientnet_lite0 with its pretrained weights on
the bundled sample images at 64 px, batch 16, 36 steps; resnet18 from scratch on the test
colours):

* ``SPIKE_FACTOR`` 2: sane runs (head rate 1e-3 to 1e-2, with and without warmup) never rose
  above 1.06x the first loss in their first steps; a head rate of 1.0 without warmup rose to
  127x (efficientnet) at step 2. Twice the first loss leaves room for batch noise.
* ``DRIFT_LIMIT`` 15 %: groups at a tenth of the head's rate or less drifted at most 0.5 % with
  a head rate of 1e-3 (``lr_decay`` 0.3) and 1.5 % at an AdamW rate of 1e-3 (head 1e-2,
  ``lr_decay`` 0.1), growing slower than the steps; 15 % is ten times what that aggressive
  setting did in these runs, and a rate of 1e-2 on a tenth-rate group reached 22 % in 6 steps.
* ``DEAD_RATIO`` 1e-3: the smallest ratio of a group's gradient norm to the largest group's in
  sane runs was 2.8e-2 (efficientnet's ``conv_head``) and 0.1 to 0.25 elsewhere; a dead group
  (its output constant) measures exactly 0.

Cost (CPU, 2 threads, shared): one measurement of ResNet-50 with every group training (drift
over 23.5 M parameters and the gradient norms) took 0.22 s against a 23 s step at batch 16 and
224 px, so measuring every 5 steps costs 0.2 %; resnet18 at 32 px: 94 ms against 1.6 s (1.2 %).
On a GPU the copy to the CPU dominates and the cadence widens to keep under 2 %.

Under torchrun only rank 0 measures, records and warns: after DDP's all-reduce every rank holds
the same gradients and weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from transfer_gui.engine import wording
from transfer_gui.engine.events import GroupStats, Warning
from transfer_gui.engine.parts import Part, Run
from transfer_gui.engine.rules import HEAD
from transfer_gui.engine.step import StepOut

BUDGET = 0.02  # measuring may cost this share of the steps' time
MIN_EVERY = 5  # never measure more often than every 5 steps (plus the first step of each epoch)
MAX_EVERY = 2000
SPIKE_WINDOW = 0.05  # the first 5 % of the run's steps
SPIKE_MIN_STEPS = 5
SPIKE_FACTOR = 2.0
LOW_RATE = 0.1  # a group at most this share of the head's rate is a "low-rate" group
DRIFT_LIMIT = 0.15
DEAD_RATIO = 1e-3
DEAD_STREAK = 3


@dataclass
class Watched:
    """One layer group as this part sees it: its parameters (the optimizer's), the CPU copy of
    its starting weights (None for the head) and the norm of those."""

    name: str
    params: list[torch.nn.Parameter]
    lr: float
    start: list[torch.Tensor] | None
    start_norm: float
    grads: list[float] = field(default_factory=list)  # this epoch's measured gradient norms
    dead_streak: int = 0

    @property
    def training(self) -> bool:
        return any(p.requires_grad for p in self.params)


def optimizer_groups(optimizer: torch.optim.Optimizer) -> dict[str, list[torch.nn.Parameter]]:
    """The parameters of each layer group, as the optimizer holds them (in group order)."""
    out: dict[str, list[torch.nn.Parameter]] = {}
    for pg in optimizer.param_groups:
        out.setdefault(pg["group_name"], []).extend(pg["params"])
    return out


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.nn.utils.get_total_norm(tensors)) if tensors else 0.0


def grad_norm(params: list[torch.nn.Parameter]) -> float | None:
    """L2 norm over the gradients of ``params``; None when none has a gradient (frozen)."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    return _norm(grads) if grads else None


@torch.no_grad()
def drift(params: list[torch.nn.Parameter], start: list[torch.Tensor], start_norm: float) -> float:
    """``||w - w_start|| / ||w_start||`` with ``w_start`` on the CPU."""
    sq = 0.0
    for p, s in zip(params, start):
        sq += float(torch.linalg.vector_norm(p.detach().to("cpu", torch.float32) - s)) ** 2
    return math.sqrt(sq) / max(start_norm, 1e-12)


@torch.no_grad()
def _watch(run: Run) -> list[Watched]:
    """The groups that train at some point of the run, with a CPU copy of their starting weights."""
    p, layers = run.prepared, run.cfg.layers
    never = set() if p.use_features else set(p.frozen) - set(layers.unfreeze_at)
    out = []
    for name, params in optimizer_groups(run.optimizer).items():
        if name in never or (p.use_features and name != HEAD):
            continue
        start = [q.detach().to("cpu", torch.float32, copy=True) for q in params]
        out.append(Watched(name, params, p.lrs[name], None if name == HEAD else start, _norm(start)))
    return out


class GroupDrift(Part):
    """Drift and gradient norm per layer group, and the warnings they support (module docstring).
    ``every``: measure every so many steps (None: adapt to ``BUDGET``)."""

    def __init__(self, main: bool = True, every: int | None = None):
        self.main, self.fixed = main, every
        self.every = every or MIN_EVERY
        self.groups: list[Watched] = []
        self.warned: dict[str, str] = {}  # group -> flag, for the window's table
        self.kinds_warned: set[str] = set()
        self.first_loss: float | None = None
        self.last_grads: dict[str, float] = {}  # the latest measurement's gradient norms
        self.since = 0  # steps since the last measurement
        self.due = True
        self.t_step: float | None = None  # mean seconds per step between measurements
        self.t_measure = 0.0
        self._t_last: float | None = None
        self.spent = 0.0  # seconds spent measuring since the last step

    def before_fit(self, run: Run) -> None:
        if self.main:
            self.groups = _watch(run)

    def before_epoch(self, run: Run) -> None:
        self.due = True
        for g in self.groups:
            g.grads = []

    def after_backward(self, run: Run, out: StepOut) -> None:
        if not self.main or not self.groups:
            return
        step = run.state.step + 1
        self._spike(run, step, out)
        self._time_step()
        self.since += 1
        if self.due or self.since >= self.every:
            t0 = time.perf_counter()
            self._measure(run, step)
            self.spent = time.perf_counter() - t0
            self.t_measure = self.spent if not self.t_measure else 0.7 * self.t_measure + 0.3 * self.spent
            self.due, self.since = False, 0
            self._adapt()

    def after_epoch(self, run: Run) -> None:
        if not self.main or not self.groups:
            return
        record = {}
        for g in self.groups:
            row: dict = {"drift": drift(g.params, g.start, g.start_norm) if g.start is not None else None,
                         "grad_norm": sum(g.grads) / len(g.grads) if g.grads else None}
            if g.start is None:
                row["norm_growth"] = _norm([q.detach() for q in g.params]) / max(g.start_norm, 1e-12)
            record[g.name] = row
        run.epoch.record["groups"] = record
        flags = dict(self.warned)
        drifts = {n: r["drift"] for n, r in record.items() if r["drift"] is not None}
        self._check_drift(run, drifts)
        if self.warned != flags:  # the window marks the group now, not at the next measurement
            growth = {n: r["norm_growth"] for n, r in record.items() if "norm_growth" in r}
            run.emit(GroupStats(run.state.epoch - 1, run.state.step, drifts, dict(self.last_grads), growth,
                                dict(self.warned)))

    # ------------------------------------------------------------------------------ measuring
    def _time_step(self) -> None:
        """The mean time of a step, without the time this part spent measuring."""
        now = time.perf_counter()
        if self._t_last is not None:
            dt = max(1e-6, now - self._t_last - self.spent)
            self.t_step = dt if self.t_step is None else 0.9 * self.t_step + 0.1 * dt
        self._t_last, self.spent = now, 0.0

    def _adapt(self) -> None:
        if self.fixed or self.t_step is None:
            return
        need = math.ceil(self.t_measure / (BUDGET * self.t_step))
        self.every = min(MAX_EVERY, max(MIN_EVERY, need))

    def _measure(self, run: Run, step: int) -> None:
        grads, drifts, growth = {}, {}, {}
        for g in self.groups:
            if not g.training:
                continue
            n = grad_norm(g.params)
            if n is not None:
                grads[g.name] = n
                g.grads.append(n)
            if g.start is not None:
                drifts[g.name] = drift(g.params, g.start, g.start_norm)
            else:
                growth[g.name] = _norm([q.detach() for q in g.params]) / max(g.start_norm, 1e-12)
        self.last_grads = grads
        self._check_drift(run, drifts)
        self._check_dead(run, grads)
        run.emit(GroupStats(run.state.epoch, step, drifts, grads, growth, dict(self.warned)))

    def cost(self) -> tuple[float, float, int]:
        """(seconds per measurement, seconds per step, steps between measurements) so far."""
        return self.t_measure, self.t_step or 0.0, self.every

    # ------------------------------------------------------------------------------ warnings
    def _warn(self, run: Run, kind: str, message: str, groups: list[str] = ()) -> None:
        self.kinds_warned.add(kind)
        for g in groups:
            self.warned[g] = kind
        run.emit(Warning(message))

    def _spike(self, run: Run, step: int, out: StepOut) -> None:
        total = run.schedule.total_steps if run.schedule is not None else 0
        window = min(total, max(SPIKE_MIN_STEPS, math.ceil(SPIKE_WINDOW * total)))
        if run.start_epoch or step > window or "spike" in self.kinds_warned:
            return
        loss = float(out.global_loss)
        if self.first_loss is None:
            self.first_loss = loss
        elif math.isfinite(loss) and loss > SPIKE_FACTOR * self.first_loss > 0:
            s = run.cfg.schedule
            warm = s.warmup_epochs if not s.warmup_steps else s.warmup_steps / max(1, total / run.cfg.train.epochs)
            self._warn(run, "spike", wording.loss_spike_warning(self.first_loss, loss, step, window, warm,
                                                                run.cfg.layers.head_lr))

    def _check_drift(self, run: Run, drifts: dict[str, float]) -> None:
        if "drift" in self.kinds_warned:
            return
        head_lr = run.prepared.lrs.get(HEAD, run.cfg.layers.head_lr)
        rates = {g.name: g.lr for g in self.groups}
        far = {n: d for n, d in drifts.items() if rates[n] <= LOW_RATE * head_lr and d > DRIFT_LIMIT}
        if far:
            self._warn(run, "drift", wording.drift_warning(far, rates, head_lr, DRIFT_LIMIT), list(far))

    def _check_dead(self, run: Run, grads: dict[str, float]) -> None:
        if "no_gradient" in self.kinds_warned or len(grads) < 2:
            return
        top = max(grads, key=grads.get)
        for g in self.groups:
            if g.name in grads:
                g.dead_streak = g.dead_streak + 1 if grads[g.name] < DEAD_RATIO * grads[top] else 0
        dead = [g.name for g in self.groups if g.dead_streak >= DEAD_STREAK]
        if dead:
            names = [g.name for g in run.prepared.groups]
            after = names[min(len(names) - 1, max(names.index(d) for d in dead) + 1)]
            self._warn(run, "no_gradient", wording.no_gradient_warning(dead, grads, (top, grads[top]), after),
                       dead)
