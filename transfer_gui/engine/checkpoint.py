"""The app checkpoint: write one, find it in a run folder, read and check it (the only reader:
resume, export, predict and the run folder all come here), rebuild its model; and the metadata
every export carries so that it can be used without the checkpoint.

A checkpoint is a plain dict saved with ``torch.save`` and read with ``weights_only=True``:
``format`` (:data:`CHECKPOINT_FORMAT`), ``version``, ``arch``, ``classes``, ``preprocessing``,
``head_path``, ``state_dict``, ``metrics``, ``config``; ``last.pt`` adds the training state that
a resume needs (optimizer, epoch, step, best epoch and score, history, patience). After training,
``calibration`` = ``{"temperature", "threshold"}`` (engine/calibration.py); a checkpoint without
it reads as temperature 1 and threshold 0 (:func:`calibration_of`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transfer_gui.atomic import atomic_write_with
from transfer_gui.engine.catalog import ModelError, build_architecture, constructor_of
from transfer_gui.engine.formats import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, checkpoint_in, checkpoint_problem,
                                        no_checkpoint_message)
from transfer_gui.engine.preprocess import Preprocessing, preprocessing_spec
from transfer_gui.engine.rundir import jsonable

META_FORMAT = "transfer_gui.model"  # "format" key of the metadata in safetensors/TorchScript/ONNX
TORCHSCRIPT_META = "transfer_gui.json"  # name of the extra file inside a TorchScript archive
NO_CALIBRATION = {"temperature": 1.0, "threshold": 0.0}  # what a checkpoint or export without one means


def save_checkpoint(path: Path, *, model: nn.Module, arch: str, classes: list[str], preprocessing,
                    head_path: str, metrics: dict, config_text: str, extra: dict | None = None,
                    calibration: dict | None = None) -> None:
    blob = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "arch": arch, "classes": list(classes),
        "preprocessing": preprocessing.to_dict(), "head_path": head_path,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},  # no copy on CPU
        "metrics": jsonable(metrics), "config": config_text,
    }
    if extra:
        blob.update(extra)
    if calibration is not None:
        blob["calibration"] = calibration_of({"calibration": calibration}, str(path))
    atomic_write_with(path, lambda fh: torch.save(blob, fh))


def calibration_of(ck: dict, source: str = "checkpoint") -> dict[str, float]:
    """``{"temperature", "threshold"}`` stored in a checkpoint (or export metadata, same keys),
    checked; temperature 1 and threshold 0 when there is none (a checkpoint from before calibration)."""
    stored = ck.get("calibration")
    stored = stored if isinstance(stored, dict) else {}
    try:
        temperature = float(stored.get("temperature", NO_CALIBRATION["temperature"]))
        threshold = float(stored.get("threshold", NO_CALIBRATION["threshold"]))
    except (TypeError, ValueError):
        raise ModelError(f"{source} has a damaged calibration ({stored!r}); set the threshold again or "
                         f"retrain") from None
    if not (math.isfinite(temperature) and temperature > 0):
        raise ModelError(f"{source} has an invalid calibration temperature {temperature!r} (it must be > 0)")
    if not 0.0 <= threshold <= 1.0:
        raise ModelError(f"{source} has an invalid confidence threshold {threshold!r} (it must be in 0..1)")
    return {"temperature": temperature, "threshold": threshold}


def store_calibration(path: str | os.PathLike[str], **values: float) -> dict[str, float]:
    """Rewrite the checkpoint file ``path`` with ``temperature`` and/or ``threshold`` changed in its
    calibration, atomically; everything else in it is kept (read with ``weights_only=True`` and
    checked like every checkpoint). Returns the calibration now stored."""
    unknown = set(values) - set(NO_CALIBRATION)
    assert not unknown, unknown
    blob = load_checkpoint(path)
    blob["calibration"] = calibration_of({"calibration": {**calibration_of(blob, str(path)), **values}}, str(path))
    atomic_write_with(Path(path), lambda fh: torch.save(blob, fh))
    return dict(blob["calibration"])


def find_checkpoint(run_dir: str | os.PathLike[str]) -> Path:
    """``checkpoints/best.pt`` of a run folder, else ``checkpoints/last.pt``."""
    folder = Path(run_dir)
    found = checkpoint_in(folder)
    if found is not None:
        return found
    if not folder.is_dir():
        raise ModelError(f"run folder not found: {folder}")
    raise ModelError(no_checkpoint_message(folder))


def _torch_load(p: Path) -> Any:
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure is the file's; say which and why
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "Unpickler" in text:
            raise ModelError(f"refused to load {p}: it contains Python objects other than tensors and plain "
                             f"data, and loading it could run code. Only transfer_gui checkpoints are "
                             f"accepted here.") from None
        reason = text.splitlines()[0][:300] if text else type(exc).__name__
        raise ModelError(f"cannot read checkpoint {p}: {reason}") from None


def load_checkpoint(path: str | os.PathLike[str]) -> dict:
    """Read and validate an app checkpoint (a run folder: its best one). Never unpickles code:
    ``weights_only=True``. Refuses other files, newer versions and incomplete checkpoints."""
    p = Path(path)
    if p.is_dir():
        p = find_checkpoint(p)
    if not p.is_file():
        raise ModelError(f"checkpoint not found: {p}")
    ck = _torch_load(p)
    found = ck.get("format") if isinstance(ck, dict) else type(ck).__name__
    if not isinstance(ck, dict) or found != CHECKPOINT_FORMAT:
        raise ModelError(f"{p} is not a transfer_gui checkpoint (format {found!r}, expected "
                         f"{CHECKPOINT_FORMAT!r}). A bare weights file can be imported as a model's weights.")
    problem = checkpoint_problem(ck, p)
    if problem:
        raise ModelError(problem)
    return ck


def model_from_checkpoint(ck: dict, source: str = "checkpoint") -> tuple[nn.Module, list[str], Preprocessing, str]:
    """Rebuild ``(model in eval mode, classes, preprocessing, arch)`` from a loaded checkpoint."""
    classes = [str(c) for c in ck["classes"]]
    arch = str(ck["arch"])
    model = build_architecture(arch, num_classes=len(classes)).model
    try:
        model.load_state_dict(ck["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ModelError(f"weights in {source} do not fit {arch} with {len(classes)} classes: "
                         f"{str(exc).splitlines()[0][:300]}") from None
    return model.eval(), classes, Preprocessing.from_dict(ck["preprocessing"]), arch


# ----------------------------------------------------------------------------- export metadata


def export_metadata(ck: dict, temperature_in_graph: bool = False, graph_input: dict | None = None) -> dict[str, Any]:
    """What every export carries so it can be used without the checkpoint: the exact constructor
    (library, model name, version, number of classes), the versioned preprocessing spec, what the
    output is, the calibration's temperature and threshold, and whether the graph's outputs are
    already divided by the temperature (TorchScript and ONNX: a plain softmax of them gives the
    app's probabilities). ``graph_input`` describes a graph that takes images rather than tensors."""
    cal = calibration_of(ck)
    classes = [str(c) for c in ck["classes"]]
    pre = Preprocessing.from_dict(ck["preprocessing"])
    meta = {"format": META_FORMAT, "version": CHECKPOINT_VERSION, "arch": str(ck["arch"]),
            "constructor": constructor_of(str(ck["arch"]), len(classes)), "num_classes": len(classes),
            "classes": classes, "preprocessing": dict(ck["preprocessing"]), "preprocessing_spec": preprocessing_spec(pre),
            "head_path": str(ck.get("head_path", "")), "metrics": dict(ck.get("metrics") or {}),
            "temperature": cal["temperature"], "threshold": cal["threshold"],
            "temperature_in_graph": bool(temperature_in_graph),
            "output": _output_spec(cal, temperature_in_graph)}
    if graph_input:
        meta["input"] = dict(graph_input)
    return meta


def _output_spec(cal: dict[str, float], in_graph: bool) -> dict[str, Any]:
    t = cal["temperature"]
    return {"name": "logits", "kind": f"logits / temperature ({t:g}), already divided" if in_graph else "raw logits",
            "probabilities": "softmax(output)" if in_graph else f"softmax(output / {t:g})",
            "unsure_below": cal["threshold"]}


def metadata_calibration(meta: dict[str, Any], source: str) -> tuple[dict[str, float], bool]:
    """(calibration, temperature_in_graph) of parsed export metadata; an export made before
    calibration existed has temperature 1, threshold 0."""
    cal = {k: meta[k] for k in NO_CALIBRATION if k in meta}
    return calibration_of({"calibration": cal}, source), bool(meta.get("temperature_in_graph", False))


def flat_metadata(meta: dict[str, Any]) -> dict[str, str]:
    """String-to-string form for safetensors and ONNX: plain strings as-is, the rest as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


_OPTIONAL_META = ("temperature_in_graph", "constructor", "num_classes", "preprocessing_spec", "output", "input")


def parse_flat_metadata(flat: dict[str, str], source: str) -> dict[str, Any]:
    if flat.get("format") != META_FORMAT:
        raise ModelError(f"{source} has no transfer_gui metadata (class names, preprocessing): it is a bare "
                         f"weights file. Import it as a model's weights instead.")
    try:
        return {"arch": flat["arch"], "head_path": flat.get("head_path", ""),
                "classes": json.loads(flat["classes"]), "preprocessing": json.loads(flat["preprocessing"]),
                "metrics": json.loads(flat.get("metrics", "{}")),
                **{k: json.loads(flat[k]) for k in (*NO_CALIBRATION, *_OPTIONAL_META) if k in flat}}
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{source} has damaged transfer_gui metadata ({exc})") from None
