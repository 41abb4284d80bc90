"""open_image / probe_image on a corpus of good, odd and broken files made in tmp_path."""

from __future__ import annotations

import io
import os
import pickle
import resource
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from transfer_gui.engine import imageio
from transfer_gui.engine.imageio import (IMAGE_EXTENSIONS, MAX_PIXELS, ImageError, open_image,
                                         probe_image)

# ----------------------------------------------------------------------------- helpers


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def handmade_png(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes) -> bytes:
    """A PNG built chunk by chunk with valid CRCs; ``raw`` is the filtered scanline data."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def noise_rgb(w: int = 32, h: int = 24, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def reason_of(path: Path) -> str:
    with pytest.raises(ImageError) as info:
        open_image(path)
    assert info.value.path == str(path)
    assert str(info.value) == f"{path}: {info.value.reason}"
    return info.value.reason


# ----------------------------------------------------------------------------- broken files


def test_zero_byte_file(tmp_path):
    path = write(tmp_path, "empty.jpg", b"")
    assert reason_of(path) == "empty file (0 bytes)"
    assert probe_image(path) == "empty file (0 bytes)"


def test_truncated_jpeg_is_reported_not_padded(tmp_path):
    data = encode(noise_rgb(64, 64), "JPEG", quality=90)
    path = write(tmp_path, "cut.jpg", data[: len(data) * 2 // 3])
    assert reason_of(path).startswith("truncated or corrupt image data")
    # the header is intact, so the cheap probe cannot see the damage (documented)
    assert probe_image(path) is None
    assert Image.MAX_IMAGE_PIXELS == 89_478_485
    from PIL import ImageFile
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_png_with_flipped_idat_byte(tmp_path):
    data = bytearray(encode(noise_rgb(32, 32), "PNG"))
    idat = data.find(b"IDAT")
    data[idat + 4 + 100] ^= 0xFF  # inside the compressed pixels: CRC and zlib stream now wrong
    path = write(tmp_path, "badcrc.png", bytes(data))
    assert reason_of(path).startswith("truncated or corrupt image data")


def test_text_file_named_jpg(tmp_path):
    path = write(tmp_path, "notes.jpg", b"these are my holiday notes, not a photo\n" * 3)
    assert reason_of(path) == "not an image (unrecognised format)"
    assert probe_image(path) == "not an image (unrecognised format)"


def test_missing_file_and_folder(tmp_path):
    assert reason_of(tmp_path / "nope.png") == "file not found"
    assert probe_image(tmp_path / "nope.png") == "file not found"
    folder = tmp_path / "dir.png"
    folder.mkdir()
    assert reason_of(folder) == "is a folder, not a file"


def test_huge_header_rejected_before_decoding(tmp_path):
    # 50,000 x 50,000 RGB would need 7.5 GB; the header alone must be enough to refuse it.
    data = handmade_png(50_000, 50_000, 8, 2, b"\x00" * 16)
    path = write(tmp_path, "bomb.png", data)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.process_time()  # this process's CPU time: a busy machine does not stretch it
    reason = reason_of(path)
    elapsed = time.process_time() - start
    rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert "too large" in reason
    assert "limit 89478485 pixels" in reason
    assert elapsed < 1.0
    assert rss_growth_mb < 100
    assert "too large" in probe_image(path)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # the global limit is left alone


def test_size_between_limit_and_twice_limit_gives_error_not_warning(tmp_path):
    # Pillow only *warns* between 1x and 2x its limit; here that must be an ImageError.
    path = write(tmp_path, "big.png", handmade_png(10_000, 10_000, 8, 0, b"\x00"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert reason_of(path) == (
            f"image too large: 10000x10000 pixels (limit {MAX_PIXELS} pixels)")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_permission_denied_real_chmod(tmp_path):
    path = tmp_path / "secret.png"
    noise_rgb().save(path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reading "
                        "(test_permission_denied_simulated covers this)")
        assert reason_of(path) == "permission denied"
        assert probe_image(path) == "permission denied"
    finally:
        path.chmod(0o644)


def test_permission_denied_simulated(tmp_path, monkeypatch):
    path = tmp_path / "secret.png"
    noise_rgb().save(path)
    real_open = open

    def guarded_open(file, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(imageio, "open", guarded_open, raising=False)
    assert reason_of(path) == "permission denied"
    assert probe_image(path) == "permission denied"


def test_image_error_pickles_for_worker_processes():
    exc = pickle.loads(pickle.dumps(ImageError("/x/a.png", "empty file (0 bytes)")))
    assert (exc.path, exc.reason, str(exc)) == ("/x/a.png", "empty file (0 bytes)",
                                                "/x/a.png: empty file (0 bytes)")


# ----------------------------------------------------------------------------- odd but valid


def test_one_pixel_image_is_accepted(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(path)
    im = open_image(path)
    assert (im.mode, im.size, im.getpixel((0, 0))) == ("RGB", (1, 1), (10, 20, 30))
    assert probe_image(path) is None


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    values = [0, 257, 32768, 65535]
    raw = b"\x00" + struct.pack(">4H", *values)
    path = write(tmp_path, "deep.png", handmade_png(4, 1, 16, 0, raw))
    im = open_image(path)
    assert im.mode == "RGB"
    assert [im.getpixel((x, 0)) for x in range(4)] == [(v, v, v) for v in (0, 1, 128, 255)]


def test_sixteen_bit_rgb_png(tmp_path):
    raw = b"\x00" + struct.pack(">6H", 65535, 32768, 0, 0, 65535, 257)
    path = write(tmp_path, "deep_rgb.png", handmade_png(2, 1, 16, 2, raw))
    im = open_image(path)
    assert im.mode == "RGB"
    assert im.getpixel((0, 0)) == (255, 128, 0)
    assert im.getpixel((1, 0))[:2] == (0, 255)


def test_wide_greyscale_tiffs(tmp_path):
    ints = Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.int32))
    assert ints.mode == "I"
    ints.save(tmp_path / "i32.tif")
    got = open_image(tmp_path / "i32.tif")
    assert [got.getpixel((x, 0))[0] for x in range(3)] == [0, 4, 255]
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    floats.save(tmp_path / "f32.tif")
    got = open_image(tmp_path / "f32.tif")
    assert [got.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red ink
    im = open_image(path)
    r, g, b = im.getpixel((8, 8))
    assert im.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_palette_png_with_transparency_on_white(tmp_path):
    im = Image.new("P", (4, 1), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # 0 = red (made transparent), 1 = blue
    im.putpixel((2, 0), 1)
    path = tmp_path / "pal.png"
    im.save(path, transparency=0)
    got = open_image(path)
    assert got.mode == "RGB"
    assert got.getpixel((0, 0)) == (255, 255, 255)
    assert got.getpixel((2, 0)) == (0, 0, 255)


def test_rgba_and_la_are_composited_on_white(tmp_path):
    Image.new("RGBA", (2, 2), (0, 0, 0, 128)).save(tmp_path / "half.png")
    r, g, b = open_image(tmp_path / "half.png").getpixel((0, 0))
    assert r == g == b and 125 <= r <= 129
    Image.new("LA", (2, 2), (0, 0)).save(tmp_path / "clear.png")
    assert open_image(tmp_path / "clear.png").getpixel((1, 1)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    im = open_image(path)
    assert im.size == (20, 40)
    top, bottom = im.getpixel((10, 5)), im.getpixel((10, 34))
    assert top[0] > 200 and top[2] < 60  # the stored left (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 3
    im = open_image(path)
    assert im.mode == "RGB" and im.getpixel((4, 4)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "YCbCr"])
def test_common_modes_become_rgb(tmp_path, mode):
    src = noise_rgb(9, 7).convert(mode)
    path = tmp_path / f"m_{mode}.tif"
    src.save(path)
    im = open_image(path)
    assert (im.mode, im.size) == ("RGB", (9, 7))
    assert np.array_equal(np.asarray(im), np.asarray(src.convert("RGB")))


@pytest.mark.parametrize("name", ["with space.png", "café ünïcødé.png", "cat 🐱 emoji.png"])
def test_unusual_file_names(tmp_path, name):
    noise_rgb(5, 4).save(tmp_path / name)
    im = open_image(tmp_path / name)
    assert im.size == (5, 4)
    assert probe_image(str(tmp_path / name)) is None


def test_no_file_handles_leak(tmp_path):
    good = tmp_path / "good.png"
    noise_rgb().save(good)
    bad = write(tmp_path, "bad.jpg", encode(noise_rgb(), "JPEG")[:300])
    fds_before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        open_image(good)
        probe_image(good)
        with pytest.raises(ImageError):
            open_image(bad)
    assert len(os.listdir("/proc/self/fd")) <= fds_before


def test_extension_set():
    assert IMAGE_EXTENSIONS == {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                                ".heic", ".heif", ".hif", ".dcm", ".dicom"}


# ----------------------------------------------------------------------------- fuzzing

_SEEDS = [
    encode(noise_rgb(16, 12), "PNG"),
    encode(noise_rgb(16, 12), "JPEG", quality=80),
    encode(noise_rgb(16, 12).convert("P"), "GIF"),
    encode(noise_rgb(16, 12), "BMP"),
    encode(noise_rgb(16, 12), "WEBP"),
    encode(noise_rgb(16, 12), "TIFF"),
    encode(noise_rgb(16, 12).convert("RGBA"), "PNG"),
    handmade_png(3, 2, 16, 0, b"\x00" + b"\x12\x34" * 3 + b"\x00" + b"\xff\xff" * 3),
]


@st.composite
def mutated_images(draw):
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=512), mutated_images()))
def test_fuzz_open_image_returns_rgb_or_image_error(tmp_path, data):
    path = tmp_path / "fuzz.img"
    path.write_bytes(data)
    try:
        im = open_image(path)
    except ImageError as exc:
        assert exc.reason and exc.path == str(path)
        assert probe_image(path) is None or isinstance(probe_image(path), str)
        return
    assert im.mode == "RGB" and im.width >= 1 and im.height >= 1
    assert probe_image(path) is None  # what decodes fully also passes the header check


# ----------------------------------------------------------------------------- reduce_for (draft)


def smooth_photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """A photo-like image: smooth colour gradients and a few blobs, plus mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(1, 4), rng.uniform(1, 4), rng.uniform(0, 6.28)
        chans.append(127 + 100 * np.sin(xx / w * fx * 6.28 + phase) * np.cos(yy / h * fy * 6.28))
    arr = np.stack(chans, axis=-1) + rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def app_resize(im: Image.Image, short: int) -> np.ndarray:
    """The app's resize (shorter side to ``short``, bilinear, antialiased) and a centre crop."""
    from transfer_gui.engine.preprocess import Preprocessing, resize_transform
    pre = Preprocessing(input_size=short * 7 // 8, resize_size=short)
    t = resize_transform(pre)(im)
    top, left = (t.shape[1] - pre.input_size) // 2, (t.shape[2] - pre.input_size) // 2
    return t[:, top:top + pre.input_size, left:left + pre.input_size].numpy().astype(np.int16)


@pytest.mark.parametrize("size, reduce_for, scale", [
    ((1600, 1200), 64, 8),    # 1200 // 8 = 150 >= 128
    ((1600, 1200), 100, 4),   # 150 < 200, 1200 // 4 = 300 >= 200
    ((1600, 1200), 250, 2),   # 600 >= 500
    ((1600, 1200), 301, 1),   # 600 < 602: full size
    ((1200, 1600), 64, 8),    # portrait: the shorter side decides
    ((1600, 1200), None, 1),
    ((1600, 1200), 0, 1),
])
def test_draft_scale_keeps_twice_the_size_asked(size, reduce_for, scale):
    assert imageio.draft_scale(*size, reduce_for) == scale


@given(st.integers(1, 9000), st.integers(1, 9000), st.integers(1, 2000))
def test_draft_scale_is_the_smallest_that_keeps_the_margin(w, h, n):
    scale = imageio.draft_scale(w, h, n)
    assert scale in (1, 2, 4, 8)
    if scale > 1:
        assert min(w, h) // scale >= imageio.DRAFT_MARGIN * n
    if scale < 8:
        assert min(w, h) // (scale * 2) < imageio.DRAFT_MARGIN * n


def test_reduce_for_draft_decodes_a_large_jpeg_with_nearly_the_same_pixels(tmp_path):
    path = tmp_path / "photo.jpg"
    smooth_photo(1600, 1200).save(path, quality=90)
    full, reduced = open_image(path), open_image(path, reduce_for=64)
    assert full.size == (1600, 1200)
    assert reduced.mode == "RGB" and reduced.size == (200, 150)  # 1/8: shorter side 150 >= 128
    diff = np.abs(app_resize(full, 64) - app_resize(reduced, 64))
    assert diff.mean() < 1.0 and diff.max() < 24


def test_reduce_for_smaller_jpeg_is_decoded_in_full(tmp_path):
    path = tmp_path / "small.jpg"
    smooth_photo(300, 200).save(path, quality=90)
    assert open_image(path, reduce_for=64).size == (300, 200)  # 200 // 2 = 100 < 128
    assert np.array_equal(np.asarray(open_image(path, reduce_for=64)), np.asarray(open_image(path)))


def test_reduce_for_keeps_exif_rotation(tmp_path):
    stored = Image.new("RGB", (800, 400), (255, 0, 0))
    stored.paste((0, 0, 255), (400, 0, 800, 400))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    im = open_image(path, reduce_for=50)
    assert im.size == (100, 200)  # 400 // 8 = 50 < 2 x 50, 400 // 4 = 100: a quarter, upright
    top, bottom = im.getpixel((50, 20)), im.getpixel((50, 180))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_reduce_for_grey_and_cmyk_jpegs(tmp_path):
    Image.new("L", (800, 800), 90).save(tmp_path / "grey.jpg", quality=95)
    grey = open_image(tmp_path / "grey.jpg", reduce_for=40)
    assert grey.mode == "RGB" and grey.size == (100, 100)
    r, g, b = grey.getpixel((50, 50))
    assert r == g == b and abs(r - 90) <= 2
    Image.new("CMYK", (800, 800), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    cmyk = open_image(tmp_path / "cmyk.jpg", reduce_for=40)
    r, g, b = cmyk.getpixel((50, 50))
    assert cmyk.size == (100, 100) and r > 200 and g < 60 and b < 60


def test_reduce_for_is_ignored_by_other_formats(tmp_path):
    im = smooth_photo(800, 600)
    im.save(tmp_path / "big.png")
    im.putalpha(128)
    im.save(tmp_path / "alpha.webp", lossless=True)
    assert open_image(tmp_path / "big.png", reduce_for=32).size == (800, 600)
    alpha = open_image(tmp_path / "alpha.webp", reduce_for=32)
    assert alpha.size == (800, 600) and alpha.mode == "RGB"
    assert np.array_equal(np.asarray(alpha), np.asarray(open_image(tmp_path / "alpha.webp")))


def test_reduce_for_still_reports_truncated_jpeg(tmp_path):
    data = encode(smooth_photo(800, 600), "JPEG", quality=90)
    path = write(tmp_path, "cut.jpg", data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        open_image(path, reduce_for=32)
