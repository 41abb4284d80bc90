"""Export formats and their file names (no torch: the window names files before exporting)."""

from __future__ import annotations

SUFFIXES = {"checkpoint": ".pt", "safetensors": ".safetensors", "torchscript": ".torchscript.pt",
            "onnx": ".onnx"}


def file_stem(name: str) -> str:
    """A file name without a format's suffix that a user may have typed (``cats.onnx`` -> ``cats``)."""
    name = name.strip()
    for suffix in sorted(SUFFIXES.values(), key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
