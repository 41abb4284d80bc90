"""Progress of the run in progress: the epoch, the whole run with the time left, and speed.
Redrawn from a RunMonitor on the Training step's timer.

While a run is going the bars are never "busy" (range 0..0): the style animates a busy bar at
~30 frames a second, and every frame repaints the window behind it, which took CPU from the
training it reported on. Work of unknown length shows its elapsed seconds instead."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QWidget

from transfer_gui.state.run_monitor import RunMonitor, fmt_duration


class RunProgress(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.epoch_bar = QProgressBar()
        self.epoch_bar.setToolTip("Progress through the current epoch, or through preparation (decoding "
                                  "images, computing frozen layers once).")
        self.epoch_bar.setFormat("Epoch –")
        self.run_bar = QProgressBar()
        self.run_bar.setToolTip("Progress through the whole run, with the estimated time left.")
        self.run_bar.setFormat("Not started")
        self.speed = QLabel()
        self.speed.setToolTip("Training throughput over the last batches.")
        self.speed.setMinimumWidth(110)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.epoch_bar, 2)
        lay.addWidget(self.run_bar, 3)
        lay.addWidget(self.speed)

    def show_state(self, m: RunMonitor, running: bool, paused: bool, kind: str) -> None:
        preparing = m.phase in ("prepare", "features") or m.last_batch is None
        if preparing and m.progress is not None and running:
            p = m.progress
            self.epoch_bar.setRange(0, max(1, p.total))
            self.epoch_bar.setValue(min(p.done, p.total) if p.total else 0)
            self.epoch_bar.setFormat(f"{p.message or p.phase} ({p.done:,}" + (f" of {p.total:,})" if p.total else ")"))
        elif m.last_batch is not None:
            b = m.last_batch
            self.epoch_bar.setRange(0, 1000)
            self.epoch_bar.setValue(int(1000 * m.epoch_fraction()))
            self.epoch_bar.setFormat(f"Epoch {b.epoch + 1} of {m.started.epochs if m.started else '?'}: "
                                     f"batch {b.batch} of {b.batches}")
        elif m.phase_message and running:
            self.epoch_bar.setRange(0, 1)
            self.epoch_bar.setValue(0)
            self.epoch_bar.setFormat(f"{m.phase_message} ({m.phase_seconds():.0f} s)")
        if m.started is not None and m.last_batch is not None:
            frac = m.run_fraction()
            self.run_bar.setRange(0, 1000)
            self.run_bar.setValue(int(1000 * frac))
            if m.finished is not None:
                self.run_bar.setFormat(f"Run {frac:.0%}: {m.finished.status.replace('_', ' ')}")
            elif paused:
                self.run_bar.setFormat(f"Run {frac:.0%}: paused")
            else:
                self.run_bar.setFormat(f"Run {frac:.0%}, about {fmt_duration(m.eta_seconds())} left")
            self.speed.setText(f"{m.images_per_s:,.0f} images/s")
        elif paused:
            self.run_bar.setRange(0, 1)
            self.run_bar.setFormat("Paused")
        elif running:
            self.run_bar.setRange(0, 1)
            self.run_bar.setValue(0)
            self.run_bar.setFormat("Finding a learning rate…" if kind == "lrfind" else "Preparing…")
        if not running and m.last_batch is None and m.finished is not None:  # ended while preparing
            self.run_bar.setFormat(m.finished.status.replace("_", " ").capitalize())
            self.epoch_bar.setFormat("Epoch –")

    def finished_lr_find(self) -> None:
        self.epoch_bar.setRange(0, 1)
        self.epoch_bar.setValue(1)
        self.epoch_bar.setFormat("Learning-rate finder finished")
        self.run_bar.setRange(0, 1)
        self.run_bar.setValue(0)
        self.run_bar.setFormat("No training running")
