"""What the Data step shows, computed from a raw scan (no renames, no exclusions) and the
config, so renaming or dropping a class never needs a rescan. Plain Python, no Qt.

The file decisions (``data.exclude_files``, ``data.relabel``) are applied with the engine's own
rule (``engine.rules.apply_decisions``), so the counts here are the counts the run trains on."""

from __future__ import annotations

import collections
import weakref
from dataclasses import dataclass, field

from transfer_gui.engine import rules


@dataclass
class ClassRow:
    original: str  # folder name as scanned
    name: str  # after data.rename_classes
    count: int  # images the run takes from this row (the file decisions applied)
    excluded: bool
    examples: list[str] = field(default_factory=list)  # a few image paths
    found: int = -1  # images scanned in the folder (-1: the same as count)


def class_rows(index, data_cfg, examples: int = 4) -> list[ClassRow]:
    """One row per scanned class folder name. Its count follows the file decisions, so that the
    rows add up to the totals line: an excluded file is not counted, a file given another class
    counts in the first used row of that class (``found`` keeps the folder's own count)."""
    rows = _scanned_rows(index, data_cfg, examples)
    if rows and rules.has_decisions(data_cfg):
        _decided_counts(index, data_cfg, rows)
    return rows


def _decided_counts(index, data_cfg, rows: list[ClassRow]) -> None:
    """Each row's count with ``data.exclude_files`` and ``data.relabel`` applied (in place)."""
    picked, decided = _decided(index, data_cfg, rows)
    first = {}
    for i, row in enumerate(rows):
        row.found, row.count = row.count, 0
        if not row.excluded:
            first.setdefault(row.name, i)
    for k, name in decided.kept:
        own = index.samples[picked[k]].label
        rows[own if rows[own].name == name else first[name]].count += 1
    left_out = {rules.decision_key(p) for p in data_cfg.exclude_files}
    keys = _keys(index)
    for j, s in enumerate(index.samples):  # a left-out class's folder: its excluded files still go
        if rows[s.label].excluded and keys[j] not in left_out:
            rows[s.label].count += 1


def _scanned_rows(index, data_cfg, examples: int) -> list[ClassRow]:
    """The rows as the scan found them, before the file decisions."""
    if index is None:
        return []
    per_label: dict[int, list[str]] = collections.defaultdict(list)
    for s in index.samples:
        per_label[s.label].append(s.path)
    excluded = set(data_cfg.exclude_classes)
    rows = []
    for label, original in enumerate(index.classes):
        paths = per_label.get(label, [])
        new = data_cfg.rename_classes.get(original, original)
        rows.append(ClassRow(original, new, len(paths), original in excluded or new in excluded,
                             _spread(paths, examples)))
    return rows


def _spread(paths: list[str], k: int) -> list[str]:
    if k <= 0:
        return []
    if len(paths) <= k:
        return list(paths)
    step = len(paths) / k
    return [paths[int(i * step)] for i in range(k)]


def effective_counts(index, data_cfg) -> dict[str, int]:
    """Images per class the run will train on (renamed, merged, without excluded classes and
    files, relabelled files in their new class), sorted by name."""
    counts: dict[str, int] = collections.Counter()
    for row in _scanned_rows(index, data_cfg, examples=0):
        if not row.excluded:
            counts[row.name] += row.count
    if rules.has_decisions(data_cfg):
        counts = collections.Counter({name: 0 for name in counts})
        counts.update(name for _path, name in decided_files(index, data_cfg)[0])
    return {name: counts[name] for name in sorted(counts)}


_KEYS: dict[int, tuple[weakref.ref, list[str]]] = {}  # id(scan) -> (the scan, its paths' decision keys)


def _keys(index) -> list[str]:
    """The decision key of every scanned path, computed once per scan (the counts are redrawn often)."""
    held = _KEYS.get(id(index))
    if held is not None and held[0]() is index and len(held[1]) == len(index.samples):
        return held[1]
    keys = [rules.decision_key(s.path) for s in index.samples]
    try:
        ref = weakref.ref(index, lambda _r, k=id(index): _KEYS.pop(k, None))
    except TypeError:  # not weak-referenceable: no cache
        return keys
    _KEYS[id(index)] = (ref, keys)
    return keys


def decided_files(index, data_cfg) -> tuple[list[tuple[str, str]], "rules.Decided"]:
    """((path, class) of every training file the run uses, in scan order; what the decisions did)."""
    picked, decided = _decided(index, data_cfg, _scanned_rows(index, data_cfg, examples=0))
    return [(index.samples[picked[i]].path, name) for i, name in decided.kept], decided


def _decided(index, data_cfg, rows: list[ClassRow]) -> tuple[list[int], "rules.Decided"]:
    """(the scan positions of the used classes' files, the decisions applied to them)."""
    use = {i: r.name for i, r in enumerate(rows) if not r.excluded}
    picked = [k for k, s in enumerate(index.samples) if s.label in use]
    paths = [index.samples[k].path for k in picked]
    names = [use[index.samples[k].label] for k in picked]
    every = _keys(index)
    return picked, rules.apply_decisions(paths, names, data_cfg, set(use.values()), [every[k] for k in picked])


def decision_warnings(index, data_cfg) -> list[str]:
    """What the Data step says about the file decisions: relabels to a class that is not a
    training class (the run refuses them). Decisions about files outside the training folders
    may concern the validation or test folders, which the run checks."""
    if index is None or not rules.has_decisions(data_cfg):
        return []
    _files, decided = decided_files(index, data_cfg)
    if not decided.unknown:
        return []
    names = sorted(effective_counts(index, data_cfg))
    return [f"data.relabel: {rules.unknown_class_message(decided.unknown, names)}"]


def decisions_summary(index, data_cfg) -> str:
    """One line: how many training files the decisions leave out and move ("" without decisions)."""
    if index is None or not rules.has_decisions(data_cfg):
        return ""
    _files, decided = decided_files(index, data_cfg)
    return (f"{len(decided.excluded):,} image(s) left out and {len(decided.relabelled):,} given another class "
            f"by your decisions (the files stay where they are).")


def effective_index(index, data_cfg):
    """A DatasetIndex of what will train, to reuse the engine's own warnings."""
    from transfer_gui.engine.scan import DatasetIndex, Sample

    rows = _scanned_rows(index, data_cfg, examples=0)
    names = sorted({r.name for r in rows if not r.excluded})
    label_of = {name: i for i, name in enumerate(names)}
    if rules.has_decisions(data_cfg):
        samples = [Sample(path, label_of[name]) for path, name in decided_files(index, data_cfg)[0]]
    else:
        mapping = {i: label_of[r.name] for i, r in enumerate(rows) if not r.excluded}
        samples = [Sample(s.path, mapping[s.label]) for s in index.samples if s.label in mapping]
    return DatasetIndex(names, samples, list(index.skipped), list(index.sources), index.seconds)


def imbalance(counts: dict[str, int]) -> dict | None:
    """The engine's imbalance rule on the Data step's counts (engine.rules.imbalance)."""
    return rules.imbalance(counts)


def split_counts(counts: dict[str, int], data_cfg) -> tuple[int, int]:
    """(training, validation) images: the engine's own stratified split rule (-1 validation
    images when they come from their own folders)."""
    from transfer_gui.engine.rules import split_counts as engine_split_counts

    return engine_split_counts(counts, data_cfg)


def split_sizes(counts: dict[str, int], data_cfg) -> tuple[int, int, int]:
    """(training, validation, test) images: the engine's own rule (-1 for a set that comes from
    its own folders, data.val_folders or data.test_folders)."""
    from transfer_gui.engine.rules import split_sizes as engine_split_sizes

    return engine_split_sizes(counts, data_cfg)


def split_text(counts: dict[str, int], data_cfg) -> str:
    """The Data step's totals line: classes, images and what the split does with them."""
    train, val, test = split_sizes(counts, data_cfg)
    parts = [f"{train:,} for training", f"{val:,} for validation" if val >= 0 else "validation from its own folder"]
    if test > 0:
        parts.append(f"{test:,} for test")
    elif test < 0:
        parts.append("test images from their own folder")
    return f"<b>{len(counts)} classes, {sum(counts.values()):,} images</b>: {', '.join(parts)}."


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    return max(1, -(-max(0, train_images) // max(1, batch_size)))
