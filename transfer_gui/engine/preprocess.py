"""Preprocessing that travels with a model: the same resize, crop and normalisation in the app,
in every export and in ``predict``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torchvision.transforms import v2

from transfer_gui.engine.imageio import DRAFT_MARGIN
from transfer_gui.engine.rules import augment_is_random  # noqa: F401 - the window's Layers page imports it here

INTERPOLATIONS = {
    "bilinear": v2.InterpolationMode.BILINEAR,
    "bicubic": v2.InterpolationMode.BICUBIC,
    "nearest": v2.InterpolationMode.NEAREST,
}


@dataclass(frozen=True)
class Preprocessing:
    input_size: int = 224  # square crop fed to the network
    resize_size: int = 256  # shorter side is resized to this before the centre crop
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        return cls(
            input_size=int(d["input_size"]),
            resize_size=int(d["resize_size"]),
            mean=tuple(float(x) for x in d["mean"]),  # type: ignore[arg-type]
            std=tuple(float(x) for x in d["std"]),  # type: ignore[arg-type]
            interpolation=str(d.get("interpolation", "bilinear")),
        )

    def at_size(self, input_size: int) -> "Preprocessing":
        """The same preprocessing for another input size, keeping the crop ratio."""
        if input_size <= 0 or input_size == self.input_size:
            return self
        ratio = self.resize_size / self.input_size
        return Preprocessing(input_size, max(input_size, round(input_size * ratio)),
                             self.mean, self.std, self.interpolation)

    @property
    def interp(self) -> v2.InterpolationMode:
        return INTERPOLATIONS.get(self.interpolation, v2.InterpolationMode.BILINEAR)


def resize_transform(pre: Preprocessing) -> v2.Transform:
    """PIL/uint8 image -> uint8 tensor, shorter side at ``resize_size`` (what the decode cache keeps)."""
    return v2.Compose([v2.ToImage(), v2.Resize(pre.resize_size, interpolation=pre.interp, antialias=True)])


def normalize_transform(pre: Preprocessing) -> v2.Transform:
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(pre.mean), list(pre.std))])


def eval_transform(pre: Preprocessing) -> v2.Transform:
    """The deterministic transform used for validation, export parity and prediction."""
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(pre.resize_size, interpolation=pre.interp, antialias=True),
        v2.CenterCrop(pre.input_size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(pre.mean), list(pre.std)),
    ])


def eval_from_resized(pre: Preprocessing) -> v2.Transform:
    """Eval transform for an image already resized by :func:`resize_transform`."""
    return v2.Compose([v2.CenterCrop(pre.input_size), normalize_transform(pre)])


def train_from_resized(pre: Preprocessing, aug: Any) -> v2.Transform:
    """Augmenting transform for a uint8 tensor already resized to ``resize_size``.

    ``aug`` is a :class:`transfer_gui.config.AugmentConfig`.
    """
    if not aug.enabled:
        return eval_from_resized(pre)
    ops: list[v2.Transform] = []
    if aug.rotation > 0:
        ops.append(v2.RandomRotation(aug.rotation, interpolation=pre.interp))
    if aug.random_resized_crop:
        ops.append(v2.RandomResizedCrop(pre.input_size, scale=(0.5, 1.0), interpolation=pre.interp,
                                        antialias=True))
    else:
        ops.append(v2.CenterCrop(pre.input_size))
    if aug.hflip:
        ops.append(v2.RandomHorizontalFlip())
    if aug.vflip:
        ops.append(v2.RandomVerticalFlip())
    if aug.color_jitter > 0:
        s = aug.color_jitter
        ops.append(v2.ColorJitter(brightness=0.4 * s, contrast=0.4 * s, saturation=0.4 * s, hue=0.05 * s))
    ops.append(normalize_transform(pre))
    return v2.Compose(ops)


# ----------------------------------------------------------------------------- the written-down contract

PREPROCESSING_SPEC_VERSION = 1  # bump when a step below changes meaning; readers check it
_FILTERS = {"bicubic": "PIL.Image.BICUBIC (Keys cubic, a = -0.5)", "bilinear": "PIL.Image.BILINEAR (triangle)",
            "nearest": "PIL.Image.NEAREST"}


def _decode_step(pre: Preprocessing) -> dict[str, Any]:
    return {"op": "decode", "library": "Pillow", "exif_transpose": True,
            "jpeg_draft": {"reduce_for": pre.resize_size, "margin": DRAFT_MARGIN,
                           "rule": f"JPEG only, before decoding: the largest scale s in (8, 4, 2) with shorter_side "
                                   f"// s >= {DRAFT_MARGIN} * {pre.resize_size}, then Image.draft(im.mode, (w // s, "
                                   f"h // s)); no reduction when none fits"},
            "alpha": "composited over white (255, 255, 255)", "grey": "replicated to R, G and B",
            "palette_cmyk_ycbcr": "PIL Image.convert('RGB')", "16_bit": "scaled 0..65535 -> 0..255, rounded",
            "wide_greyscale": ("I;16: scaled from 0..65535; I (32-bit int) and F (float): kept in 0..255, F in "
                               "0..1 scaled by 255, I in 0..65535 scaled from 0..65535, anything else stretched "
                               "from its minimum to its maximum; then rounded to 8 bits"),
            "icc_profile": "ignored", "animated": "first frame", "result": "8-bit RGB, H x W x 3"}


def preprocessing_spec(pre: Preprocessing) -> dict[str, Any]:
    """Every step from an image file to the network's input tensor, in order, precisely enough for
    someone without transfer_gui to reproduce the app's input (its ``version`` is
    :data:`PREPROCESSING_SPEC_VERSION`). :func:`eval_transform` is the app's implementation."""
    n, s = pre.resize_size, pre.input_size
    return {
        "version": PREPROCESSING_SPEC_VERSION,
        "steps": [
            _decode_step(pre),
            {"op": "resize", "shorter_side": n, "interpolation": pre.interpolation,
             "filter": _FILTERS.get(pre.interpolation, _FILTERS["bilinear"]), "antialias": True,
             "long_side": f"int({n} * long / short): truncated, not rounded",
             "reference": "PIL Image.resize((new_w, new_h), filter) on the 8-bit RGB image (antialiased); the app "
                          "resizes the uint8 tensor with torchvision (antialias=True), which differs from Pillow "
                          "by at most 1 grey level on under 1 % of pixels"},
            {"op": "center_crop", "size": [s, s],
             "offset": f"top = round((new_h - {s}) / 2), left = round((new_w - {s}) / 2), Python round (half to "
                       f"even)"},
            {"op": "to_float", "dtype": "float32", "scale": "x / 255, range [0, 1]"},
            {"op": "normalize", "mean": list(pre.mean), "std": list(pre.std), "formula": "(x - mean) / std per channel"},
            {"op": "layout", "layout": "NCHW", "channels": "RGB", "batch": "any"},
        ],
    }
