"""Depth probe: "which layers should I train?"

At every boundary between two layer groups the frozen network's activations are taken, pooled
to one vector per image (global average over the positions of a convolutional map, channels
first or, as Swin's stages give them, channels last; the mean token of a token sequence) and
a multinomial logistic regression is fitted on the training split and scored on the
validation split. A probe that scores well at the input of group X
means the frozen groups before X already separate the classes: training from X on (the
config's ``layers.train_from``) then has good features to start from. The boundary in front
of the head is exactly head-only training.

One forward pass through the whole frozen network (forward pre-hooks on the first module of
every group) collects every boundary at once; the pooled activations are kept in memory for
the process, keyed by the weights, preprocessing and files (as ``features.py`` does), so a
second probe of the same data and model costs only the fits.

The suggestion (:func:`suggest`): let *best* be the highest probe accuracy. Take the
shallowest boundary whose accuracy is within ``tolerance`` of *best* and train from the group it
feeds; when that is the head's input (the probe only comes close to its best there), train the
head only. The early groups compute generic features that transfer, and the probe rises while
they are added; where it first comes close to its best, the frozen features hold about all that
frozen features can. Freezing up to there and retraining everything after it adapts the groups
that are specialised to the pretraining task. Picking the *deepest* boundary near the best
(freeze as much as possible) was the first rule tried: on the benchmark it chose head-only
training, 6.5 points below the best choice.

The tolerance (:data:`TOLERANCE`, 5 points) was calibrated with ``benchmarks/bench_probe.py``,
which trains from every group on the same data (Fashion-MNIST, efficientnet_lite0) and compares:
tolerances of 4 to 22 points pick a group at the best accuracy there, 0 to 3 points one 4 points
below it.
It is one data set and one model; read the suggestion as a starting point.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from transfer_gui.config import ConfigError, RunConfig
from transfer_gui.engine import data as data_mod
from transfer_gui.engine import features as feat_mod
from transfer_gui.engine import frozen
from transfer_gui.engine.control import RunControl, StopRequested
from transfer_gui.engine.events import PhaseChanged, Progress
from transfer_gui.engine.explain import output_layout
from transfer_gui.engine.linear import fit_logistic
from transfer_gui.engine.preprocess import eval_from_resized
from transfer_gui.engine.surgery import LayerGroup, backbone_and_head, split_groups

TOLERANCE = 0.05  # accuracy (as a fraction) a boundary may lack against the best one and still be picked
WEIGHT_DECAY = 1e-3  # L2 on the probe's weights, on standardised features
FIT_STEPS = 100  # L-BFGS iterations per probe
_MEMORY: dict[str, tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor], torch.Tensor]] = {}
_MEMORY_ENTRIES = 2

Emit = Callable[[object], None]


@dataclass(frozen=True)
class Depth:
    """One boundary: the input of group ``train_from`` (the output of group ``after``)."""

    train_from: str  # the layers.train_from value that trains from here on
    after: str  # the last frozen group
    module: str  # the module whose input was taken
    dim: int  # width of the pooled vector
    train_accuracy: float
    val_accuracy: float


@dataclass(frozen=True)
class ProbeResult:
    model: str
    image_size: int
    groups: list[str]  # every group, input to head
    depths: list[Depth]  # input to head; the last one is the head's input
    suggestion: str  # layers.train_from
    reason: str
    tolerance: float
    classes: list[str]
    train_size: int
    val_size: int
    chance: float  # share of the most common class in the validation images
    seconds: float
    reused: bool = False  # the activations came from the in-process cache
    notes: list[str] = field(default_factory=list)

    def accuracy(self) -> dict[str, float]:
        """Validation accuracy by the group each boundary feeds (train_from)."""
        return {d.train_from: d.val_accuracy for d in self.depths}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["suggested_train_from"] = d.pop("suggestion")
        return d


def suggest(depths: list[Depth], tolerance: float = TOLERANCE) -> tuple[str, str]:
    """(layers.train_from, the reason in words): the group fed by the shallowest boundary whose
    probe accuracy is within ``tolerance`` of the best one (see the module's docstring)."""
    if not depths:
        return "head", "no boundary could be probed; train the head only"
    best = max(d.val_accuracy for d in depths)
    peak = next(d for d in depths if d.val_accuracy == best)
    pick = next(d for d in depths if d.val_accuracy >= best - tolerance - 1e-9)
    within = f"within {tolerance * 100:g} points of its best ({best:.1%}, before {peak.train_from})"
    if pick is depths[-1]:
        return "head", (f"the probe comes {within} only at the head's input ({pick.val_accuracy:.1%}): the frozen "
                        f"network already separates the classes, so train the head only")
    return pick.train_from, (f"the probe first comes {within} at the input of {pick.train_from} "
                             f"({pick.val_accuracy:.1%}): the groups before it already give about what frozen "
                             f"features can, so keep them frozen and train from {pick.train_from} on, which adapts "
                             f"the later groups to these images")


def boundaries(groups: list[LayerGroup]) -> list[tuple[str, str, str]]:
    """(train_from, after, module) for every boundary between two groups: the input of each
    group's first module but the first group's (that is the image itself)."""
    return [(g.name, prev.name, g.modules[0]) for prev, g in zip(groups, groups[1:])]


def pool(t: torch.Tensor, input_size: int | None = None) -> torch.Tensor:
    """One vector per image: the mean over positions of an (N, C, H, W) map, of a channels-last
    (N, H, W, C) one (Swin's stages; told apart from the grid's sides with ``input_size``, the
    image's side, as the heat maps do: ``explain.output_layout``), or over the tokens of an
    (N, T, D) sequence; (N, D) stays as it is."""
    t = t.detach().float()
    if t.dim() == 4 and input_size and _channels_last(tuple(t.shape), input_size):
        return t.mean(dim=(1, 2))
    if t.dim() >= 4:
        return t.flatten(2).mean(2)
    if t.dim() == 3:
        return t.mean(1)
    return t.reshape(t.shape[0], -1)


def _channels_last(shape: tuple[int, ...], input_size: int) -> bool:
    found = output_layout((1, *shape[1:]), input_size)
    return found is not None and found[0] == "nhwc"


class _Taps:
    """Forward pre-hooks that keep the pooled input of each boundary module (its first call
    per forward pass)."""

    def __init__(self, model: nn.Module, modules: list[str]):
        self.got: list[torch.Tensor | None] = [None] * len(modules)
        self.input_size: int | None = None  # the side of the images of the forward pass under way
        self.handles = [model.get_submodule(m).register_forward_pre_hook(self._hook(i)) for i, m in enumerate(modules)]

    def _hook(self, i: int):
        def hook(_m, args):
            if self.got[i] is None and args and isinstance(args[0], torch.Tensor):
                self.got[i] = pool(args[0], self.input_size).cpu()
        return hook

    def take(self) -> list[torch.Tensor | None]:
        got, self.got = self.got, [None] * len(self.got)
        return got

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def collect(model: nn.Module, modules: list[str], loader: DataLoader, device: torch.device,
            autocast: torch.dtype | None = None, progress: Callable[[int], None] | None = None,
            check: Callable[[], None] | None = None) -> tuple[list[torch.Tensor | None], torch.Tensor]:
    """(pooled activations at each module's input, labels) for every image of ``loader``, in
    one forward pass per batch (eval mode). A module never reached gives None."""
    model.eval()
    taps = _Taps(model, modules)
    per: list[list[torch.Tensor | None]] = [[] for _ in modules]
    labels = []
    try:
        for x, y, _idx in loader:
            if check:
                check()
            taps.input_size = int(x.shape[-1])
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                model(x.to(device))
            for i, t in enumerate(taps.take()):
                per[i].append(t)
            labels.append(torch.as_tensor(y).long())
            if progress:
                progress(len(y))
    finally:
        taps.remove()
    feats = [None if not p or any(t is None for t in p) else torch.cat(p) for p in per]
    return feats, torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)


def fit_linear(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
               num_classes: int, weight_decay: float = WEIGHT_DECAY, steps: int = FIT_STEPS,
               check: Callable[[], None] | None = None) -> tuple[float, float]:
    """(training accuracy, validation accuracy) of a multinomial logistic regression on
    standardised features (mean and spread of the training rows), fitted with L-BFGS
    (engine/linear.py, shared with the data audit)."""
    head = fit_logistic(x_train, y_train, num_classes, weight_decay, steps, check)
    return head.accuracy(x_train, y_train), head.accuracy(x_val, y_val)


def _checker(control: RunControl | None, cancel: Callable[[], bool] | None) -> Callable[[], None]:
    def check() -> None:
        if control is not None:
            control.checkpoint()
        if cancel is not None and cancel():
            raise StopRequested()
    return check


def _setup(cfg: RunConfig, emit: Emit, cancelled: Callable[[], bool]):
    """(device, autocast dtype, split, built model in eval mode, groups)."""
    fz = frozen.setup(cfg, emit, cancelled)  # shared with the data audit
    if not fz.split.val:
        raise ConfigError("the depth probe scores every depth on validation images and there are none; set "
                          "data.val_fraction above 0 or add data.val_folders", "data.val_fraction")
    return fz.device, fz.autocast, fz.split, fz.built, split_groups(fz.built.model, fz.built.head_path)


def _activations(cfg: RunConfig, setup, modules: list[str], emit: Emit, check: Callable[[], None]):
    """(train features per boundary, train labels, val features, val labels, reused?), from the
    in-process cache when the weights, preprocessing and files are the same."""
    device, autocast, split, built, _groups = setup
    pre = built.preprocessing
    backbone, _head = backbone_and_head(built.model, built.head_path)
    key = feat_mod.cache_key(f"probe|{feat_mod.fingerprint(backbone)}|{'|'.join(modules)}", pre,
                             [s.path for s in (*split.train, *split.val)], autocast)
    if key in _MEMORY:
        return (*_MEMORY[key], True)
    total, done = len(split.train) + len(split.val), [0]

    def tick(n: int) -> None:
        done[0] += n
        emit(Progress("probe_features", done[0], total, "Frozen activations at every boundary"))

    emit(PhaseChanged("features", f"Running {total:,} images once through the frozen network"))
    workers = data_mod.auto_workers(cfg.data.num_workers, device, cached=False)
    batch = min(cfg.train.batch_size, 16) if device.type == "cpu" else max(cfg.train.batch_size, 64)
    out = []
    for samples in (split.train, split.val):
        loader = DataLoader(data_mod.ImageDataset(samples, eval_from_resized(pre), pre), batch_size=batch,
                            shuffle=False, num_workers=workers, pin_memory=device.type == "cuda")
        out.extend(collect(built.model, modules, loader, device, autocast, tick, check))
    _MEMORY[key] = tuple(out)
    while len(_MEMORY) > _MEMORY_ENTRIES:
        _MEMORY.pop(next(iter(_MEMORY)))
    return (*out, False)


def _fit_all(bounds, acts, num_classes: int, emit: Emit, check: Callable[[], None]) -> tuple[list[Depth], list[str]]:
    xs_train, y_train, xs_val, y_val, _reused = acts
    keep_t, keep_v = y_train >= 0, y_val >= 0  # -1: the image failed to decode
    depths, notes = [], []
    emit(PhaseChanged("probe", f"Fitting a linear classifier at {len(bounds)} depths"))
    for k, ((train_from, after, module), xt, xv) in enumerate(zip(bounds, xs_train, xs_val)):
        check()
        if xt is None or xv is None:
            notes.append(f"the input of {module} ({train_from}) is not a tensor the probe can read; skipped")
            continue
        tr, va = fit_linear(xt[keep_t], y_train[keep_t], xv[keep_v], y_val[keep_v], num_classes, check=check)
        depths.append(Depth(train_from, after, module, int(xt.shape[1]), tr, va))
        emit(Progress("probe", k + 1, len(bounds), f"Probe before {train_from}: {va:.1%} validation accuracy"))
    return depths, notes


def probe(cfg: RunConfig, on_event: Emit | None = None, control: RunControl | None = None,
          cancel: Callable[[], bool] | None = None, tolerance: float = TOLERANCE) -> ProbeResult:
    """Probe every group boundary of ``cfg``'s model on ``cfg``'s data and suggest
    ``layers.train_from``. Stops with a :class:`~transfer_gui.errors.Cancelled` (StopRequested)
    when ``control`` is stopped or ``cancel()`` turns true."""
    emit = on_event or (lambda e: None)
    check = _checker(control, cancel)
    t0 = time.perf_counter()
    setup = _setup(cfg, emit, lambda: (cancel is not None and cancel()) or bool(control and control.stop_requested))
    _device, _autocast, split, built, groups = setup
    bounds = boundaries(groups)
    acts = _activations(cfg, setup, [m for _t, _a, m in bounds], emit, check)
    depths, notes = _fit_all(bounds, acts, len(split.classes), emit, check)
    suggestion, reason = suggest(depths, tolerance)
    counts = [int((acts[3] == c).sum()) for c in range(len(split.classes))]
    return ProbeResult(cfg.model.name, built.preprocessing.input_size, [g.name for g in groups], depths, suggestion,
                       reason, tolerance, list(split.classes), int((acts[1] >= 0).sum()), int((acts[3] >= 0).sum()),
                       max(counts) / max(1, sum(counts)), time.perf_counter() - t0, acts[4], notes)


__all__ = ["Depth", "ProbeResult", "TOLERANCE", "boundaries", "collect", "fit_linear", "pool", "probe", "suggest"]
