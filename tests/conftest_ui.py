"""Shared helpers for the window tests (imported by tests/test_ui_*.py; not a pytest conftest,
so the engine's tests never load Qt)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from transfer_gui.ui import dialogs, theme  # noqa: E402

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


@pytest.fixture
def ui_env(tmp_path, monkeypatch, qapp):
    """Isolated settings and data folders, answered dialogs, light theme."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    answers = {"save_changes": dialogs.DISCARD, "yes_no": True, "errors": []}
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, what: answers["save_changes"])
    monkeypatch.setattr(dialogs, "ask_yes_no", lambda parent, title, text: answers["yes_no"])
    monkeypatch.setattr(dialogs, "show_error", lambda parent, title, text: answers["errors"].append(text))

    def no_file_dialog(parent, title, *args):  # a real one would block the test until its timeout
        raise AssertionError(f"a test opened the file dialog {title!r} without answering it")

    for name in ("open_file", "open_files", "save_file", "choose_folder"):
        monkeypatch.setattr(dialogs, name, no_file_dialog)
    theme.apply_theme(qapp, "light")
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    return {"settings": settings, "answers": answers, "tmp": tmp_path}


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


@pytest.fixture
def window(qtbot, ui_env):
    w = new_window(qtbot, ui_env["settings"])
    yield w
    close_window(w)


def wait_for(qtbot, condition, timeout: float = 30.0) -> None:
    qtbot.waitUntil(lambda: bool(condition()), timeout=int(timeout * 1000))
