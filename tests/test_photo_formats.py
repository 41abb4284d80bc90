"""HEIC/HEIF and DICOM through open_image, probe_image and the scan; the missing extras faked.

DICOM files are written at test time by pydicom (the dicom extra). HEIC cannot be: the heic
extra (pi-heif) only decodes, so tests/data/*.heic were written once by pillow-heif's x265
encoder (tests/data/make_heic.py says how)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer_gui.engine import dicom, imageio
from transfer_gui.engine.imageio import NEEDS_DICOM, NEEDS_HEIC, ImageError, open_image, probe_image
from transfer_gui.engine.scan import scan_sources, skipped_summary

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, SecondaryCaptureImageStorage, generate_uid  # noqa: E402

DATA = Path(__file__).parent / "data"


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", syntax=ExplicitVRLittleEndian,
                **elements) -> Path:
    """A DICOM Part 10 file (preamble, DICM, file meta) with ``pixels`` as its image."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    colour = pixels.ndim == 3 and photometric == "RGB"
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    if colour:
        ds.PlanarConfiguration = 0
    for key, value in elements.items():
        setattr(ds, key, value)
    if "PixelData" not in elements:
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def linear_window(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 written out, onto 0..255 and rounded."""
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0, np.where(x > c - 0.5 + (w - 1) / 2, 255, y))
    return np.floor(y + 0.5).astype(np.uint8)


def ct_pixels(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4096, (24, 32), dtype=np.uint16)


# ----------------------------------------------------------------------------- DICOM


@pytest.mark.parametrize("seed", [0, 1])
def test_dicom_16_bit_uses_rescale_then_window(tmp_path, seed):
    stored = ct_pixels(seed)
    path = write_dicom(tmp_path / "ct.dcm", stored, RescaleSlope=1, RescaleIntercept=-1024,
                       WindowCenter=40, WindowWidth=400)
    got = np.asarray(open_image(path))
    expected = linear_window(stored.astype(np.float64) - 1024, 40, 400)
    assert got.shape == (24, 32, 3) and got.dtype == np.uint8
    assert np.array_equal(got[..., 0], expected) and np.array_equal(got[..., 0], got[..., 2])
    assert (expected == 0).any() and (expected == 255).any() and ((expected > 0) & (expected < 255)).any()


def test_dicom_multi_valued_window_uses_the_first_and_slope_scales(tmp_path):
    stored = ct_pixels(2)
    path = write_dicom(tmp_path / "two.dcm", stored, RescaleSlope=2, RescaleIntercept=-2000,
                       WindowCenter=[300, 40], WindowWidth=[1500, 80])
    expected = linear_window(stored.astype(np.float64) * 2 - 2000, 300, 1500)
    assert np.array_equal(np.asarray(open_image(path))[..., 1], expected)


def test_dicom_monochrome1_is_inverted(tmp_path):
    stored = ct_pixels(3)
    kw = dict(WindowCenter=2048, WindowWidth=4096)
    m2 = np.asarray(open_image(write_dicom(tmp_path / "m2.dcm", stored, "MONOCHROME2", **kw)))
    m1 = np.asarray(open_image(write_dicom(tmp_path / "m1.dcm", stored, "MONOCHROME1", **kw)))
    assert np.array_equal(m1.astype(int), 255 - m2.astype(int))
    darkest = np.unravel_index(np.argmin(stored), stored.shape)
    assert m1[darkest][0] > 250  # the smallest stored value is white in MONOCHROME1


def test_dicom_without_window_is_stretched(tmp_path):
    stored = np.array([[100, 300], [500, 900]], dtype=np.uint16)
    got = np.asarray(open_image(write_dicom(tmp_path / "plain.dcm", stored)))[..., 0]
    assert got.tolist() == [[0, 64], [128, 255]]  # (v - 100) / 800 * 255, rounded


def test_rgb_dicom_stays_rgb(tmp_path):
    rgb = np.random.default_rng(4).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    got = open_image(write_dicom(tmp_path / "photo.dcm", rgb, "RGB"))
    assert got.mode == "RGB" and np.array_equal(np.asarray(got), rgb)


def test_multi_frame_dicom_is_refused_naming_the_file(tmp_path):
    frames = np.stack([ct_pixels(5), ct_pixels(6)])
    path = write_dicom(tmp_path / "cine.dcm", frames, NumberOfFrames=2)
    with pytest.raises(ImageError) as info:
        open_image(path)
    assert str(path) in str(info.value) and "multi-frame DICOM (2 frames)" in info.value.reason
    assert "multi-frame" in probe_image(path)


def test_compressed_dicom_without_a_decoder_gets_a_clear_message(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    path = write_dicom(tmp_path / "jls.dcm", ct_pixels(7), syntax=JPEGLSLossless,
                       PixelData=encapsulate([b"\xff\xd8\xff\xf7" + b"\x00" * 32]))
    with pytest.raises(ImageError) as info:
        open_image(path)
    assert "JPEG-LS" in info.value.reason and "cannot decode" in info.value.reason
    assert probe_image(path) == info.value.reason  # found from the header alone


def test_damaged_dicom_is_an_image_error(tmp_path):
    good = write_dicom(tmp_path / "good.dcm", ct_pixels(8), WindowCenter=2048, WindowWidth=4096)
    data = good.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 600])
    with pytest.raises(ImageError) as info:
        open_image(tmp_path / "cut.dcm")
    assert info.value.path == str(tmp_path / "cut.dcm")
    (tmp_path / "text.dcm").write_text("not a dicom file at all")
    assert probe_image(tmp_path / "text.dcm") == "not a valid DICOM file"


def test_dicom_reduce_for_is_ignored(tmp_path):
    path = write_dicom(tmp_path / "big.dcm", np.zeros((400, 600), dtype=np.uint16))
    assert open_image(path, reduce_for=16).size == (600, 400)


# ----------------------------------------------------------------------------- HEIC


def test_heic_decodes_to_rgb():
    pytest.importorskip("pi_heif")
    im = open_image(DATA / "rgb.heic")
    assert im.mode == "RGB" and im.size == (64, 48)
    left, right = im.getpixel((8, 24)), im.getpixel((56, 24))
    assert left[0] > 190 and left[2] < 60 and right[2] > 190 and right[0] < 60
    assert probe_image(DATA / "rgb.heic") is None


def test_heic_alpha_is_composited_on_white():
    pytest.importorskip("pi_heif")
    im = open_image(DATA / "rgba.heic", reduce_for=8)
    assert im.mode == "RGB" and im.size == (64, 48)
    assert min(im.getpixel((56, 24))) > 245  # the transparent half
    assert im.getpixel((8, 24))[0] > 190


def test_heic_is_recognised_by_its_bytes_whatever_the_name(tmp_path):
    pytest.importorskip("pi_heif")
    shutil.copy(DATA / "rgb.heic", tmp_path / "renamed.jpg")
    assert open_image(tmp_path / "renamed.jpg").size == (64, 48)


# ----------------------------------------------------------------------------- missing extras


def test_missing_heic_extra_names_it(tmp_path, monkeypatch):
    monkeypatch.setattr(imageio, "heif_available", lambda: False)
    shutil.copy(DATA / "rgb.heic", tmp_path / "a.heic")
    shutil.copy(DATA / "rgb.heic", tmp_path / "b.jpg")  # a HEIC saved with the wrong name
    for name in ("a.heic", "b.jpg"):
        with pytest.raises(ImageError) as info:
            open_image(tmp_path / name)
        assert info.value.reason == NEEDS_HEIC and "pip install 'transfer-gui[heic]'" in NEEDS_HEIC
    assert probe_image(tmp_path / "a.heic") == NEEDS_HEIC


def test_missing_dicom_extra_names_it(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "x.dcm", ct_pixels(9))
    monkeypatch.setattr(dicom, "available", lambda: False)
    with pytest.raises(ImageError) as info:
        open_image(path)
    assert info.value.reason == NEEDS_DICOM and "transfer-gui[dicom]" in NEEDS_DICOM


def _class_folders(tmp_path: Path, make) -> Path:
    root = tmp_path / "data"
    for cls in ("ankle", "knee"):
        for i in range(6):
            (root / cls).mkdir(parents=True, exist_ok=True)
            make(root / cls, i)
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(root / cls / "ok.png")
    return root


@pytest.mark.parametrize("probe", [False, True])
def test_scan_without_the_extras_says_which_to_install_once(tmp_path, monkeypatch, probe):
    def make(folder: Path, i: int) -> None:
        shutil.copy(DATA / "rgb.heic", folder / f"{i}.heic")
        write_dicom(folder / f"{i}.dcm", ct_pixels(i))

    root = _class_folders(tmp_path, make)
    (root / "knee" / "broken.png").write_bytes(b"")
    monkeypatch.setattr(imageio, "heif_available", lambda: False)
    monkeypatch.setattr(dicom, "available", lambda: False)
    index = scan_sources([root], probe=probe)
    assert len(index.samples) == 2  # the PNGs
    reasons = [s.reason for s in index.skipped]
    assert reasons.count(NEEDS_HEIC) == 12 and reasons.count(NEEDS_DICOM) == 12
    lines = [m for m in index.warnings() if "skipped" in m]
    assert lines[0] == ("12 HEIC/HEIF files skipped: reading them needs the optional 'heic' extra: "
                        "pip install 'transfer-gui[heic]'")
    assert lines[1].startswith("12 DICOM files skipped") and "pip install 'transfer-gui[dicom]'" in lines[1]
    assert lines[2] == "1 other file skipped (1 empty file (0 bytes))."
    assert len(lines) == 3 and sum("transfer-gui[heic]" in m for m in index.warnings()) == 1


def test_skipped_summary_without_extras_is_unchanged():
    from transfer_gui.engine.scan import Skipped

    lines = skipped_summary([Skipped("a", "empty file (0 bytes)"), Skipped("b", "empty file (0 bytes)")])
    assert lines == ["2 files skipped (2 empty file (0 bytes))."]


def test_scan_finds_dicom_with_and_without_an_extension(tmp_path):
    def make(folder: Path, i: int) -> None:
        write_dicom(folder / (f"IM{i:04d}" if i % 2 else f"{i}.dcm"), ct_pixels(i))

    root = _class_folders(tmp_path, make)
    (root / "knee" / "README").write_text("no extension, not an image")
    index = scan_sources([root], probe=True)
    assert index.classes == ["ankle", "knee"] and len(index.samples) == 14 and not index.skipped
    names = {Path(s.path).name for s in index.samples}
    assert {"IM0001", "0.dcm", "ok.png"} <= names and "README" not in names
    assert all(open_image(s.path).mode == "RGB" for s in index.samples)


def test_scan_reads_heic_when_installed(tmp_path):
    pytest.importorskip("pi_heif")
    root = _class_folders(tmp_path, lambda folder, i: shutil.copy(DATA / "rgb.heic", folder / f"{i}.HEIC"))
    index = scan_sources([root], probe=True)
    assert len(index.samples) == 14 and not index.skipped
