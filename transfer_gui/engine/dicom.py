"""DICOM files as 8-bit RGB images, through the optional ``dicom`` extra (pydicom).

What a radiologist's viewer shows is what the network gets:

* stored values go through the modality transform first (``RescaleSlope`` and
  ``RescaleIntercept``, e.g. CT's Hounsfield units), then through the file's VOI window
  (``WindowCenter`` / ``WindowWidth``, the first pair when there are several) with DICOM's
  linear window function (PS3.3 C.11.2.1.2): values below the window are black, above it
  white. A file without a window but with a VOI LUT sequence uses that table; a file with
  neither is stretched from its smallest to its largest value.
* ``MONOCHROME1`` (white is zero) is inverted after the window, so bone is white either way.
* RGB and YBR files come out as RGB (pydicom converts YBR); 16-bit colour is scaled by its
  ``BitsStored``.
* A multi-frame file (cine, a CT series in one file) is refused with a message naming the file,
  and so is a compressed transfer syntax the installed pydicom has no decoder for (JPEG-LS
  needs ``pylibjpeg`` and ``pylibjpeg-libjpeg``, for instance).

Errors are :class:`~transfer_gui.engine.imageio.ImageError` with a short reason, like every
other image; this module imports pydicom only when a DICOM file is read.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

MAGIC_OFFSET = 128
MAGIC = b"DICM"


def has_magic(head: bytes) -> bool:
    """True when the first 132 bytes are a DICOM Part 10 preamble and ``DICM`` prefix."""
    return head[MAGIC_OFFSET:MAGIC_OFFSET + 4] == MAGIC


def available() -> bool:
    """Whether pydicom (the ``dicom`` extra) can be imported."""
    try:
        import pydicom  # noqa: F401
    except ImportError:
        return False
    return True


def _read(path: str, pixels: bool) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except InvalidDicomError:
        raise ValueError("not a valid DICOM file") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure on a damaged file
        raise ValueError(f"corrupt DICOM file ({str(exc).strip()[:80] or type(exc).__name__})") from None


def header_problem(ds: Any, max_pixels: int | None = None) -> str | None:
    """Why a DICOM dataset (read without its pixels) cannot become one image, or None."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        return (f"multi-frame DICOM ({frames} frames) is not supported: save each frame as its own file "
                f"or pick one")
    if "Rows" not in ds or "Columns" not in ds:
        return "DICOM file without an image (no Rows/Columns: a report or a structured document?)"
    rows, cols = int(ds.Rows), int(ds.Columns)
    if rows <= 0 or cols <= 0:
        return f"image has no pixels ({cols}x{rows})"
    if max_pixels is not None and rows * cols > max_pixels:
        return f"image too large: {cols}x{rows} pixels (limit {max_pixels} pixels)"
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_compressed and not _decoder_available(syntax):
        return (f"compressed DICOM ({syntax.name}) that the installed pydicom cannot decode; "
                f"pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg, or convert it to uncompressed")
    return None


def _decoder_available(syntax: Any) -> bool:
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(syntax).is_available)
    except (NotImplementedError, ValueError):
        return False


def probe(path: str | os.PathLike[str], max_pixels: int | None = None) -> str | None:
    """Header-only check: the reason a DICOM file is unusable, or None."""
    try:
        ds = _read(os.fspath(path), pixels=False)
    except ValueError as exc:
        return str(exc)
    return header_problem(ds, max_pixels)


def _window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """DICOM's linear VOI window (PS3.3 C.11.2.1.2.1) onto 0..255."""
    width = max(float(width), 1.0)
    low = centre - 0.5 - (width - 1.0) / 2.0
    high = centre - 0.5 + (width - 1.0) / 2.0
    out = ((values - (centre - 0.5)) / (width - 1.0 if width > 1.0 else 1.0) + 0.5) * 255.0
    out = np.where(values <= low, 0.0, np.where(values > high, 255.0, out))
    return np.clip(out, 0.0, 255.0)


def _first(value: Any) -> float:
    """The first of a multi-valued element (WindowCenter may hold several presets)."""
    try:
        return float(value[0])
    except (TypeError, IndexError, KeyError):
        return float(value)


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) * 255.0 / (high - low) if high > low else np.zeros_like(values)


def _grey(ds: Any, stored: np.ndarray) -> np.ndarray:
    """Monochrome stored values -> 0..255 floats (modality, then VOI, then MONOCHROME1)."""
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    values = stored.astype(np.float64) * slope + intercept
    if "WindowCenter" in ds and "WindowWidth" in ds:
        out = _window(values, _first(ds.WindowCenter), _first(ds.WindowWidth))
    elif "VOILUTSequence" in ds:
        from pydicom.pixels import apply_voi

        out = _stretch(np.asarray(apply_voi(values, ds), dtype=np.float64))
    else:
        out = _stretch(values)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        out = 255.0 - out
    return out


def _colour(ds: Any, stored: np.ndarray) -> np.ndarray:
    bits = int(ds.get("BitsStored", 8) or 8)
    if bits <= 8:
        return stored.astype(np.float64)
    return stored.astype(np.float64) * (255.0 / float(2 ** bits - 1))


def to_image(ds: Any, max_pixels: int | None = None) -> Image.Image:
    """The RGB image of a DICOM dataset read with its pixels; ``ValueError`` with the reason."""
    problem = header_problem(ds, max_pixels)
    if problem is not None:
        raise ValueError(problem)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric.startswith("PALETTE"):
        raise ValueError("palette-colour DICOM is not supported")
    try:
        stored = np.asarray(ds.pixel_array)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a decoder failure on damaged or unsupported data
        raise ValueError(f"cannot decode the DICOM pixel data ({str(exc).strip()[:80] or type(exc).__name__})") from None
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 3 and stored.ndim == 3:
        arr = _colour(ds, stored)
    elif samples == 1 and stored.ndim == 2:
        arr = np.repeat(_grey(ds, stored)[..., None], 3, axis=2)
    else:
        raise ValueError(f"unexpected DICOM pixel layout {stored.shape} with {samples} samples per pixel")
    rgb = np.floor(np.clip(arr, 0.0, 255.0) + 0.5).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


def read(path: str | os.PathLike[str], max_pixels: int | None = None) -> Image.Image:
    """Decode a DICOM file into RGB; ``ValueError`` with a short reason when it cannot be."""
    return to_image(_read(os.fspath(path), pixels=True), max_pixels)
