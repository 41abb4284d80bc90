"""How far to trust the model's confidence: the threshold explorer ("answer only above this
confidence": how many images it answers and how many of those it gets right), the reliability
diagram with the expected calibration error before and after temperature scaling, and a
precision-recall curve per class. Every figure comes from the page's EvaluationView."""

from __future__ import annotations

import html
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout,
                               QWidget)

from transfer_gui.state.evaluation_view import EvaluationView
from transfer_gui.ui.theme import muted, series_color
from transfer_gui.ui.widgets.plotting import add_curve, make_plot


def _pct(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1%}"


class ThresholdExplorer(QWidget):
    """A slider over the confidence; the coverage and accuracy curves with a line at the choice."""

    store_requested = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view: EvaluationView | None = None
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 99)
        self.slider.setAccessibleName("Confidence threshold")
        self.slider.setToolTip("Answer only when the model is at least this confident; below it, `predict` "
                               "and the exports' kit say \u201cunsure\u201d.")
        self.slider.valueChanged.connect(self._moved)
        self.value_label = QLabel()
        self.value_label.setWordWrap(True)
        self.store_btn = QPushButton("Store with the model")
        self.store_btn.setToolTip("Save this threshold in the run's checkpoint: predict, Try it and every "
                                  "export made afterwards answer \u201cunsure\u201d below it.")
        self.store_btn.clicked.connect(lambda: self.store_requested.emit(self.threshold()))
        self.stored_label = QLabel()
        self.plot = make_plot("Answer only above a confidence", "share", "confidence threshold", legend=True,
                              legend_at=(8, -8))
        self.plot.setToolTip("For every threshold: the share of images the model answers (falls as the threshold "
                             "rises) and how many of those answers are right (usually rises). The line is the "
                             "threshold chosen above.")
        self.plot.getPlotItem().setYRange(0, 1.02, padding=0)
        self.plot.getPlotItem().setXRange(0, 1, padding=0.01)
        self.coverage_curve = add_curve(self.plot, series_color(0), "images answered")
        self.accuracy_curve = add_curve(self.plot, series_color(1), "accuracy of the answers")
        self.line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(muted(series_color(2)), width=2))
        self.plot.addItem(self.line)
        row = QHBoxLayout()
        row.addWidget(QLabel("Threshold"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.store_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.value_label)
        lay.addWidget(self.stored_label)
        lay.addWidget(self.plot, 1)

    def threshold(self) -> float:
        return self.slider.value() / 100.0

    def set_view(self, view: EvaluationView | None) -> None:
        self.view = view
        self.setEnabled(view is not None and view.n > 0)
        if view is None or view.n == 0:
            self.coverage_curve.setData([], [])
            self.accuracy_curve.setData([], [])
            self.value_label.setText("No predictions to explore.")
            self.stored_label.setText("")
            return
        curve = view.coverage_curve()
        t = np.array([c[0] for c in curve])
        self.coverage_curve.setData(t, np.array([c[1] for c in curve]))
        acc = np.array([c[2] for c in curve], dtype=np.float64)
        ok = ~np.isnan(acc)
        self.accuracy_curve.setData(t[ok], acc[ok])
        self.stored_label.setText(f"Stored with the model: {view.threshold:.0%}" if view.threshold > 0 else
                                  "No threshold stored: the model always answers.")
        self.slider.blockSignals(True)
        self.slider.setValue(round(view.threshold * 100))
        self.slider.blockSignals(False)
        self._moved(self.slider.value())

    def _moved(self, value: int) -> None:
        t = value / 100.0
        self.line.setValue(t)
        if self.view is None or self.view.n == 0:
            return
        coverage, accuracy, answered = self.view.coverage_at(t)
        self.value_label.setText(
            f"Answer only at {t:.0%} confidence or more: the model answers <b>{answered}</b> of {self.view.n} "
            f"{self.view.title.lower()} images (<b>{_pct(coverage)}</b>) and is right on <b>{_pct(accuracy)}</b> "
            f"of them; it says \u201cunsure\u201d on the other {self.view.n - answered}.")


class ReliabilityDiagram(QWidget):
    """Confidence against accuracy per bin; the diagonal is a model whose confidence can be taken
    at its word."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = make_plot("Reliability", "accuracy", "confidence", legend=True, legend_at=(8, 8))
        self.plot.setToolTip("Images grouped by the model's confidence (15 bins). A calibrated model's dots lie "
                             "on the diagonal: when it says 80 %, it is right 80 % of the time.")
        item = self.plot.getPlotItem()
        item.setXRange(0, 1, padding=0.01)
        item.setYRange(0, 1, padding=0.01)
        self.ideal = add_curve(self.plot, muted(series_color(3)), "ideal", width=1, dash=True)
        self.ideal.setData([0, 1], [0, 1])
        self.before = add_curve(self.plot, muted(series_color(0)), "raw", symbol="o", width=1.5)
        self.after = add_curve(self.plot, series_color(1), "calibrated", symbol="s")
        self.label = QLabel()
        self.label.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.label)

    def set_view(self, view: EvaluationView | None) -> None:
        for curve in (self.before, self.after):
            curve.setData([], [])
        if view is None or view.n == 0:
            self.label.setText("")
            return
        for curve, calibrated in ((self.before, False), (self.after, True)):
            if calibrated or view.temperature != 1.0:
                bins = [b for b in view.reliability(calibrated) if b["count"]]
                curve.setData([b["confidence"] for b in bins], [b["accuracy"] for b in bins])
        if view.temperature != 1.0:
            self.label.setText(f"Expected calibration error (ECE, 15 bins) on {view.title.lower()}: "
                               f"{view.ece(False):.3f} raw, <b>{view.ece(True):.3f}</b> after temperature "
                               f"scaling (T = {view.temperature:.2f}, fitted on validation).")
        else:
            note = "" if view.exact else " (from the top-5 probabilities this older run kept)"
            why = view.evaluation.calibration.get("note", "")
            why = f" No temperature was fitted: {html.escape(why)}" if why else ""
            self.label.setText(f"Expected calibration error (ECE, 15 bins): <b>{view.ece(True):.3f}</b>{note}.{why}")


class PrecisionRecall(QWidget):
    """One class's precision-recall curve and its average precision."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view: EvaluationView | None = None
        self.choice = QComboBox()
        self.choice.setAccessibleName("Class of the precision-recall curve")
        self.choice.setToolTip("The class whose precision-recall curve is drawn.")
        self.choice.currentIndexChanged.connect(self._draw)
        self.plot = make_plot("Precision-recall", "precision", "recall")
        self.plot.setToolTip("For one class: lowering the confidence needed to say this class finds more of "
                             "its images (recall) and lets in more wrong ones (precision).")
        self.plot.getPlotItem().setXRange(0, 1, padding=0.01)
        self.plot.getPlotItem().setYRange(0, 1.02, padding=0)
        self.curve = add_curve(self.plot, series_color(0))
        self.label = QLabel()
        top = QHBoxLayout()
        top.addWidget(QLabel("Class"))
        top.addWidget(self.choice, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.label)

    def set_view(self, view: EvaluationView | None) -> None:
        self.view = view
        keep = self.choice.currentText()
        self.choice.blockSignals(True)
        self.choice.clear()
        self.choice.addItems(view.classes if view is not None else [])
        if keep in (view.classes if view is not None else []):
            self.choice.setCurrentText(keep)
        self.choice.blockSignals(False)
        self._draw()

    def _draw(self) -> None:
        k = self.choice.currentIndex()
        if self.view is None or self.view.n == 0 or k < 0:
            self.curve.setData([], [])
            self.label.setText("")
            return
        precision, recall, _t, ap = self.view.pr_curve(k)
        self.curve.setData(np.asarray(recall), np.asarray(precision))
        self.label.setText(f"Average precision of {self.view.classes[k]}: <b>{ap:.3f}</b>")


class ConfidenceView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.explorer = ThresholdExplorer()
        self.reliability = ReliabilityDiagram()
        self.pr = PrecisionRecall()
        row = QHBoxLayout()
        row.addWidget(self.reliability, 1)
        row.addWidget(self.pr, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.explorer, 1)
        lay.addLayout(row, 1)

    def set_view(self, view: EvaluationView | None) -> None:
        self.explorer.set_view(view)
        self.reliability.set_view(view)
        self.pr.set_view(view)
