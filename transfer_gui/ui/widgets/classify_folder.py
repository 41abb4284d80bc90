"""Classify a folder: the trained model over every image of a folder (recursively), in the
background with progress and cancel; a table of what it says about each image (its answer, or
"unsure" below the stored threshold, or why a file could not be read), saved as the same CSV
that ``transfer-gui predict --csv`` writes."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QHBoxLayout, QHeaderView, QLabel, QProgressBar,
                               QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from transfer_gui.ui import dialogs
from transfer_gui.ui.tasks import TaskRunner

CHUNK = 32  # images per progress report


def classify_job(task, model: str, folder: str) -> dict:
    """Worker thread: ``{"classes", "rows"}`` with one row per file (``predict_paths``' results)."""
    from transfer_gui.engine.predict import Predictor, expand_paths
    from transfer_gui.errors import Cancelled

    predictor = Predictor.load(model)
    paths = expand_paths([folder])
    rows: list[dict] = []
    for start in range(0, len(paths), CHUNK):
        if task.cancelled:
            raise Cancelled("classification stopped")
        rows.extend(predictor.predict_paths(paths[start:start + CHUNK], top_k=len(predictor.classes)))
        task.report((len(rows), len(paths)))
    return {"classes": predictor.classes, "rows": rows, "threshold": predictor.threshold}


def answer_of(row: dict) -> tuple[str, str]:
    """(what the model says, its confidence as text) for one result row."""
    if "error" in row:
        return f"not read: {row['error']}", ""
    name, prob = row["top"][0]
    return ("unsure (best guess " + name + ")" if row.get("unsure") else name), f"{prob:.1%}"


class ClassifyFolderDialog(QDialog):
    def __init__(self, tasks: TaskRunner, model: str, folder: str, parent: QWidget | None = None,
                 save_dir: str = ""):
        super().__init__(parent)
        self.tasks, self.model, self.folder, self.save_dir = tasks, model, folder, save_dir
        self.result: dict | None = None
        self.saved_to = ""
        self.setWindowTitle(f"Classify {Path(folder).name}")
        self.status = QLabel(f"Classifying the images in {folder}…")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Image", "Answer", "Confidence"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setSortingEnabled(True)
        self.save_btn = QPushButton("Save CSV…")
        self.save_btn.setEnabled(False)
        self.save_btn.setToolTip("One row per image: path, answer, confidence, then one probability column per "
                                 "class (the same columns as `transfer-gui predict --csv`).")
        self.save_btn.clicked.connect(self.save_dialog)
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.clicked.connect(lambda: self.tasks.cancel("classify-folder"))
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.save_btn)
        row.addStretch(1)
        row.addWidget(self.stop_btn)
        row.addWidget(close)
        lay = QVBoxLayout(self)
        for w in (self.status, self.progress):
            lay.addWidget(w)
        lay.addWidget(self.table, 1)
        lay.addLayout(row)
        self.resize(760, 520)

    def start(self) -> None:
        self.tasks.start("classify-folder", classify_job, self.model, self.folder, heavy=True,
                         on_done=self._done, on_error=self._failed, on_progress=self._progress)

    def reject(self) -> None:
        self.tasks.cancel("classify-folder")
        super().reject()

    def _progress(self, value) -> None:
        done, total = value
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.status.setText(f"Classifying the images in {self.folder}: {done} of {total}…")

    def _failed(self, exc: BaseException) -> None:
        self.stop_btn.setEnabled(False)
        self.status.setText(f"Cannot classify the folder: {exc}")

    def _done(self, result: dict) -> None:
        self.result = result
        rows = result["rows"]
        self.stop_btn.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            answer, conf = answer_of(row)
            for c, text in enumerate((row["path"], answer, conf)):
                item = QTableWidgetItem(text)
                if c == 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        bad = sum("error" in row for row in rows)
        unsure = sum(bool(row.get("unsure")) for row in rows)
        self.status.setText(f"{len(rows) - bad} image(s) classified ({unsure} unsure), {bad} could not be read, "
                            f"in {self.folder}.")
        self.save_btn.setEnabled(bool(rows))

    def save_dialog(self) -> None:
        path = dialogs.save_file(self, "Save the predictions", str(Path(self.save_dir or self.folder) /
                                                                  "predictions.csv"), "CSV files (*.csv)")
        if path:
            self.save(path)

    def save(self, path: str) -> None:
        from transfer_gui.engine.evaluate import write_predict_csv

        write_predict_csv(Path(path), self.result["classes"], self.result["rows"], self.result["threshold"])
        self.saved_to = path
        self.status.setText(self.status.text() + f" Saved to {path}.")
