"""Near duplicates that survive what people do to copies (issue #23): every kind of copy of
generated pictures is verified as the same picture, distinct look-alikes are not
(engine/duplicates.py), and the audit reports resized + re-encoded copies as leaks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from transfer_gui.engine import audit as audit_mod
from transfer_gui.engine import duplicates as dup


def item(k: int, size: int) -> Image.Image:
    """A fixed generated picture: a light garment-like shape on black with a pattern, the same
    outline for every ``k`` (look-alikes of one class), its pattern and proportions set by ``k``."""
    rng = np.random.default_rng(1000 + k)
    yy, xx = np.mgrid[0:size, 0:size] / size
    w = 0.28 + 0.04 * (k % 3)
    body = (np.abs(xx - 0.5) < w) & (yy > 0.12) & (yy < 0.9)
    legs = (np.abs(np.abs(xx - 0.5) - w / 2) < w / 2) & (yy >= 0.9 - 0.02 * (k % 2))
    pattern = sum(a * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph) for a, fx, fy, ph in
                  zip(rng.uniform(20, 40, 4), rng.uniform(1, 4, 4), rng.uniform(1, 4, 4), rng.uniform(0, 6, 4)))
    img = np.where(body | legs, 150 + pattern, 0.0)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).convert("RGB")


def _encode(im: Image.Image, fmt: str, **kw) -> Image.Image:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return Image.open(io.BytesIO(b.getvalue())).copy()


def _resize(im: Image.Image, f: float) -> Image.Image:
    return im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.BICUBIC)


COPIES = {
    "resize 0.5x": lambda im: _resize(im, 0.5), "resize 0.75x": lambda im: _resize(im, 0.75),
    "resize 0.9x": lambda im: _resize(im, 0.9), "resize 1.5x": lambda im: _resize(im, 1.5),
    "resize 2x": lambda im: _resize(im, 2.0),
    "JPEG 50": lambda im: _encode(im, "JPEG", quality=50), "JPEG 70": lambda im: _encode(im, "JPEG", quality=70),
    "JPEG 95": lambda im: _encode(im, "JPEG", quality=95), "PNG": lambda im: _encode(im, "PNG"),
    "trim": lambda im: im.crop((2, 1, im.width - 1, im.height - 2)),
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.1),
    "darker": lambda im: ImageEnhance.Brightness(im).enhance(0.9),
    "more contrast": lambda im: ImageEnhance.Contrast(im).enhance(1.1),
    "less contrast": lambda im: ImageEnhance.Contrast(im).enhance(0.9),
    "grey": lambda im: im.convert("L"),
    "resize 90 % + JPEG 70": lambda im: _encode(_resize(im, 0.9), "JPEG", quality=70),
}


def _scores(images: list[Image.Image], pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    thumbs = [dup.thumbnail(im) for im in images]
    grey, sizes = np.stack([t for t, _ in thumbs]), np.array([s for _, s in thumbs])
    s = dup.verify(grey, sizes, np.array(pairs))
    return s, dup.verified(s, sizes, np.array(pairs))


@pytest.mark.parametrize("size", [28, 128])
@pytest.mark.parametrize("kind", sorted(COPIES))
def test_every_kind_of_copy_is_the_same_picture(kind, size):
    originals = [item(k, size) for k in range(4)]
    copies = [COPIES[kind](im) for im in originals]
    scores, ok = _scores(originals + copies, [(k, k + 4) for k in range(4)])
    assert ok.all(), f"{kind} at {size} px: scores {scores.round(4)}"


@pytest.mark.parametrize("size", [28, 128])
def test_look_alikes_of_one_class_are_not(size):
    items = [item(k, size) for k in range(6)]
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    scores, ok = _scores(items, pairs)
    assert not ok.any(), f"look-alikes verified at {size} px: {scores.round(4)}"
    again, ok = _scores(items + [COPIES["resize 90 % + JPEG 70"](im) for im in items],
                        [(i, j + 6) for i, j in pairs])  # nor a copy of another item
    assert not ok.any(), again.round(4)


def test_audit_features_reports_a_resized_jpeg_copy_as_a_leak_and_look_alikes_as_nothing():
    size = 28
    items = [item(k, size) for k in range(6)]
    images = items + [COPIES["resize 90 % + JPEG 70"](items[0]), COPIES["trim"](items[1])]
    thumbs = [dup.thumbnail(im) for im in images]
    feats = np.ones((len(images), 4), np.float32)  # features alike: only the pixels can tell them apart
    sets = ["train"] * 6 + ["val", "train"]
    paths = [f"{k}.png" for k in range(len(images))]
    res = audit_mod.audit_features(feats, [0] * len(images), sets, paths, ["shirt"], folds=2, thumbs=thumbs)
    got = {(frozenset((p.a, p.b)), p.kind) for p in res.duplicates}
    assert got == {(frozenset(("0.png", "6.png")), "leak"), (frozenset(("1.png", "7.png")), "near")}
    leak = next(p for p in res.duplicates if p.kind == "leak")
    assert "pixel correlation" in leak.reason and "validation" in leak.reason
