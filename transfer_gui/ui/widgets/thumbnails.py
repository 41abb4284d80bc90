"""Small previews of image files, read on a worker thread (QImage is safe off the GUI thread;
QPixmap is made on it)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap


def read_thumbnail(path: str, box: int) -> QImage | None:
    """Image at ``path`` scaled to fit ``box`` x ``box`` (small images are enlarged), or None.

    Decoded by the engine's ``open_image`` (so HEIC and DICOM show too, upright, alpha on white),
    with a large JPEG draft-decoded near the size shown."""
    from transfer_gui.engine.imageio import ImageError, open_image

    try:
        im = open_image(path, reduce_for=box)
    except ImageError:
        return None
    scale = box / max(im.width, im.height)
    if scale != 1:
        from PIL import Image

        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(size, Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)
    return QImage(im.tobytes(), im.width, im.height, 3 * im.width, QImage.Format.Format_RGB888).copy()


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
