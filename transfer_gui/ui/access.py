"""What makes the window usable without a mouse and readable by a screen reader, in one place:
a focus ring that can be seen, tooltips that wrap at a readable width, and a name for every
control that has none of its own."""

from __future__ import annotations

import html
import re

from PySide6.QtCore import QEvent, QObject, QRectF, Qt
from PySide6.QtGui import Qt as QtGuiNamespace  # Qt::mightBeRichText lives in QtGui
from PySide6.QtGui import QAccessible, QPainter, QPalette, QPen
from PySide6.QtWidgets import (QAbstractButton, QAbstractItemView, QAbstractSlider, QAbstractSpinBox, QApplication,
                               QComboBox, QLabel, QLineEdit, QPlainTextEdit, QProxyStyle, QStyle, QStyleFactory,
                               QTextEdit, QWidget)

TIP_WIDTH_CHARS = 70  # a tooltip wider than about this many characters wraps
CONTROLS = (QAbstractButton, QLineEdit, QComboBox, QAbstractSpinBox, QAbstractItemView, QAbstractSlider,
            QPlainTextEdit, QTextEdit)


class FocusStyle(QProxyStyle):
    """Fusion, with a 2-pixel ring in the highlight colour around whatever has the keyboard focus
    (Fusion marks it with a 1-pixel tint that is easy to miss), in both themes."""

    RINGED_PRIMITIVES = (QStyle.PrimitiveElement.PE_PanelButtonCommand, QStyle.PrimitiveElement.PE_FrameLineEdit)
    RINGED_CONTROLS = (QStyle.ComplexControl.CC_ComboBox, QStyle.ComplexControl.CC_SpinBox,
                       QStyle.ComplexControl.CC_Slider, QStyle.ComplexControl.CC_ToolButton)

    def __init__(self) -> None:
        super().__init__(QStyleFactory.create("Fusion"))

    @staticmethod
    def _ring(option, painter: QPainter, inset: float = 1.0) -> None:
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(option.palette.color(QPalette.ColorRole.Highlight), 2))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(QRectF(option.rect).adjusted(inset, inset, -inset, -inset), 3, 3)
        painter.restore()

    @staticmethod
    def _keyboard_focus(option) -> bool:
        state = option.state
        return bool(state & QStyle.StateFlag.State_HasFocus and state & QStyle.StateFlag.State_KeyboardFocusChange)

    def drawPrimitive(self, element, option, painter: QPainter, widget=None) -> None:  # noqa: N802 - Qt's name
        if element == QStyle.PrimitiveElement.PE_FrameFocusRect:
            self._ring(option, painter)
            return
        super().drawPrimitive(element, option, painter, widget)
        if element in self.RINGED_PRIMITIVES and self._keyboard_focus(option):
            self._ring(option, painter)

    def drawComplexControl(self, control, option, painter: QPainter, widget=None) -> None:  # noqa: N802
        super().drawComplexControl(control, option, painter, widget)
        if control in self.RINGED_CONTROLS and self._keyboard_focus(option):
            self._ring(option, painter)


def wrap_tip(text: str) -> str:
    """A long plain-text tooltip as rich text, which Qt wraps (at about 80 characters); rich text
    and short tips are left alone."""
    if not text or len(text) <= TIP_WIDTH_CHARS or QtGuiNamespace.mightBeRichText(text):
        return text
    return "<p style='white-space:pre-wrap'>" + html.escape(text) + "</p>"


class TooltipWrapper(QObject):
    """Installed on the application: a plain tooltip too wide to read is shown wrapped instead.
    Qt shows every tooltip (of widgets, actions and table cells) in one label, so this one place
    covers all of them; for any other object it returns after one type check."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() in (QEvent.Type.Show, QEvent.Type.Resize) and isinstance(obj, QLabel) \
                and obj.objectName() == "qtooltip_label":
            text = obj.text()
            if not obj.wordWrap() and len(text) > TIP_WIDTH_CHARS and not QtGuiNamespace.mightBeRichText(text):
                obj.setWordWrap(True)
                obj.setText(wrap_tip(text))
                obj.adjustSize()
        return False


def install(app: QApplication) -> None:
    """Once per application: the focus ring and the tooltip wrapper."""
    if app.property("transfer_gui_access"):
        return
    app.setProperty("transfer_gui_access", True)
    wrapper = TooltipWrapper(app)
    app.installEventFilter(wrapper)
    app._tg_tooltip_wrapper = wrapper  # type: ignore[attr-defined]  # kept alive with the app


def accessible_name(widget: QWidget) -> str:
    """The name a screen reader announces for ``widget`` (own name, text, or its label's)."""
    iface = QAccessible.queryAccessibleInterface(widget)
    return iface.text(QAccessible.Text.Name) if iface is not None else ""


def is_control(widget: QWidget) -> bool:
    """A control a person operates (not Qt's inner parts of one, such as a spin box's line edit)."""
    if not isinstance(widget, CONTROLS) or widget.objectName().startswith("qt_"):
        return False
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, (QAbstractSpinBox, QComboBox, QLineEdit)) or type(parent).__name__ == "QComboBoxPrivateContainer":
            return False
        parent = parent.parentWidget()
    return widget.focusPolicy() != Qt.FocusPolicy.NoFocus


def name_from_tip(widget: QWidget) -> str:
    """A short name from a control's tooltip or placeholder: its first clause, up to ~60 characters."""
    text = re.sub(r"<[^>]+>", "", widget.toolTip() or "") or getattr(widget, "placeholderText", lambda: "")()
    first = re.split(r"(?<=[.:;!?])\s|\(|\n", text.strip(), maxsplit=1)[0].rstrip(".:;")
    if len(first) > 60:
        first = first[:60].rsplit(" ", 1)[0]
    return first


def name_controls(root: QWidget) -> list[QWidget]:
    """Give every control under ``root`` that a screen reader could not name a name from its
    tooltip, and let Tab leave tables (arrow keys move inside them; Qt's default keeps Tab going
    round the cells, a trap for keyboard users). Returns the controls still without a name."""
    left = []
    for view in root.findChildren(QAbstractItemView):
        view.setTabKeyNavigation(False)
    for text in root.findChildren(QPlainTextEdit):
        text.setTabChangesFocus(True)
    for w in root.findChildren(QWidget):
        if not is_control(w) or accessible_name(w):
            continue
        name = name_from_tip(w)
        if name:
            w.setAccessibleName(name)
        else:
            left.append(w)
    return left
