"""Save a screenshot of every step of the window during a real run on the bundled sample data.

    python tools/screenshots.py [--out docs/screenshots] [--size 1280x800] [--scale 2 --prefix hidpi-]

Runs headless (Qt's offscreen platform) unless a display is wanted with ``--show`` (e.g. an
Xvfb screen of 2732x1536 with ``--scale 2 --size 1366x768`` for a 200 % desktop). Writes
``NN-step.png`` in the light theme and ``dark-NN-step.png`` in the dark one, after ``--prefix``. Settings and run
folders go to a temporary directory, so nothing of the user's is touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--size", default="1280x800")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--show", action="store_true", help="use the real display instead of offscreen")
    ap.add_argument("--scale", type=float, default=1.0, help="Qt scale factor (QT_SCALE_FACTOR), e.g. 2 for HiDPI")
    ap.add_argument("--prefix", default="", help="put before every file name, e.g. hidpi-")
    ap.add_argument("--no-dark", action="store_true", help="skip the dark-theme screenshots")
    args = ap.parse_args(argv)
    if not args.show:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    if args.scale != 1.0:
        os.environ["QT_SCALE_FACTOR"] = f"{args.scale:g}"
    work = Path(tempfile.mkdtemp(prefix="transfer_gui_shots_"))
    os.environ["XDG_DATA_HOME"] = str(work / "data")
    os.environ["XDG_CONFIG_HOME"] = str(work / "config")
    sys.path.insert(0, str(ROOT))
    try:
        return _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args, work: Path) -> int:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from transfer_gui.ui import theme
    from transfer_gui.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(["transfer_gui"])
    app.setOrganizationName("transfer_gui")
    app.setApplicationName("transfer_gui")
    theme.apply_theme(app, "light")
    w, h = (int(v) for v in args.size.lower().split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    win = MainWindow(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    win.resize(w, h)
    win.show()
    win.start_background_work()

    def pump(seconds: float = 0.2) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    def wait(cond, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise TimeoutError("the window did not get there in time")
            pump(0.05)

    def shoot(name: str, widget=None) -> None:
        pump(0.3)
        target = widget or win
        path = out / f"{prefix}{name}.png"
        target.grab().save(str(path))
        print("wrote", path)

    prefix = args.prefix
    p = win.project
    # 1. Data: the sample data, with thumbnails and the augmentation preview
    win.data.load_sample()
    wait(lambda: p.scan is not None)
    wait(lambda: bool(win.data.preview.images))
    shoot("01-data")
    # 2. Model
    win.go_to("Model")
    wait(lambda: bool(win.model.specs))
    p.set("data.image_size", 96)
    shoot("02-model")
    # 3. Layers: fine-tune the last groups with discriminative rates and warmup
    win.go_to("Layers")
    wait(lambda: win.layers._info() is not None)
    names = win.layers._info().names
    p.update({"layers.train_from": names[-3], "layers.lr_decay": 0.3, "layers.head_lr": 2e-3,
              "schedule.warmup_epochs": 1.0, "train.epochs": args.epochs, "train.batch_size": 32,
              "data.test_fraction": 0.2, "output.dir": ""})  # into the project's runs folder
    win.layers.start_probe()  # "Which layers should I train?": the probe's accuracy beside each group
    wait(lambda: win.layers.probe_result is not None and not win.tasks.running("probe"), 600)
    shoot("03-layers")
    # 4. Training: in the middle of the run, then at its end
    win.go_to("Training")
    win.training.start()
    wait(lambda: win.training.monitor.epoch_x and win.training.monitor.epoch_x[-1] >= max(1, args.epochs // 2), 600)
    win.training.toggle_pause()
    pump(0.3)
    shoot("04-training-paused")
    win.training.toggle_pause()
    wait(lambda: not win.training.is_running(), 600)
    wait(lambda: p.record is not None)
    win.go_to("Training")
    shoot("04-training")
    # 5. Results: the test set's accuracy, confidence, mistakes with heat maps, try it with one
    win.go_to("Results")
    r = win.results
    if r.set_choice.count() > 1:
        r.set_choice.setCurrentIndex(1)
        r.set_choice.activated.emit(1)
    r.tabs.setCurrentWidget(r.quality)
    shoot("05-results")
    r.tabs.setCurrentWidget(r.confidence)
    r.confidence.explorer.slider.setValue(80)
    shoot("05-results-confidence")
    r.tabs.setCurrentWidget(r.mistakes)
    r.mistakes.heat.setChecked(True)
    pump(1.0)
    wait(lambda: not win.tasks.running("mistake-heat"), 300)
    shoot("05-results-mistakes")
    sample = sorted((Path(p.cfg.data.folders[0]) / "Sneaker").glob("*.png"))[0]
    r.try_images([str(sample)])
    wait(lambda: bool(r.try_it.results))
    r.try_it.heat.setChecked(True)
    wait(lambda: r.try_it.heat_state in ("shown", "failed"), 300)
    shoot("05-results-try-it")
    # 6. Export: checkpoint and ONNX with the parity check
    win.go_to("Export")
    win.export.set_formats(["checkpoint", "onnx", "onnx-rgb"])
    win.export.kit_check.setChecked(True)  # the receiver's deploy kit beside each ONNX file
    win.export.folder.setText(str(work / "export"))
    win.export.export()
    wait(lambda: bool(win.export.reports) and not win.tasks.running("export"), 300)
    shoot("06-export")
    # Results > Runs: a second run (the head only, a larger rate, fewer epochs) beside the first
    first = p.record.run_dir
    p.update({"layers.train_from": names[-1], "layers.head_lr": 5e-3, "train.epochs": max(2, args.epochs // 2)})
    win.go_to("Training")
    win.training.start()
    wait(lambda: win.training.is_running(), 60)
    wait(lambda: not win.training.is_running(), 600)
    wait(lambda: p.record is not None and p.record.run_dir != first)
    win.go_to("Results")
    r.tabs.setCurrentWidget(r.runs_compare)
    wait(lambda: r.runs_compare.table.rowCount() >= 2)
    r.runs_compare.select_runs([p.record.run_dir, first])
    shoot("05-runs")
    # the learning-rate finder's dialog
    win.go_to("Training")
    win.training.find_lr()
    wait(lambda: not win.training.is_running(), 900)
    dialog = getattr(win.training, "lrfind_dialog", None)
    if dialog is not None:
        shoot("07-lr-finder", dialog)
        dialog.close()

    if args.no_dark:
        p.dirty = False
        win.close()
        win.tasks.shutdown()
        return 0
    # the same steps in the dark theme
    prefix = args.prefix + "dark-"
    win.set_theme("dark")
    win.results.tabs.setCurrentWidget(win.results.quality)
    for i, step in enumerate(("Data", "Model", "Layers", "Training", "Results", "Export"), start=1):
        win.go_to(step)
        shoot(f"{i:02d}-{step.lower()}")
    win.set_theme("light")
    p.dirty = False
    win.close()
    win.tasks.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
