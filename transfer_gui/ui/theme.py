"""Light and dark palettes on the Fusion style, and the colours plots and tables share."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("light", "dark")

# Curve colours, readable on both backgrounds (Okabe-Ito, colour-blind safe, plus extras).
SERIES = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#7F7F7F",
          "#F0E442", "#8C564B", "#17BECF", "#9467BD", "#BCBD22")


def series_color(i: int) -> str:
    return SERIES[i % len(SERIES)]


def group_color(index: int, count: int) -> str:
    """Colour of layer group ``index`` of ``count``: the head is always the first colour, so
    the same group looks the same in the preview and in the training plot."""
    return series_color(count - 1 - index)


def _palette(dark: bool) -> QPalette:
    p = QPalette()
    if dark:
        # Base lighter than Window: Fusion outlines check boxes with a darker Window colour,
        # which must stand out against the Base they are drawn on.
        window, base, alt, text, button = "#26282c", "#34363c", "#393b42", "#e8e8ea", "#3a3d43"
        highlight, link, disabled = "#3d7bd9", "#6ea8fe", "#7d8087"
    else:
        window, base, alt, text, button = "#f3f3f4", "#ffffff", "#f6f7f9", "#1d1d1f", "#e9e9ec"
        highlight, link, disabled = "#2f6fd6", "#1a5fb4", "#9a9aa0"
    roles = {
        QPalette.ColorRole.Window: window, QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.Base: base, QPalette.ColorRole.AlternateBase: alt,
        QPalette.ColorRole.Text: text, QPalette.ColorRole.Button: button,
        QPalette.ColorRole.ButtonText: text, QPalette.ColorRole.ToolTipBase: base,
        QPalette.ColorRole.ToolTipText: text, QPalette.ColorRole.Highlight: highlight,
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.Link: link,
        QPalette.ColorRole.PlaceholderText: disabled, QPalette.ColorRole.BrightText: "#ff5555",
    }
    for role, colour in roles.items():
        p.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(disabled))
    if dark:
        for role, colour in ((QPalette.ColorRole.Light, "#55585f"), (QPalette.ColorRole.Midlight, "#45484e"),
                             (QPalette.ColorRole.Mid, "#5d6068"), (QPalette.ColorRole.Dark, "#1b1c1f"),
                             (QPalette.ColorRole.Shadow, "#0e0f10")):
            p.setColor(role, QColor(colour))
    return p


def apply_theme(app: QApplication, theme: str) -> None:
    app.setStyle("Fusion")
    app.setPalette(_palette(theme == "dark"))
    app.setProperty("transfer_gui_theme", theme)


def current_theme() -> str:
    app = QApplication.instance()
    theme = app.property("transfer_gui_theme") if app is not None else None
    return theme if theme in THEMES else "light"


def is_dark() -> bool:
    app = QApplication.instance()
    if app is None:
        return False
    return app.palette().color(QPalette.ColorRole.Window).lightness() < 128


def status_colors() -> dict[str, str]:
    """Text colours for good / warning / error messages on the current background."""
    if is_dark():
        return {"ok": "#6fcf97", "warn": "#f2c94c", "error": "#ff7b72", "muted": "#9da0a6"}
    return {"ok": "#1e7d32", "warn": "#9a6700", "error": "#c62828", "muted": "#6b6b70"}
