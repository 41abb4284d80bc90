"""Small previews of image files, read on a worker thread (QImage is safe off the GUI thread;
QPixmap is made on it)."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter, QPixmap


def read_thumbnail(path: str, box: int) -> QImage | None:
    """Image at ``path`` scaled to fit ``box`` x ``box`` (small images are enlarged), or None."""
    reader = QImageReader(path)
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and size.width() > 0 and size.height() > 0:
        scale = box / max(size.width(), size.height())
        reader.setScaledSize(QSize(max(1, round(size.width() * scale)), max(1, round(size.height() * scale))))
    image = reader.read()
    if image.isNull():
        return None
    if max(image.width(), image.height()) != box:
        image = image.scaled(box, box, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
    return image


def read_many(task, groups: dict[str, list[str]], box: int) -> dict[str, list[QImage | None]]:
    """Job for TaskRunner: thumbnails of every path, grouped like the input."""
    out: dict[str, list[QImage | None]] = {}
    for key, paths in groups.items():
        if task.cancelled:
            break
        out[key] = [read_thumbnail(p, box) for p in paths]
    return out


def strip(images: list[QImage | None], box: int, gap: int = 3, background: QColor | None = None) -> QPixmap:
    """Thumbnails side by side in one pixmap (for a table cell)."""
    n = max(1, len(images))
    pm = QPixmap(n * box + (n - 1) * gap, box)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    for i, img in enumerate(images):
        x = i * (box + gap)
        if background is not None:
            p.fillRect(x, 0, box, box, background)
        if img is None:
            continue
        p.drawImage(x + (box - img.width()) // 2, (box - img.height()) // 2, img)
    p.end()
    return pm
