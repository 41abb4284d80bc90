"""Command line: the same engine as the window, on the config file the window saves.

    transfer-gui                         start the window
    transfer-gui train CONFIG.toml [--set key=value]...
    transfer-gui train --data DIR --out DIR [--model NAME] ...
    transfer-gui train --resume RUN_DIR
    transfer-gui predict MODEL_FILE IMAGE_OR_DIR... [--top-k K] [--json] [--csv FILE]
    transfer-gui evaluate RUN_DIR|MODEL_FILE --data DIR --out REPORT_DIR
    transfer-gui explain RUN_DIR|MODEL_FILE IMAGE --out OVERLAY.png [--npy HEATMAP.npy] [--class NAME]
    transfer-gui export RUN_DIR --format onnx --out FILE
    transfer-gui lr-find CONFIG.toml | --data DIR ...
    transfer-gui probe CONFIG.toml | --data DIR ... [--json]
    transfer-gui audit CONFIG.toml | --data DIR ... --out DIR [--json]
    transfer-gui models [--json]
    transfer-gui runs [RUNS_FOLDER] [--json]

Arguments, paths and model names are checked before torch is imported, so a mistake is
refused (exit code 2, one line ``transfer-gui: error: ...``) in a fraction of a second. Keep
the module-level imports free of torch: ``tests/test_cli_fast.py`` holds that.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from transfer_gui import __version__
from transfer_gui import config as config_mod
from transfer_gui.config import ConfigError, RunConfig
from transfer_gui.engine.formats import checkpoint_in, no_checkpoint_message  # no torch: where the engine looks
from transfer_gui.engine.rules import lr_sweep_ok
from transfer_gui.engine.runs import project_runs_dir
from transfer_gui.errors import UserError

PROG = "transfer-gui"
EXPORT_FORMATS = ("checkpoint", "safetensors", "torchscript", "onnx", "onnx-rgb")  # engine.export.FORMATS (a test holds them equal)
QUANTIZED_FORMATS = ("onnx-int8",)  # engine.formats.QUANTIZED: int8, checked against fp32 on the validation set
_D = RunConfig()  # the defaults shown in the help
PREDICT_ALL_FAILED, PREDICT_SOME_FAILED = 3, 4  # predict's exit codes beside 0 (all predicted) and 2 (refused)


class CliError(UserError):
    """A one-line message for the user; exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's errors as one line, like every other refusal of the command line."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {message} (see `{self.prog} --help`)\n")


class _Formatter(argparse.HelpFormatter):
    """Wraps one-paragraph text; keeps text with line breaks (the examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _add_quick_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", metavar="CONFIG",
                   help="a run config (.toml) saved by the window or written by hand; the options below override it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (value read as TOML; repeatable)")
    q = p.add_argument_group("quick form (no config file needed; each option overrides the file's value)")
    q.add_argument("--data", action="append", default=[], metavar="DIR",
                   help="a folder of class folders, or one class folder (repeatable)")
    q.add_argument("--val-data", action="append", default=[], metavar="DIR",
                   help="a separate validation folder (repeatable); default: hold out "
                        f"{_D.data.val_fraction * 100:g}%% of --data, stratified by class")
    q.add_argument("--out", metavar="DIR", help="the run folder to write (default: a new timestamped run folder)")
    q.add_argument("--model", metavar="NAME",
                   help=f"model name: {_D.model.name} (offline, the default), a torchvision name such as "
                        "resnet50, or timm:NAME; `transfer-gui models` lists them")
    q.add_argument("--weights", metavar="WEIGHTS",
                   help="pretrained (default) | none (random init) | a weights file (.pt, .pth, .safetensors "
                        "or a transfer_gui checkpoint)")
    q.add_argument("--freeze", metavar="GROUP,...", help="comma-separated layer groups that do not train")
    q.add_argument("--train-from", metavar="GROUP",
                   help=f"freeze every layer group before GROUP (default: {_D.layers.train_from}, i.e. only the "
                        "new head trains)")
    q.add_argument("--lr", action="append", default=[], metavar="GROUP=VALUE",
                   help="learning rate of one layer group, e.g. --lr layer4=1e-4 (repeatable; wins over "
                        "--lr-decay)")
    q.add_argument("--head-lr", type=float, metavar="LR",
                   help=f"learning rate of the new head (default: {_D.layers.head_lr:g})")
    q.add_argument("--lr-decay", type=float, metavar="FACTOR",
                   help="each group below the head gets lr x FACTOR per step down, in (0, 1] "
                        f"(default: {_D.layers.lr_decay:g} = same rate)")
    w = q.add_mutually_exclusive_group()
    w.add_argument("--warmup-steps", type=int, metavar="N",
                   help=f"linear warmup from 0 over N optimizer steps (default: {_D.schedule.warmup_steps})")
    w.add_argument("--warmup-epochs", type=float, metavar="N",
                   help=f"linear warmup from 0 over N epochs, fractions allowed (default: "
                        f"{_D.schedule.warmup_epochs:g})")
    q.add_argument("--schedule", choices=config_mod.SCHEDULES,
                   help=f"learning-rate schedule after warmup (default: {_D.schedule.name})")
    q.add_argument("--optimizer", choices=config_mod.OPTIMIZERS, help=f"optimizer (default: {_D.optim.name})")
    q.add_argument("--epochs", type=int, metavar="N",
                   help=f"passes over the training images (default: {_D.train.epochs})")
    q.add_argument("--batch-size", type=int, metavar="N", help=f"images per step (default: {_D.train.batch_size})")
    q.add_argument("--image-size", type=int, metavar="PX",
                   help="input size in pixels, 16-2048 (default: the model's own, e.g. 224)")
    q.add_argument("--device", help=f"auto | cpu | cuda | cuda:N | mps (default: {_D.train.device})")
    q.add_argument("--no-augment", action="store_true",
                   help="turn off random augmentation (off unless the config file turns it on)")
    q.add_argument("--seed", type=int, metavar="N",
                   help=f"random seed for the split, shuffling and init, 0-2147483647 (default: {_D.train.seed})")


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    cfg = config_mod.load(args.config) if args.config else RunConfig()
    changes: dict[str, object] = {}
    if args.data:
        changes["data.folders"] = [str(Path(d)) for d in args.data]
    if args.val_data:
        changes["data.val_folders"] = [str(Path(d)) for d in args.val_data]
    simple = {"out": "output.dir", "model": "model.name", "weights": "model.weights", "train_from": "layers.train_from",
              "head_lr": "layers.head_lr", "lr_decay": "layers.lr_decay", "warmup_steps": "schedule.warmup_steps",
              "warmup_epochs": "schedule.warmup_epochs", "schedule": "schedule.name", "optimizer": "optim.name",
              "epochs": "train.epochs", "batch_size": "train.batch_size", "image_size": "data.image_size",
              "device": "train.device", "seed": "train.seed"}
    for attr, key in simple.items():
        value = getattr(args, attr, None)
        if value is not None:
            changes[key] = value
    if args.freeze:
        changes["layers.frozen"] = [g.strip() for g in args.freeze.split(",") if g.strip()]
    if args.lr:
        lrs = dict(cfg.layers.lr)
        for item in args.lr:
            name, sep, value = item.partition("=")
            if not sep:
                raise CliError(f"--lr expects GROUP=VALUE, got {item!r}")
            try:
                lrs[name.strip()] = float(value)
            except ValueError:
                raise CliError(f"--lr {item}: {value!r} is not a number") from None
        changes["layers.lr"] = lrs
    if args.no_augment:
        changes["data.augment.enabled"] = False
    if changes:
        cfg = cfg.replace(**changes)
    cfg = config_mod.apply_overrides(cfg, args.overrides)
    if not cfg.data.folders:
        raise CliError("no image folders: give a config file or --data DIR")
    return cfg


# ----------------------------------------------------------------------------- checks (no torch)


def _check_model_name(name: str) -> None:
    """Refuse an unknown model name from the bundled name lists, without importing torch."""
    from transfer_gui.model_names import model_name_problem

    problem = model_name_problem(name)
    if problem:
        raise CliError(problem)


def _check_run_config(cfg: RunConfig) -> None:
    """Everything about a run that can be known without torch: folders, weights file, model name,
    and the classes the training folders give."""
    config_mod.check_paths(cfg)
    out = cfg.output.dir
    if out and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"is a file, not a folder: {out}", "output.dir")
    _check_model_name(cfg.model.name)
    _check_classes(cfg)


def _check_classes(cfg: RunConfig) -> None:
    """Scan the training folders as the engine will (its own ``scan_sources``, torch-free): no
    images, one class or every class excluded is refused here, before the run folder is made
    and before torch loads, instead of after both."""
    from transfer_gui.engine.scan import scan_sources

    d = cfg.data
    scan_sources(list(d.folders), d.exclude_classes, dict(d.rename_classes))  # ScanError: a UserError, exit 2


def _check_checkpoint_source(path: str, missing: str) -> None:
    """A run folder must hold a checkpoint; anything else must be a file (the engine reads it)."""
    p = Path(path)
    if p.is_dir():
        if checkpoint_in(p) is None:
            raise CliError(no_checkpoint_message(p))
    elif not p.is_file():
        raise CliError(f"{missing}: {p}")


def _train_config(args: argparse.Namespace) -> RunConfig:
    if not args.resume:
        cfg = _config_from_args(args)
        _check_run_config(cfg)
        return cfg
    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise CliError(f"cannot resume {run_dir}: no such folder")
    if not (run_dir / "config.toml").is_file():
        raise CliError(f"cannot resume {run_dir}: no config.toml there")
    if not (run_dir / "checkpoints" / "last.pt").is_file():
        raise CliError(f"nothing to resume in {run_dir}: no checkpoints/last.pt")
    cfg = config_mod.apply_overrides(config_mod.load(run_dir / "config.toml"), args.overrides)
    cfg = cfg.replace(**{"output.dir": str(run_dir)})
    config_mod.check_paths(cfg)
    _check_model_name(cfg.model.name)
    return cfg


# ----------------------------------------------------------------------------- progress


class ConsoleProgress:
    """Engine events -> tqdm bars with ETA, and the lines ``engine.wording`` gives (the window's
    log shows the same sentences)."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.bar = None
        self.bar_key = None

    def _bar(self, key, total, desc):
        from tqdm import tqdm

        if self.bar_key != key:
            self.close()
            self.bar = tqdm(total=total or None, desc=desc, file=self.stream, leave=False, dynamic_ncols=True,
                            disable=self.quiet)
            self.bar_key = key
        return self.bar

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.bar_key = None, None

    def __call__(self, e) -> None:
        from transfer_gui.engine import events as ev
        from transfer_gui.engine.wording import describe

        if isinstance(e, ev.Progress) and e.total:
            bar = self._bar(("p", e.phase), e.total, e.message or e.phase)
            bar.n = e.done
            bar.refresh()
        elif isinstance(e, ev.BatchEnd):
            bar = self._bar(("epoch", e.epoch), e.batches, f"epoch {e.epoch + 1}")
            bar.n = e.batch
            bar.set_postfix(loss=f"{e.loss:.3f}", lr=f"{e.lrs.get('head', 0):.1e}", img_s=f"{e.images_per_s:.0f}",
                            refresh=False)
            bar.refresh()
        elif not isinstance(e, ev.Finished):  # the command prints how the run ended itself
            line = describe(e)
            if line is not None:
                self.close()
                self._print(line[0])

    def _print(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)


# ----------------------------------------------------------------------------- commands
# Each command checks everything it can first, then imports the engine (and with it torch).


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _train_config(args)

    from transfer_gui.engine import distributed
    from transfer_gui.engine.loop import Trainer

    progress = ConsoleProgress(quiet=args.quiet or not distributed.is_main_process())
    # a config file's runs go beside it, in <stem>-runs/, where the window lists them too
    root = project_runs_dir(args.config) if getattr(args, "config", None) and not args.resume else None
    if distributed.is_distributed():
        result = distributed.fit(cfg, progress, resume=bool(args.resume), runs_root=root)
    else:
        result = Trainer().fit(cfg, progress, resume=bool(args.resume), runs_root=root)
    progress.close()
    if result.status == "failed":
        if result.bad_input:
            raise CliError(result.message)
        print(f"{PROG}: {result.message}", file=sys.stderr)
        if result.run_dir.is_dir():
            print(f"run folder: {result.run_dir}", file=sys.stderr)
        return 1
    if distributed.is_main_process():
        print(result.message)
        print(f"run folder: {result.run_dir}")
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    if not lr_sweep_ok(args.steps, args.start_lr, args.end_lr):  # the engine's rule, without torch
        raise CliError(f"lr-find needs --steps >= 2 and 0 < --start-lr < --end-lr (got {args.steps}, "
                       f"{args.start_lr:g}, {args.end_lr:g})")
    cfg = _config_from_args(args)
    config_mod.check_paths(cfg)
    _check_model_name(cfg.model.name)

    from transfer_gui.engine.lrfind import lr_find

    progress = ConsoleProgress(quiet=args.quiet)
    res = lr_find(cfg, progress, steps=args.steps, start_lr=args.start_lr, end_lr=args.end_lr)
    progress.close()
    if args.json:
        print(json.dumps({"lrs": res.lrs, "losses": res.losses, "suggestion": res.suggestion}))
    else:
        lo, hi = min(res.losses), max(res.losses)
        for lr, loss in zip(res.lrs[:: max(1, len(res.lrs) // 25)], res.losses[:: max(1, len(res.lrs) // 25)]):
            bar = "#" * int(1 + 40 * (loss - lo) / max(1e-12, hi - lo))
            print(f"{lr:9.2e}  {loss:8.4f}  {bar}")
        print(f"suggested head learning rate: {res.suggestion:.2e}  (use --head-lr {res.suggestion:.1e})")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """The depth probe: a linear classifier on the frozen activations at every group boundary."""
    if args.tolerance is not None and not 0 <= args.tolerance < 100:
        raise CliError(f"--tolerance is in accuracy points, 0 to 100 (got {args.tolerance:g})")
    cfg = _config_from_args(args)
    config_mod.check_paths(cfg)
    _check_model_name(cfg.model.name)

    from transfer_gui.engine.probe import TOLERANCE, probe

    progress = ConsoleProgress(quiet=args.quiet or args.json)
    tol = TOLERANCE if args.tolerance is None else args.tolerance / 100
    res = probe(cfg, progress, tolerance=tol)
    progress.close()
    if args.json:
        print(json.dumps(res.to_dict()))
        return 0
    print(f"{'train from':<16} {'probe':>7}  (validation accuracy of a linear classifier on the frozen input)")
    for d in res.depths:
        mark = "  <- suggested" if d.train_from == res.suggestion else ""
        print(f"{d.train_from:<16} {d.val_accuracy:7.1%}  {'#' * int(round(40 * d.val_accuracy))}{mark}")
    print(f"chance (most common class): {res.chance:.1%}; {res.train_size} training, {res.val_size} validation images")
    print(f"suggested: --train-from {res.suggestion}  ({res.reason})")
    return 0


def _audit_config(args: argparse.Namespace) -> RunConfig:
    """The config to audit: CONFIG (or the defaults) with the quick options on top."""
    cfg = config_mod.load(args.config) if args.config else RunConfig()
    changes: dict[str, object] = {}
    if args.data:
        changes["data.folders"] = [str(Path(d)) for d in args.data]
    if args.val_data:
        changes["data.val_folders"] = [str(Path(d)) for d in args.val_data]
    if args.model is not None:
        changes["model.name"] = args.model
    if args.image_size is not None:
        changes["data.image_size"] = args.image_size
    cfg = cfg.replace(**changes) if changes else cfg
    if not cfg.data.folders:
        raise CliError("no image folders: give a config file or --data DIR")
    return cfg


AUDIT_DONE = "Audit done"  # how the engine's closing phase line starts; the command says the summary itself


def _audit_summary(doc: dict) -> list[str]:
    """The audit's one summary line, then its first findings. Every figure is counted from the
    document written to audit.json, so what is printed and what is written agree."""
    kinds = [p["kind"] for p in doc["duplicates"]]
    lines = [f"Audit done in {doc['seconds']:.1f} s ({sum(doc['class_counts'].values()):,} training images): "
             f"label issues {len(doc['label_issues'])}, leaks {kinds.count('leak')}, "
             f"duplicates {kinds.count('duplicate')}, near duplicates {kinds.count('near')}, "
             f"outliers {len(doc['outliers'])}"]
    for x in doc["label_issues"][:5]:
        lines.append(f"  {x['score']:.2f}  {x['path']}: given {x['given']}, suggested {x['suggested']}")
    for p in doc["duplicates"][:3]:
        lines.append(f"  {p['kind']:<9} {p['a']} = {p['b']} ({p['similarity']:.3f})")
    for o in doc["outliers"][:3]:
        lines.append(f"  outlier {o['score']:.2f}  {o['path']}")
    if doc.get("imbalance"):
        lines.append("imbalance: " + doc["imbalance"]["advice"])
    return lines


def _is_audit_done(e) -> bool:
    """The engine's closing "Audit done: ..." line, which the command leaves out: it prints one
    summary of its own from audit.json (two summaries in different words disagreed)."""
    from transfer_gui.engine.events import PhaseChanged

    return isinstance(e, PhaseChanged) and e.phase == "audit" and e.message.startswith(AUDIT_DONE)


def _as_given(doc: dict, folders: list[str]) -> dict:
    """The document with each image path written under its folder as the folder was given
    (the scan reports absolute paths)."""
    roots = sorted(((str(Path(f).resolve()), f) for f in folders), key=lambda r: -len(r[0]))

    def given(path: str) -> str:
        for absolute, as_given in roots:
            if path == absolute or path.startswith(absolute.rstrip("/") + "/"):
                return str(Path(as_given) / Path(path).relative_to(absolute))
        return path

    for row in doc["label_issues"] + doc["outliers"]:
        row["path"] = given(row["path"])
    for row in doc["duplicates"]:
        row["a"], row["b"] = given(row["a"]), given(row["b"])
    return doc


def cmd_audit(args: argparse.Namespace) -> int:
    """Label issues, duplicates and leaks, outliers and imbalance; writes OUT/audit.json."""
    if args.folds < 2:
        raise CliError(f"--folds must be at least 2 (got {args.folds})")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out: {out} is a file; give a folder (audit.json is written into it)")
    cfg = _audit_config(args)
    config_mod.check_paths(cfg)
    _check_model_name(cfg.model.name)

    from transfer_gui.atomic import atomic_write_text
    from transfer_gui.engine.audit import audit

    progress = ConsoleProgress(stream=sys.stderr, quiet=args.quiet or args.json)
    res = audit(cfg, lambda e: None if _is_audit_done(e) else progress(e), folds=args.folds)
    progress.close()
    doc = _as_given(res.to_dict(), [*cfg.data.folders, *cfg.data.val_folders, *cfg.data.test_folders])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "audit.json", json.dumps(doc, indent=1))
    if args.json:
        print(json.dumps(doc))
        return 0
    print("\n".join(_audit_summary(doc)))
    print(f"wrote {out / 'audit.json'}")
    return 0


def _check_out_file(path: str, option: str) -> None:
    """A file to write: not a folder, and its folder (when it exists) not a file."""
    p = Path(path)
    if p.is_dir():
        raise CliError(f"{option}: {p} is a folder; give a file name")
    if p.parent.exists() and not p.parent.is_dir():
        raise CliError(f"{option}: {p.parent} is a file, not a folder")


def cmd_predict(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise CliError(f"--top-k must be >= 1, got {args.top_k}")
    _check_checkpoint_source(args.model, "model file not found")
    missing = [item for item in args.images if not Path(item).exists()]
    if len(missing) == len(args.images):  # nothing to do: refuse before torch loads
        raise CliError(f"image file or folder not found: {', '.join(missing)}")
    if args.csv:
        _check_out_file(args.csv, "--csv")

    from transfer_gui.engine.predict import Predictor

    predictor = Predictor.load(args.model)
    rows = predictor.predict_paths(args.images, top_k=len(predictor.classes))  # every class, for the CSV
    if not rows:
        raise CliError("no images found in " + ", ".join(args.images))
    if args.csv:
        from transfer_gui.engine.evaluate import write_predict_csv

        write_predict_csv(Path(args.csv), list(predictor.classes), rows, predictor.threshold)
    shown = [{**row, "top": row["top"][:args.top_k]} if "top" in row else row for row in rows]
    if args.json:
        print(json.dumps(shown, indent=1))
    else:
        for row in shown:
            print(_predict_line(row))
    if args.csv:
        print(f"wrote {len(rows)} rows to {args.csv}", file=sys.stderr)
    return _predict_exit(rows)


def _predict_exit(rows: list[dict]) -> int:
    """PREDICT_ALL_FAILED when no input was predicted, PREDICT_SOME_FAILED when some were not (both name them)."""
    bad = [row for row in rows if row.get("error")]
    if not bad:
        return 0
    names = "; ".join(f"{row['path']} ({row['error']})" for row in bad[:10]) + (" ..." if len(bad) > 10 else "")
    if len(bad) == len(rows):
        print(f"{PROG}: error: no image could be predicted: {names}", file=sys.stderr)
        return PREDICT_ALL_FAILED
    print(f"{PROG}: {len(bad)} of {len(rows)} inputs could not be predicted: {names}", file=sys.stderr)
    return PREDICT_SOME_FAILED


def _predict_line(row: dict) -> str:
    if row.get("error"):
        return f"{row['path']}: skipped ({row['error']})"
    tops = ", ".join(f"{name} {prob:.1%}" for name, prob in row["top"])
    return f"{row['path']}: unsure, best guess {tops}" if row.get("unsure") else f"{row['path']}: {tops}"


def _evaluate_checks(args: argparse.Namespace) -> None:
    """Everything about ``evaluate``'s arguments that can be known without torch."""
    source = Path(args.source)
    _check_checkpoint_source(args.source, "run folder or model file not found")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out: {out} is a file; give a folder for the report")
    if args.data is not None:
        if not Path(args.data).is_dir():
            raise CliError(f"--data: folder does not exist: {args.data}")
        if args.split:
            raise CliError("--split reads a run's saved predictions; leave it out when --data is given")
        return
    if not (source.is_dir() and (source / "config.toml").is_file()):
        raise CliError(f"{source} is not a run folder: give --data DIR, a folder of class folders to evaluate on")
    name = {"val": "val_predictions.json", "test": "test_predictions.json"}
    if args.split and not (source / name[args.split]).is_file():
        raise CliError(f"{source} has no {name[args.split]}; choose the other --split or give --data DIR")
    if not args.split and not any((source / n).is_file() for n in name.values()):
        raise CliError(f"{source} has no saved predictions yet; give --data DIR to evaluate on a folder")


def _evaluation_progress(quiet: bool):
    """A tqdm bar on stderr for ``progress(done, total)``, and its closer."""
    from tqdm import tqdm

    state: dict = {}

    def progress(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, desc="evaluating", file=sys.stderr, leave=False,
                                      dynamic_ncols=True, disable=quiet)
        bar.n = done
        bar.refresh()

    return progress, lambda: state["bar"].close() if state.get("bar") is not None else None


def cmd_evaluate(args: argparse.Namespace) -> int:
    _evaluate_checks(args)

    from transfer_gui.engine import evaluate

    if args.data is None:
        split = args.split or ("test" if (Path(args.source) / "test_predictions.json").is_file() else "val")
        evaluation = evaluate.evaluation_from_run(args.source, split)
    else:
        progress, close = _evaluation_progress(args.quiet)
        try:
            evaluation = evaluate.evaluate_model(args.source, args.data, progress=progress)
        finally:
            close()
    from transfer_gui.engine.explain import overlay_maker

    written = evaluate.write_outputs(evaluation, args.out, heatmap_for=overlay_maker(args.source))
    m = evaluation.metrics
    top5 = "" if m.get("top5_accuracy") is None else f" (top-5 {m['top5_accuracy']:.1%})"
    skipped = f", {len(evaluation.skipped)} unreadable left out" if evaluation.skipped else ""
    print(f"{m['n']} images of {len(evaluation.classes)} classes ({evaluate.SPLIT_NAMES[evaluation.which]}{skipped})")
    print(f"accuracy {m['accuracy']:.1%}{top5}, macro F1 {m['macro']['f1']:.3f}, ECE {m['ece']:.3f} "
          f"(temperature {evaluation.temperature:.2f})")
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    _check_checkpoint_source(args.model, "model file not found")
    name = Path(args.model).name.lower()
    if name.endswith((".onnx", ".torchscript.pt")):
        raise CliError(f"{args.model} is an ONNX or TorchScript export: heat maps need the run folder, .pt or "
                       f".safetensors file it was exported from")
    if not Path(args.image).is_file():
        raise CliError(f"image file not found: {args.image}")
    _check_out_file(args.out, "--out")
    if args.npy:
        _check_out_file(args.npy, "--npy")

    from transfer_gui.engine.explain import explain_file

    info = explain_file(args.model, args.image, args.out, npy=args.npy, class_name=args.class_name)
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        from transfer_gui.engine.explain import METHOD_NAMES

        print(f"{args.image}: heat map for {info['class']} ({info['probability']:.1%}; predicted "
              f"{info['predicted']}; {METHOD_NAMES.get(info['method'], info['method'])} on {info['target_layer']}) "
              f"written to {args.out}" + (f" and {args.npy}" if args.npy else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    _check_checkpoint_source(args.run_dir, "run folder or checkpoint not found")
    if args.kit and args.format not in ("onnx", "onnx-rgb"):
        raise CliError(f"--kit needs --format onnx or onnx-rgb (its predict.py runs on onnxruntime), not {args.format}")
    if args.parity_images and not Path(args.parity_images).is_dir():
        raise CliError(f"--parity-images: folder does not exist: {args.parity_images}")
    out = Path(args.out)
    if out.parent.exists() and not out.parent.is_dir():
        raise CliError(f"--out: {out.parent} is a file, not a folder")

    from transfer_gui.atomic import remove_stale_parts
    from transfer_gui.engine.export import export_model

    images = None
    if args.parity_images:
        from transfer_gui.engine.scan import IMAGE_EXTENSIONS  # same list as the scanner

        found = sorted(Path(args.parity_images).rglob("*"))
        images = [str(p) for p in found if p.suffix.lower() in IMAGE_EXTENSIONS][:32]
    remove_stale_parts(out.parent, out.name)  # left by an export that was killed
    if args.format in QUANTIZED_FORMATS:
        return _export_int8(args)
    if args.accept_int8_loss:
        raise CliError(f"--accept-int8-loss is for --format onnx-int8, not {args.format}")
    report = export_model(args.run_dir, args.format, args.out, parity_images=images)
    print(report.message)
    if args.kit:
        from transfer_gui.engine.deploykit import write_kit

        print(f"wrote the deploy kit {write_kit(report.path)}")
    return 0


def _export_int8(args: argparse.Namespace) -> int:
    """onnx-int8 is written under its pending name and moved to its final name only when it is
    within the limit of fp32 (quantize.acceptable) or --accept-int8-loss says so; else it is
    deleted and the command exits 2. Why: a script must not ship a file that lost accuracy."""
    from transfer_gui.engine import quantize
    from transfer_gui.engine.export import default_export_path, export_model
    from transfer_gui.engine.formats import SUFFIXES

    out = Path(args.out)
    final = default_export_path(args.run_dir, args.format, out) if out.is_dir() else \
        (out if out.suffix else out.with_name(out.name + SUFFIXES[args.format]))
    pending = quantize.pending_path(final)
    try:
        q = export_model(args.run_dir, args.format, pending).quantization
        print("\n".join(q.lines()))
        if not q.good and not args.accept_int8_loss:
            raise CliError(f"{q.verdict()} Nothing written to {final} (--accept-int8-loss writes it anyway)")
        quantize.keep(pending, final)
    finally:
        quantize.discard(pending)  # gone once kept; removed when refused, failed or interrupted
    print(f"wrote {final}" + ("" if q.good else " (int8 loss accepted with --accept-int8-loss)"))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    if args.groups:
        return _print_groups(args.groups, args.json)
    from transfer_gui.engine.catalog import list_models

    specs = list_models()
    if args.json:
        print(json.dumps([{**s.__dict__, "top1": None if math.isnan(s.top1) else s.top1} for s in specs], indent=1))
        return 0
    print(f"{'name':<28}{'family':<16}{'params':>10}{'input':>7}{'top-1':>8}  weights")
    for s in specs:
        params = f"{s.params / 1e6:.1f}M" if s.params else "-"
        top1 = "-" if math.isnan(s.top1) else f"{s.top1:.1f}"
        print(f"{s.name:<28}{s.family:<16}{params:>10}{s.input_size:>7}{top1:>8}  {s.weights_status}")
    return 0


def _print_groups(name: str, as_json: bool) -> int:
    """The layer groups of model ``name``, input side first: the names --freeze, --train-from,
    --lr GROUP=VALUE and layers.unfreeze_at take."""
    _check_model_name(name)
    from transfer_gui.engine.catalog import build_model
    from transfer_gui.engine.surgery import split_groups

    built = build_model(name, "none", num_classes=2)  # the architecture is enough: no download
    groups = split_groups(built.model, built.head_path)
    if as_json:
        print(json.dumps([{"name": g.name, "params": g.num_params, "modules": list(g.modules)} for g in groups], indent=1))
        return 0
    print(f"Layer groups of {name}, input side first (for --freeze, --train-from, --lr GROUP=VALUE, "
          f"layers.unfreeze_at):")
    width = max(len(g.name) for g in groups)
    for g in groups:
        shown = ", ".join(g.modules[:3]) + (f", ... ({len(g.modules)} modules)" if len(g.modules) > 3 else "")
        note = "  (replaced by a new one for your classes)" if g.is_head else ""
        print(f"  {g.name:<{width}}  {g.num_params:>11,} params  {shown}{note}")
    return 0


def _runs_of(target: str) -> list:
    """The runs ``target`` names: a runs folder, a project file (its ``<stem>-runs/``) or one run folder."""
    from transfer_gui.engine import runs as runs_mod

    path = Path(target)
    if path.suffix == ".toml" and path.is_file():
        path = project_runs_dir(path)
    if not path.is_dir():
        raise CliError(f"no runs folder {path}: give a runs folder (e.g. project-runs/) or a project file")
    one = runs_mod.run_info(path)
    return [one] if one is not None else runs_mod.list_runs(path)


def _runs_line(row) -> str:
    from datetime import datetime

    i = row.info
    best = f"{i.best_val_acc:.1%} @{i.best_epoch}" if not math.isnan(i.best_val_acc) else "-"
    test = f"{i.test_acc:.1%}" if not math.isnan(i.test_acc) else "-"
    secs = f"{i.seconds:.0f} s" if not math.isnan(i.seconds) else "-"
    when = datetime.fromtimestamp(i.started).strftime("%Y-%m-%d %H:%M")
    return (f"{i.run_dir.name:<20}{when:<18}{i.model:<22}{i.epochs_done:>6}{best:>12}{test:>8}{secs:>9}  "
            f"{i.state.replace('_', ' '):<14}{row.diff_text(limit=4)}")


def cmd_runs(args: argparse.Namespace) -> int:
    from transfer_gui.engine.runs import table

    rows = table(_runs_of(args.folder))
    if args.json:
        print(json.dumps([r.as_json() for r in rows], indent=1))
    if not rows:
        print(f"{PROG}: no runs in {args.folder} (a run folder holds config.toml)", file=sys.stderr)
        return 1
    if not args.json:
        print(f"{'run':<20}{'started':<18}{'model':<22}{'epochs':>6}{'best val':>12}{'test':>8}{'time':>9}  "
              f"{'status':<14}changed from the run before")
        for row in rows:
            print(_runs_line(row))
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    from transfer_gui.ui.app import run_app

    project = getattr(args, "project", None)
    return run_app([PROG, project] if project else [PROG])


# ----------------------------------------------------------------------------- parser

EPILOG = f"""\
examples:
  {PROG} train --data photos/ --out runs/first --epochs 5
  {PROG} train project.toml --set train.epochs=3 --set model.name='resnet50'
  {PROG} lr-find --data photos/ --model resnet18
  {PROG} predict runs/first cat.jpg more_photos/ --top-k 3
  {PROG} evaluate runs/first --data test_photos/ --out runs/first/report
  {PROG} export runs/first --format onnx --out model.onnx

A mistyped folder or model name is refused at once: exit code 2 and one line
'{PROG}: error: ...'. `{PROG} COMMAND --help` describes each command."""


def _sub(sub, name: str, summary: str, description: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=description, epilog=f"example:\n  {PROG} {example}",
                          formatter_class=_Formatter)


def _add_gui(sub) -> None:
    p = _sub(sub, "gui", "start the window (the default)", "Open the window, optionally with a project.",
             "gui project.toml")
    p.add_argument("project", nargs="?", metavar="PROJECT", help="a project/config file (.toml) to open")
    p.set_defaults(func=cmd_gui)


def _add_train(sub) -> None:
    p = _sub(sub, "train", "train a model from a config file or the quick form",
             "Train from a config file (CONFIG), from options alone (the quick form), or continue a stopped "
             "run (--resume). Folders, weights file and model name are checked before anything loads.",
             "train --data photos/ --out runs/first --model resnet18 --epochs 5")
    _add_quick_options(p)
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a stopped or killed run from its last checkpoint (uses RUN_DIR/config.toml; "
                        "--set still applies)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines; only the result")
    p.set_defaults(func=cmd_train)


def _add_lr_find(sub) -> None:
    p = _sub(sub, "lr-find", "sweep the learning rate and suggest one",
             "Train for a few steps with the learning rate rising exponentially from --start-lr to --end-lr, "
             "plot the loss, and suggest a head learning rate. Takes the same config/quick-form options as "
             "train; nothing is saved.",
             "lr-find --data photos/ --model resnet18 --steps 50")
    _add_quick_options(p)
    p.add_argument("--steps", type=int, default=100, metavar="N", help="steps in the sweep, >= 2 (default: 100)")
    p.add_argument("--start-lr", type=float, default=1e-7, metavar="LR",
                   help="learning rate of the first step (default: 1e-7)")
    p.add_argument("--end-lr", type=float, default=1.0, metavar="LR",
                   help="learning rate of the last step, > --start-lr (default: 1)")
    p.add_argument("--json", action="store_true",
                   help='print {"lrs": [...], "losses": [...], "suggestion": LR} instead of the text plot')
    p.add_argument("--quiet", action="store_true", help="no progress bars; only the result")
    p.set_defaults(func=cmd_lr_find)


def _add_probe(sub) -> None:
    p = _sub(sub, "probe", "which layers should I train? probe every depth and suggest --train-from",
             "Run the images once through the frozen network, fit a linear classifier on the pooled activations "
             "entering every layer group (training images) and score it on the validation images, then suggest "
             "the group to train from: the first one whose input scores within --tolerance of the best (the head "
             "only when that is the head's input). Takes the same config/quick-form options as train; nothing is "
             "trained or saved.",
             "probe --data photos/ --image-size 128 --json")
    _add_quick_options(p)
    p.add_argument("--tolerance", type=float, metavar="POINTS",
                   help="accuracy points a depth may lack against the best and still be picked "
                        "(default: the engine's, 5)")
    p.add_argument("--json", action="store_true",
                   help='print the result as JSON: {"depths": [{"train_from", "after", "module", "dim", '
                        '"train_accuracy", "val_accuracy"}, ...], "suggested_train_from", "reason", "groups", ...}')
    p.add_argument("--quiet", action="store_true", help="no progress bars; only the result")
    p.set_defaults(func=cmd_probe)


def _add_audit(sub) -> None:
    p = _sub(sub, "audit", "what is wrong with my data? label issues, duplicates, leaks, outliers, imbalance",
             "Compute the configured model's frozen features of every training, validation and test image once, "
             "then look for images that are probably in the wrong class folder (out-of-fold predictions of a linear "
             "head and confident learning), exact and near duplicates, the same image in two of the sets (a leak), "
             "images far from every class, and classes with more than 3x the images of another. Writes "
             "OUT/audit.json; nothing is moved, deleted or trained.",
             "audit --data photos/ --out audit/ --image-size 128")
    p.add_argument("config", nargs="?", metavar="CONFIG",
                   help="a run config (.toml): its folders, model, image size and decisions; the options below "
                        "override it")
    p.add_argument("--data", action="append", default=[], metavar="DIR",
                   help="a folder of class folders, or one class folder (repeatable)")
    p.add_argument("--val-data", action="append", default=[], metavar="DIR",
                   help="a separate validation folder (repeatable); default: the config's split")
    p.add_argument("--model", metavar="NAME",
                   help=f"the model whose frozen features are compared (default: {_D.model.name}, offline)")
    p.add_argument("--image-size", type=int, metavar="PX",
                   help="input size in pixels, 16-2048 (default: the model's own, e.g. 224)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write audit.json into (required)")
    p.add_argument("--folds", type=int, default=5, metavar="K",
                   help="folds of the out-of-fold predictions, >= 2 (default: 5)")
    p.add_argument("--json", action="store_true",
                   help='print the audit.json document: {"label_issues": [{"path", "given", "suggested", "score", '
                        '"reason"}, ...], "duplicates": [{"a", "b", "similarity", "kind", "reason"}, ...], '
                        '"outliers": [{"path", "score", "reason"}, ...], "class_counts", "imbalance", ...}')
    p.add_argument("--quiet", action="store_true", help="no progress bars; only the summary")
    p.set_defaults(func=cmd_audit)


def _add_predict(sub) -> None:
    p = _sub(sub, "predict", "classify images with an exported model or a run folder",
             "Print the most likely classes of each image. Folders are searched recursively; files that "
             "cannot be decoded (or are missing) are listed on stderr and skipped. Exit codes: 0 every input "
             f"predicted; {PREDICT_SOME_FAILED} some predicted, some not; {PREDICT_ALL_FAILED} none could be "
             "predicted; 2 refused (bad option, model or no input found).",
             "predict model.onnx photos/ --top-k 2 --json")
    p.add_argument("model", metavar="MODEL",
                   help="a run folder, checkpoint (.pt), .safetensors, TorchScript or .onnx file")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    p.add_argument("--top-k", type=int, default=3, metavar="K", help="classes to show per image (default: 3)")
    p.add_argument("--json", action="store_true",
                   help='print a JSON list of {"path", "top": [[class, probability], ...], "unsure"} (or "error")')
    p.add_argument("--csv", metavar="FILE",
                   help="also write FILE: path,pred,confidence, one probability column per class, answer (the class "
                        "or 'unsure', when the model has a confidence threshold) and error (files not read)")
    p.set_defaults(func=cmd_predict)


def _add_evaluate(sub) -> None:
    p = _sub(sub, "evaluate", "measure a model on labelled images and write a report",
             "Classify every image in the class folders of --data with a run or an exported model and write "
             "metrics.json, predictions.csv and a self-contained report.html into --out. Without --data, a run "
             "folder's saved test (or validation) predictions are reported.",
             "evaluate runs/first --data photos_test/ --out runs/first/report")
    p.add_argument("source", metavar="RUN_OR_MODEL",
                   help="a run folder, checkpoint (.pt), .safetensors, TorchScript or .onnx file")
    p.add_argument("--data", metavar="DIR",
                   help="a folder with one sub-folder of images per class (names as the model's classes)")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="the folder to write the report files into")
    p.add_argument("--split", choices=("val", "test"),
                   help="without --data: which of the run's saved sets to report (default: test when the run has "
                        "one, else val)")
    p.add_argument("--quiet", action="store_true", help="no progress bar; only the summary")
    p.set_defaults(func=cmd_evaluate)


def _add_explain(sub) -> None:
    p = _sub(sub, "explain", "draw a heat map of where the model looked in an image (Grad-CAM)",
             "Write IMAGE with a heat map over it: red where the model found the most evidence for the predicted "
             "class (or --class), from the gradient at its last spatial layer, at the image's own size (what the "
             "model's centre crop cuts off is 0). Needs the module: a run folder, checkpoint or safetensors file.",
             "explain runs/first photo.jpg --out photo-heat.png --npy photo-heat.npy --class cat")
    p.add_argument("model", metavar="RUN_OR_MODEL", help="a run folder, checkpoint (.pt) or .safetensors file")
    p.add_argument("image", metavar="IMAGE", help="the image to explain")
    p.add_argument("--out", required=True, metavar="OVERLAY.png", help="the PNG to write: the image with the heat "
                                                                       "map over it (required)")
    p.add_argument("--npy", metavar="HEATMAP.npy",
                   help="also write the heat map: a float32 array of the image's height x width, values in 0..1")
    p.add_argument("--class", dest="class_name", metavar="NAME",
                   help="the class to explain, one of the model's class names (default: the predicted class)")
    p.add_argument("--json", action="store_true",
                   help='print {"class", "class_index", "probability", "predicted", "target_layer", ...} as JSON')
    p.set_defaults(func=cmd_explain)


def _add_export(sub) -> None:
    p = _sub(sub, "export", "export a trained run as a checkpoint, safetensors, TorchScript or ONNX",
             "Write a run's best checkpoint in another format, then load the written file back and check that "
             "it reproduces the PyTorch outputs (parity check).",
             "export runs/first --format onnx --out model.onnx")
    p.add_argument("run_dir", metavar="RUN", help="a run folder (its best checkpoint is used) or a checkpoint file")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS + QUANTIZED_FORMATS,
                   help="the file format to write (required); onnx-int8 is calibrated on the run's training "
                        "images and prints its agreement and accuracy against fp32 on the validation set")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the file to write (required); an existing folder gets a file named after the run, and "
                        "a name without suffix gets the format's")
    p.add_argument("--parity-images", metavar="DIR",
                   help="up to 32 images from DIR for the parity check (default: up to 32 of the run's validation "
                        "images, else its training images; synthetic images only when the run's data is gone)")
    p.add_argument("--kit", action="store_true",
                   help="also write a deploy kit beside the file (FILE-kit/: the model, labels.txt, a README and a "
                        "predict.py needing only onnxruntime, numpy and Pillow); onnx and onnx-rgb only")
    p.add_argument("--accept-int8-loss", action="store_true",
                   help="onnx-int8 only: write the int8 file even when it loses more than 1 point of validation "
                        "accuracy against fp32 (or keeps the fp32 top-1 class on under 90 %% of the images); "
                        "without it such a file is not written and the command exits 2")
    p.set_defaults(func=cmd_export)


def _add_models(sub) -> None:
    p = _sub(sub, "models", "list the models you can train",
             "List the offline model, torchvision's classification models and featured timm models, with size, "
             "input size, ImageNet top-1 and whether the weights are installed, cached or must be downloaded. "
             "Any timm model works as timm:NAME.",
             "models --groups resnet18")
    p.add_argument("--json", action="store_true", help="print a JSON list of the models with all their fields")
    p.add_argument("--groups", metavar="MODEL",
                   help="list MODEL's layer groups instead (the names --freeze, --train-from, --lr GROUP=VALUE and "
                        "layers.unfreeze_at take), input side first, with their parameter counts")
    p.set_defaults(func=cmd_models)


def _add_runs(sub) -> None:
    p = _sub(sub, "runs", "list a project's runs and what changed between them",
             "List the runs in a runs folder, newest first: when each started, its model, epochs, best validation "
             "accuracy (at which epoch, counted from 1), test accuracy, time, how it ended, and which settings "
             "differ from the run before it. Exits 1 when the folder holds no runs.",
             "runs cells-runs/ --json")
    p.add_argument("folder", nargs="?", default="runs", metavar="RUNS_FOLDER",
                   help="a runs folder, a project file (.toml: its <name>-runs/ folder) or one run folder "
                        "(default: runs/, where runs without a project go)")
    p.add_argument("--json", action="store_true",
                   help='print a JSON list, one object per run: {"run_dir", "model", "started", "status", '
                        '"epochs_done", "best_epoch", "best_val_acc", "test_acc", "seconds", "previous", '
                        '"config_diff": {dotted key: [old, new]} (null for the oldest run)}')
    p.set_defaults(func=cmd_runs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Transfer learning of image classifiers: the window, or these commands "
                                            "on the same engine and config files. With no command, the window opens.",
                     epilog=EPILOG, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND",
                                help="one of the commands below (default: gui)")
    _add_gui(sub)
    _add_train(sub)
    _add_lr_find(sub)
    _add_probe(sub)
    _add_audit(sub)
    _add_predict(sub)
    _add_evaluate(sub)
    _add_explain(sub)
    _add_export(sub)
    _add_models(sub)
    _add_runs(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return cmd_gui(args)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `transfer-gui models | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted" + ("; the last checkpoint is kept" if args.command == "train" else ""), file=sys.stderr)
        return 130
    except UserError as exc:  # the user's to fix (config, folders, model, groups, export): one line
        parser.exit(2, f"{PROG}: error: {_one_line(exc)}\n")
    return 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
