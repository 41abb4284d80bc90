"""“Try it”: drop or open an image and see the model's top-5 classes as bars, and on request a
heat map over the image of where the model looked, for the predicted class or any other. The
model is loaded with the engine's Predictor (and, for heat maps, as a module by
``engine.explain``) on a worker thread, once per run folder; torch never loads on the GUI
thread."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QVBoxLayout, QWidget)

from transfer_gui.engine.formats import image_file_filter
from transfer_gui.ui import dialogs
from transfer_gui.ui.tasks import TaskRunner
from transfer_gui.ui.theme import status_colors

TOP_K = 5
SHOWN = 232  # the image's box on screen
_PREDICTORS: dict[str, object] = {}
_EXPLAINABLES: dict[str, object] = {}


def predict_job(task, source: str, path: str) -> dict:
    try:
        from transfer_gui.engine.predict import Predictor
    except ImportError:
        raise RuntimeError("Trying images needs the prediction engine (transfer_gui.engine.predict), which is "
                           "not part of this version.") from None
    predictor = _PREDICTORS.get(source)
    if predictor is None:
        predictor = Predictor.load(source)
        _PREDICTORS[source] = predictor
    from transfer_gui.ui.widgets.thumbnails import read_thumbnail

    return {"top": predictor.predict([path], top_k=TOP_K)[0], "classes": list(predictor.classes),
            "preview": read_thumbnail(path, SHOWN)}  # decoded here, not on the GUI thread (a 12 MP photo, HEIC)


def qimage_of(pil) -> QImage:
    """A PIL image as a QImage that owns its pixels (safe to make on a worker thread)."""
    rgb = pil.convert("RGB")
    return QImage(rgb.tobytes(), rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888).copy()


def heat_image(source: str, path: str, class_index: int | None, box: int) -> tuple[QImage, dict]:
    """Worker thread: the image at ``path`` with its heat map over it, fitted into ``box`` pixels,
    and what it shows (class index, name, probability, layer)."""
    from transfer_gui.engine import explain
    from transfer_gui.engine.imageio import open_image

    model = _EXPLAINABLES.get(source)
    if model is None:
        model = explain.load_explainable(source)
        _EXPLAINABLES[source] = model
    image = open_image(path, reduce_for=max(box, model.preprocessing.resize_size))
    result = explain.explain(model, image, class_index)
    shown = explain.overlay(image, result.heatmap)
    scale = box / max(shown.size)  # fitted both ways: a 28-pixel image is enlarged like its plain preview
    if scale != 1:
        from PIL import Image

        shown = shown.resize((max(1, round(shown.width * scale)), max(1, round(shown.height * scale))),
                             Image.Resampling.BICUBIC)
    return qimage_of(shown), {"class_index": result.class_index, "class_name": result.class_name,
                              "probability": result.probability, "layer": result.target_layer,
                              "method": explain.METHOD_NAMES.get(result.method, result.method)}


def heat_job(task, source: str, path: str, class_index: int | None, box: int) -> tuple[QImage, dict]:
    return heat_image(source, path, class_index, box)


class TryIt(QWidget):
    def __init__(self, tasks: TaskRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.tasks = tasks
        self.source: str | None = None
        self.path: str | None = None
        self.classes: list[str] = []
        self.results: list[tuple[str, float]] = []
        self.heat_state = "off"  # "off", "computing", "shown" or "failed"
        self.heat_info: dict = {}  # what the shown heat map is of (class_index, class_name, probability, layer)
        self._plain: QPixmap | None = None
        self.setAcceptDrops(True)
        self.setToolTip("Drop an image here (or use Open image…) to see what the model says about it.")
        left = self._build_image_side()
        right = self._build_bars()
        lay = QHBoxLayout(self)
        lay.addLayout(left)
        lay.addLayout(right, 1)
        self._clear_bars()

    def _build_image_side(self) -> QVBoxLayout:
        self.image = QLabel("Drop an image here")
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setFixedSize(240, 240)
        self._style_drop_zone()
        self.open_btn = QPushButton("&Open image…")
        self.open_btn.setToolTip("Choose an image file to classify.")
        self.open_btn.clicked.connect(self._open)
        self.heat = QCheckBox("&Heat map")
        self.heat.setToolTip("Colour the image by where the model looked for the class chosen below (Grad-CAM): "
                             "red weighed most for it, blue least. Parts the model's centre crop cuts off stay blue.")
        self.heat.toggled.connect(self._heat_toggled)
        self.heat_class = QComboBox()
        self.heat_class.setAccessibleName("Heat map for class")
        self.heat_class.setToolTip("The class the heat map explains: the predicted one, or any other to see where "
                                   "the model found evidence for it.")
        self.heat_class.addItem("Predicted class", None)
        self.heat_class.currentIndexChanged.connect(lambda _i: self._refresh_heat())
        self.heat.setEnabled(False)
        self.heat_class.setEnabled(False)
        left = QVBoxLayout()
        left.addWidget(self.image)
        left.addWidget(self.open_btn)
        row = QHBoxLayout()
        row.addWidget(self.heat)
        row.addWidget(self.heat_class, 1)
        left.addLayout(row)
        left.addStretch(1)
        return left

    def _build_bars(self) -> QVBoxLayout:
        self.status = QLabel()
        self.status.setWordWrap(True)
        grid = QGridLayout()
        self.names: list[QLabel] = []
        self.bars: list[QProgressBar] = []
        for i in range(TOP_K):
            name = QLabel()
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(True)
            bar.setFormat("")
            bar.setToolTip("The model's probability for this class.")
            grid.addWidget(name, i, 0)
            grid.addWidget(bar, i, 1)
            self.names.append(name)
            self.bars.append(bar)
        grid.setColumnStretch(1, 1)
        right = QVBoxLayout()
        right.addWidget(QLabel("<b>Top classes</b>"))
        right.addLayout(grid)
        right.addWidget(self.status)
        right.addStretch(1)
        return right

    def _style_drop_zone(self) -> None:
        from transfer_gui.ui.theme import drop_zone_css

        self.image.setStyleSheet(drop_zone_css())

    def set_source(self, source: str | None) -> None:
        if source != self.source:
            _PREDICTORS.pop(str(source), None)  # a run folder may have a newer checkpoint now
            _EXPLAINABLES.pop(str(source), None)
            self._set_classes([])
        self.source = source
        self.open_btn.setEnabled(source is not None)

    def _open(self) -> None:
        path = dialogs.open_file(self, "Open an image", str(Path.home()), image_file_filter())
        if path:
            self.classify(path)

    def classify(self, path: str) -> None:
        if self.source is None:
            self._say("Train a model or open a run folder first.", "warn")
            return
        self.path = path
        self._plain = None  # the worker sends the preview with the classes
        self.heat_state, self.heat_info = "off", {}
        self._say(f"Classifying {Path(path).name}…", "muted")
        self.tasks.start("try-it", predict_job, self.source, path, heavy=True, on_done=self._predicted,
                         on_error=lambda e: self._say(str(e), "error"))

    def _predicted(self, result: dict) -> None:
        self._set_classes(result.get("classes", []))
        preview = result.get("preview")
        if preview is not None:
            self._plain = QPixmap.fromImage(preview)
            self.image.setPixmap(self._plain)
        self._show(result["top"])
        self._refresh_heat()

    def _set_classes(self, classes: list[str]) -> None:
        if list(classes) == self.classes:
            return
        self.classes = list(classes)
        self.heat_class.blockSignals(True)
        self.heat_class.clear()
        self.heat_class.addItem("Predicted class", None)
        for i, name in enumerate(self.classes):
            self.heat_class.addItem(name, i)
        self.heat_class.blockSignals(False)
        self.heat.setEnabled(bool(self.classes))
        self.heat_class.setEnabled(bool(self.classes))

    def _show(self, top: list[tuple[str, float]]) -> None:
        self.results = [(str(c), float(p)) for c, p in top]
        self._clear_bars()
        for i, (name, bar) in enumerate(zip(self.names, self.bars)):
            name.setVisible(i < len(self.results))
            bar.setVisible(i < len(self.results))
        for i, (cls, prob) in enumerate(self.results[:TOP_K]):
            self.names[i].setText(cls)
            self.bars[i].setValue(round(prob * 1000))
            self.bars[i].setFormat(f"{prob:.1%}")
        if self.results:
            self._say(f"Most likely <b>{self.results[0][0]}</b> ({self.results[0][1]:.1%}).", "ok")

    # ------------------------------------------------------------------ heat map
    def _heat_toggled(self, on: bool) -> None:
        if on:
            self._refresh_heat()
            return
        self.tasks.cancel("try-it-heat")
        self.heat_state, self.heat_info = "off", {}
        if self._plain is not None:
            self.image.setPixmap(self._plain)

    def _refresh_heat(self) -> None:
        if not self.heat.isChecked() or self.source is None or self.path is None:
            return
        self.heat_state = "computing"
        self.tasks.start("try-it-heat", heat_job, self.source, self.path, self.heat_class.currentData(), SHOWN,
                         heavy=True, on_done=self._heat_shown, on_error=self._heat_failed)

    def _heat_shown(self, result: tuple[QImage, dict]) -> None:
        image, info = result
        if not self.heat.isChecked():
            return
        self.image.setPixmap(QPixmap.fromImage(image))
        self.heat_state, self.heat_info = "shown", dict(info)
        self._say(f"Heat map for <b>{info['class_name']}</b> ({info['probability']:.1%}; {info['method']} on "
                  f"{info['layer']}): red is where the model found the most evidence for it.", "ok")

    def _heat_failed(self, exc: BaseException) -> None:
        self.heat_state, self.heat_info = "failed", {}
        self._say(f"No heat map: {exc}", "error")

    def _clear_bars(self) -> None:
        for name, bar in zip(self.names, self.bars):
            name.setText("")
            bar.setValue(0)
            bar.setFormat("")

    def _say(self, text: str, kind: str) -> None:
        self.status.setText(f"<span style='color:{status_colors()[kind]}'>{text}</span>")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() and Path(u.toLocalFile()).is_file()
                                              for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile() and Path(u.toLocalFile()).is_file()]
        if files:
            self.classify(files[0])
            event.acceptProposedAction()
