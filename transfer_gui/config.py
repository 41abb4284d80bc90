"""The whole description of a run, as frozen dataclasses that round-trip through TOML.

The window saves this file, the command line reads it, and ``torchrun`` launches it: one
description of a run for all three front doors. Errors name the offending field with its
dotted path (``train.batch_size``) so a user can find it in the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from transfer_gui.atomic import atomic_write_text
from transfer_gui.errors import UserError

CONFIG_VERSION = 1

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
FEATURE_CACHE = ("auto", "off")
EARLY_STOP_METRICS = ("val_acc", "val_loss")
CLASS_WEIGHTS = ("none", "balanced")
TENSORBOARD = ("auto", "on", "off")  # auto: event files when tensorboard is installed; on: required


Problem = tuple[str | None, str]  # (dotted field or None, what is wrong with it)


class ConfigError(UserError, ValueError):
    """A config problem, always naming the field (dotted path) or file it concerns. One error can
    carry several problems (``problems``), so a file with two mistakes names both at once;
    ``field`` is the first one's."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        self.problems: list[Problem] = [(field, message)]
        super().__init__(f"{field}: {message}" if field else message)

    @classmethod
    def of(cls, problems: list[Problem], source: str | None = None) -> "ConfigError":
        """Every problem in one error: one is said as ``field: message``; several are numbered
        on one line, ``2 problems: (1) a: ...; (2) b: ...``, which reads the same in the
        window's dialog and on the command line's one-line refusal."""
        said = [f"{f}: {m}" if f else m for f, m in problems]
        text = said[0] if len(said) == 1 else (f"{len(said)} problems: "
                                                 + "; ".join(f"({i}) {t}" for i, t in enumerate(said, 1)))
        exc = cls(f"{source}: {text}" if source else text)
        exc.field, exc.problems = problems[0][0], list(problems)
        return exc


@dataclass(frozen=True)
class AugmentConfig:
    # Off by default: with a frozen backbone and no random augmentation, the backbone's features
    # are computed once and every epoch after the first costs next to nothing.
    enabled: bool = False
    random_resized_crop: bool = True
    hflip: bool = True
    vflip: bool = False
    rotation: float = 0.0  # degrees, +-
    color_jitter: float = 0.0  # strength 0..1 for brightness/contrast/saturation


@dataclass(frozen=True)
class DataConfig:
    folders: tuple[str, ...] = ()  # parents of class folders and/or class folders
    val_folders: tuple[str, ...] = ()  # optional separate validation set
    val_fraction: float = 0.2  # stratified split when val_folders is empty (of what the test share leaves)
    test_folders: tuple[str, ...] = ()  # optional separate test set, evaluated once after training
    test_fraction: float = 0.0  # or a stratified, seeded test share held out of every class first
    exclude_classes: tuple[str, ...] = ()
    rename_classes: dict[str, str] = field(default_factory=dict)  # old -> new (merge allowed)
    # Decisions about single files (the files themselves are never moved or deleted). Paths are
    # absolute, or relative to the working directory like data.folders; they match the scanned
    # files after both are made absolute (engine/rules.py apply_decisions).
    exclude_files: tuple[str, ...] = ()  # left out of every set
    relabel: dict[str, str] = field(default_factory=dict)  # path -> class name (after renames)
    image_size: int = 0  # 0 = the model's own input size
    weighted_sampler: bool = False
    num_workers: int = -1  # -1 = choose automatically
    decode_cache_mb: int = 2048  # keep decoded, resized images in memory up to this size
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "efficientnet_lite0"  # catalog name, "timm:<name>", or torchvision name
    weights: str = "pretrained"  # "pretrained" | "none" | path to a weights file


@dataclass(frozen=True)
class LayersConfig:
    frozen: tuple[str, ...] = ()  # group names that do not train
    train_from: str = "head"  # freeze every group before this one ("" = not used)
    train_bn: bool = False  # let BatchNorm of frozen groups update its statistics
    head_lr: float = 1e-3
    lr_decay: float = 1.0  # discriminative factor: each group below the head gets lr * decay^k
    lr: dict[str, float] = field(default_factory=dict)  # explicit per-group rates win
    unfreeze_at: dict[str, int] = field(default_factory=dict)  # gradual unfreezing: group -> epoch


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"
    weight_decay: float = 1e-4  # never applied to norm layers and biases
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    label_smoothing: float = 0.0


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "cosine"
    warmup_steps: int = 0
    warmup_epochs: float = 0.0  # used when warmup_steps is 0
    min_lr_factor: float = 0.0  # cosine/onecycle floor as a fraction of each group's rate
    step_epochs: int = 3  # step schedule: multiply by gamma every step_epochs
    gamma: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 on CUDA if supported (else fp16) or on an AVX512-BF16/AMX CPU, else fp32
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    early_stopping: int = 0  # patience in epochs; 0 = off
    early_stopping_metric: str = "val_acc"
    seed: int = 0
    feature_cache: str = "auto"  # compute a frozen backbone (or frozen prefix) once when possible
    cache_memory_mb: int = 1024  # budget for cached activations of a frozen prefix
    channels_last: bool = False
    class_weights: str = "none"  # "balanced": inverse class frequency in the loss, normalised to mean 1


@dataclass(frozen=True)
class OutputConfig:
    dir: str = ""  # the run folder; "" = runs/<timestamp> under the working directory
    keep_best: bool = True
    tensorboard: str = "auto"  # TensorBoard event files in the run folder: auto (when installed) | on | off


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    layers: LayersConfig = field(default_factory=LayersConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    version: int = CONFIG_VERSION

    def replace(self, **changes: Any) -> "RunConfig":
        """Return a copy with dotted-path changes: ``cfg.replace(**{"train.epochs": 3})``."""
        data = to_dict(self)
        for key, value in changes.items():
            _set_path(data, key.split("."), value, key)
        return from_dict(data)


# ----------------------------------------------------------------------------- conversion


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of TOML-able values (tuples become lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        elif isinstance(value, dict):
            out[f.name] = dict(value)
        else:
            out[f.name] = value
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str, problems: list[Problem]) -> Any:
    """``value`` as type ``tp``; raises ConfigError for a value that is not one, and adds the
    problems of a table's own keys to ``problems``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {type(value).__name__}", path)
        return _build(tp, value, path, problems)
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a list, got {type(value).__name__}", path)
        return tuple(_coerce(v, item_tp, f"{path}[{i}]", problems) for i, v in enumerate(value))
    if origin is dict:
        val_tp = typing.get_args(tp)[1]  # keys are always text in TOML
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {type(value).__name__}", path)
        return {str(k): _coerce(v, val_tp, f"{path}.{k}", problems) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        raise ConfigError("unsupported union type", path)  # not used by the schema
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", path)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"expected a whole number, got {value!r}", path)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", path)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected text, got {value!r}", path)
        return value
    raise ConfigError(f"unsupported type {_type_name(tp)}", path)


def _build(cls: type, data: dict[str, Any], prefix: str, problems: list[Problem]) -> Any:
    """``cls`` from a table. A key that is unknown or of the wrong type is added to ``problems``
    and left at its default, so the rest of the file is still read and checked."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(names)})"
            problems.append((path, f"unknown key{hint}"))
            continue
        try:
            kwargs[key] = _coerce(value, hints[key], path, problems)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return cls(**kwargs)


def from_dict(data: dict[str, Any]) -> RunConfig:
    """The config of a table, or one ConfigError naming every field that is wrong (the types
    first, then the values of the fields that could be read)."""
    problems: list[Problem] = []
    cfg = _build(RunConfig, data, "", problems)
    problems += check_values(cfg)
    if problems:
        raise ConfigError.of(problems)
    return cfg


def _set_path(data: dict[str, Any], parts: list[str], value: Any, full: str) -> None:
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            raise ConfigError("no such section", full)
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` from ``--set``; the value is read as TOML, else taken as text."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    data = to_dict(cfg)
    for text in overrides:
        key, value = parse_override(text)
        _set_path(data, key.split("."), value, key)
    return from_dict(data)


# ----------------------------------------------------------------------------- validation


def validate(cfg: RunConfig) -> None:
    """Raise one ConfigError naming every field whose value cannot work (all at once, so a
    hand-edited file is fixed in one go)."""
    problems = check_values(cfg)
    if problems:
        raise ConfigError.of(problems)


class _Problems(list):
    """The problems found so far; ``need(cond, field, message)`` adds one where ``cond`` fails,
    the first per field only (a NaN rate is said to be not finite, not also not > 0)."""

    def need(self, cond: bool, path: str, message: str) -> None:
        if not cond and all(f != path for f, _ in self):
            self.append((path, message))


def check_values(cfg: RunConfig) -> list[Problem]:
    """Every (field, message) whose value cannot work, in the order of the file's sections."""
    out = _Problems()
    need = out.need
    for path, value in _numbers(cfg, ""):
        need(math.isfinite(value), path, f"must be a finite number, got {value}")
    need(cfg.version == CONFIG_VERSION, "version",
         f"unsupported config version {cfg.version}; this transfer_gui reads version {CONFIG_VERSION}")
    _check_data(cfg.data, need)
    need(bool(cfg.model.name.strip()), "model.name", "must not be empty")
    need(bool(cfg.model.weights.strip()), "model.weights", "must be 'pretrained', 'none' or a file path")
    _check_layers_optim(cfg.layers, cfg.optim, need)
    _check_schedule(cfg.schedule, need)
    _check_train(cfg.train, need)
    need(cfg.output.tensorboard in TENSORBOARD, "output.tensorboard",
         f"must be one of {', '.join(TENSORBOARD)}, got {cfg.output.tensorboard!r}")
    return list(out)


def _check_data(d: DataConfig, need) -> None:
    need(0.0 <= d.val_fraction < 1.0, "data.val_fraction", f"must be in [0, 1), got {d.val_fraction}")
    _check_test_set(d, need)
    _check_decisions(d, need)
    need(d.image_size == 0 or 16 <= d.image_size <= 2048, "data.image_size",
         f"must be 0 (model default) or between 16 and 2048, got {d.image_size}")
    need(d.num_workers >= -1, "data.num_workers", f"must be -1 (auto) or >= 0, got {d.num_workers}")
    need(d.decode_cache_mb >= 0, "data.decode_cache_mb", f"must be >= 0, got {d.decode_cache_mb}")
    need(0.0 <= d.augment.color_jitter <= 1.0, "data.augment.color_jitter",
         f"must be in [0, 1], got {d.augment.color_jitter}")
    need(0.0 <= d.augment.rotation <= 180.0, "data.augment.rotation",
         f"must be in [0, 180] degrees, got {d.augment.rotation}")


def _check_layers_optim(la: LayersConfig, o: OptimConfig, need) -> None:
    need(la.head_lr > 0, "layers.head_lr", f"must be > 0, got {la.head_lr}")
    need(0 < la.lr_decay <= 1.0, "layers.lr_decay", f"must be in (0, 1], got {la.lr_decay}")
    for name, value in la.lr.items():
        need(value >= 0, f"layers.lr.{name}", f"must be >= 0, got {value}")
    for name, value in la.unfreeze_at.items():
        need(value >= 0, f"layers.unfreeze_at.{name}", f"must be an epoch >= 0, got {value}")
    need(o.name in OPTIMIZERS, "optim.name", f"must be one of {', '.join(OPTIMIZERS)}, got {o.name!r}")
    need(o.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {o.weight_decay}")
    need(0 <= o.momentum < 1, "optim.momentum", f"must be in [0, 1), got {o.momentum}")
    need(0 <= o.label_smoothing < 1, "optim.label_smoothing", f"must be in [0, 1), got {o.label_smoothing}")


def _check_schedule(s: ScheduleConfig, need) -> None:
    need(s.name in SCHEDULES, "schedule.name", f"must be one of {', '.join(SCHEDULES)}, got {s.name!r}")
    need(s.warmup_steps >= 0, "schedule.warmup_steps", f"must be >= 0, got {s.warmup_steps}")
    need(s.warmup_epochs >= 0, "schedule.warmup_epochs", f"must be >= 0, got {s.warmup_epochs}")
    need(0 <= s.min_lr_factor <= 1, "schedule.min_lr_factor", f"must be in [0, 1], got {s.min_lr_factor}")
    need(s.step_epochs >= 1, "schedule.step_epochs", f"must be >= 1, got {s.step_epochs}")
    need(0 < s.gamma <= 1, "schedule.gamma", f"must be in (0, 1], got {s.gamma}")


def _check_train(t: TrainConfig, need) -> None:
    need(t.epochs >= 1, "train.epochs", f"must be >= 1, got {t.epochs}")
    need(0 <= t.seed < 2**31, "train.seed", f"must be between 0 and 2147483647, got {t.seed}")
    need(t.batch_size >= 1, "train.batch_size", f"must be >= 1, got {t.batch_size}")
    need(t.device in DEVICES or t.device.startswith("cuda:"), "train.device",
         f"must be one of {', '.join(DEVICES)} or cuda:N, got {t.device!r}")
    need(t.precision in PRECISIONS, "train.precision", f"must be one of {', '.join(PRECISIONS)}, got {t.precision!r}")
    need(t.grad_clip >= 0, "train.grad_clip", f"must be >= 0, got {t.grad_clip}")
    need(t.early_stopping >= 0, "train.early_stopping", f"must be >= 0, got {t.early_stopping}")
    need(t.early_stopping_metric in EARLY_STOP_METRICS, "train.early_stopping_metric",
         f"must be one of {', '.join(EARLY_STOP_METRICS)}, got {t.early_stopping_metric!r}")
    need(t.cache_memory_mb >= 0, "train.cache_memory_mb", f"must be >= 0, got {t.cache_memory_mb}")
    need(t.feature_cache in FEATURE_CACHE, "train.feature_cache",
         f"must be one of {', '.join(FEATURE_CACHE)}, got {t.feature_cache!r}")
    need(t.class_weights in CLASS_WEIGHTS, "train.class_weights",
         f"must be one of {', '.join(CLASS_WEIGHTS)}, got {t.class_weights!r}")


def _check_test_set(d: DataConfig, need) -> None:
    """A test set comes from test folders or a held-out share, not both."""
    need(0.0 <= d.test_fraction < 1.0, "data.test_fraction", f"must be in [0, 1), got {d.test_fraction}")
    need(not (d.test_fraction > 0 and d.test_folders), "data.test_fraction",
         "a test set comes either from data.test_folders or from a held-out share; "
         "set data.test_fraction to 0 or empty data.test_folders")


def _check_decisions(d: DataConfig, need) -> None:
    """File decisions name a file each; a file is either left out or relabelled, not both."""
    for i, path in enumerate(d.exclude_files):
        need(bool(path.strip()), f"data.exclude_files[{i}]", "must be the path of an image file, got an empty text")
    excluded = set(d.exclude_files)
    for path, name in d.relabel.items():
        need(bool(path.strip()), "data.relabel", "a relabelled file needs its path as the key, got an empty one")
        need(bool(name.strip()), f"data.relabel.{path}", "must be the name of a training class, got an empty text")
        need(path not in excluded, f"data.relabel.{path}",
             "this file is also in data.exclude_files; a file is either left out or given another class: "
             "remove it from one of the two")


def _numbers(node: Any, prefix: str):
    """(dotted path, value) of every float in the config, tables included."""
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            yield from _numbers(getattr(node, f.name), f"{prefix}.{f.name}" if prefix else f.name)
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _numbers(v, f"{prefix}.{k}")
    elif isinstance(node, float):
        yield prefix, node


def check_paths(cfg: RunConfig) -> None:
    """Check that the folders named by the config exist (separate from validate(), so a
    config can be edited in the window before its folders are chosen)."""
    if not cfg.data.folders:
        raise ConfigError("no image folders given", "data.folders")
    for i, folder in enumerate(cfg.data.folders):
        if not Path(folder).is_dir():
            raise ConfigError(f"folder does not exist: {folder}", f"data.folders[{i}]")
    for key in ("val_folders", "test_folders"):
        for i, folder in enumerate(getattr(cfg.data, key)):
            if not Path(folder).is_dir():
                raise ConfigError(f"folder does not exist: {folder}", f"data.{key}[{i}]")
    weights = cfg.model.weights
    if weights not in ("pretrained", "none") and not Path(weights).is_file():
        raise ConfigError(f"weights file does not exist: {weights}", "model.weights")


# ----------------------------------------------------------------------------- files


def dumps(cfg: RunConfig) -> str:
    header = "# transfer_gui run configuration. Edit freely; `transfer-gui train` reads it.\n"
    return header + tomli_w.dumps(to_dict(cfg))


def loads(text: str, source: str = "<config>") -> RunConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError.of(exc.problems, source) from None


def load(path: str | os.PathLike[str]) -> RunConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from None
    return loads(text, str(p))


def save(cfg: RunConfig, path: str | os.PathLike[str]) -> None:
    atomic_write_text(Path(path), dumps(cfg))
