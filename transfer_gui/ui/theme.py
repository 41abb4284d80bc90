"""Light and dark palettes on the Fusion style, and the colours plots and tables share."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("light", "dark")

# Curve colours, readable on both backgrounds (Okabe-Ito, colour-blind safe, plus extras).
SERIES = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#7F7F7F",
          "#F0E442", "#8C564B", "#17BECF", "#9467BD", "#BCBD22")


MIN_CONTRAST = 3.0  # WCAG 2.1 for graphics and large text (1.4.11, 1.4.3): curves, marks, status texts


def series_color(i: int) -> str:
    """The palette colour of series ``i``; draw it with :func:`readable` on its background."""
    return SERIES[i % len(SERIES)]


def _luminance(c: QColor) -> float:
    def channel(v: float) -> float:
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(c.redF()) + 0.7152 * channel(c.greenF()) + 0.0722 * channel(c.blueF())


def contrast(a: str | QColor, b: str | QColor) -> float:
    """WCAG contrast ratio of two opaque colours, 1 (same) to 21 (black on white)."""
    la, lb = sorted((_luminance(QColor(a)), _luminance(QColor(b))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def blend(color: str | QColor, background: str | QColor, alpha: float) -> QColor:
    """What ``color`` at opacity ``alpha`` (0..1) looks like over ``background``."""
    c, bg = QColor(color), QColor(background)
    return QColor.fromRgbF(*(alpha * x + (1 - alpha) * y for x, y in
                             zip((c.redF(), c.greenF(), c.blueF()), (bg.redF(), bg.greenF(), bg.blueF()))))


def background() -> str:
    """The background plots, tables and text fields are drawn on."""
    app = QApplication.instance()
    return app.palette().color(QPalette.ColorRole.Base).name() if app is not None else "#ffffff"


def readable(color: str | QColor, on: str | QColor | None = None, ratio: float = MIN_CONTRAST) -> str:
    """``color`` with its lightness moved (hue kept) just far enough to stand out against ``on``
    (the current background by default) by ``ratio``: the palette's orange gets darker on white and
    its blue lighter on the dark theme."""
    c, bg = QColor(color), QColor(on if on is not None else background())
    if contrast(c, bg) >= ratio:
        return c.name()
    h, s, lightness, _a = c.getHslF()
    step = 0.02 if _luminance(bg) < 0.18 else -0.02  # dark background: lighten; light: darken
    while 0.0 <= lightness <= 1.0:
        lightness += step
        candidate = QColor.fromHslF(max(0.0, h), s, min(1.0, max(0.0, lightness)))
        if contrast(candidate, bg) >= ratio:
            return candidate.name()
    return "#ffffff" if step > 0 else "#000000"


def muted(color: str | QColor, saturation: float = 0.35) -> str:
    """A greyer variant of ``color`` for a curve drawn behind its stronger twin (per-batch loss)."""
    h, s, lightness, _a = QColor(color).getHslF()
    return QColor.fromHslF(max(0.0, h), s * saturation, lightness).name()


def text_on(fill: str | QColor) -> str:
    """Black or white, whichever reads better on ``fill`` (a badge, a swatch)."""
    return "#ffffff" if contrast("#ffffff", fill) >= contrast("#111111", fill) else "#111111"


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
        highlight, link, disabled, placeholder = "#3d7bd9", "#6ea8fe", "#7d8087", "#8f9299"
    else:
        window, base, alt, text, button = "#f3f3f4", "#ffffff", "#f6f7f9", "#1d1d1f", "#e9e9ec"
        highlight, link, disabled, placeholder = "#2f6fd6", "#1a5fb4", "#9a9aa0", "#6e6e74"
    roles = {
        QPalette.ColorRole.Window: window, QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.Base: base, QPalette.ColorRole.AlternateBase: alt,
        QPalette.ColorRole.Text: text, QPalette.ColorRole.Button: button,
        QPalette.ColorRole.ButtonText: text, QPalette.ColorRole.ToolTipBase: base,
        QPalette.ColorRole.ToolTipText: text, QPalette.ColorRole.Highlight: highlight,
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.Link: link,
        QPalette.ColorRole.PlaceholderText: placeholder,  # hints are text: readable, unlike disabled QPalette.ColorRole.BrightText: "#ff5555",
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
    from transfer_gui.ui.access import FocusStyle

    style = FocusStyle()  # Fusion with a focus ring that can be seen
    app.setStyle(style)
    app._tg_style = style  # type: ignore[attr-defined]  # the Python side must live as long as Qt uses it
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


def drop_zone_css(extra: str = "") -> str:
    """A dashed drop area whose border and text stand out on the window in either theme."""
    app = QApplication.instance()
    pal = app.palette()
    window = pal.color(QPalette.ColorRole.Window)
    border = readable(pal.color(QPalette.ColorRole.Mid), window)
    text = pal.color(QPalette.ColorRole.WindowText).name()
    return f"QLabel {{ border: 2px dashed {border}; border-radius: 8px; color: {text}; {extra} }}"
