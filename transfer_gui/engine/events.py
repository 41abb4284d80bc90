"""Small immutable events that cross from the training thread to any front end.

Only plain floats, ints, strings and lists: never tensors, so they are cheap to queue across
threads and safe to keep in a plot's history.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunStarted:
    run_dir: str
    device: str
    precision: str
    classes: list[str]
    groups: list[str]  # layer-group names, input to head
    trainable_groups: list[str]
    train_size: int
    val_size: int
    epochs: int
    steps_per_epoch: int
    total_steps: int
    feature_cache: bool  # True when the frozen backbone is computed once
    start_epoch: int = 0  # > 0 when resuming
    test_size: int = 0  # test images, evaluated once after training (data.test_folders / test_fraction)


@dataclass(frozen=True)
class Progress:
    """Long preparation work (decoding, computing features): ``done`` of ``total``."""

    phase: str  # "decode", "features", "lr_find", ...
    done: int
    total: int
    message: str = ""


@dataclass(frozen=True)
class PhaseChanged:
    phase: str  # "prepare", "features", "train", "validate", "finished"
    message: str = ""


@dataclass(frozen=True)
class BatchEnd:
    epoch: int  # 0-based
    step: int  # global optimizer step, 1-based after this batch
    batch: int  # 1-based index within the epoch
    batches: int  # batches in this epoch
    loss: float
    lrs: dict[str, float]  # learning rate of every layer group at this step
    images_per_s: float


@dataclass(frozen=True)
class EpochEnd:
    epoch: int  # 0-based
    epochs: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    per_class_acc: list[float]
    confusion: list[list[int]]  # rows = true class, columns = predicted
    seconds: float
    lrs: dict[str, float]
    is_best: bool
    images_per_s: float = 0.0


@dataclass(frozen=True)
class GroupStats:
    """How far each layer group has moved from its starting (pretrained) weights, and how large
    its gradient is, measured every few optimizer steps (engine/drift.py)."""

    epoch: int  # 0-based
    step: int  # the optimizer step (1-based) whose gradients were measured
    drift: dict[str, float]  # group -> ||w - w_start|| / ||w_start||; groups with pretrained weights only
    grad_norm: dict[str, float]  # group -> L2 norm of its gradients at ``step``; the groups training now
    norm_growth: dict[str, float] = field(default_factory=dict)  # the new head: ||w|| / ||w_start||
    flags: dict[str, str] = field(default_factory=dict)  # group -> "drift" | "no_gradient", once warned


@dataclass(frozen=True)
class Warning:  # noqa: A001 - an event, not the builtin
    message: str


@dataclass(frozen=True)
class Finished:
    status: str  # "completed", "stopped", "early_stopped", "failed"
    message: str
    run_dir: str
    best_epoch: int = -1
    best_val_acc: float = float("nan")
    epochs_done: int = 0
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)


Event = RunStarted | Progress | PhaseChanged | BatchEnd | EpochEnd | GroupStats | Warning | Finished
