"""What the Data step shows, computed from a raw scan (no renames, no exclusions) and the
config, so renaming or dropping a class never needs a rescan. Plain Python, no Qt."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field


@dataclass
class ClassRow:
    original: str  # folder name as scanned
    name: str  # after data.rename_classes
    count: int
    excluded: bool
    examples: list[str] = field(default_factory=list)  # a few image paths


def class_rows(index, data_cfg, examples: int = 4) -> list[ClassRow]:
    """One row per scanned class folder name."""
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
    """Images per class the run will train on (renamed, merged, without excluded), sorted by name."""
    counts: dict[str, int] = collections.Counter()
    for row in class_rows(index, data_cfg, examples=0):
        if not row.excluded:
            counts[row.name] += row.count
    return {name: counts[name] for name in sorted(counts)}


def effective_index(index, data_cfg):
    """A DatasetIndex of what will train, to reuse the engine's own warnings."""
    from transfer_gui.engine.scan import DatasetIndex, Sample

    rows = class_rows(index, data_cfg, examples=0)
    names = sorted({r.name for r in rows if not r.excluded})
    label_of = {name: i for i, name in enumerate(names)}
    mapping = {i: label_of[r.name] for i, r in enumerate(rows) if not r.excluded}
    samples = [Sample(s.path, mapping[s.label]) for s in index.samples if s.label in mapping]
    return DatasetIndex(names, samples, list(index.skipped), list(index.sources), index.seconds)


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
