"""benchmarks/bench_dups.py: the copies it makes are what their names say; no model is loaded."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_dups as bench  # noqa: E402


def _picture(size: int) -> Image.Image:
    yy, xx = np.mgrid[0:size, 0:size]
    return Image.fromarray(((xx * 7 + yy * 3) % 256).astype(np.uint8)).convert("RGB")


def test_kinds_of_copy_change_size_mode_and_tone_as_named():
    im = _picture(28)
    assert bench.KINDS["resize 0.5x"](im, 0).size == (14, 14) and bench.KINDS["resize 2x"](im, 0).size == (56, 56)
    assert bench.KINDS["resize 90 % + JPEG 70"](im, 0).size == (25, 25)
    jpeg = np.asarray(bench.KINDS["JPEG 50"](im, 0), np.float32)
    assert 0 < np.abs(jpeg - np.asarray(im, np.float32)).mean() < 40 and bench.KINDS["grey"](im, 0).mode == "L"
    assert np.array_equal(np.asarray(bench.KINDS["PNG"](im, 0)), np.asarray(im))
    mean = np.asarray(im, np.float32).mean()
    assert np.asarray(bench.KINDS["brightness -10 %"](im, 0), np.float32).mean() < mean


def test_trim_removes_a_few_pixels_seeded():
    for size, most in ((28, 2), (128, 6)):
        im = _picture(size)
        for seed in range(20):
            w, h = bench.KINDS["trim a few px"](im, seed).size
            assert 2 <= (size - w) + (size - h) <= 4 * most and size - w <= 2 * most and size - h <= 2 * most
        assert bench.KINDS["trim a few px"](im, 3).size == bench.KINDS["trim a few px"](im, 3).size


def test_kinds_option_refuses_an_unknown_kind_by_name(capsys):
    try:
        bench.main(["--kinds", "trim a few px,sepia", "--sets", ""])
    except SystemExit as e:
        assert e.code == 2
    else:
        raise AssertionError("an unknown kind was accepted")
    assert "sepia" in capsys.readouterr().err
