"""The training step's precision and memory layout, chosen by measuring the real step.

Which step is fastest depends on the CPU, the model and the input size (bf16 wins on one CPU and
loses on another; channels_last wins at one size and not at the next), so a rule from CPU flags
cannot know it. Before the first epoch of a run that trains through the network (no feature
cache), with ``train.precision = "auto"`` and ``train.channels_last = false``, a copy of the real
model takes a few training steps at the real batch and image size in each candidate:

* CPU: fp32, fp32 channels_last, and where the CPU has bf16 in hardware, bf16 autocast with and
  without channels_last;
* CUDA: bf16 (where supported) and fp16 autocast, each with and without channels_last.

A candidate trains correctly when its loss on one batch is finite and within :data:`LOSS_TOLERANCE`
of fp32's, and its gradient points the same way (cosine similarity at least :data:`GRAD_COSINE_MIN`). Each candidate's rate is its
fastest single step over two interleaved rounds (load only adds time), and the fastest candidate
is kept unless the CPU-flag rule's own choice is within :data:`SWITCH_MARGIN` of it.
The choice is remembered per machine, model, trainable layers, input size and batch in the
user's cache folder; a later run times it and the fp32 step for two steps each and measures
again when its lead over fp32 fell below :data:`RECHECK_FLOOR` of the remembered lead (a relative
check: a busy machine slows both). Stopping the run stops the measuring between two steps. Measuring is skipped
for runs too short to earn it back (:func:`worth_measuring`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from transfer_gui.atomic import read_json_table, remember_in_json_table
from transfer_gui.engine.optim import can_fuse
from transfer_gui.errors import Cancelled

MEASURE_STEPS = 2  # timed steps per candidate and round
WARMUP_STEPS = 1  # untimed steps before them (oneDNN builds its kernels on the first call of a shape)
ROUNDS = 2  # rounds over all candidates, interleaved; each keeps its best: a busy moment hits one round
RECHECK_STEPS = 2  # timed steps that check a remembered choice
RECHECK_FLOOR = 0.8  # a remembered choice whose lead over fp32 fell below this share of its lead is measured again
SWITCH_MARGIN = 1.1  # another step must be this much faster than the preferred (flag-rule) one to be chosen
EARN_FACTOR = 30  # measure only when the run has this many times the steps measuring takes (one measuring is 9.8-44 s here)
# The gradient's cosine similarity with fp32's on one batch, at least: a check that catches broken
# kernels and overflow, not rounding. Seen on random batches: fp32 channels_last 0.9997-1.0, bf16
# 0.83-0.94 (ResNet-18, EfficientNet-Lite0, MobileNet-V3-Small), and bf16 trains to fp32's accuracy
# (benchmarks/bench_speed.py section 7).
GRAD_COSINE_MIN = {"fp32": 0.99, "bf16": 0.7, "fp16": 0.7}
LOSS_TOLERANCE = 0.05  # the loss's relative difference from fp32's on that batch, at most
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
Clock = Callable[[], float]
Cancel = Callable[[], bool]


class StepChoiceCancelled(Cancelled):
    """The run was stopped while its training step was being measured."""


@dataclass(frozen=True)
class Candidate:
    precision: str  # fp32 | bf16 | fp16
    channels_last: bool

    @property
    def autocast(self) -> torch.dtype | None:
        return _DTYPES[self.precision]

    @property
    def label(self) -> str:
        return self.precision + (" channels_last" if self.channels_last else "")


@dataclass(frozen=True)
class StepChoice:
    candidate: Candidate
    rates: dict[str, float] = field(default_factory=dict)  # label -> images/s, for each measured candidate
    rejected: dict[str, str] = field(default_factory=dict)  # label -> why it was left out
    seconds: float = 0.0  # what measuring (or checking) cost
    recalled: bool = False  # chosen by an earlier run and checked again

    def note(self) -> str:
        """The run log's line: the choice, every rate, what was left out and what it cost."""
        rates = ", ".join(f"{k} {v:.1f}" for k, v in sorted(self.rates.items(), key=lambda kv: -kv[1]))
        left = "".join(f"; {k} left out: {why}" for k, why in self.rejected.items())
        how = "chosen in an earlier run and checked again" if self.recalled else "measured"
        return (f"training step: {self.candidate.label}, {how} in {self.seconds:.1f} s "
                f"(images/s: {rates}){left}")


def candidates(device: torch.device, cpu_bf16: bool, cuda_bf16: bool = False) -> list[Candidate]:
    """The steps worth measuring on ``device`` (fp32 contiguous first: the reference)."""
    if device.type == "cpu":
        precisions = ["fp32", "bf16"] if cpu_bf16 else ["fp32"]
    elif device.type == "cuda":
        precisions = ["fp32", *(["bf16"] if cuda_bf16 else []), "fp16"]
    else:
        return []
    return [Candidate(p, cl) for p in precisions for cl in (False, True)]


def worth_measuring(run_steps: int, n_candidates: int) -> bool:
    """Whether a run of ``run_steps`` training steps earns back measuring ``n_candidates``: it
    must have :data:`EARN_FACTOR` times the steps measuring takes. Measuring runs the slower
    candidates too (up to 3x slower than the fastest), so it costs 3-10 % of such a run, paid once per
    machine, model, size and batch; the steps it tells apart differ by 1.1-2.5x."""
    cost = n_candidates * (ROUNDS * (MEASURE_STEPS + WARMUP_STEPS) + 1)
    return n_candidates > 1 and run_steps >= EARN_FACTOR * cost


def cache_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("transfer_gui")) / "step-choices.json"


def machine_text(device: torch.device) -> str:
    """What the step's speed depends on besides the model: the processor, torch, the threads."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}|torch {torch.__version__}"
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}|{torch.backends.cpu.get_cpu_capability()}|torch {torch.__version__}|{torch.get_num_threads()} threads"


def choice_key(model: nn.Module, device: torch.device, batch: int, size: int) -> str:
    """The model's architecture and trainable parameters (not their values), input, machine."""
    shapes = ";".join(f"{n}{tuple(p.shape)}{'T' if p.requires_grad else 'F'}" for n, p in model.named_parameters())
    text = f"{type(model).__name__}|{shapes}|{batch}x{size}|{device.type}|{machine_text(device)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _read() -> dict:
    return read_json_table(cache_path())


def _remember(key: str, choice: StepChoice) -> None:
    """Keep ``choice`` for later runs (the newest 64; a failure to write is no error)."""
    rate = choice.rates.get(choice.candidate.label, 0.0)
    ref = next(iter(choice.rates.values()), 0.0)  # the reference (fp32) is measured first
    remember_in_json_table(cache_path(), key, {
        "precision": choice.candidate.precision, "channels_last": choice.candidate.channels_last,
        "images_per_s": round(rate, 2), "lead": round(rate / ref, 3) if ref else 0.0})


class _Bench:
    """A copy of the model that takes training steps on one fixed batch in any candidate."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, clock: Clock,
                 cancel: Cancel | None = None):
        self.cancel = cancel or (lambda: False)
        self.model = copy.deepcopy(model)
        self.model.train()
        self.start = copy.deepcopy(self.model.state_dict())
        self.x, self.y, self.clock = x, y, clock
        self.params = [p for p in self.model.parameters() if p.requires_grad]

    def _layout(self, cand: Candidate) -> torch.Tensor:
        fmt = torch.channels_last if cand.channels_last else torch.contiguous_format
        self.model.to(memory_format=fmt)
        return self.x.contiguous(memory_format=fmt)

    def _loss(self, cand: Candidate, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.x.device.type, dtype=cand.autocast, enabled=cand.autocast is not None):
            return nn.functional.cross_entropy(self.model(x).float(), self.y)

    def gradient(self, cand: Candidate) -> tuple[float, torch.Tensor]:
        """The loss and the flattened gradient of one step from the starting weights."""
        if self.cancel():
            raise StepChoiceCancelled("stopped while measuring the training step")
        self.model.load_state_dict(self.start)
        x = self._layout(cand)
        self.model.zero_grad(set_to_none=True)
        cuda = [x.device.index or 0] if x.is_cuda else []
        with torch.random.fork_rng(devices=cuda):  # the same dropout masks for every candidate
            torch.manual_seed(0)
            loss = self._loss(cand, x)
            loss.backward()
        grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().flatten() for p in self.params]
        return float(loss.detach()), torch.cat(grads) if grads else torch.zeros(1)

    def rate(self, cand: Candidate, steps: int, warmup: int) -> float:
        """Images per second of the fastest of ``steps`` AdamW steps after ``warmup`` untimed ones:
        other work on the machine only ever adds time to a step, so the fastest is the least
        disturbed."""
        x = self._layout(cand)
        opt = torch.optim.AdamW(self.params, lr=1e-6, fused=can_fuse(self.params))  # as the run steps
        scaler = torch.amp.GradScaler("cuda", enabled=cand.autocast == torch.float16 and x.is_cuda)
        fastest = float("inf")
        for i in range(warmup + steps):
            if self.cancel():
                raise StepChoiceCancelled("stopped while measuring the training step")
            _sync(x)
            start = self.clock()
            opt.zero_grad(set_to_none=True)
            scaler.scale(self._loss(cand, x)).backward()
            scaler.step(opt)
            scaler.update()
            _sync(x)
            took = self.clock() - start
            if i >= warmup:
                fastest = min(fastest, took)
        return len(x) / max(fastest, 1e-9)


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def _cosine(g: torch.Tensor, ref: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(g.double(), ref.double(), dim=0))


def measure(bench: _Bench, cands: list[Candidate]) -> tuple[dict[str, float], dict[str, str]]:
    """Each candidate's images/s, and the ones left out with the reason."""
    ref_loss, ref = bench.gradient(cands[0])
    rates: dict[str, float] = {}
    rejected: dict[str, str] = {}
    passed = []
    for cand in cands:
        loss, g = bench.gradient(cand)
        cos = _cosine(g, ref)
        if not math.isfinite(loss):
            rejected[cand.label] = f"non-finite loss ({loss})"
        elif abs(loss - ref_loss) > LOSS_TOLERANCE * max(abs(ref_loss), 1e-6):
            rejected[cand.label] = f"loss {loss:.4g} against fp32's {ref_loss:.4g}"
        elif not math.isfinite(cos) or cos < GRAD_COSINE_MIN[cand.precision]:
            rejected[cand.label] = f"gradient's cosine with fp32's {cos:.3f} (at least {GRAD_COSINE_MIN[cand.precision]})"
        else:
            passed.append(cand)
    for _ in range(ROUNDS):
        for cand in passed:
            rates[cand.label] = max(rates.get(cand.label, 0.0), bench.rate(cand, MEASURE_STEPS, WARMUP_STEPS))
    if not math.isfinite(ref_loss):
        rates = {cands[0].label: rates.get(cands[0].label, 0.0)}
    return rates, rejected


def _recheck(bench: _Bench, kept: dict, cands: list[Candidate],
             by_label: dict[str, Candidate]) -> tuple[Candidate, dict[str, float]] | None:
    """The remembered candidate and its rates when it still holds: timed against the reference
    (the first candidate) in the same moment, its lead over the reference is at least
    :data:`RECHECK_FLOOR` of the remembered lead. A busy machine slows both alike, so load alone
    does not send a run back to measuring."""
    cand = Candidate(str(kept.get("precision")), bool(kept.get("channels_last")))
    if cand.label not in by_label:
        return None
    if cand == cands[0]:
        return cand, {cand.label: bench.rate(cand, RECHECK_STEPS, 1)}
    ref = cands[0]
    now, now_ref = bench.rate(cand, RECHECK_STEPS, 1), bench.rate(ref, RECHECK_STEPS, 1)
    lead = float(kept.get("lead", 0.0))
    if now >= RECHECK_FLOOR * lead * now_ref:
        return cand, {cand.label: now, ref.label: now_ref}
    return None


def pick(rates: dict[str, float], prefer: str | None) -> str:
    """The fastest label; the preferred one (the CPU-flag rule's) unless another beats it by
    :data:`SWITCH_MARGIN`, so that timing noise alone never trades a good default for a worse one."""
    best = max(rates, key=rates.get)
    if prefer in rates and best != prefer and rates[best] < SWITCH_MARGIN * rates[prefer]:
        return prefer
    return best


def choose(model: nn.Module, cands: list[Candidate], x: torch.Tensor, y: torch.Tensor, *,
           clock: Clock = time.perf_counter, remember: bool = True, cancel: Cancel | None = None,
           prefer: Candidate | None = None) -> StepChoice:
    """The fastest candidate that trains correctly on the batch ``(x, y)`` (``prefer`` unless
    beaten clearly, :func:`pick`): remembered from an earlier run and checked, or measured now.
    ``model`` itself is not changed."""
    began = clock()
    key = choice_key(model, x.device, len(x), x.shape[-1])
    bench = _Bench(model, x, y, clock, cancel)
    kept = _read().get(key) if remember else None
    by_label = {c.label: c for c in cands}
    if isinstance(kept, dict):
        recalled = _recheck(bench, kept, cands, by_label)
        if recalled is not None:
            return StepChoice(recalled[0], recalled[1], {}, clock() - began, recalled=True)
    rates, rejected = measure(bench, cands)
    best = pick(rates, prefer.label if prefer is not None else None) if rates else cands[0].label
    choice = StepChoice(by_label[best], rates, rejected, clock() - began)
    if remember:
        _remember(key, choice)
    return choice


__all__ = ["Candidate", "StepChoice", "candidates", "choose", "measure", "worth_measuring", "cache_path",
           "choice_key", "EARN_FACTOR", "GRAD_COSINE_MIN", "LOSS_TOLERANCE", "MEASURE_STEPS", "RECHECK_FLOOR", "ROUNDS", "WARMUP_STEPS", "StepChoiceCancelled", "SWITCH_MARGIN", "pick"]
