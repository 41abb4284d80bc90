"""“Try it”: drop or open an image and see the model's top-5 classes as bars. The model is
loaded with the engine's Predictor on a worker thread, once per run folder."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QPixmap
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from transfer_gui.ui import dialogs
from transfer_gui.ui.tasks import TaskRunner
from transfer_gui.ui.theme import status_colors

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.webp *.tif *.tiff);;All files (*)"
TOP_K = 5
_PREDICTORS: dict[str, object] = {}


def predict_job(task, source: str, path: str):
    try:
        from transfer_gui.engine.predict import Predictor
    except ImportError:
        raise RuntimeError("Trying images needs the prediction engine (transfer_gui.engine.predict), which is "
                           "not part of this version.") from None
    predictor = _PREDICTORS.get(source)
    if predictor is None:
        predictor = Predictor.load(source)
        _PREDICTORS[source] = predictor
    return predictor.predict([path], top_k=TOP_K)[0]


class TryIt(QWidget):
    def __init__(self, tasks: TaskRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.tasks = tasks
        self.source: str | None = None
        self.setAcceptDrops(True)
        self.setToolTip("Drop an image here (or use Open image…) to see what the model says about it.")
        self.image = QLabel("Drop an image here")
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setFixedSize(240, 240)
        self._style_drop_zone()
        self.open_btn = QPushButton("&Open image…")
        self.open_btn.setToolTip("Choose an image file to classify.")
        self.open_btn.clicked.connect(self._open)
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
        left = QVBoxLayout()
        left.addWidget(self.image)
        left.addWidget(self.open_btn)
        left.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(QLabel("<b>Top classes</b>"))
        right.addLayout(grid)
        right.addWidget(self.status)
        right.addStretch(1)
        lay = QHBoxLayout(self)
        lay.addLayout(left)
        lay.addLayout(right, 1)
        self.results: list[tuple[str, float]] = []
        self._clear_bars()

    def _style_drop_zone(self) -> None:
        from transfer_gui.ui.theme import drop_zone_css

        self.image.setStyleSheet(drop_zone_css())

    def set_source(self, source: str | None) -> None:
        if source != self.source:
            _PREDICTORS.pop(str(source), None)  # a run folder may have a newer checkpoint now
        self.source = source
        self.open_btn.setEnabled(source is not None)

    def _open(self) -> None:
        path = dialogs.open_file(self, "Open an image", str(Path.home()), IMAGE_FILTER)
        if path:
            self.classify(path)

    def classify(self, path: str) -> None:
        if self.source is None:
            self._say("Train a model or open a run folder first.", "warn")
            return
        pm = QPixmap(path)
        if not pm.isNull():
            self.image.setPixmap(pm.scaled(232, 232, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation))
        self._say(f"Classifying {Path(path).name}…", "muted")
        self.tasks.start("try-it", predict_job, self.source, path, heavy=True, on_done=self._show,
                         on_error=lambda e: self._say(str(e), "error"))

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
