"""Step 6, Export: write the trained model as an app checkpoint, safetensors, TorchScript,
ONNX or ONNX int8, each checked against PyTorch on validation images (the parity check), with
its size and latency per image on this machine. The engine writes every file atomically, so a
failed export leaves nothing partial behind.

An int8 file is written under a pending name beside its target (``quantize.pending_path``):
the page shows its agreement with the full-precision model and both validation accuracies, and
moves it into place only when the user keeps it; a discarded one never touched the file it
would have replaced.

An int8 file nobody decided on is discarded, with a line in the log, when the window closes,
a new export starts or another run (or none) is opened; one whose export was cancelled is
discarded by the job itself.

With "Write a deploy kit" ticked (onnx and onnx-rgb only), the job also writes
``engine.deploykit.write_kit``'s ``<stem>-kit/`` beside each ONNX file, on the worker; the
table gets a row for it (double-click opens the folder).

The chosen formats, the deploy-kit box and the folder typed in are kept in the window's
QSettings (``SETTINGS``) when it closes and shown again in the next window.

While the job runs (``engine.exportjob.export_formats``), the table has a row per format from
the start: "waiting", then a bar with the stage and the time left while it is written, then its
file, size, parity and latency as soon as it is on disk; the bar under the buttons shows the
whole export. Cancel stops the format in progress before its file moves into place and skips the
rest; the rows say which. The int8 question sits above the table and is scrolled into view."""

from __future__ import annotations

import html
import threading
from pathlib import Path

from PySide6.QtCore import QEvent, QSettings, Qt, QUrl
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import (QApplication, QAbstractItemView, QCheckBox, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QProgressBar, QPushButton, QScrollArea, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from transfer_gui.engine.exportjob import KIT_FORMATS, eta_words
from transfer_gui.engine.formats import SUFFIXES, file_stem
from transfer_gui.ui import applog, dialogs
from transfer_gui.ui.context import Context
from transfer_gui.ui.theme import status_colors

FORMATS = (
    ("checkpoint", "App checkpoint (.pt)", "The trained weights with class names and preprocessing, without "
     "optimizer state; opens in this app and continues training."),
    ("safetensors", "safetensors", "Weights only, in the safe, fast safetensors format, with class names and "
     "preprocessing in its metadata."),
    ("torchscript", "TorchScript", "A self-contained PyTorch program: load it in Python or C++ (libtorch) without "
     "this app's code."),
    ("onnx", "ONNX", "For ONNX Runtime, OpenCV, TensorRT, browsers and phones. Checked against PyTorch on your "
     "validation images."),
    ("onnx-rgb", "ONNX, images in", "ONNX with the preprocessing inside the graph: it takes uint8 RGB pixels of "
     "any size, so the receiver only decodes the image. Checked against PyTorch on your validation images."),
    ("onnx-int8", "ONNX int8", "About a third of the size and faster on CPUs: calibrated on your training images, "
     "then compared with the full-precision model on your validation images. You keep it only after seeing the "
     "comparison."),
)
SETTINGS = {"formats": "export/formats", "kit": "export/deploy_kit", "folder": "export/folder"}  # QSettings keys
DEFAULT_FORMATS = ("checkpoint", "onnx")
KIT_TIP = ("Also write <name>-kit/ beside each ONNX file: the model, labels.txt, a README and a short predict.py "
           "that needs only onnxruntime, numpy and Pillow. For whoever runs the model without this app, e.g. "
           "on a server or another computer.")


def export_job(task, source: str, formats: list[str], folder: str, parity: list[str] | None = None, stem: str = "",
               kit: bool = False, stop=None) -> list[tuple]:
    """The engine's ``exportjob.export_formats`` on the worker: every stage and every finished
    format goes to the page as a ``FormatProgress`` (finished ones always, stages throttled).
    ``stop`` (a threading.Event) is the page's Cancel: the job ends early and still reports."""
    from transfer_gui.engine.exportjob import export_formats

    last = {"stage": None}

    def show(p) -> None:  # a new stage or a finished format always reaches the page
        new = (p.format, p.stage) != last["stage"]
        last["stage"] = (p.format, p.stage)
        task.report(p, force=new or p.status != "running")

    return export_formats(source, formats, folder, stem, kit, on_progress=show, parity_images=parity or None,
                          cancelled=lambda: task.cancelled or (stop is not None and stop.is_set()))


def _discard_int8(pending, why: str) -> None:
    """Delete an int8 file still waiting for Keep / Discard, saying so in the log."""
    from transfer_gui.engine import quantize

    quantize.discard(pending)
    applog.info(f"export: discarded the int8 file {pending} that was not kept ({why})")


def _bar(tip: str, wide: bool = True) -> QProgressBar:
    """A progress bar tall enough for its text at any scale (the style's default clipped it), and
    with ``wide`` wide enough for the longest time-left text (a table cell's bar takes its cells)."""
    bar = QProgressBar()
    bar.setToolTip(tip)
    bar.setRange(0, 1000)
    bar.setTextVisible(True)
    bar.setMinimumHeight(bar.fontMetrics().height() + 8)
    if wide:
        bar.setMinimumWidth(bar.fontMetrics().horizontalAdvance("100 % · about 59 min left") + 24)
    return bar


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"


class ExportPage(QWidget):
    def __init__(self, ctx: Context):
        super().__init__()
        self.ctx = ctx
        self.project = ctx.project
        self.reports: list[tuple] = []
        self._export_run: Path | None = None  # the run folder the shown export came from
        self._build()
        self.restore_settings(ctx.settings)
        self.project.run_changed.connect(self._run_changed)
        self.project.training_changed.connect(lambda _t: self._update_enabled())
        self._run_changed()

    def _build(self) -> None:
        self.source = QLabel()
        self.source.setWordWrap(True)
        self.targets = QLabel()
        self.targets.setWordWrap(True)
        self.targets.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message = QLabel()
        self.message.setWordWrap(True)
        left = QVBoxLayout()
        left.addWidget(self.source)
        left.addWidget(self._build_formats())
        self.kit_check = QCheckBox("Write a de&ploy kit beside the ONNX file(s)")
        self.kit_check.setToolTip(KIT_TIP)
        left.addWidget(self.kit_check)
        left.addLayout(self._build_target())
        left.addWidget(self.targets)
        left.addLayout(self._build_actions())
        left.addWidget(self.progress)
        left.addWidget(self.message)
        left.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(self._build_review())  # on top: its buttons are seen without scrolling
        right.addWidget(QLabel("<b>Exported files</b>"))
        right.addWidget(self._build_table(), 1)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(left, 2)
        lay.addLayout(right, 3)

    def _build_formats(self) -> QGroupBox:
        box = QGroupBox("Formats")
        box.setToolTip("Choose one or more file formats to write.")
        self.checks: dict[str, QCheckBox] = {}
        fl = QVBoxLayout(box)
        for key, label, tip in FORMATS:
            cb = QCheckBox(label)
            cb.setToolTip(tip)
            cb.setChecked(key in DEFAULT_FORMATS)
            cb.toggled.connect(lambda _on: (self._update_enabled(), self._show_targets()))
            desc = QLabel(tip)
            desc.setWordWrap(True)
            desc.setStyleSheet(f"QLabel {{ color: {status_colors()['muted']}; margin-left: 22px; }}")
            fl.addWidget(cb)
            fl.addWidget(desc)
            self.checks[key] = cb
        return box

    def _build_target(self) -> QHBoxLayout:
        """The folder and the file name to export to."""
        self.folder = QLineEdit()
        self.folder.setAccessibleName("Export folder")
        self.folder.setToolTip("Where the files are written.")
        self.folder.setPlaceholderText("the run folder's export/ sub-folder")
        self.folder.textChanged.connect(lambda _t: self._show_targets())
        self.name = QLineEdit()
        self.name.setAccessibleName("File name")
        self.name.setToolTip("The file name, without its extension: each format adds its own (.pt, .onnx, ...).")
        self.name.textChanged.connect(lambda _t: self._show_targets())
        self.folder_btn = QPushButton("Save &as…")
        self.folder_btn.setToolTip("Choose the folder and the file name to export to.")
        self.folder_btn.clicked.connect(self._choose_target)
        row = QHBoxLayout()
        folder_label = QLabel("F&older")
        folder_label.setBuddy(self.folder)
        name_label = QLabel("&Name")
        name_label.setBuddy(self.name)
        row.addWidget(folder_label)
        row.addWidget(self.folder, 2)
        row.addWidget(name_label)
        row.addWidget(self.name, 1)
        row.addWidget(self.folder_btn)
        return row

    def _build_actions(self) -> QHBoxLayout:
        self.export_btn = QPushButton("Export")
        self.export_btn.setToolTip("Write the chosen formats and check each against the PyTorch model.")
        self.export_btn.clicked.connect(self.export)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop the export: the format being written is not moved into place, the "
                                   "formats after it are not written; files already listed stay.")
        self.cancel_btn.clicked.connect(self.cancel)
        self.cancel_btn.setVisible(False)
        self._stop = threading.Event()
        self.open_btn = QPushButton("Open folder")
        self.open_btn.setToolTip("Show the exported files in the file manager.")
        self.open_btn.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(self.target_folder())))
        self.progress = _bar("The whole export: the format being written, and the time left.")
        self.progress.setVisible(False)
        actions = QHBoxLayout()
        actions.addWidget(self.export_btn)
        actions.addWidget(self.cancel_btn)
        actions.addStretch(1)
        actions.addWidget(self.open_btn)
        return actions

    def _build_table(self) -> QTableWidget:
        self.table = QTableWidget(0, 5)
        self._rows: dict[str, int] = {}  # the export's formats -> their rows
        self._final: set[str] = set()  # the formats whose rows show how they came out
        self.table.setHorizontalHeaderLabels(["Format", "File", "Size", "Parity check", "Latency"])
        self.table.setToolTip("What was written. The parity check runs the written file on validation images "
                              "and compares its outputs with PyTorch's.")
        self.table.horizontalHeaderItem(3).setToolTip("Largest difference of the output scores from the PyTorch "
                                                      "model, and how often the top class agrees.")
        self.table.horizontalHeaderItem(4).setToolTip("Time to classify one image (batch 1) on this machine: the "
                                                      "median of 50 runs, decoding not included.")
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        self.table.cellDoubleClicked.connect(self._open_kit)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        hh.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        return self.table

    def _build_review(self) -> QGroupBox:
        """The int8 file's comparison with the full-precision model, and keep / discard."""
        self.review = QGroupBox("ONNX int8: keep it?")
        self.review_text = QLabel()
        self.review_text.setWordWrap(True)
        self.review_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.keep_btn = QPushButton("&Keep int8 file")
        self.keep_btn.setToolTip("Move the int8 file into place beside the other exports.")
        self.keep_btn.clicked.connect(lambda: self._decide(True))
        self.discard_btn = QPushButton("&Discard")
        self.discard_btn.setToolTip("Delete the int8 file; a file of that name from before is left as it was.")
        self.discard_btn.clicked.connect(lambda: self._decide(False))
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.discard_btn)
        buttons.addWidget(self.keep_btn)
        lay = QVBoxLayout(self.review)
        lay.addWidget(self.review_text)
        lay.addLayout(buttons)
        self.review.setVisible(False)
        self.pending = None  # (pending path, final path) of an int8 file waiting for the user
        return self.review

    def _show_review(self, rep) -> None:
        q = rep.quantization
        colors = status_colors()
        verdict = f"<span style='color:{colors['ok' if q.good else 'error']}'>{html.escape(q.verdict())}</span>"
        self.review_text.setText("<br>".join(q.lines()[:4]) + "<br>" + verdict)
        self.review_text.setToolTip(q.lines()[4])  # the recipe, the recipes tried, the int8 and float ops
        final = Path(rep.path[: -len(".pending")]) if rep.path.endswith(".pending") else Path(rep.path)
        self.pending = (Path(rep.path), final)
        self.review.setVisible(True)
        self._bring_into_view(self.keep_btn)

    def _bring_into_view(self, widget: QWidget) -> None:
        """Scroll the page's scroll area (the window's, if any) so ``widget`` is seen."""
        parent = self.parentWidget()
        while parent is not None and not isinstance(parent, QScrollArea):
            parent = parent.parentWidget()
        if parent is not None:
            QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)  # positions after pending re-layouts
            self.layout().activate()
            parent.ensureWidgetVisible(widget, 16, 16)

    def _decide(self, keep: bool) -> None:
        from transfer_gui.engine import quantize

        if self.pending is None:
            return
        pending, final = self.pending
        try:
            if keep:
                quantize.keep(pending, final)
            else:
                quantize.discard(pending)
        except quantize.QuantizeError as exc:
            self.message.setText(f"<span style='color:{status_colors()['error']}'>{exc}</span>")
            return
        self._decided(keep)
        self.message.setText(f"Kept {final}." if keep else f"Discarded the int8 file; {final.name} was not written.")

    def _decided(self, keep: bool) -> None:
        """The int8 file is kept or gone: hide the question and say so in its row."""
        pending, final = self.pending
        self.pending = None
        self.review.setVisible(False)
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 1)
            if item is not None and item.toolTip() == str(pending):
                item.setText(final.name if keep else "discarded")
                item.setToolTip(str(final) if keep else "")

    def discard_pending(self, why: str) -> bool:
        """Discard an int8 file the user has not decided on (the window closes, a new export
        starts, another run is opened), with a line in the log; True if there was one."""
        if self.pending is None:
            return False
        pending, final = self.pending
        try:
            _discard_int8(pending, why)
        except OSError as exc:
            applog.info(f"export: could not delete the int8 file {pending}: {exc.strerror or exc}")
        self._decided(False)
        self.message.setText(f"The int8 file was not kept ({why}); {final.name} was not written.")
        return True

    def shutdown(self) -> None:
        """The window closes: an undecided int8 file goes (the window called save_settings before)."""
        self.discard_pending("the window closed before Keep or Discard")

    # ------------------------------------------------------------------ settings
    def save_settings(self, s: QSettings) -> None:
        s.setValue(SETTINGS["formats"], ",".join(self.selected_formats()))
        s.setValue(SETTINGS["kit"], self.kit_check.isChecked())
        s.setValue(SETTINGS["folder"], self.folder.text().strip())

    def restore_settings(self, s: QSettings) -> None:
        """The last window's choices; formats this version does not know are left out."""
        if s.contains(SETTINGS["formats"]):
            self.set_formats(str(s.value(SETTINGS["formats"], "", type=str)).split(","))
        self.kit_check.setChecked(s.value(SETTINGS["kit"], False, type=bool))
        self.folder.setText(s.value(SETTINGS["folder"], "", type=str))

    # ------------------------------------------------------------------
    def target_folder(self) -> str:
        text = self.folder.text().strip()
        if text:
            return text
        rd = self.project.run_dir
        return str(rd / "export") if rd else ""

    def target_stem(self) -> str:
        stem = file_stem(self.name.text())
        if stem:
            return stem
        rd = self.project.run_dir
        return rd.name if rd else "model"

    def target_files(self) -> list[Path]:
        folder = self.target_folder()
        if not folder:
            return []
        return [Path(folder) / f"{self.target_stem()}{SUFFIXES[f]}" for f in self.selected_formats()]

    def _show_targets(self) -> None:
        files = self.target_files()
        muted = status_colors()["muted"]
        self.targets.setText(f"<span style='color:{muted}'>Writes " + ", ".join(f.name for f in files) + "</span>"
                             if files else "")

    def _choose_target(self) -> None:
        start = Path(self.target_folder() or self.ctx.last_dir("export")) / self.target_stem()
        fmts = self.selected_formats()
        suffix = SUFFIXES[fmts[0]] if len(fmts) == 1 else ""
        path = dialogs.save_file(self, "Export the model as", str(start) + suffix,
                                 "Model files (*.pt *.safetensors *.onnx);;All files (*)")
        if path:
            self.folder.setText(str(Path(path).parent))
            self.name.setText(file_stem(Path(path).name))
            self.ctx.remember_dir("export", str(Path(path).parent))

    def selected_formats(self) -> list[str]:
        return [k for k, cb in self.checks.items() if cb.isChecked()]

    def set_formats(self, formats: list[str]) -> None:
        for k, cb in self.checks.items():
            cb.setChecked(k in formats)

    def _run_changed(self) -> None:
        rec = self.project.record
        if self.pending is not None and not self._showing_export_run():
            self.discard_pending("another run was opened" if rec is not None else "the run was closed")
        ck = rec.best_checkpoint if rec is not None else None
        # with nothing to export the step's own message (steps.readiness, above the page) says why
        self.source.setVisible(ck is not None)
        if ck is not None:
            which = "best epoch" if ck.name == "best.pt" else "last epoch"
            self.source.setText(f"Exporting the <b>{which}</b> of run <b>{rec.run_dir.name}</b> "
                                f"({rec.config.model.name}, {len(rec.classes)} classes).")
        self.name.setPlaceholderText(rec.run_dir.name if rec is not None else "model")
        self._update_enabled()
        self._show_targets()

    def _update_enabled(self) -> None:
        rec = self.project.record
        ok = (rec is not None and rec.best_checkpoint is not None and not self.project.training
              and bool(self.selected_formats()) and not self.ctx.tasks.running("export"))
        self.export_btn.setEnabled(ok)
        self.kit_check.setEnabled(any(f in KIT_FORMATS for f in self.selected_formats()))
        self.open_btn.setEnabled(bool(self.target_folder()) and Path(self.target_folder()).is_dir())

    def export(self) -> None:
        rec = self.project.record
        if rec is None or rec.best_checkpoint is None:
            return
        formats = self.selected_formats()
        existing = [f for f in self.target_files() if f.exists()]
        if existing and not dialogs.ask_yes_no(self, "Replace files?", "These files exist already and will be "
                                               "replaced:\n" + "\n".join(str(f) for f in existing)):
            return
        self.discard_pending("a new export started")  # an undecided int8 file from before
        self._export_run = Path(rec.run_dir).resolve()
        self.reports = []
        self._start_rows(formats)
        self.progress.setVisible(True)
        self.progress.setValue(0)
        self.progress.setFormat(f"starting {formats[0]} (1 of {len(formats)})")
        self.cancel_btn.setVisible(True)
        self.cancel_btn.setEnabled(True)
        self.message.setText("")
        self._stop = threading.Event()
        # parity: the engine checks each file on the run's own validation images (export.run_parity_images)
        self.ctx.tasks.start("export", export_job, str(rec.run_dir), formats, self.target_folder(), None,
                             self.target_stem(), self.kit_wanted(), self._stop, heavy=True,
                             on_progress=self._progress, on_done=self._done, on_error=self._error)
        self._update_enabled()

    def _start_rows(self, formats: list[str]) -> None:
        """A row per format, "waiting" until its turn; each gets its own bar while it is written."""
        self.table.clearSpans()
        self.table.setRowCount(len(formats))
        self._rows = {fmt: r for r, fmt in enumerate(formats)}
        self._final: set[str] = set()
        muted = QColor(status_colors()["muted"])
        for r, fmt in enumerate(formats):
            self.table.setItem(r, 0, QTableWidgetItem(fmt))
            item = QTableWidgetItem("waiting")
            item.setForeground(muted)
            self.table.setItem(r, 1, item)
            for c in (2, 3, 4):
                self.table.setItem(r, c, QTableWidgetItem(""))

    def row_bar(self, fmt: str) -> QProgressBar | None:
        """The bar of ``fmt``'s row while it is being written, else None."""
        r = self._rows.get(fmt)
        widget = self.table.cellWidget(r, 2) if r is not None else None
        return widget if isinstance(widget, QProgressBar) else None

    def cancel(self) -> None:
        """Ask the job to stop; it reports what it wrote and what it did not, then the page settles."""
        self._stop.set()
        self.cancel_btn.setEnabled(False)
        self.progress.setFormat("cancelling: the file being written will not be kept…")

    def kit_wanted(self) -> bool:
        return self.kit_check.isEnabled() and self.kit_check.isChecked()

    def _progress(self, p) -> None:
        """A stage of one format (its row's bar and the overall bar) or a finished format (its row)."""
        self.progress.setValue(int(1000 * (p.index + p.fraction) / max(1, p.total)))
        if p.status != "running":
            self._finish_row(p.format, p.status, p.result)
            if not self._stop.is_set():
                self.progress.setFormat(f"{p.index + 1} of {p.total} done · {eta_words(p.total_eta_s)}")
            return
        r = self._rows.get(p.format)
        if r is None or p.format in self._final:
            return
        bar = self.row_bar(p.format)
        if bar is None:
            bar = _bar(f"Writing and checking the {p.format} file.", wide=False)
            self.table.setSpan(r, 2, 1, 3)
            self.table.setCellWidget(r, 2, bar)
        bar.setValue(int(1000 * p.fraction))
        bar.setFormat(f"{p.fraction:.0%} · {eta_words(p.eta_s)}")
        self.table.item(r, 1).setText(p.stage)
        if not self._stop.is_set():
            self.progress.setFormat(f"{p.format} ({p.index + 1} of {p.total}) · {eta_words(p.total_eta_s)}")

    def _finish_row(self, fmt: str, status: str, result) -> None:
        """``fmt``'s row as the file came out: its figures, or why it was not written."""
        r = self._rows.get(fmt)
        if r is None or fmt in self._final:
            return
        self._final.add(fmt)
        self.table.removeCellWidget(r, 2)
        if self.table.columnSpan(r, 2) > 1:
            self.table.setSpan(r, 2, 1, 1)
        if status == "ok":
            self._fill_row(r, result)
        else:
            item = QTableWidgetItem(result)
            item.setToolTip(result)
            item.setForeground(QColor(status_colors()["error" if status == "error" else "muted"]))
            self.table.setItem(r, 1, item)
            self.table.setSpan(r, 1, 1, 4)
        self.table.resizeRowToContents(r)

    def _finished(self) -> None:
        self.progress.setVisible(False)
        self.cancel_btn.setVisible(False)
        self._update_enabled()

    def _error(self, exc: BaseException) -> None:
        self._finished()
        self.message.setText(f"<span style='color:{status_colors()['error']}'>Export failed: {exc}</span>")

    def _done(self, reports: list[tuple]) -> None:
        self._finished()
        self.reports = reports
        for status, fmt, rep in reports:  # rows a dropped progress event left unfinished
            self._finish_row(fmt, status, rep)
        kits = self._add_kit_rows(reports)
        self.table.resizeRowsToContents()
        ok = sum(1 for s, _f, _r in reports if s == "ok")
        failed = sum(1 for s, _f, _r in reports if s == "error")
        cancelled = sum(1 for s, _f, _r in reports if s == "cancelled")
        kind = "ok" if not failed else "error"
        waiting = " The int8 file waits for your decision above the table." if self.pending is not None else ""
        self.message.setText(f"<span style='color:{status_colors()[kind]}'>Wrote {ok} file(s) to {self.target_folder()}"
                             + (f"; {failed} format(s) failed (see the table)" if failed else "")
                             + (f"; {cancelled} cancelled" if cancelled else "") + "." + waiting
                             + "</span>" + "".join(f"<br>Deploy kit: {k}" for k in kits))
        if not self._showing_export_run():
            self.discard_pending("another run was opened during the export")
        elif self.review.isVisible():  # the bars just hidden moved it: into view again
            self._bring_into_view(self.keep_btn)

    def _showing_export_run(self) -> bool:
        """Whether the project still shows the run the last export came from."""
        rec = self.project.record
        return rec is not None and Path(rec.run_dir).resolve() == self._export_run

    def _open_kit(self, row: int, _column: int) -> None:
        item = self.table.item(row, 1)
        folder = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if folder and Path(folder).is_dir():
            QDesktopServices.openUrl(QUrl.fromLocalFile(folder))

    def _add_kit_rows(self, reports: list[tuple]) -> list[str]:
        """A "deploy kit" row under each ONNX file that got one (or why it did not); the kit folders."""
        kits = []
        for status, fmt, rep in reports:
            if status != "ok" or not (rep.kit or rep.kit_error):
                continue
            r = self.table.rowCount()
            self.table.insertRow(r)
            self.table.setItem(r, 0, QTableWidgetItem(f"{fmt} deploy kit"))
            if rep.kit:
                kits.append(rep.kit)
                item = QTableWidgetItem(f"{Path(rep.kit).name}/: model.onnx, labels.txt, predict.py, README.md")
                item.setToolTip(f"{rep.kit}\nDouble-click to open the folder.")
                item.setData(Qt.ItemDataRole.UserRole, rep.kit)
            else:
                item = QTableWidgetItem(f"not written: {rep.kit_error}")
                item.setToolTip(rep.kit_error)
                item.setForeground(QColor(status_colors()["error"]))
            self.table.setItem(r, 1, item)
            self.table.setSpan(r, 1, 1, 4)
        return kits

    def _fill_row(self, r: int, rep) -> None:
        colors = status_colors()
        pending = rep.quantization is not None and rep.path.endswith(".pending")
        f = QTableWidgetItem(Path(rep.path).name.removesuffix(".pending") + (" (not kept yet)" if pending else ""))
        f.setToolTip(rep.path)
        self.table.setItem(r, 1, f)
        self.table.setItem(r, 2, QTableWidgetItem(_size(rep.bytes)))
        q = rep.quantization
        if q is not None:
            parity = (f"int8: top-1 agrees {q.agreement:.0%} with fp32 · accuracy {q.int8_accuracy:.1%} vs "
                      f"{q.fp32_accuracy:.1%} ({q.images} validation images)")
            good = q.good  # quantize.acceptable: within 1 point of fp32
        elif rep.parity_max_abs_diff is None:
            parity, good = "not checked", True
        else:
            parity = (f"✓ max diff {rep.parity_max_abs_diff:.1e} · top-1 agrees "
                      f"{rep.parity_top1_agree:.0%} ({rep.parity_images} images)")
            good = True
        item = QTableWidgetItem(parity)
        item.setToolTip(rep.message)
        item.setForeground(QColor(colors["ok" if good else "error"]))
        self.table.setItem(r, 3, item)
        lat = rep.latency
        cell = QTableWidgetItem(f"{lat.median_ms:.1f} ms" if lat is not None else "–")
        cell.setToolTip(lat.words() if lat is not None else "could not be timed")
        self.table.setItem(r, 4, cell)
        if pending:
            self._show_review(rep)
