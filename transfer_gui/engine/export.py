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
# onnx-rgb: max abs probability difference. Its graph resizes bit for bit as the app does (onnxpre.py):
# 4.8e-6 on Fashion-MNIST's 28 px images upscaled, 1.0e-6 on photos (bench_onnx_rgb_parity.py)
RGB_PARITY_TOL = PARITY_TOL
EXPORT_NAME = "export_name"  # key added to the checkpoint dict given to a writer: the export's file stem
SYNTHETIC_PARITY_IMAGES = 4
RUN_PARITY_IMAGES = 32  # the run's own images checked when none are given, spread over its classes
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
    parity_source: str = ""  # whose images the parity check ran on: "given", "validation", "training", "synthetic"
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
            f"{pre.resize_size})", "in_graph": "the preprocessing_spec's steps after decode: resize and centre crop "
            "(the app's torchvision antialiased uint8 resize, bit for bit, as separable fixed-point passes), "
            "/255, mean/std",
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


def _spread(paths: list[str], n: int) -> list[str]:
    """At most ``n`` of the sorted ``paths``, evenly spaced: sorted paths run class folder by class folder."""
    paths = sorted(paths)
    if len(paths) <= n:
        return paths
    return [paths[i] for i in np.linspace(0, len(paths) - 1, n).round().astype(int)]


def _run_folder(source: str | os.PathLike[str]) -> Path | None:
    src = Path(source)
    if src.is_dir():
        return src
    return src.parent.parent if src.parent.name == "checkpoints" else None


def run_parity_images(ck: dict, source: str | os.PathLike[str], n: int = RUN_PARITY_IMAGES) -> tuple[list[str], str]:
    """Up to ``n`` of the run's validation images (its training images when it has none), spread
    over its classes, and which set they came from; ``([], why not)`` when neither can be found.
    The run folder's ``val_predictions.json`` is read first (no scan); else the split is rebuilt
    from the checkpoint's stored config. Why: the check must see the user's kind of images."""
    from transfer_gui.engine import rundir

    folder = _run_folder(source)
    preds = folder / rundir.PREDICTIONS["val"] if folder is not None else None
    if preds is not None and preds.is_file():
        try:
            items = json.loads(preds.read_text(encoding="utf-8")).get("items", [])
            found = [str(it["path"]) for it in items if isinstance(it, dict) and Path(str(it.get("path", ""))).is_file()]
        except (OSError, ValueError, AttributeError, KeyError):
            found = []
        if found:
            return _spread(found, n), "validation"
    return _split_images(ck, source, n)


def _split_images(ck: dict, source: str | os.PathLike[str], n: int) -> tuple[list[str], str]:
    """The run's validation (else training) images from the split its stored config rebuilds."""
    from transfer_gui import config as config_mod
    from transfer_gui.engine.data import build_split

    text = ck.get("config")
    try:
        cfg = config_mod.loads(text, f"{source} (its stored config)") if isinstance(text, str) else None
    except UserError:
        cfg = None
    if cfg is None or not cfg.data.folders:
        return [], "the checkpoint names no data folders"
    try:
        split = build_split(cfg.data, cfg.train.seed)
    except UserError as exc:
        return [], f"the run's data folders could not be read ({str(exc)[:160]})"
    for kind, samples in (("validation", split.val), ("training", split.train)):
        if samples:
            return _spread([s.path for s in samples], n), kind
    return [], f"the run's data folders ({', '.join(cfg.data.folders)}) hold no images now"


def _parity_images(parity_images: Sequence[Any] | None, pre: Preprocessing, ck: dict,
                   source: str | os.PathLike[str]) -> tuple[list[Image.Image], str, str]:
    """The decoded parity images (decoded as ``predict`` decodes them): those given, else the
    run's own (:func:`run_parity_images`), else synthetic ones; a note; and where they came from."""
    kind, why = "given", ("none of the given images could be read" if parity_images else "no images given")
    if parity_images is None:
        parity_images, kind = run_parity_images(ck, source)
        kind, why = (kind, "none of the run's images could be read") if parity_images else ("", kind)
    decoded, skipped = [], []
    for item in parity_images or []:
        try:
            decoded.append(to_pil(item, pre.resize_size))
        except Exception as exc:  # noqa: BLE001 - a bad image only costs coverage, not the export
            skipped.append(f"{item}: {exc}")
    if decoded:
        whose = {"validation": " of the run's validation images", "training": " of the run's training images"}
        note = f"parity on {len(decoded)}{whose.get(kind, ' image(s)')}"
        if skipped:
            note += f" ({len(skipped)} unreadable skipped: {skipped[0][:120]})"
        return decoded, note, kind
    images = synthetic_images()
    return images, f"parity on {len(images)} synthetic images ({why})", "synthetic"


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


class ExportCancelled(BaseException):
    """The user cancelled an export: nothing was written under the final name. A BaseException so
    that no ``except Exception`` on the way (serialisers, the quantiser) turns it into a failure."""


def _progress_or_cancel(progress: ProgressFn | None, cancelled: Callable[[], bool] | None) -> ProgressFn:
    """The progress callback, raising :class:`ExportCancelled` at the first call after ``cancelled()``."""
    def report(stage: str, fraction: float) -> None:
        if cancelled is not None and cancelled():
            raise ExportCancelled(stage)
        if progress is not None:
            progress(stage, fraction)

    return report


def _target(source: str | os.PathLike[str], fmt: str, out_path: str | os.PathLike[str]) -> Path:
    if fmt not in ALL_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(ALL_FORMATS)}")
    out = Path(out_path)
    if out.is_dir():
        return default_export_path(source, fmt, out)
    return out.with_name(out.name + SUFFIXES[fmt]) if not out.suffix else out


def export_model(source: str | os.PathLike[str], fmt: str, out_path: str | os.PathLike[str],
                 parity_images: Sequence[Any] | None = None, progress: ProgressFn | None = None,
                 tolerance: float = PARITY_TOL, cancelled: Callable[[], bool] | None = None) -> ExportReport:
    """Export the checkpoint of ``source`` (a run folder or checkpoint file) as ``fmt`` to ``out_path``.

    ``out_path`` may be an existing folder (the file is then named after the run); a name
    without a suffix gets the format's suffix from :data:`SUFFIXES`. The written
    file is loaded back and must reproduce the PyTorch logits within ``tolerance`` on
    ``parity_images`` (paths or PIL images; when None, the run's own images, see
    :func:`run_parity_images`, else deterministic synthetic ones). ``cancelled()`` true at a
    stage raises :class:`ExportCancelled`, the file not moved into place.
    """
    report = _progress_or_cancel(progress, cancelled)
    out = _target(source, fmt, out_path)
    report("loading checkpoint", 0.0)
    try:
        ck = load_checkpoint(source)
        model, classes, pre, arch = model_from_checkpoint(ck, str(source))
    except ModelError as exc:
        raise ExportError(str(exc)) from None
    if fmt in QUANTIZED:
        return _export_quantized(source, ck, model, out, report)
    report("reading the parity images", 0.05)
    images, parity_note, parity_source = _parity_images(parity_images, pre, ck, source)
    batch = torch.stack([eval_transform(pre)(im) for im in images])
    expected = {"classes": classes, "preprocessing": pre, "calibration": calibration_of(ck, str(source))}
    with torch.inference_mode():
        reference = model(batch).float().numpy() / np.float32(expected["calibration"]["temperature"])
    report(f"writing {fmt}", 0.2)
    diff, agree, note = _write_checked(ck, model, fmt, out, (images, batch), reference, expected,
                                       (tolerance, f"{fmt} export of {arch} to {out}", parity_note), report)
    report("done", 1.0)
    kind = "probability" if fmt == "onnx-rgb" else "logit"
    message = (f"{note}; {parity_note}: max abs {kind} difference {diff:.2g}, "
               f"top-1 agreement {agree:.0%}")
    return ExportReport(str(out), fmt, out.stat().st_size, diff, agree, int(batch.shape[0]), message,
                        parity_source=parity_source)


def _write_checked(ck: dict, model: nn.Module, fmt: str, out: Path, parity: tuple, reference: np.ndarray,
                   expected: dict, check: tuple[float, str, str], report: ProgressFn) -> tuple[float, float, str]:
    """Write ``fmt`` to a temporary file, check it (:func:`_check_written`) and only then move it
    to ``out``; any failure or cancel leaves ``out`` as it was. (max abs diff, top-1 agreement, note)."""
    tolerance, what, parity_note = check
    try:
        with atomic_path(out) as tmp:
            note = _WRITERS[fmt]({**ck, EXPORT_NAME: file_stem(out.name)}, model, tmp)
            chmod_default(tmp)  # some writers (safetensors) recreate the file as 0600
            report("checking the written file", 0.7)
            diff, agree = _check_written(tmp, fmt, parity, reference, expected, tolerance, what, parity_note)
            report("moving the checked file into place", 0.95)
    except ExportError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ExportError(f"cannot write {out}: {reason}. Any previous file there is unchanged.") from None
    except Exception as exc:  # noqa: BLE001 - serialisers fail in their own ways; name the file
        raise ExportError(f"{fmt} export to {out} failed: {type(exc).__name__}: {str(exc)[:300]}. "
                          f"Any previous file there is unchanged.") from None
    return diff, agree, note
