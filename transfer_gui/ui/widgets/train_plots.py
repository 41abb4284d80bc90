"""The four live plots of the Training step. Curves are made once per run and fed with
``setData`` from the RunMonitor on a timer (2.5 Hz), never once per batch."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QGridLayout, QWidget

from transfer_gui.ui.run_monitor import RunMonitor
from transfer_gui.ui.theme import group_color, series_color
from transfer_gui.ui.widgets.plotting import add_curve, make_plot


class TrainPlots(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.loss_plot = make_plot("Training loss per batch", "loss", "epoch", legend=True)
        self.loss_plot.setToolTip("Loss of every batch (thin) and its moving average (thick). It should go "
                                  "down; a rising or exploding curve means the learning rate is too high.")
        self.val_plot = make_plot("Loss per epoch", "loss", "epoch", legend=True)
        self.val_plot.setToolTip("Training and validation loss after each epoch. Validation rising while "
                                 "training falls means overfitting: stop earlier or augment.")
        self.acc_plot = make_plot("Accuracy per epoch", "accuracy", "epoch", legend=True, legend_at=(-8, -8))
        self.acc_plot.setToolTip("Share of images classified correctly, on training and validation images.")
        self.acc_plot.getPlotItem().setYRange(0, 1, padding=0.02)
        self.lr_plot = make_plot("Learning rate of each group", "learning rate", "epoch", legend=True)
        self.lr_plot.setToolTip("The learning rate every trainable layer group actually used, step by step.")
        self.loss_raw = add_curve(self.loss_plot, series_color(0), "batch", width=1, alpha=90)
        self.loss_smooth = add_curve(self.loss_plot, series_color(0), "smoothed", width=2.5)
        self.train_loss = add_curve(self.val_plot, series_color(0), "training", symbol="o")
        self.val_loss = add_curve(self.val_plot, series_color(1), "validation", symbol="s")
        self.train_acc = add_curve(self.acc_plot, series_color(0), "training", symbol="o")
        self.val_acc = add_curve(self.acc_plot, series_color(1), "validation", symbol="s")
        self.lr_curves: dict[str, object] = {}
        self._version = -1
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        grid.addWidget(self.loss_plot, 0, 0)
        grid.addWidget(self.val_plot, 0, 1)
        grid.addWidget(self.acc_plot, 1, 0)
        grid.addWidget(self.lr_plot, 1, 1)

    def reset(self, groups: list[str] | None = None, trainable: list[str] | None = None) -> None:
        for c in (self.loss_raw, self.loss_smooth, self.train_loss, self.val_loss, self.train_acc, self.val_acc):
            c.setData([], [])
        item = self.lr_plot.getPlotItem()
        for c in self.lr_curves.values():
            item.removeItem(c)
        self.lr_curves = {}
        groups = groups or []
        for name in trainable or []:
            i = groups.index(name) if name in groups else 0
            self.lr_curves[name] = add_curve(self.lr_plot, group_color(i, len(groups) or 1), name)
        self._version = -1

    def update_from(self, m: RunMonitor) -> None:
        if m.version == self._version:
            return
        self._version = m.version
        if m.started is not None and set(self.lr_curves) != set(m.lrs):
            self.reset(m.started.groups, list(m.lrs))
            self._version = m.version
        x = np.asarray(m.step_x, dtype=float)
        self.loss_raw.setData(x, np.asarray(m.loss, dtype=float))
        self.loss_smooth.setData(x, np.asarray(m.loss_smooth, dtype=float))
        ex = np.asarray(m.epoch_x, dtype=float)
        self.train_loss.setData(ex, np.asarray(m.train_loss, dtype=float))
        self.val_loss.setData(ex, _finite(m.val_loss))
        self.train_acc.setData(ex, np.asarray(m.train_acc, dtype=float))
        self.val_acc.setData(ex, _finite(m.val_acc))
        lx = np.asarray(m.lr_x, dtype=float)
        top = 0.0
        for name, curve in self.lr_curves.items():
            y = np.asarray(m.lrs.get(name, []), dtype=float)
            curve.setData(lx, y)
            if y.size and np.isfinite(y).any():
                top = max(top, float(np.nanmax(y)))
        if top > 0:  # room above the curves for the legend
            self.lr_plot.getPlotItem().setYRange(0, top * (1.2 + 0.13 * len(self.lr_curves)), padding=0)

    def lengths(self) -> dict[str, int]:
        """Points in each curve (for tests)."""
        def n(c) -> int:
            x, _ = c.getData()
            return 0 if x is None else len(x)

        out = {"loss": n(self.loss_raw), "loss_smooth": n(self.loss_smooth), "val_loss": n(self.val_loss),
               "val_acc": n(self.val_acc), "train_acc": n(self.train_acc)}
        out.update({f"lr:{k}": n(c) for k, c in self.lr_curves.items()})
        return out


def _finite(values: list[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return np.where(np.isfinite(a), a, np.nan)
