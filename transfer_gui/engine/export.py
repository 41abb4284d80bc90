"""Export a trained model: a clean app checkpoint, safetensors, TorchScript or ONNX.

Every export carries the class names, preprocessing and architecture name, so
:class:`transfer_gui.engine.predict.Predictor` can classify with any of them exactly as the
app validates. Files are written through :func:`atomic_path`: a failed or refused export
leaves no partial file and the previous file (if any) untouched.

The calibration goes with every export: the checkpoint keeps its ``calibration``, every
format's metadata records ``temperature`` and ``threshold``, and the TorchScript and ONNX graphs
have the temperature baked in (their output is the model's logits divided by it, so anyone's
softmax of it gives the app's probabilities; the metadata says ``temperature_in_graph``).

Before a file is moved into place it is loaded back the way ``Predictor`` loads it and its
calibrated logits (logits / temperature) are compared with the in-memory PyTorch model's on the
same preprocessed images. For every format a max abs difference above :data:`PARITY_TOL` fails
the export, and so does a file that lost the class names, preprocessing or calibration.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from transfer_gui.atomic import atomic_path, chmod_default
from transfer_gui.errors import UserError
from transfer_gui.engine.catalog import ModelError
from transfer_gui.engine.checkpoint import (TORCHSCRIPT_META, calibration_of, export_metadata, flat_metadata,
                                            load_checkpoint, model_from_checkpoint)
from transfer_gui.engine.formats import CHECKPOINT_VERSION, QUANTIZED, SUFFIXES, file_stem
from transfer_gui.engine.predict import ImagePredictor, Predictor, softmax, to_pil
from transfer_gui.engine.preprocess import Preprocessing, eval_transform

FORMATS = tuple(f for f in SUFFIXES if f not in QUANTIZED)  # the exact formats, parity-checked to PARITY_TOL
ALL_FORMATS = tuple(SUFFIXES)  # and onnx-int8, checked against fp32 on the run's validation set (quantize.py)
PARITY_TOL = 1e-4
# onnx-rgb: max abs probability difference. Its resize is ONNX's on uint8: on photos (downscaled)
# within 1 grey level of Pillow and 1.4e-4 in probability; on the sample data's 28 px images
# upscaled to 110 px, 1.2e-3 (the export from the window failed at a bound of 1e-3)
RGB_PARITY_TOL = 2e-3
EXPORT_NAME = "export_name"  # key added to the checkpoint dict given to a writer: the export's file stem
SYNTHETIC_PARITY_IMAGES = 4
_CLEAN_KEYS = ("format", "version", "arch", "classes", "preprocessing", "head_path", "state_dict",
               "metrics", "config", "calibration")

ProgressFn = Callable[[str, float], None]  # (what is happening, fraction done 0..1)


class ExportError(UserError):
    """An export that could not be written or did not reproduce the model; a message for the user."""


@dataclass
class ExportReport:
    path: str
    format: str
    bytes: int
    parity_max_abs_diff: float | None
    parity_top1_agree: float | None
    parity_images: int
    message: str
    quantization: Any = None  # onnx-int8: the quantize.QuantReport (agreement, accuracies, sizes, latencies)
    # Set by whoever times or packages the written file (the Export page's job), not by export_model:
    latency: Any = None  # measure.Latency at batch 1, or None when not timed (or it could not be)
    kit: str | None = None  # the deploy kit's folder, when one was written beside this file
    kit_error: str = ""  # why the deploy kit asked for could not be written


# ----------------------------------------------------------------------------- writers


def _write_checkpoint(ck: dict, model: nn.Module, tmp: Path) -> str:
    clean = {k: ck[k] for k in _CLEAN_KEYS if k in ck}
    clean["version"] = CHECKPOINT_VERSION
    with open(tmp, "wb") as fh:
        torch.save(clean, fh)
    return "app checkpoint without optimizer state"


def _write_safetensors(ck: dict, model: nn.Module, tmp: Path) -> str:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp), metadata=flat_metadata(export_metadata(ck)))
    return "safetensors with metadata"


class CalibratedLogits(nn.Module):
    """``model(x) / temperature``: the graph that TorchScript and ONNX exports hold."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature


def _calibrated(ck: dict, model: nn.Module) -> nn.Module:
    return CalibratedLogits(model, calibration_of(ck)["temperature"]).eval()


def _example_input(pre: Preprocessing) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, pre.input_size, pre.input_size, generator=gen)  # batch 2: keep it symbolic


def _write_torchscript(ck: dict, model: nn.Module, tmp: Path) -> str:
    import tempfile

    example = _example_input(Preprocessing.from_dict(ck["preprocessing"]))
    name = _archive_name(ck)
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".torchscript-") as folder:
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still the format asked for
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the parity check judges the trace
        traced = torch.jit.trace(_calibrated(ck, model), example, check_trace=False)
        meta = export_metadata(ck, temperature_in_graph=True)
        named = Path(folder) / f"{name}.pt"  # the archive's root folder is the file's stem: the model's name
        torch.jit.save(traced, str(named), _extra_files={TORCHSCRIPT_META: json.dumps(meta)})
        os.replace(named, tmp)
    return "TorchScript (traced)"


def _archive_name(ck: dict) -> str:
    """The export's own name (its file name without the format's suffix), safe as a folder name."""
    raw = str(ck.get(EXPORT_NAME) or str(ck["arch"]).split(":")[-1] or "model")
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in raw) or "model"


def _onnx_file(ck: dict, model: nn.Module, tmp: Path, opset: int) -> str:
    """The calibrated network as ONNX at ``tmp`` (float NCHW ``input`` -> ``logits``); the exporter's note."""
    example = _example_input(Preprocessing.from_dict(ck["preprocessing"]))
    model = _calibrated(ck, model)
    names = {"input_names": ["input"], "output_names": ["logits"]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter warns it is legacy
            torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=opset,
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **names)
        return f"ONNX opset {opset} (TorchScript-based exporter)"
    except Exception as legacy_exc:  # noqa: BLE001 - try the other exporter before giving up
        try:
            program = torch.onnx.export(model, (example,), dynamo=True, verbose=False, external_data=False,
                                        opset_version=opset, dynamic_shapes=({0: torch.export.Dim("batch")},),
                                        **names)
            program.save(str(tmp), external_data=False)
        except Exception as dynamo_exc:  # noqa: BLE001
            raise ExportError(f"ONNX export failed with both exporters: {type(legacy_exc).__name__}: "
                              f"{str(legacy_exc)[:200]} / {type(dynamo_exc).__name__}: "
                              f"{str(dynamo_exc)[:200]}") from None
        return f"ONNX (torch.export-based exporter; the legacy one failed: {str(legacy_exc)[:120]})"


def _save_onnx_with_metadata(proto: Any, tmp: Path, meta: dict) -> None:
    import onnx

    del proto.metadata_props[:]
    for key, value in flat_metadata(meta).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))


def _write_onnx(ck: dict, model: nn.Module, tmp: Path) -> str:
    import onnx

    note = _onnx_file(ck, model, tmp, opset=17)
    _save_onnx_with_metadata(onnx.load(str(tmp)), tmp, export_metadata(ck, temperature_in_graph=True))
    return note


def _write_onnx_rgb(ck: dict, model: nn.Module, tmp: Path) -> str:
    import onnx

    from transfer_gui.engine.onnxpre import OPSET, with_preprocessing

    note = _onnx_file(ck, model, tmp, opset=OPSET)
    pre = Preprocessing.from_dict(ck["preprocessing"])
    merged = with_preprocessing(onnx.load(str(tmp)), pre)
    _save_onnx_with_metadata(merged, tmp, export_metadata(ck, temperature_in_graph=True, graph_input=rgb_input_spec(pre)))
    return note.replace("ONNX", "ONNX with the preprocessing in the graph,", 1)


def rgb_input_spec(pre: Preprocessing) -> dict[str, Any]:
    """What the ``onnx-rgb`` graph takes and does (the metadata's ``input``)."""
    return {"name": "image", "dtype": "uint8", "layout": "NHWC", "channels": "RGB", "size": "any height and width "
            "(one size per call)", "decode_outside_graph": "the preprocessing_spec's decode step (Pillow: EXIF "
            "transpose, alpha over white, convert('RGB'), JPEG draft for the shorter side >= "
            f"{pre.resize_size})", "in_graph": "the preprocessing_spec's steps after decode: resize (ONNX Resize, "
            "antialias=1 on uint8, within 1 grey level of Pillow), centre crop, /255, mean/std",
            "outputs": {"logits": "logits / temperature", "probabilities": "softmax(logits)"}}


_WRITERS: dict[str, Callable[[dict, nn.Module, Path], str]] = {
    "checkpoint": _write_checkpoint, "safetensors": _write_safetensors,
    "torchscript": _write_torchscript, "onnx": _write_onnx, "onnx-rgb": _write_onnx_rgb,
}


# ----------------------------------------------------------------------------- parity


def synthetic_images(n: int = SYNTHETIC_PARITY_IMAGES) -> list[Image.Image]:
    """Deterministic smooth-plus-noise RGB images of varied sizes, for when no photos are given."""
    rng = np.random.default_rng(1234)
    images = []
    for i in range(n):
        h, w = 160 + 37 * i, 224 - 23 * i
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin((xx + yy) / (9.0 + i))], axis=-1) * 200
        noise = rng.normal(0, 20, size=(h, w, 3))
        images.append(Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB"))
    return images


def _parity_images(parity_images: Sequence[Any] | None, pre: Preprocessing) -> tuple[list[Image.Image], str]:
    """The decoded parity images (decoded as ``predict`` decodes them), or synthetic ones; and a note."""
    decoded, skipped = [], []
    for item in parity_images or []:
        try:
            decoded.append(to_pil(item, pre.resize_size))
        except Exception as exc:  # noqa: BLE001 - a bad image only costs coverage, not the export
            skipped.append(f"{item}: {exc}")
    if decoded:
        note = f"parity on {len(decoded)} image(s)"
        if skipped:
            note += f" ({len(skipped)} unreadable skipped: {skipped[0][:120]})"
        return decoded, note
    why = "none of the given images could be read" if parity_images else "no images given"
    images = synthetic_images()
    return images, f"parity on {len(images)} synthetic images ({why})"


def _check_written(tmp: Path, fmt: str, parity: tuple[list[Image.Image], torch.Tensor], reference: np.ndarray,
                   expected: dict, tolerance: float, what: str, parity_note: str) -> tuple[float, float]:
    """Load the written file as ``Predictor`` does; its calibrated logits must match ``reference``
    (the PyTorch model's logits / temperature) and its metadata ``expected``: (max abs diff, top-1
    agreement). An ``onnx-rgb`` file is fed the decoded images and judged on probabilities."""
    images, batch = parity
    loaded = Predictor.load(tmp, fmt=fmt)
    rgb = isinstance(loaded, ImagePredictor)
    got = loaded.calibrated_logits_from_batch(loaded._stack([loaded._prepare(im) for im in images]) if rgb else batch)
    kept = {"classes": loaded.classes, "preprocessing": loaded.preprocessing,
            "calibration": {"temperature": loaded.temperature, "threshold": loaded.threshold}}
    del loaded  # release the file before it is moved into place
    lost = [name for name, value in expected.items() if kept[name] != value]
    if lost:
        raise ExportError(f"{what} did not keep the {' and '.join(lost)}; nothing written")
    a, b = (softmax(got), softmax(reference)) if rgb else (got, reference)
    diff = float(np.abs(a - b).max())
    bound = max(tolerance, RGB_PARITY_TOL) if rgb else tolerance
    if not diff <= bound:
        kind = "probability" if rgb else "logit"
        raise ExportError(f"{what} does not reproduce the PyTorch model: max abs {kind} difference "
                          f"{diff:.3g} > {bound:g} ({parity_note}); nothing written")
    return diff, float((got.argmax(1) == reference.argmax(1)).mean())


# ----------------------------------------------------------------------------- export


def _export_quantized(source: str | os.PathLike[str], ck: dict, model: nn.Module, out: Path,
                      report: ProgressFn) -> ExportReport:
    """onnx-int8: the fp32 ONNX graph statically quantised (engine/quantize.py). Its check is the
    comparison with the fp32 file on the run's validation set (top-1 agreement, both accuracies),
    not logit parity; ``quantization`` carries it."""
    from transfer_gui.engine import quantize

    try:
        result = quantize.export_int8(ck, str(source), out, lambda path: _write_onnx(ck, model, path), report)
    except ExportError:
        raise
    except UserError as exc:
        raise ExportError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the quantiser fails in its own ways; name the file
        raise ExportError(f"onnx-int8 export to {out} failed: {type(exc).__name__}: {str(exc)[:300]}. "
                          f"Any previous file there is unchanged.") from None
    return ExportReport(str(out), "onnx-int8", result.int8_bytes, None, result.agreement, result.images,
                        "; ".join(result.lines()), quantization=result)


def default_export_path(source: str | os.PathLike[str], fmt: str, folder: str | os.PathLike[str]) -> Path:
    """``folder/<run or checkpoint name><suffix>``."""
    src = Path(source)
    stem = src.name if src.is_dir() else (src.parent.parent.name if src.parent.name == "checkpoints" else src.stem)
    return Path(folder) / f"{stem or 'model'}{SUFFIXES[fmt]}"


def export_model(source: str | os.PathLike[str], fmt: str, out_path: str | os.PathLike[str],
                 parity_images: Sequence[Any] | None = None, progress: ProgressFn | None = None,
                 tolerance: float = PARITY_TOL) -> ExportReport:
    """Export the checkpoint of ``source`` (a run folder or checkpoint file) as ``fmt`` to ``out_path``.

    ``out_path`` may be an existing folder (the file is then named after the run); a name
    without a suffix gets the format's suffix from :data:`SUFFIXES`. The written
    file is loaded back and must reproduce the PyTorch logits within ``tolerance`` on
    ``parity_images`` (paths or PIL images; deterministic synthetic images when None).
    """
    report = progress or (lambda stage, fraction: None)
    if fmt not in ALL_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(ALL_FORMATS)}")
    out = Path(out_path)
    if out.is_dir():
        out = default_export_path(source, fmt, out)
    elif not out.suffix:
        out = out.with_name(out.name + SUFFIXES[fmt])
    report("loading checkpoint", 0.0)
    try:
        ck = load_checkpoint(source)
        model, classes, pre, arch = model_from_checkpoint(ck, str(source))
    except ModelError as exc:
        raise ExportError(str(exc)) from None
    if fmt in QUANTIZED:
        return _export_quantized(source, ck, model, out, report)
    images, parity_note = _parity_images(parity_images, pre)
    batch = torch.stack([eval_transform(pre)(im) for im in images])
    expected = {"classes": classes, "preprocessing": pre, "calibration": calibration_of(ck, str(source))}
    with torch.inference_mode():
        reference = model(batch).float().numpy() / np.float32(expected["calibration"]["temperature"])
    report(f"writing {fmt}", 0.2)
    try:
        with atomic_path(out) as tmp:
            note = _WRITERS[fmt]({**ck, EXPORT_NAME: file_stem(out.name)}, model, tmp)
            chmod_default(tmp)  # some writers (safetensors) recreate the file as 0600
            report("checking the written file", 0.7)
            diff, agree = _check_written(tmp, fmt, (images, batch), reference, expected, tolerance,
                                         f"{fmt} export of {arch} to {out}", parity_note)
    except ExportError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ExportError(f"cannot write {out}: {reason}. Any previous file there is unchanged.") from None
    except Exception as exc:  # noqa: BLE001 - serialisers fail in their own ways; name the file
        raise ExportError(f"{fmt} export to {out} failed: {type(exc).__name__}: {str(exc)[:300]}. "
                          f"Any previous file there is unchanged.") from None
    report("done", 1.0)
    kind = "probability" if fmt == "onnx-rgb" else "logit"
    message = (f"{note}; {parity_note}: max abs {kind} difference {diff:.2g}, "
               f"top-1 agreement {agree:.0%}")
    return ExportReport(str(out), fmt, out.stat().st_size, diff, agree, int(batch.shape[0]), message)
