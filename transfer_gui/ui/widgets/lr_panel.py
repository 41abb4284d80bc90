"""Learning rates, optimizer, warmup and schedule, with a live preview of every group's
learning rate over the whole run (drawn by the engine's own schedule functions)."""

from __future__ import annotations

from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from transfer_gui import config as config_mod
from transfer_gui.engine import schedule as schedule_mod  # pure Python, no torch
from transfer_gui.state.project import Project
from transfer_gui.ui.binding import bind, fill_combo, signals_blocked
from transfer_gui.ui.theme import group_color
from transfer_gui.ui.widgets.plotting import add_curve, make_plot
from transfer_gui.ui.widgets.sci_spin import SciSpinBox, fmt_sci

TIPS = {
    "head_lr": "Learning rate of the new classification head (layers.head_lr). The head starts from "
               "scratch, so it usually takes the largest rate.",
    "decay": "Discriminative learning rates (layers.lr_decay): each layer group below the head gets this "
             "factor times the rate of the group above it. Early layers hold general features that "
             "should change less, so 0.3–0.5 is common; 1 = the same rate everywhere.",
    "warmup": "Warmup raises the learning rate from 0 to its target over the first steps or epochs, so "
              "large early gradients from the new head do not wreck the pretrained weights.",
    "schedule": "How the rate changes after warmup: constant; cosine (smoothly down to the floor); step "
                "(multiplied by gamma every few epochs); one-cycle (warms up over 30 % then anneals).",
    "optimizer": "AdamW adapts the step per weight and is forgiving; SGD with momentum is classic and "
                 "sometimes generalises better with a well-tuned rate.",
    "wd": "Weight decay pulls weights towards zero to reduce overfitting (optim.weight_decay); it is "
          "never applied to biases and normalisation layers.",
}


OPTIMIZER_LABELS = {"adamw": "adamw", "sgd": "sgd"}  # the config's own names, as the tips and docs use them
SCHEDULE_LABELS = {"constant": "constant", "cosine": "cosine", "step": "step", "onecycle": "onecycle"}
WARMUP_UNITS = ("epochs", "steps")


class LRPanel(QWidget):
    def __init__(self, project: Project, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.curves: list = []
        self._build()
        self._bind()

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self._build_rates())
        lay.addWidget(self._build_optimizer_box())
        lay.addWidget(self._build_plot(), 1)
        self.plot_note = QLabel()
        self.plot_note.setWordWrap(True)
        lay.addWidget(self.plot_note)

    def _build_rates(self) -> QGroupBox:
        rates = QGroupBox("Learning rates")
        self.head_lr = SciSpinBox(1e-7, 10.0)
        self.head_lr.setToolTip(TIPS["head_lr"])
        self.head_lr.setMaximumWidth(120)
        self.decay = QDoubleSpinBox()
        self.decay.setRange(0.01, 1.0)
        self.decay.setSingleStep(0.05)
        self.decay.setDecimals(2)
        self.decay.setPrefix("× ")
        self.decay.setToolTip(TIPS["decay"])
        self.decay.setMaximumWidth(100)
        self.reset_btn = QPushButton("Clear per-group rates")
        self.reset_btn.setToolTip("Forget rates typed into the table for single groups (layers.lr), so every "
                                  "group follows the head rate and the factor again.")
        self.reset_btn.clicked.connect(lambda: self.project.set("layers.lr", {}))
        f = QFormLayout(rates)
        f.addRow("Head rate", self.head_lr)
        row = QHBoxLayout()
        row.addWidget(self.decay)
        row.addWidget(self.reset_btn)
        row.addStretch(1)
        f.addRow("Each group below", row)
        f.labelForField(self.head_lr).setToolTip(TIPS["head_lr"])
        f.labelForField(row).setToolTip(TIPS["decay"])
        return rates

    def _build_optimizer_box(self) -> QGroupBox:
        opt = QGroupBox("Optimizer and schedule")
        g = QFormLayout(opt)
        rows = (("Optimizer", self._build_optimizer_row(), TIPS["optimizer"]),
                ("Warmup", self._build_warmup_row(), TIPS["warmup"]),
                ("Schedule", self._build_schedule_row(), TIPS["schedule"]))
        for label, layout, tip in rows:
            g.addRow(label, layout)
            lab = g.labelForField(layout)
            if lab is not None:
                lab.setToolTip(tip)
        return opt

    def _build_optimizer_row(self) -> QHBoxLayout:
        self.optimizer = QComboBox()
        fill_combo(self.optimizer, config_mod.OPTIMIZERS, OPTIMIZER_LABELS)
        self.optimizer.setToolTip(TIPS["optimizer"])
        self.wd = SciSpinBox(0.0, 1.0, allow_zero=True)
        self.wd.setToolTip(TIPS["wd"])
        self.momentum = QDoubleSpinBox()
        self.momentum.setRange(0.0, 0.999)
        self.momentum.setDecimals(3)
        self.momentum.setSingleStep(0.01)
        self.momentum.setToolTip("SGD momentum (optim.momentum): how much of the previous step carries over.")
        r1 = QHBoxLayout()
        r1.addWidget(self.optimizer)
        self.wd_label = QLabel("weight decay")
        self.wd_label.setToolTip(TIPS["wd"])
        r1.addWidget(self.wd_label)
        r1.addWidget(self.wd)
        self.mom_label = QLabel("momentum")
        self.mom_label.setToolTip(self.momentum.toolTip())
        r1.addWidget(self.mom_label)
        r1.addWidget(self.momentum)
        r1.addStretch(1)
        return r1

    def _build_warmup_row(self) -> QHBoxLayout:
        self.warmup = QDoubleSpinBox()
        self.warmup.setRange(0, 100000)
        self.warmup.setDecimals(1)
        self.warmup.setToolTip(TIPS["warmup"])
        self.warmup.valueChanged.connect(self._warmup_changed)
        self.warmup_unit = QComboBox()
        self.warmup_unit.addItems(list(WARMUP_UNITS))
        self.warmup_unit.setToolTip("Count warmup in epochs (schedule.warmup_epochs) or optimizer steps "
                                    "(schedule.warmup_steps).")
        self.warmup_unit.currentTextChanged.connect(self._warmup_changed)
        r2 = QHBoxLayout()
        r2.addWidget(self.warmup)
        r2.addWidget(self.warmup_unit)
        r2.addStretch(1)
        return r2

    def _build_schedule_row(self) -> QHBoxLayout:
        self.sched = QComboBox()
        fill_combo(self.sched, config_mod.SCHEDULES, SCHEDULE_LABELS)
        self.sched.setToolTip(TIPS["schedule"])
        self.min_factor = QDoubleSpinBox()
        self.min_factor.setRange(0, 1)
        self.min_factor.setSingleStep(0.05)
        self.min_factor.setToolTip("Cosine and one-cycle end at this fraction of each group's rate "
                                   "(schedule.min_lr_factor).")
        self.step_epochs = QSpinBox()
        self.step_epochs.setRange(1, 1000)
        self.step_epochs.setToolTip("Step schedule: multiply the rate by gamma every this many epochs "
                                    "(schedule.step_epochs).")
        self.gamma = QDoubleSpinBox()
        self.gamma.setRange(0.01, 1.0)
        self.gamma.setSingleStep(0.05)
        self.gamma.setToolTip("Step schedule: the factor applied at each step (schedule.gamma).")
        r3 = QHBoxLayout()
        r3.addWidget(self.sched)
        self.floor_label = QLabel("floor")
        self.every_label = QLabel("every")
        self.gamma_label = QLabel("epochs ×")
        for label, field in ((self.floor_label, self.min_factor), (self.every_label, self.step_epochs),
                             (self.gamma_label, self.gamma)):
            label.setToolTip(field.toolTip())
            r3.addWidget(label)
            r3.addWidget(field)
        r3.addStretch(1)
        return r3

    def _build_plot(self):
        self.plot = make_plot("Learning rate of each group over the run", "learning rate", "epoch")
        self.plot.setToolTip("Preview of every trainable group's learning rate over the whole run, from the "
                             "same schedule code training uses. Frozen groups are not drawn.")
        return self.plot

    def _bind(self) -> None:
        p = self.project
        bind(self.head_lr, p, "layers.head_lr")
        bind(self.decay, p, "layers.lr_decay", from_widget=lambda v: round(float(v), 4))
        bind(self.optimizer, p, "optim.name")
        bind(self.wd, p, "optim.weight_decay")
        bind(self.momentum, p, "optim.momentum")
        bind(self.sched, p, "schedule.name")
        bind(self.min_factor, p, "schedule.min_lr_factor")
        bind(self.step_epochs, p, "schedule.step_epochs")
        bind(self.gamma, p, "schedule.gamma")

    # ------------------------------------------------------------------
    def _warmup_changed(self, *_args) -> None:
        v = self.warmup.value()
        if self.warmup_unit.currentText() == "steps":
            self.project.update({"schedule.warmup_steps": int(round(v)), "schedule.warmup_epochs": 0.0})
        else:
            self.project.update({"schedule.warmup_steps": 0, "schedule.warmup_epochs": float(v)})

    def _show_warmup(self) -> None:
        """One value and its unit for two keys (schedule.warmup_steps wins when it is set)."""
        s = self.project.cfg.schedule
        steps = s.warmup_steps > 0
        with signals_blocked(self.warmup, self.warmup_unit):
            self.warmup_unit.setCurrentText("steps" if steps else "epochs")
            self.warmup.setDecimals(0 if steps else 1)
            self.warmup.setValue(s.warmup_steps if steps else s.warmup_epochs)

    def refresh(self, group_names: list[str], lrs: dict[str, float], frozen: set[str]) -> None:
        """Show what depends on more than one value (the bound controls follow their keys)."""
        cfg = self.project.cfg
        self.reset_btn.setEnabled(bool(cfg.layers.lr))
        sgd = cfg.optim.name == "sgd"
        self.momentum.setVisible(sgd)
        self.mom_label.setVisible(sgd)
        self._show_warmup()
        name = cfg.schedule.name
        for w in (self.floor_label, self.min_factor):
            w.setVisible(name in ("cosine", "onecycle"))
        for w in (self.every_label, self.step_epochs, self.gamma_label, self.gamma):
            w.setVisible(name == "step")
        self._draw(group_names, lrs, frozen)

    def _draw(self, names: list[str], lrs: dict[str, float], frozen: set[str]) -> None:
        cfg = self.project.cfg
        spe = self.project.steps_per_epoch()
        epochs = cfg.train.epochs
        sched = schedule_mod.from_config(cfg.schedule, spe, epochs)
        trainable = [(i, n) for i, n in enumerate(names) if n not in frozen]
        while len(self.curves) < len(trainable):
            self.curves.append(None)
        item = self.plot.getPlotItem()
        for k, (i, name) in enumerate(trainable):
            curve = self.curves[k]
            color = group_color(i, len(names))
            if curve is None or curve.opts.get("_color") != color:
                if curve is not None:
                    item.removeItem(curve)
                curve = add_curve(self.plot, color, name, width=2)
                curve.opts["_color"] = color
                self.curves[k] = curve
            steps, values = schedule_mod.curve(sched, lrs.get(name, cfg.layers.head_lr), points=400)
            curve.setData([st / spe for st in steps], values)
            curve.setVisible(True)
        for k in range(len(trainable), len(self.curves)):
            if self.curves[k] is not None:
                self.curves[k].setVisible(False)
        warm = sched.warmup_steps
        train, _ = self.project.split_counts()
        data_note = (f"{train:,} training images, batch {cfg.train.batch_size}" if train
                     else f"no data scanned yet, assuming one step per epoch")
        top = max((lrs.get(n, 0.0) for _, n in trainable), default=0.0)
        self.plot_note.setText(
            f"{epochs} epochs × {spe} steps ({data_note}) = {sched.total_steps:,} steps; "
            f"warmup {warm:,} steps. Peak rate {fmt_sci(top)}. Colours match the group table.")

    def curve_data(self) -> list[tuple]:
        """(x, y) arrays of the visible preview curves (for tests)."""
        return [c.getData() for c in self.curves if c is not None and c.isVisible()]
