"""Step 5, Results: can this model be trusted? For the validation set, and the test set when the
run has one: headline figures, the confusion matrix (a heat map past 20 classes) with the most
confused pairs, per-class precision / recall / F1, the confidence threshold explorer, the
reliability diagram, precision-recall curves, a gallery of mistakes, "Try it" on new images, a
self-contained report and "Classify a folder". Shows the run that just finished or any run
folder opened from disk (e.g. one trained on a cluster). The Runs tab compares the project's runs
(ui/widgets/runs_table.py over state/runs_view.py) and copies one run's settings back."""

from __future__ import annotations

import math
import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QTabWidget, QVBoxLayout, QWidget

from transfer_gui.config import ConfigError
from transfer_gui.errors import Cancelled
from transfer_gui.engine import runs as runs_mod
from transfer_gui.engine.exportjob import eta_words
from transfer_gui.state import evaluation_view
from transfer_gui.state.runs_view import RunsView
from transfer_gui.ui import dialogs
from transfer_gui.ui.context import Context
from transfer_gui.ui.runs_watcher import RunsWatcher
from transfer_gui.ui.theme import status_colors
from transfer_gui.ui.widgets.classify_folder import ClassifyFolderDialog
from transfer_gui.ui.widgets.confidence_view import ConfidenceView
from transfer_gui.ui.widgets.mistakes import MistakesGallery
from transfer_gui.ui.widgets.quality_view import QualityView
from transfer_gui.ui.widgets.runs_table import RunsCompare
from transfer_gui.ui.widgets.skipped_dialog import SkippedDialog
from transfer_gui.ui.widgets.try_it import TryIt


def _pct(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1%}"


class _Tabs(QTabWidget):
    """Tabs whose height does not follow their pages' preferred height for a width (word-wrapped
    labels over plots would ask for over 1,000 pixels and make the page scroll): the tabs take
    the height the window gives them, down to their minimum."""

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt's name
        return False


def store_threshold_job(task, run_dir: str, value: float) -> None:
    from transfer_gui.engine.calibration import set_threshold

    set_threshold(run_dir, value)


def report_job(task, run_dir: str, which: str, folder: str, clock=time.monotonic) -> Path | None:
    """Worker thread: report.html, predictions.csv and metrics.json of one set of a run. The heat
    maps of the mistakes gallery are the long part: each one is reported as (done, total, seconds
    left or None), and a cancel stops before the next one (None: nothing was written)."""
    from transfer_gui.engine import evaluate, report
    from transfer_gui.engine.exportjob import time_left

    from transfer_gui.engine.explain import overlay_maker

    evaluation = evaluate.evaluation_from_run(run_dir, which)
    total, draw, began, done = report.gallery_size(evaluation), overlay_maker(run_dir), clock(), [0]

    def heatmap_for(path: str):
        if task.cancelled:
            raise Cancelled("report cancelled")
        overlay = draw(path)
        done[0] += 1
        task.report((done[0], total, time_left(clock() - began, done[0] / max(total, 1))), force=True)  # few: each one
        return overlay

    heatmap_for.method = getattr(draw, "method", "")
    task.report((0, total, None), force=True)
    try:
        written = evaluate.write_outputs(evaluation, Path(folder), heatmap_for=heatmap_for)
    except Cancelled:
        return None
    return written["report.html"]


def load_run_job(task, run_dir: str):
    from transfer_gui.engine.rundir import load_run

    return load_run(run_dir)


def resume_text(info: runs_mod.RunInfo) -> str:
    """``Run 20261208-031500 was interrupted after epoch 2 of 15.`` (what the resume offer says)."""
    epochs = info.config.get("train.epochs")
    of = f" of {epochs}" if isinstance(epochs, int) else ""
    how = {"interrupted": "was interrupted", "stopped": "was stopped", "failed": "failed"}.get(info.state, "ended")
    return f"Run {info.run_dir.name} {how} after epoch {info.epochs_done}{of}."


class ResultsPage(QWidget):
    resume_requested = Signal(str)  # a run folder to train on from its last.pt

    def __init__(self, ctx: Context):
        super().__init__()
        self.ctx = ctx
        self.project = ctx.project
        self._build()
        self.project.run_changed.connect(self._show_record)
        self.project.runs_changed.connect(self._fill_runs)
        for sig in (self.project.run_changed, self.project.runs_changed, self.project.training_changed):
            sig.connect(lambda *_: self._offer_resume())
        self.runs_watcher = RunsWatcher(self.project, self)  # runs trained elsewhere appear while open
        self._show_record()
        self._offer_resume()

    def _build(self) -> None:
        self.summary = QLabel("No run yet.")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(self._build_top())
        lay.addWidget(self.summary)
        lay.addLayout(self._build_resume())
        lay.addLayout(self._build_actions())
        lay.addWidget(self._build_tabs(), 1)

    def _build_top(self) -> QHBoxLayout:
        """The run to show and its set; the run's skipped files; another run folder."""
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
        top.addWidget(self._build_set_choice())
        top.addWidget(self.skipped_btn)
        top.addWidget(self.open_btn)
        return top

    def _build_resume(self) -> QHBoxLayout:
        """The offer to resume a run that ended before its last epoch (hidden when there is none)."""
        self.resume_note = QLabel()
        self.resume_note.setWordWrap(True)
        self.resume_btn = QPushButton("Resume run")
        self.resume_btn.setToolTip("Train the rest of this run's epochs from its last checkpoint, with its own "
                                   "settings (its config.toml), as “transfer-gui train --resume” does.")
        self.resume_btn.clicked.connect(self._resume_offered)
        row = QHBoxLayout()
        row.addWidget(self.resume_note, 1)
        row.addWidget(self.resume_btn)
        self.resume_note.setVisible(False)
        self.resume_btn.setVisible(False)
        return row

    def _offer_resume(self) -> None:
        offer = self.project.resume_offer()
        self.resume_note.setVisible(offer is not None)
        self.resume_btn.setVisible(offer is not None)
        self.runs_compare.set_training(self.project.training)
        if offer is None:
            return
        shown = self.project.run_dir
        also = (f" Shown here: {shown.name}, which finished." if shown is not None and
                offer.run_dir.absolute() != shown.absolute() and self._state_of(shown) in runs_mod.FINISHED else "")
        self.resume_note.setText(f"<span style='color:{status_colors()['warn']}'>{resume_text(offer)}{also}</span>")
        self.resume_btn.setText(f"Resume run from epoch {offer.resume_epoch}")
        self.resume_btn.setProperty("run_dir", str(offer.run_dir))

    def _resume_offered(self) -> None:
        run_dir = self.resume_btn.property("run_dir")
        if run_dir:
            self.resume_requested.emit(str(run_dir))

    def _build_set_choice(self) -> QComboBox:
        self.set_choice = QComboBox()
        self.set_choice.setAccessibleName("Set of images to judge the model on")
        self.set_choice.setToolTip("Validation: the images that chose the best epoch. Test: images the run never "
                                   "chose anything by, evaluated once at the end: the honest figure.")
        self.set_choice.activated.connect(lambda _i: self._show_set())
        return self.set_choice

    def _build_actions(self) -> QHBoxLayout:
        self.report_btn = QPushButton("Save &report…")
        self.report_btn.setToolTip("Write a self-contained report.html of this run and set (settings, curves, "
                                   "per-class table, confusion, calibration, mistakes), with predictions.csv "
                                   "and metrics.json beside it.")
        self.report_btn.clicked.connect(self.save_report_dialog)
        self.classify_btn = QPushButton("&Classify a folder…")
        self.classify_btn.setToolTip("Run this model over a folder of images and save what it says about each "
                                     "one as a CSV file.")
        self.classify_btn.clicked.connect(self.classify_folder_dialog)
        self.action_note = QLabel()
        self.action_note.setWordWrap(True)
        self.action_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.report_cancel = QPushButton("Cancel report")
        self.report_cancel.setToolTip("Stop writing the report; files already in the folder stay as they were.")
        self.report_cancel.clicked.connect(self.cancel_report)
        self.report_cancel.setVisible(False)
        row = QHBoxLayout()
        row.addWidget(self.report_btn)
        row.addWidget(self.classify_btn)
        row.addWidget(self.action_note, 1)
        row.addWidget(self.report_cancel)
        return row

    def _build_tabs(self) -> QTabWidget:
        self.quality = QualityView()
        self.quality.pair_chosen.connect(self.show_pair)
        self.confidence = ConfidenceView()
        self.confidence.explorer.store_requested.connect(self.store_threshold)
        self.mistakes = MistakesGallery(self.ctx.tasks)
        self.try_it = TryIt(self.ctx.tasks)
        self.tabs = _Tabs()
        self.tabs.addTab(self.quality, "Accuracy")
        self.tabs.addTab(self.confidence, "Confidence")
        self.tabs.addTab(self.mistakes, "Mistakes")
        self.tabs.addTab(self.try_it, "Try it")
        self.tabs.addTab(self._build_runs_tab(), "Runs")
        self.tabs.setTabToolTip(0, "Headline figures, confusion matrix, per-class precision, recall and F1, and "
                                   "the most confused pairs.")
        self.tabs.setTabToolTip(1, "How far to trust the model's confidence: threshold explorer, reliability "
                                   "diagram, precision-recall curves.")
        self.tabs.setTabToolTip(2, "Images the model got wrong.")
        self.tabs.setTabToolTip(3, "Classify your own images with the trained model.")
        self.tabs.setTabToolTip(4, "Every run of this project: compare their curves and settings, and use one "
                                   "run's settings again.")
        return self.tabs

    def _build_runs_tab(self) -> RunsCompare:
        self.runs_view = RunsView()
        self.runs_compare = RunsCompare(self.runs_view)
        self.runs_compare.open_requested.connect(self._show_run_from_table)
        self.runs_compare.use_requested.connect(self.use_settings)
        self.runs_compare.undo_requested.connect(self.undo_settings)
        self.runs_compare.resume_requested.connect(self.resume_requested.emit)
        return self.runs_compare

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
        self.runs_view.set_runs(self.project.runs)
        self.runs_compare.refresh()
        self.tabs.setTabText(self.tabs.indexOf(self.runs_compare), f"Runs ({len(self.project.runs)})")
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
        rec = self.project.record
        if rec is not None:  # the shown run's state may have changed (ended, killed)
            self.summary.setText(self._summary_text(rec, self._state_of(rec.run_dir)))

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
            if Path(run_dir).absolute().parent != self.project.runs_dir().absolute():
                self.project.opened_runs.append(Path(run_dir))  # e.g. a run whose output.dir is elsewhere
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
        self.runs_compare.restyle()
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
        self.mistakes.set_source(str(rec.run_dir) if rec is not None and rec.best_checkpoint else None)
        self.report_btn.setEnabled(rec is not None and bool(rec.predictions))
        self.classify_btn.setEnabled(rec is not None and rec.best_checkpoint is not None)
        self._fill_sets(rec)
        if rec is None:
            n = len(self.project.runs)
            self.summary.setText(f"No run shown: choose one of this project's {n} run(s) above, or train a model."
                                 if n else "No run yet: train a model, or open a run folder.")
            self.skipped_btn.setVisible(False)
            self._show_set()
            return
        self.summary.setText(self._summary_text(rec, self._state_of(rec.run_dir)))
        self.summary.setToolTip((rec.summary or {}).get("message", ""))
        self.skipped_btn.setVisible(bool(rec.skipped))
        self.skipped_btn.setText(f"{len(rec.skipped)} skipped file(s)…")
        self._show_set()

    def _state_of(self, run_dir: Path) -> str:
        """How the listed run stands (``interrupted``, ``running``, a summary's status), "" when unlisted."""
        info = next((r for r in self.project.runs if r.run_dir.absolute() == Path(run_dir).absolute()), None)
        return info.state if info is not None else ""

    @staticmethod
    def _summary_text(rec, state: str = "") -> str:
        s = rec.summary or {}
        best = runs_mod.best_epoch(rec.history, rec.config.train.early_stopping_metric)  # from 1, as the table
        at_best = rec.history[best - 1] if 0 < best <= len(rec.history) else {}
        acc = next((h for h in rec.history if h.get("epoch") == best), at_best).get("val_acc")
        parts = [f"<b>{rec.run_dir.name}</b> — {rec.config.model.name}, {len(rec.classes)} classes, "
                 f"{len(rec.history)} epoch(s)"]
        if isinstance(acc, (int, float)) and not math.isnan(acc):
            parts.append(f"best validation accuracy <b>{_pct(acc)}</b> at epoch {best}")
        if isinstance(s.get("test_acc"), (int, float)):
            parts.append(f"test accuracy <b>{_pct(s['test_acc'])}</b>")
        if s.get("status") or state:
            parts.append(f"{(s.get('status') or state).replace('_', ' ')}")
        return (", ".join(parts) + f".<br><span style='color:{status_colors()['muted']}'>{rec.run_dir}</span>")

    def _fill_sets(self, rec) -> None:
        keep = self.set_choice.currentData()
        sets = evaluation_view.sets_of(rec)
        self.set_choice.blockSignals(True)
        self.set_choice.clear()
        for which in sets:
            self.set_choice.addItem(evaluation_view.SET_NAMES[which], which)
        if keep in sets:
            self.set_choice.setCurrentIndex(sets.index(keep))
        self.set_choice.blockSignals(False)
        self.set_choice.setEnabled(len(sets) > 1)
        self.set_choice.setVisible(bool(sets))

    def shown_set(self) -> str:
        return self.set_choice.currentData() or "val"

    def _show_set(self) -> None:
        """Every tab from the chosen set of the shown run."""
        rec = self.project.record
        self.view = evaluation_view.build(rec, self.shown_set()) if rec is not None else None
        self.quality.set_view(self.view)
        self.confidence.set_view(self.view)
        items = [] if rec is None else (rec.predictions if self.shown_set() == "val" else rec.test_predictions)
        self.mistakes.set_predictions(rec.classes if rec is not None else [], items)

    def show_pair(self, true: int, pred: int) -> None:
        """The images of one cell of the confusion matrix (or one confused pair) in the gallery."""
        if self.view is None:
            return
        self.mistakes.set_pair(true, pred)
        self.tabs.setCurrentWidget(self.mistakes)

    # ------------------------------------------------------------------ runs
    def _show_run_from_table(self, run_dir: str) -> None:
        self.tabs.setCurrentWidget(self.quality)
        self.open_run(run_dir)

    def use_settings(self, run_dir: str) -> None:
        """Copy a run's settings into the project (asking first when the project has unsaved changes)."""
        name = Path(run_dir).name
        if self.project.dirty and not dialogs.ask_yes_no(
                self, "Use these settings",
                f"The project has unsaved changes. Replace its settings with those of run {name}? "
                f"Undo puts them back."):
            return
        try:
            changes = self.runs_view.use_settings(self.project, run_dir)
        except ConfigError as exc:
            self.runs_compare.say(f"<span style='color:{status_colors()['error']}'>Cannot use these settings: "
                                  f"{exc}</span>")
            return
        if not changes:
            self.runs_compare.say(f"The project already has the settings of {name}.")
            return
        keys = ", ".join(list(changes)[:4]) + (f" and {len(changes) - 4} more" if len(changes) > 4 else "")
        self.runs_compare.say(f"Settings of {name} copied into the project ({keys}). Save the project to keep them.")
        self.ctx.status(f"Settings of run {name} copied into the project")

    def undo_settings(self) -> None:
        if self.runs_view.undo(self.project):
            self.runs_compare.say("The project's settings are back as they were.")

    # ------------------------------------------------------------------ actions
    def store_threshold(self, value: float) -> None:
        rec = self.project.record
        if rec is None:
            return
        self.action_note.setText(f"Storing the threshold {value:.0%} with the model…")
        self.ctx.tasks.start("store-threshold", store_threshold_job, str(rec.run_dir), value, heavy=True,
                             on_done=lambda _r: self._threshold_stored(str(rec.run_dir), value),
                             on_error=self._action_failed)

    def _threshold_stored(self, run_dir: str, value: float) -> None:
        self.action_note.setText(f"Threshold {value:.0%} stored in {run_dir}: predict, Try it and exports made "
                                 f"from now on say \u201cunsure\u201d below it.")
        self.open_run(run_dir, show=False)

    def _action_failed(self, exc: BaseException) -> None:
        self.action_note.setText(f"<span style='color:{status_colors()['error']}'>{exc}</span>")

    def save_report_dialog(self) -> None:
        rec = self.project.record
        if rec is None:
            return
        folder = dialogs.choose_folder(self, "Choose a folder for the report", self.ctx.last_dir("reports"))
        if folder:
            self.ctx.remember_dir("reports", folder)
            self.save_report(folder)

    def save_report(self, folder: str) -> None:
        rec, which = self.project.record, self.shown_set()
        self.report_what = f"Writing the {evaluation_view.SET_NAMES[which].lower()} report"
        self.action_note.setText(f"{self.report_what}…")
        self.report_cancel.setVisible(True)
        self.ctx.tasks.start("save-report", report_job, str(rec.run_dir), which, folder, heavy=True,
                             on_done=self._report_saved, on_error=self._report_failed,
                             on_progress=self._report_progress)

    def _report_progress(self, value) -> None:
        done, total, left = value
        if total:
            self.action_note.setText(f"{self.report_what}: heat map {done} of {total} mistakes, {eta_words(left)}")

    def cancel_report(self) -> None:
        self.ctx.tasks.cancel("save-report")
        self.report_cancel.setVisible(False)
        self.action_note.setText("Report cancelled; nothing was written.")

    def _report_failed(self, exc) -> None:
        self.report_cancel.setVisible(False)
        self._action_failed(exc)

    def _report_saved(self, path) -> None:
        self.report_cancel.setVisible(False)
        if path is None:
            return
        self.report_path = str(path)
        self.action_note.setText(f"Report saved: <a href='{Path(path).as_uri()}'>{path}</a>")
        self.action_note.setOpenExternalLinks(True)
        self.ctx.status(f"Report saved to {path}")

    def classify_folder_dialog(self) -> None:
        rec = self.project.record
        if rec is None or rec.best_checkpoint is None:
            return
        folder = dialogs.choose_folder(self, "Choose a folder of images to classify", self.ctx.last_dir("classify"))
        if folder:
            self.ctx.remember_dir("classify", folder)
            self.classify_folder(folder)

    def classify_folder(self, folder: str) -> ClassifyFolderDialog:
        self.classify_dialog = ClassifyFolderDialog(self.ctx.tasks, str(self.project.record.run_dir), folder, self)
        self.classify_dialog.show()
        self.classify_dialog.start()
        return self.classify_dialog

    def _show_skipped(self) -> None:
        if self.project.record is not None:
            self.skipped_dialog = SkippedDialog(self.project.record.skipped, self)
            self.skipped_dialog.show()
