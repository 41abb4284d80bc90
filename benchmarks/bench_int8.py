"""int8 against fp32 per model family and quantisation recipe (issue #23).

Each run is trained here with the engine on Fashion-MNIST folders (Debian's dataset-fashion-mnist):
training images from its training split, validation images from its test split. Its fp32 ONNX
file is quantised with every recipe asked for (engine/quantize.py's Recipe), calibrated on the
run's training images as the export calibrates, and compared with fp32 on the run's validation
images: accuracies, top-1 agreement, sizes, latency at batch 1.

Runs are TUNING runs (the recipe and the fallback were chosen on them) or JUDGING runs (other
classes, seeds, image size and model families, looked at only after the choice):

    python benchmarks/bench_int8.py --recipes minmax percentile export   # the README's table
    python benchmarks/bench_int8.py --role tuning      # only the runs that chose the recipe
    python benchmarks/bench_int8.py --sweep tune_lite0 # per-node sensitivity: all but one node in int8
    python benchmarks/bench_int8.py --quick            # one small run, two recipes: a smoke test

Prints the CPU model and its 8-bit/bf16 flags beside the figures and writes
benchmarks/bench_int8_results.json (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

FMNIST = Path("/usr/share/datasets/fashion-mnist")

# name: role, model, weights, what trains, image size, classes (Fashion-MNIST labels), images per
# class (train, val), data seed, epochs.
RUNS = {
    "tune_lite0": dict(role="tuning", model="efficientnet_lite0", weights="pretrained", train_from="head",
                       size=112, classes=list(range(10)), per_class=(60, 30), seed=11, epochs=3, lr=1e-3),
    "tune_resnet18": dict(role="tuning", model="resnet18", weights="none", train_from="",
                          size=48, classes=list(range(10)), per_class=(40, 30), seed=12, epochs=4, lr=3e-3),
    "judge_lite0": dict(role="judging", model="efficientnet_lite0", weights="pretrained", train_from="head",
                        size=160, classes=[0, 2, 3, 4, 6, 8], per_class=(80, 40), seed=21, epochs=4, lr=1e-3),
    "judge_lite0_b": dict(role="judging", model="efficientnet_lite0", weights="pretrained", train_from="head",
                          size=112, classes=list(range(10)), per_class=(60, 30), seed=22, epochs=3, lr=1e-3),
    "judge_lite0_224": dict(role="judging", model="efficientnet_lite0", weights="pretrained", train_from="head",
                            size=224, classes=list(range(10)), per_class=(40, 30), seed=24, epochs=5, lr=1e-3),
    "judge_resnet18": dict(role="judging", model="resnet18", weights="none", train_from="",
                           size=48, classes=[1, 3, 5, 7, 9, 0], per_class=(50, 40), seed=23, epochs=4, lr=3e-3),
}


def recipes() -> dict:
    from transfer_gui.engine.quantize import Recipe

    return {r.name: r for r in [
        Recipe("minmax"), Recipe("percentile", calibration="percentile"), Recipe("entropy", calibration="entropy"),
        Recipe("minmax_per_tensor", per_channel=False), Recipe("minmax_qoperator", qoperator=True),
        Recipe("minmax_reduce_range", reduce_range=True), Recipe("minmax_float_stem", float_stem=True),
        Recipe("percentile_float_stem", calibration="percentile", float_stem=True),
    ]}


def cpu_words() -> dict:
    model, flags = platform.processor(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), model)
        flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    return {"cpu": model, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags],
            "load_before": os.getloadavg()[0]}


def make_run(name: str, spec: dict, tmp: Path) -> Path:
    """Train the run ``spec`` in ``tmp/name`` on freshly written Fashion-MNIST folders."""
    from make_sample_data import CLASS_NAMES, write_fashion_mnist_folders

    from transfer_gui.config import RunConfig
    from transfer_gui.engine.loop import Trainer

    classes = [CLASS_NAMES[c] for c in spec["classes"]]
    train, val = tmp / name / "train", tmp / name / "val"
    write_fashion_mnist_folders(train, classes, spec["per_class"][0], seed=spec["seed"], split="train")
    write_fashion_mnist_folders(val, classes, spec["per_class"][1], seed=spec["seed"] + 1000, split="test")
    cfg = RunConfig().replace(**{
        "data.folders": [str(train)], "data.val_folders": [str(val)], "data.image_size": spec["size"],
        "output.dir": str(tmp / name / "run"), "model.name": spec["model"], "model.weights": spec["weights"],
        "layers.train_from": spec["train_from"], "layers.head_lr": spec["lr"], "train.epochs": spec["epochs"],
        "train.seed": spec["seed"], "train.batch_size": 32, "output.tensorboard": "off"})
    t0 = time.perf_counter()
    result = Trainer().fit(cfg)
    if result.status != "completed":
        raise SystemExit(f"{name}: training failed: {result.message}")
    print(f"  trained {name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return tmp / name / "run"


def prepare(run: Path, work: Path, calibration_images: int):
    """(fp32 ONNX path, calibration batches, validation batches, labels) of a trained run."""
    from transfer_gui.engine import quantize
    from transfer_gui.engine.export import export_model, load_checkpoint
    from transfer_gui.engine.preprocess import Preprocessing

    fp32 = Path(export_model(run, "onnx", work / "fp32.onnx").path)
    ck = load_checkpoint(run)
    calib_paths, val_paths, labels = quantize.run_images(ck, str(run), calibration_images)
    pre = Preprocessing.from_dict(ck["preprocessing"])
    calib, _ = quantize._batches(calib_paths, pre)
    val, kept = quantize._batches(val_paths, pre)
    return fp32, calib, val, np.asarray(labels)[kept]


def measure_recipe(fp32: Path, work: Path, calib, val, labels, recipe) -> dict:
    from transfer_gui.engine import quantize

    out = work / f"{recipe.name}.int8.onnx"
    t0 = time.perf_counter()
    quantize.quantize_onnx(fp32, out, calib, recipe=recipe)
    seconds = time.perf_counter() - t0
    figures = quantize.compare(fp32, out, val, labels, threads=1)
    figures.update(fp32_bytes=fp32.stat().st_size, int8_bytes=out.stat().st_size, quantize_s=round(seconds, 1),
                   drop_points=round(100 * (figures["fp32_accuracy"] - figures["int8_accuracy"]), 2),
                   calibration_images=sum(len(b) for b in calib))
    return figures


def show(run: str, recipe: str, f: dict) -> None:
    print(f"  {run:<15} {recipe:<26} fp32 {f['fp32_accuracy']:6.1%}  int8 {f['int8_accuracy']:6.1%} "
          f"({-f['drop_points']:+5.1f})  agree {f['agreement']:6.1%}  size {f['int8_bytes'] / f['fp32_bytes']:.2f}x  "
          f"{f['fp32_ms']:.1f} -> {f['int8_ms']:.1f} ms  ({f['quantize_s']:.0f} s)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", choices=("tuning", "judging", "all"), default="all")
    ap.add_argument("--runs", nargs="*", help="run names (default: every run of --role)")
    ap.add_argument("--recipes", nargs="*", help="recipe names (default: all); 'export' = the export's fallback")
    ap.add_argument("--calibration-images", type=int, nargs="*", default=[200])
    ap.add_argument("--sweep", metavar="RUN", help="per-node sensitivity sweep on RUN instead")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "bench_int8_results.json"))
    args = ap.parse_args()
    if not FMNIST.exists():
        raise SystemExit("needs Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)")
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    env = cpu_words()
    print(f"CPU: {env['cpu']}, {env['cores']} cores, flags {' '.join(env['flags'])}; load {env['load_before']:.1f}")
    runs = {k: v for k, v in RUNS.items() if args.role in ("all", v["role"]) and (not args.runs or k in args.runs)}
    if args.quick:
        runs = {"quick": dict(RUNS["tune_lite0"], per_class=(10, 5), epochs=1, classes=[0, 1, 2])}
    every = recipes()
    chosen = args.recipes or list(every)
    results = {"env": env, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench_int8_") as tmp:
        for name, spec in runs.items():
            run = make_run(name, spec, Path(tmp))
            if args.sweep:
                results["runs"][name] = sweep(run, Path(tmp) / name, spec)
                continue
            entry = results["runs"][name] = {"spec": spec, "recipes": {}}
            for n_cal in args.calibration_images:
                fp32, calib, val, labels = prepare(run, Path(tmp) / name, n_cal)
                for rname in (args.recipes or (["minmax", "export"] if args.quick else chosen)):
                    key = rname if n_cal == 200 else f"{rname}@{n_cal}"
                    if rname == "export":
                        f = export_fallback(fp32, Path(tmp) / name, calib, val, labels)
                    else:
                        try:
                            f = measure_recipe(fp32, Path(tmp) / name, calib, val, labels, every[rname])
                        except Exception as exc:  # noqa: BLE001 - a recipe onnxruntime cannot apply is a result
                            entry["recipes"][key] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                            print(f"  {name:<15} {key:<26} failed: {entry['recipes'][key]['error']}", flush=True)
                            continue
                    entry["recipes"][key] = f
                    show(name, key, f)
                    Path(args.out).write_text(json.dumps(results, indent=1))  # so far, should a later run fail
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return 0


def export_fallback(fp32: Path, work: Path, calib, val, labels) -> dict:
    """What the export does: its recipes in order until one is good; the figures of the one used."""
    from transfer_gui.engine import quantize

    t0 = time.perf_counter()
    out = work / "export.int8.onnx"
    result = quantize.search(fp32, out, calib, val, labels, threads=1)
    f = dict(result.figures, fp32_bytes=fp32.stat().st_size, int8_bytes=out.stat().st_size,
             quantize_s=round(time.perf_counter() - t0, 1), recipe_used=result.recipe.name,
             tried=result.tried, calibration_images=sum(len(b) for b in calib))
    f["drop_points"] = round(100 * (f["fp32_accuracy"] - f["int8_accuracy"]), 2)
    return f


def sweep(run: Path, work: Path, spec: dict) -> dict:
    """Each quantised Conv kept float in turn (all other nodes int8): accuracy and agreement per node."""
    from transfer_gui.engine import quantize

    fp32, calib, val, labels = prepare(run, work, 200)
    base = quantize.DEFAULT
    prepared, model = quantize._prepare(fp32, work)
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    out = {"spec": spec, "base": measure_recipe(fp32, work, calib, val, labels, base), "nodes": {}}
    show("sweep", "all int8", out["base"])
    for name in convs:
        f = measure_recipe(fp32, work, calib, val, labels, base.with_float([name], f"float {name}"))
        out["nodes"][name] = f
        show("sweep", name[-26:], f)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
