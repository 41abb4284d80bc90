"""The settings of a run on the Training step: device, batch size, epochs, precision, early
stopping and the run folder."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLineEdit, QPushButton, QSpinBox

from transfer_gui.ui import dialogs
from transfer_gui.ui.context import Context

PRECISIONS = (("Automatic", "auto", "bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU."),
              ("Full (fp32)", "fp32", "32-bit floats everywhere: slowest on GPUs, most exact."),
              ("Mixed bf16", "bf16", "Mixed precision with bfloat16 on CUDA: fast, no loss scaling needed."),
              ("Mixed fp16", "fp16", "Mixed precision with float16 on CUDA, with loss scaling."))


def devices_job(task) -> list[tuple[str, str]]:
    """Job: (label, train.device value) of every device torch can use here."""
    import torch

    out = [("Automatic", "auto")]
    for i in range(torch.cuda.device_count()):
        out.append((f"CUDA {i}: {torch.cuda.get_device_name(i)}", f"cuda:{i}"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append(("Apple GPU (MPS)", "mps"))
    out.append(("CPU", "cpu"))
    return out


class TrainSettings(QGroupBox):
    def __init__(self, ctx: Context):
        super().__init__("Settings")
        self.ctx, self.project = ctx, ctx.project
        self._filling = False
        self.devices_loaded = False
        self.device = QComboBox()
        self.device.setToolTip("Where training runs (train.device). Automatic picks a CUDA GPU, then Apple's "
                               "MPS, then the CPU.")
        self.device.setMinimumContentsLength(12)
        self.device.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.device.addItem("Automatic", "auto")
        self.device.addItem("CPU", "cpu")
        self.device.currentIndexChanged.connect(lambda _i: self._set("train.device", self.device.currentData()))
        self.batch = QSpinBox()
        self.batch.setRange(1, 4096)
        self.batch.setToolTip("Images per optimizer step (train.batch_size). Larger is faster on GPUs but "
                              "needs more memory; halve it if you run out of memory.")
        self.batch.valueChanged.connect(lambda v: self._set("train.batch_size", int(v)))
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 10000)
        self.epochs.setToolTip("How many times training goes through all training images (train.epochs).")
        self.epochs.valueChanged.connect(lambda v: self._set("train.epochs", int(v)))
        self.precision = QComboBox()
        for label, value, tip in PRECISIONS:
            self.precision.addItem(label, value)
            self.precision.setItemData(self.precision.count() - 1, tip, 3)  # ToolTipRole
        self.precision.setToolTip("Mixed precision (train.precision) computes in 16-bit floats on CUDA GPUs "
                                  "for speed; it has no effect on the CPU.")
        self.precision.currentIndexChanged.connect(lambda _i: self._set("train.precision", self.precision.currentData()))
        self.patience = QSpinBox()
        self.patience.setRange(0, 1000)
        self.patience.setSpecialValueText("off")
        self.patience.setSuffix(" epochs")
        self.patience.setToolTip("Early stopping (train.early_stopping): stop when the validation metric has "
                                 "not improved for this many epochs. The best epoch's model is kept.")
        self.patience.valueChanged.connect(lambda v: self._set("train.early_stopping", int(v)))
        self.metric_box = QComboBox()
        self.metric_box.addItem("validation accuracy", "val_acc")
        self.metric_box.addItem("validation loss", "val_loss")
        self.metric_box.setToolTip("What early stopping and “best epoch” watch (train.early_stopping_metric).")
        self.metric_box.currentIndexChanged.connect(lambda _i: self._set("train.early_stopping_metric",
                                                                     self.metric_box.currentData()))
        self.out_dir = QLineEdit()
        self.out_dir.setPlaceholderText("automatic: a new folder per run")
        self.out_dir.editingFinished.connect(lambda: self._set("output.dir", self.out_dir.text().strip()))
        self.out_btn = QPushButton("Choose…")
        self.out_btn.setToolTip("Choose the run folder.")
        self.out_btn.clicked.connect(self._choose_out)
        form = QFormLayout(self)
        form.addRow("Device", self.device)
        form.addRow("Batch size", self.batch)
        form.addRow("Epochs", self.epochs)
        form.addRow("Precision", self.precision)
        form.addRow("Early stopping", self.patience)
        form.addRow("Watch", self.metric_box)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_dir, 1)
        out_row.addWidget(self.out_btn)
        form.addRow("Run folder", out_row)
        for field in (self.device, self.batch, self.epochs, self.precision, self.patience, self.metric_box):
            form.labelForField(field).setToolTip(field.toolTip())
        self.out_label = form.labelForField(out_row)
        self.project.config_changed.connect(self._config_changed)
        self.project.state_changed.connect(self._show_runs_dir)
        self._show_runs_dir()
        self._config_changed({""})

    def load_devices(self) -> None:
        if not self.devices_loaded:
            self.devices_loaded = True
            self.ctx.tasks.start("devices", devices_job, heavy=True, on_done=self._devices_found)

    def _devices_found(self, devices: list[tuple[str, str]]) -> None:
        self._filling = True
        try:
            self.device.clear()
            for label, value in devices:
                self.device.addItem(label, value)
        finally:
            self._filling = False
        self._config_changed({"train.device"})

    def _set(self, key: str, value) -> None:
        if not self._filling and value is not None:
            self.project.set(key, value)

    def _out_tip(self) -> str:
        return ("The run folder (output.dir): checkpoints, metrics and predictions go here. Empty = a new "
                f"time-stamped folder for every run in this project's runs folder, {self.project.runs_dir()}.")

    def _choose_out(self) -> None:
        root = self.project.runs_dir()
        path = dialogs.choose_folder(self, "Choose the run folder", str(root if root.is_dir() else root.parent))
        if path:
            self._set("output.dir", path)

    def _show_runs_dir(self) -> None:
        self.out_dir.setToolTip(self._out_tip())
        self.out_label.setToolTip(self._out_tip())

    def set_running(self, running: bool) -> None:
        for w in (self.device, self.batch, self.epochs, self.precision, self.patience, self.out_dir, self.out_btn):
            w.setEnabled(not running)
        self.metric_box.setEnabled(not running and self.project.cfg.train.early_stopping > 0)

    def _config_changed(self, _keys: set) -> None:
        t = self.project.cfg.train
        self._filling = True
        try:
            i = self.device.findData(t.device)
            if i < 0:
                self.device.addItem(t.device, t.device)
                i = self.device.count() - 1
            self.device.setCurrentIndex(i)
            self.batch.setValue(t.batch_size)
            self.epochs.setValue(t.epochs)
            self.precision.setCurrentIndex(max(0, self.precision.findData(t.precision)))
            self.patience.setValue(t.early_stopping)
            self.metric_box.setCurrentIndex(max(0, self.metric_box.findData(t.early_stopping_metric)))
            self.metric_box.setEnabled(t.early_stopping > 0 and self.batch.isEnabled())
            if self.out_dir.text() != self.project.cfg.output.dir:
                self.out_dir.setText(self.project.cfg.output.dir)
        finally:
            self._filling = False
