"""The table of classes on the Data step: use or drop, name (editable: renames), image count
and a few example thumbnails."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QAbstractItemView, QApplication, QHeaderView, QTableWidget, QTableWidgetItem

from transfer_gui.state.dataset_view import ClassRow
from transfer_gui.ui.binding import signals_blocked
from transfer_gui.ui.widgets.thumbnails import strip

THUMB = 40
USE, NAME, COUNT, EXAMPLES = range(4)


class ClassTable(QTableWidget):
    renamed = Signal(str, str)  # original folder name, new name
    use_changed = Signal(str, bool)  # original folder name, used?

    def __init__(self, parent=None):
        super().__init__(0, 4, parent)
        self.setHorizontalHeaderLabels(["Use", "Class", "Images", "Examples"])
        self.setToolTip("The classes found in the folders. Untick “Use” to leave a class out; double-click "
                        "a name to rename it (give two classes the same name to merge them).")
        hh = self.horizontalHeader()
        hh.setSectionResizeMode(USE, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        hh.setSectionResizeMode(COUNT, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(EXAMPLES, QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeaderItem(USE).setToolTip("Ticked classes are trained on (data.exclude_classes).")
        self.horizontalHeaderItem(NAME).setToolTip("Class name; edit to rename (data.rename_classes).")
        self.horizontalHeaderItem(COUNT).setToolTip("Images this class folder gives the run: those found, less "
                                                    "the files you excluded or gave another class.")
        self.horizontalHeaderItem(EXAMPLES).setToolTip("A few images of the class.")
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(THUMB + 8)
        self.setIconSize(QSize(4 * THUMB + 9, THUMB))
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.setAlternatingRowColors(True)
        self.rows: list[ClassRow] = []
        self.itemChanged.connect(self._changed)

    def set_rows(self, rows: list[ClassRow]) -> None:
        with signals_blocked(self):  # filling the cells is no edit
            self.rows = rows
            self.setRowCount(len(rows))
            for r, row in enumerate(rows):
                use = QTableWidgetItem()
                use.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsSelectable)
                use.setCheckState(Qt.CheckState.Unchecked if row.excluded else Qt.CheckState.Checked)
                use.setToolTip("Untick to leave this class out of training.")
                self.setItem(r, USE, use)
                name = QTableWidgetItem(row.name)
                name.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsEditable | Qt.ItemFlag.ItemIsSelectable)
                tip = f"Folder name: {row.original}" + (f"\nRenamed to: {row.name}" if row.name != row.original else "")
                name.setToolTip(tip + "\nDouble-click to rename.")
                if row.excluded:
                    f = name.font()
                    f.setStrikeOut(True)
                    name.setFont(f)
                self.setItem(r, NAME, name)
                count = QTableWidgetItem(f"{row.count:,}")
                count.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                count.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if row.found >= 0 and row.found != row.count:
                    count.setToolTip(f"{row.found:,} images in the folder; {row.count:,} after your decisions "
                                     f"about single files (Check data: excluded, or given another class).")
                self.setItem(r, COUNT, count)
                if self.item(r, EXAMPLES) is None:  # keep thumbnails of rows that stay
                    ex = QTableWidgetItem()
                    ex.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                    ex.setToolTip("A few images of this class.")
                    self.setItem(r, EXAMPLES, ex)

    def set_thumbnails(self, thumbs: dict[str, list[QImage | None]]) -> None:
        bg = QApplication.palette().color(QPalette.ColorRole.AlternateBase)
        for r, row in enumerate(self.rows):
            images = thumbs.get(row.original)
            if images is None:
                continue
            item = self.item(r, EXAMPLES)
            if item is not None:
                item.setData(Qt.ItemDataRole.DecorationRole, strip(images, THUMB, background=QColor(bg)))
        self.resizeColumnToContents(EXAMPLES)

    def selected_row(self) -> ClassRow | None:
        r = self.currentRow()
        return self.rows[r] if 0 <= r < len(self.rows) else None

    def _changed(self, item: QTableWidgetItem) -> None:
        if not (0 <= item.row() < len(self.rows)):
            return
        row = self.rows[item.row()]
        if item.column() == USE:
            self.use_changed.emit(row.original, item.checkState() == Qt.CheckState.Checked)
        elif item.column() == NAME:
            new = item.text().strip()
            if not new:
                with signals_blocked(self):
                    item.setText(row.name)
                return
            self.renamed.emit(row.original, new)
