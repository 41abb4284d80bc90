"""Everything a run needs before its first step, in order: the device, the data split, the
model, its layer groups with their freezing and rates, the cache plan (engine/rules.py) and the
loaders that plan asks for (engine/loaders.py). Shared by the trainer and the LR finder."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from transfer_gui.config import ConfigError, RunConfig
from transfer_gui.engine import data as data_mod
from transfer_gui.engine import loaders
from transfer_gui.engine import rules, stepchoice
from transfer_gui.engine.catalog import BuiltModel, build_model
from transfer_gui.engine.control import RunControl
from transfer_gui.engine.events import PhaseChanged, Progress, Warning
from transfer_gui.engine.freezing import apply_freeze, set_train_mode
from transfer_gui.engine.ranks import SINGLE, Dist
from transfer_gui.engine.rules import CachePlan
from transfer_gui.engine.surgery import LayerGroup, replace_head, split_groups

Emit = Callable[[object], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("CUDA was asked for but no CUDA device is available; use 'auto' or 'cpu'", "train.device")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("MPS was asked for but is not available; use 'auto' or 'cpu'", "train.device")
    return torch.device(name)


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16(capability: str | None = None, flags: set[str] | None = None) -> bool:
    """True when this CPU computes bf16 in hardware: AVX512-BF16 or AMX-BF16, with torch's
    kernels built for AVX-512 (``torch.backends.cpu.get_cpu_capability()``). An AVX2-only CPU
    emulates bf16 several times slower than fp32: never bf16 there."""
    capability = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    flags = cpu_flags() if flags is None else flags
    return capability.upper().startswith(("AVX512", "AMX")) and bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """(autocast dtype or None for fp32, label). CUDA: auto = bf16 where supported, else fp16.
    CPU: auto and bf16 = bf16 autocast on a CPU with bf16 in hardware (:func:`cpu_has_bf16`),
    fp32 elsewhere; fp16 is fp32 on a CPU. Weights and optimizer state stay fp32 either way."""
    if device.type == "cpu":
        return (torch.bfloat16, "bf16") if precision in ("auto", "bf16") and cpu_has_bf16() else (None, "fp32")
    if device.type != "cuda":
        return None, "fp32"
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"fp32": (None, "fp32"), "bf16": (torch.bfloat16, "bf16"), "fp16": (torch.float16, "fp16")}[precision]


def frozen_pass_autocast(device: torch.device, autocast: torch.dtype | None) -> torch.dtype | None:
    """The precision of a one-time pass through frozen layers: exact fp32 on a CPU (the cached
    features must equal torch's within 1e-4; engine/fastpath.py), the run's autocast on a GPU."""
    return None if device.type == "cpu" else autocast


def use_channels_last(cfg: RunConfig, device: torch.device, model: nn.Module) -> bool:
    """``train.channels_last``, or on its own for a convolutional network on a CPU with AVX-512
    (measured there: ResNet-18 training 1.3x, EfficientNet-Lite0 1.75x faster than contiguous)."""
    if cfg.train.channels_last:
        return True
    return (device.type == "cpu" and torch.backends.cpu.get_cpu_capability().upper().startswith(("AVX512", "AMX"))
            and any(isinstance(m, nn.Conv2d) for m in model.modules()))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class Prepared:
    cfg: RunConfig
    device: torch.device
    autocast: torch.dtype | None
    precision: str
    split: data_mod.Split
    built: BuiltModel
    groups: list[LayerGroup]
    frozen: set[str]
    lrs: dict[str, float]
    plan: CachePlan
    module: nn.Module  # what the optimizer trains: the whole model, or its head on cached features
    train_loader: DataLoader
    val_loader: DataLoader
    workers: int
    notes: list[str] = field(default_factory=list)
    feature_seconds: float = 0.0
    test_loader: DataLoader | None = None  # the test set (split.test), fed like validation; None without one
    class_weights: list[float] | None = None  # the loss's weight of each class (label order); None = unweighted
    channels_last: bool = False  # images (and the model) in channels_last memory format (use_channels_last)

    @property
    def model(self) -> nn.Module:
        return self.built.model

    @property
    def use_features(self) -> bool:
        """True when the frozen backbone was computed once and only the head trains."""
        return self.plan.kind == "features"

    def close(self) -> None:
        """Take the activation cache's hook off the model (it would swap inputs otherwise)."""
        detach = getattr(self.module, "detach", None)
        if callable(detach):
            detach()

    @property
    def train_groups(self) -> list[LayerGroup]:
        return [g for g in self.groups if g.is_head] if self.use_features else self.groups

    def train_mode(self, frozen: set[str]) -> None:
        """Training mode for what trains (the head on cached features, or the groups not in
        ``frozen``); everything else in eval mode, BatchNorm statistics of frozen groups kept."""
        if self.use_features:
            self.module.train()
        else:
            set_train_mode(self.model, self.groups, frozen, self.cfg.layers.train_bn)


def prepare(cfg: RunConfig, emit: Emit, control: RunControl, dist: Dist = SINGLE) -> Prepared:
    seed_everything(cfg.train.seed)
    device, autocast, precision = _device(cfg, dist)
    split = _scan(cfg, emit, control)
    built = _model(cfg, split.classes, device, emit, control)
    groups, frozen, lrs = _groups(cfg, built, device)
    plan = rules.plan_cache_for([g.name for g in groups], cfg, frozen=frozen)
    autocast, precision, channels_last, step_note = _choose_step(cfg, device, (autocast, precision), built, plan,
                                                                 split, dist, emit, control)
    if channels_last:
        built.model.to(memory_format=torch.channels_last)
    setup = loaders.Setup(cfg, device, autocast, dist, emit, control)
    d = loaders.build(setup, built, groups, frozen, plan, split)
    notes = [*d.notes, f"device {device}, {precision}{', channels_last' if channels_last else ''}, "
                       f"{d.workers} loader workers, pin_memory={setup.pin}", *([step_note] if step_note else [])]
    weights = rules.class_weights_for(d.split.class_counts("train"), cfg.train)
    if weights is not None:
        notes.append(class_weights_note(d.split.classes, weights))
    return Prepared(cfg, device, autocast, precision, d.split, built, groups, frozen, lrs, d.plan, d.module,
                    d.train_loader, d.val_loader, d.workers, notes, d.feature_seconds, d.test_loader, weights,
                    channels_last)


def class_weights_note(classes: list[str], weights: list[float]) -> str:
    """The run log's line about the loss's class weights (the largest first)."""
    order = sorted(range(len(classes)), key=lambda i: -weights[i])
    shown = ", ".join(f"{classes[i]} {weights[i]:.2f}" for i in order[:8]) + (", ..." if len(order) > 8 else "")
    return f"class weights in the loss (train.class_weights = balanced, inverse class frequency, mean 1): {shown}"


def _device(cfg: RunConfig, dist: Dist) -> tuple[torch.device, torch.dtype | None, str]:
    device = resolve_device(cfg.train.device)
    if dist.active and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    return (device, *resolve_precision(cfg.train.precision, device))


def _choose_step(cfg: RunConfig, device: torch.device, resolved: tuple[torch.dtype | None, str], built: BuiltModel,
                 plan, split: data_mod.Split, dist: Dist, emit: Emit,
                 control: RunControl) -> tuple[torch.dtype | None, str, bool, str]:
    """(autocast, precision label, channels_last, a log line or ""): measured when the run trains
    through the network with ``precision = "auto"`` and ``channels_last`` left to the app
    (engine/stepchoice.py), else ``resolved`` and :func:`use_channels_last`, the CPU-flag rule."""
    autocast, precision = resolved
    by_flags = use_channels_last(cfg, device, built.model)
    if (cfg.train.precision != "auto" or cfg.train.channels_last or plan.kind != "none" or dist.active
            or not split.train):
        return autocast, precision, by_flags, ""
    cands = stepchoice.candidates(device, device.type == "cpu" and cpu_has_bf16(),
                                  device.type == "cuda" and torch.cuda.is_bf16_supported())
    batch = min(cfg.train.batch_size, len(split.train))
    steps = cfg.train.epochs * math.ceil(len(split.train) / batch)
    layout = f"{precision}{' channels_last' if by_flags else ''}"
    if not stepchoice.worth_measuring(steps, len(cands)):
        return autocast, precision, by_flags, (f"training step: {layout} by the CPU's flags, not measured (a run of "
                                               f"{steps} steps is too short to earn back measuring {len(cands)} ways)")
    emit(PhaseChanged("prepare", f"Measuring the training step ({len(cands)} ways)"))
    size = built.preprocessing.input_size
    gen = torch.Generator().manual_seed(cfg.train.seed)
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    y = torch.randint(0, len(split.classes), (batch,), generator=gen).to(device)
    prefer = stepchoice.Candidate(precision if precision in ("fp32", "bf16", "fp16") else "fp32", by_flags)
    choice = stepchoice.choose(built.model, cands, x, y, cancel=lambda: control.stop_requested, prefer=prefer)
    c = choice.candidate
    return c.autocast, c.precision, c.channels_last, choice.note()


def _scan(cfg: RunConfig, emit: Emit, control: RunControl) -> data_mod.Split:
    emit(PhaseChanged("prepare", "Scanning image folders"))
    split = data_mod.build_split(cfg.data, cfg.train.seed,
                                 progress=lambda n, msg: emit(Progress("scan", n, 0, msg)),
                                 cancel=lambda: control.stop_requested)
    for w in split.warnings:
        emit(Warning(w))
    return split


def _model(cfg: RunConfig, classes: list[str], device: torch.device, emit: Emit, control: RunControl) -> BuiltModel:
    """The model for ``classes`` on ``device``, at the configured image size."""
    emit(PhaseChanged("prepare", f"Loading model {cfg.model.name}"))
    built = build_model(cfg.model.name, cfg.model.weights, num_classes=len(classes),
                        progress=lambda d, t: emit(Progress("download", d, t, "Downloading weights")),
                        cancel=lambda: control.stop_requested)
    if built.classes and built.classes != classes:
        emit(Warning(_fit_head_to_classes(built, classes)))
    built.preprocessing = built.preprocessing.at_size(cfg.data.image_size)
    built.model.to(device)
    return built


def _groups(cfg: RunConfig, built: BuiltModel, device: torch.device) -> tuple[list[LayerGroup], set[str], dict]:
    """The layer groups, the frozen ones (applied to the model) and each group's rate; every
    name in the config is checked against the model first."""
    groups = split_groups(built.model, built.head_path)
    names = [g.name for g in groups]
    frozen = rules.resolve_frozen(names, cfg.layers, strict=True)
    rules.check_group_names(names, cfg.layers.lr.keys(), "layers.lr")
    rules.check_group_names(names, cfg.layers.unfreeze_at.keys(), "layers.unfreeze_at")
    rules.check_trainable(names, frozen, cfg.layers.unfreeze_at)
    check_input_size(built.model, built.preprocessing, device, cfg)
    apply_freeze(built.model, groups, frozen)
    return groups, frozen, rules.group_rates(names, cfg.layers)


def _fit_head_to_classes(built: BuiltModel, classes: list[str]) -> str:
    """A checkpoint trained on other classes: keep its head rows for the same class names (in
    the new order), else start a new head."""
    old = built.classes
    head = built.model.get_submodule(built.head_path)
    if sorted(old) == sorted(classes) and isinstance(head, nn.Linear):
        order = torch.tensor([old.index(c) for c in classes])
        with torch.no_grad():
            head.weight.copy_(head.weight[order])
            if head.bias is not None:
                head.bias.copy_(head.bias[order])
        built.classes = list(classes)
        return "the weights file lists the same classes in another order; its head rows were reordered to match"
    replace_head(built.model, len(classes), built.head_path)
    built.classes = list(classes)
    return (f"the weights file was trained on other classes ({', '.join(old[:6])}"
            f"{', ...' if len(old) > 6 else ''}); its head was replaced by a new one")


@torch.no_grad()
def check_input_size(model: nn.Module, pre, device: torch.device, cfg: RunConfig) -> None:
    """One image through the network before any work, so a size it cannot take is a clear error."""
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, pre.input_size, pre.input_size, device=device))
    except Exception as exc:  # noqa: BLE001 - any failure here is about the input size
        raise ConfigError(f"{cfg.model.name} cannot take {pre.input_size} px images ({str(exc).splitlines()[0][:160]}); "
                          f"use 0 for the model's own size", "data.image_size") from None
    finally:
        model.train(was_training)
