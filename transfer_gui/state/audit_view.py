"""What the "Check data" view knows, in plain Python (no Qt): the audit's findings
(an ``engine.audit.AuditResult``), the user's decisions on them and their undo stack.

Decisions never touch the user's files. *Exclude* puts the image's absolute path into
``data.exclude_files``; *move to class X* sets ``data.relabel[path] = X``; both go through
:meth:`Project.update`, so the project becomes unsaved like after any other change and the next
run uses them. *Keep* is remembered here only (not in the config): a kept finding shows
"Kept" until the check runs again, and is then no longer listed this session.

An image is either excluded or moved, never both: each decision replaces the image's earlier
one, and undo puts back exactly what that image had before (other images' decisions, made
meanwhile here or elsewhere, stay as they are).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer_gui.state.signals import Signal

NEIGHBOURS = 3  # nearest images shown of the given and of the suggested class


def label_key(path: str) -> tuple[str, ...]:
    return ("label", path)


def outlier_key(path: str) -> tuple[str, ...]:
    return ("outlier", path)


def pair_key(a: str, b: str) -> tuple[str, ...]:
    return ("pair", *sorted((a, b)))


@dataclass(frozen=True)
class PathState:
    """One image's decision as the config holds it."""

    excluded: bool = False
    moved_to: str | None = None

    def text(self) -> str:
        if self.excluded:
            return "Excluded from training"
        if self.moved_to is not None:
            return f"Moved to {self.moved_to}"
        return ""


@dataclass
class Step:
    """One decision on the undo stack: what it did and what it replaced."""

    action: str  # "exclude", "move", "keep"
    path: str  # the image (for keep: the finding's first path, for the wording)
    before: PathState | None = None  # the image's state before (exclude, move)
    key: tuple[str, ...] | None = None  # the kept finding (keep)
    target: str = ""  # the class of a move

    def text(self) -> str:
        name = Path(self.path).name
        if self.action == "exclude":
            return f"exclude {name}"
        if self.action == "move":
            return f"move {name} to {self.target}"
        return f"keep {name}"


@dataclass
class Counts:
    label_issues: int = 0
    duplicates: int = 0  # pairs of kind "duplicate" or "near"
    leaks: int = 0  # pairs of kind "leak"
    outliers: int = 0
    hidden: int = 0  # findings kept earlier this session, not listed again
    by_kind: dict[str, int] = field(default_factory=dict)


class AuditView:
    def __init__(self, project) -> None:
        self.project = project
        self.changed = Signal()  # a new result, a decision or an undo
        self.result = None
        self.kept: set[tuple[str, ...]] = set()  # findings kept this session
        self.hidden: set[tuple[str, ...]] = set()  # kept before the shown result came
        self.history: list[Step] = []
        project.config_changed.connect(self._config_changed)

    def _config_changed(self, keys: set) -> None:
        if "" in keys:  # another project (new or opened): its findings and decisions are not these
            self.reset()

    def reset(self) -> None:
        self.result = None
        self.kept, self.hidden, self.history = set(), set(), []
        self.changed.emit()

    # ------------------------------------------------------------------ findings
    def set_result(self, result) -> None:
        self.result = result
        self.hidden = set(self.kept)
        self.changed.emit()

    def clear(self) -> None:
        self.result = None
        self.changed.emit()

    def label_issues(self) -> list:
        r = self.result
        return [] if r is None else [i for i in r.label_issues if label_key(i.path) not in self.hidden]

    def duplicates(self) -> list:
        r = self.result
        return [] if r is None else [d for d in r.duplicates if pair_key(d.a, d.b) not in self.hidden]

    def outliers(self) -> list:
        r = self.result
        return [] if r is None else [o for o in r.outliers if outlier_key(o.path) not in self.hidden]

    def counts(self) -> Counts:
        pairs = self.duplicates()
        by_kind: dict[str, int] = {}
        for d in pairs:
            by_kind[d.kind] = by_kind.get(d.kind, 0) + 1
        shown = len(self.label_issues()) + len(pairs) + len(self.outliers())
        total = 0 if self.result is None else (len(self.result.label_issues) + len(self.result.duplicates)
                                               + len(self.result.outliers))
        return Counts(label_issues=len(self.label_issues()), duplicates=len(pairs) - by_kind.get("leak", 0),
                      leaks=by_kind.get("leak", 0), outliers=len(self.outliers()), hidden=total - shown,
                      by_kind=by_kind)

    def classes(self) -> list[str]:
        """The classes an image may be moved to: the training classes the audit saw."""
        return sorted(self.result.class_counts) if self.result is not None else []

    def neighbours(self, issue, k: int = NEIGHBOURS) -> tuple[list[str], list[str]]:
        """The k images nearest to a suspect in its given class and in the suggested class."""
        return neighbours_of(self.result, issue, k)

    # ------------------------------------------------------------------ the config's side
    @staticmethod
    def norm(path: str) -> str:
        """A path as the window stores it: absolute (a relative one is taken from the working
        directory, as the config does for data.folders and data.exclude_files)."""
        return os.path.normpath(os.path.abspath(path))

    def _decisions(self) -> tuple[list[str], dict[str, str]]:
        d = self.project.cfg.data
        return list(getattr(d, "exclude_files", ())), dict(getattr(d, "relabel", {}) or {})

    def state(self, path: str) -> PathState:
        excluded, relabel = self._decisions()
        target = self.norm(path)
        if any(self.norm(p) == target for p in excluded):
            return PathState(excluded=True)
        moved = next((c for p, c in relabel.items() if self.norm(p) == target), None)
        return PathState(moved_to=moved)

    def _apply(self, path: str, new: PathState) -> bool:
        """Give one image the state ``new`` in the config; False (and no change) when refused."""
        excluded, relabel = self._decisions()
        target = self.norm(path)
        excluded = [p for p in excluded if self.norm(p) != target]
        relabel = {p: c for p, c in relabel.items() if self.norm(p) != target}
        if new.excluded:
            excluded.append(target)
        elif new.moved_to is not None:
            relabel[target] = new.moved_to
        return self.project.update({"data.exclude_files": excluded, "data.relabel": relabel})

    # ------------------------------------------------------------------ decisions
    def exclude(self, path: str) -> bool:
        return self._decide(Step("exclude", path, before=self.state(path)), PathState(excluded=True))

    def move(self, path: str, class_name: str) -> bool:
        return self._decide(Step("move", path, before=self.state(path), target=class_name),
                            PathState(moved_to=class_name))

    def _decide(self, step: Step, new: PathState) -> bool:
        if step.before == new:
            return True
        if not self._apply(step.path, new):
            return False
        self.history.append(step)
        self.changed.emit()
        return True

    def keep(self, key: tuple[str, ...]) -> None:
        if key in self.kept:
            return
        self.kept.add(key)
        self.history.append(Step("keep", key[1], key=key))
        self.changed.emit()

    def is_kept(self, key: tuple[str, ...]) -> bool:
        return key in self.kept

    def undo_text(self) -> str:
        return f"Undo {self.history[-1].text()}" if self.history else ""

    def undo(self) -> Step | None:
        """Revert the last decision; returns it (None when there is nothing to undo)."""
        if not self.history:
            return None
        step = self.history[-1]
        if step.action == "keep":
            self.kept.discard(step.key)
            self.hidden.discard(step.key)
        elif not self._apply(step.path, step.before or PathState()):
            return None
        self.history.pop()
        self.changed.emit()
        return step


def neighbours_of(result: Any, issue: Any, k: int = NEIGHBOURS) -> tuple[list[str], list[str]]:
    """The k images nearest to a suspect in its given and in its suggested class (safe to call
    on a worker thread: it only reads the result)."""
    return (list(result.neighbours(issue.path, issue.given, k)),
            list(result.neighbours(issue.path, issue.suggested, k)))


def summary(result: Any, counts: Counts) -> str:
    """One line about a check: what it found, in how many images, how long it took."""
    n = sum(result.class_counts.values())
    parts = [f"{counts.label_issues} possible label error(s)", f"{counts.duplicates} duplicate pair(s)",
             f"{counts.leaks} leak(s) between sets", f"{counts.outliers} outlier(s)"]
    text = f"{', '.join(parts)} among {n:,} training images ({result.seconds:.1f} s)."
    if counts.hidden:
        text += f" {counts.hidden} finding(s) kept earlier are not listed again."
    return text


def imbalance_text(result: Any) -> str:
    """The audit's class-count warning in the engine's own words (engine/rules.py imbalance: the
    rule and the advice are the engine's), or '' when the classes are balanced enough."""
    info = getattr(result, "imbalance", None)
    if not info:
        return ""
    advice = str(info.get("advice", "")).strip()
    return advice or (f"{info['largest']} has {float(info['ratio']):.1f}× the training images of "
                      f"{info['smallest']}.")
