"""Step 4, Training: device, batch size, epochs, precision, early stopping and the run folder;
Start / Pause / Stop; live plots, progress with ETA, a log; and the learning-rate finder.

Training runs on its own QThread (ui/worker.py); this page only shows what the engine reports.
"""

from __future__ import annotations

import html
import importlib.util
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from transfer_gui.engine import events as ev
from transfer_gui.engine import runs as runs_mod
from transfer_gui.engine.wording import describe
from transfer_gui.state.run_monitor import RunMonitor
from transfer_gui.ui import applog, dialogs
from transfer_gui.ui.context import Context
from transfer_gui.ui.steps import readiness
from transfer_gui.ui.theme import status_colors
from transfer_gui.ui.widgets.run_progress import RunProgress
from transfer_gui.ui.widgets.train_plots import TrainPlots
from transfer_gui.ui.widgets.train_settings import TrainSettings
from transfer_gui.ui.worker import EngineRun, fit_job


def resume_job(cfg):
    """A job that goes on with the run in ``cfg.output.dir`` from its last.pt: the engine's
    resume, as ``transfer-gui train --resume`` runs it (torch imported on the worker thread)."""

    def job(emit, control):
        from transfer_gui.engine.loop import Trainer

        return Trainer().fit(cfg, emit, control, resume=True)

    return job


def lrfind_available() -> bool:
    try:
        return importlib.util.find_spec("transfer_gui.engine.lrfind") is not None
    except (ImportError, ValueError):
        return False


RESUME_TIP = ("Train the rest of a run that ended early from its last checkpoint, with its own settings (its "
              "config.toml), as “transfer-gui train --resume” does.")

class TrainingPage(QWidget):
    running_changed = Signal(bool)
    paused_changed = Signal(bool)
    run_finished = Signal(str, bool)  # run folder, whether to show the Results step now

    def __init__(self, ctx: Context):
        super().__init__()
        self.ctx = ctx
        self.project = ctx.project
        self.run: EngineRun | None = None
        self.kind = ""  # "train" | "lrfind"
        self.monitor = RunMonitor()  # the training run the plots show
        self.active = self.monitor  # the run in progress (training or LR finder)
        self.last_finished: ev.Finished | None = None
        self._build()
        self.timer = QTimer(self, interval=400)  # redraw at most 2.5 times a second: repaints cost training CPU
        self.timer.timeout.connect(self._redraw)
        self.project.config_changed.connect(lambda _k: self._update_buttons())
        for sig in (self.project.runs_changed, self.project.run_changed):
            sig.connect(lambda *_: self._update_buttons())
        self._update_buttons()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.settings_box = box = TrainSettings(self.ctx)
        # the fields, for callers that drive the page
        self.device, self.batch, self.epochs, self.out_dir = box.device, box.batch, box.epochs, box.out_dir

        self.start_btn = QPushButton("▶ Start training")
        self.start_btn.setToolTip("Start training with these settings (Ctrl+Return).")
        self.start_btn.clicked.connect(self.start)
        self.pause_btn = QPushButton("Pause")
        self.pause_btn.setToolTip("Pause between batches; Resume carries on exactly where it stopped (Ctrl+P).")
        self.pause_btn.clicked.connect(self.toggle_pause)
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setToolTip("Stop after the current batch. Finished epochs and their checkpoints are kept (Ctrl+.).")
        self.stop_btn.clicked.connect(self.stop)
        self.lrfind_btn = QPushButton("Find learning rate…")
        self.lrfind_btn.setToolTip("Train briefly while raising the learning rate, plot the loss, and suggest "
                                   "a head rate (takes a few seconds to a minute).")
        self.lrfind_btn.clicked.connect(self.find_lr)
        self.resume_btn = self._resume_button()
        controls = QVBoxLayout()
        controls.addWidget(self.start_btn)
        controls.addWidget(self.resume_btn)
        row = QHBoxLayout()
        row.addWidget(self.pause_btn)
        row.addWidget(self.stop_btn)
        controls.addLayout(row)
        controls.addWidget(self.lrfind_btn)

        left = QVBoxLayout()
        left.addWidget(box)
        left.addLayout(controls)
        left.addStretch(1)
        left_w = QWidget()
        left_w.setLayout(left)
        left_w.setFixedWidth(300)

        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        self.progress = RunProgress()
        self.run_bar = self.progress.run_bar
        self.plots = TrainPlots()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setFixedHeight(96)
        self.log.setToolTip("What the engine reports: data preparation, each epoch, warnings and how the run ended.")
        self.log.setPlaceholderText("The training log appears here.")
        right = QVBoxLayout()
        right.addWidget(self.message)
        right.addWidget(self.progress)
        right.addWidget(self.plots, 1)
        right.addWidget(self.log)

        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(left_w)
        lay.addLayout(right, 1)

    def _resume_button(self) -> QPushButton:
        """Shown only while a run that ended early can be resumed."""
        btn = QPushButton("Resume run")
        btn.setToolTip(RESUME_TIP)
        btn.clicked.connect(self._resume_offered)
        btn.setVisible(False)
        return btn

    # ------------------------------------------------------------------ settings
    def on_shown(self) -> None:
        self.load_devices()

    def load_devices(self) -> None:
        self.settings_box.load_devices()

    # ------------------------------------------------------------------ run control
    def is_running(self) -> bool:
        return self.run is not None and self.run.running

    def is_paused(self) -> bool:
        return self.is_running() and self.run.paused

    def _run_config(self):
        cfg = self.project.cfg
        if not cfg.output.dir:
            cfg = cfg.replace(**{"output.dir": str(runs_mod.new_run_dir(self.project.runs_dir()))})
        return cfg

    def _begin(self, job, kind: str, cfg, check: bool = True) -> bool:
        """Start ``job`` on its thread; ``check``: only when the project is ready to train (a
        resume trains with the run's own settings, not the project's)."""
        if self.is_running():
            return False
        why = readiness(self.project, "Training") if check else ""
        if why:
            self._show_message(f"Cannot start yet. {why}", "error")
            self.ctx.status(why)
            return False
        self.kind = kind
        if kind == "train":
            self.monitor.reset()
            self.plots.reset()
            self.active = self.monitor
        else:
            self.active = RunMonitor()  # the LR finder leaves the last run's curves alone
        self.last_finished = None
        self.message.setVisible(False)
        if self.run is not None:
            self.run.deleteLater()  # the previous run's thread has ended; free its objects
        self.run = EngineRun(job, cfg.output.dir, self)
        self.run.event.connect(self._on_event)
        self.run.result.connect(self._on_result)
        self.run.done.connect(self._on_done)
        self.project.set_training(True)
        self.run.start()
        self.timer.start()
        self._update_buttons()
        self.running_changed.emit(True)
        return True

    def start(self) -> None:
        if self.is_running():
            return
        cfg = self._run_config()
        if (Path(cfg.output.dir) / "config.toml").is_file() and not dialogs.ask_yes_no(
                self, "Run folder in use", f"{cfg.output.dir} already holds a run. Train into it anyway? Its "
                f"checkpoints and metrics will be replaced.\n\nChoose No, then clear “Run folder” to get a new "
                f"folder for every run."):
            return
        if self._begin(fit_job(cfg), "train", cfg):
            applog.info(f"train started: {cfg.model.name}, {cfg.train.epochs} epochs, {cfg.output.dir}")
            self.log.clear()
            self._log(f"Starting: {cfg.model.name}, {cfg.train.epochs} epochs, batch {cfg.train.batch_size}, "
                      f"run folder {cfg.output.dir}", "muted")

    def resume_run(self, run_dir: str) -> bool:
        """Go on with the run in ``run_dir`` from its last checkpoint, with its own config.toml
        (as ``transfer-gui train --resume``); its earlier epochs stay on the plots."""
        from transfer_gui.config import ConfigError
        from transfer_gui.engine.rundir import RunFolderError

        if self.is_running():
            return False
        try:
            cfg = runs_mod.resume_config(run_dir)
        except (ConfigError, RunFolderError) as exc:
            self._show_message(f"Cannot resume: {html.escape(str(exc))}", "error")
            return False
        info = runs_mod.run_info(run_dir)
        if not self._begin(resume_job(cfg), "train", cfg, check=False):
            return False
        history = runs_mod.read_history(run_dir)
        self.monitor.load_history(history)
        applog.info(f"train resumed: {run_dir} after {len(history)} epoch(s)")
        self.log.clear()
        state = f" ({info.state})" if info is not None else ""
        self._log(f"Resuming {Path(run_dir).name}{state} from epoch {len(history) + 1} of {cfg.train.epochs} with "
                  f"its own settings: {cfg.model.name}, batch {cfg.train.batch_size}", "muted")
        self.ctx.go_to("Training")
        return True

    def _resume_offered(self) -> None:
        run_dir = self.resume_btn.property("run_dir")
        if run_dir:
            self.resume_run(str(run_dir))

    def find_lr(self) -> None:
        if not lrfind_available():
            self._show_message("The learning-rate finder is not part of this version of the engine "
                               "(transfer_gui.engine.lrfind is missing).", "warn")
            return
        cfg = self.project.cfg
        if not cfg.output.dir:
            cfg = cfg.replace(**{"output.dir": str(runs_mod.user_runs_root() / "lr_find")})  # writes nothing there

        def job(emit, control):
            from transfer_gui.engine.lrfind import lr_find

            return lr_find(cfg, emit, control)

        if self._begin(job, "lrfind", cfg):
            self._log("Finding a learning rate: short training steps at rising rates…", "muted")

    def toggle_pause(self) -> None:
        if not self.is_running():
            return
        if self.run.paused:
            self.run.resume()
            self.active.resume()
            self._log("Resumed.", "muted")
        else:
            self.run.pause()
            self.active.pause()
            self._log("Paused: training waits between batches. Press Resume to continue.", "muted")
        self._update_buttons()
        self._redraw()  # the run bar says "paused" at once, not at the next redraw
        self.project.set_paused(self.run.paused)
        self.paused_changed.emit(self.run.paused)

    def stop(self) -> None:
        if self.is_running():
            self.run.stop()
            self.active.resume()
            self.project.set_paused(False)
            self._log("Stopping after the current batch…", "muted")
            self.run_bar.setFormat("Stopping…")
            self._update_buttons()

    def shutdown(self, timeout_ms: int = 60000) -> None:
        """Stop a run and wait for its thread (window closing)."""
        if self.run is not None and self.run.running:
            self.run.wait(timeout_ms)

    def _update_buttons(self) -> None:
        running = self.is_running()
        self.start_btn.setEnabled(not running)
        self.lrfind_btn.setEnabled(not running)
        self.pause_btn.setEnabled(running and not (self.run and self.run.control.stop_requested))
        self.stop_btn.setEnabled(running and not (self.run and self.run.control.stop_requested))
        self.pause_btn.setText("Resume" if self.is_paused() else "Pause")
        self.settings_box.set_running(running)
        offer = None if running else self.project.resume_offer()
        self.resume_btn.setVisible(offer is not None)
        if offer is not None:
            self.resume_btn.setText(f"\u27f3 Resume run from epoch {offer.resume_epoch}")
            self.resume_btn.setToolTip(f"{offer.run_dir.name} ended after epoch {offer.epochs_done} "
                                       f"({offer.state}): train its remaining epochs from its last checkpoint, "
                                       f"with its own settings, as \u201ctransfer-gui train --resume\u201d does.")
            self.resume_btn.setProperty("run_dir", str(offer.run_dir))

    # ------------------------------------------------------------------ events
    def _on_event(self, e: object) -> None:
        self.active.ingest(e)
        line = describe(e)  # the same sentence the command line prints
        if isinstance(e, ev.RunStarted) and self.kind == "train":
            self.plots.reset(e.groups, e.trainable_groups)
        elif isinstance(e, ev.Finished):
            self.last_finished = e
            applog.info(f"{self.kind} {e.status}: {e.message} ({e.run_dir})")
            if e.status == "failed":
                self._show_message(f"<b>Training failed.</b> {html.escape(e.message)}", "error")
            elif e.status in ("stopped", "early_stopped"):
                self._show_message(html.escape(e.message), "warn")
        if line is not None and not (isinstance(e, ev.RunStarted) and self.kind != "train"):
            self._log(*line)

    def _on_result(self, result: object) -> None:
        if self.kind == "lrfind" and result is not None and hasattr(result, "suggestion"):
            from transfer_gui.ui.widgets.lrfind_view import LRFindDialog

            self.lrfind_dialog = LRFindDialog(result, self)
            self.lrfind_dialog.apply_lr.connect(self._apply_lr)
            self.lrfind_dialog.show()
        elif self.kind == "lrfind" and self.last_finished is None and result is None:
            self._show_message("The learning-rate finder did not return a result; see the log.", "error")

    def _apply_lr(self, lr: float) -> None:
        self.project.set("layers.head_lr", float(f"{lr:.3g}"))
        self.ctx.status(f"Head learning rate set to {lr:.3g}.")

    def _on_done(self) -> None:
        self.timer.stop()
        self._redraw()
        kind = self.kind
        self.project.set_training(False)
        self._update_buttons()
        self.running_changed.emit(False)
        self.paused_changed.emit(False)
        f = self.last_finished
        if kind == "train":
            run_dir = f.run_dir if f is not None else (self.active.started.run_dir if self.active.started else "")
            self._run_ended(run_dir, f)
        elif kind == "lrfind":
            self.progress.finished_lr_find()
            self.active = self.monitor
            self._redraw()

    def _run_ended(self, run_dir: str, f: ev.Finished | None) -> None:
        """Show a run on Results once it has a finished epoch, as the project's result when it
        trained to its end. A run that ended early (stopped, failed) never replaces a finished run
        shown there, as on reopening (runs.latest_finished): it is offered for resuming instead.
        One that reused the shown run's folder replaced its files, so it is shown (or nothing)."""
        info = runs_mod.run_info(run_dir) if run_dir else None
        shown = self.project.run_dir
        same = shown is not None and bool(run_dir) and Path(run_dir).absolute() == shown.absolute()
        if info is not None and info.has_finished_epoch:
            shown_info = runs_mod.run_info(shown) if shown is not None and not same else None
            if info.finished or same or shown_info is None or not shown_info.finished:
                self.run_finished.emit(run_dir, info.finished)  # a failure stays here, with its message
            return
        if same:
            self.project.set_run(None, None)  # its files were replaced by the run that just ended

    # ------------------------------------------------------------------ drawing
    def on_theme_changed(self) -> None:
        self.plots.groups_view.restyle()

    def _redraw(self) -> None:
        self.plots.update_from(self.monitor)
        if self.kind == "lrfind" and not self.is_running():
            return
        self.progress.show_state(self.active, self.is_running(), self.is_paused(), self.kind)

    def _log(self, text: str, kind: str = "") -> None:
        color = status_colors().get(kind)
        stamp = datetime.now().strftime("%H:%M:%S")
        body = html.escape(text)
        if color:
            body = f"<span style='color:{color}'>{body}</span>"
        self.log.appendHtml(f"<span style='color:{status_colors()['muted']}'>{stamp}</span> {body}")

    def _show_message(self, text: str, kind: str) -> None:
        c = status_colors()[kind]
        self.message.setText(text)
        self.message.setStyleSheet(f"QLabel {{ color: {c}; border: 1px solid {c}; border-radius: 4px; padding: 6px; }}")
        self.message.setVisible(True)
