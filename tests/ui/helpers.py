"""What the window tests share besides fixtures: image folders to drop, simulated drops, opening
and closing a window, and waiting for a condition. The fixtures are in ``conftest.py`` here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

COLOURS = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210), "grey": (128, 128, 128)}


def make_class_folders(root: Path, counts: dict[str, int], size: int = 40, seed: int = 0) -> list[Path]:
    """One folder per class with small PNGs of a class colour plus noise and a shape, so a
    model can learn them; returns the class folders."""
    rng = np.random.default_rng(seed)
    folders = []
    for ci, (name, n) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array(COLOURS.get(name, (60 * ci % 255, 120, 200 - 40 * ci % 200)), dtype=np.float32)
        for i in range(n):
            img = np.clip(base + rng.normal(0, 25, size=(size, size, 3)), 0, 255)
            if ci % 2:
                img[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255 - base
            Image.fromarray(img.astype(np.uint8)).save(folder / f"{i:03d}.png")
        folders.append(folder)
    return folders


def drop_paths(target, paths: list[Path]) -> tuple[bool, bool]:
    """Simulate dragging ``paths`` from a file manager onto ``target``: (enter accepted, drop accepted)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    centre = target.rect().center()
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    try:  # Qt takes a QPoint here; PySide6 6.12 binds it with a QPointF
        enter = QDragEnterEvent(centre, *args)
    except TypeError:
        enter = QDragEnterEvent(QPointF(centre), *args)
    QApplication.sendEvent(target, enter)
    if not enter.isAccepted():
        return False, False
    drop = QDropEvent(QPointF(centre), *args)
    QApplication.sendEvent(target, drop)
    return True, drop.isAccepted()


def new_window(qtbot, settings: QSettings, background: bool = True):
    from transfer_gui.ui.main_window import MainWindow

    w = MainWindow(settings)
    w.resize(1280, 800)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    if background:
        w.start_background_work()
    return w


def close_window(w) -> None:
    w.training.shutdown()
    w.project.dirty = False
    w.close()
    w.tasks.shutdown()
    w.deleteLater()


def wait_for(qtbot, condition, timeout: float = 120.0) -> None:
    """Wait until ``condition()`` holds; it returns as soon as it does, so the limit only says when
    to give up: 120 s, as a worker's first import of torch and timm took 31 s of wall clock (3.2 s of
    CPU) on a 2-core machine at load 15, and a 30 s limit failed the window flow there."""
    qtbot.waitUntil(lambda: bool(condition()), timeout=int(timeout * 1000))
