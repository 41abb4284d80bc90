"""A gallery of mistakes: the image, its true and predicted class and the model's confidence,
sortable by confidence; filtered to one true/predicted pair when a confusion cell is clicked;
with heat maps on the thumbnails on request (computed on a worker thread, one by one)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem,
                               QPushButton, QVBoxLayout, QWidget)

from transfer_gui.ui.tasks import TaskRunner
from transfer_gui.ui.widgets.thumbnails import read_many
from transfer_gui.ui.widgets.try_it import heat_image

TILE = 96
MAX_SHOWN = 300
CONF_ROLE = Qt.ItemDataRole.UserRole + 1
PATH_ROLE = Qt.ItemDataRole.UserRole + 2
HEAT_ROLE = Qt.ItemDataRole.UserRole + 3  # the class index whose heat map the icon shows, else None
HEAT_FOR = (("predicted", "the predicted class"), ("true", "the true class"))


def heat_thumbs_job(task, source: str, wanted: list[tuple[str, int]], box: int) -> int:
    """Worker thread: a heat-map thumbnail for each (path, class index), reported one by one as
    (path, class index, QImage or None)."""
    done = 0
    for path, k in wanted:
        if task.cancelled:
            break
        try:
            image, _info = heat_image(source, path, k, box)
        except Exception:  # noqa: BLE001 - an unreadable image keeps its plain thumbnail
            image = None
        task.report((path, k, image), force=True)
        done += 1
    return done


class MistakesGallery(QWidget):
    def __init__(self, tasks: TaskRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.tasks = tasks
        self.source: str | None = None
        self.predictions: list[dict] = []
        self.items: list[dict] = []  # the images shown: the mistakes, or the chosen pair's images
        self.classes: list[str] = []
        self.pair: tuple[int | None, int | None] = (None, None)
        self.thumbs: dict[str, QPixmap] = {}
        self.heat_thumbs: dict[tuple[str, int], QPixmap] = {}
        self._build_controls()
        self._build_list()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(self._top)
        lay.addWidget(self.list, 1)

    def _build_controls(self) -> None:
        self.sort = QComboBox()
        self.sort.addItem("Most confident mistakes first", True)
        self.sort.addItem("Least confident mistakes first", False)
        self.sort.setAccessibleName("Sort mistakes")
        self.sort.setToolTip("Confident mistakes often reveal mislabelled images or classes that look alike; "
                             "unsure ones show where more examples would help.")
        self.sort.currentIndexChanged.connect(self._fill)
        self.heat = QCheckBox("&Heat maps")
        self.heat.setToolTip("Colour each thumbnail by where the model looked (Grad-CAM): red is what weighed "
                             "most for the class chosen beside. Computed in the background.")
        self.heat.toggled.connect(self._fill)
        self.heat_for = QComboBox()
        for key, label in HEAT_FOR:
            self.heat_for.addItem(f"for {label}", key)
        self.heat_for.setAccessibleName("Heat maps for which class")
        self.heat_for.setToolTip("The predicted class shows what misled the model; the true class shows where it "
                                 "saw (or missed) the right answer.")
        self.heat_for.currentIndexChanged.connect(self._fill)
        self.all_btn = QPushButton("Show &all mistakes")
        self.all_btn.setToolTip("Leave the chosen confusion cell and show every mistake again.")
        self.all_btn.clicked.connect(lambda: self.set_pair(None, None))
        self.count = QLabel()
        self._top = QHBoxLayout()
        for w in (QLabel("Sort:"), self.sort, self.heat, self.heat_for, self.all_btn):
            self._top.addWidget(w)
        self._top.addStretch(1)
        self._top.addWidget(self.count)
        self._enable_heat()

    def _build_list(self) -> None:
        self.list = QListWidget()
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setIconSize(QSize(TILE, TILE))
        self.list.setGridSize(QSize(TILE + 70, TILE + 56))
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setWordWrap(True)
        self.list.setUniformItemSizes(True)
        self.list.setToolTip("Images the model got wrong: true class, prediction and confidence. "
                             "Hover for the file path.")

    # ------------------------------------------------------------------ what is shown
    def set_source(self, source: str | None) -> None:
        """The model (run folder) whose heat maps the thumbnails show."""
        if source != self.source:
            self.heat_thumbs = {}
            self.tasks.cancel("mistake-heat")
        self.source = source
        self._enable_heat()
        self._fill()

    def set_predictions(self, classes: list[str], predictions: list[dict]) -> None:
        self.classes = list(classes)
        self.predictions = list(predictions)
        self.thumbs = {}
        self.heat_thumbs = {}
        self._select()

    def set_pair(self, true_index: int | None, pred_index: int | None) -> None:
        """Only the images of this true/predicted pair (a confusion cell; on the diagonal, the
        right answers of that class); None for either leaves it open; (None, None): all mistakes."""
        self.pair = (true_index, pred_index)
        self._select()

    def _select(self) -> None:
        t, p = self.pair
        if t is None and p is None:
            self.items = [q for q in self.predictions if q.get("true") != q.get("pred")]
        else:
            self.items = [q for q in self.predictions
                          if (t is None or q.get("true") == t) and (p is None or q.get("pred") == p)]
        self.all_btn.setVisible(self.pair != (None, None))
        self._fill()

    def _enable_heat(self) -> None:
        self.heat.setEnabled(self.source is not None)
        self.heat_for.setEnabled(self.source is not None)
        if self.source is None:
            self.heat.setToolTip("Heat maps need the run's model: open a run with a checkpoint.")

    def _heat_class(self, p: dict) -> int | None:
        key = self.heat_for.currentData() or "predicted"
        value = p.get("pred" if key == "predicted" else "true")
        return int(value) if isinstance(value, int) else None

    def _fill(self, *_args) -> None:
        most_first = bool(self.sort.currentData())
        shown = sorted(self.items, key=lambda p: p.get("confidence", 0.0), reverse=most_first)[:MAX_SHOWN]
        self.list.clear()
        for p in shown:
            self.list.addItem(self._item(p))
        self.count.setText(self._count_text(len(shown)))
        missing = {p["path"]: [p["path"]] for p in shown if p.get("path") and p["path"] not in self.thumbs}
        if missing:
            self.tasks.start("mistake-thumbs", read_many, missing, TILE, on_done=self._thumbs_loaded)
        self._start_heat(shown)

    def _item(self, p: dict) -> QListWidgetItem:
        true, pred = self._name(p.get("true")), self._name(p.get("pred"))
        conf = p.get("confidence", 0.0)
        item = QListWidgetItem(f"{true} → {pred}\n{conf:.0%} sure")
        item.setData(CONF_ROLE, conf)
        item.setData(PATH_ROLE, p.get("path", ""))
        item.setData(HEAT_ROLE, self._heat_class(p) if self.heat.isChecked() else None)
        item.setToolTip(f"{p.get('path', '')}\nTrue: {true}\nPredicted: {pred} ({conf:.1%})")
        self._set_icon(item)
        return item

    def _count_text(self, n_shown: int) -> str:
        n = len(self.items)
        t, p = self.pair
        if t is None and p is None:
            head = "No mistakes in this set." if n == 0 else f"{n} mistake(s)"
        else:
            what = (f"true {self._name(t)}" if t is not None else "any class") + " → " + \
                   (f"predicted {self._name(p)}" if p is not None else "any prediction")
            head = f"{n} image(s), {what}"
        return head + (f", showing {n_shown}" if n_shown < n else "")

    def _set_icon(self, item: QListWidgetItem) -> None:
        path, k = item.data(PATH_ROLE), item.data(HEAT_ROLE)
        pm = self.heat_thumbs.get((path, k)) if k is not None else None
        pm = pm if pm is not None else self.thumbs.get(path)
        if pm is not None:
            item.setIcon(QIcon(pm))

    # ------------------------------------------------------------------ background work
    def _start_heat(self, shown: list[dict]) -> None:
        if not self.heat.isChecked() or self.source is None:
            self.tasks.cancel("mistake-heat")
            return
        wanted = [(p["path"], k) for p in shown if p.get("path") and (k := self._heat_class(p)) is not None
                  and (p["path"], k) not in self.heat_thumbs]
        if wanted:
            self.tasks.start("mistake-heat", heat_thumbs_job, self.source, wanted, TILE, heavy=True,
                             on_progress=self._heat_loaded)

    def _heat_loaded(self, value: tuple) -> None:
        path, k, image = value
        if image is None:
            return
        self.heat_thumbs[(path, k)] = QPixmap.fromImage(image)
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(PATH_ROLE) == path and item.data(HEAT_ROLE) == k:
                self._set_icon(item)

    def _thumbs_loaded(self, result: dict) -> None:
        for path, images in result.items():
            if images and images[0] is not None:
                self.thumbs[path] = QPixmap.fromImage(images[0])
        for i in range(self.list.count()):
            self._set_icon(self.list.item(i))

    def _name(self, label) -> str:
        try:
            return self.classes[int(label)]
        except (TypeError, ValueError, IndexError):
            return str(label)

    # ------------------------------------------------------------------ for tests and callers
    def confidences(self) -> list[float]:
        return [self.list.item(i).data(CONF_ROLE) for i in range(self.list.count())]

    def paths(self) -> list[str]:
        return [Path(self.list.item(i).data(PATH_ROLE)).name for i in range(self.list.count())]

    def heat_shown(self) -> int:
        """How many tiles show their heat map now."""
        return sum(1 for i in range(self.list.count())
                   if (self.list.item(i).data(PATH_ROLE), self.list.item(i).data(HEAT_ROLE)) in self.heat_thumbs)
