"""The installed Qt binding keeps Python's reference counts intact (PySide6 6.12.0 on
Python 3.11 does not, and the window aborts after minutes of painting)."""

from __future__ import annotations

import ctypes
import sys

import pytest

from transfer_gui.ui.qt_check import binding_problem, none_refs_lost


def test_installed_binding_keeps_none_references():
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QImage, QPainter

    assert none_refs_lost() == 0
    image = QImage(8, 8, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        # the calls a plot's paint makes thousands of times a minute
        assert none_refs_lost(lambda: painter.drawLine(0, 0, 5, 5)) == 0
        assert none_refs_lost(lambda: painter.setOpacity(0.5)) == 0
    finally:
        painter.end()
    assert none_refs_lost(lambda: QRectF().setHeight(2.0)) == 0
    assert binding_problem() == ""


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12 on")
def test_a_binding_that_drops_none_is_named():
    decref = ctypes.pythonapi.Py_DecRef
    decref.argtypes = [ctypes.py_object]
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]
    lost = []

    def leaky() -> None:  # what the defective binding does on every void call
        decref(None)
        lost.append(1)

    try:
        message = binding_problem(leaky)
    finally:
        for _ in lost:  # give the references back
            incref(None)
    assert "PySide6" in message and "None" in message and "!=6.12.0" in message
