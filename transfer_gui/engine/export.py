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

from transfer_gui.atomic import atomic_path
from transfer_gui.errors import UserError
from transfer_gui.engine.catalog import ModelError
from transfer_gui.engine.checkpoint import (TORCHSCRIPT_META, calibration_of, export_metadata, flat_metadata,
                                            load_checkpoint, model_from_checkpoint)
from transfer_gui.engine.formats import CHECKPOINT_VERSION, SUFFIXES
from transfer_gui.engine.predict import Predictor, to_pil
from transfer_gui.engine.preprocess import Preprocessing, eval_transform

FORMATS = tuple(SUFFIXES)
PARITY_TOL = 1e-4
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
    example = _example_input(Preprocessing.from_dict(ck["preprocessing"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still the format asked for
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the parity check judges the trace
        traced = torch.jit.trace(_calibrated(ck, model), example, check_trace=False)
        meta = export_metadata(ck, temperature_in_graph=True)
        torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_META: json.dumps(meta)})
    return "TorchScript (traced)"


def _write_onnx(ck: dict, model: nn.Module, tmp: Path) -> str:
    import onnx

    example = _example_input(Preprocessing.from_dict(ck["preprocessing"]))
    model = _calibrated(ck, model)
    names = {"input_names": ["input"], "output_names": ["logits"]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter warns it is legacy
            torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=17,
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **names)
        note = "ONNX opset 17 (TorchScript-based exporter)"
    except Exception as legacy_exc:  # noqa: BLE001 - try the other exporter before giving up
        try:
            program = torch.onnx.export(model, (example,), dynamo=True, verbose=False, external_data=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch")},), **names)
            program.save(str(tmp), external_data=False)
        except Exception as dynamo_exc:  # noqa: BLE001
            raise ExportError(f"ONNX export failed with both exporters: {type(legacy_exc).__name__}: "
                              f"{str(legacy_exc)[:200]} / {type(dynamo_exc).__name__}: "
                              f"{str(dynamo_exc)[:200]}") from None
        note = f"ONNX (torch.export-based exporter; the legacy one failed: {str(legacy_exc)[:120]})"
    proto = onnx.load(str(tmp))
    del proto.metadata_props[:]
    for key, value in flat_metadata(export_metadata(ck, temperature_in_graph=True)).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))
    return note


_WRITERS: dict[str, Callable[[dict, nn.Module, Path], str]] = {
    "checkpoint": _write_checkpoint, "safetensors": _write_safetensors,
    "torchscript": _write_torchscript, "onnx": _write_onnx,
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


def _parity_batch(parity_images: Sequence[Any] | None, pre: Preprocessing) -> tuple[torch.Tensor, str]:
    tf = eval_transform(pre)
    tensors, skipped = [], []
    for item in parity_images or []:
        try:
            tensors.append(tf(to_pil(item)))
        except Exception as exc:  # noqa: BLE001 - a bad image only costs coverage, not the export
            skipped.append(f"{item}: {exc}")
    if tensors:
        note = f"parity on {len(tensors)} image(s)"
        if skipped:
            note += f" ({len(skipped)} unreadable skipped: {skipped[0][:120]})"
    else:
        tensors = [tf(im) for im in synthetic_images()]
        why = "none of the given images could be read" if parity_images else "no images given"
        note = f"parity on {len(tensors)} synthetic images ({why})"
    return torch.stack(tensors), note


def _check_written(tmp: Path, fmt: str, batch: torch.Tensor, reference: np.ndarray, expected: dict,
                   tolerance: float, what: str, parity_note: str) -> tuple[float, float]:
    """Load the written file as ``Predictor`` does; its calibrated logits must match ``reference``
    (the PyTorch model's logits / temperature) and its metadata ``expected``: (max abs diff, top-1
    agreement)."""
    loaded = Predictor.load(tmp, fmt=fmt)
    got = loaded.calibrated_logits_from_batch(batch)
    kept = {"classes": loaded.classes, "preprocessing": loaded.preprocessing,
            "calibration": {"temperature": loaded.temperature, "threshold": loaded.threshold}}
    del loaded  # release the file before it is moved into place
    lost = [name for name, value in expected.items() if kept[name] != value]
    if lost:
        raise ExportError(f"{what} did not keep the {' and '.join(lost)}; nothing written")
    diff = float(np.abs(got - reference).max())
    if not diff <= tolerance:
        raise ExportError(f"{what} does not reproduce the PyTorch model: max abs logit difference "
                          f"{diff:.3g} > {tolerance:g} ({parity_note}); nothing written")
    return diff, float((got.argmax(1) == reference.argmax(1)).mean())


# ----------------------------------------------------------------------------- export


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
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
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
    batch, parity_note = _parity_batch(parity_images, pre)
    expected = {"classes": classes, "preprocessing": pre, "calibration": calibration_of(ck, str(source))}
    with torch.inference_mode():
        reference = model(batch).float().numpy() / np.float32(expected["calibration"]["temperature"])
    report(f"writing {fmt}", 0.2)
    try:
        with atomic_path(out) as tmp:
            note = _WRITERS[fmt](ck, model, tmp)
            report("checking the written file", 0.7)
            diff, agree = _check_written(tmp, fmt, batch, reference, expected, tolerance,
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
    message = (f"{note}; {parity_note}: max abs logit difference {diff:.2g}, "
               f"top-1 agreement {agree:.0%}")
    return ExportReport(str(out), fmt, out.stat().st_size, diff, agree, int(batch.shape[0]), message)
