"""The live plots of the Training step: loss, loss and accuracy per epoch, learning rates, and
per layer group (:class:`GroupView`) how far its weights moved from the pretrained ones and its
gradient. Curves are made once per run and fed with ``setData`` from the RunMonitor on a timer
(2.5 Hz), never once per batch."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QGridLayout, QHeaderView, QLabel, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from transfer_gui.engine.wording import GROUP_FLAGS
from transfer_gui.state.run_monitor import RunMonitor
from transfer_gui.ui.theme import group_color, muted, series_color, status_colors
from transfer_gui.ui.widgets.plotting import add_curve, make_plot


Y_PAD = 0.03


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
        # every batch, thin and greyer, behind its moving average (both stand out from the background)
        self.loss_raw = add_curve(self.loss_plot, muted(series_color(0)), "batch", width=1, alpha=150)
        self.loss_smooth = add_curve(self.loss_plot, series_color(0), "smoothed", width=2.5)
        self.train_loss = add_curve(self.val_plot, series_color(0), "training", symbol="o")
        self.val_loss = add_curve(self.val_plot, series_color(1), "validation", symbol="s")
        self.train_acc = add_curve(self.acc_plot, series_color(0), "training", symbol="o")
        self.val_acc = add_curve(self.acc_plot, series_color(1), "validation", symbol="s")
        self.lr_curves: dict[str, object] = {}
        self._version = -1
        self._drawn = {"batches": -1, "epochs": -1}
        self._tops: dict[str, float] = {}
        self._x_range: tuple[float, float] | None = None
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        grid.addWidget(self.loss_plot, 0, 0)
        grid.addWidget(self.val_plot, 0, 1)
        grid.addWidget(self.acc_plot, 1, 0)
        grid.addWidget(self.lr_plot, 1, 1)
        self.groups_view = GroupView()
        grid.addWidget(self.groups_view, 0, 2, 2, 1)

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
        self._drawn = {"batches": -1, "epochs": -1}
        self._tops: dict[str, float] = {}
        self._x_range: tuple[float, float] | None = None
        for w in (self.loss_plot, self.val_plot, self.lr_plot):
            w.getPlotItem().enableAutoRange()
        self.acc_plot.getPlotItem().enableAutoRange(x=True)
        self.groups_view.reset()

    def update_from(self, m: RunMonitor) -> None:
        """Draw what changed since the last call. Batch curves change with every batch, the
        per-epoch curves once an epoch; axes keep their ranges unless the data outgrows them
        (a repainted axis is the most expensive part of a redraw)."""
        if m.version != self._version:
            self._update_curves(m)
        self.groups_view.update_from(m)

    def _update_curves(self, m: RunMonitor) -> None:
        self._version = m.version
        if m.started is not None and set(self.lr_curves) != set(m.lrs):
            self.reset(m.started.groups, list(m.lrs))
            self._version = m.version
        if m.started is not None:
            self._fix_x(float(m.started.start_epoch), float(max(m.started.epochs, m.started.start_epoch + 1)))
        if len(m.step_x) != self._drawn["batches"]:
            self._drawn["batches"] = len(m.step_x)
            x = np.asarray(m.step_x, dtype=float)
            loss = np.asarray(m.loss, dtype=float)
            self.loss_raw.setData(x, loss)
            self.loss_smooth.setData(x, np.asarray(m.loss_smooth, dtype=float))
            self._grow_y("loss", self.loss_plot, loss)
            top = 0.0
            for name, curve in self.lr_curves.items():
                y = np.asarray(m.lrs.get(name, []), dtype=float)
                curve.setData(x if len(y) == len(x) else np.asarray(m.lr_x[:len(y)], dtype=float), y)
                if y.size and np.isfinite(y).any():
                    top = max(top, float(np.nanmax(y)))
            if top > 0:  # room above the curves for the legend
                self._grow_y("lr", self.lr_plot, np.asarray([top * (1.2 + 0.13 * len(self.lr_curves))]))
        if len(m.epoch_x) != self._drawn["epochs"]:
            self._drawn["epochs"] = len(m.epoch_x)
            ex = np.asarray(m.epoch_x, dtype=float)
            train_loss, val_loss = np.asarray(m.train_loss, dtype=float), _finite(m.val_loss)
            self.train_loss.setData(ex, train_loss)
            self.val_loss.setData(ex, val_loss)
            self.train_acc.setData(ex, np.asarray(m.train_acc, dtype=float))
            self.val_acc.setData(ex, _finite(m.val_acc))
            self._grow_y("epoch_loss", self.val_plot, np.concatenate([train_loss, val_loss]))

    def _fix_x(self, lo: float, hi: float) -> None:
        """Every plot spans the whole run from its first batch, so the x axes never change."""
        if self._x_range == (lo, hi):
            return
        self._x_range = (lo, hi)
        for w in (self.loss_plot, self.val_plot, self.acc_plot, self.lr_plot):
            w.getPlotItem().setXRange(lo, hi, padding=0.02)  # also turns x auto-range off

    def _grow_y(self, key: str, w, values: np.ndarray) -> None:
        """Set the y range to [0, a round number above the largest finite value], and change it
        only when a value outgrows it (the loss mostly falls, so this is set a few times)."""
        finite = values[np.isfinite(values)]
        if not finite.size:
            return
        peak = float(finite.max())
        if peak <= 0 or peak <= self._tops.get(key, 0.0):
            return
        self._tops[key] = top = nice_ceiling(peak * 1.05)
        w.getPlotItem().setYRange(0, top, padding=Y_PAD)  # a little below 0, so the 0 tick shows

    def lengths(self) -> dict[str, int]:
        """Points in each curve (for tests)."""
        def n(c) -> int:
            x, _ = c.getData()
            return 0 if x is None else len(x)

        out = {"loss": n(self.loss_raw), "loss_smooth": n(self.loss_smooth), "val_loss": n(self.val_loss),
               "val_acc": n(self.val_acc), "train_acc": n(self.train_acc)}
        out.update({f"lr:{k}": n(c) for k, c in self.lr_curves.items()})
        return out


DRIFT_TIP = ("How far each group's weights have moved from the pretrained ones: ||w − w₀|| / ||w₀||, "
             "measured every few steps. A few percent keeps what the pretrained network learned; tens of "
             "percent means its features are being rewritten. Groups at a low rate should stay low.")
COLUMNS = ("Group", "Drift", "Gradient", "")
COLUMN_TIPS = (
    "The layer groups that train, from the input to the head.",
    "Relative distance of the group's weights from the pretrained ones (0% = unchanged). The new head "
    "has no pretrained weights: it shows how much its weights' norm has grown instead (×1.00 = not at all).",
    "Size (L2 norm) of the group's gradient at the last measurement. About zero next to the others "
    "means the group barely learns: freezing it (layers.train_from) saves time at no loss.",
    "⚠ marks a group the run warned about; the warning and its advice are in the log below.",
)
HEAD_ONLY = ("Only the head trains: the backbone's features are computed once, so its weights stay "
             "exactly the pretrained ones (drift 0) and there is nothing to plot. The table shows the "
             "head's gradient and how much its weights grew.")
WAITING = "Drift and gradients of each layer group appear after the first training steps."


class GroupView(QWidget):
    """Per layer group: drift from the pretrained weights over the run (a plot) and the latest
    drift, gradient norm and warning mark (a table). With cached features only the head trains,
    and the view says so instead of showing an empty plot."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.plot = make_plot("Drift from pretrained weights", "drift (%)", "epoch", legend=True, legend_at=(8, 8))
        self.plot.setToolTip(DRIFT_TIP)
        self.note = QLabel(WAITING)
        self.note.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.verticalHeader().setVisible(False)
        for i, (name, tip) in enumerate(zip(COLUMNS, COLUMN_TIPS)):
            item = QTableWidgetItem(name)
            item.setToolTip(tip)
            self.table.setHorizontalHeaderItem(i, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setToolTip("Each trainable layer group's latest drift and gradient; hover a column title "
                              "for what it means.")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot, 3)
        lay.addWidget(self.note)
        lay.addWidget(self.table, 2)
        self.curves: dict[str, object] = {}
        self._version, self._drawn, self._top = -1, -1, 0.0
        self.setMinimumWidth(260)

    def reset(self) -> None:
        item = self.plot.getPlotItem()
        for c in self.curves.values():
            item.removeItem(c)
        self.curves, self._drawn, self._top, self._version = {}, -1, 0.0, -1
        self.table.setRowCount(0)
        item.enableAutoRange()

    def update_from(self, m: RunMonitor) -> None:
        if m.version == self._version:
            return
        if m.version < self._version or (m.started is None and self.curves):
            self.reset()
        self._version = m.version
        head_only = m.head_only
        self.plot.setVisible(not head_only)
        self.note.setText(HEAD_ONLY if head_only else WAITING)
        self.note.setVisible(head_only or not m.group_x)
        if len(m.group_x) == self._drawn:
            return
        self._drawn = len(m.group_x)
        self._draw_curves(m)
        self._fill_table(m)

    def _draw_curves(self, m: RunMonitor) -> None:
        order = m.started.groups if m.started is not None else list(m.drift)
        x = np.asarray(m.group_x, dtype=float)
        for name, series in m.drift.items():
            if name not in self.curves:
                i = order.index(name) if name in order else 0
                self.curves[name] = add_curve(self.plot, group_color(i, len(order) or 1), name, width=1.5)
            y = 100 * np.asarray(series, dtype=float)
            self.curves[name].setData(x, y)
            finite = y[np.isfinite(y)]
            if finite.size and finite.max() > self._top:
                self._top = nice_ceiling(max(float(finite.max()) * 1.25, 0.01))
                self.plot.getPlotItem().setYRange(0, self._top, padding=Y_PAD)
        if m.started is not None:
            lo, hi = float(m.started.start_epoch), float(max(m.started.epochs, m.started.start_epoch + 1))
            self.plot.getPlotItem().setXRange(lo, hi, padding=0.02)

    def _fill_table(self, m: RunMonitor) -> None:
        e = m.group_stats
        if e is None:
            return
        order = list(m.started.groups) if m.started is not None else []
        names = [g for g in order if g in e.grad_norm or g in e.drift or g in e.norm_growth]
        names += [g for g in {**e.drift, **e.grad_norm, **e.norm_growth} if g not in names]
        self.table.setRowCount(len(names))
        for row, name in enumerate(names):
            if name in e.norm_growth:
                drift = (f"×{e.norm_growth[name]:.2f}", "A new head: no pretrained weights. Its weights' norm "
                                                        "is this many times its starting norm.")
            else:
                d = e.drift.get(name)
                drift = ("–" if d is None else _pct(d), "Moved this far from the pretrained weights.")
            g = e.grad_norm.get(name)
            grad = ("–", "No gradient measured (frozen now).") if g is None else (f"{g:.2e}", "Gradient norm.")
            flag = m.group_flags.get(name, "")
            cells = [(name, COLUMN_TIPS[0]), drift, grad, ("⚠" if flag else "", GROUP_FLAGS.get(flag, ""))]
            for col, (text, tip) in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                if col == 3 and flag:
                    item.setForeground(QColor(status_colors()["warn"]))
                self.table.setItem(row, col, item)

    def restyle(self) -> None:
        """After a theme change: the warning marks in the new theme's colour."""
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 3)
            if item is not None and item.text():
                item.setForeground(QColor(status_colors()["warn"]))

    def rows(self) -> list[list[str]]:
        """The table's text (for tests)."""
        t = self.table
        return [[t.item(r, c).text() if t.item(r, c) else "" for c in range(t.columnCount())]
                for r in range(t.rowCount())]


def _pct(v: float) -> str:
    return f"{v:.2%}" if v < 0.1 else f"{v:.1%}"


def nice_ceiling(v: float) -> float:
    """The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k that is >= v (v > 0)."""
    k = math.floor(math.log10(v))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * 10 ** k >= v * (1 - 1e-12):
            return step * 10 ** k
    return 10 ** (k + 1)


def _finite(values: list[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return np.where(np.isfinite(a), a, np.nan)
