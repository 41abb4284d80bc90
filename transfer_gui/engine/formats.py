"""Model file formats and names, with no torch (the window and the command line name and find
files before torch is imported): export suffixes, the app checkpoint's format tag and version,
and where a run folder keeps its checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

# Image files the app reads, by extension (a DICOM file may also have none: imageio checks its magic).
HEIC_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
                             | HEIC_EXTENSIONS | DICOM_EXTENSIONS)


def is_image_name(path: str | os.PathLike[str]) -> bool:
    """Whether a file's extension is one the app reads (the contents are checked when it is read)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def image_file_filter() -> str:
    """A file dialog's filter for every image the app reads, then all files."""
    patterns = " ".join(f"*{ext}" for ext in sorted(IMAGE_EXTENSIONS))
    return f"Images ({patterns});;All files (*)"


SUFFIXES = {"checkpoint": ".pt", "safetensors": ".safetensors", "torchscript": ".torchscript.pt",
            "onnx-int8": ".int8.onnx",
            "onnx": ".onnx", "onnx-rgb": ".rgb.onnx"}  # onnx-rgb: uint8 RGB images in, preprocessing in the graph

# int8 formats (engine/quantize.py): judged against the fp32 file on the run's validation set, not by
# logit parity, so they are not among export.FORMATS (the exact formats)
QUANTIZED = ("onnx-int8",)

CHECKPOINT_FORMAT = "transfer_gui.checkpoint"  # the "format" key of every app checkpoint
CHECKPOINT_VERSION = 1  # the version this transfer_gui writes, and the newest it reads

# Where a run folder keeps the checkpoint to use, best first (a bare folder of .pt files too).
CHECKPOINT_PLACES = ("checkpoints/best.pt", "checkpoints/last.pt", "best.pt", "last.pt")


def checkpoint_in(run_dir: str | os.PathLike[str]) -> Path | None:
    """The checkpoint a run folder offers (its best epoch's, else its last one's), or None."""
    folder = Path(run_dir)
    return next((folder / place for place in CHECKPOINT_PLACES if (folder / place).is_file()), None)


CHECKPOINT_REQUIRED = ("arch", "classes", "preprocessing", "state_dict")


def checkpoint_problem(ck: dict, where: object) -> str:
    """Why the app checkpoint ``ck`` (read from ``where``) cannot be used, or "": the one check of
    its version and keys, for every reader (opening a run, exporting, importing its weights)."""
    version = ck.get("version", 1)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        return (f"{where} has checkpoint version {version!r}; this transfer_gui reads up to version "
                f"{CHECKPOINT_VERSION}. Update transfer_gui to open it.")
    missing = [k for k in CHECKPOINT_REQUIRED if k not in ck]
    return f"checkpoint {where} is incomplete: missing {', '.join(missing)}" if missing else ""


def no_checkpoint_message(run_dir: str | os.PathLike[str]) -> str:
    return (f"no checkpoint in run folder {run_dir}: expected checkpoints/best.pt or checkpoints/last.pt "
            f"(has the run finished an epoch?)")


def file_stem(name: str) -> str:
    """A file name without a format's suffix that a user may have typed (``cats.onnx`` -> ``cats``)."""
    name = name.strip()
    for suffix in sorted(SUFFIXES.values(), key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
