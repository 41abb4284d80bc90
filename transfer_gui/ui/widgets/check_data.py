"""The Data step's "Check data" view: the engine's audit (engine/audit.py) run in the background
with progress and Cancel, and its findings in three tabs — possible label errors (each suspect
beside the nearest images of its given and of its suggested class, with the reason), duplicates
and leaks (the two images side by side) and outliers — with the class-count warning above.

Every finding has its actions: *exclude*, *move to class X*, *keep*; Undo (the button or Ctrl+Z)
reverts the last one. The user's files are never touched: the decisions go into the project
(``data.exclude_files``, ``data.relabel``) through ``state/audit_view.py``, and the next run uses
them. Thumbnails and neighbours are read on a worker thread; torch loads only in the audit's job.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (QDialog, QFrame, QGridLayout, QHBoxLayout, QLabel, QMenu, QProgressBar, QPushButton,
                               QScrollArea, QTabWidget, QToolButton, QVBoxLayout, QWidget)

from transfer_gui.state.audit_view import (AuditView, PathState, imbalance_text, label_key, neighbours_of, outlier_key,
                                           pair_key, summary)
from transfer_gui.state.run_monitor import fmt_duration
from transfer_gui.ui import access
from transfer_gui.ui.context import Context
from transfer_gui.ui.theme import status_colors
from transfer_gui.ui.widgets.thumbnails import read_thumbnail, strip

TILE = 96  # the image a finding is about
SMALL = 56  # its nearest neighbours
MAX_ROWS = 60  # findings listed per tab (most suspicious first)
STALE_KEYS = ("data.folders", "data.val_folders", "data.test_folders", "data.val_fraction", "data.test_fraction",
              "data.rename_classes", "data.exclude_classes", "data.image_size", "model.")
DECISION_KEYS = ("data.exclude_files", "data.relabel")
PHASES = {"scan": "Scanning image folders", "features": "Features of every image", "download": "Downloading weights",
          "audit_folds": "Out-of-fold predictions", "audit_search": "Comparing images"}
KIND_WORDS = {"duplicate": "Duplicate", "near": "Near duplicate", "leak": "Leak between sets"}
INTRO = ("Looks for images that may be in the wrong class folder (out-of-fold predictions of a head fitted on the "
         "model's frozen features, ranked by confident learning), duplicates and leaks between training, validation "
         "and test, and images far from every class. Your files are never moved or deleted: a decision is stored in "
         "the project and the next run uses it.")


class PhaseEta:
    """The time left in the check's current phase, from that phase's own rate so far: the phases
    (features, folds, comparing) run at very different speeds, so one rate for all would mislead.
    A phase is timed from the event before its first count (:meth:`mark`, e.g. its announcement),
    so a slow phase whose first count is already a batch of images has an estimate at once. No
    estimate until the phase has run for ``settle`` seconds and moved."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, settle: float = 1.0):
        self.clock, self.settle = clock, settle
        self.phase: str | None = None
        self.t0, self.done0 = 0.0, 0
        self.marked: float | None = None

    def mark(self) -> None:
        """Something else happened (a phase announced): a new phase's count starts from here."""
        self.marked = self.clock()

    def seconds_left(self, phase: str, done: int, total: int) -> float | None:
        now = self.clock()
        if phase != self.phase or done < self.done0:
            self.phase = phase
            self.t0, self.done0 = (self.marked, 0) if self.marked is not None else (now, done)
            self.marked = None
        elapsed, moved = now - self.t0, done - self.done0
        if moved <= 0 or elapsed < self.settle:
            return None
        return max(0.0, (total - done) * elapsed / moved)


def audit_job(task, cfg):
    """Worker thread: the engine's audit, progress as its events, stopped by the task's cancel."""
    from transfer_gui.engine.audit import audit

    return audit(cfg, on_event=task.report, cancel=lambda: task.cancelled)


def images_job(task, result, issues: list, paths: list[str]) -> dict:
    """Worker thread: each suspect's neighbours, then the thumbnails of every image shown, reported
    a few at a time as {"neighbours": {path: (given, suggested)}, "thumbs": {(path, box): QImage}}."""
    found: dict = {}
    for issue in issues:
        if task.cancelled:
            return {}
        try:
            found[issue.path] = neighbours_of(result, issue)
        except (KeyError, ValueError):  # an image the audit did not see: no neighbours to show
            found[issue.path] = ([], [])
    task.report({"neighbours": found, "thumbs": {}}, force=True)
    wanted = [(p, TILE) for p in dict.fromkeys(paths)]
    wanted += [(p, SMALL) for pair in found.values() for p in dict.fromkeys(pair[0] + pair[1])]
    chunk: dict = {}
    for i, (path, box) in enumerate(wanted):
        if task.cancelled:
            break
        chunk[(path, box)] = read_thumbnail(path, box)
        if len(chunk) >= 12 or i == len(wanted) - 1:
            task.report({"neighbours": {}, "thumbs": chunk}, force=True)
            chunk = {}
    return {"neighbours": {}, "thumbs": chunk}


def _image_label(tip: str) -> QLabel:
    label = QLabel()
    label.setFixedSize(TILE, TILE)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setFrameShape(QFrame.Shape.StyledPanel)
    label.setToolTip(tip)
    return label


def _button(text: str, tip: str, slot) -> QPushButton:
    b = QPushButton(text)
    b.setToolTip(tip)
    b.clicked.connect(slot)
    return b


class FindingRow(QFrame):
    """One finding: its image(s), what was found, its decision and its action buttons."""

    def __init__(self, dialog: "CheckDataDialog", key: tuple[str, ...]):
        super().__init__()
        self.dialog, self.view, self.key = dialog, dialog.view, key
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.images: dict[str, QLabel] = {}  # path -> its big thumbnail
        self.decision = QLabel()
        self.decision.setToolTip("What you decided for this finding (Undo reverts the last decision).")
        self.keep_btn = _button("Keep", "Nothing is wrong here: keep it as it is. Not stored in the project; the "
                                "finding is not listed again when you check again.", lambda: self.view.keep(self.key))

    def paths(self) -> list[str]:
        return list(self.images)

    def show_thumbs(self, thumbs: dict) -> None:
        for path, label in self.images.items():
            img = thumbs.get((path, TILE))
            if img is not None:
                label.setPixmap(QPixmap.fromImage(img))

    def refresh(self) -> None:
        states = {p: self.view.state(p) for p in self.images}
        words = [f"{Path(p).name}: {s.text()}" if len(states) > 1 else s.text() for p, s in states.items() if s.text()]
        kept = self.view.is_kept(self.key)
        if kept:
            words.append("Kept")
        self.decision.setText(f"<b>{html.escape('; '.join(words))}</b>" if words else "")
        self.keep_btn.setEnabled(not kept)
        self._enable(states)

    def _enable(self, states: dict[str, PathState]) -> None:  # the rows' own buttons
        pass


class SuspectRow(FindingRow):
    """A possible label error: the image, given → suggested class, score and reason, the nearest
    images of both classes, and Exclude / Move to <suggested> / Move to… / Keep."""

    def __init__(self, dialog: "CheckDataDialog", issue):
        super().__init__(dialog, label_key(issue.path))
        self.issue = issue
        self.images[issue.path] = _image_label(issue.path)
        self.text = text = QLabel(f"<b>{html.escape(Path(issue.path).name)}</b> in <b>{html.escape(issue.given)}</b>, "
                                  f"looks like <b>{html.escape(issue.suggested)}</b> (score {issue.score:.2f})<br>"
                                  f"{html.escape(issue.reason)}")
        text.setWordWrap(True)
        text.setToolTip(issue.path)
        self.near_given, self.near_suggested = QLabel(), QLabel()
        self.near_given.setToolTip(f"The images of {issue.given} nearest to this one (the model's features).")
        self.near_suggested.setToolTip(f"The images of {issue.suggested} nearest to this one.")
        grid = QGridLayout()
        for r, (caption, label) in enumerate(((f"Nearest in {issue.given}:", self.near_given),
                                              (f"Nearest in {issue.suggested}:", self.near_suggested))):
            grid.addWidget(QLabel(caption), r, 0)
            grid.addWidget(label, r, 1)
        grid.setColumnStretch(2, 1)
        middle = QVBoxLayout()
        middle.addWidget(text)
        middle.addLayout(grid)
        middle.addWidget(self.decision)
        lay = QHBoxLayout(self)
        lay.addWidget(self.images[issue.path])
        lay.addLayout(middle, 1)
        lay.addLayout(self._buttons())
        self.refresh()

    def _buttons(self) -> QVBoxLayout:
        i = self.issue
        self.exclude_btn = _button("Exclude", "Leave this image out of training, validation and test "
                                   "(data.exclude_files). The file stays where it is.",
                                   lambda: self.view.exclude(i.path))
        self.move_btn = _button(f"Move to {i.suggested}", f"Train with this image as {i.suggested} "
                                f"(data.relabel). The file stays where it is.",
                                lambda: self.view.move(i.path, i.suggested))
        self.other_btn = QToolButton()
        self.other_btn.setText("Move to…")
        self.other_btn.setToolTip("Train with this image as another class of your choice (data.relabel).")
        self.other_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.other_btn)
        for name in self.view.classes():
            if name not in (i.given, i.suggested):
                menu.addAction(name, lambda n=name: self.view.move(i.path, n))
        self.other_btn.setMenu(menu)
        self.other_btn.setEnabled(not menu.isEmpty())
        col = QVBoxLayout()
        for b in (self.exclude_btn, self.move_btn, self.other_btn, self.keep_btn):
            col.addWidget(b)
        col.addStretch(1)
        return col

    def _enable(self, states: dict[str, PathState]) -> None:
        s = states[self.issue.path]
        self.exclude_btn.setEnabled(not s.excluded)
        self.move_btn.setEnabled(s.moved_to != self.issue.suggested)

    def show_neighbours(self, given: list[str], suggested: list[str], thumbs: dict) -> None:
        for label, paths in ((self.near_given, given), (self.near_suggested, suggested)):
            label.setProperty("paths", paths)
            images: list[QImage | None] = [thumbs.get((p, SMALL)) for p in paths]
            if paths:
                label.setPixmap(strip(images, SMALL))
            else:
                label.setText("(none)")
            label.setToolTip("\n".join(paths) or label.toolTip())


class PairRow(FindingRow):
    """Two images that are (nearly) the same, side by side, each with its own Exclude."""

    def __init__(self, dialog: "CheckDataDialog", pair):
        super().__init__(dialog, pair_key(pair.a, pair.b))
        self.pair = pair
        self.exclude_btns: dict[str, QPushButton] = {}
        lay = QHBoxLayout(self)
        for path in (pair.a, pair.b):
            self.images[path] = _image_label(path)
            lay.addWidget(self._image_column(path))
        self.text = text = QLabel(f"<b>{KIND_WORDS.get(pair.kind, pair.kind)}</b>, similarity "
                                  f"{pair.similarity:.3f}<br>{html.escape(pair.reason)}")
        text.setWordWrap(True)
        middle = QVBoxLayout()
        middle.addWidget(text)
        middle.addWidget(self.decision)
        keep = QHBoxLayout()
        keep.addWidget(self.keep_btn)
        keep.addStretch(1)
        middle.addLayout(keep)
        middle.addStretch(1)
        lay.addLayout(middle, 1)
        self.refresh()

    def _image_column(self, path: str) -> QWidget:
        """The image, its class folder and name (elided to the image's width) and its Exclude."""
        column = QWidget()
        column.setFixedWidth(TILE + 40)
        col = QVBoxLayout(column)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(self.images[path], 0, Qt.AlignmentFlag.AlignHCenter)
        name = QLabel()
        name.setText(name.fontMetrics().elidedText(f"{Path(path).parent.name}/{Path(path).name}",
                                                   Qt.TextElideMode.ElideMiddle, TILE + 36))
        name.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        name.setToolTip(path)
        col.addWidget(name)
        btn = _button("Exclude", f"Leave {path} out of every set (data.exclude_files). The file stays where it is.",
                      lambda _=False, p=path: self.view.exclude(p))
        btn.setAccessibleName(f"Exclude {Path(path).name}")
        self.exclude_btns[path] = btn
        col.addWidget(btn)
        col.addStretch(1)
        return column

    def _enable(self, states: dict[str, PathState]) -> None:
        for path, btn in self.exclude_btns.items():
            btn.setEnabled(not states[path].excluded)


class OutlierRow(FindingRow):
    def __init__(self, dialog: "CheckDataDialog", outlier):
        super().__init__(dialog, outlier_key(outlier.path))
        self.outlier = outlier
        self.images[outlier.path] = _image_label(outlier.path)
        self.text = text = QLabel(f"<b>{html.escape(Path(outlier.path).name)}</b> (score {outlier.score:.2f})<br>"
                      f"{html.escape(outlier.reason)}")
        text.setWordWrap(True)
        text.setToolTip(outlier.path)
        self.exclude_btn = _button("Exclude", "Leave this image out of every set (data.exclude_files). The file "
                                   "stays where it is.", lambda: self.view.exclude(outlier.path))
        middle = QVBoxLayout()
        middle.addWidget(text)
        middle.addWidget(self.decision)
        buttons = QVBoxLayout()
        buttons.addWidget(self.exclude_btn)
        buttons.addWidget(self.keep_btn)
        buttons.addStretch(1)
        lay = QHBoxLayout(self)
        lay.addWidget(self.images[outlier.path])
        lay.addLayout(middle, 1)
        lay.addLayout(buttons)
        self.refresh()

    def _enable(self, states: dict[str, PathState]) -> None:
        self.exclude_btn.setEnabled(not states[self.outlier.path].excluded)


class Section(QScrollArea):
    """One tab: a column of finding rows, and a line when more were found than are listed."""

    def __init__(self, empty: str):
        super().__init__()
        self.empty = empty
        self.setWidgetResizable(True)
        self.rows: list[FindingRow] = []
        self.setToolTip("")

    def fill(self, rows: list[FindingRow], total: int) -> None:
        self.rows = rows
        body = QWidget()
        lay = QVBoxLayout(body)
        if not rows:
            lay.addWidget(QLabel(self.empty))
        for row in rows:
            lay.addWidget(row)
        if total > len(rows):
            lay.addWidget(QLabel(f"Showing the {len(rows)} most suspicious of {total}; decide on these and check "
                                 "again for the rest."))
        lay.addStretch(1)
        self.setWidget(body)


class CheckDataDialog(QDialog):
    def __init__(self, ctx: Context, view: AuditView, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx, self.view = ctx, view
        self.setWindowTitle("Check data")
        self.resize(980, 720)
        self.thumbs: dict = {}  # (path, box) -> QImage
        self.near: dict = {}  # suspect path -> (given, suggested) neighbour paths
        self.stale = False
        self._shown: tuple = (None, 0)  # the result the rows show, and how many kept findings it hides
        self._warnings: list[str] = []  # the last check's warnings
        lay = QVBoxLayout(self)
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        lay.addWidget(intro)
        lay.addLayout(self._build_run_row())
        lay.addWidget(self._build_messages())
        lay.addWidget(self._build_tabs(), 1)
        self.undo_shortcut = QShortcut(QKeySequence(QKeySequence.StandardKey.Undo), self)
        self.undo_shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.undo_shortcut.activated.connect(self.undo)
        view.changed.connect(self._decided)
        ctx.project.config_changed.connect(self._config_changed)
        self.set_running(False)
        self._show_result()

    # ------------------------------------------------------------------ layout
    def _build_run_row(self) -> QHBoxLayout:
        self.run_btn = _button("&Check now", "Run the check on the project's images with its model (the frozen "
                               "features are cached, so a second check is quick). Nothing is changed until you "
                               "decide.", self.start)
        self.cancel_btn = _button("Cancel", "Stop the check.", self.cancel)
        self.progress = QProgressBar()
        self.progress.setToolTip("Progress of the check's current phase, with the time it has left.")
        self.progress.setTextVisible(True)
        self.eta = PhaseEta()
        self._started = 0.0
        self.undo_btn = _button("&Undo", "Revert the last decision (Ctrl+Z).", self.undo)
        row = QHBoxLayout()
        row.addWidget(self.run_btn)
        row.addWidget(self.cancel_btn)
        row.addWidget(self.progress, 1)  # as wide as the row allows: its text is the phase and the time left
        row.addStretch(0)  # takes the room only while the bar is hidden
        row.addWidget(self.undo_btn)
        return row

    def _build_messages(self) -> QWidget:
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setToolTip("What the last check found.")
        self.imbalance = QLabel()
        self.imbalance.setWordWrap(True)
        self.imbalance.setToolTip("Training images per class: a much larger class pulls the model towards it. The "
                                  "Data step's options hold the fix (class weights or the balanced sampler).")
        self.weights_btn = _button("Weight the classes", "Turn on class weights in the loss (train.class_weights = "
                                   "\"balanced\"), the same fix as the Data step's Class balance box; compare the "
                                   "per-class recall of the next run with this one's on the Results step.",
                                   self._use_weights)
        box = QWidget()
        lay = QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.status)
        line = QHBoxLayout()
        line.addWidget(self.imbalance, 1)
        line.addWidget(self.weights_btn)
        lay.addLayout(line)
        return box

    def _use_weights(self) -> None:
        if self.ctx.project.set("train.class_weights", "balanced"):
            self.ctx.status("Class weights: balanced. The next run weighs the classes by their image counts.")

    def _build_tabs(self) -> QTabWidget:
        self.tabs = QTabWidget()
        self.labels_tab = Section("No image looks like it is in the wrong class.")
        self.pairs_tab = Section("No duplicates and no leaks between sets.")
        self.outliers_tab = Section("No image is far from every class.")
        for tab in (self.labels_tab, self.pairs_tab, self.outliers_tab):
            self.tabs.addTab(tab, "")
        self._tab_titles()
        return self.tabs

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        cfg = self.ctx.project.cfg
        if not cfg.data.folders:
            self._message("Add image folders on the Data step first.", "warn")
            return
        self.set_running(True)
        self._warnings = []
        self._started = time.monotonic()
        self.eta = PhaseEta()
        self._running_status("Starting")
        self.ctx.tasks.start("audit", audit_job, cfg, heavy=True, on_progress=self.show_progress,
                             on_done=self._done, on_error=self._failed)

    def cancel(self) -> None:
        self.ctx.tasks.cancel("audit")
        self.set_running(False)
        self._message("Check cancelled.", "muted")

    def set_running(self, running: bool) -> None:
        self.run_btn.setEnabled(not running)
        self.cancel_btn.setVisible(running)
        self.progress.setVisible(running)
        if running:
            self.progress.setRange(0, 0)
            self.progress.setFormat("Starting…")
        self._fit_bar_text()

    def _running_status(self, label: str) -> None:
        """The status line while the check runs: what it does now and for how long it has run."""
        elapsed = fmt_duration(time.monotonic() - self._started)
        self._message(f"Checking: {label} ({elapsed} so far). The findings come when the check ends; Cancel "
                      f"stops it.", "muted")

    def _fit_bar_text(self) -> None:
        """The bar at least as wide as its text, so that the phase and the time left are never cut."""
        text = self.progress.format().replace("%p", "100").replace("%v", "0").replace("%m", "0")
        self.progress.setMinimumWidth(self.progress.fontMetrics().horizontalAdvance(text) + 40)

    def running(self) -> bool:
        return self.ctx.tasks.running("audit")

    def show_progress(self, e: object) -> None:
        """The audit's events (engine.events.Progress and PhaseChanged) on the bar."""
        if not hasattr(e, "phase"):  # a Warning (a split's or the imbalance): said with the result
            self._warnings.append(str(getattr(e, "message", e)))
            return
        phase, done, total = getattr(e, "phase", ""), getattr(e, "done", None), getattr(e, "total", 0)
        label = getattr(e, "message", "") or PHASES.get(phase, phase)
        self._running_status(label)
        if done is None or not total:  # a new phase (its sentence), or no known end (scanning): a busy bar
            self.eta.mark()
            self.progress.setRange(0, 0)
            self.progress.setFormat(label)
            self._fit_bar_text()
            return
        self.progress.setRange(0, total)
        self.progress.setValue(min(done, total))
        counted = any(ch.isdigit() for ch in label)  # "Fold 2 of 5" says it already
        text = label if counted else f"{label}: {done:,} of {total:,}"
        left = self.eta.seconds_left(phase, done, total)
        self.progress.setFormat(text if left is None else f"{text}, about {fmt_duration(left)} left")
        self._fit_bar_text()

    def _done(self, result) -> None:
        self.set_running(False)
        self.stale = False
        self.view.set_result(result)  # redraws through _decided
        self.ctx.status(summary(result, self.view.counts()))

    def _failed(self, exc: BaseException) -> None:
        from transfer_gui.errors import Cancelled, UserError

        self.set_running(False)
        if isinstance(exc, Cancelled):
            self._message("Check cancelled.", "muted")
        elif isinstance(exc, UserError):
            self._message(str(exc), "error")
        else:
            self._message(f"The check failed: {type(exc).__name__}: {exc}", "error")

    def _message(self, text: str, kind: str) -> None:
        color = status_colors().get(kind, "")
        self.status.setText(f"<span style='color:{color}'>{html.escape(text)}</span>")

    # ------------------------------------------------------------------ showing
    def _show_result(self) -> None:
        v, r = self.view, self.view.result
        self._shown = (r, v.counts().hidden)
        self.thumbs, self.near = {}, {}
        self.labels_tab.fill([SuspectRow(self, i) for i in v.label_issues()[:MAX_ROWS]], len(v.label_issues()))
        self.pairs_tab.fill([PairRow(self, d) for d in v.duplicates()[:MAX_ROWS]], len(v.duplicates()))
        self.outliers_tab.fill([OutlierRow(self, o) for o in v.outliers()[:MAX_ROWS]], len(v.outliers()))
        self._tab_titles()
        self._show_texts()
        self._refresh()
        access.name_controls(self)
        self.ctx.tasks.cancel("audit-images")
        if r is None:
            return
        issues = [row.issue for row in self.labels_tab.rows]
        paths = [p for row in self.rows() for p in row.paths()]
        self.ctx.tasks.start("audit-images", images_job, r, issues, paths, on_progress=self._images,
                             on_done=self._images)

    def _show_texts(self) -> None:
        r = self.view.result
        if r is None:
            self.status.setText("Not checked yet: click “Check now”.")
            self.imbalance.setVisible(False)
            self.weights_btn.setVisible(False)
            return
        stale = " <i>The images or the model changed since: check again.</i>" if self.stale else ""
        advice = str((getattr(r, "imbalance", None) or {}).get("advice", ""))
        notes = [m for m in dict.fromkeys(self._warnings) if m != advice]  # the imbalance is said below
        muted = status_colors()["muted"]
        notes = "".join(f"<br><span style='color:{muted}'>{html.escape(m, quote=False)}</span>" for m in notes)
        self.status.setText(html.escape(summary(r, self.view.counts())) + stale + notes)
        warn = imbalance_text(r)
        self.imbalance.setVisible(bool(warn))
        cfg = self.ctx.project.cfg
        self.weights_btn.setVisible(bool(warn) and cfg.train.class_weights != "balanced"
                                    and not cfg.data.weighted_sampler)
        self.imbalance.setText(f"<span style='color:{status_colors()['warn']}'>⚠ {html.escape(warn)}</span>")

    def _tab_titles(self) -> None:
        c = self.view.counts()
        pairs = f"Duplicates && leaks ({c.duplicates + c.leaks})"
        for tab, title in ((self.labels_tab, f"&Label issues ({c.label_issues})"), (self.pairs_tab, pairs),
                           (self.outliers_tab, f"&Outliers ({c.outliers})")):
            self.tabs.setTabText(self.tabs.indexOf(tab), title)

    def rows(self) -> list[FindingRow]:
        return self.labels_tab.rows + self.pairs_tab.rows + self.outliers_tab.rows

    def _images(self, found: dict) -> None:
        self.near.update(found.get("neighbours", {}))
        self.thumbs.update(found.get("thumbs", {}))
        for row in self.rows():
            row.show_thumbs(self.thumbs)
            if isinstance(row, SuspectRow) and row.issue.path in self.near:
                row.show_neighbours(*self.near[row.issue.path], self.thumbs)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:  # another theme: the message colours follow
            self._show_texts()

    # ------------------------------------------------------------------ decisions
    def undo(self) -> None:
        step = self.view.undo()
        if step is not None:
            self.ctx.status(f"Undone: {step.text()}.")

    def _decided(self) -> None:
        """A new result or a kept finding listed again: the rows anew; a decision: their words."""
        shown, hidden = self._shown
        if self.view.result is not shown or self.view.counts().hidden != hidden:
            self._show_result()
        else:
            self._refresh()

    def _refresh(self) -> None:
        for row in self.rows():
            row.refresh()
        self.undo_btn.setEnabled(bool(self.view.history))
        self.undo_btn.setToolTip((self.view.undo_text() + " (Ctrl+Z).") if self.view.history
                                 else "Revert the last decision (Ctrl+Z); nothing to undo yet.")

    def _config_changed(self, keys: set) -> None:
        if self.view.result is None:
            return
        if "" in keys or any(k.startswith(STALE_KEYS) for k in keys):
            self.stale = True
        if keys & {"", "train.class_weights", "data.weighted_sampler"} or self.stale:
            self._show_texts()
        if "" in keys or keys & set(DECISION_KEYS):
            self._refresh()


class CheckDataButton(QPushButton):
    """The Data step's "Check data…" button: opens the view (made once and kept, with its
    findings and decisions, for the session) and starts a check when there is none yet."""

    def __init__(self, ctx: Context, parent: QWidget | None = None):
        super().__init__("Chec&k data…", parent)
        self.ctx = ctx
        self.view = AuditView(ctx.project)
        self.dialog: CheckDataDialog | None = None
        self.setToolTip("Look for mislabelled images, duplicates, leaks between sets, outliers and unbalanced "
                        "classes, and decide what to do with each. Your files are never moved or deleted.")
        self.clicked.connect(self.open_view)
        ctx.project.config_changed.connect(lambda _keys: self.setEnabled(bool(ctx.project.cfg.data.folders)))
        self.setEnabled(bool(ctx.project.cfg.data.folders))

    def open_view(self) -> CheckDataDialog:
        if self.dialog is None:
            self.dialog = CheckDataDialog(self.ctx, self.view, self.window())
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
        if self.view.result is None and not self.dialog.running():
            self.dialog.start()
        return self.dialog
