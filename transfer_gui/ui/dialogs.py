"""Every modal question the window asks goes through here, so tests can answer them."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from transfer_gui.ui.applog import info as _log

SAVE, DISCARD, CANCEL = "save", "discard", "cancel"


def ask_save_changes(parent: QWidget, what: str) -> str:
    _log(f"dialog: Unsaved changes: {what}")
    box = QMessageBox(QMessageBox.Icon.Question, "Unsaved changes",
                      f"{what} has unsaved changes. Save them?",
                      QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                      | QMessageBox.StandardButton.Cancel, parent)
    box.setDefaultButton(QMessageBox.StandardButton.Save)
    answer = box.exec()
    if answer == QMessageBox.StandardButton.Save:
        return SAVE
    if answer == QMessageBox.StandardButton.Discard:
        return DISCARD
    return CANCEL


def ask_yes_no(parent: QWidget, title: str, text: str) -> bool:
    _log(f"dialog: {title}")
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def show_error(parent: QWidget, title: str, text: str) -> None:
    _log(f"dialog: {title}: {text}")
    QMessageBox.warning(parent, title, text)


def open_file(parent: QWidget, title: str, folder: str, filters: str) -> str:
    _log(f"dialog: {title}")
    path, _ = QFileDialog.getOpenFileName(parent, title, folder, filters)
    return path


def open_files(parent: QWidget, title: str, folder: str, filters: str) -> list[str]:
    _log(f"dialog: {title}")
    paths, _ = QFileDialog.getOpenFileNames(parent, title, folder, filters)
    return list(paths)


def save_file(parent: QWidget, title: str, folder: str, filters: str) -> str:
    _log(f"dialog: {title}")
    path, _ = QFileDialog.getSaveFileName(parent, title, folder, filters)
    return path


def choose_folder(parent: QWidget, title: str, folder: str) -> str:
    _log(f"dialog: {title}")
    return QFileDialog.getExistingDirectory(parent, title, folder)
