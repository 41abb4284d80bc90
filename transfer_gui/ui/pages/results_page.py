"""Step 5, Results: the confusion matrix, per-class precision / recall, a gallery of
validation mistakes, and “Try it” on new images. Shows the run that just finished or any
run folder opened from disk (e.g. one trained on a cluster)."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from transfer_gui.ui import dialogs
from transfer_gui.ui.context import Context
from transfer_gui.ui.theme import status_colors
from transfer_gui.ui.widgets.confusion import ConfusionTable, per_class_metrics
from transfer_gui.ui.widgets.mistakes import MistakesGallery
from transfer_gui.ui.widgets.skipped_dialog import SkippedDialog
from transfer_gui.ui.widgets.try_it import TryIt


def load_run_job(task, run_dir: str):
    from transfer_gui.engine.rundir import load_run

    return load_run(run_dir)


class _NumberItem(QTableWidgetItem):
    """Sorts by its number (UserRole), not by its text ("100.0%" < "92.3%" as text)."""

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a, b = self.data(Qt.ItemDataRole.UserRole), other.data(Qt.ItemDataRole.UserRole)
        a = -1.0 if a is None or a != a else a  # NaN (no predictions of a class) sorts first
        b = -1.0 if b is None or b != b else b
        return a < b


def _pct(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1%}"


class ResultsPage(QWidget):
    def __init__(self, ctx: Context):
        super().__init__()
        self.ctx = ctx
        self.project = ctx.project
        self._build()
        self.project.run_changed.connect(self._show_record)
        self.project.runs_changed.connect(self._fill_runs)
        self._show_record()

    def _build(self) -> None:
        self.summary = QLabel("No run yet.")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(self._build_top())
        lay.addWidget(self.summary)
        lay.addWidget(self._build_tabs(), 1)

    def _build_top(self) -> QHBoxLayout:
        """The run to show: the project's runs, its skipped files, another run folder."""
        self.open_btn = QPushButton("Open run folder…")
        self.open_btn.setToolTip("Inspect any finished run: choose its folder (the one with config.toml and "
                                 "checkpoints/), e.g. a run trained on a cluster.")
        self.open_btn.clicked.connect(self.open_run_dialog)
        self.skipped_btn = QPushButton()
        self.skipped_btn.setToolTip("Files this run could not use, and why.")
        self.skipped_btn.clicked.connect(self._show_skipped)
        self.skipped_btn.setVisible(False)
        self.run_list = QComboBox()
        self.run_list.setAccessibleName("Runs of this project")
        self.run_list.setToolTip("Every run in this project's runs folder, and any run folder you opened, newest "
                                 "first. Choose one to see its results.")
        self.run_list.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_list.setMinimumContentsLength(24)
        self.run_list.activated.connect(self._run_chosen)
        runs_label = QLabel("R&un")
        runs_label.setBuddy(self.run_list)
        top = QHBoxLayout()
        top.addWidget(runs_label)
        top.addWidget(self.run_list, 1)
        top.addWidget(self.skipped_btn)
        top.addWidget(self.open_btn)
        return top

    def _build_quality(self) -> QWidget:
        """The Accuracy tab: the confusion matrix beside the per-class table."""
        self.confusion = ConfusionTable()
        self.per_class = QTableWidget(0, 5)
        self.per_class.setHorizontalHeaderLabels(["Class", "Images", "Accuracy", "Precision", "F1"])
        tips = ["The class.", "Validation images of this class.",
                "Share of this class's images the model got right (its recall).",
                "When the model says this class, how often it is right.",
                "Balance of precision and recall (their harmonic mean)."]
        for i, tip in enumerate(tips):
            self.per_class.horizontalHeaderItem(i).setToolTip(tip)
        self.per_class.setToolTip("Per-class quality on the validation images, from the best epoch's model.")
        self.per_class.verticalHeader().setVisible(False)
        self.per_class.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.per_class.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.per_class.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.per_class.setSortingEnabled(True)
        quality = QWidget()
        q = QHBoxLayout(quality)
        left = QVBoxLayout()
        left.addWidget(QLabel("<b>Confusion matrix</b> (rows: true class, columns: predicted)"))
        left.addWidget(self.confusion, 1)
        right = QVBoxLayout()
        right.addWidget(QLabel("<b>Per class</b>"))
        right.addWidget(self.per_class, 1)
        q.addLayout(left, 1)
        q.addLayout(right, 1)
        return quality

    def _build_tabs(self) -> QTabWidget:
        quality = self._build_quality()
        self.mistakes = MistakesGallery(self.ctx.tasks)
        self.try_it = TryIt(self.ctx.tasks)
        self.tabs = QTabWidget()
        self.tabs.addTab(quality, "Accuracy")
        self.tabs.addTab(self.mistakes, "Mistakes")
        self.tabs.addTab(self.try_it, "Try it")
        self.tabs.setTabToolTip(0, "Confusion matrix and per-class precision and recall.")
        self.tabs.setTabToolTip(1, "Validation images the model got wrong.")
        self.tabs.setTabToolTip(2, "Classify your own images with the trained model.")
        return self.tabs

    # ------------------------------------------------------------------ loading
    def runs_start_dir(self) -> str:
        """Where the Open Run Folder dialog starts: the project's runs folder (created if need be,
        so that a hidden default such as ~/.local/share/... is where the dialog opens)."""
        root = self.project.runs_dir()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            return self.ctx.last_dir("runs")
        return str(root)

    def open_run_dialog(self) -> None:
        path = dialogs.choose_folder(self, "Open a run folder", self.runs_start_dir())
        if path:
            self.ctx.remember_dir("runs", str(Path(path).parent))
            if Path(path).absolute().parent != self.project.runs_dir().absolute():
                self.project.opened_runs.append(Path(path))
            self.open_run(path)

    def refresh_runs(self, open_latest: bool = False) -> None:
        """Read the project's runs again; with ``open_latest`` show the newest with a finished epoch."""
        self.project.set_runs(self.project.find_runs())
        if open_latest and self.project.record is None:
            from transfer_gui.engine.runs import latest_finished

            latest = latest_finished(self.project.runs)
            if latest is not None:
                self.open_run(str(latest.run_dir), show=False)

    def _fill_runs(self) -> None:
        self.run_list.blockSignals(True)
        try:
            self.run_list.clear()
            for info in self.project.runs:
                self.run_list.addItem(info.label, str(info.run_dir))
                self.run_list.setItemData(self.run_list.count() - 1, str(info.run_dir), Qt.ItemDataRole.ToolTipRole)
            if not self.project.runs:
                self.run_list.addItem("no runs yet in " + str(self.project.runs_dir()), "")
            self._select_shown_run()
        finally:
            self.run_list.blockSignals(False)
        self.run_list.setEnabled(bool(self.project.runs))

    def _select_shown_run(self) -> None:
        shown = self.project.run_dir
        index = -1
        if shown is not None:
            for i in range(self.run_list.count()):
                data = self.run_list.itemData(i)
                if data and Path(data).absolute() == shown.absolute():
                    index = i
        self.run_list.setCurrentIndex(index)

    def _run_chosen(self, index: int) -> None:
        run_dir = self.run_list.itemData(index)
        if run_dir and (self.project.run_dir is None or Path(run_dir).absolute() != self.project.run_dir.absolute()):
            self.open_run(run_dir)

    def open_run(self, run_dir: str, show: bool = True) -> None:
        self.summary.setText(f"Loading {run_dir}…")
        self.ctx.tasks.start("load-run", load_run_job, str(run_dir), heavy=True,
                             on_done=lambda rec: self._loaded(run_dir, rec, show), on_error=self._failed)

    def _loaded(self, run_dir: str, record, show: bool) -> None:
        self.project.set_run(run_dir, record)
        if not any(Path(r.run_dir).absolute() == Path(run_dir).absolute() for r in self.project.runs):
            self.refresh_runs()  # a run this list has not seen yet (just trained, or opened)
        if show:
            self.ctx.go_to("Results")

    def _failed(self, exc: BaseException) -> None:
        self.summary.setText(f"<span style='color:{status_colors()['error']}'>Cannot open the run: {exc}</span>")

    def try_images(self, paths: list[str]) -> None:
        self.tabs.setCurrentWidget(self.try_it)
        self.try_it.classify(paths[0])

    # ------------------------------------------------------------------ showing
    def on_theme_changed(self) -> None:
        self.try_it._style_drop_zone()
        self._show_record()
        if self.try_it.results:
            self.try_it._show(self.try_it.results)

    def _show_record(self) -> None:
        rec = self.project.record
        self.run_list.blockSignals(True)
        self._select_shown_run()
        self.run_list.blockSignals(False)
        self.try_it.set_source(str(rec.run_dir) if rec is not None and rec.best_checkpoint else None)
        if rec is None:
            n = len(self.project.runs)
            self.summary.setText(f"No run shown: choose one of this project's {n} run(s) above, or train a model."
                                 if n else "No run yet: train a model, or open a run folder.")
            self.confusion.set_matrix([], [])
            self.per_class.setRowCount(0)
            self.mistakes.set_predictions([], [])
            self.skipped_btn.setVisible(False)
            return
        s = rec.summary or {}
        accs = [h.get("val_acc") for h in rec.history if isinstance(h.get("val_acc"), (int, float))]
        best_i = max(range(len(accs)), key=lambda i: accs[i]) if accs else None
        parts = [f"<b>{rec.run_dir.name}</b> — {rec.config.model.name}, {len(rec.classes)} classes, "
                 f"{len(rec.history)} epoch(s)"]
        if best_i is not None:
            parts.append(f"best validation accuracy <b>{_pct(accs[best_i])}</b> at epoch {best_i + 1}")
        if s.get("status"):
            parts.append(f"{s['status'].replace('_', ' ')}")
        self.summary.setText(", ".join(parts) + f".<br><span style='color:{status_colors()['muted']}'>"
                             f"{rec.run_dir}</span>")
        self.summary.setToolTip(s.get("message", ""))
        matrix = rec.confusion() if rec.predictions else [[0] * len(rec.classes) for _ in rec.classes]
        self.confusion.set_matrix(rec.classes, matrix)
        self._fill_per_class(rec.classes, matrix)
        self.mistakes.set_predictions(rec.classes, rec.predictions)
        self.skipped_btn.setVisible(bool(rec.skipped))
        self.skipped_btn.setText(f"{len(rec.skipped)} skipped file(s)…")

    def _fill_per_class(self, classes: list[str], matrix: list[list[int]]) -> None:
        metrics = per_class_metrics(matrix)
        self.per_class.setSortingEnabled(False)
        self.per_class.setRowCount(len(classes))
        for r, (name, m) in enumerate(zip(classes, metrics)):
            values = [(name, name), (str(m["support"]), m["support"]), (_pct(m["recall"]), m["recall"]),
                      (_pct(m["precision"]), m["precision"]), (_pct(m["f1"]), m["f1"])]
            for c, (text, key) in enumerate(values):
                item = _NumberItem(text) if c else QTableWidgetItem(text)
                if c:
                    item.setData(Qt.ItemDataRole.UserRole, key)
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.per_class.setItem(r, c, item)
        self.per_class.setSortingEnabled(True)
        self.per_class.sortItems(0, Qt.SortOrder.AscendingOrder)

    def _show_skipped(self) -> None:
        if self.project.record is not None:
            self.skipped_dialog = SkippedDialog(self.project.record.skipped, self)
            self.skipped_dialog.show()
