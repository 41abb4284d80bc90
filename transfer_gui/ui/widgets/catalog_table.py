"""The model catalog as a searchable, sortable table. Models usable right away (installed or
already downloaded) sort first. Only a click or an arrow key chooses a model: sorting and
filtering move the current row too, and must not."""

from __future__ import annotations

import math
import re

from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
                               QTableView, QVBoxLayout, QWidget)

OFFLINE_MODEL = "efficientnet_lite0"
STATUS_TEXT = {"installed": "installed (offline)", "cached": "cached", "download": "needs download",
               "architecture only": "architecture only"}
STATUS_ORDER = ("installed", "cached", "download", "architecture only")
COLUMNS = ("Model", "Family", "Parameters", "Input", "ImageNet top-1", "Weights")
WEIGHTS = 5
SPEC_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2


def natural_key(name: str) -> str:
    """A sort key that orders numbers by value: resnet18 < resnet34 < resnet101 (as text, resnet101
    sorts first). Numbers are zero-padded so that the key still sorts as text in the model."""
    return re.sub(r"\d+", lambda m: m.group().zfill(8), name.lower())


def fmt_params(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n else "?"


class _Filter(QSortFilterProxyModel):
    """Search text in any column, optionally only rows usable without a download."""

    offline_only = False

    def filterAcceptsRow(self, row: int, parent) -> bool:
        if self.offline_only and self.sourceModel().index(row, WEIGHTS, parent).data() == STATUS_TEXT["download"]:
            return False
        return super().filterAcceptsRow(row, parent)


class CatalogTable(QWidget):
    chosen = Signal(str)  # the user picked a model

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.specs: dict[str, object] = {}
        self.downloaded: set[str] = set()  # fetched in this session (the catalog lists status once)
        self.current = ""
        self._quiet = False
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search models by name or family, e.g. resnet, convnext, mobile…")
        self.search.setToolTip("Type part of a model's name or family to filter the list.")
        self.search.setClearButtonEnabled(True)
        self.offline_only = QCheckBox("Only models usable without a download")
        self.offline_only.setToolTip("Show only models whose weights are installed or already downloaded.")
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.proxy = _Filter(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setSortRole(SORT_ROLE)
        self.search.textChanged.connect(self._filter)
        self.offline_only.toggled.connect(self._filter)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 10)
        self.table.setAlternatingRowColors(True)
        self.table.setToolTip("Pretrained networks to start from. Smaller models train faster; higher "
                              "ImageNet top-1 usually transfers better. Click one to choose it.")
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().currentRowChanged.connect(self._row_changed)
        self.note = QLabel("Loading the model catalog…")
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.offline_only)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.note)

    def status_key(self, spec) -> str:
        return "cached" if spec.name in self.downloaded else spec.weights_status

    def status_text(self, spec) -> str:
        key = self.status_key(spec)
        return STATUS_TEXT.get(key, key)

    def load(self, specs: list) -> None:
        self.specs = {s.name: s for s in specs}
        self._quiet = True
        try:
            self.model.setRowCount(0)
            for s in specs:
                self.model.appendRow(self._row(s))
            self.table.sortByColumn(WEIGHTS, Qt.SortOrder.AscendingOrder)
        finally:
            self._quiet = False
        self._filter()

    def _row(self, s) -> list[QStandardItem]:
        top1 = "" if math.isnan(s.top1) else f"{s.top1:.1f} %"
        key = self.status_key(s)
        rank = str(STATUS_ORDER.index(key)) if key in STATUS_ORDER else "9"
        values = [(s.name, natural_key(s.name)), (s.family, natural_key(s.family) + " " + natural_key(s.name)),
                  (fmt_params(s.params), s.params), (f"{s.input_size} px", s.input_size),
                  (top1, -1.0 if math.isnan(s.top1) else s.top1), (self.status_text(s), rank + natural_key(s.name))]
        items = []
        for text, sort_key in values:
            it = QStandardItem(text)
            it.setData(sort_key, SORT_ROLE)
            it.setData(s.name, SPEC_ROLE)
            items.append(it)
        items[0].setToolTip(s.description or f"{s.name} ({s.source})")
        items[WEIGHTS].setToolTip("installed (offline): ships with the app; cached: downloaded before; "
                                  "needs download: fetched from the internet on first use.")
        return items

    def mark_downloaded(self, name: str) -> None:
        self.downloaded.add(name)
        for row in range(self.model.rowCount()):
            if self.model.item(row, 0).text() == name:
                item = self.model.item(row, WEIGHTS)
                item.setText(STATUS_TEXT["cached"])
                item.setData("1" + natural_key(name), SORT_ROLE)

    def _filter(self, *_args) -> None:
        self._quiet = True
        try:
            self.proxy.offline_only = self.offline_only.isChecked()
            self.proxy.setFilterFixedString(self.search.text().strip())
            self.proxy.invalidate()
        finally:
            self._quiet = False
        self.show_current(self.current)
        self._show_count()

    def _show_count(self) -> None:
        total, shown = self.model.rowCount(), self.proxy.rowCount()
        if not total:
            return
        what = f"{total} models" if shown == total else f"{shown} of {total} models shown"
        self.note.setText(f"{what}, those usable right away first. The offline model {OFFLINE_MODEL} works "
                          f"without a network.")

    def show_current(self, name: str) -> None:
        """Highlight ``name`` without choosing anything."""
        self.current = name
        self._quiet = True
        try:
            sel = self.table.selectionModel()
            for row in range(self.proxy.rowCount()):
                idx = self.proxy.index(row, 0)
                if idx.data(SPEC_ROLE) == name:
                    sel.setCurrentIndex(idx, sel.SelectionFlag.ClearAndSelect | sel.SelectionFlag.Rows)
                    self.table.scrollTo(idx)
                    return
            sel.clearSelection()  # filtered out: any row the user picks is a change
            sel.clearCurrentIndex()
        finally:
            self._quiet = False

    def _row_changed(self, current, _previous) -> None:
        if self._quiet or not current.isValid():
            return
        name = current.data(SPEC_ROLE)
        if name and name != self.current:
            self.current = name
            self.chosen.emit(name)
