"""A list of files that were left out of the data set, and why."""

from __future__ import annotations

from PySide6.QtWidgets import (QAbstractItemView, QApplication, QDialog, QDialogButtonBox, QHeaderView,
                               QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)


class SkippedDialog(QDialog):
    def __init__(self, skipped: list, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Skipped files")
        self.resize(820, 420)
        rows = [(getattr(s, "path", None) or s.get("path", ""), getattr(s, "reason", None) or s.get("reason", ""))
                for s in skipped]
        from transfer_gui.engine.imageio import MISSING_EXTRA

        extras = [f"{sum(r == reason for _, r in rows)} {kind} file(s) need the optional '{extra}' extra: "
                  f"pip install 'transfer-gui[{extra}]', then scan again."
                  for reason, (extra, kind) in MISSING_EXTRA.items() if any(r == reason for _, r in rows)]
        info = QLabel(" ".join([f"{len(rows)} file(s) or folder(s) were left out. Fix or remove them and scan "
                                f"again to include them.", *extras]))
        info.setWordWrap(True)
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["File", "Why it was skipped"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setToolTip("Every file that will not be used, with the reason.")
        self.table.verticalHeader().setVisible(False)
        for r, (path, reason) in enumerate(rows):
            item = QTableWidgetItem(str(path))
            item.setToolTip(str(path))
            self.table.setItem(r, 0, item)
            self.table.setItem(r, 1, QTableWidgetItem(str(reason)))
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = buttons.addButton("Copy list", QDialogButtonBox.ButtonRole.ActionRole)
        copy.setToolTip("Copy the paths and reasons to the clipboard, one per line.")
        copy.clicked.connect(lambda: QApplication.clipboard().setText(
            "\n".join(f"{p}\t{r}" for p, r in rows)))
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(info)
        lay.addWidget(self.table, 1)
        lay.addWidget(buttons)
