"""The Accuracy tab: headline figures (top-1, top-5, macro and weighted F1, calibration error),
the confusion matrix, the per-class table with its averages, and the most confused pairs.
Clicking a cell or a pair asks the page to show those images."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QLabel, QListWidget, QListWidgetItem,
                               QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from transfer_gui.state.evaluation_view import EvaluationView
from transfer_gui.ui.widgets.confusion import ConfusionView

COLUMNS = ["Class", "Images", "Recall", "Precision", "F1"]
TIPS = ["The class.", "Images of this class in the set (its support).",
        "Share of this class's images the model got right (its accuracy on the class).",
        "When the model says this class, how often it is right.",
        "Balance of precision and recall (their harmonic mean)."]


def _pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1%}"


class _NumberItem(QTableWidgetItem):
    """Sorts by its number (UserRole), not by its text ("100.0%" < "92.3%" as text); the
    average rows (UserRole + 1 set) stay at the bottom."""

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a, b = self.data(Qt.ItemDataRole.UserRole), other.data(Qt.ItemDataRole.UserRole)
        a = -1.0 if a is None or a != a else a  # NaN (no predictions of a class) sorts first
        b = -1.0 if b is None or b != b else b
        return a < b


def headline(view: EvaluationView) -> str:
    r = view.report
    parts = [f"<b>{view.title}</b>, {view.n} images: top-1 accuracy <b>{_pct(r['accuracy'])}</b>"]
    if r.get("top5_accuracy") is not None:
        parts.append(f"top-5 <b>{_pct(r['top5_accuracy'])}</b>")
    parts.append(f"macro F1 {_pct(r['macro']['f1'])}")
    parts.append(f"weighted F1 {_pct(r['weighted']['f1'])}")
    parts.append(f"calibration error (ECE) {r['ece']:.3f}")
    return ", ".join(parts)


class QualityView(QWidget):
    pair_chosen = Signal(int, int)  # true, predicted

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view: EvaluationView | None = None
        self.headline = QLabel()
        self.headline.setWordWrap(True)
        self.headline.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.confusion = ConfusionView()
        self.confusion.cell_chosen.connect(self.pair_chosen)
        self.per_class = self._make_table()
        self.averages = self._make_table()
        self.averages.setSortingEnabled(False)
        self.averages.setToolTip("Macro average: every class counts the same. Weighted average: each class counts "
                                 "by its number of images.")
        self.averages.horizontalHeader().setVisible(False)
        self.averages.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.pairs = QListWidget()
        self.pairs.setAccessibleName("Most confused pairs")
        self.pairs.setToolTip("The mistakes the model makes most often, true class → predicted class. Click one "
                              "to see its images.")
        self.pairs.itemActivated.connect(self._pair_activated)
        self.pairs.itemClicked.connect(self._pair_activated)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.headline)
        lay.addWidget(self._build_body(), 1)

    def _build_body(self) -> QSplitter:
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(QLabel("<b>Confusion matrix</b> (rows: true class, columns: predicted)"))
        ll.addWidget(self.confusion, 1)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(QLabel("<b>Per class</b>"))
        rl.addWidget(self.per_class, 3)
        rl.addWidget(self.averages)
        rl.addWidget(QLabel("<b>Most confused</b>"))
        rl.addWidget(self.pairs, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([560, 440])
        return split

    @staticmethod
    def _make_table() -> QTableWidget:
        table = QTableWidget(0, len(COLUMNS))
        table.setHorizontalHeaderLabels(COLUMNS)
        for i, tip in enumerate(TIPS):
            table.horizontalHeaderItem(i).setToolTip(tip)
        table.setToolTip("Per-class quality of the model the run chose, with the macro (every class counts the "
                         "same) and weighted (by images) averages at the bottom.")
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        return table

    def set_view(self, view: EvaluationView | None) -> None:
        self.view = view
        if view is None:
            self.headline.setText("No predictions to show.")
            self.confusion.set_matrix([], [])
            self.per_class.setRowCount(0)
            self.averages.setRowCount(0)
            self.pairs.clear()
            return
        self.headline.setText(headline(view))
        self.confusion.set_matrix(view.classes, view.report["confusion"])
        self._fill_table(view)
        self._fill_pairs(view)

    def _fill_table(self, view: EvaluationView) -> None:
        table, r = self.per_class, view.report
        table.setSortingEnabled(False)
        rows = [(c, r["per_class"][c]) for c in view.classes]
        table.setRowCount(len(rows))
        for i, (name, m) in enumerate(rows):
            self._set_row(i, name, m["support"], m["recall"], m["precision"], m["f1"])
        table.setSortingEnabled(True)
        table.sortItems(0, Qt.SortOrder.AscendingOrder)
        self.averages.setRowCount(2)
        for row, (label, key) in enumerate((("macro average", "macro"), ("weighted average", "weighted"))):
            avg = r[key]
            self._set_row(row, label, view.n, avg["recall"], avg["precision"], avg["f1"], self.averages)
        self.averages.resizeRowsToContents()
        self.averages.setFixedHeight(sum(self.averages.rowHeight(i) for i in range(2)) + 2 * self.averages.frameWidth())
        for c in range(len(COLUMNS)):  # the averages line up with the classes' columns
            self.averages.setColumnWidth(c, self.per_class.columnWidth(c))

    def _set_row(self, row: int, name: str, support: int, recall, precision, f1,
                 table: QTableWidget | None = None) -> None:
        table = table or self.per_class
        name_item = QTableWidgetItem(name)
        name_item.setToolTip(name)
        table.setItem(row, 0, name_item)
        for c, (text, key) in enumerate([(str(support), support), (_pct(recall), recall),
                                         (_pct(precision), precision), (_pct(f1), f1)], start=1):
            item = _NumberItem(text)
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(row, c, item)

    def _fill_pairs(self, view: EvaluationView) -> None:
        self.pairs.clear()
        index = {c: i for i, c in enumerate(view.classes)}
        for true, pred, count in view.most_confused(30):
            item = QListWidgetItem(f"{true} → {pred}: {count} image(s)")
            item.setData(Qt.ItemDataRole.UserRole, (index[true], index[pred]))
            item.setToolTip(f"{count} image(s) of {true} that the model called {pred}")
            self.pairs.addItem(item)
        if not self.pairs.count():
            self.pairs.addItem("No mistakes in this set.")

    def _pair_activated(self, item: QListWidgetItem) -> None:
        pair = item.data(Qt.ItemDataRole.UserRole)
        if pair:
            self.pair_chosen.emit(int(pair[0]), int(pair[1]))
