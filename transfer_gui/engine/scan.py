"""Scan folders of images into a class index, and split it into train and validation.

Folder rules (what :func:`scan_sources` does with each folder it is given):

* A folder that directly holds image files, and has no sub-folders with images, is one
  **class**, named after the folder.
* A folder with no image files directly inside is a **parent**: each of its sub-folders is a
  class. Images in nested sub-folders of a class folder belong to that class.
* A folder with both loose images and sub-folders with images is ambiguous. Given alone it is
  a parent (one class could never train), and the loose images are skipped with the reason
  "image in a parent folder, not inside a class folder". Given together with other folders,
  it is a class and its sub-folders are just how its images are organised.
* Classes of the same name from several folders merge; ``rename_classes`` can merge more.
  Classes are sorted by name (plain ``sorted``, like torchvision's ``ImageFolder``) and a
  label is the index into that list.

Hidden files and folders, ``__MACOSX``, ``Thumbs.db`` and files without an image extension
are ignored silently; a file with no extension at all is an image when it starts like a DICOM
file (scanners often write them so). HEIC and DICOM files whose optional extra is not installed
are skipped with the one reason naming the extra, and :meth:`DatasetIndex.warnings` says it once.
Empty files, unreadable files and files that start like no image format (a text file named
``.jpg``: ``imageio.quick_check`` reads the first bytes of every file) are listed in
``DatasetIndex.skipped`` with a reason, so the Data step names them before training; with
``probe=True`` Pillow parses every header (slower; also finds impossible sizes). Folder
symlinks are followed, but each real folder is visited once, so symlink loops end.
"""

from __future__ import annotations

import collections
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from transfer_gui.engine.imageio import (IMAGE_EXTENSIONS, MISSING_EXTRA, has_dicom_magic, missing_extra, probe_image,
                                         quick_check)
from transfer_gui.engine.rules import val_count
from transfer_gui.errors import Cancelled, UserError

IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "thumbs.db", "desktop.ini", "@eaDir"})
LOOSE_IMAGE = "image in a parent folder, not inside a class folder"
_PROGRESS_INTERVAL_S = 0.05  # at most ~20 progress calls per second
_CANCEL_EVERY = 256  # files between cancel checks (also checked once per folder)

ProgressFn = Callable[[int, str], None]
CancelFn = Callable[[], bool]


class ScanError(UserError, ValueError):
    """The folders cannot give a dataset; the message names the folder and what to do."""


class ScanCancelled(Cancelled):
    """``cancel()`` returned True during a scan."""


@dataclass(frozen=True)
class Sample:
    path: str
    label: int


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class DatasetIndex:
    """The result of a scan: class names, labelled files and what was left out and why."""

    classes: list[str]
    samples: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """Number of samples per class name, in label order (classes with none give 0)."""
        per_label = collections.Counter(s.label for s in self.samples)
        return {name: per_label.get(i, 0) for i, name in enumerate(self.classes)}

    def warnings(self, min_per_class: int = 10, with_imbalance: bool = True) -> list[str]:
        """Human-readable problems worth showing before training starts. The imbalance is the
        rulebook's (``rules.imbalance``: more than 3x); ``with_imbalance=False`` leaves it to a view
        that shows it with its fix (the Data step's balance box)."""
        from transfer_gui.engine.rules import imbalance

        messages: list[str] = []
        counts = self.counts()
        for name, n in counts.items():
            if n < min_per_class:
                messages.append(
                    f"Class '{name}' has only {n} image{'s' if n != 1 else ''}; "
                    f"at least {min_per_class} per class are recommended."
                )
        found = imbalance(counts) if with_imbalance else None
        if found:
            messages.append(found["advice"])
        messages.extend(skipped_summary(self.skipped))
        return messages

    def subset(self, indices: Iterable[int]) -> DatasetIndex:
        """The same classes with only the samples at ``indices`` (e.g. one split)."""
        picked = [self.samples[i] for i in indices]
        return DatasetIndex(list(self.classes), picked, list(self.skipped),
                            list(self.sources), self.seconds)

    def to_json(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict (compact: samples are [path, label] pairs)."""
        return {
            "version": 1,
            "classes": list(self.classes),
            "samples": [[s.path, s.label] for s in self.samples],
            "skipped": [[s.path, s.reason] for s in self.skipped],
            "sources": list(self.sources),
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DatasetIndex:
        """Inverse of :meth:`to_json`; raises ``ValueError`` on malformed data."""
        try:
            if data.get("version", 1) != 1:
                raise ValueError(f"unsupported dataset index version {data.get('version')!r}")
            classes = [str(c) for c in data["classes"]]
            samples = [Sample(str(p), int(lbl)) for p, lbl in data["samples"]]
            skipped = [Skipped(str(p), str(r)) for p, r in data.get("skipped", [])]
            sources = [str(s) for s in data.get("sources", [])]
            seconds = float(data.get("seconds", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed dataset index: {exc}") from None
        bad = [s.label for s in samples if not 0 <= s.label < len(classes)]
        if bad:
            raise ValueError(f"malformed dataset index: label {bad[0]} out of range")
        return cls(classes, samples, skipped, sources, seconds)


def skipped_summary(skipped: Sequence[Skipped]) -> list[str]:
    """The skipped files in a few lines: one per missing extra (which to install), then the
    other reasons, the three commonest with their counts."""
    reasons = collections.Counter(s.reason for s in skipped)
    lines = []
    for reason, (extra, kind) in MISSING_EXTRA.items():
        n = reasons.pop(reason, 0)
        if n:
            lines.append(f"{n} {kind} file{'s' if n != 1 else ''} skipped: reading them needs the optional "
                         f"'{extra}' extra: pip install 'transfer-gui[{extra}]'")
    if reasons:
        top = ", ".join(f"{n} {r}" for r, n in reasons.most_common(3))
        more = ", ..." if len(reasons) > 3 else ""
        n = sum(reasons.values())
        other = " other" if lines else ""
        lines.append(f"{n}{other} file{'s' if n != 1 else ''} skipped ({top}{more}).")
    return lines


def is_image_name(name: str, path: str) -> bool:
    """An image extension, or no extension and a DICOM preamble."""
    ext = os.path.splitext(name)[1].lower()
    return ext in IMAGE_EXTENSIONS or (not ext and has_dicom_magic(path))


class _Scanner:
    """State for one scan: visited folders, skipped files, progress and cancel."""

    def __init__(self, progress: ProgressFn | None, cancel: CancelFn | None, probe: bool):
        self.progress, self.cancel, self.probe = progress, cancel, probe
        self.visited: set[tuple[int, int]] = set()
        self.skipped: list[Skipped] = []
        self.found = 0
        self._last_report = 0.0
        self._since_cancel_check = 0

    def tick(self, where: str, force: bool = False) -> None:
        self._since_cancel_check += 1
        if force or self._since_cancel_check >= _CANCEL_EVERY:
            self._since_cancel_check = 0
            if self.cancel is not None and self.cancel():
                raise ScanCancelled("scan cancelled")
            now = time.monotonic()
            if self.progress is not None and now - self._last_report >= _PROGRESS_INTERVAL_S:
                self._last_report = now
                self.progress(self.found, f"Scanning {where}: {self.found} images found")

    def first_visit(self, path: str) -> bool:
        """True the first time a real folder is seen (guards symlink loops and repeats)."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        key = (st.st_dev, st.st_ino)
        if key in self.visited:
            return False
        self.visited.add(key)
        return True

    def list_dir(self, path: str) -> tuple[list[os.DirEntry[str]], list[os.DirEntry[str]]]:
        """(sub-folders, image-extension files) directly in ``path``, hidden names dropped."""
        self.tick(path, force=True)
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            self.skipped.append(Skipped(path, "permission denied"))
            return [], []
        except OSError as exc:
            self.skipped.append(Skipped(path, f"cannot read folder ({exc.strerror or exc})"))
            return [], []
        dirs, images = [], []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name in IGNORED_NAMES:
                continue
            try:
                if entry.is_dir():
                    dirs.append(entry)
                elif is_image_name(name, entry.path):
                    if entry.is_file():
                        images.append(entry)
                    elif entry.is_symlink():
                        self.skipped.append(Skipped(entry.path, "broken symbolic link"))
            except OSError:
                self.skipped.append(Skipped(entry.path, "permission denied"))
        return dirs, images

    def accept(self, entry: os.DirEntry[str]) -> bool:
        """Check one image-extension file; record why it is skipped if it is."""
        self.tick(entry.path)
        path = entry.path
        reason = missing_extra(path)  # the same reason with or without probing
        if reason is None:
            reason = probe_image(path) if self.probe else quick_check(path)
        if reason is not None:
            self.skipped.append(Skipped(path, reason))
            return False
        self.found += 1
        return True

    def walk(self, top: str, files: list[os.DirEntry[str]] | None = None) -> list[str]:
        """All usable images under ``top`` (recursively); ``files`` = its direct images."""
        if files is None:
            if not self.first_visit(top):
                self.skipped.append(Skipped(top, "same folder as one already scanned (link)"))
                return []
            dirs, files = self.list_dir(top)
        else:
            dirs = []
        found = [e.path for e in files if self.accept(e)]
        stack = [d.path for d in reversed(dirs)]
        while stack:
            folder = stack.pop()
            if not self.first_visit(folder):
                continue
            sub_dirs, sub_files = self.list_dir(folder)
            found.extend(e.path for e in sub_files if self.accept(e))
            stack.extend(d.path for d in reversed(sub_dirs))
        return found


def _check_folder(path: str) -> None:
    if not os.path.exists(path):
        raise ScanError(f"The folder '{path}' does not exist. Check the path or choose it again.")
    if not os.path.isdir(path):
        raise ScanError(
            f"'{path}' is a file, not a folder. Choose the folder that holds one sub-folder "
            f"of images per class (for example '{os.path.dirname(path)}')."
        )


def _scan_one(folder: str, alone: bool, sc: _Scanner) -> dict[str, list[str]]:
    """Classes (name -> image paths) found in one given folder."""
    if not sc.first_visit(folder):
        return {}
    dirs, loose = sc.list_dir(folder)
    if not dirs and not loose and not os.access(folder, os.R_OK | os.X_OK):
        raise ScanError(f"Cannot read the folder '{folder}' (permission denied).")
    sub = {d.name: sc.walk(d.path) for d in dirs}
    name = os.path.basename(os.path.normpath(folder)) or folder
    if loose and (not alone or not any(sub.values())):
        own = sc.walk(folder, files=loose)
        for paths in sub.values():
            own.extend(paths)
        return {name: own} if own else {}
    for entry in loose:  # a parent: loose images are not in any class
        sc.skipped.append(Skipped(entry.path, LOOSE_IMAGE))
    classes: dict[str, list[str]] = {}
    for d in dirs:
        if sub[d.name]:
            classes[d.name] = sub[d.name]
        elif not any(s.path == d.path or s.path.startswith(d.path + os.sep) for s in sc.skipped):
            sc.skipped.append(Skipped(d.path, "empty class folder"))
    return classes


def _checked_sources(folders, rename_classes: Mapping[str, str] | None) -> tuple[list[str], dict[str, str]]:
    """(absolute source folders without repeats, renames), refusing what cannot be scanned."""
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    sources = list(dict.fromkeys(os.path.abspath(os.fspath(f)) for f in folders))
    if not sources:
        raise ScanError("No folders given. Choose a folder with one sub-folder of images per class.")
    renames = dict(rename_classes or {})
    for old, new in renames.items():
        if not str(new).strip():
            raise ScanError(f"Class '{old}' cannot be renamed to an empty name.")
    for src in sources:
        _check_folder(src)
    return sources, renames


def scan_sources(
    folders: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    exclude_classes: Iterable[str] = (),
    rename_classes: Mapping[str, str] | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    probe: bool = False,
    min_classes: int = 2,
) -> DatasetIndex:
    """Scan ``folders`` (see the module docstring for the rules) into a :class:`DatasetIndex`.

    ``exclude_classes`` drops classes by original or renamed name. ``progress(done, message)``
    is called at most ~20 times a second; ``cancel()`` returning True raises
    :class:`ScanCancelled`. ``probe=True`` parses each image's header (about 5x slower;
    the default reads each file's first bytes, which finds non-images and empty files). Raises :class:`ScanError` for missing folders, files given as folders, no
    images, or fewer than ``min_classes`` classes (a validation folder may hold just one).
    """
    start = time.monotonic()
    sources, renames = _checked_sources(folders, rename_classes)
    excluded = set(exclude_classes)
    sc = _Scanner(progress, cancel, probe)
    merged: dict[str, list[str]] = collections.defaultdict(list)
    for src in sources:
        found = _scan_one(src, alone=len(sources) == 1, sc=sc)
        if not found and len(sources) > 1:
            sc.skipped.append(Skipped(src, "no images found in this folder"))
        for name, paths in found.items():
            new = renames.get(name, name)
            if name in excluded or new in excluded:
                continue
            merged[new].extend(paths)
    where = "', '".join(sources)
    if not merged:
        if sc.found:
            raise ScanError(f"Every class in '{where}' is excluded; keep at least two classes.")
        raise ScanError(
            f"No images found in '{where}'. Put each class's images (.jpg, .png, ...) in its "
            f"own sub-folder of '{sources[0]}'."
        )
    if len(merged) < min_classes:
        only = next(iter(merged))
        raise ScanError(
            f"Only one class ('{only}') found in '{where}': training needs at least two "
            f"classes; put each class's images in its own sub-folder of '{sources[0]}'."
        )
    classes = sorted(merged)
    samples = [Sample(p, label) for label, name in enumerate(classes)
               for p in sorted(set(merged[name]))]
    if progress is not None:
        progress(len(samples), f"Found {len(samples)} images in {len(classes)} classes")
    return DatasetIndex(classes, samples, sc.skipped, sources, time.monotonic() - start)


def stratified_split(index: DatasetIndex, val_fraction: float, seed: int
                     ) -> tuple[list[int], list[int]]:
    """Deterministic per-class split into (train, val) indices into ``index.samples``.

    Each class is shuffled by its own ``random.Random`` seeded from ``seed`` and the class
    name, so adding a class does not reshuffle the others. A class with at least two images
    gets at least one validation image when ``val_fraction > 0`` and always keeps one for
    training.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_label: dict[int, list[int]] = collections.defaultdict(list)
    for i, s in enumerate(index.samples):
        by_label[s.label].append(i)
    train: list[int] = []
    val: list[int] = []
    for label, members in sorted(by_label.items()):
        name = index.classes[label] if 0 <= label < len(index.classes) else str(label)
        rng = random.Random(f"{seed}:{name}")
        order = list(members)
        rng.shuffle(order)
        n_val = val_count(len(order), val_fraction)
        val.extend(order[:n_val])
        train.extend(order[n_val:])
    return sorted(train), sorted(val)
