"""Robust image decoding: every file either becomes an RGB image or an ``ImageError``.

Users point the app at folders they collected from anywhere, so decoding must survive empty
files, truncated downloads, text files with an image extension, 16-bit scans, CMYK JPEGs,
palette PNGs with transparency, phone photos with an EXIF rotation and decompression bombs.
Whatever goes wrong is reported as :class:`ImageError` with a short reason a person can act
on; no other exception escapes :func:`open_image` or :func:`probe_image`.

Choices made here:

* Tiny images (even 1x1) are accepted: they are valid images and the transforms resize them.
  Only images with no pixels at all (0 wide or 0 high) are rejected.
* The pixel limit :data:`MAX_PIXELS` is checked from the header *before* decoding, without
  touching Pillow's global ``Image.MAX_IMAGE_PIXELS`` (if an application lowered that, the
  lower limit wins). Pillow's own bomb warning/error is turned into ``ImageError`` too. ``warnings.catch_warnings`` changes process-global state
  in Python 3.11, so it is held under a lock and only around the cheap header parse (decoding
  runs in parallel threads); the header check would reject the image even without it.
* Truncated files are reported, never padded with grey: ``LOAD_TRUNCATED_IMAGES`` is not set.
* A PNG whose checksum is wrong but whose compressed data still decodes is accepted, like
  browsers do; corrupt compressed data is rejected.
* Transparent pixels are composited on white. ICC profiles are not applied.
* High bit depths are scaled, not clipped: 16-bit 65535 becomes 255 and 32768 becomes 128.
* ``open_image(path, reduce_for=N)`` decodes a JPEG at a reduced DCT scale (1/2, 1/4, 1/8,
  Pillow's ``draft``) when the model only needs a shorter side of ``N`` afterwards: the
  smallest scale whose shorter side is still at least :data:`DRAFT_MARGIN` x ``N``. The margin
  was measured on 4032x3024 phone photos resized to 256 and centre-cropped to 224 as the app
  does: a shorter side of 2N or more differs from full decoding by 0.21-0.35 grey levels on
  average (at most 9), 1.5N by 0.52 (at most 12), 1.0N by 0.82 (at most 32). Other formats
  ignore ``reduce_for``; EXIF rotation, alpha and grey handling are the same either way.
* HEIC/HEIF (phones) and DICOM (medical scans) are optional extras: ``heic`` (pi-heif, a
  Pillow plugin registered on first use) and ``dicom`` (pydicom, see ``engine/dicom.py``).
  Files are recognised by extension or by their first bytes (a DICOM ``DICM`` preamble, an
  ISO-BMFF ``ftyp`` box of a HEIF brand); without the extra such a file is unusable with the
  one reason :data:`NEEDS_HEIC` or :data:`NEEDS_DICOM`, which a scan's summary says once.
"""

from __future__ import annotations

import importlib
import os
import re
import stat
import threading
import warnings
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from transfer_gui.engine import dicom
from transfer_gui.engine.formats import DICOM_EXTENSIONS, HEIC_EXTENSIONS, IMAGE_EXTENSIONS  # noqa: F401 - re-exported

PathLike = Union[str, "os.PathLike[str]"]


#: The reasons a file is unusable because an optional extra is not installed (said once per scan).
NEEDS_HEIC = "HEIC/HEIF image: reading it needs the heic extra (pip install 'transfer-gui[heic]')"
NEEDS_DICOM = "DICOM file: reading it needs the dicom extra (pip install 'transfer-gui[dicom]')"
MISSING_EXTRA = {NEEDS_HEIC: ("heic", "HEIC/HEIF"), NEEDS_DICOM: ("dicom", "DICOM")}  # reason: (extra, kind)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1",
                          b"msf1"})
_HEAD_BYTES = 132  # enough for a DICOM preamble + "DICM" and an ISO-BMFF ftyp box's brand

#: Largest accepted image, in pixels (Pillow's default ``MAX_IMAGE_PIXELS``, about 9459x9459).
MAX_PIXELS = 89_478_485

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
#: A draft-decoded JPEG keeps a shorter side of at least DRAFT_MARGIN x ``reduce_for``.
DRAFT_MARGIN = 2
_DRAFT_FORMATS = frozenset({"JPEG", "MPO"})
_WARNINGS_LOCK = threading.Lock()  # catch_warnings is not thread-safe before Python 3.14
_HEIF_LOCK = threading.Lock()
_HEIF_STATE: list[bool] = []  # [registered?] once the plugin was looked for


class ImageError(Exception):
    """A file that cannot be used as an image; ``reason`` is short and human."""

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep pickling (DataLoader workers) working with two arguments
        return (type(self), (self.path, self.reason))


def _pixel_limit() -> int:
    """MAX_PIXELS, or Pillow's global limit if an application lowered it further."""
    pillow = Image.MAX_IMAGE_PIXELS
    return min(MAX_PIXELS, int(pillow)) if pillow else MAX_PIXELS


def _too_large(width: int, height: int) -> str:
    return f"image too large: {width}x{height} pixels (limit {_pixel_limit()} pixels)"


def _bomb_reason(exc: BaseException) -> str:
    """Reason for Pillow's own decompression-bomb error (its message has only the count)."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    count = f"{match.group(1)} pixels" if match else "too many pixels"
    return f"image too large: {count} (limit {_pixel_limit()} pixels)"


def _detail(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:80]


def _stat_reason(path: PathLike) -> str | None:
    """Cheap checks before opening: existence, kind and size of the file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "file not found"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return f"cannot read file ({exc.strerror or _detail(exc)})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a file"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    return None


def _open_file(path: PathLike) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not a file") from None
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror or _detail(exc)})") from None


def heif_available() -> bool:
    """Whether a HEIF plugin (pi-heif, or pillow-heif) is importable; registers it with Pillow once."""
    with _HEIF_LOCK:
        if not _HEIF_STATE:
            _HEIF_STATE.append(_register_heif())
        return _HEIF_STATE[0]


def _register_heif() -> bool:
    for name in ("pi_heif", "pillow_heif"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        module.register_heif_opener()
        return True
    return False


def _is_heif(head: bytes) -> bool:
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def has_dicom_magic(path: PathLike) -> bool:
    """True for a DICOM Part 10 file (the ``DICM`` prefix after the 128-byte preamble)."""
    try:
        with open(path, "rb") as fh:
            return dicom.has_magic(fh.read(_HEAD_BYTES))
    except OSError:
        return False


def missing_extra(path: PathLike) -> str | None:
    """:data:`NEEDS_HEIC` or :data:`NEEDS_DICOM` when the file's extension (or, without one, its
    DICOM preamble) needs an extra that is not installed; None otherwise. No decoding."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in HEIC_EXTENSIONS:
        return None if heif_available() else NEEDS_HEIC
    if ext in DICOM_EXTENSIONS or (not ext and has_dicom_magic(path)):
        return None if dicom.available() else NEEDS_DICOM
    return None


def _kind(fh: BinaryIO, path: PathLike) -> str:
    """"dicom" or "pillow" from the extension and the first bytes; raises the missing extra's reason."""
    try:
        head = fh.read(_HEAD_BYTES)
        fh.seek(0)
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror or _detail(exc)})") from None
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if dicom.has_magic(head) or ext in DICOM_EXTENSIONS:
        if not dicom.available():
            raise ImageError(path, NEEDS_DICOM)
        return "dicom"
    if (_is_heif(head) or ext in HEIC_EXTENSIONS) and not heif_available():
        raise ImageError(path, NEEDS_HEIC)
    return "pillow"


def _open_dicom(path: PathLike) -> Image.Image:
    try:
        return dicom.read(path, _pixel_limit())
    except ValueError as exc:
        raise ImageError(path, str(exc)) from None
    except MemoryError:
        raise ImageError(path, "not enough memory to decode the image") from None


def _open_header(fh: BinaryIO, path: PathLike) -> Image.Image:
    """Identify the format and read the header only; check the size against MAX_PIXELS."""
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            # Pillow warns between 1x and 2x its limit; the size check below turns that case
            # into an ImageError that names the dimensions. Above 2x Pillow raises instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fh)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(path, _bomb_reason(exc)) from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image (unrecognised format)") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except MemoryError:
        raise ImageError(path, "not enough memory to read the image header") from None
    except Exception as exc:  # any parser failure on a damaged header
        raise ImageError(path, f"corrupt image header ({_detail(exc)})") from None
    width, height = im.size
    reason = None
    if width <= 0 or height <= 0:
        reason = f"image has no pixels ({width}x{height})"
    elif width * height > _pixel_limit():
        reason = _too_large(width, height)
    if reason is not None:
        im.close()
        raise ImageError(path, reason)
    return im


def probe_image(path: PathLike) -> str | None:
    """Header-only check for folder scans: the reason the file is unusable, or ``None``.

    Reads a few bytes per file (no pixel decoding), so damage inside the pixel data is only
    found by :func:`open_image`.
    """
    reason = _stat_reason(path)
    if reason is not None:
        return reason
    try:
        with _open_file(path) as fh:
            if _kind(fh, path) == "dicom":
                return dicom.probe(path, _pixel_limit())
            _open_header(fh, path).close()
    except ImageError as exc:
        return exc.reason
    except Exception as exc:  # pragma: no cover - belt and braces
        return f"cannot read file ({_detail(exc)})"
    return None


_MAGIC_PREFIXES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
                   b"II+\x00", b"MM\x00+")


def _starts_like_image(head: bytes) -> bool:
    """The first bytes of a JPEG, PNG, GIF, BMP, TIFF, WebP, HEIF or DICOM file."""
    return (head.startswith(_MAGIC_PREFIXES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
            or _is_heif(head) or dicom.has_magic(head))


def quick_check(path: PathLike) -> str | None:
    """The Data step's scan check: the reason the file is unusable, or ``None``.

    Reads the first bytes of the file only: an empty or unreadable file, or one that starts like
    no image format (a text file named ``.jpg``), is named before training, at about the cost of
    a ``stat``. A file whose start is not recognised gets :func:`probe_image`'s header check,
    which knows every format Pillow reads, so a rare format is never refused by this list.
    """
    try:
        fd = os.open(path, os.O_RDONLY)  # not open(): no buffered file object for 132 bytes
        try:
            head = os.read(fd, _HEAD_BYTES)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return "file not found"
    except PermissionError:
        return "permission denied"
    except IsADirectoryError:
        return "is a folder, not a file"
    except OSError as exc:
        return f"cannot read file ({exc.strerror or _detail(exc)})"
    if not head:
        return "empty file (0 bytes)"
    if _starts_like_image(head):
        return None
    return probe_image(path)


def draft_scale(width: int, height: int, reduce_for: int | None) -> int:
    """The DCT reduction (1, 2, 4 or 8) a JPEG of this size is decoded at for ``reduce_for``."""
    if not reduce_for or reduce_for <= 0:
        return 1
    shorter = min(width, height)
    for scale in (8, 4, 2):
        if shorter // scale >= DRAFT_MARGIN * reduce_for:
            return scale
    return 1


def _draft(im: Image.Image, reduce_for: int | None) -> None:
    """Ask Pillow's JPEG decoder for a reduced scale before ``load`` (nothing for other formats)."""
    if im.format not in _DRAFT_FORMATS:
        return
    width, height = im.size
    scale = draft_scale(width, height, reduce_for)
    if scale > 1:
        # Pillow picks the largest scale s with width // s and height // s at least the size asked.
        im.draft(im.mode, (width // scale, height // scale))


def open_image(path: PathLike, reduce_for: int | None = None) -> Image.Image:
    """Decode ``path`` into an upright 8-bit RGB image, or raise :class:`ImageError`.

    Animated images give their first frame. The returned image owns its pixels; the file is
    closed before returning. With ``reduce_for=N`` (the shorter side the caller resizes to
    next) a large JPEG is decoded at a reduced scale whose shorter side stays at least
    :data:`DRAFT_MARGIN` x N; the result is then smaller than the file's full size.
    """
    reason = _stat_reason(path)
    if reason is not None:
        raise ImageError(path, reason)
    with _open_file(path) as fh:
        if _kind(fh, path) == "dicom":
            return _open_dicom(path)
        im = _open_header(fh, path)
        try:
            _draft(im, reduce_for)
            im.load()  # the size was checked from the header; frames cannot exceed it much
        except Image.DecompressionBombError as exc:
            raise ImageError(path, _bomb_reason(exc)) from None
        except MemoryError:
            raise ImageError(path, "not enough memory to decode the image") from None
        except Exception as exc:  # OSError, SyntaxError, ValueError, zlib.error, ...
            raise ImageError(path, f"truncated or corrupt image data ({_detail(exc)})") from None
        upright = im
        try:
            upright = _upright(im)
            rgb = to_rgb(upright)
        except ImageError as exc:
            raise ImageError(path, exc.reason) from None
        except MemoryError:
            raise ImageError(path, "not enough memory to convert the image") from None
        except Exception as exc:
            raise ImageError(path, f"cannot convert image ({_detail(exc)})") from None
        finally:
            upright.close()
            im.close()
    return rgb


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; damaged EXIF data leaves the image as stored."""
    try:
        rotated = ImageOps.exif_transpose(im)
    except Exception:
        return im
    return rotated if rotated is not None else im


def _scale_to_uint8(values: np.ndarray, full_scale: float) -> np.ndarray:
    """Map 0..full_scale to 0..255 with rounding (e.g. 65535 -> 255, 32768 -> 128)."""
    scaled = np.clip(values.astype(np.float64), 0.0, full_scale) * (255.0 / full_scale)
    return np.floor(scaled + 0.5).astype(np.uint8)


def _wide_gray_to_l(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer or float greyscale to 8-bit "L", scaling rather than clipping.

    ``I;16*`` modes are scaled from 0..65535. For ``I`` the smallest of 8/16-bit ranges that
    holds the data is assumed; ``F`` in 0..1 is scaled by 255, in 0..255 kept; anything
    else (negative or larger values) is stretched from its minimum to its maximum.
    """
    values = np.asarray(im)
    if im.mode in _SIXTEEN_BIT_MODES:
        return Image.fromarray(_scale_to_uint8(values, 65535.0))
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if im.mode == "F" and low >= 0.0 and high <= 1.0:
        return Image.fromarray(_scale_to_uint8(values, 1.0))
    if low >= 0.0 and high <= 255.0:
        return Image.fromarray(_scale_to_uint8(values, 255.0))
    if im.mode == "I" and low >= 0.0 and high <= 65535.0:
        return Image.fromarray(_scale_to_uint8(values, 65535.0))
    span = high - low if high > low else 1.0
    return Image.fromarray(_scale_to_uint8(values - low, span))


def _flatten_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert a decoded image of any Pillow mode to 8-bit ``RGB`` (a new image)."""
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return _wide_gray_to_l(im).convert("RGB")
    if mode in _ALPHA_MODES:  # includes premultiplied RGBa/La, which convert() un-premultiplies
        return _flatten_on_white(im.convert("RGBA"))
    if "transparency" in im.info and mode in ("P", "L", "RGB", "1"):
        return _flatten_on_white(im.convert("RGBA"))
    if mode == "RGB":
        return im.copy()
    try:
        return im.convert("RGB")  # "1", "L", "P", "CMYK", "YCbCr", "HSV", ...
    except ValueError:
        raise ImageError("", f"unsupported colour mode {mode}") from None
