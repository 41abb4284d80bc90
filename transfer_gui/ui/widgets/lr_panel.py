"""Learning rates, optimizer, warmup and schedule, with a live preview of every group's
learning rate over the whole run (drawn by the engine's own schedule functions)."""

from __future__ import annotations

from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from transfer_gui.engine import schedule as schedule_mod  # pure Python, no torch
from transfer_gui.state.project import Project
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


class LRPanel(QWidget):
    def __init__(self, project: Project, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self._filling = False
        self.curves: list = []
        self._build()

    def _build(self) -> None:
        rates = QGroupBox("Learning rates")
        self.head_lr = SciSpinBox(1e-7, 10.0)
        self.head_lr.setToolTip(TIPS["head_lr"])
        self.head_lr.setMaximumWidth(120)
        self.head_lr.valueChanged.connect(lambda v: self._set("layers.head_lr", float(v)))
        self.decay = QDoubleSpinBox()
        self.decay.setRange(0.01, 1.0)
        self.decay.setSingleStep(0.05)
        self.decay.setDecimals(2)
        self.decay.setPrefix("× ")
        self.decay.setToolTip(TIPS["decay"])
        self.decay.setMaximumWidth(100)
        self.decay.valueChanged.connect(lambda v: self._set("layers.lr_decay", round(float(v), 4)))
        self.reset_btn = QPushButton("Clear per-group rates")
        self.reset_btn.setToolTip("Forget rates typed into the table for single groups (layers.lr), so every "
                                  "group follows the head rate and the factor again.")
        self.reset_btn.clicked.connect(lambda: self._set("layers.lr", {}))
        f = QFormLayout(rates)
        f.addRow("Head rate", self.head_lr)
        row = QHBoxLayout()
        row.addWidget(self.decay)
        row.addWidget(self.reset_btn)
        row.addStretch(1)
        f.addRow("Each group below", row)
        f.labelForField(self.head_lr).setToolTip(TIPS["head_lr"])
        f.labelForField(row).setToolTip(TIPS["decay"])

        opt = QGroupBox("Optimizer and schedule")
        self.optimizer = QComboBox()
        self.optimizer.addItems(["adamw", "sgd"])
        self.optimizer.setToolTip(TIPS["optimizer"])
        self.optimizer.currentTextChanged.connect(lambda t: self._set("optim.name", t))
        self.wd = SciSpinBox(0.0, 1.0, allow_zero=True)
        self.wd.setToolTip(TIPS["wd"])
        self.wd.valueChanged.connect(lambda v: self._set("optim.weight_decay", float(v)))
        self.momentum = QDoubleSpinBox()
        self.momentum.setRange(0.0, 0.999)
        self.momentum.setDecimals(3)
        self.momentum.setSingleStep(0.01)
        self.momentum.setToolTip("SGD momentum (optim.momentum): how much of the previous step carries over.")
        self.momentum.valueChanged.connect(lambda v: self._set("optim.momentum", float(v)))
        self.sched = QComboBox()
        self.sched.addItems(["constant", "cosine", "step", "onecycle"])
        self.sched.setToolTip(TIPS["schedule"])
        self.sched.currentTextChanged.connect(lambda t: self._set("schedule.name", t))
        self.warmup = QDoubleSpinBox()
        self.warmup.setRange(0, 100000)
        self.warmup.setDecimals(1)
        self.warmup.setToolTip(TIPS["warmup"])
        self.warmup.valueChanged.connect(self._warmup_changed)
        self.warmup_unit = QComboBox()
        self.warmup_unit.addItems(["epochs", "steps"])
        self.warmup_unit.setToolTip("Count warmup in epochs (schedule.warmup_epochs) or optimizer steps "
                                    "(schedule.warmup_steps).")
        self.warmup_unit.currentTextChanged.connect(self._warmup_changed)
        self.min_factor = QDoubleSpinBox()
        self.min_factor.setRange(0, 1)
        self.min_factor.setSingleStep(0.05)
        self.min_factor.setToolTip("Cosine and one-cycle end at this fraction of each group's rate "
                                   "(schedule.min_lr_factor).")
        self.min_factor.valueChanged.connect(lambda v: self._set("schedule.min_lr_factor", float(v)))
        self.step_epochs = QSpinBox()
        self.step_epochs.setRange(1, 1000)
        self.step_epochs.setToolTip("Step schedule: multiply the rate by gamma every this many epochs "
                                    "(schedule.step_epochs).")
        self.step_epochs.valueChanged.connect(lambda v: self._set("schedule.step_epochs", int(v)))
        self.gamma = QDoubleSpinBox()
        self.gamma.setRange(0.01, 1.0)
        self.gamma.setSingleStep(0.05)
        self.gamma.setToolTip("Step schedule: the factor applied at each step (schedule.gamma).")
        self.gamma.valueChanged.connect(lambda v: self._set("schedule.gamma", float(v)))
        g = QFormLayout(opt)
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
        g.addRow("Optimizer", r1)
        r2 = QHBoxLayout()
        r2.addWidget(self.warmup)
        r2.addWidget(self.warmup_unit)
        r2.addStretch(1)
        g.addRow("Warmup", r2)
        r3 = QHBoxLayout()
        r3.addWidget(self.sched)
        self.floor_label = QLabel("floor")
        self.floor_label.setToolTip(self.min_factor.toolTip())
        r3.addWidget(self.floor_label)
        r3.addWidget(self.min_factor)
        self.every_label = QLabel("every")
        self.every_label.setToolTip(self.step_epochs.toolTip())
        r3.addWidget(self.every_label)
        r3.addWidget(self.step_epochs)
        self.gamma_label = QLabel("epochs ×")
        self.gamma_label.setToolTip(self.gamma.toolTip())
        r3.addWidget(self.gamma_label)
        r3.addWidget(self.gamma)
        r3.addStretch(1)
        g.addRow("Schedule", r3)
        for layout, tip in ((r1, TIPS["optimizer"]), (r2, TIPS["warmup"]), (r3, TIPS["schedule"])):
            lab = g.labelForField(layout)
            if lab is not None:
                lab.setToolTip(tip)

        self.plot = make_plot("Learning rate of each group over the run", "learning rate", "epoch")
        self.plot.setToolTip("Preview of every trainable group's learning rate over the whole run, from the "
                             "same schedule code training uses. Frozen groups are not drawn.")
        self.plot_note = QLabel()
        self.plot_note.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(rates)
        lay.addWidget(opt)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.plot_note)

    # ------------------------------------------------------------------
    def _set(self, key: str, value) -> None:
        if not self._filling:
            self.project.set(key, value)

    def _warmup_changed(self, *_args) -> None:
        if self._filling:
            return
        v = self.warmup.value()
        if self.warmup_unit.currentText() == "steps":
            self.project.update({"schedule.warmup_steps": int(round(v)), "schedule.warmup_epochs": 0.0})
        else:
            self.project.update({"schedule.warmup_steps": 0, "schedule.warmup_epochs": float(v)})

    def refresh(self, group_names: list[str], lrs: dict[str, float], frozen: set[str]) -> None:
        cfg = self.project.cfg
        self._filling = True
        try:
            self.head_lr.setValue(cfg.layers.head_lr)
            self.decay.setValue(cfg.layers.lr_decay)
            self.reset_btn.setEnabled(bool(cfg.layers.lr))
            self.optimizer.setCurrentText(cfg.optim.name)
            self.wd.setValue(cfg.optim.weight_decay)
            self.momentum.setValue(cfg.optim.momentum)
            sgd = cfg.optim.name == "sgd"
            self.momentum.setVisible(sgd)
            self.mom_label.setVisible(sgd)
            s = cfg.schedule
            self.sched.setCurrentText(s.name)
            steps = s.warmup_steps > 0
            self.warmup_unit.setCurrentText("steps" if steps else "epochs")
            self.warmup.setDecimals(0 if steps else 1)
            self.warmup.setValue(s.warmup_steps if steps else s.warmup_epochs)
            self.min_factor.setValue(s.min_lr_factor)
            self.step_epochs.setValue(s.step_epochs)
            self.gamma.setValue(s.gamma)
            floor = s.name in ("cosine", "onecycle")
            for w in (self.floor_label, self.min_factor):
                w.setVisible(floor)
            for w in (self.every_label, self.step_epochs, self.gamma_label, self.gamma):
                w.setVisible(s.name == "step")
        finally:
            self._filling = False
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
