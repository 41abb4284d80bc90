"""Thumbnails through the engine's open_image (phone photos drafted and upright, HEIC), and the
Skipped files dialog saying once which extra a folder of HEIC/DICOM files needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtWidgets import QLabel

from transfer_gui.engine.imageio import NEEDS_DICOM, NEEDS_HEIC
from transfer_gui.engine.scan import Skipped
from transfer_gui.ui.widgets.skipped_dialog import SkippedDialog
from transfer_gui.ui.widgets.thumbnails import read_thumbnail

DATA = Path(__file__).parent.parent / "data"


def test_thumbnail_of_a_rotated_photo_is_upright_and_fits_the_box(tmp_path, qapp):
    stored = Image.new("RGB", (1600, 800), (255, 0, 0))
    stored.paste((0, 0, 255), (800, 0, 1600, 800))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: red on top
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=90)
    thumb = read_thumbnail(str(tmp_path / "phone.jpg"), 64)
    assert (thumb.width(), thumb.height()) == (32, 64)
    top, bottom = thumb.pixelColor(16, 8), thumb.pixelColor(16, 56)
    assert top.red() > 200 and top.blue() < 60 and bottom.blue() > 200 and bottom.red() < 60


def test_thumbnail_enlarges_small_images_and_says_none_for_broken(tmp_path, qapp):
    Image.new("L", (28, 14), 200).save(tmp_path / "small.png")
    thumb = read_thumbnail(str(tmp_path / "small.png"), 56)
    assert (thumb.width(), thumb.height()) == (56, 28) and thumb.pixelColor(10, 10).green() == 200
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    assert read_thumbnail(str(tmp_path / "broken.jpg"), 56) is None


def test_thumbnail_of_heic(tmp_path, qapp):
    pytest.importorskip("pi_heif")
    thumb = read_thumbnail(str(DATA / "rgb.heic"), 32)
    assert (thumb.width(), thumb.height()) == (32, 24)
    assert thumb.pixelColor(4, 12).red() > 190 and thumb.pixelColor(28, 12).blue() > 190


def test_skipped_dialog_says_each_missing_extra_once(qtbot, tmp_path):
    skipped = ([Skipped(f"/d/{i}.heic", NEEDS_HEIC) for i in range(40)]
               + [Skipped(f"/d/{i}.dcm", NEEDS_DICOM) for i in range(3)] + [Skipped("/d/x.png", "empty file (0 bytes)")])
    dialog = SkippedDialog(skipped)
    qtbot.addWidget(dialog)
    text = " ".join(label.text() for label in dialog.findChildren(QLabel))
    assert text.count("pip install 'transfer-gui[heic]'") == 1 and "40 HEIC/HEIF file(s)" in text
    assert text.count("pip install 'transfer-gui[dicom]'") == 1 and "3 DICOM file(s)" in text
    assert dialog.table.rowCount() == 44 and dialog.table.item(43, 1).text() == "empty file (0 bytes)"


def test_skipped_dialog_without_extras_has_no_install_line(qtbot):
    dialog = SkippedDialog([{"path": "/d/a.png", "reason": "empty file (0 bytes)"}])
    qtbot.addWidget(dialog)
    text = " ".join(label.text() for label in dialog.findChildren(QLabel))
    assert "1 file(s) or folder(s) were left out" in text and "pip install" not in text
