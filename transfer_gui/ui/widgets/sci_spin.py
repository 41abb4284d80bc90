"""A spin box for learning rates and weight decay: shows and accepts scientific notation
(3e-4), and the arrows step the leading digit (1e-3 → 2e-3 … 9e-3 → 1e-2)."""

from __future__ import annotations

import math

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QDoubleSpinBox


def fmt_sci(value: float) -> str:
    if value == 0:
        return "0"
    exp = math.floor(math.log10(abs(value)))
    mant = round(value / 10 ** exp, 2)
    if abs(mant) >= 10:
        mant /= 10
        exp += 1
    return f"{mant:g}e{exp}"


def step_leading_digit(value: float, steps: int, minimum: float) -> float:
    if value <= 0:
        return minimum if steps > 0 else 0.0
    for _ in range(abs(steps)):
        exp = math.floor(math.log10(value) + 1e-9)
        mant = round(value / 10 ** exp, 6)
        if steps > 0:
            mant = math.floor(mant + 1e-9) + 1
            value = mant * 10 ** exp
        else:
            mant = math.ceil(mant - 1e-9) - 1
            value = (0.9 * 10 ** exp) if mant < 1 else mant * 10 ** exp
    return float(f"{value:.6g}")


class SciSpinBox(QDoubleSpinBox):
    def __init__(self, minimum: float = 1e-8, maximum: float = 10.0, allow_zero: bool = False, parent=None):
        super().__init__(parent)
        self.setDecimals(12)
        self._floor = minimum
        self.setRange(0.0 if allow_zero else minimum, maximum)
        self.setKeyboardTracking(False)
        self.setCorrectionMode(QAbstractSpinBox.CorrectionMode.CorrectToNearestValue)
        self.setMinimumWidth(88)

    def textFromValue(self, value: float) -> str:
        return fmt_sci(value)

    def valueFromText(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        t = text.strip()
        try:
            v = float(t)
        except ValueError:
            ok_prefix = all(c in "0123456789.eE+-" for c in t)
            return (QValidator.State.Intermediate if ok_prefix else QValidator.State.Invalid), text, pos
        if self.minimum() <= v <= self.maximum():
            return QValidator.State.Acceptable, text, pos
        return QValidator.State.Intermediate, text, pos

    def fixup(self, text: str) -> str:
        return fmt_sci(self.value())

    def stepBy(self, steps: int) -> None:
        self.setValue(min(self.maximum(), max(self.minimum(), step_leading_digit(self.value(), steps, self._floor))))
