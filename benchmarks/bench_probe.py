#!/usr/bin/env python
"""Does the depth probe pick the right `layers.train_from`? The probe's suggestion against
actually training from every layer group on the same data.

    python benchmarks/bench_probe.py [--train-per-class 40] [--val-per-class 20] [--size 112]
                                     [--epochs 3] [--out results.json] [--keep]
    python benchmarks/bench_probe.py --from-json results.json   # score a saved run with today's rule

Images: Fashion-MNIST class folders from Debian's dataset-fashion-mnist (tools/make_sample_data.py),
native 28x28 greyscale PNGs upscaled by the transforms; training images from its training
split (seed 1), validation images from its test split (seed 2). Model: the offline pretrained
efficientnet_lite0. Every training run is `Trainer().fit` with the app's defaults (AdamW, head
rate 1e-3, cosine schedule, no augmentation) and only `layers.train_from` changed; its accuracy is
the best epoch's validation accuracy, the checkpoint the run keeps.

Prints a markdown table: the probe's accuracy at the input of every group, the validation
accuracy of training from that group, the suggestion at the engine's tolerance, and how far
the pick lands from the best choice (points and rank); then the same for other tolerances
(the calibration of the rule). Not a timed test: the times are for orientation only.
``--from-json`` re-scores the measured figures of an earlier run (``--out``) with the engine's
current rule, without training again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "tools")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

TOLERANCES = (0.0, 0.01, 0.02, 0.03, 0.05, 0.10)


def make_data(tmp: Path, train_per_class: int, val_per_class: int) -> tuple[str, str]:
    from make_sample_data import CLASS_NAMES, write_fashion_mnist_folders

    write_fashion_mnist_folders(tmp / "train", CLASS_NAMES, train_per_class, seed=1, split="train")
    write_fashion_mnist_folders(tmp / "val", CLASS_NAMES, val_per_class, seed=2, split="test")
    return str(tmp / "train"), str(tmp / "val")


def base_config(train: str, val: str, args: argparse.Namespace, out: Path):
    from transfer_gui.config import RunConfig

    return RunConfig().replace(**{"data.folders": [train], "data.val_folders": [val], "data.image_size": args.size,
                                  "train.epochs": args.epochs, "train.device": "cpu", "train.seed": args.seed,
                                  "output.dir": str(out)})


def train_from_each(cfg, groups: list[str], out: Path) -> dict[str, dict]:
    """Validation accuracy (best epoch, last epoch) and seconds of training from each group; the
    first group means "train everything" (layers.train_from = "")."""
    from transfer_gui.engine.loop import Trainer

    results = {}
    for g in groups:
        value = "" if g == groups[0] else g
        run = cfg.replace(**{"layers.train_from": value, "layers.frozen": [], "output.dir": str(out / (g or "all"))})
        t0 = time.perf_counter()
        r = Trainer().fit(run)
        if r.status != "completed":
            raise SystemExit(f"training from {g} ended {r.status}: {r.message}")
        results[g] = {"best_val_acc": r.best_val_acc, "last_val_acc": r.history[-1]["val_acc"],
                      "seconds": time.perf_counter() - t0}
        print(f"  trained from {g}: {r.best_val_acc:.1%} (best epoch), {results[g]['seconds']:.0f} s", file=sys.stderr)
    return results


def score_pick(pick: str, trained: dict[str, dict]) -> dict:
    accs = {g: v["best_val_acc"] for g, v in trained.items()}
    best = max(accs, key=accs.get)
    return {"pick": pick, "pick_acc": accs[pick], "best": best, "best_acc": accs[best],
            "gap_points": 100 * (accs[best] - accs[pick]), "rank": 1 + sum(a > accs[pick] for a in accs.values()),
            "choices": len(accs)}


def table(result, trained: dict[str, dict]) -> list[str]:
    probe_acc = result.accuracy()
    lines = ["| train from | probe accuracy at its input | trained: best epoch | trained: last epoch | seconds |",
             "|---|---|---|---|---|"]
    for g in result.groups:
        mark = " **(suggested)**" if g == result.suggestion else ""
        p = f"{probe_acc[g]:.1%}" if g in probe_acc else "(the image)"
        t = trained[g]
        label = f"{g} (everything trains)" if g == result.groups[0] else g
        lines.append(f"| {label}{mark} | {p} | {t['best_val_acc']:.1%} | {t['last_val_acc']:.1%} | {t['seconds']:.0f} |")
    return lines


def calibration(result, trained: dict[str, dict]) -> tuple[list[str], list[dict]]:
    from transfer_gui.engine.probe import suggest

    rows, lines = [], ["| tolerance (points) | suggested train_from | its trained accuracy | best choice | "
                       "points below the best | rank |", "|---|---|---|---|---|---|"]
    for tol in TOLERANCES:
        s = score_pick(suggest(result.depths, tol)[0], trained)
        rows.append({"tolerance": tol, **s})
        lines.append(f"| {tol * 100:g} | {s['pick']} | {s['pick_acc']:.1%} | {s['best']} ({s['best_acc']:.1%}) | "
                     f"{s['gap_points']:.1f} | {s['rank']} of {s['choices']} |")
    return lines, rows


def report(result, trained: dict[str, dict], header: str) -> dict:
    """Print the tables; return the pick and the calibration rows."""
    cal_lines, cal_rows = calibration(result, trained)
    s = score_pick(result.suggestion, trained)
    print(header + "\n")
    print("\n".join(table(result, trained)))
    print(f"\nSuggestion at the engine's tolerance ({result.tolerance * 100:g} points): **{s['pick']}**, "
          f"{s['pick_acc']:.1%} when trained; the best choice is {s['best']} ({s['best_acc']:.1%}): "
          f"{s['gap_points']:.1f} points below it, rank {s['rank']} of {s['choices']}.\n")
    print("\n".join(cal_lines))
    return {"pick": s, "calibration": cal_rows}


def rescore(path: str) -> int:
    """The tables of a saved run (``--out``), its probe figures scored with the current rule."""
    import dataclasses

    from transfer_gui.engine.probe import TOLERANCE, Depth, ProbeResult, suggest

    saved = json.loads(Path(path).read_text())
    d = dict(saved["probe"])
    depths = [Depth(**x) for x in d.pop("depths")]
    d.pop("suggested_train_from"), d.pop("reason")
    names = {f.name for f in dataclasses.fields(ProbeResult)}
    result = ProbeResult(**{k: v for k, v in d.items() if k in names and k != "tolerance"}, depths=depths,
                         suggestion=suggest(depths, TOLERANCE)[0], reason=suggest(depths, TOLERANCE)[1],
                         tolerance=TOLERANCE)
    a = saved["args"]
    report(result, saved["trained"], f"{path}, re-scored with the current rule: Fashion-MNIST, 10 classes x "
           f"{a['train_per_class']} training / {a['val_per_class']} validation images, efficientnet_lite0 at "
           f"{a['size']} px, {a['epochs']} epochs per choice.")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-per-class", type=int, default=40, help="training images per class (default 40)")
    ap.add_argument("--val-per-class", type=int, default=20, help="validation images per class (default 20)")
    ap.add_argument("--size", type=int, default=112, help="input size in pixels (default 112)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each training run (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="train.seed of every run (default 0)")
    ap.add_argument("--out", help="write every figure as JSON to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary images and run folders")
    ap.add_argument("--from-json", metavar="FILE", help="re-score a saved run (--out) with the current rule; no training")
    args = ap.parse_args(argv)
    if args.from_json:
        return rescore(args.from_json)
    import torch

    from transfer_gui.engine.probe import probe

    tmp = Path(tempfile.mkdtemp(prefix="bench_probe_"))
    try:
        t0 = time.perf_counter()
        train, val = make_data(tmp, args.train_per_class, args.val_per_class)
        cfg = base_config(train, val, args, tmp / "runs")
        result = probe(cfg)
        print(f"probe: {result.seconds:.0f} s; suggestion {result.suggestion}: {result.reason}", file=sys.stderr)
        trained = train_from_each(cfg, result.groups, tmp / "runs")
        scored = report(result, trained, f"Fashion-MNIST, 10 classes x {args.train_per_class} training / "
                        f"{args.val_per_class} validation images, efficientnet_lite0 (offline ImageNet weights) at "
                        f"{args.size} px, {args.epochs} epochs per choice, torch {torch.__version__} with "
                        f"{torch.get_num_threads()} threads; {(time.perf_counter() - t0) / 60:.1f} min in all "
                        f"(probe {result.seconds:.0f} s).")
        if args.out:
            Path(args.out).write_text(json.dumps({"args": vars(args), "probe": result.to_dict(), "trained": trained,
                                                  **scored}, indent=1))
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
