"""Preprocessing that travels with a model: the same resize, crop and normalisation in the app,
in every export and in ``predict``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torchvision.transforms import v2

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
