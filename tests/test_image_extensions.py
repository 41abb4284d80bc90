"""One list of image extensions, in the torch-free formats module, for the scanner, the command
line and every part of the window (drops, folder pickers, the Try it file dialog)."""

from __future__ import annotations

import re
from pathlib import Path

from transfer_gui.engine import formats, imageio, scan

ROOT = Path(__file__).resolve().parents[1]


def test_the_window_accepts_heic_and_dicom_as_the_scanner_does():
    for name in ("photo.HEIC", "scan.dcm", "a.tiff", "b.JPG", "c.heif"):
        assert formats.is_image_name(name)
    assert not formats.is_image_name("notes.txt") and not formats.is_image_name("labels.csv")
    assert imageio.IMAGE_EXTENSIONS is formats.IMAGE_EXTENSIONS is scan.IMAGE_EXTENSIONS


def test_the_file_dialog_filter_names_every_extension():
    text = formats.image_file_filter()
    images, rest = text.split(";;")
    assert rest == "All files (*)"
    assert set(re.findall(r"\*(\.\w+)", images)) == set(formats.IMAGE_EXTENSIONS)


def test_no_front_end_module_keeps_its_own_list():
    for path in list((ROOT / "transfer_gui" / "ui").rglob("*.py")) + [ROOT / "transfer_gui" / "cli.py"]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""["']\.tiff?["']""", text), f"{path.name} lists image extensions itself"
