"""The rulebook: what a run will do, decided from names and the config alone (no torch, no Qt).

The engine decides with these functions, and the window calls the same ones to show what a run
will do before it starts: how many images train and validate, which layer groups are frozen,
the learning rate of each group, and which cache the run uses and why.

* :func:`split_sizes` / :func:`split_counts` - training, validation (and test) images of the split
* :func:`apply_decisions` - the files ``data.exclude_files`` leaves out and ``data.relabel`` moves
* :func:`imbalance` / :func:`balanced_weights` - the imbalance warning and the class weights of the loss
* :func:`resolve_frozen` - the frozen groups of ``layers.frozen`` and ``layers.train_from``
* :func:`group_rates` - each group's learning rate (head rate, decay, explicit rates)
* :func:`plan_cache` / :func:`plan_cache_for` - features, a frozen prefix, or no cache, in words
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Mapping, Sequence

from transfer_gui.errors import UserError

HEAD = "head"  # the name of the classifier's group (engine.surgery names it)
MB = 2**20


class GroupError(UserError, ValueError):
    """A layer-group name in the config that the model does not have, or a freezing that cannot train."""


def augment_is_random(aug: Any) -> bool:
    """True when augmentation changes an image from one epoch to the next."""
    return bool(aug.enabled and (aug.random_resized_crop or aug.hflip or aug.vflip
                                 or aug.rotation > 0 or aug.color_jitter > 0))


def lr_sweep_ok(steps: int, start_lr: float, end_lr: float) -> bool:
    """Whether the LR finder can sweep: at least 2 steps and ``0 < start_lr < end_lr``."""
    return steps >= 2 and 0 < start_lr < end_lr


# ----------------------------------------------------------------------------- data split


def val_count(n: int, val_fraction: float) -> int:
    """Validation images that a class of ``n`` images gives to the stratified split: the
    rounded fraction, at least one when the fraction is above 0, and never the last image."""
    if val_fraction <= 0 or n < 2:
        return 0
    return min(max(round(n * val_fraction), 1), n - 1)


def test_count(n: int, test_fraction: float) -> int:
    """Test images that a class of ``n`` images gives to the held-out test share (taken before
    the validation split): the same rounding as :func:`val_count`, never the last image."""
    return val_count(n, test_fraction)


def class_split(n: int, data_cfg: Any) -> tuple[int, int, int]:
    """(training, validation, test) images of one class of ``n`` images: the test share first,
    then ``data.val_fraction`` of what is left (none with ``data.val_folders``)."""
    test = 0 if data_cfg.test_folders else test_count(n, data_cfg.test_fraction)
    val = 0 if data_cfg.val_folders else val_count(n - test, data_cfg.val_fraction)
    return n - test - val, val, test


def split_sizes(class_counts: Mapping[str, int], data_cfg: Any) -> tuple[int, int, int]:
    """(training, validation, test) images of the split the engine makes from these classes.
    -1 stands for a set that comes from its own folders (``data.val_folders``,
    ``data.test_folders``), whose size the training folders do not tell."""
    parts = [class_split(n, data_cfg) for n in class_counts.values()]
    train, val, test = (sum(p[k] for p in parts) for k in range(3))
    return (train, -1 if data_cfg.val_folders else val,
            -1 if data_cfg.test_folders else test)


def split_counts(class_counts: Mapping[str, int], data_cfg: Any) -> tuple[int, int]:
    """(training, validation) images of the split the engine makes from these classes (the test
    share, if any, already left out; :func:`split_sizes` tells it). With ``data.val_folders``
    every image that is not a test image trains and validation comes from those folders: -1."""
    return split_sizes(class_counts, data_cfg)[:2]


# ----------------------------------------------------------------------------- file decisions


def decision_key(path: str) -> str:
    """How a path in ``data.exclude_files`` / ``data.relabel`` meets a scanned file: both made
    absolute (a relative path is taken from the working directory, like ``data.folders``) and
    normalised (``a/./b``, case on Windows)."""
    return os.path.normcase(os.path.abspath(path))


@dataclass
class Decided:
    """One set's samples with the file decisions applied.

    ``kept``: (position in the given paths, class name) of every file the set keeps, in order;
    ``excluded``: the scanned paths left out; ``relabelled``: scanned path -> {"from", "to"};
    ``unknown``: scanned path -> a relabel class that is not a training class (the file keeps
    its own class); ``matched``: the decision keys that met a file."""

    kept: list[tuple[int, str]] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    relabelled: dict[str, dict[str, str]] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)
    matched: set[str] = field(default_factory=set)


def has_decisions(data_cfg: Any) -> bool:
    return bool(data_cfg.exclude_files or data_cfg.relabel)


def apply_decisions(paths: Sequence[str], names: Sequence[str], data_cfg: Any, classes: Collection[str],
                    keys: Sequence[str] | None = None) -> Decided:
    """The files of one set (``paths[i]`` of class ``names[i]``, classes already renamed) after
    the decisions: an excluded file is left out, a relabelled file takes its new class (a name
    of ``classes``; an old name that ``data.rename_classes`` renames is taken as its new name).
    ``keys``: the paths' :func:`decision_key` when known (the window keeps them per scan)."""
    out = Decided()
    excluded = {decision_key(p) for p in data_cfg.exclude_files}
    relabel = {decision_key(p): c for p, c in data_cfg.relabel.items()}
    renames = data_cfg.rename_classes
    for i, (path, name) in enumerate(zip(paths, names)):
        key = keys[i] if keys is not None else decision_key(path)
        if key in excluded:
            out.matched.add(key)
            out.excluded.append(path)
            continue
        new = relabel.get(key)
        if new is None:
            out.kept.append((i, name))
            continue
        out.matched.add(key)
        new = new if new in classes else renames.get(new, new)
        if new not in classes:
            out.unknown[path] = new
            out.kept.append((i, name))
            continue
        if new != name:
            out.relabelled[path] = {"from": name, "to": new}
        out.kept.append((i, new))
    return out


def missing_decisions(data_cfg: Any, matched: Collection[str]) -> list[str]:
    """The paths of ``data.exclude_files`` and ``data.relabel`` (as written) that met no file of any set."""
    every = [*data_cfg.exclude_files, *data_cfg.relabel]
    return [p for p in dict.fromkeys(every) if decision_key(p) not in matched]


def missing_warning(missing: Sequence[str]) -> str:
    """The words for decisions about files that are not in the data (a warning, never an error)."""
    n = len(missing)
    some = ", ".join(missing[:3]) + (", ..." if n > 3 else "")
    return (f"{n} file{'s' if n != 1 else ''} named in data.exclude_files or data.relabel "
            f"{'are' if n != 1 else 'is'} not in the image folders (moved, renamed or deleted?) and "
            f"{'were' if n != 1 else 'was'} ignored: {some}")


def unknown_class_message(unknown: Mapping[str, str], classes: Sequence[str]) -> str:
    path, name = next(iter(unknown.items()))
    more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
    return (f"{path} is to become class '{name}'{more}, which is not a training class ({', '.join(classes)}); "
            f"choose one of those classes or remove the entry")


# ----------------------------------------------------------------------------- class balance

IMBALANCE_RATIO = 3.0  # largest / smallest class above this is worth a warning and a fix


def imbalance(class_counts: Mapping[str, int]) -> dict | None:
    """{"largest", "smallest", "ratio", "advice"} when the largest class has more than
    ``IMBALANCE_RATIO`` times the images of the smallest (classes with no images left out), else None."""
    counts = {c: n for c, n in class_counts.items() if n > 0}
    if len(counts) < 2:
        return None
    big = max(counts, key=lambda c: counts[c])
    small = min(counts, key=lambda c: counts[c])
    ratio = counts[big] / counts[small]
    if ratio <= IMBALANCE_RATIO:
        return None
    advice = (f"Classes are imbalanced: '{big}' has {counts[big]:,} images, {ratio:.1f}x the {counts[small]:,} of "
              f"'{small}'; the model will favour the large classes. Weight the classes in the loss "
              f"(train.class_weights = \"balanced\") or draw them evenly (data.weighted_sampler = true), and compare "
              f"the per-class recall of the runs.")
    return {"largest": big, "smallest": small, "ratio": ratio, "advice": advice}


def balanced_weights(counts: Sequence[int]) -> list[float]:
    """Class weights for the loss: inverse class frequency, normalised to mean 1 over the classes
    that have images (a class without training images gets 1; no target ever carries it)."""
    inv = [1.0 / n for n in counts if n > 0]
    if not inv:
        return [1.0] * len(counts)
    mean = sum(inv) / len(inv)
    return [(1.0 / n) / mean if n > 0 else 1.0 for n in counts]


def class_weights_for(counts: Sequence[int], train_cfg: Any) -> list[float] | None:
    """The loss's class weights that ``train.class_weights`` asks for, from the training classes'
    counts (in label order); None for "none"."""
    return balanced_weights(counts) if train_cfg.class_weights == "balanced" else None


# ----------------------------------------------------------------------------- layer groups


def check_group_names(known: Sequence[str], names: Iterable[str], field: str) -> None:
    """Raise GroupError for the first of ``names`` that is not a group, with a suggestion."""
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=2)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise GroupError(f"{field}: unknown layer group '{name}'.{hint} Groups: {', '.join(known)}")


def frozen_names(names: Sequence[str], frozen: Iterable[str] = (), train_from: str = "",
                 strict: bool = True) -> set[str]:
    """The frozen groups of an explicit list and/or "train from group X on" (every group before
    X). ``strict``: an unknown name raises GroupError; otherwise it is left out."""
    frozen = set(frozen)
    if strict:
        check_group_names(names, sorted(frozen), "layers.frozen")
        if train_from:
            check_group_names(names, [train_from], "layers.train_from")
    out = {n for n in frozen if n in names}
    if train_from in names:
        out |= set(names[:list(names).index(train_from)])
    return out


def resolve_frozen(names: Sequence[str], layers_cfg: Any, strict: bool = True) -> set[str]:
    """The groups ``layers.frozen`` and ``layers.train_from`` freeze (before any unfreezing)."""
    return frozen_names(names, layers_cfg.frozen, layers_cfg.train_from, strict)


def frozen_at_epoch(frozen: Collection[str], unfreeze_at: Mapping[str, int], epoch: int) -> set[str]:
    """Gradual unfreezing: groups listed in ``unfreeze_at`` thaw at their epoch (0-based)."""
    return {name for name in frozen if not (name in unfreeze_at and epoch >= unfreeze_at[name])}


def check_trainable(names: Sequence[str], frozen: Collection[str], unfreeze_at: Mapping[str, int]) -> None:
    """Refuse a freezing that leaves nothing to train in the first epoch."""
    if frozen_at_epoch(frozen, unfreeze_at, 0) >= set(names):
        raise GroupError("layers.frozen: every layer group is frozen in the first epoch, so nothing would train; "
                         "unfreeze at least the head")


def rates(names: Sequence[str], head_lr: float, decay: float = 1.0,
          explicit: Mapping[str, float] | None = None) -> dict[str, float]:
    """Discriminative rates: the last group (the head) gets ``head_lr``, the group k places
    below it ``head_lr * decay**k``; explicit per-group values win."""
    explicit = dict(explicit or {})
    n = len(names)
    return {name: explicit.get(name, head_lr * decay ** (n - 1 - i)) for i, name in enumerate(names)}


def group_rates(names: Sequence[str], layers_cfg: Any, *, exclude_frozen: bool = False) -> dict[str, float]:
    """The base learning rate the optimizer gives each group (``layers.head_lr``,
    ``layers.lr_decay``, explicit ``layers.lr``). Frozen groups are in the optimizer too, with
    the rate they train at once ``layers.unfreeze_at`` thaws them; ``exclude_frozen`` leaves
    out the groups that stay frozen for the whole run."""
    out = rates(names, layers_cfg.head_lr, layers_cfg.lr_decay, layers_cfg.lr)
    if exclude_frozen:
        never = resolve_frozen(names, layers_cfg, strict=False) - set(layers_cfg.unfreeze_at)
        out = {n: lr for n, lr in out.items() if n not in never}
    return out


# ----------------------------------------------------------------------------- cache plan


@dataclass(frozen=True)
class CachePlan:
    """Which cache a run trains on, and why, in words.

    ``kind``: "features" (the whole backbone is computed once and only the head trains),
    "prefix" (the frozen groups at the input side, ``computed_once``, are computed once and
    every epoch runs from ``start_group`` on) or "none" (every epoch runs the whole network).
    ``reason`` is a sentence for a person; ``silent`` marks a reason the run's log leaves out
    (the user turned the cache off). A "prefix" plan made without the sizes is ``provisional``:
    the run still measures whether the activations fit ``train.cache_memory_mb``.
    """

    kind: str
    reason: str
    computed_once: tuple[str, ...] = ()
    start_group: str = ""
    provisional: bool = False
    silent: bool = False


def _none(reason: str, silent: bool = False) -> CachePlan:
    return CachePlan("none", reason, silent=silent)


def plan_cache(names: Sequence[str], frozen: Collection[str], *, feature_cache: str = "auto",
               augment_random: bool = False, train_bn: bool = False, unfreeze_at: Collection[str] = (),
               budget_mb: int = 1024, activation_bytes: int | None = None, dummy_ok: bool | None = None,
               start_module: str = "") -> CachePlan:
    """Decide the cache from plain facts: the groups in order (the head last), the frozen ones,
    the settings, and when known the activation bytes of all images at the first trainable group
    and whether the network can run from there on a dummy input (``start_module``: that group's
    first module, named in the reasons; its group name otherwise)."""
    frozen, thawing = set(frozen), set(unfreeze_at)
    body = [n for n in names if n != HEAD]
    if feature_cache != "auto":
        return _none("train.feature_cache is off, so every epoch runs the whole network", silent=True)
    if set(body) <= frozen and not (thawing & set(body)) and not augment_random and HEAD not in frozen:
        return CachePlan("features", "only the head trains and augmentation is off, so the backbone's features "
                                     "are computed once and every epoch trains the head on them", tuple(body))
    k = next((i for i, n in enumerate(names) if n not in frozen), len(names))
    if k == 0 or k >= len(names):
        return _none("no feature cache: no frozen layers at the input side")
    if augment_random:
        return _none("no activation cache: random augmentation is on")
    if train_bn or set(names[:k]) & thawing:
        return _none("no activation cache: frozen layers change during the run (train_bn or gradual unfreezing)")
    return _prefix_plan(tuple(names[:k]), names[k], start_module or names[k], budget_mb, activation_bytes, dummy_ok)


def _prefix_plan(prefix: tuple[str, ...], start: str, where: str, budget_mb: int, need: int | None,
                 dummy_ok: bool | None) -> CachePlan:
    if dummy_ok is False:
        return _none(f"no activation cache: this architecture cannot start at {where}")
    if need is not None and need > budget_mb * MB:
        return _none(f"no activation cache: {need / MB:,.0f} MB needed at {where}, budget "
                     f"train.cache_memory_mb = {budget_mb:,} MB")
    size = f"{need / MB:,.0f} MB of train.cache_memory_mb = {budget_mb:,} MB" if need is not None else \
        f"when their output fits in train.cache_memory_mb = {budget_mb:,} MB"
    return CachePlan("prefix", f"the frozen groups at the input side ({', '.join(prefix)}) are computed once "
                               f"({size}); every epoch then runs from {start} on", prefix, start,
                     provisional=need is None or dummy_ok is None)


def plan_cache_for(names: Sequence[str], cfg: Any, *, frozen: Collection[str] | None = None,
                   activation_bytes: int | None = None, dummy_ok: bool | None = None,
                   start_module: str = "") -> CachePlan:
    """:func:`plan_cache` for a run config: the frozen groups from ``cfg.layers`` (unknown names
    left out) unless given, and the settings from ``cfg``."""
    if frozen is None:
        frozen = resolve_frozen(names, cfg.layers, strict=False)
    return plan_cache(names, frozen, feature_cache=cfg.train.feature_cache,
                      augment_random=augment_is_random(cfg.data.augment), train_bn=cfg.layers.train_bn,
                      unfreeze_at=tuple(cfg.layers.unfreeze_at), budget_mb=cfg.train.cache_memory_mb,
                      activation_bytes=activation_bytes, dummy_ok=dummy_ok, start_module=start_module)
