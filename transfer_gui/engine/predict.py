"""Load any export of a trained model and classify images with it.

Accepted: a run folder, an app checkpoint (``.pt``), safetensors with transfer_gui metadata,
TorchScript and ONNX (through onnxruntime). Images go through the same decoding
(:func:`open_image`) and the same deterministic transform (:func:`eval_transform`) as the
app's validation, so predictions here match what the app reported.

Calibration: every probability is ``softmax(logits / temperature)`` with the temperature fitted
after training (1 for a model without one), whatever the format. TorchScript and ONNX exports
have it baked into their graph (their outputs are already divided by it); :meth:`Predictor.logits`
always gives the model's raw logits. Below the stored confidence ``threshold``
:meth:`Predictor.predict_paths` marks a result ``"unsure"``.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, Union

import numpy as np
import torch
from PIL import Image

from transfer_gui.engine.catalog import ModelError
from transfer_gui.engine.checkpoint import (NO_CALIBRATION, TORCHSCRIPT_META, calibration_of, find_checkpoint,
                                            load_checkpoint, metadata_calibration, model_from_checkpoint,
                                            parse_flat_metadata)
from transfer_gui.engine.imageio import IMAGE_EXTENSIONS, ImageError, open_image
from transfer_gui.engine.preprocess import Preprocessing, eval_transform

ImageInput = Union[str, "os.PathLike[str]", Image.Image]
Forward = Callable[[torch.Tensor], np.ndarray]


def decode(path: str | os.PathLike[str], reduce_for: int | None = None) -> Image.Image:
    """:func:`open_image`, with big JPEGs draft-decoded so that the shorter side stays >= ``reduce_for``
    (the preprocessing spec's decode step; give the preprocessing's ``resize_size``)."""
    return open_image(path, reduce_for=reduce_for)


def to_pil(item: ImageInput, reduce_for: int | None = None) -> Image.Image:
    """A path is decoded with :func:`decode`; a PIL image is converted to RGB if needed."""
    if isinstance(item, Image.Image):
        return item if item.mode == "RGB" else item.convert("RGB")
    return decode(item, reduce_for)


def detect_format(path: Path) -> str:
    """"checkpoint", "safetensors", "torchscript" or "onnx", from the name, else the content."""
    name = path.name.lower()
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith(".safetensors"):
        return "safetensors"
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] == b"PK\x03\x04":  # torch.save and TorchScript are both zip archives
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        return "torchscript" if any("/code/" in n or n.endswith("constants.pkl") for n in names) else "checkpoint"
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: 8-byte header length, then JSON
        return "safetensors"
    if head[:1] == b"\x08":  # ONNX protobuf starts with field 1 (ir_version), varint
        return "onnx"
    return "checkpoint"  # old-style pickle; torch.load(weights_only=True) decides


def _torch_forward(model: torch.nn.Module) -> Forward:
    """The model's forward in torch; once a Predictor has run :data:`fastpath.MIN_IMAGES` / 2
    images through it (a folder, not one image), the next full batch picks the fastest exact
    runtime (engine/fastpath.py: ONNX Runtime or channels_last, outputs within 1e-4 of torch's),
    used from then on for every batch size. A small job never pays for an export."""
    from transfer_gui.engine import fastpath

    state: dict[str, Any] = {"seen": 0, "fast": None}

    def run(x: torch.Tensor) -> np.ndarray:
        if state["fast"] is None and state["seen"] >= fastpath.MIN_IMAGES // 2 and len(x) >= 8:
            state["fast"], _runtime, _note = fastpath.fast_forward(model, x)
        if state["fast"] is not None:
            return state["fast"](x).numpy()
        state["seen"] += len(x)
        with torch.inference_mode():
            return model(x).float().numpy()
    return run


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    probs = np.exp(z)
    return probs / probs.sum(axis=1, keepdims=True)


class Predictor:
    """A loaded model with its classes, preprocessing and calibration. Use :meth:`load`.

    ``temperature`` (1.0 when none is stored) divides the logits before every softmax;
    ``threshold`` (0.0 = none) is the confidence below which a result is ``"unsure"``;
    ``temperature_in_graph`` says the loaded graph's outputs are already divided by it.
    """

    def __init__(self, forward: Forward, classes: list[str], preprocessing: Preprocessing, fmt: str,
                 arch: str, path: str, metrics: dict | None = None, calibration: dict | None = None,
                 temperature_in_graph: bool = False) -> None:
        self._forward = forward
        self.classes = list(classes)
        self.preprocessing = preprocessing
        self.format = fmt
        self.arch = arch
        self.path = path
        self.metrics = dict(metrics or {})
        cal = calibration_of({"calibration": dict(calibration or NO_CALIBRATION)}, path)
        self.temperature: float = cal["temperature"]
        self.threshold: float = cal["threshold"]
        self.temperature_in_graph = bool(temperature_in_graph)
        self._transform = eval_transform(preprocessing)

    def __repr__(self) -> str:
        return f"Predictor({self.format}, {self.arch}, {len(self.classes)} classes, {self.path})"

    # ------------------------------------------------------------------------- loading

    @classmethod
    def load(cls, path: str | os.PathLike[str], fmt: str | None = None) -> "Predictor":
        """Load a run folder or any export; ``fmt`` overrides detection from name and content."""
        p = Path(path)
        if p.is_dir():
            p, fmt = find_checkpoint(p), "checkpoint"
        if not p.is_file():
            raise ModelError(f"model file not found: {p}")
        try:
            fmt = fmt or detect_format(p)
        except (OSError, zipfile.BadZipFile) as exc:
            raise ModelError(f"cannot read {p}: {exc}") from None
        loader = {"checkpoint": cls._load_checkpoint, "safetensors": cls._load_safetensors,
                  "torchscript": cls._load_torchscript, "onnx": cls._load_onnx, "onnx-rgb": cls._load_onnx}.get(fmt)
        if loader is None:
            raise ModelError(f"unknown model format {fmt!r} for {p}")
        return loader(p)

    @classmethod
    def _load_checkpoint(cls, p: Path) -> "Predictor":
        ck = load_checkpoint(p)
        model, classes, pre, arch = model_from_checkpoint(ck, str(p))
        return cls(_torch_forward(model), classes, pre, "checkpoint", arch, str(p), ck.get("metrics"),
                   calibration_of(ck, str(p)))

    @classmethod
    def _from_meta(cls, forward: Forward, meta: dict, fmt: str, p: Path) -> "Predictor":
        calibration, in_graph = metadata_calibration(meta, str(p))
        return cls(forward, [str(c) for c in meta["classes"]], Preprocessing.from_dict(meta["preprocessing"]),
                   fmt, str(meta.get("arch", "")), str(p), meta.get("metrics"), calibration, in_graph)

    @classmethod
    def _load_safetensors(cls, p: Path) -> "Predictor":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(p), framework="pt") as fh:
                flat = fh.metadata() or {}
            state = load_file(str(p))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot read safetensors file {p}: {str(exc)[:300]}") from None
        meta = parse_flat_metadata(flat, str(p))
        model, *_ = model_from_checkpoint({**meta, "state_dict": state}, str(p))
        return cls._from_meta(_torch_forward(model), meta, "safetensors", p)

    @classmethod
    def _load_torchscript(cls, p: Path) -> "Predictor":
        import warnings

        files = {TORCHSCRIPT_META: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
                module = torch.jit.load(str(p), map_location="cpu", _extra_files=files)
            meta = json.loads(files[TORCHSCRIPT_META] or "null")
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot read TorchScript file {p}: {str(exc).splitlines()[0][:300]}") from None
        if not isinstance(meta, dict) or "classes" not in meta:
            raise ModelError(f"{p} has no transfer_gui metadata (class names, preprocessing)")
        return cls._from_meta(_torch_forward(module.eval()), meta, "torchscript", p)

    @classmethod
    def _load_onnx(cls, p: Path) -> "Predictor":
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot read ONNX file {p}: {str(exc)[:300]}") from None
        meta = parse_flat_metadata(dict(session.get_modelmeta().custom_metadata_map), str(p))
        input_name = session.get_inputs()[0].name
        if session.get_inputs()[0].type == "tensor(uint8)":  # onnx-rgb: images in, preprocessing inside
            return ImagePredictor._from_meta(_image_session_forward(session, input_name), meta, "onnx-rgb", p)

        def run(x: torch.Tensor) -> np.ndarray:
            return session.run(None, {input_name: np.ascontiguousarray(x.numpy(), dtype=np.float32)})[0]

        return cls._from_meta(run, meta, "onnx", p)

    # ------------------------------------------------------------------------- inference

    def _outputs(self, batch: torch.Tensor) -> np.ndarray:
        return np.asarray(self._forward(batch.float().contiguous()), dtype=np.float32)

    def _prepare(self, image: Image.Image) -> Any:
        """One decoded RGB image as the graph takes it (the preprocessed tensor)."""
        return self._transform(image)

    def _stack(self, items: list) -> Any:
        return torch.stack(items)

    def logits_from_batch(self, batch: torch.Tensor) -> np.ndarray:
        """Raw logits (no temperature) for an already preprocessed ``(N, 3, H, W)`` float batch."""
        out = self._outputs(batch)
        return out * np.float32(self.temperature) if self.temperature_in_graph else out

    def calibrated_logits_from_batch(self, batch: torch.Tensor) -> np.ndarray:
        """Logits divided by the temperature: their softmax is every probability this Predictor gives."""
        out = self._outputs(batch)
        return out if self.temperature_in_graph else out / np.float32(self.temperature)

    def probabilities_from_batch(self, batch: torch.Tensor) -> np.ndarray:
        """``(N, num_classes)`` calibrated probabilities of a preprocessed batch."""
        return softmax(self.calibrated_logits_from_batch(batch))

    def _batches(self, images: Sequence[ImageInput], batch_size: int) -> Iterable[torch.Tensor]:
        step = max(1, batch_size)
        for i in range(0, len(images), step):
            reduce_for = self.preprocessing.resize_size
            yield self._stack([self._prepare(to_pil(im, reduce_for)) for im in images[i:i + step]])

    def logits(self, images: Sequence[ImageInput], batch_size: int = 16) -> np.ndarray:
        """``(N, num_classes)`` raw logits (no temperature); paths are decoded with :func:`open_image`."""
        out = [self.logits_from_batch(b) for b in self._batches(images, batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), dtype=np.float32)

    def probabilities(self, images: Sequence[ImageInput], batch_size: int = 16) -> np.ndarray:
        """``(N, num_classes)`` calibrated probabilities, ``softmax(logits / temperature)``."""
        out = [self.probabilities_from_batch(b) for b in self._batches(images, batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), dtype=np.float32)

    def is_unsure(self, confidence: float) -> bool:
        """Whether a top probability is below the stored threshold (never with threshold 0)."""
        return confidence < self.threshold

    def _top(self, probs: np.ndarray, top_k: int) -> list[list[tuple[str, float]]]:
        k = max(1, min(top_k, len(self.classes)))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.classes[j], float(row[j])) for j in idx] for row, idx in zip(probs, order)]

    def predict(self, images: Sequence[ImageInput], top_k: int = 5,
                batch_size: int = 16) -> list[list[tuple[str, float]]]:
        """For each image the ``top_k`` (class, calibrated probability) pairs, most likely first."""
        return self._top(self.probabilities(images, batch_size), top_k)

    def predict_paths(self, paths_or_dirs: Iterable[str | os.PathLike[str]], top_k: int = 5,
                      batch_size: int = 16) -> list[dict[str, Any]]:
        """Classify files and folders (searched recursively for images) in order.

        Each result is ``{"path", "top": [(class, prob), ...], "unsure": bool}`` (``unsure`` is True
        when the top probability is below :attr:`threshold`) or ``{"path", "error": reason}`` for a
        file that is missing or cannot be decoded.
        """
        results: list[dict[str, Any]] = []
        pending: list[tuple[int, torch.Tensor]] = []

        def flush() -> None:
            if pending:
                tops = self._top(self.probabilities_from_batch(self._stack([t for _, t in pending])), top_k)
                for (i, _), top in zip(pending, tops):
                    results[i]["top"] = top
                    results[i]["unsure"] = self.is_unsure(top[0][1])
                pending.clear()

        for path in expand_paths(paths_or_dirs):
            results.append({"path": str(path)})
            try:
                pending.append((len(results) - 1, self._prepare(decode(path, self.preprocessing.resize_size))))
            except (ImageError, OSError, ValueError) as exc:
                results[-1]["error"] = getattr(exc, "reason", None) or str(exc)
                continue
            if len(pending) >= batch_size:
                flush()
        flush()
        return results


class ImagePredictor(Predictor):
    """An ``onnx-rgb`` export: its graph takes uint8 RGB ``(N, H, W, 3)`` images and preprocesses them
    itself, so a "batch" here is a list of decoded images (each run on its own: sizes differ)."""

    def _prepare(self, image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)

    def _stack(self, items: list) -> list:
        return list(items)

    def _outputs(self, batch: Any) -> np.ndarray:
        if isinstance(batch, torch.Tensor):
            raise ModelError(f"{self.path} takes uint8 RGB images, not preprocessed tensors")
        return np.concatenate([np.asarray(self._forward(im[None]), dtype=np.float32) for im in batch])


def _image_session_forward(session: Any, input_name: str) -> Callable[[np.ndarray], np.ndarray]:
    def run(images: np.ndarray) -> np.ndarray:
        return session.run(["logits"], {input_name: np.ascontiguousarray(images, dtype=np.uint8)})[0]
    return run


def expand_paths(paths_or_dirs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; folders replaced by their image files (recursive, sorted, hidden skipped)."""
    out: list[Path] = []
    for item in paths_or_dirs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()
                              and not any(part.startswith(".") for part in f.relative_to(p).parts)))
        else:
            out.append(p)  # a missing file becomes an "error" entry, not an exception
    return out
