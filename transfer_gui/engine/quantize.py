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
import shutil
import tempfile
from dataclasses import dataclass, field, replace
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
    recipe: str = ""  # the Recipe.name the file was made with
    tried: tuple = ()  # every recipe tried, in order: {"recipe", "drop_points", "agreement", "good"}

    @property
    def good(self) -> bool:
        """Whether the file may stand in for fp32 (:func:`acceptable`)."""
        return acceptable(self.__dict__)

    def verdict(self) -> str:
        """One sentence: whether to use the int8 file, and why."""
        limit = allowed_drop(self.images)
        if self.good:
            allowed = (f"{MAX_DROP_POINTS:g} point" if limit <= MAX_DROP_POINTS
                       else f"one image of {self.images}, {limit:.1f} points")
            lost = (f"loses {self.accuracy_drop:.1f} points of validation accuracy (allowed: {allowed})"
                    if self.accuracy_drop > 0.05 else "loses no validation accuracy")
            return (f"int8 {lost} and agrees with fp32 on {self.agreement:.1%} of the images "
                    f"(recipe {self.recipe}): fine to use.")
        lost = (f"loses {self.accuracy_drop:.1f} points of validation accuracy" if self.accuracy_drop > limit
                else f"changes the top-1 class of {1 - self.agreement:.1%} of the validation images")
        return (f"int8 {lost} against fp32 with the best of {len(self.tried)} recipe(s) tried ({self.recipe}); "
                f"not recommended: use the fp32 ONNX file unless size or speed matter more.")

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
            f"calibrated on {self.calibration_images} training images, recipe {self.recipe or DEFAULT.name}"
            + (" (tried: " + ", ".join(f"{t['recipe']} " + (f"{-t['drop_points']:+.1f}" if "drop_points" in t else "failed")
                                   for t in self.tried) + ")"
               if len(self.tried) > 1 else "") + "; int8 ops: "
            + ", ".join(f"{op} x{n}" for op, n in sorted(self.quantized_ops.items()))
            + ("; float ops: " + ", ".join(f"{op} x{n}" for op, n in sorted(self.float_ops.items()))
               if self.float_ops else ""),
            self.verdict(),
        ]


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MB"


# ----------------------------------------------------------------------------- the run's images


def _spread(items: list, n: int) -> list:
    """At most ``n`` of ``items``, evenly spaced (deterministic)."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def run_images(ck: dict, source: str, calibration_images: int = CALIBRATION_IMAGES
               ) -> tuple[list[str], list[str], list[int]]:
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
    calib = [s.path for s in _interleave(by_class, len(split.classes), calibration_images)]
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


def even_batches(batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """The images of ``batches`` in batches of one size, the largest from :data:`BATCH` down to 8
    that leaves none over (else :data:`BATCH`, the last few left out): onnxruntime's histogram
    calibrators (percentile, entropy) stack each tensor's batches and fail on a short last one."""
    images = torch.cat(batches) if batches else torch.empty(0)
    n = len(images)
    size = next((b for b in range(BATCH, 7, -1) if n % b == 0), min(BATCH, n) or 1)
    return [images[i:i + size] for i in range(0, n - n % size, size)]


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


@dataclass(frozen=True)
class Recipe:
    """How a float graph is quantised: the calibration method (``minmax``, ``percentile`` at
    :data:`PERCENTILE`, ``entropy``), per-channel or per-tensor weights, QDQ or QOperator, 7-bit
    weights (``reduce_range``; None: only where the CPU lacks VNNI), and what stays float besides
    the head and the shape arithmetic: the stem (the first Conv) and ``float_nodes`` by name."""

    name: str
    calibration: str = "minmax"
    per_channel: bool = True
    qoperator: bool = False
    reduce_range: bool | None = None
    float_stem: bool = False
    float_nodes: tuple[str, ...] = ()

    def with_float(self, nodes: Sequence[str], name: str) -> "Recipe":
        return replace(self, name=name, float_nodes=tuple(nodes))

    def described(self, calibration_images: int) -> dict:
        """The recipe as the int8 file's metadata records it."""
        return {"recipe": self.name, "scheme": "static " + ("QOperator" if self.qoperator else "QDQ"),
                "weights": "int8 " + ("per channel" if self.per_channel else "per tensor"),
                "activations": "uint8", "calibration": self.calibration,
                "calibration_images": calibration_images, "reduce_range": self._reduce_range(),
                "float_stem": self.float_stem, "float_nodes": list(self.float_nodes)}

    def _reduce_range(self) -> bool:
        return (not has_vnni()) if self.reduce_range is None else self.reduce_range


DEFAULT = Recipe("minmax")

LADDER = (DEFAULT,)  # percentile/entropy: no better where measured, 3-10x slower, 13+ GB at 224 px
FLOAT_STEPS = (1, 3, 8)  # noisiest activations kept float, in turn, after LADDER
MAX_DROP_POINTS = 1.0  # validation accuracy an int8 file may lose against fp32 (issue #23)
MIN_AGREEMENT = 0.90  # and the share of images whose top-1 class it must keep

PERCENTILE = 99.99  # percentile calibration keeps this share of each activation's values in range


def stem(model) -> list[str]:
    """The name of the graph's first Conv (the stem), which sees the normalised image itself."""
    return [n.name for n in model.graph.node if n.op_type == "Conv"][:1]


def _prepare(fp32_path: Path, work: Path):
    """quant_pre_process'ed copy of ``fp32_path`` in ``work`` with every node named: (path, model)."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = work / "prepared.onnx"
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
    model = onnx.load(str(prepared))
    _name_nodes(model)
    onnx.save(model, str(prepared))
    return prepared, model


def _quantize_prepared(prepared: Path, model, out: Path, calibration: list[torch.Tensor], recipe: Recipe,
                       done: Callable[[float], None]) -> None:
    """quantize_static of a prepared graph with ``recipe``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if recipe.calibration not in methods:
        raise QuantizeError(f"unknown calibration {recipe.calibration!r}; choose one of {', '.join(methods)}")
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if recipe.calibration == "percentile":
        extra.update(CalibPercentile=PERCENTILE)
    keep = kept_float(model) + (stem(model) if recipe.float_stem else []) + list(recipe.float_nodes)
    quantize_static(str(prepared), str(out), _Reader(model.graph.input[0].name, calibration, done),
                    quant_format=QuantFormat.QOperator if recipe.qoperator else QuantFormat.QDQ,
                    per_channel=recipe.per_channel, reduce_range=recipe._reduce_range(),
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=list(dict.fromkeys(keep)), calibrate_method=methods[recipe.calibration],
                    extra_options=extra)


def _copy_metadata(fp32_path: Path, int8_path: Path, out_path: Path, how: dict) -> None:
    """Write ``int8_path`` to ``out_path`` with the fp32 file's metadata and ``quantization``."""
    import onnx

    int8 = onnx.load(str(int8_path))
    meta = {p.key: p.value for p in onnx.load(str(fp32_path)).metadata_props}
    meta["quantization"] = json.dumps(how)
    del int8.metadata_props[:]
    for key, value in meta.items():
        entry = int8.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(int8, str(out_path))


def quantize_onnx(fp32_path: Path, out_path: Path, calibration: list[torch.Tensor],
                  done: Callable[[float], None] = lambda fraction: None, recipe: Recipe | None = None) -> None:
    """Write the static int8 version of ``fp32_path`` to ``out_path``, calibrated on the
    ``calibration`` batches with ``recipe`` (default :data:`DEFAULT`); the fp32 file's metadata
    goes with it, plus how it was quantised."""
    recipe = recipe or DEFAULT
    calibration = even_batches(calibration)
    with tempfile.TemporaryDirectory(prefix="transfer_gui_int8_") as work:
        prepared, model = _prepare(fp32_path, Path(work))
        _quantize_prepared(prepared, model, Path(work) / "int8.onnx", calibration, recipe, done)
        _copy_metadata(fp32_path, Path(work) / "int8.onnx", out_path,
                       recipe.described(sum(len(b) for b in calibration)))


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


def _check_metadata(fp32_path: Path, int8_path: Path) -> None:
    """The int8 file must carry the fp32 file's classes, preprocessing and calibration."""
    fp32, int8 = Predictor.load(fp32_path, fmt="onnx"), Predictor.load(int8_path, fmt="onnx")
    same = ("classes", "preprocessing", "temperature", "threshold", "temperature_in_graph")
    lost = [name for name in same if getattr(fp32, name) != getattr(int8, name)]
    if lost:
        raise QuantizeError(f"the int8 file lost the {', '.join(lost)} of the fp32 one; nothing written")


def top1(path: Path, batches: list[torch.Tensor]) -> np.ndarray:
    """The top-1 class index of every image in ``batches`` by the ONNX file at ``path``."""
    return _logits(Predictor.load(path, fmt="onnx"), batches).argmax(1)


def accuracy_figures(fp32_top1: np.ndarray, int8_top1: np.ndarray, labels: np.ndarray) -> dict:
    return {"images": int(len(labels)), "agreement": float((fp32_top1 == int8_top1).mean()),
            "fp32_accuracy": float((fp32_top1 == labels).mean()), "int8_accuracy": float((int8_top1 == labels).mean())}


def compare(fp32_path: Path, int8_path: Path, batches: list[torch.Tensor], labels: np.ndarray,
            threads: int | None = None) -> dict:
    """Agreement, both accuracies and both latencies of two ONNX files on preprocessed batches;
    the int8 file must carry the fp32 file's classes, preprocessing and calibration."""
    _check_metadata(fp32_path, int8_path)
    figures = accuracy_figures(top1(fp32_path, batches), top1(int8_path, batches), labels)
    return {**figures, **latencies(fp32_path, int8_path, threads)}


def latencies(fp32_path: Path, int8_path: Path, threads: int | None = None) -> dict:
    threads = int(threads or measure.default_threads())
    return {"fp32_ms": measure.latency(fp32_path, threads, fmt="onnx").median_ms,
            "int8_ms": measure.latency(int8_path, threads, fmt="onnx").median_ms, "threads": threads}


# ----------------------------------------------------------------------------- the verdict and the search


def allowed_drop(images: int) -> float:
    """The accuracy an int8 file may lose, in points: :data:`MAX_DROP_POINTS`, or one validation
    image where the set is so small that one image is worth more (the least the check can see)."""
    return max(MAX_DROP_POINTS, 100.0 / images) if images else MAX_DROP_POINTS


def min_agreement(images: int) -> float:
    """The share of validation images whose top-1 class an int8 file must keep: :data:`MIN_AGREEMENT`,
    or all but one image where the set is too small for that (the least the check can see)."""
    return min(MIN_AGREEMENT, 1.0 - 1.0 / images) if images else MIN_AGREEMENT


def acceptable(figures: dict) -> bool:
    """Whether an int8 file may stand in for fp32: it loses at most :func:`allowed_drop` points of
    validation accuracy and keeps fp32's top-1 class on :func:`min_agreement` of the images."""
    drop = 100.0 * (figures["fp32_accuracy"] - figures["int8_accuracy"])
    return drop <= allowed_drop(figures["images"]) + 1e-9 and figures["agreement"] >= min_agreement(figures["images"]) - 1e-9


def noisiest_tensors(qdq_path: Path, batches: list[torch.Tensor]) -> list[tuple[str, float]]:
    """The activations a QDQ file quantises, noisiest first: (tensor name, signal-to-noise ratio in
    dB of its QuantizeLinear/DequantizeLinear round trip over ``batches``). The float value is
    first clipped to the 8-bit range, because a ReLU/Clip the quantiser folded into the range
    leaves the unclipped tensor behind, and that clip is the graph's, not quantisation noise."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(qdq_path))
    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    ranges = {}
    for n in graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in consts and len(n.input) == 3:
            scale, zero = float(consts[n.input[1]]), float(consts[n.input[2]])
            ranges[n.output[0]] = (n.input[0], scale * (0 - zero), scale * (255 - zero))
    pairs = {n.output[0]: ranges[n.input[0]] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in ranges}
    names = sorted(set(pairs) | {t for t, _, _ in pairs.values()})
    have = {o.name for o in graph.output}
    graph.output.extend(onnx.ValueInfoProto(name=t) for t in names if t not in have)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    for batch in batches:
        values = dict(zip(names, session.run(names, {graph.input[0].name: batch.numpy()})))
        for dq, (t, low, high) in pairs.items():
            ref = np.clip(values[t].astype(np.float64), low, high)
            signal[t] = signal.get(t, 0.0) + float(np.square(ref).sum())
            noise[t] = noise.get(t, 0.0) + float(np.square(ref - values[dq]).sum())
    sqnr = {t: 10 * np.log10(max(signal[t], 1e-30) / max(noise[t], 1e-30)) for t in signal}
    return sorted(sqnr.items(), key=lambda item: item[1])


def nodes_touching(model, tensors: Sequence[str]) -> list[str]:
    """The names of the nodes of ``model`` that produce or read any of ``tensors``: what must stay
    float for those tensors never to be quantised."""
    wanted = set(tensors)
    return [n.name for n in model.graph.node if wanted & (set(n.input) | set(n.output))]


@dataclass
class Search:
    """What :func:`search` wrote: the recipe used, its figures, and every recipe tried with its drop."""

    recipe: Recipe
    figures: dict
    tried: list[dict]

    @property
    def good(self) -> bool:
        return acceptable(self.figures)


def _try(fp32: Path, work: Path, calibration, recipe: Recipe, reference: np.ndarray, validation, labels,
         tried: list[dict]) -> tuple[Path, dict]:
    path = work / f"attempt{len(tried)}.onnx"
    quantize_onnx(fp32, path, calibration, recipe=recipe)
    figures = accuracy_figures(reference, top1(path, validation), labels)
    tried.append({"recipe": recipe.name, "drop_points": round(100 * (figures["fp32_accuracy"] - figures["int8_accuracy"]), 2),
                  "agreement": round(figures["agreement"], 4), "good": acceptable(figures)})
    return path, figures


def search(fp32: Path, out: Path, calibration: list[torch.Tensor], validation: list[torch.Tensor],
           labels: np.ndarray, threads: int | None = None,
           progress: Callable[[str, float], None] = lambda stage, fraction: None) -> Search:
    """Quantise ``fp32`` with the recipes of :data:`LADDER` in order, then with the noisiest
    activations of the first recipe left float (:data:`FLOAT_STEPS` of them), until one is
    :func:`acceptable`, and write it to ``out``; when none is, write the one that lost least (then
    ``Search.good`` is False). Why: the first recipe is fine for most runs and the fastest to find."""
    reference = top1(fp32, validation)
    tried: list[dict] = []
    best: tuple[float, Path, dict, Recipe] | None = None
    with tempfile.TemporaryDirectory(prefix="transfer_gui_int8_") as tmp:
        work = Path(tmp)
        for step, recipe in enumerate(_recipes(fp32, work, calibration)):
            progress(f"quantising with recipe {recipe.name}", step)
            try:
                path, figures = _try(fp32, work, calibration, recipe, reference, validation, labels, tried)
            except Exception as exc:  # noqa: BLE001 - a fallback onnxruntime cannot apply is skipped, said
                if best is None:
                    raise
                tried.append({"recipe": recipe.name, "error": f"{type(exc).__name__}: {str(exc)[:200]}", "good": False})
                continue
            rank = (figures["fp32_accuracy"] - figures["int8_accuracy"]) - 1e-3 * figures["agreement"]
            if best is None or rank < best[0]:
                best = (rank, path, figures, recipe)
            if acceptable(figures):
                break
        _, path, figures, recipe = best
        _check_metadata(fp32, path)
        shutil.copyfile(path, out)
    return Search(recipe, {**figures, **latencies(fp32, out, threads)}, tried)


def _recipes(fp32: Path, work: Path, calibration: list[torch.Tensor]):
    """:data:`LADDER`'s recipes, then the first one with the noisiest activations left float
    (measured on the first recipe's file, which the search wrote as ``attempt0.onnx``)."""
    yield from LADDER
    noisy = [name for name, _ in noisiest_tensors(work / "attempt0.onnx", calibration[:4])]
    with tempfile.TemporaryDirectory(prefix="transfer_gui_int8_") as tmp:
        _, model = _prepare(fp32, Path(tmp))
    for k in FLOAT_STEPS:
        yield LADDER[0].with_float(nodes_touching(model, noisy[:k]), f"{LADDER[0].name}+{k} noisiest float")


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
    n_calib = sum(len(b) for b in even_batches(calibration))
    with tempfile.TemporaryDirectory(prefix="transfer_gui_int8_") as work:
        fp32 = Path(work) / "fp32.onnx"
        report("writing the fp32 ONNX graph", 0.1)
        write_fp32(fp32)
        steps = len(LADDER) + len(FLOAT_STEPS)
        try:
            with atomic_path(out) as tmp:
                found = search(fp32, tmp, calibration, validation, np.asarray(labels)[kept], threads,
                               lambda stage, step: report(f"{stage}: calibrating on {n_calib} training images, "
                                                          f"comparing on the validation images", 0.15 + 0.8 * step / steps))
                quant, flt = op_counts(tmp)
        except OSError as exc:
            raise QuantizeError(f"cannot write {out}: {exc.strerror or exc}. Any previous file there is "
                                f"unchanged.") from None
        fp32_bytes = fp32.stat().st_size
    report("done", 1.0)
    return QuantReport(**found.figures, fp32_bytes=fp32_bytes, int8_bytes=out.stat().st_size,
                       calibration_images=n_calib, quantized_ops=quant, float_ops=flt,
                       recipe=found.recipe.name, tried=tuple(found.tried))


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
