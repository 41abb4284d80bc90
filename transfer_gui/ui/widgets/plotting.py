"""pyqtgraph plots that follow the window's palette. Curves are created once and updated
with ``setData``; long curves are downsampled and clipped to the view."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QGraphicsItem, QWidget

pg.setConfigOptions(antialias=True)


def _colors() -> tuple[str, str, str]:
    pal = QApplication.instance().palette()
    bg = pal.color(QPalette.ColorRole.Base).name()
    fg = pal.color(QPalette.ColorRole.Text).name()
    grid = pal.color(QPalette.ColorRole.Mid).name()
    return bg, fg, grid


def style_plot(w: pg.PlotWidget) -> None:
    bg, fg, _grid = _colors()
    w.setBackground(bg)
    item = w.getPlotItem()
    for name in ("left", "bottom", "right", "top"):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen(fg))
        axis.setTextPen(pg.mkPen(fg))
    title = getattr(w, "_title_text", "")
    if title:
        item.setTitle(title, color=fg, size="10pt")
    for curve in item.listDataItems():
        _pen_curve(curve, bg)
    legend = item.legend
    if legend is not None:
        legend.setLabelTextColor(fg)
        legend.setBrush(pg.mkBrush(bg + "c8"))
        for _sample, label in legend.items:
            label.setText(label.text)  # re-render in the new colour


def make_plot(title: str, left: str = "", bottom: str = "", legend: bool = False,
              legend_at: tuple[int, int] = (-8, 8)) -> pg.PlotWidget:
    w = pg.PlotWidget()
    w._title_text = title  # type: ignore[attr-defined]
    item = w.getPlotItem()
    item.showGrid(x=True, y=True, alpha=0.25)
    item.setMenuEnabled(False)
    if left:
        item.setLabel("left", left)
    if bottom:
        item.setLabel("bottom", bottom)
    if legend:
        item.addLegend(offset=legend_at, labelTextSize="8pt", verSpacing=-6)
    # The axes draw the grid across the whole plot, and replaying that picture costs ~6 ms per
    # plot on every repaint (each setData repaints the data area). Cached as a pixmap, an axis
    # is drawn again only when its range, size or style changes.
    for name in ("left", "bottom", "right", "top"):
        item.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        # a loss of 0.25 is shown as 0.25, not as 250 on an axis labelled "(x0.001)"
        item.getAxis(name).enableAutoSIPrefix(False)
    w.setMinimumHeight(150)
    style_plot(w)
    return w


def add_curve(w: pg.PlotWidget, color: str, name: str | None = None, width: float = 2.0,
              alpha: int = 255, symbol: str | None = None, dash: bool = False) -> pg.PlotDataItem:
    kwargs = dict(name=name)
    if symbol:
        kwargs.update(symbol=symbol, symbolSize=7)
    curve = w.getPlotItem().plot([], [], **kwargs)
    curve._tg_style = (color, alpha, width, dash)  # type: ignore[attr-defined]  # re-drawn per theme
    _pen_curve(curve, _colors()[0])
    curve.setClipToView(True)
    curve.setDownsampling(auto=True, method="peak")
    return curve


def curve_color(color: str, alpha: int, bg: str) -> "QColor":
    """The colour a curve is drawn in on ``bg``: at least the minimum contrast, also when it is
    drawn translucent (the opacity is raised until the blend stands out as much)."""
    from PySide6.QtGui import QColor

    from transfer_gui.ui import theme

    c = QColor(theme.readable(color, bg))
    a = alpha / 255
    while a < 1.0 and theme.contrast(theme.blend(c, bg, a), bg) < theme.MIN_CONTRAST:
        a = min(1.0, a + 0.05)
    c.setAlphaF(a)
    return c


def _pen_curve(curve, bg: str) -> None:
    from PySide6.QtCore import Qt

    style = getattr(curve, "_tg_style", None)
    if style is None:
        return
    color, alpha, width, dash = style
    c = curve_color(color, alpha, bg)
    curve.setPen(pg.mkPen(c, width=width, style=Qt.PenStyle.DashLine if dash else Qt.PenStyle.SolidLine))
    if curve.opts.get("symbol"):
        curve.setSymbolBrush(pg.mkBrush(c))
        curve.setSymbolPen(pg.mkPen(c))


def restyle_all(root: QWidget) -> None:
    for w in root.findChildren(pg.PlotWidget):
        style_plot(w)
