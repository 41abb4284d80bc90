"""Command line: the same engine as the window, on the config file the window saves.

    transfer-gui                         start the window
    transfer-gui train CONFIG.toml [--set key=value]...
    transfer-gui train --data DIR --out DIR [--model NAME] ...
    transfer-gui train --resume RUN_DIR
    transfer-gui predict MODEL_FILE IMAGE_OR_DIR... [--top-k K] [--json]
    transfer-gui export RUN_DIR --format onnx --out FILE
    transfer-gui lr-find CONFIG.toml | --data DIR ...
    transfer-gui models [--json]
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


class CliError(Exception):
    """A one-line message for the user; exit code 2."""


def _add_quick_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="a run config (.toml) saved by the window or written by hand")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    q = p.add_argument_group("quick form (no config file)")
    q.add_argument("--data", action="append", default=[], metavar="DIR",
                   help="a folder of class folders, or a class folder (repeatable)")
    q.add_argument("--val-data", action="append", default=[], metavar="DIR", help="separate validation folder")
    q.add_argument("--out", metavar="DIR", help="the run folder to write")
    q.add_argument("--model", help="model name (see `transfer-gui models`); default efficientnet_lite0")
    q.add_argument("--weights", help="pretrained | none | a weights file")
    q.add_argument("--freeze", metavar="GROUP,...", help="layer groups to freeze")
    q.add_argument("--train-from", metavar="GROUP", help="freeze every group before GROUP")
    q.add_argument("--lr", action="append", default=[], metavar="GROUP=VALUE", help="learning rate of one group")
    q.add_argument("--head-lr", type=float, help="learning rate of the new head")
    q.add_argument("--lr-decay", type=float, help="each group below the head gets lr x this factor per step down")
    w = q.add_mutually_exclusive_group()
    w.add_argument("--warmup-steps", type=int, help="linear warmup from 0 over N steps")
    w.add_argument("--warmup-epochs", type=float, help="linear warmup from 0 over N epochs")
    q.add_argument("--schedule", choices=config_mod.SCHEDULES)
    q.add_argument("--optimizer", choices=config_mod.OPTIMIZERS)
    q.add_argument("--epochs", type=int)
    q.add_argument("--batch-size", type=int)
    q.add_argument("--image-size", type=int, help="input size in pixels (default: the model's)")
    q.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    q.add_argument("--no-augment", action="store_true", help="turn off random augmentation")
    q.add_argument("--seed", type=int)


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


# ----------------------------------------------------------------------------- progress


class ConsoleProgress:
    """Engine events -> tqdm bars with ETA and one line per epoch."""

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
        elif isinstance(e, ev.EpochEnd):
            self.close()
            mark = " *" if e.is_best else ""
            self._print(f"epoch {e.epoch + 1}/{e.epochs}  train loss {e.train_loss:.4f} acc {e.train_acc:.1%}  "
                        f"val loss {e.val_loss:.4f} acc {e.val_acc:.1%}  {e.seconds:.1f}s{mark}")
        elif isinstance(e, ev.RunStarted):
            self.close()
            cache = "  (frozen backbone: features computed once)" if e.feature_cache else ""
            self._print(f"{len(e.classes)} classes, {e.train_size} training / {e.val_size} validation images on "
                        f"{e.device} ({e.precision}); training {', '.join(e.trainable_groups)}{cache}")
        elif isinstance(e, ev.PhaseChanged) and e.phase in ("prepare", "features", "lr_find"):
            self.close()
            self._print(e.message)
        elif isinstance(e, ev.Warning):
            self.close()
            self._print(f"warning: {e.message}")

    def _print(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)


# ----------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    from transfer_gui.engine.loop import Trainer

    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.toml").is_file():
            raise CliError(f"cannot resume {run_dir}: no config.toml there")
        cfg = config_mod.apply_overrides(config_mod.load(run_dir / "config.toml"), args.overrides)
        cfg = cfg.replace(**{"output.dir": str(run_dir)})
    else:
        cfg = _config_from_args(args)
        config_mod.check_paths(cfg)
        _check_model_name(cfg.model.name)
    from transfer_gui.engine import distributed

    progress = ConsoleProgress(quiet=args.quiet or not distributed.is_main_process())
    result = distributed.fit(cfg, progress, resume=bool(args.resume)) if distributed.is_distributed() else \
        Trainer().fit(cfg, progress, resume=bool(args.resume))
    progress.close()
    if result.status == "failed":
        if result.bad_input:
            raise CliError(result.message)
        print(f"transfer-gui: {result.message}", file=sys.stderr)
        if result.run_dir.is_dir():
            print(f"run folder: {result.run_dir}", file=sys.stderr)
        return 1
    if distributed.is_main_process():
        print(result.message)
        print(f"run folder: {result.run_dir}")
    return 0


def _check_model_name(name: str) -> None:
    """Fail before any work when the model name is unknown (timm names are checked by timm)."""
    from transfer_gui.engine.catalog import get_spec

    if not name.startswith("timm:"):
        get_spec(name)


def cmd_lr_find(args: argparse.Namespace) -> int:
    from transfer_gui.engine.lrfind import lr_find

    cfg = _config_from_args(args)
    config_mod.check_paths(cfg)
    if args.steps < 2 or not 0 < args.start_lr < args.end_lr:
        raise CliError(f"lr-find needs --steps >= 2 and 0 < --start-lr < --end-lr (got {args.steps}, "
                       f"{args.start_lr:g}, {args.end_lr:g})")
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


def cmd_predict(args: argparse.Namespace) -> int:
    from transfer_gui.engine.predict import Predictor

    predictor = Predictor.load(args.model)
    rows = predictor.predict_paths(args.images, top_k=args.top_k)
    if not rows:
        raise CliError("no images found in " + ", ".join(args.images))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for row in rows:
        if row.get("error"):
            print(f"{row['path']}: skipped ({row['error']})")
            continue
        tops = ", ".join(f"{name} {prob:.1%}" for name, prob in row["top"])
        print(f"{row['path']}: {tops}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from transfer_gui.engine.export import export_model

    images = None
    if args.parity_images:
        from transfer_gui.engine.scan import IMAGE_EXTENSIONS  # noqa: F401 - same list as the scanner

        images = [str(p) for p in sorted(Path(args.parity_images).rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS][:32]
    from transfer_gui.engine.atomic import remove_stale_parts

    out = Path(args.out)
    remove_stale_parts(out.parent, out.name)  # left by an export that was killed
    report = export_model(args.run_dir, args.format, args.out, parity_images=images)
    print(report.message)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
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


def cmd_gui(args: argparse.Namespace) -> int:
    from transfer_gui.ui.app import run_app

    project = getattr(args, "project", None)
    return run_app(["transfer-gui", project] if project else ["transfer-gui"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transfer-gui", description="Transfer learning of image classifiers.")
    parser.add_argument("--version", action="version", version=f"transfer-gui {__version__}")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("gui", help="start the window (the default)")
    p.add_argument("project", nargs="?", help="a project/config file to open")
    p.set_defaults(func=cmd_gui)
    p = sub.add_parser("train", help="train from a config file or the quick form")
    _add_quick_options(p)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or killed run from its last checkpoint")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("lr-find", help="sweep the learning rate and suggest one")
    _add_quick_options(p)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--start-lr", type=float, default=1e-7)
    p.add_argument("--end-lr", type=float, default=1.0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_lr_find)
    p = sub.add_parser("predict", help="classify images with an exported model or a run folder")
    p.add_argument("model", help="a run folder, checkpoint, .safetensors, TorchScript or .onnx file")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("export", help="export a trained run")
    p.add_argument("run_dir", help="a run folder or checkpoint")
    p.add_argument("--format", required=True, choices=("checkpoint", "safetensors", "torchscript", "onnx"))
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("--parity-images", metavar="DIR", help="images for the ONNX parity check (default: synthetic)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("models", help="list the models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
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
        print("interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130
    except (CliError, ConfigError) as exc:
        parser.exit(2, f"transfer-gui: error: {exc}\n")
    except Exception as exc:  # noqa: BLE001 - known engine errors become one line
        from transfer_gui.engine.catalog import ModelError
        from transfer_gui.engine.freezing import GroupError
        from transfer_gui.engine.scan import ScanError

        known: tuple[type[BaseException], ...] = (ModelError, GroupError, ScanError, FileNotFoundError)
        try:
            from transfer_gui.engine.export import ExportError

            known += (ExportError,)
        except ImportError:
            pass
        if isinstance(exc, known):
            parser.exit(2, f"transfer-gui: error: {exc}\n")
        raise
    return 0
