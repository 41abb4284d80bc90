"""The ``onnx-int8`` export: the fp32 ONNX graph statically quantised with onnxruntime's tools, and
the comparison that says whether it may replace the fp32 file.

How: :func:`onnxruntime.quantization.shape_inference.quant_pre_process` (shape inference and
graph optimisation), then :func:`onnxruntime.quantization.quantize_static` in QDQ format with
per-channel int8 weights and uint8 activations, calibrated (min/max) on up to
:data:`CALIBRATION_IMAGES` of the run's **training** images, spread evenly over the classes.
The split is rebuilt from the config stored in the checkpoint (``data.build_split`` with the
run's seed), so calibration never sees the validation images it is judged on. The last layer
(the head) stays float: its output is the logits themselves, and 8-bit logits would coarsen
every probability for almost no saving.

The check of an int8 file is not the fp32 formats' logit parity (int8 cannot reproduce logits
to 1e-4) but a :class:`QuantReport`: on the run's validation set, how often the int8 file's top
class is the fp32 file's (agreement) and both files' accuracy, with both files' sizes and
latencies at batch 1 (:mod:`transfer_gui.engine.measure`). The report exists before the file is
final: the window writes the int8 file to a pending name beside the target (:func:`pending_path`)
and moves it into place only when the user keeps it (:func:`keep`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from transfer_gui import config as config_mod
from transfer_gui.atomic import atomic_path
from transfer_gui.errors import UserError
from transfer_gui.engine import measure
from transfer_gui.engine.predict import Predictor, to_pil
from transfer_gui.engine.preprocess import Preprocessing, eval_transform

CALIBRATION_IMAGES = 200
COMPARE_IMAGES = 1000  # validation images compared at most (evenly spread when there are more)
BATCH = 16
PENDING_SUFFIX = ".pending"
ProgressFn = Callable[[str, float], None]


class QuantizeError(UserError):
    """An int8 export that could not be made; the message names the file or what is missing."""


@dataclass(frozen=True)
class QuantReport:
    """int8 against fp32 on the run's validation set, sizes in bytes, latencies in ms per image."""

    images: int
    agreement: float  # share of validation images whose int8 top-1 class is the fp32 one
    fp32_accuracy: float
    int8_accuracy: float
    fp32_bytes: int
    int8_bytes: int
    fp32_ms: float
    int8_ms: float
    threads: int
    calibration_images: int
    quantized_ops: dict[str, int] = field(default_factory=dict)  # op type -> nodes running in int8
    float_ops: dict[str, int] = field(default_factory=dict)  # op type -> nodes left in float

    @property
    def accuracy_drop(self) -> float:
        """fp32 minus int8 validation accuracy, in percentage points."""
        return 100.0 * (self.fp32_accuracy - self.int8_accuracy)

    @property
    def size_ratio(self) -> float:
        return self.int8_bytes / self.fp32_bytes if self.fp32_bytes else float("nan")

    def lines(self) -> list[str]:
        """The comparison in words, for the command line and the window alike."""
        return [
            f"int8 vs fp32 on {self.images} validation images: top-1 agreement {self.agreement:.1%}",
            f"validation accuracy: fp32 {self.fp32_accuracy:.1%}, int8 {self.int8_accuracy:.1%} "
            f"({-self.accuracy_drop:+.1f} points)",
            f"size: fp32 {_mb(self.fp32_bytes)}, int8 {_mb(self.int8_bytes)} ({self.size_ratio:.2f}x)",
            f"latency per image (batch 1, median of {measure.RUNS}, {self.threads} thread(s)): "
            f"fp32 {self.fp32_ms:.1f} ms, int8 {self.int8_ms:.1f} ms",
            f"calibrated on {self.calibration_images} training images; int8 ops: "
            + ", ".join(f"{op} x{n}" for op, n in sorted(self.quantized_ops.items()))
            + ("; float ops: " + ", ".join(f"{op} x{n}" for op, n in sorted(self.float_ops.items()))
               if self.float_ops else ""),
        ]


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MB"


# ----------------------------------------------------------------------------- the run's images


def _spread(items: list, n: int) -> list:
    """At most ``n`` of ``items``, evenly spaced (deterministic)."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def run_images(ck: dict, source: str) -> tuple[list[str], list[str], list[int]]:
    """From the checkpoint's stored config: (calibration paths from the training set, validation
    paths, their labels in the checkpoint's class order), the split rebuilt with the run's seed."""
    from transfer_gui.engine.data import build_split

    text = ck.get("config")
    try:
        cfg = config_mod.loads(text, f"{source} (its stored config)") if isinstance(text, str) else None
    except config_mod.ConfigError as exc:
        raise QuantizeError(f"onnx-int8 needs the run's images: {exc}") from None
    if cfg is None or not cfg.data.folders:
        raise QuantizeError(f"onnx-int8 needs the run's training images to calibrate on, and {source} stores no "
                            f"data folders; export it from its run folder")
    try:
        split = build_split(cfg.data, cfg.train.seed)
    except UserError as exc:
        raise QuantizeError(f"onnx-int8 needs the run's training images to calibrate on: {exc}") from None
    at = {name: i for i, name in enumerate(ck["classes"])}
    if not split.train or not split.val or any(c not in at for c in split.classes):
        raise QuantizeError(f"onnx-int8: the data folders of {source} ({', '.join(cfg.data.folders)}) no longer "
                            f"hold the run's training and validation images of its classes")
    by_class = sorted(split.train, key=lambda s: (s.path, s.label))
    calib = [s.path for s in _interleave(by_class, len(split.classes), CALIBRATION_IMAGES)]
    val = _spread(sorted(split.val, key=lambda s: s.path), COMPARE_IMAGES)
    return calib, [s.path for s in val], [at[split.classes[s.label]] for s in val]


def _interleave(samples: list, n_classes: int, n: int) -> list:
    """Up to ``n`` samples taken round-robin over the classes, so each class is calibrated on."""
    per = [[s for s in samples if s.label == c] for c in range(n_classes)]
    out: list = []
    while len(out) < n and any(per):
        for group in per:
            if group and len(out) < n:
                out.append(group.pop(0))
    return out


def _batches(paths: Sequence[str], pre: Preprocessing) -> tuple[list[torch.Tensor], list[int]]:
    """The readable ones of ``paths`` preprocessed as the app validates, in batches, and their
    indices in ``paths`` (an unreadable image costs coverage, not the export)."""
    tf = eval_transform(pre)
    tensors, kept = [], []
    for i, path in enumerate(paths):
        try:
            tensors.append(tf(to_pil(path, pre.resize_size)))  # decoded as predict decodes
        except Exception:  # noqa: BLE001 - the scanner did not decode; skip what does not
            continue
        kept.append(i)
    return [torch.stack(tensors[i:i + BATCH]) for i in range(0, len(tensors), BATCH)], kept


# ----------------------------------------------------------------------------- quantisation


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over preprocessed batches."""

    def __init__(self, input_name: str, batches: list[torch.Tensor], done: Callable[[float], None]):
        self._feeds = [{input_name: b.numpy()} for b in batches]
        self._next = 0
        self._done = done

    def get_next(self) -> dict | None:
        if self._next >= len(self._feeds):
            return None
        self._done(self._next / len(self._feeds))
        self._next += 1
        return self._feeds[self._next - 1]


def has_vnni() -> bool:
    """Whether this CPU has 8-bit dot-product instructions (AVX512-VNNI or AVX-VNNI): without them
    onnxruntime's u8s8 kernels can saturate, and weights are quantised to 7 bits (reduce_range)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags or "asimddp" in flags


def kept_float(model) -> list[str]:
    """The names of the nodes left in float: the graph's last Gemm/MatMul (the head), and the
    shape arithmetic, nodes whose every non-constant input comes from a ``Shape`` (timm's TF-style
    "same" padding computes its pads at run time in float; quantised, the pads themselves would
    be rounded to the calibration's 8-bit grid)."""
    graph = model.graph
    constant = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    derived: set[str] = set()
    names = []
    for n in graph.node:  # topological order
        inputs = [i for i in n.input if i and i not in constant]
        if n.op_type == "Shape" or (inputs and all(i in derived for i in inputs)):
            derived.update(n.output)
            names.append(n.name)
    heads = [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    return names + heads[-1:]


def _name_nodes(model) -> None:
    """Give every unnamed node a name, so that nodes can be kept float by name."""
    taken = {n.name for n in model.graph.node}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            n.name = next(f"{n.op_type}_{i}_{k}" for k in range(len(taken) + 1) if f"{n.op_type}_{i}_{k}" not in taken)
            taken.add(n.name)


def quantize_onnx(fp32_path: Path, out_path: Path, calibration: list[torch.Tensor],
                  done: Callable[[float], None] = lambda fraction: None) -> None:
    """Write the static QDQ int8 version of ``fp32_path`` to ``out_path``, calibrated on the
    ``calibration`` batches; the fp32 file's metadata goes with it, plus how it was quantised."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="transfer_gui_int8_") as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
        model = onnx.load(str(prepared))
        _name_nodes(model)
        onnx.save(model, str(prepared))
        input_name = model.graph.input[0].name
        quantize_static(str(prepared), str(Path(work) / "int8.onnx"), _Reader(input_name, calibration, done),
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=not has_vnni(),
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=kept_float(model), calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        int8 = onnx.load(str(Path(work) / "int8.onnx"))
    meta = {p.key: p.value for p in onnx.load(str(fp32_path)).metadata_props}
    meta["quantization"] = json.dumps({"scheme": "static QDQ", "weights": "int8 per channel",
                                       "activations": "uint8", "calibration_images": sum(len(b) for b in calibration),
                                       "reduce_range": not has_vnni()})
    del int8.metadata_props[:]
    for key, value in meta.items():
        entry = int8.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(int8, str(out_path))


def op_counts(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(op type -> nodes that run in int8, op type -> nodes left in float) of a QDQ file. A node
    runs in int8 when its inputs come from DequantizeLinear and its output goes to a
    QuantizeLinear (onnxruntime then fuses the three into one int8 kernel); Q/DQ nodes themselves,
    constants and Shape are not counted."""
    import onnx

    graph = onnx.load(str(path)).graph
    dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    quantizing = {i for n in graph.node if n.op_type == "QuantizeLinear" for i in n.input[:1]}
    quant: dict[str, int] = {}
    flt: dict[str, int] = {}
    for n in graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant", "Shape"):
            continue
        int8 = any(i in dequantized for i in n.input) and any(o in quantizing for o in n.output)
        bucket = quant if int8 else flt
        bucket[n.op_type] = bucket.get(n.op_type, 0) + 1
    return quant, flt


# ----------------------------------------------------------------------------- the export


def _logits(predictor: Predictor, batches: list[torch.Tensor]) -> np.ndarray:
    return np.concatenate([predictor.calibrated_logits_from_batch(b) for b in batches])


def compare(fp32_path: Path, int8_path: Path, batches: list[torch.Tensor], labels: np.ndarray,
            threads: int | None = None) -> dict:
    """Agreement, both accuracies and both latencies of two ONNX files on preprocessed batches;
    the int8 file must carry the fp32 file's classes, preprocessing and calibration."""
    fp32, int8 = Predictor.load(fp32_path, fmt="onnx"), Predictor.load(int8_path, fmt="onnx")
    same = ("classes", "preprocessing", "temperature", "threshold", "temperature_in_graph")
    lost = [name for name in same if getattr(fp32, name) != getattr(int8, name)]
    if lost:
        raise QuantizeError(f"the int8 file lost the {', '.join(lost)} of the fp32 one; nothing written")
    a, b = _logits(fp32, batches).argmax(1), _logits(int8, batches).argmax(1)
    del fp32, int8
    threads = int(threads or measure.default_threads())
    return {"images": int(len(labels)), "agreement": float((a == b).mean()),
            "fp32_accuracy": float((a == labels).mean()), "int8_accuracy": float((b == labels).mean()),
            "fp32_ms": measure.latency(fp32_path, threads, fmt="onnx").median_ms,
            "int8_ms": measure.latency(int8_path, threads, fmt="onnx").median_ms, "threads": threads}


def export_int8(ck: dict, source: str, out: Path, write_fp32: Callable[[Path], object],
                progress: ProgressFn | None = None, threads: int | None = None) -> QuantReport:
    """Write the int8 export of checkpoint ``ck`` (read from ``source``) to ``out`` atomically:
    ``write_fp32(path)`` writes the fp32 ONNX graph it starts from. Returns the comparison."""
    report = progress or (lambda stage, fraction: None)
    pre = Preprocessing.from_dict(ck["preprocessing"])
    report("reading the run's training and validation images", 0.02)
    calib_paths, val_paths, labels = run_images(ck, source)
    calibration, _ = _batches(calib_paths, pre)
    validation, kept = _batches(val_paths, pre)
    if not calibration or not validation:
        raise QuantizeError(f"onnx-int8: none of the run's {'training' if not calibration else 'validation'} "
                            f"images could be read (first: {(calib_paths or val_paths)[0]})")
    n_calib = sum(len(b) for b in calibration)
    with tempfile.TemporaryDirectory(prefix="transfer_gui_int8_") as work:
        fp32 = Path(work) / "fp32.onnx"
        report("writing the fp32 ONNX graph", 0.1)
        write_fp32(fp32)
        try:
            with atomic_path(out) as tmp:
                quantize_onnx(fp32, tmp, calibration,
                              lambda f: report(f"calibrating on {n_calib} training images", 0.2 + 0.5 * f))
                report("comparing int8 with fp32 on the validation images", 0.75)
                figures = compare(fp32, tmp, validation, np.asarray(labels)[kept], threads)
                quant, flt = op_counts(tmp)
        except OSError as exc:
            raise QuantizeError(f"cannot write {out}: {exc.strerror or exc}. Any previous file there is "
                                f"unchanged.") from None
        fp32_bytes = fp32.stat().st_size
    report("done", 1.0)
    return QuantReport(**figures, fp32_bytes=fp32_bytes, int8_bytes=out.stat().st_size,
                       calibration_images=n_calib, quantized_ops=quant, float_ops=flt)


def pending_path(target: str | os.PathLike[str]) -> Path:
    """Where the window writes an int8 export until the user keeps it: beside ``target``."""
    target = Path(target)
    return target.with_name(target.name + PENDING_SUFFIX)


def keep(pending: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Move a pending int8 export into place (atomically, replacing any file there)."""
    try:
        os.replace(pending, target)
    except OSError as exc:
        raise QuantizeError(f"cannot move {pending} to {target}: {exc.strerror or exc}") from None
    return Path(target)


def discard(pending: str | os.PathLike[str]) -> None:
    """Remove a pending int8 export (the file it would have replaced was never touched)."""
    Path(pending).unlink(missing_ok=True)
