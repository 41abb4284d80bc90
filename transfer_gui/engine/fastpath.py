"""The fastest exact runtime for a frozen network's forward pass on a CPU.

A frozen pass (the feature cache, the frozen prefix, a Predictor's batches) runs the same
network over many images, so it pays to pick the runtime per machine: ONNX Runtime (an
export of the module with a dynamic batch axis), OpenVINO when it is installed, or torch with
``channels_last``. :func:`fast_forward` measures each on the first batch, keeps only those
whose outputs equal plain torch's within :data:`TOLERANCE` (relative to the largest output,
at least 1.0), and returns the fastest, with a note for the log. channels_last is left
unmeasured once another runtime is :data:`CHANNELS_LAST_CEILING` times plain torch. The
choice is measured once per (module fingerprint, batch shape) and kept in the process.

Both the export and the choice are also kept on disk (:func:`cache_dir`, the user's cache
folder), keyed by the weights' fingerprint, the input's shape, the runtimes and their
versions and the CPU: the next run of the same backbone on this machine (another head, other
rates, a resumed run, the CLI after the window) pays neither the export (2-5 s) nor the
measuring. A choice read from disk is still checked against plain torch on the first batch
and measured again from scratch when it differs. The export traces one image (the batch axis
is dynamic): tracing runs the network once, so a whole batch would cost a batch's forward.

Exact means fp32: no bf16 here (the training step's autocast is engine/step.py's business).
A failed export (some timm ops) is no error: the pass runs in torch and the note says why.
A pass of fewer than :data:`MIN_IMAGES` images, or not on a CPU, runs in plain torch: an
export costs seconds that so few images do not earn back.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from transfer_gui.atomic import atomic_path, read_json_table, remember_in_json_table

Forward = Callable[[torch.Tensor], torch.Tensor]
TOLERANCE = 1e-4
MIN_IMAGES = 256  # below this an ONNX export (2-10 s) costs more than it saves
_KEEP = 4  # chosen forwards kept in the process (each holds a copy of the weights)
DISK_KEEP = 8  # exported graphs kept in the cache folder (the oldest used go first) ...
DISK_BUDGET = 1 << 30  # ... and at most this many bytes of them (the newest is always kept)

ORT, OPENVINO, CHANNELS_LAST, TORCH = "ONNX Runtime", "OpenVINO", "torch channels_last", "torch"
# channels_last runs torch's own kernels in another layout: measured at 1.05-1.4x plain torch on
# the CPUs we have seen (AVX2, AVX-512). When a runtime already beats plain torch by this much
# it is not measured (its first call reorders every weight: 1.2 s of a 1,500-image pass).
CHANNELS_LAST_CEILING = 2.0


@dataclass(frozen=True)
class Choice:
    runtime: str
    images_per_s: float
    note: str
    forward: Forward


_CHOSEN: dict[tuple[str, tuple[int, ...]], Choice] = {}


def fingerprint(module: nn.Module) -> str:
    """Hash of a module's weights and buffers: two modules share results only if equal."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _device_of(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def torch_forward(module: nn.Module) -> Forward:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x).float()
    return run


def _channels_last(module: nn.Module, _example: torch.Tensor, _key: str | None = None) -> Forward:
    clone = copy.deepcopy(module).to(memory_format=torch.channels_last).eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return clone(x.contiguous(memory_format=torch.channels_last)).float().contiguous()
    return run


def _export_onnx(module: nn.Module, example: torch.Tensor, path: str) -> None:
    """The module to ONNX with a dynamic batch axis (the exporter engine/export.py uses)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), path, dynamo=False, opset_version=17, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})


def cache_dir() -> Path:
    """Where exported frozen graphs and the runtime choices are kept between runs."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("transfer_gui")) / "frozen-graphs"


def _versions() -> str:
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "-"
    return f"torch {torch.__version__}, onnxruntime {ort_version}, opset 17"


def graph_key(module_key: str, example: torch.Tensor) -> str:
    """The exported graph's name: the weights' fingerprint, one input's shape, the exporter."""
    text = f"{module_key}|{tuple(example.shape[1:])}|{_versions()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _prune_graphs(folder: Path, keep: int, budget: int) -> None:
    """Remove the least recently used graphs beyond ``keep`` files or ``budget`` bytes."""
    graphs = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    total = 0
    for i, path in enumerate(graphs):
        total += path.stat().st_size
        if i and (i >= keep or total > budget):
            with contextlib.suppress(OSError):
                path.unlink()


def exported_graph(module: nn.Module, example: torch.Tensor, key: str | None = None) -> Path:
    """The module's ONNX graph (dynamic batch axis) from the cache folder, exported there first
    if missing (atomically: a killed export leaves no half file behind)."""
    folder = cache_dir()
    path = folder / f"{graph_key(key or fingerprint(module), example)}.onnx"
    if path.is_file():
        with contextlib.suppress(OSError):
            os.utime(path)  # used now: the last to be pruned
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        _export_onnx(module, example[:1], str(tmp))
    _prune_graphs(folder, DISK_KEEP, DISK_BUDGET)
    return path


def _onnxruntime(module: nn.Module, example: torch.Tensor, key: str | None = None) -> Forward:
    import onnxruntime as ort

    path = exported_graph(module, example, key)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # No memory pattern: with it ORT plans one block per run for the whole graph; without it the
    # arena hands out each tensor as it is needed. EfficientNet-Lite0, batch 16, 2 threads: 174 MB
    # less resident after the first runs (1,246 -> 1,072 MB), the same images/s measured interleaved.
    opts.enable_mem_pattern = False
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"input": x.detach().float().contiguous().numpy()})[0])
    return run


def _openvino(module: nn.Module, example: torch.Tensor, key: str | None = None) -> Forward:
    import openvino as ov  # optional extra; ImportError means "not installed"

    path = exported_graph(module, example, key)
    compiled = ov.Core().compile_model(ov.Core().read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(compiled(x.detach().float().contiguous().numpy())[0].copy())
    return run


BUILDERS: dict[str, Callable[..., Forward]] = {  # (module, example batch, fingerprint or None)
    ORT: _onnxruntime, OPENVINO: _openvino, CHANNELS_LAST: _channels_last}


def _timed(fn: Forward, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    out = fn(x)
    return out, time.perf_counter() - t0


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the reference's largest value (at least 1)."""
    if a.shape != b.shape:
        return float("inf")
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    return float((a.float() - b.float()).abs().max()) / scale if b.numel() else 0.0


def _try(name: str, module: nn.Module, example: torch.Tensor, ref: torch.Tensor,
         key: str | None = None) -> tuple[Choice | None, str]:
    """(the candidate measured, or None with the reason it was left out)."""
    try:
        fwd = BUILDERS[name](module, example, key)
        out, _ = _timed(fwd, example)  # the first call warms up and is the parity check
    except ImportError:
        return None, f"{name} not installed"
    except Exception as exc:  # noqa: BLE001 - an export or runtime that cannot take this module
        return None, f"{name} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
    diff = max_difference(out, ref)
    if not diff <= TOLERANCE:
        return None, f"{name} differs from torch by {diff:.1e}"
    _, seconds = _timed(fwd, example)
    return Choice(name, len(example) / max(seconds, 1e-9), f"{name} {len(example) / max(seconds, 1e-9):.0f}, "
                  f"difference {diff:.0e}", fwd), ""


def choose(module: nn.Module, example: torch.Tensor, runtimes: tuple[str, ...] = (ORT, OPENVINO, CHANNELS_LAST),
           reference: Forward | None = None, key: str | None = None) -> Choice:
    """Measure ``runtimes`` against plain torch (``reference``, default ``module`` itself) on
    ``example`` and return the fastest exact one (plain torch when none is)."""
    reference = reference or torch_forward(module)
    _timed(reference, example)  # warm up, as the candidates are
    ref, seconds = _timed(reference, example)
    plain = len(example) / max(seconds, 1e-9)
    best = Choice(TORCH, plain, "", reference)
    said = [f"plain torch {plain:.0f}"]
    for name in runtimes:
        if name == CHANNELS_LAST and best.images_per_s >= CHANNELS_LAST_CEILING * plain:
            said.append(f"{name} not measured ({best.runtime} is already {best.images_per_s / plain:.1f}x plain torch)")
            continue
        cand, why = _try(name, module, example, ref, key)
        said.append(cand.note if cand else why)
        if cand is not None and cand.images_per_s > best.images_per_s:
            best = cand
    note = f"{best.runtime}: {best.images_per_s:.0f} images/s (measured on {len(example)}: {'; '.join(said)})"
    return Choice(best.runtime, best.images_per_s, note, best.forward)


# ----------------------------------------------------------------------------- choices kept on disk


def _choice_key(module_key: str, example: torch.Tensor, runtimes: tuple[str, ...]) -> str:
    """What a choice depends on: the weights, the batch's shape, the runtimes offered and their
    versions, the CPU and the threads."""
    cpu = torch.backends.cpu.get_cpu_capability()
    return (f"{module_key}|{tuple(example.shape)}|{','.join(runtimes)}|{_versions()}|{cpu}|"
            f"{torch.get_num_threads()} threads")


def _read_choices() -> dict:
    return read_json_table(cache_dir() / "choices.json")


def _remember(choice_key: str, choice: Choice) -> None:
    """Keep ``choice`` for the next process (the newest 64 choices; a failure to write is no error)."""
    remember_in_json_table(cache_dir() / "choices.json", choice_key,
                           {"runtime": choice.runtime, "images_per_s": round(choice.images_per_s, 1), "note": choice.note})


def _recall(choice_key: str, module: nn.Module, example: torch.Tensor, reference: Forward,
            key: str) -> Choice | None:
    """The choice an earlier process made for ``choice_key``, rebuilt and checked against
    ``reference`` on ``example``; None when there is none or it no longer holds."""
    kept = _read_choices().get(choice_key)
    if not isinstance(kept, dict) or kept.get("runtime") not in (*BUILDERS, TORCH):
        return None
    name = kept["runtime"]
    if name == TORCH:
        return Choice(TORCH, float(kept.get("images_per_s", 0)), f"{TORCH}: as measured before ({kept.get('note', '')})",
                      reference)
    with torch.inference_mode():
        ref = reference(example)
    cand, _why = _try(name, module, example, ref, key)
    if cand is None:
        return None
    return Choice(name, cand.images_per_s, f"{name}: {cand.images_per_s:.0f} images/s, chosen in an earlier run "
                  f"and checked again on {len(example)} images ({kept.get('note', '')})", cand.forward)


def fast_forward(module: nn.Module, example_batch: torch.Tensor, *, images: int | None = None,
                 key: str | None = None, reference: Forward | None = None,
                 runtimes: tuple[str, ...] = (ORT, OPENVINO, CHANNELS_LAST)) -> tuple[Forward, str, str]:
    """(forward, runtime name, note) for running frozen ``module`` (in eval mode) over batches
    like ``example_batch``. ``images``: how many the pass will run (under :data:`MIN_IMAGES`
    plain torch is used); ``key``: the module's fingerprint if known; ``reference``: what the
    runtimes must equal (default: ``module`` in torch)."""
    reference = reference or torch_forward(module)
    device = _device_of(module)
    if device.type != "cpu" or example_batch.device.type != "cpu":
        return reference, TORCH, f"torch on {device}"
    key = key or fingerprint(module)
    cache_key = (key, tuple(example_batch.shape))
    choice = _CHOSEN.get(cache_key)
    if choice is None and images is not None and images < MIN_IMAGES:
        return reference, TORCH, f"{images} images: plain torch, an export pays from {MIN_IMAGES}"
    if choice is None:
        on_disk = _choice_key(key, example_batch, runtimes)
        choice = _recall(on_disk, module, example_batch, reference, key)
        if choice is None:
            choice = choose(module, example_batch, runtimes, reference, key)
            _remember(on_disk, choice)
        _CHOSEN[cache_key] = choice
        while len(_CHOSEN) > _KEEP:
            _CHOSEN.pop(next(iter(_CHOSEN)))
    return choice.forward, choice.runtime, choice.note


def clear() -> None:
    _CHOSEN.clear()


# ----------------------------------------------------------------------------- the frozen prefix


def _timm_notrace() -> tuple[tuple[type, ...], tuple[Callable, ...]]:
    """The modules and functions timm marks as not traceable by torch.fx (none without timm)."""
    try:
        from timm.layers import _fx as timm_fx
    except ImportError:
        return (), ()
    return tuple(timm_fx._leaf_modules), tuple(timm_fx._autowrap_functions)


def prefix_module(model: nn.Module, boundary: str) -> nn.Module | None:
    """The network from its input to the input of module ``boundary``, as a module of its own
    (torch.fx; shares the model's weights), or None when the model cannot be traced."""
    import torch.fx as fx

    leaves, wrapped = _timm_notrace()

    class _Tracer(fx.Tracer):
        def __init__(self) -> None:
            super().__init__(autowrap_functions=wrapped)

        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return qualname == boundary or isinstance(m, leaves) or super().is_leaf_module(m, qualname)

    try:
        graph = _Tracer().trace(model)
    except Exception:  # noqa: BLE001 - data-dependent control flow: no prefix module
        return None
    node = next((n for n in graph.nodes if n.op == "call_module" and n.target == boundary), None)
    if node is None or not node.args:
        return None
    output = next(n for n in graph.nodes if n.op == "output")
    output.args = (node.args[0],)
    gm = fx.GraphModule(model, graph)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm.eval()


__all__ = ["CHANNELS_LAST", "CHANNELS_LAST_CEILING", "Choice", "DISK_BUDGET", "DISK_KEEP", "MIN_IMAGES", "ORT", "OPENVINO", "TOLERANCE", "TORCH", "cache_dir", "choose", "clear", "exported_graph",
           "fast_forward", "fingerprint", "max_difference", "prefix_module", "torch_forward"]
