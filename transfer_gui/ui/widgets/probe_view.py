"""The depth probe's box on the Layers step: a button that starts it, its progress with a cancel
button, the suggested ``layers.train_from`` with the reason, and one button to use it. The
probe itself runs in the engine (engine/probe.py) on a task thread; the Layers page starts it
and puts the accuracy of each depth in its table, beside the groups."""

from __future__ import annotations

import html

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from transfer_gui.ui.theme import status_colors

INTRO = ("A linear classifier is fitted on the frozen network's activations at the input of every group "
         "(on the training images) and scored on the validation images: the Probe column. High where the "
         "frozen layers before a group already tell your classes apart. Suggested: train from the first group "
         "whose input scores within a few points of the best (the frozen layers before it then give about what "
         "frozen features can); when only the head's input comes that close, train the head only.")
PHASES = {"scan": "Scanning image folders", "download": "Downloading weights",
          "probe_features": "Frozen activations at every depth", "probe": "Fitting a linear classifier per depth"}


def percent(value: float) -> str:
    return "n/a" if value != value else f"{value:.1%}"


class ProbeView(QGroupBox):
    start_requested = Signal()
    cancel_requested = Signal()
    use_requested = Signal(str)  # the layers.train_from value

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Which layers should I train?", parent)
        self.suggestion: str | None = None
        self.intro = QLabel(INTRO)
        self.intro.setWordWrap(True)
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.result.setToolTip("The probe's suggestion for “Train from”, and why.")
        lay = QVBoxLayout(self)
        lay.addWidget(self.intro)
        lay.addLayout(self._build_row())
        lay.addWidget(self.result)
        self.set_running(False)

    def _build_row(self) -> QHBoxLayout:
        self.run_btn = QPushButton("Probe depths")
        self.run_btn.setToolTip("One pass of your images through the frozen network, then a linear classifier at "
                                "every group boundary (seconds to a few minutes on a CPU). Nothing is trained or "
                                "saved.")
        self.run_btn.clicked.connect(self.start_requested.emit)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop the probe.")
        self.cancel_btn.clicked.connect(self.cancel_requested.emit)
        self.progress = QProgressBar()
        self.progress.setToolTip("Progress of the depth probe.")
        self.progress.setTextVisible(True)
        self.use_btn = QPushButton("Use this")
        self.use_btn.setToolTip("Set “Train from” (layers.train_from) to the suggested group.")
        self.use_btn.clicked.connect(lambda: self.suggestion and self.use_requested.emit(self.suggestion))
        row = QHBoxLayout()
        for w in (self.run_btn, self.cancel_btn, self.progress, self.use_btn):
            row.addWidget(w)
        row.addStretch(1)
        return row

    # ------------------------------------------------------------------ states
    def set_running(self, running: bool) -> None:
        self.run_btn.setEnabled(not running)
        self.cancel_btn.setVisible(running)
        self.progress.setVisible(running)
        if running:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("Starting…")
            self.use_btn.setVisible(False)
            self.result.setText("")

    def set_available(self, ok: bool, why: str = "") -> None:
        """Whether a probe can start (groups read, image folders given); ``why`` when not."""
        if not self.cancel_btn.isVisible():
            self.run_btn.setEnabled(ok)
        self.run_btn.setToolTip(why or "One pass of your images through the frozen network, then a linear "
                                       "classifier at every group boundary. Nothing is trained or saved.")

    def show_progress(self, e: object) -> None:
        """Progress of the probe from its events (engine.events.Progress and PhaseChanged)."""
        phase, done, total = getattr(e, "phase", ""), getattr(e, "done", None), getattr(e, "total", 0)
        if done is None:  # a phase change
            self.progress.setFormat(getattr(e, "message", "") or PHASES.get(phase, phase))
            return
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(min(done, max(1, total)) if total else 0)
        label = PHASES.get(phase, phase)
        self.progress.setFormat(f"{label}: {done:,} of {total:,}" if total else f"{label}…")

    def show_result(self, result) -> None:
        self.set_running(False)
        self.suggestion = result.suggestion
        what = "the head only" if result.suggestion == "head" else f"from <b>{html.escape(result.suggestion)}</b> on"
        acc = result.accuracy().get(result.suggestion, float("nan"))
        self.result.setText(f"<b>Suggested: train {what}</b> (probe {percent(acc)}; chance "
                            f"{percent(result.chance)}; tolerance {result.tolerance * 100:g} points). "
                            f"{html.escape(result.reason[0].upper() + result.reason[1:])}. "
                            f"<span style='color:{status_colors()['muted']}'>"
                            f"{result.train_size:,} training and {result.val_size:,} validation images, "
                            f"{result.seconds:.1f} s.</span>")
        self.use_btn.setVisible(True)
        self.use_btn.setText("Use this" if result.suggestion != "head" else "Use this (head only)")

    def show_message(self, text: str, kind: str = "warn") -> None:
        self.set_running(False)
        self.suggestion = None
        self.use_btn.setVisible(False)
        color = status_colors().get(kind, "")
        self.result.setText(f"<span style='color:{color}'>{html.escape(text)}</span>" if color else html.escape(text))

    def clear(self) -> None:
        self.suggestion = None
        self.use_btn.setVisible(False)
        self.result.setText("")
