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


def _brick_tiles() -> tuple[Image.Image, Image.Image, Image.Image]:
    """A 128 px tile of scikit-image's brick photo trimmed by a few px on each side (the copy), the
    tile itself, and another tile of the same wall trimmed alike (a look-alike: same texture)."""
    skimage_data = pytest.importorskip("skimage.data")
    wall = skimage_data.brick()
    tile, other = (Image.fromarray(wall[y:y + 128, x:x + 128]).convert("RGB") for y, x in ((0, 0), (256, 128)))
    trim = (5, 3, 128 - 4, 128 - 6)
    return tile, tile.crop(trim), other.crop(trim)


def test_a_trimmed_textured_tile_is_found_at_its_own_pixels_and_a_look_alike_is_not():
    tile, copy, look_alike = _brick_tiles()
    grey = [np.asarray(im.convert("L")) for im in (tile, copy, look_alike)]
    assert dup.fine_score(grey[0], grey[1]) > 0.999  # the copy's window of the tile, pixel for pixel
    assert dup.fine_score(grey[0], grey[2]) < dup.FINE_MIN
    assert dup.fine_score(grey[0], grey[0][:60, :60]) == -1.0  # half the tile is no trim
    thumbs = [dup.thumbnail(im) for im in (tile, copy, look_alike)]
    t, sizes = np.stack([g for g, _ in thumbs]), np.array([s for _, s in thumbs])
    pairs = np.array([(0, 1), (0, 2)])
    scores = dup.verify(t, sizes, pairs)
    fine = dup.fine_scores(scores, sizes, pairs, lambda i: grey[i])
    assert dup.verified(scores, sizes, pairs, fine).tolist() == [True, False], (scores, fine)


def test_audit_reports_a_trimmed_textured_tile_from_its_files(tmp_path):
    tile, copy, look_alike = _brick_tiles()
    paths = []
    for k, im in enumerate((tile, copy, look_alike)):
        paths.append(str(tmp_path / f"{k}.png"))
        im.save(paths[-1])
    thumbs = [dup.thumbnail(im) for im in (tile, copy, look_alike)]
    feats = np.ones((3, 4), np.float32)
    res = audit_mod.audit_features(feats, [0, 0, 0], ["train", "val", "val"], paths, ["wall"], folds=2, thumbs=thumbs)
    got = {(frozenset((p.a, p.b)), p.kind) for p in res.duplicates}
    assert got == {(frozenset((paths[0], paths[1])), "leak")}


def test_trimmed_queries_meet_trimmed_copies_and_make_them_candidates():
    items = [item(k, 28) for k in range(60)]
    copies = [im.crop((2, 0, 28, 27)) if k % 2 else im.crop((0, 2, 27, 28)) for k, im in enumerate(items)]
    thumbs = np.stack([dup.thumbnail(im)[0] for im in items + copies])
    whole = dup.thumb_vectors(thumbs)
    for k in range(60):  # one of the trimmed queries meets the copy better than the whole thumbnail does
        best = max(float(dup.thumb_vectors(thumbs[k:k + 1], trim)[0] @ whole[k + 60]) for trim in dup.TRIM_QUERIES)
        assert best > float(whole[k] @ whole[k + 60]) + 0.02, (k, best, whole[k] @ whole[k + 60])
    got = set(map(tuple, dup.thumb_candidates(thumbs).tolist()))
    assert all((k, k + 60) in got for k in range(60))
