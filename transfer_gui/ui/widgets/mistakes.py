"""A gallery of validation mistakes: the image, its true and predicted class and the
model's confidence, sortable by confidence."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from transfer_gui.ui.tasks import TaskRunner
from transfer_gui.ui.widgets.thumbnails import read_many

TILE = 96
MAX_SHOWN = 300
CONF_ROLE = Qt.ItemDataRole.UserRole + 1
PATH_ROLE = Qt.ItemDataRole.UserRole + 2


class MistakesGallery(QWidget):
    def __init__(self, tasks: TaskRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.tasks = tasks
        self.sort = QComboBox()
        self.sort.addItem("Most confident mistakes first", True)
        self.sort.addItem("Least confident mistakes first", False)
        self.sort.setToolTip("Confident mistakes often reveal mislabelled images or classes that look alike; "
                             "unsure ones show where more examples would help.")
        self.sort.currentIndexChanged.connect(self._fill)
        self.count = QLabel()
        self.list = QListWidget()
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setIconSize(QSize(TILE, TILE))
        self.list.setGridSize(QSize(TILE + 70, TILE + 56))
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setWordWrap(True)
        self.list.setUniformItemSizes(True)
        self.list.setToolTip("Validation images the model got wrong: true class, prediction and confidence. "
                             "Hover for the file path.")
        top = QHBoxLayout()
        top.addWidget(QLabel("Sort:"))
        top.addWidget(self.sort)
        top.addStretch(1)
        top.addWidget(self.count)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.list, 1)
        self.items: list[dict] = []
        self.classes: list[str] = []
        self.thumbs: dict[str, QPixmap] = {}

    def set_predictions(self, classes: list[str], predictions: list[dict]) -> None:
        self.classes = classes
        self.items = [p for p in predictions if p.get("true") != p.get("pred")]
        self.thumbs = {}
        self._fill()

    def _fill(self, *_args) -> None:
        most_first = bool(self.sort.currentData())
        ordered = sorted(self.items, key=lambda p: p.get("confidence", 0.0), reverse=most_first)
        shown = ordered[:MAX_SHOWN]
        self.list.clear()
        for p in shown:
            true = self._name(p.get("true"))
            pred = self._name(p.get("pred"))
            item = QListWidgetItem(f"{true} → {pred}\n{p.get('confidence', 0.0):.0%} sure")
            item.setData(CONF_ROLE, p.get("confidence", 0.0))
            item.setData(PATH_ROLE, p.get("path", ""))
            item.setToolTip(f"{p.get('path', '')}\nTrue: {true}\nPredicted: {pred} ({p.get('confidence', 0.0):.1%})")
            if p.get("path") in self.thumbs:
                item.setIcon(QIcon(self.thumbs[p["path"]]))
            self.list.addItem(item)
        n = len(self.items)
        self.count.setText("No mistakes on the validation images." if n == 0 else
                           f"{n} mistake(s)" + (f", showing {len(shown)}" if len(shown) < n else ""))
        missing = {p["path"]: [p["path"]] for p in shown if p.get("path") and p["path"] not in self.thumbs}
        if missing:
            self.tasks.start("mistake-thumbs", read_many, missing, TILE, on_done=self._thumbs_loaded)

    def _thumbs_loaded(self, result: dict) -> None:
        for path, images in result.items():
            if images and images[0] is not None:
                self.thumbs[path] = QPixmap.fromImage(images[0])
        for i in range(self.list.count()):
            item = self.list.item(i)
            pm = self.thumbs.get(item.data(PATH_ROLE))
            if pm is not None:
                item.setIcon(QIcon(pm))

    def _name(self, label) -> str:
        try:
            return self.classes[int(label)]
        except (TypeError, ValueError, IndexError):
            return str(label)

    def confidences(self) -> list[float]:
        return [self.list.item(i).data(CONF_ROLE) for i in range(self.list.count())]

    def paths(self) -> list[str]:
        return [Path(self.list.item(i).data(PATH_ROLE)).name for i in range(self.list.count())]
