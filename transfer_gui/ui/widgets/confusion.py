"""Confusion matrix as a table of coloured cells with counts, and per-class metrics."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QPalette
from PySide6.QtWidgets import QAbstractItemView, QApplication, QHeaderView, QTableWidget, QTableWidgetItem

from transfer_gui.ui.theme import is_dark


def per_class_metrics(matrix: list[list[int]]) -> list[dict[str, float]]:
    """precision, recall (= the class's accuracy), f1 and support of every class."""
    n = len(matrix)
    out = []
    for i in range(n):
        tp = matrix[i][i]
        row = sum(matrix[i])
        col = sum(matrix[r][i] for r in range(n))
        precision = tp / col if col else float("nan")
        recall = tp / row if row else float("nan")
        f1 = (2 * precision * recall / (precision + recall)) if col and row and (precision + recall) else 0.0
        out.append({"precision": precision, "recall": recall, "f1": f1, "support": row})
    return out


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    t = max(0.0, min(1.0, t))
    return QColor(round(a.red() + (b.red() - a.red()) * t), round(a.green() + (b.green() - a.green()) * t),
                  round(a.blue() + (b.blue() - a.blue()) * t))


class ConfusionTable(QTableWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setToolTip("Rows are the true classes, columns what the model predicted. The diagonal counts "
                        "correct answers; any other cell is a kind of mistake. Colour shows the share of "
                        "the row.")
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.matrix: list[list[int]] = []

    def set_matrix(self, classes: list[str], matrix: list[list[int]]) -> None:
        self.matrix = matrix
        n = len(classes)
        self.clear()
        self.setRowCount(n)
        self.setColumnCount(n)
        short = [c if len(c) <= 14 else c[:13] + "…" for c in classes]
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
                item.setToolTip(f"True {classes[i]}, predicted {classes[j]}: {v} image(s), "
                                f"{share:.0%} of {classes[i]}")
                self.setItem(i, j, item)
