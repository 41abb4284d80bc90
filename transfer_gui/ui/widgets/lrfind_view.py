"""The learning-rate finder's result: loss against learning rate (log axis) with the
suggested rate marked, and one button to use it as the head rate."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from transfer_gui.ui.theme import readable, series_color
from transfer_gui.ui.widgets.plotting import add_curve, make_plot
from transfer_gui.ui.widgets.sci_spin import fmt_sci


class LRFindDialog(QDialog):
    apply_lr = Signal(float)

    def __init__(self, result, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Learning-rate finder")
        self.resize(640, 440)
        self.suggestion = float(result.suggestion)
        lrs = np.asarray(result.lrs, dtype=float)
        losses = np.asarray(result.losses, dtype=float)
        self.plot = make_plot("Loss while the learning rate grows", "loss", "learning rate (log scale)")
        self.plot.setToolTip("Each point is one short training step at a larger rate. A good rate lies where "
                             "the loss falls fastest, well before it shoots up.")
        self.plot.getPlotItem().setLogMode(x=True, y=False)
        self.curve = add_curve(self.plot, series_color(0), "loss")
        keep = (lrs > 0) & np.isfinite(losses)
        self.curve.setData(lrs[keep], losses[keep])
        if self.suggestion > 0 and math.isfinite(self.suggestion):
            line = pg.InfiniteLine(pos=math.log10(self.suggestion), angle=90,
                                   pen=pg.mkPen(readable(series_color(1)), width=2, style=pg.QtCore.Qt.PenStyle.DashLine),
                                   label=f"suggested {fmt_sci(self.suggestion)}",
                                   labelOpts={"position": 0.9, "color": readable(series_color(1))})
            self.plot.addItem(line)
        text = QLabel(f"Suggested head learning rate: <b>{fmt_sci(self.suggestion)}</b>. It is where the loss "
                      f"falls most steeply; the rates to its right make training unstable.")
        text.setWordWrap(True)
        self.use_btn = QPushButton(f"Use {fmt_sci(self.suggestion)} as head rate")
        self.use_btn.setToolTip("Set layers.head_lr to the suggested value; the other groups follow through "
                                "the discriminative factor.")
        self.use_btn.setDefault(True)
        self.use_btn.clicked.connect(self._apply)
        close = QPushButton("Close")
        close.setToolTip("Keep the current learning rate.")
        close.clicked.connect(self.reject)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(close)
        row.addWidget(self.use_btn)
        lay = QVBoxLayout(self)
        lay.addWidget(self.plot, 1)
        lay.addWidget(text)
        lay.addLayout(row)

    def _apply(self) -> None:
        self.apply_lr.emit(self.suggestion)
        self.accept()
