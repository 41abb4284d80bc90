"""The deploy kit: a folder beside an ONNX export that a receiver uses without transfer_gui.

``write_kit(export_path)`` writes ``<export stem>-kit/`` with the model (copied), ``labels.txt``
(one class a line, in output order), ``predict.py`` (at most 50 lines; onnxruntime, numpy
and Pillow only: it follows the file's own ``preprocessing_spec``, or feeds the image itself to
an ``onnx-rgb`` graph; it decodes as ``imageio.open_image`` does, 16-bit, 32-bit and float
greyscale scaled rather than clipped to 8 bits by the same rule) and a ``README.md`` for the
receiver. The templates are strings here.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from transfer_gui.atomic import atomic_write_text
from transfer_gui.errors import UserError

KIT_MODEL = "model.onnx"

PREDICT_PY = '''"""Classify images with model.onnx: python predict.py IMAGE... (needs onnxruntime, numpy, Pillow)."""
import json, os, sys
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

session = ort.InferenceSession(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.onnx"))
meta = session.get_modelmeta().custom_metadata_map
labels, spec = json.loads(meta["classes"]), json.loads(meta["preprocessing_spec"])
steps = {s["op"]: s for s in spec["steps"]}
FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}

def load(path):  # the spec's decode step: JPEG draft, EXIF rotation, alpha over white, RGB
    im, n = Image.open(path), steps["decode"]["jpeg_draft"]
    s = next((s for s in (8, 4, 2) if min(im.size) // s >= n["margin"] * n["reduce_for"]), 1)
    if im.format in ("JPEG", "MPO") and s > 1:
        im.draft(im.mode, (im.size[0] // s, im.size[1] // s))
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):  # 16-bit, 32-bit and float greyscale
        return grey8(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        im, white = im.convert("RGBA"), Image.new("RGB", im.size, (255, 255, 255))
        white.paste(im, mask=im.getchannel("A"))
        im = white
    return im.convert("RGB")

def grey8(im):  # the app's rule: scaled to 8 bits, not clipped (16-bit 65535 -> 255, 32768 -> 128)
    v = np.nan_to_num(np.asarray(im).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(v.min()), float(v.max())
    top = next((t for ok, t in ((im.mode.startswith("I;16"), 65535.0), (im.mode == "F" and lo >= 0 and hi <= 1, 1.0),
                (lo >= 0 and hi <= 255, 255.0), (im.mode == "I" and lo >= 0 and hi <= 65535, 65535.0)) if ok), 0.0)
    lo, top = (0.0, top) if top else (lo, hi - lo if hi > lo else 1.0)  # anything else: from its min to its max
    return Image.fromarray(np.floor(np.clip(v - lo, 0.0, top) * (255.0 / top) + 0.5).astype(np.uint8)).convert("RGB")

def tensor(im):  # resize shorter side (long side truncated), centre crop, /255, mean/std, NCHW
    r, c, nm = steps["resize"], steps["center_crop"], steps["normalize"]
    n, (w, h) = r["shorter_side"], im.size
    size = (n, int(n * h / w)) if w <= h else (int(n * w / h), n)
    im = im.resize(size, FILTERS[r["interpolation"]])
    top, left = round((size[1] - c["size"][0]) / 2), round((size[0] - c["size"][1]) / 2)
    x = np.asarray(im, dtype=np.float32)[top:top + c["size"][0], left:left + c["size"][1]] / 255
    return ((x - np.float32(nm["mean"])) / np.float32(nm["std"])).transpose(2, 0, 1)[None].astype(np.float32)

first = session.get_inputs()[0]
for path in sys.argv[1:]:
    im = load(path)
    x = np.asarray(im, dtype=np.uint8)[None] if first.type == "tensor(uint8)" else tensor(im)
    z = session.run(None, {first.name: x})[0][0].astype(np.float64)  # logits / temperature
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    print(f"{path}\\t{labels[p.argmax()]}\\t{p.max():.4f}" + ("\\tunsure" if p.max() < float(meta.get("threshold", 0)) else ""))
'''

README = """# {name}: an image classifier

Trained with transfer_gui ({arch}; {n} classes). Everything here works without transfer_gui.

    pip install onnxruntime numpy pillow
    python predict.py photo.jpg more.png

prints `path<TAB>class<TAB>probability` (and `unsure` below the model's confidence threshold
{threshold:g}), one line per image.

## Files

- `model.onnx`: the network. Output `logits` is already divided by the calibration temperature
  ({temperature:g}), so `softmax(logits)` are the probabilities the app showed.{input_note}
- `labels.txt`: the class names, one per line, in the order of the outputs.
- `predict.py`: the reference use, about 50 lines.

## The input, exactly

The model file's metadata (`onnx.load("model.onnx").metadata_props`) holds the constructor
(`constructor`: {constructor}), the class names and `preprocessing_spec` (version {spec_version}),
every step from the file to the tensor, in order. predict.py follows it:

{steps}
"""

_RGB_NOTE = """
  Its input `image` is uint8 RGB pixels (N, H, W, 3) of **any size** (one size per call): resize,
  crop and normalisation are inside the graph; `probabilities` (softmax) is a second output.
  Decode as predict.py's `load` does (EXIF rotation, alpha over white, 16-bit and float greyscale
  scaled to 8 bits, `Image.draft` for big JPEGs) to match the app exactly."""


def _steps_text(spec: dict) -> str:
    lines = []
    for i, step in enumerate(spec["steps"], 1):
        details = ", ".join(f"{k}: {json.dumps(v) if not isinstance(v, str) else v}" for k, v in step.items() if k != "op")
        lines.append(f"{i}. **{step['op']}**: {details}")
    return "\n".join(lines)


def _onnx_metadata(path: Path) -> dict:
    import onnx

    try:
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception as exc:  # noqa: BLE001 - any failure is the file's
        raise UserError(f"cannot read {path} as ONNX: {str(exc)[:200]}") from None
    if "preprocessing_spec" not in props:
        raise UserError(f"{path} has no preprocessing_spec in its metadata: export it again with this transfer_gui")
    return props


def write_kit(export_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write the deploy kit of the ONNX export ``export_path`` (``.onnx`` or ``.rgb.onnx``) to
    ``out_dir`` (default: ``<stem>-kit`` beside it) and return the folder."""
    src = Path(export_path)
    if not src.is_file():
        raise UserError(f"export not found: {src}")
    if not src.name.lower().endswith(".onnx"):
        raise UserError(f"a deploy kit needs an ONNX export (onnx or onnx-rgb), not {src.name}")
    props = _onnx_metadata(src)
    stem = src.stem  # "cats" for cats.onnx, "cats.rgb" for cats.rgb.onnx: two kits side by side
    kit = Path(out_dir) if out_dir is not None else src.with_name(f"{stem}-kit")
    kit.mkdir(parents=True, exist_ok=True)
    tmp = kit / f".{KIT_MODEL}.part"
    shutil.copyfile(src, tmp)
    os.replace(tmp, kit / KIT_MODEL)
    classes, spec = json.loads(props["classes"]), json.loads(props["preprocessing_spec"])
    atomic_write_text(kit / "labels.txt", "".join(f"{c}\n" for c in classes))
    atomic_write_text(kit / "predict.py", PREDICT_PY)
    constructor = json.loads(props.get("constructor", "{}"))
    atomic_write_text(kit / "README.md", README.format(
        name=stem, arch=props.get("arch", "?"), n=len(classes), threshold=float(json.loads(props.get("threshold", "0"))),
        temperature=float(json.loads(props.get("temperature", "1"))), constructor=constructor.get("call", "?"),
        spec_version=spec.get("version"), steps=_steps_text(spec), input_note=_RGB_NOTE if "input" in props else ""))
    return kit
