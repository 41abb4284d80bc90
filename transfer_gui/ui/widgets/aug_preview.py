"""A grid of augmented versions of one real image, made by the engine's own training
transform (so what you see is what the network sees), de-normalised for display."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from transfer_gui.ui.tasks import TaskRunner

COLS, ROWS = 4, 2


def augmented_samples(task, path: str, aug, input_size: int, n: int) -> list[QImage]:
    """Job for TaskRunner (worker thread): ``n`` training-transform samples of ``path``."""
    import numpy as np
    import torch

    from transfer_gui.engine.imageio import open_image
    from transfer_gui.engine.preprocess import Preprocessing, resize_transform, train_from_resized

    pre = Preprocessing().at_size(input_size)
    resized = resize_transform(pre)(open_image(path, reduce_for=pre.resize_size))
    tf = train_from_resized(pre, aug)
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    out = []
    for _ in range(n):
        if task.cancelled:
            break
        x = tf(resized)
        rgb = ((x * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
        arr = np.ascontiguousarray(rgb.numpy())
        h, w, _ = arr.shape
        out.append(QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy())
    return out


class AugmentPreview(QWidget):
    def __init__(self, tasks: TaskRunner, parent: QWidget | None = None, tile: int = 84):
        super().__init__(parent)
        self.tasks = tasks
        self.tile = tile
        self.setToolTip("Eight random training views of one of your images, made by the same transform "
                        "training uses. Click “New samples” to draw again.")
        grid = QGridLayout()
        grid.setSpacing(4)
        self.labels: list[QLabel] = []
        for i in range(COLS * ROWS):
            lab = QLabel()
            lab.setFixedSize(tile, tile)
            lab.setFrameShape(QFrame.Shape.StyledPanel)
            lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
            grid.addWidget(lab, i // COLS, i % COLS)
            self.labels.append(lab)
        self.note = QLabel("Add data to see augmented samples.")
        self.note.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(grid)
        lay.addWidget(self.note)
        self.images: list[QImage] = []

    def request(self, path: str | None, aug, input_size: int) -> None:
        if not path:
            self._show([])
            self.note.setText("Add data to see augmented samples.")
            return
        self.note.setText("Making samples…")
        self.tasks.start("augment-preview", augmented_samples, path, aug, input_size, COLS * ROWS, heavy=True,
                         on_done=self._done, on_error=lambda e: self.note.setText(f"No preview: {e}"))
        self._pending_note = ("Augmentation is off: every epoch sees the same centre crop (and the frozen "
                              "backbone's features are computed only once, which is fast)."
                              if not aug.enabled else
                              f"Random training views at {input_size}×{input_size} px.")

    def _done(self, images: list[QImage]) -> None:
        self._show(images)
        self.note.setText(self._pending_note)

    def _show(self, images: list[QImage]) -> None:
        self.images = images
        for i, lab in enumerate(self.labels):
            if i < len(images):
                pm = QPixmap.fromImage(images[i]).scaled(self.tile - 4, self.tile - 4, Qt.AspectRatioMode.KeepAspectRatio,
                                                         Qt.TransformationMode.SmoothTransformation)
                lab.setPixmap(pm)
            else:
                lab.clear()
