"""How tests/data/*.heic were made (run once, outside the project's environment).

pi-heif, the app's HEIC extra, decodes only (its libheif has no HEVC encoder), so the test
files were written by pillow-heif 1.8.1 (x265 encoder) in a throwaway virtual environment:

    python -m venv /tmp/heifenv && /tmp/heifenv/bin/pip install pillow-heif numpy
    /tmp/heifenv/bin/python tests/data/make_heic.py tests/data

Both show the same 64x48 picture: the left half red, the right half blue; ``rgba.heic`` has
its right half fully transparent (so it shows white once composited).
"""

import sys
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image


def picture(alpha: bool) -> Image.Image:
    arr = np.zeros((48, 64, 4), dtype=np.uint8)
    arr[:, :32] = (220, 20, 20, 255)
    arr[:, 32:] = (20, 20, 220, 0 if alpha else 255)
    return Image.fromarray(arr, "RGBA") if alpha else Image.fromarray(arr[..., :3], "RGB")


if __name__ == "__main__":
    pillow_heif.register_heif_opener()
    out = Path(sys.argv[1])
    picture(False).save(out / "rgb.heic", quality=90)
    picture(True).save(out / "rgba.heic", quality=90)
