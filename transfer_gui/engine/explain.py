"""Heat maps of where a prediction looked: Grad-CAM on the layer that the model's last spatial
features come out of (Score-CAM for nets with squeeze-excite gates), for the predicted class or
any other, drawn over the image the user sees.

* The target layer is found from the model itself (:func:`find_target_layer`): a probe
  forward records every module's output in the order the modules finish; the spatial ones are
  a CNN's ``N x C x h x w`` maps, Swin's channels-last ``N x h x w x C`` maps, and a
  transformer's ``N x (prefix + h*w) x D`` token sequences (the class token and other prefix
  tokens cut off, the rest reshaped into the ``h x w`` grid). The last of them whose grid
  still reaches the class score wins: the last convolutional stage of a CNN, Swin's final norm,
  and for a ViT, which reads only its class token, the last block's first norm (after it,
  the patch tokens no longer change the score).
* Grad-CAM: the gradient of the class score, averaged over the grid, weights the channels;
  the weighted sum, with negatives cut to 0, scaled to [0, 1], is the map. On a token grid
  each token's own gradient weights its own channels (gradient times activation, summed over
  channels): through attention every token has a gradient of its own, and their mean over the
  grid, dominated by the background's tokens, picked out the background on a small trained ViT
  (2 % of peaks on the object, against 100 % per token).
* Score-CAM for nets with squeeze-excite gates (MobileNet-V3, EfficientNet, RegNetY, SE-ResNet:
  :func:`choose_method`): each channel of the last map before the first gated block, as a mask
  on the input, is weighted by the class's softmax score on the masked input. Grad-CAM's map of
  such a net spread over the background (56-72 % of peaks on the object in the quadrant test,
  against 91-100 % for Score-CAM; tests/test_explain_families.py); ``explain(..., method=)``
  forces either, and :attr:`Explanation.method` says which made a map.
* The map is computed on the model's own input (the eval transform of prediction:
  ``preprocess.eval_transform``) and mapped back through the centre crop and the resize onto
  the original image's pixels; what the crop cut away is 0.

Needs an ``nn.Module``: a run folder, an app checkpoint or a safetensors export.
TorchScript and ONNX files raise :class:`ExplainError`.
"""

from __future__ import annotations

import math
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from transfer_gui.atomic import atomic_write_with
from transfer_gui.engine import surgery
from transfer_gui.engine.catalog import ModelError
from transfer_gui.engine.checkpoint import (calibration_of, find_checkpoint, load_checkpoint, metadata_calibration,
                                            model_from_checkpoint, parse_flat_metadata)
from transfer_gui.engine.imageio import ImageError, open_image
from transfer_gui.engine.predict import ImageInput, detect_format, to_pil
from transfer_gui.engine.preprocess import Preprocessing, eval_transform
from transfer_gui.errors import UserError

NEEDS_MODULE = "heat maps need the run folder, .pt or .safetensors file"
_MAX_PREFIX = 8  # class, distillation and register tokens before a transformer's patch tokens
_CANDIDATES_CHECKED = 24  # the last spatial outputs whose gradient is looked at
METHODS = ("gradcam", "scorecam")
METHOD_NAMES = {"gradcam": "Grad-CAM", "scorecam": "Score-CAM"}  # as the window, the CLI and the report say them
SCORECAM_CHANNELS = 64  # the channels of the target layer that Score-CAM masks the input with, at most
SCORECAM_CHUNK = 32  # masked inputs per forward pass
# Squeeze-excite gates (timm's SqueezeExcite and SEModule, torchvision's SqueezeExcitation), told by
# their class names so that checking a model imports neither library.
_GATE_NAMES = frozenset({"SqueezeExcite", "SEModule", "EffectiveSEModule", "SqueezeExcitation"})


class ExplainError(UserError, ValueError):
    """A heat map cannot be made from this file or for this class; the message says what to use."""


@dataclass
class Explainable:
    """What a heat map needs: the module, its class names, its preprocessing and calibration."""
    model: nn.Module
    classes: list[str]
    preprocessing: Preprocessing
    temperature: float = 1.0
    arch: str = ""
    path: str = ""


@dataclass(frozen=True)
class Target:
    """The layer a heat map is read from, and how its output holds the grid."""
    name: str
    layout: str  # "nchw", "nhwc" or "tokens"
    prefix: int = 0  # tokens before the grid (layout "tokens")
    grid: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Explanation:
    heatmap: np.ndarray  # float32, the image's own height x width, values in [0, 1]
    class_index: int
    probability: float  # of class_index, with the model's temperature
    class_name: str = ""
    predicted_index: int = -1
    target_layer: str = ""
    method: str = ""  # "gradcam" or "scorecam": what made the map (see :func:`choose_method`)


# ----------------------------------------------------------------------------- loading


def load_explainable(path: str | os.PathLike[str]) -> Explainable:
    """A run folder, an app checkpoint or a safetensors export, as a module to explain."""
    p = Path(path)
    if p.is_dir():
        p, fmt = find_checkpoint(p), "checkpoint"
    elif not p.is_file():
        raise ModelError(f"model file not found: {p}")
    else:
        try:
            fmt = detect_format(p)
        except OSError as exc:
            raise ModelError(f"cannot read {p}: {exc}") from None
        except Exception:  # noqa: BLE001 - a damaged zip; the checkpoint reader says what is wrong
            fmt = "checkpoint"
    if fmt == "safetensors":
        return _load_safetensors(p)
    if fmt != "checkpoint":
        raise ExplainError(f"{p} is a {'TorchScript' if fmt == 'torchscript' else 'ONNX'} export: {NEEDS_MODULE} "
                           f"it was exported from")
    ck = load_checkpoint(p)
    model, classes, pre, arch = model_from_checkpoint(ck, str(p))
    return Explainable(model, classes, pre, calibration_of(ck, str(p))["temperature"], arch, str(p))


def _load_safetensors(p: Path) -> Explainable:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(p), framework="pt") as fh:
            flat = fh.metadata() or {}
        state = load_file(str(p))
    except Exception as exc:  # noqa: BLE001 - any failure is the file's
        raise ModelError(f"cannot read safetensors file {p}: {str(exc)[:300]}") from None
    meta = parse_flat_metadata(flat, str(p))
    model, classes, pre, arch = model_from_checkpoint({**meta, "state_dict": state}, str(p))
    temperature = metadata_calibration(meta, str(p))[0]["temperature"]
    return Explainable(model, classes, pre, temperature, arch, str(p))


_FROM_PREDICTOR: "weakref.WeakKeyDictionary[Any, Explainable]" = weakref.WeakKeyDictionary()


def as_explainable(source: Any, preprocessing: Preprocessing | None = None) -> Explainable:
    """An :class:`Explainable`, a ``Predictor`` (its file loaded once more, as a module), a bare
    ``nn.Module`` (with ``preprocessing``, else the ImageNet default) or a model path."""
    if isinstance(source, Explainable):
        return source
    if isinstance(source, nn.Module):
        out = _module_classes(source)
        return Explainable(source, out, preprocessing or Preprocessing())
    if isinstance(source, (str, os.PathLike)):
        return load_explainable(source)
    cached = _FROM_PREDICTOR.get(source)
    if cached is None:
        if getattr(source, "format", "") not in ("checkpoint", "safetensors"):
            raise ExplainError(f"{getattr(source, 'path', source)} is a {getattr(source, 'format', '?')} "
                               f"model: {NEEDS_MODULE}")
        cached = load_explainable(source.path)
        cached.temperature = float(getattr(source, "temperature", cached.temperature))
        _FROM_PREDICTOR[source] = cached
    return cached


def _module_classes(model: nn.Module) -> list[str]:
    try:
        return [str(i) for i in range(surgery.num_outputs(model, surgery.find_head(model)))]
    except (ValueError, AttributeError):
        return []


# ----------------------------------------------------------------------------- the target layer


def _is_grid_side(side: int, input_size: int) -> bool:
    """A feature grid's side: the input size divided by a whole stride of 2 or more."""
    if side < 1 or side > input_size // 2:
        return False
    return any(side in (input_size // s, -(-input_size // s)) for s in range(2, input_size // max(side - 1, 1) + 2))


def _square_root(n: int) -> int:
    r = math.isqrt(max(n, 0))
    return r if r * r == n else 0


def output_layout(shape: tuple[int, ...], input_size: int, prefix_tokens: int | None = None,
                  width: int | None = None) -> tuple[str, int, tuple[int, int]] | None:
    """(layout, prefix, grid) of a module output of ``shape`` for one square image, or None when
    it is not a spatial grid. ``prefix_tokens``: the model's own count, if it says; ``width``:
    the channels a token grid must have (the head's input)."""
    if not shape or shape[0] != 1:
        return None
    if len(shape) == 4:
        _, a, b, c = shape
        if b == c and b > 1 and _is_grid_side(b, input_size):
            return "nchw", 0, (b, c)
        if a == b and a > 1 and c != a and _is_grid_side(a, input_size):
            return "nhwc", 0, (a, b)
        return None
    if len(shape) != 3 or (width is not None and shape[2] != width):
        return None
    for prefix in ([prefix_tokens] if prefix_tokens is not None else range(_MAX_PREFIX + 1)):
        side = _square_root(shape[1] - prefix)
        if side > 1 and _is_grid_side(side, input_size):
            return "tokens", prefix, (side, side)
    return None


def to_nchw(t: torch.Tensor, target: Target) -> torch.Tensor:
    """A target layer's output as ``N x C x h x w``."""
    if target.layout == "nhwc":
        return t.permute(0, 3, 1, 2)
    if target.layout == "tokens":
        h, w = target.grid
        return t[:, target.prefix:, :].reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)
    return t


def _head_width(model: nn.Module) -> int | None:
    try:
        head = model.get_submodule(surgery.find_head(model))
    except (ValueError, AttributeError):
        return None
    return head.in_features if isinstance(head, nn.Linear) else None


def _record_outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The model's output and every named module's (last) tensor output, in finishing order."""
    outputs: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(_module, _inputs, output) -> None:
            if isinstance(output, torch.Tensor):
                outputs.pop(name, None)
                outputs[name] = output
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if name]
    try:
        with torch.enable_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, outputs


_TARGETS: "weakref.WeakKeyDictionary[nn.Module, dict[int, Target]]" = weakref.WeakKeyDictionary()


def find_target_layer(model: nn.Module, input_size: int) -> Target:
    """The layer whose output a heat map is read from: the last spatial output (in the order the
    modules finish) whose grid part still has a gradient from the class score."""
    known = _TARGETS.setdefault(model, {})
    if input_size in known:
        return known[input_size]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, input_size, input_size, generator=gen).requires_grad_(True)
    with _eval_mode(model):
        out, outputs = _record_outputs(model, x)
        prefix, width = getattr(model, "num_prefix_tokens", None), _head_width(model)
        spatial = [(name, t, found) for name, t in outputs.items()
                   if (found := output_layout(tuple(t.shape), input_size, prefix, width)) is not None]
        if not spatial:
            raise ExplainError(f"no layer of {type(model).__name__} gives a spatial grid for a heat map")
        spatial = spatial[-_CANDIDATES_CHECKED:]
        score = out[0, int(out[0].argmax())]
        grads = torch.autograd.grad(score, [t for _, t, _ in spatial], allow_unused=True)
        for (name, _t, (layout, pre, grid)), g in zip(reversed(spatial), reversed(grads)):
            target = Target(name, layout, pre, grid)
            if g is not None and float(to_nchw(g, target).abs().amax()) > 0:
                known[input_size] = target
                return target
    raise ExplainError(f"the class score of {type(model).__name__} does not depend on any spatial layer")


_UNGATED: "weakref.WeakKeyDictionary[nn.Module, dict[int, Target | None]]" = weakref.WeakKeyDictionary()


def _is_gate(module: nn.Module) -> bool:
    return type(module).__name__ in _GATE_NAMES and type(module).__module__.startswith(("timm.", "torchvision."))


def find_ungated_layer(model: nn.Module, input_size: int) -> Target | None:
    """Score-CAM's layer in a gated net: the last spatial output finished before the first block
    holding a squeeze-excite gate starts (a MobileNet-V3's or EfficientNet's stem), whose
    channels still see only their own neighbourhood; None when the model has no gate or no such
    output. Every later map is scaled by the whole image's mean, and on the quadrant test its
    channels peaked near the canvas's centre wherever the object was."""
    known = _UNGATED.setdefault(model, {})
    if input_size in known:
        return known[input_size]
    parents = {name.rpartition(".")[0] for name, m in model.named_modules() if _is_gate(m)}
    finished: list[tuple[str, torch.Tensor]] = []
    starts: list[int] = []
    handles = [model.get_submodule(p).register_forward_pre_hook(lambda _m, _i: starts.append(len(finished)))
               for p in parents if p]
    handles += [m.register_forward_hook(lambda _m, _i, out, name=name: finished.append((name, out)))
                for name, m in model.named_modules() if name]
    try:
        with _eval_mode(model), torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in handles:
            h.remove()
    found = None
    for name, out in reversed(finished[:min(starts)] if starts else []):
        layout = output_layout(tuple(out.shape), input_size) if isinstance(out, torch.Tensor) else None
        if layout is not None and layout[0] == "nchw":
            found = Target(name, *layout)
            break
    known[input_size] = found
    return found


def _even_centres(cells: int, size: int) -> tuple[float, ...]:
    """Where the cells of an evenly tiled grid look in the input: their centres in pixels."""
    return tuple((j + 0.5) * size / cells for j in range(cells))


class _eval_mode:
    """Eval mode for a block, the module's own mode back afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> nn.Module:
        return self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


# ----------------------------------------------------------------------------- Grad-CAM


def grad_cam(model: nn.Module, target: Target, batch: torch.Tensor,
             class_index: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(map on the target layer's grid, scaled to [0, 1]; the logits; the class) for a
    preprocessed ``1 x 3 x S x S`` batch."""
    module = model.get_submodule(target.name)
    store: dict[str, torch.Tensor] = {}
    handle = module.register_forward_hook(lambda _m, _i, out: store.__setitem__("a", out))
    try:
        with _eval_mode(model), torch.enable_grad():
            logits = model(batch.float().requires_grad_(True))
            k = int(logits[0].argmax()) if class_index is None else int(class_index)
            (grad,) = torch.autograd.grad(logits[0, k], store["a"])
    finally:
        handle.remove()
    acts, grads = to_nchw(store["a"].detach(), target)[0].float(), to_nchw(grad, target)[0].float()
    if target.layout == "tokens":  # each token's own gradient: attention gives each a different one
        cam = torch.relu((grads * acts).sum(0))
    else:
        cam = torch.relu((grads.mean(dim=(1, 2))[:, None, None] * acts).sum(0))
    top = float(cam.max())
    cam = cam / top if top > 0 else torch.zeros_like(cam)
    return cam.clamp(0, 1).numpy().astype(np.float32), logits.detach()[0].float().numpy(), k


# ----------------------------------------------------------------------------- Score-CAM


def has_gates(model: nn.Module) -> bool:
    """Whether ``model`` has squeeze-excite gates (a channel scale from the whole image's mean)."""
    return any(_is_gate(m) for m in model.modules())


def choose_method(model: nn.Module, method: str | None = None) -> str:
    """``method`` when given, else Score-CAM for a gated net and Grad-CAM for every other."""
    if method is not None:
        if method not in METHODS:
            raise ExplainError(f"heat-map method {method!r} is not one of {', '.join(METHODS)}")
        return method
    return "scorecam" if has_gates(model) else "gradcam"


def _channel_masks(acts: torch.Tensor, size: tuple[int, int], limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the chosen channels' indices, their maps upsampled to the input's ``size`` and scaled to
    [0, 1]) for a ``C x h x w`` activation: the ``limit`` channels highest on average, flat
    ones left out (they mask nothing)."""
    spread = acts.amax(dim=(1, 2)) - acts.amin(dim=(1, 2))
    mean = torch.where(spread > 0, acts.mean(dim=(1, 2)), torch.full_like(spread, -torch.inf))
    chosen = torch.argsort(mean, descending=True)[:min(limit, int((spread > 0).sum()))]
    if len(chosen) == 0:  # a blank image: no channel masks anything
        return chosen, acts.new_zeros((0, *size))
    up = nn.functional.interpolate(acts[chosen][None], size=size, mode="bilinear", align_corners=False)[0]
    low, high = up.amin(dim=(1, 2), keepdim=True), up.amax(dim=(1, 2), keepdim=True)
    return chosen, (up - low) / (high - low).clamp_min(1e-12)


def score_cam(model: nn.Module, target: Target, batch: torch.Tensor, class_index: int | None = None, *,
              channels: int = SCORECAM_CHANNELS) -> tuple[np.ndarray, np.ndarray, int]:
    """Score-CAM (Wang et al. 2020), the same result as :func:`grad_cam`: each chosen channel of
    the target layer, upsampled and scaled to [0, 1], masks the input (towards 0, the mean
    colour after normalisation); the class's softmax score on the masked input weights the
    channel; the weighted sum, negatives cut to 0, scaled to [0, 1], is the map. (Less the
    score on the blank input, as the paper writes it, was worse on the quadrant test: 75 /
    100 / 66 % against 94 / 100 / 91 %.) No gradients: a squeeze-excite gate scales every position by the whole
    image's mean, so a gated net's gradients spread over the background, while a masked input
    keeps only what the channel saw. Written here rather than taken from the ``grad-cam``
    package, which brings OpenCV, scikit-learn and matplotlib with it (about 290 MB)."""
    module = model.get_submodule(target.name)
    store: dict[str, torch.Tensor] = {}
    handle = module.register_forward_hook(lambda _m, _i, out: store.__setitem__("a", out))
    try:
        with _eval_mode(model), torch.no_grad():
            x = batch.float()
            logits = model(x)
            acts = to_nchw(store["a"], target)[0].float()
            k = int(logits[0].argmax()) if class_index is None else int(class_index)
            chosen, masks = _channel_masks(acts, tuple(x.shape[2:]), channels)
            scores = [torch.softmax(model(x * m[:, None]).float(), dim=1)[:, k]
                      for m in masks.split(SCORECAM_CHUNK)]
    finally:
        handle.remove()
    weights = torch.cat(scores) if scores else torch.zeros(0)
    cam = torch.relu((weights[:, None, None] * acts[chosen]).sum(0))
    top = float(cam.max())
    cam = cam / top if top > 0 else torch.zeros_like(cam)
    return cam.clamp(0, 1).numpy().astype(np.float32), logits[0].float().numpy(), k


def resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """(width, height) after the eval transform's resize of the shorter side to ``resize``
    (the same arithmetic as torchvision's ``Resize(int)``)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(resize * long / short)
    return (resize, new_long) if width <= height else (new_long, resize)


def _crop_offset(side: int, crop: int) -> int:
    """Where the centre crop starts along a side of the resized image (negative: padded)."""
    return int(round((side - crop) / 2.0)) if side >= crop else -((crop - side) // 2)


def _axis_weights(n_out: int, n_resized: int, crop: int, centres: tuple[float, ...]) -> np.ndarray:
    """``n_out x cells``: linear interpolation between the cells' centres (held flat beyond the
    first and last) at each original pixel's position in the crop; 0 outside the crop."""
    offset = _crop_offset(n_resized, crop)
    c = (np.arange(n_out) + 0.5) * (n_resized / n_out) - offset  # crop coordinate of each pixel centre
    inside = ((c >= 0) & (c < crop)).astype(np.float32)
    eye = np.eye(len(centres), dtype=np.float64)
    w = np.stack([np.interp(c, centres, eye[k]) for k in range(len(centres))], axis=1)
    return (w * inside[:, None]).astype(np.float32)


def to_image_pixels(cam: np.ndarray, width: int, height: int, pre: Preprocessing) -> np.ndarray:
    """A map on a target layer's grid on the original ``height x width`` image: the cells tile
    the model's input evenly (bilinear between their centres), the centre crop and the resize
    undone, 0 where the crop cut the image."""
    rw, rh = resized_size(width, height, pre.resize_size)
    ys, xs = _even_centres(cam.shape[0], pre.input_size), _even_centres(cam.shape[1], pre.input_size)
    wy = _axis_weights(height, rh, pre.input_size, ys)
    wx = _axis_weights(width, rw, pre.input_size, xs)
    return np.clip(wy @ cam.astype(np.float32) @ wx.T, 0.0, 1.0).astype(np.float32)


def explain(predictor_or_model: Any, image: ImageInput, class_index: int | None = None, *,
            preprocessing: Preprocessing | None = None, method: str | None = None) -> Explanation:
    """Heat map of ``image`` for ``class_index`` (the predicted class when None), at the image's
    own size. ``predictor_or_model``: see :func:`as_explainable`. ``method``: "gradcam",
    "scorecam", or None for the architecture's own (:func:`choose_method`)."""
    ex = as_explainable(predictor_or_model, preprocessing)
    how = choose_method(ex.model, method)
    pil = to_pil(image)
    pre = ex.preprocessing
    if class_index is not None and not 0 <= int(class_index) < max(len(ex.classes), 1):
        raise ExplainError(f"class index {class_index} is out of range: the model has {len(ex.classes)} classes")
    target = (find_ungated_layer(ex.model, pre.input_size) if how == "scorecam" else None) \
        or find_target_layer(ex.model, pre.input_size)
    batch = eval_transform(pre)(pil).unsqueeze(0)
    cam, logits, k = (score_cam if how == "scorecam" else grad_cam)(ex.model, target, batch, class_index)
    z = logits / ex.temperature
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    heat = to_image_pixels(cam, pil.width, pil.height, pre)
    name = ex.classes[k] if k < len(ex.classes) else str(k)
    return Explanation(heat, k, float(probs[k]), name, int(np.argmax(logits)), target.name, how)


# ----------------------------------------------------------------------------- drawing

# A dark-blue -> cyan -> yellow -> red scale (positions in [0, 1], RGB).
_SCALE = ((0.0, (25, 25, 112)), (0.3, (30, 120, 255)), (0.5, (40, 210, 190)), (0.75, (250, 215, 40)),
          (1.0, (215, 25, 25)))
ALPHA = (0.2, 0.65)  # the colour's weight over the image where the map is 0 and where it is 1


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """``H x W x 3`` uint8 colours of a map in [0, 1]."""
    pos = np.array([p for p, _ in _SCALE], dtype=np.float32)
    rgb = np.array([c for _, c in _SCALE], dtype=np.float32)
    h = np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1)
    out = np.stack([np.interp(h, pos, rgb[:, i]) for i in range(3)], axis=-1)
    return np.round(out).astype(np.uint8)


def overlay(image: ImageInput, heatmap: np.ndarray) -> Image.Image:
    """The image with the heat map's colours over it (stronger where the map is higher)."""
    pil = to_pil(image)
    heat = np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1)
    if heat.shape != (pil.height, pil.width):
        raise ValueError(f"heat map is {heat.shape[1]}x{heat.shape[0]}, image is {pil.width}x{pil.height}")
    base = np.asarray(pil, dtype=np.float32)
    alpha = (ALPHA[0] + (ALPHA[1] - ALPHA[0]) * heat)[..., None]
    mixed = base * (1 - alpha) + colorize(heat).astype(np.float32) * alpha
    return Image.fromarray(np.round(mixed).clip(0, 255).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------- the command line


def class_index_of(classes: list[str], name: str) -> int:
    if name in classes:
        return classes.index(name)
    shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
    raise ExplainError(f"--class {name!r} is not one of the model's classes: {shown}")


def explain_file(model_path: str | os.PathLike[str], image_path: str | os.PathLike[str],
                 out_png: str | os.PathLike[str], npy: str | os.PathLike[str] | None = None,
                 class_name: str | None = None) -> dict[str, Any]:
    """Write the overlay of ``image_path`` to ``out_png`` (and the map as a float32 ``H x W``
    array to ``npy``); returns what was explained."""
    ex = load_explainable(model_path)
    index = class_index_of(ex.classes, class_name) if class_name is not None else None
    try:
        image = open_image(image_path)
    except (ImageError, OSError) as exc:
        raise ExplainError(f"cannot read image {image_path}: {getattr(exc, 'reason', None) or exc}") from None
    result = explain(ex, image, index)
    atomic_write_with(Path(out_png), lambda fh: overlay(image, result.heatmap).save(fh, format="PNG"))
    if npy is not None:
        atomic_write_with(Path(npy), lambda fh: np.save(fh, result.heatmap.astype(np.float32)))
    return {"image": str(image_path), "overlay": str(out_png), "npy": None if npy is None else str(npy),
            "class": result.class_name, "class_index": result.class_index, "probability": result.probability,
            "predicted": ex.classes[result.predicted_index] if result.predicted_index < len(ex.classes) else "",
            "target_layer": result.target_layer, "method": result.method, "width": image.width,
            "height": image.height}


def overlay_maker(model_path: str | os.PathLike[str]) -> Callable[[str], Image.Image | None] | None:
    """For a report's mistakes gallery: ``path -> overlay of the predicted class`` with the model
    loaded once, or None when the model cannot be explained (a TorchScript or ONNX file). An image
    that cannot be read or explained gets None (the gallery shows it without a heat map)."""
    try:
        ex = load_explainable(model_path)
    except (UserError, OSError):
        return None

    def make(path: str) -> Image.Image | None:
        try:
            image = open_image(path)
            return overlay(image, explain(ex, image).heatmap)
        except (ImageError, UserError, OSError, ValueError, RuntimeError):
            return None

    make.method = METHOD_NAMES[choose_method(ex.model)]  # type: ignore[attr-defined]  # the report names it
    return make
