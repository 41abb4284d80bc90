"""The confusion matrix: a table of coloured cells with counts up to 20 classes, a zoomable heat
map beyond (where a table's headers would be cut to nothing). Both say which cell was clicked,
so the page can show those images."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPalette
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QHeaderView, QLabel, QStackedWidget, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from transfer_gui.state.evaluation_view import short_names
from transfer_gui.ui.theme import is_dark
from transfer_gui.ui.widgets.plotting import make_plot

TABLE_LIMIT = 20  # more classes than this: a heat map


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    t = max(0.0, min(1.0, t))
    return QColor(round(a.red() + (b.red() - a.red()) * t), round(a.green() + (b.green() - a.green()) * t),
                  round(a.blue() + (b.blue() - a.blue()) * t))


def _cell_tip(classes: list[str], i: int, j: int, v: int, row_total: int) -> str:
    share = v / row_total if row_total else 0.0
    what = "right" if i == j else f"mistaken for {classes[j]}"
    return (f"True {classes[i]}, predicted {classes[j]}: {v} image(s), {share:.0%} of {classes[i]} ({what}). "
            f"Click to see them.")


class ConfusionTable(QTableWidget):
    cell_chosen = Signal(int, int)  # true, predicted

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setToolTip("Rows are the true classes, columns what the model predicted. The diagonal counts "
                        "correct answers; any other cell is a kind of mistake. Colour shows the share of "
                        "the row. Click a cell to see its images.")
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.horizontalHeader().setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.matrix: list[list[int]] = []
        self.cellClicked.connect(lambda r, c: self.cell_chosen.emit(r, c))

    def set_matrix(self, classes: list[str], matrix: list[list[int]]) -> None:
        self.matrix = matrix
        n = len(classes)
        self.clear()
        self.setRowCount(n)
        self.setColumnCount(n)
        short = short_names(classes, 14)
        self.setHorizontalHeaderLabels([f"→ {c}" for c in short])
        self.setVerticalHeaderLabels(short)
        for i, c in enumerate(classes):
            self.horizontalHeaderItem(i).setToolTip(f"Predicted: {c}")
            self.verticalHeaderItem(i).setToolTip(f"True class: {c}")
        base = QApplication.palette().color(QPalette.ColorRole.Base)  # current even mid theme switch
        good = QColor("#2e7d32" if is_dark() else "#43a047")
        bad = QColor("#c62828" if is_dark() else "#e53935")
        for i in range(n):
            row_total = sum(matrix[i]) if i < len(matrix) else 0
            for j in range(n):
                v = matrix[i][j] if i < len(matrix) and j < len(matrix[i]) else 0
                share = v / row_total if row_total else 0.0
                item = QTableWidgetItem(str(v))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                colour = _mix(base, good if i == j else bad, share if i == j else min(1.0, share * 2.5))
                item.setBackground(QBrush(colour))
                item.setForeground(QBrush(QColor("#ffffff" if colour.lightness() < 140 else "#1d1d1f")))
                item.setToolTip(_cell_tip(classes, i, j, v, row_total))
                self.setItem(i, j, item)


def heat_colors(matrix: np.ndarray) -> np.ndarray:
    """RGB (rows x cols x 3, uint8) of a confusion matrix: row shares, green on the diagonal, red
    elsewhere (mistakes stand out at 40 % of a row), over the window's base colour."""
    m = np.asarray(matrix, dtype=np.float64)
    share = m / np.maximum(1.0, m.sum(1, keepdims=True))
    base = QApplication.palette().color(QPalette.ColorRole.Base)
    good = np.array(QColor("#2e7d32" if is_dark() else "#43a047").getRgb()[:3], dtype=np.float64)
    bad = np.array(QColor("#c62828" if is_dark() else "#e53935").getRgb()[:3], dtype=np.float64)
    b = np.array(base.getRgb()[:3], dtype=np.float64)
    t = np.clip(np.where(np.eye(len(m), dtype=bool), share, share * 2.5), 0, 1)[..., None]
    target = np.where(np.eye(len(m), dtype=bool)[..., None], good, bad)
    return np.round(b + (target - b) * t).astype(np.uint8)


class ConfusionHeatmap(QWidget):
    """Many classes: one pixel-cell per pair; the wheel zooms, dragging pans, hovering names the
    cell, a click chooses it. Axis labels are the class names, shown where they fit."""

    cell_chosen = Signal(int, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = make_plot("", "true class", "predicted class (the numbers at the side)")
        self.plot.setToolTip("Rows are the true classes, columns the predicted ones. Scroll to zoom, drag to "
                             "move, hover for names, click a cell to see its images.")
        item = self.plot.getPlotItem()
        item.invertY(True)
        item.setAspectLocked(True)
        item.showGrid(x=False, y=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        item.addItem(self.image)
        self.hover = QLabel(" ")
        self.hover.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.hover)
        self.classes: list[str] = []
        self.matrix = np.zeros((0, 0), dtype=np.int64)
        self.plot.scene().sigMouseMoved.connect(self._moved)
        self.plot.scene().sigMouseClicked.connect(self._clicked)

    def set_matrix(self, classes: list[str], matrix) -> None:
        self.classes = list(classes)
        self.matrix = np.asarray(matrix, dtype=np.int64).reshape(len(classes), len(classes))
        self.image.setImage(heat_colors(self.matrix) if len(classes) else np.zeros((1, 1, 3), np.uint8),
                            levels=(0, 255))
        short = short_names(self.classes, 18)
        item = self.plot.getPlotItem()  # names down the side; across, their numbers (names would overlap)
        item.getAxis("left").setTicks([[(i + 0.5, f"{s} {i + 1}") for i, s in enumerate(short)]])
        item.getAxis("bottom").setTicks([[(i + 0.5, str(i + 1)) for i in range(len(short))]])
        item.getViewBox().autoRange(padding=0.01)

    def cell_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        if not self.classes:
            return None
        p = self.plot.getPlotItem().getViewBox().mapSceneToView(scene_pos)
        i, j = int(np.floor(p.y())), int(np.floor(p.x()))
        n = len(self.classes)
        return (i, j) if 0 <= i < n and 0 <= j < n else None

    def _moved(self, pos: QPointF) -> None:
        cell = self.cell_at(pos)
        if cell is not None:
            i, j = cell
            self.hover.setText(_cell_tip(self.classes, i, j, int(self.matrix[i, j]), int(self.matrix[i].sum())))

    def _clicked(self, event) -> None:
        cell = self.cell_at(event.scenePos())
        if cell is not None and event.button() == Qt.MouseButton.LeftButton:
            self.cell_chosen.emit(*cell)


class ConfusionView(QStackedWidget):
    """The table up to TABLE_LIMIT classes, the heat map beyond."""

    cell_chosen = Signal(int, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.table = ConfusionTable()
        self.heatmap = ConfusionHeatmap()
        self.addWidget(self.table)
        self.addWidget(self.heatmap)
        self.table.cell_chosen.connect(self.cell_chosen)
        self.heatmap.cell_chosen.connect(self.cell_chosen)

    def set_matrix(self, classes: list[str], matrix) -> None:
        many = len(classes) > TABLE_LIMIT
        self.setCurrentWidget(self.heatmap if many else self.table)
        (self.heatmap if many else self.table).set_matrix(classes, matrix)
        (self.table if many else self.heatmap).set_matrix([], [])
