"""The Results step's Runs tab: every run of the project in a table (date, model, epochs, best
validation and test accuracy, time, how it ended, what changed from the run before), several
selected at once to overlay their validation curves and see their differing settings side by
side, and "Use these settings" to copy one run's config back into the project.

The widget shows a :class:`~transfer_gui.state.runs_view.RunsView`; the decisions (rows, diffs,
curves, the changes to copy) are the view's and the engine's. It asks the page to open a run
(``open_requested``) or to use its settings (``use_requested``, ``undo_requested``).
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSplitter,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from transfer_gui.engine.runs import RunRow, short_value
from transfer_gui.state.runs_view import RunsView
from transfer_gui.ui.theme import series_color, status_colors
from transfer_gui.ui.widgets.plotting import add_curve, make_plot

COLUMNS = ("Run", "Started", "Model", "Epochs", "Best val.", "Test", "Time", "Status", "Changed from the run before")
COLUMN_TIPS = (
    "The run's folder name.",
    "When the run started.",
    "The model it trained.",
    "Epochs finished.",
    "Validation accuracy at the best epoch (by the run's early-stopping metric), and which epoch, from 1.",
    "Test accuracy, evaluated once after training, when the run had a test set.",
    "How long the run took.",
    "How the run ended: completed, early stopped, stopped, failed; running while a process trains it; "
    "interrupted when its process was killed before it ended.",
    "The settings this run changed from the run listed below it (the one before it).",
)
PATH_ROLE = Qt.ItemDataRole.UserRole
HINT = "Select runs (Ctrl or Shift + click for several) to overlay their curves and compare their settings."


def _pct(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.1%}"


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def row_cells(row: RunRow) -> list[str]:
    """The text of a run's table row."""
    i = row.info
    best = f"{_pct(i.best_val_acc)} @{i.best_epoch}" if not math.isnan(i.best_val_acc) else "–"
    started = datetime.fromtimestamp(i.started).strftime("%Y-%m-%d %H:%M") if i.started else "–"
    return [i.run_dir.name, started, i.model, str(i.epochs_done), best, _pct(i.test_acc), _duration(i.seconds),
            i.state.replace("_", " "), row.diff_text()]


def _table(columns: tuple[str, ...] | list[str], name: str) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setAccessibleName(name)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.verticalHeader().setVisible(False)
    t.setHorizontalHeaderLabels(list(columns))
    t.setWordWrap(False)
    return t


class RunsCompare(QWidget):
    open_requested = Signal(str)  # a run folder to show in the other tabs
    use_requested = Signal(str)  # a run folder whose settings to copy into the project
    undo_requested = Signal()
    resume_requested = Signal(str)  # a run folder to train on from its last.pt

    def __init__(self, view: RunsView, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = view
        self._filling = False
        self._message = ""  # what the last action said, until the selection changes
        self._training = False  # a run is training in the window: nothing can be resumed now
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self._build_table())
        split.addWidget(self._build_compare())
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(self._build_actions())
        lay.addWidget(split, 1)
        self.curves: list = []

    def _build_table(self) -> QTableWidget:
        self.table = _table(COLUMNS, "Runs of this project")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setToolTip("Every run of this project, newest first. Select several (Ctrl or Shift + click) to "
                              "overlay their curves and compare their settings; double-click one to show it in the "
                              "other tabs.")
        for col, tip in enumerate(COLUMN_TIPS):
            self.table.horizontalHeaderItem(col).setToolTip(tip)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        rows = self.table.verticalHeader().defaultSectionSize()
        self.table.setMinimumHeight(self.table.horizontalHeader().sizeHint().height() + 4 * rows + 4)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.itemDoubleClicked.connect(lambda item: self.open_requested.emit(self._path_of(item.row())))
        return self.table

    def _build_compare(self) -> QWidget:
        self.acc_plot = make_plot("Validation accuracy", "accuracy", "epoch", legend=True, legend_at=(-8, -8))
        self.acc_plot.getPlotItem().setYRange(0, 1, padding=0.02)
        self.acc_plot.setToolTip("The selected runs' validation accuracy after each epoch, one colour per run.")
        self.loss_plot = make_plot("Validation loss", "loss", "epoch", legend=True)
        self.loss_plot.setToolTip("The selected runs' validation loss after each epoch, one colour per run.")
        self.settings = _table(["Setting"], "Settings that differ between the selected runs")
        self.settings.setToolTip("Only the settings that differ; a value unlike the first run's is highlighted.")
        self.settings.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.acc_plot, 2)
        row.addWidget(self.loss_plot, 2)
        row.addWidget(self.settings, 3)
        return box

    def _build_actions(self) -> QHBoxLayout:
        self.open_btn = QPushButton("&Show this run")
        self.open_btn.setToolTip("Show the selected run in the other tabs (or double-click it).")
        self.open_btn.clicked.connect(lambda: self.open_requested.emit(str(self.view.selected[0])))
        self.use_btn = QPushButton("&Use these settings")
        self.use_btn.setToolTip("Copy the selected run's settings (model, layers, rates, data, training) into the "
                                "project, so the next run repeats it or starts from it. Its run folder is not copied.")
        self.use_btn.clicked.connect(lambda: self.use_requested.emit(str(self.view.selected[0])))
        self.undo_btn = QPushButton("Undo")
        self.undo_btn.setToolTip("Put back the project's settings from before \u201cUse these settings\u201d.")
        self.undo_btn.clicked.connect(self.undo_requested.emit)
        self.resume_btn = QPushButton("&Resume")
        self.resume_btn.setToolTip("Train the rest of the selected run's epochs from its last checkpoint, with its "
                                   "own settings: for a run that was interrupted, stopped or failed.")
        self.resume_btn.clicked.connect(lambda: self.resume_requested.emit(str(self.view.selected[0])))
        self.note = QLabel(HINT)
        self.note.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.open_btn)
        row.addWidget(self.use_btn)
        row.addWidget(self.undo_btn)
        row.addWidget(self.resume_btn)
        row.addWidget(self.note, 1)
        return row

    # ------------------------------------------------------------------ showing
    def refresh(self) -> None:
        """The rows again from the view (the project's runs changed), keeping the selection."""
        self._filling = True
        try:
            self.table.setRowCount(len(self.view.rows))
            for r, row in enumerate(self.view.rows):
                for c, text in enumerate(row_cells(row)):
                    item = QTableWidgetItem(text)
                    item.setData(PATH_ROLE, str(row.info.run_dir))
                    item.setToolTip(str(row.info.run_dir) if c == 0 else self._diff_tip(row) if c == 8 else text)
                    if c in (3, 4, 5, 6):
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    self.table.setItem(r, c, item)
            self._restore_selection()
        finally:
            self._filling = False
        self._show_selected()

    @staticmethod
    def _diff_tip(row: RunRow) -> str:
        if not row.diff:
            return row.diff_text()
        return "\n".join(f"{k}: {short_value(a)} \u2192 {short_value(b)}" for k, (a, b) in row.diff.items())

    def _restore_selection(self) -> None:
        chosen = {str(p) for p in self.view.selected}
        sel = self.table.selectionModel()
        self.table.clearSelection()
        for r in range(self.table.rowCount()):
            if self._path_of(r) in chosen:
                sel.select(self.table.model().index(r, 0), sel.SelectionFlag.Select | sel.SelectionFlag.Rows)

    def _path_of(self, r: int) -> str:
        item = self.table.item(r, 0)
        return item.data(PATH_ROLE) if item is not None else ""

    def select_runs(self, run_dirs: list[str | Path]) -> None:
        """Select these runs in the table (as a person would, with the same effect)."""
        self.view.select(list(run_dirs))
        self._filling = True
        try:
            self._restore_selection()
        finally:
            self._filling = False
        self._show_selected()

    def _selection_changed(self) -> None:
        if self._filling:
            return
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        self.view.select([self._path_of(r) for r in rows])
        self._message = ""
        self._show_selected()

    def _show_selected(self) -> None:
        n = len(self.view.selected)
        self.open_btn.setEnabled(n == 1)
        self.use_btn.setEnabled(n == 1)
        self.undo_btn.setVisible(self.view.undo_changes is not None)
        self._show_resume()
        self._draw_curves()
        self._fill_settings()

    def _show_resume(self) -> None:
        """Resume: for one selected run that can be resumed, saying the epoch it starts at."""
        rows = self.view.selected_rows()
        info = rows[0].info if len(rows) == 1 else None
        self.resume_btn.setEnabled(info is not None and info.resumable and not self._training)
        self.resume_btn.setText(f"&Resume from epoch {info.resume_epoch}" if info is not None and info.resumable
                                else "&Resume")

    def set_training(self, training: bool) -> None:
        self._training = training
        self._show_resume()

    def _draw_curves(self) -> None:
        for plot in (self.acc_plot, self.loss_plot):
            item = plot.getPlotItem()
            for c in list(item.listDataItems()):
                item.removeItem(c)
            if item.legend is not None:
                item.legend.clear()
        self.curves = []
        for k, c in enumerate(self.view.curves()):
            color = series_color(k)
            x = np.asarray(c.epochs, dtype=float)
            acc = add_curve(self.acc_plot, color, c.name, symbol="o")
            acc.setData(x, np.asarray(c.val_acc, dtype=float), connect="finite")
            loss = add_curve(self.loss_plot, color, c.name, symbol="o")
            loss.setData(x, np.asarray(c.val_loss, dtype=float), connect="finite")
            self.curves.append((c.name, acc, loss))

    def _fill_settings(self) -> None:
        names, rows = self.view.comparison()
        t = self.settings
        t.setColumnCount(1 + len(names))
        t.setHorizontalHeaderLabels(["Setting", *names])
        t.setRowCount(len(rows))
        mark = QColor(status_colors()["warn"])
        mark.setAlpha(60)
        for r, (key, values) in enumerate(rows):
            t.setItem(r, 0, QTableWidgetItem(key))
            for c, value in enumerate(values, start=1):
                item = QTableWidgetItem(short_value(value))
                item.setToolTip(f"{key} = {value!r}")
                if c > 1 and value != values[0]:
                    item.setBackground(mark)
                t.setItem(r, c, item)
        if self._message:
            self.note.setText(self._message)
        elif len(names) == 1 and self.view.selected:
            self.note.setText("The first run: nothing to compare it with. " + HINT)
        elif names and not rows:
            self.note.setText("The selected runs have the same settings.")
        else:
            self.note.setText(HINT)

    def say(self, text: str) -> None:
        """A message about the last action (kept until the selection changes)."""
        self._message = text
        self.note.setText(text)
        self.undo_btn.setVisible(self.view.undo_changes is not None)

    def restyle(self) -> None:
        """After a theme change: the highlight in the new theme's colour."""
        self._fill_settings()

    # ------------------------------------------------------------------ for tests
    def rows(self) -> list[list[str]]:
        t = self.table
        return [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]

    def settings_rows(self) -> list[list[str]]:
        t = self.settings
        return [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]
