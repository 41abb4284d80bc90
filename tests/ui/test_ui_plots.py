"""The live training plots: each redraw touches only the curves whose data changed, the axes
keep their ranges (x spans the whole run, y grows only when data outgrows it), and cached
axes still redraw when their range does change."""

from __future__ import annotations

import math

import pytest
from PySide6.QtWidgets import QApplication
from hypothesis import given, settings
from hypothesis import strategies as st

from transfer_gui.engine import events as ev
from transfer_gui.state.run_monitor import RunMonitor
from transfer_gui.ui.widgets.train_plots import nice_ceiling

EPOCHS, BATCHES = 4, 5


def _started() -> ev.RunStarted:
    return ev.RunStarted(run_dir="r", device="cpu", precision="fp32", classes=["a", "b"],
                         groups=["stem", "layer4", "head"], trainable_groups=["layer4", "head"], train_size=10,
                         val_size=4, epochs=EPOCHS, steps_per_epoch=BATCHES, total_steps=EPOCHS * BATCHES,
                         feature_cache=False)


def _batch(epoch: int, batch: int, loss: float) -> ev.BatchEnd:
    return ev.BatchEnd(epoch=epoch, step=epoch * BATCHES + batch, batch=batch, batches=BATCHES, loss=loss,
                       lrs={"layer4": 1e-4 * batch, "head": 1e-3 * batch}, images_per_s=10.0)


def _epoch(epoch: int) -> ev.EpochEnd:
    return ev.EpochEnd(epoch=epoch, epochs=EPOCHS, train_loss=1.0, train_acc=0.5, val_loss=1.2, val_acc=0.6,
                       per_class_acc=[0.5, 0.7], confusion=[[1, 1], [0, 2]], seconds=1.0,
                       lrs={"layer4": 1e-4, "head": 1e-3}, is_best=True)


@pytest.fixture
def plots(qtbot):
    from transfer_gui.ui.widgets.train_plots import TrainPlots

    p = TrainPlots()
    p.resize(900, 560)
    qtbot.addWidget(p)
    p.show()
    return p


def _count_set_data(monkeypatch, curve, calls: dict, key: str) -> None:
    original = curve.setData

    def counted(*a, **k):
        calls[key] = calls.get(key, 0) + 1
        return original(*a, **k)

    monkeypatch.setattr(curve, "setData", counted)


def test_redraw_touches_only_changed_curves_and_keeps_the_x_axis(plots, monkeypatch):
    m = RunMonitor()
    m.ingest(_started())
    for b in (1, 2):
        m.ingest(_batch(0, b, 2.0))
    plots.update_from(m)
    assert plots.lengths()["loss"] == 2 and plots.lengths()["lr:head"] == 2
    for w in (plots.loss_plot, plots.val_plot, plots.acc_plot, plots.lr_plot):
        lo, hi = w.getPlotItem().viewRange()[0]
        assert lo < 0 < 0.2 and EPOCHS - 0.01 < hi < EPOCHS + 0.2  # the whole run, from the start

    calls: dict[str, int] = {}
    for key, curve in (("loss", plots.loss_raw), ("val_loss", plots.val_loss), ("val_acc", plots.val_acc),
                       ("lr", plots.lr_curves["head"])):
        _count_set_data(monkeypatch, curve, calls, key)
    plots.update_from(m)  # nothing new: nothing drawn
    assert calls == {}
    m.ingest(_batch(0, 3, 1.5))
    plots.update_from(m)
    assert calls == {"loss": 1, "lr": 1}  # per-epoch curves untouched within an epoch
    m.ingest(_epoch(0))
    plots.update_from(m)
    assert calls == {"loss": 1, "lr": 1, "val_loss": 1, "val_acc": 1}
    assert plots.lengths()["val_loss"] == 1 and plots.lengths()["loss"] == 3
    x_before = plots.loss_plot.getPlotItem().viewRange()[0]
    m.ingest(_batch(1, 1, 1.0))
    plots.update_from(m)
    assert plots.loss_plot.getPlotItem().viewRange()[0] == x_before


def test_y_range_grows_only_when_data_outgrows_it(plots):
    m = RunMonitor()
    m.ingest(_started())
    m.ingest(_batch(0, 1, 2.0))
    plots.update_from(m)
    def top() -> float:  # the range is [0, top] padded by the same amount at both ends
        lo, hi = plots.loss_plot.getPlotItem().viewRange()[1]
        assert -0.1 * hi < lo < 0  # just below 0, so the 0 tick is drawn
        return hi + lo

    assert top() == pytest.approx(2.5)  # a round number above 2.0
    for b, loss in ((2, 1.0), (3, math.nan), (4, math.inf)):  # falling, or not finite: unchanged
        m.ingest(_batch(0, b, loss))
        plots.update_from(m)
        assert top() == pytest.approx(2.5)
    m.ingest(_batch(0, 5, 3.1))  # a spike above the range: the range follows
    plots.update_from(m)
    assert top() == pytest.approx(4.0)
    lr_top = plots.lr_plot.getPlotItem().viewRange()[1][1]
    assert lr_top >= 5e-3 * 1.2  # room for the largest rate and the legend


def test_cached_axes_redraw_when_their_range_changes(plots, qtbot):
    w = plots.loss_plot
    axis = w.getPlotItem().getAxis("left")
    from PySide6.QtWidgets import QGraphicsItem

    assert axis.cacheMode() == QGraphicsItem.CacheMode.DeviceCoordinateCache
    w.getPlotItem().setYRange(0, 1, padding=0)
    QApplication.processEvents()  # the axis takes the new range
    before = w.grab().toImage()
    assert w.grab().toImage() == before  # nothing changed: the same pixels
    w.getPlotItem().setYRange(0, 1000, padding=0)  # other tick labels
    QApplication.processEvents()
    assert w.grab().toImage() != before


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_nice_ceiling_is_a_round_number_just_above(v):
    c = nice_ceiling(v)
    assert c >= v * (1 - 1e-9)
    assert c <= v * 4 / 3 * (1 + 1e-9)  # the widest gap between steps is 1.5 -> 2 (and 3 -> 4, 6 -> 8)
    mantissa = c / 10 ** math.floor(math.log10(c) + 1e-12)
    assert any(abs(mantissa - s) < 1e-6 for s in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10))


def test_progress_during_preparation_is_never_a_busy_bar(qtbot):
    """A busy bar (range 0..0) is animated by the style at ~30 frames a second, repainting the
    window behind it while the run prepares; unknown-length work shows elapsed seconds."""
    from transfer_gui.ui.widgets.run_progress import RunProgress

    rp = RunProgress()
    qtbot.addWidget(rp)
    m = RunMonitor()
    m.ingest(ev.PhaseChanged("prepare", "Loading model resnet18"))
    m.phase_since -= 7
    rp.show_state(m, running=True, paused=False, kind="train")
    assert rp.epoch_bar.maximum() > 0 and rp.run_bar.maximum() > 0
    assert rp.epoch_bar.format() == "Loading model resnet18 (7 s)" and rp.run_bar.format() == "Preparing…"
    m.ingest(ev.Progress("features", 30, 120, "Computing the frozen layers once"))
    rp.show_state(m, running=True, paused=False, kind="train")
    assert (rp.epoch_bar.maximum(), rp.epoch_bar.value()) == (120, 30)
    assert "30 of 120" in rp.epoch_bar.format()
    m.ingest(ev.Progress("decode", 5, 0, "Decoding"))  # total unknown
    rp.show_state(m, running=True, paused=False, kind="train")
    assert rp.epoch_bar.maximum() > 0 and rp.epoch_bar.value() == 0 and "(5)" in rp.epoch_bar.format()
    m.ingest(_started())
    m.ingest(ev.PhaseChanged("train", "Epoch 1 of 4"))
    m.ingest(_batch(0, 2, 1.0))
    rp.show_state(m, running=True, paused=False, kind="train")
    assert rp.epoch_bar.value() == 400 and "batch 2 of 5" in rp.epoch_bar.format()
    assert rp.run_bar.value() == 100 and "left" in rp.run_bar.format()
    m2 = RunMonitor()  # a run that fails while preparing
    m2.ingest(ev.PhaseChanged("prepare", "Loading model x"))
    rp.show_state(m2, running=True, paused=False, kind="train")
    m2.ingest(ev.Finished("failed", "bad weights", "r"))
    rp.show_state(m2, running=False, paused=False, kind="train")
    assert rp.run_bar.format() == "Failed" and rp.epoch_bar.format() == "Epoch –"


def test_small_values_keep_their_scale_on_the_axis(qtbot):
    """pyqtgraph's automatic SI prefix would draw a learning rate of 2e-4 as 200 under "lr (x1e-06)"."""
    from transfer_gui.ui.widgets.plotting import add_curve, make_plot

    w = make_plot("Learning rate", "lr", "step")
    qtbot.addWidget(w)
    add_curve(w, "#1f77b4", "run").setData([1.0, 2.0, 3.0], [7.5e-4, 2.5e-4, 1.9e-4])
    w.resize(300, 200)
    w.show()
    qtbot.waitExposed(w)
    axis = w.getPlotItem().getAxis("left")
    assert axis.scale == 1.0
    qtbot.waitUntil(lambda: axis.range[1] < 1e-3)
    assert axis.scale == 1.0
    assert "(x" not in axis.labelString() and "lr" in axis.labelString()
