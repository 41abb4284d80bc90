"""The settings of a run on the Training step: device, batch size, epochs, precision, early
stopping and the run folder."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLineEdit, QPushButton, QSpinBox

from transfer_gui import config as config_mod
from transfer_gui.ui import dialogs
from transfer_gui.ui.binding import bind, fill_combo, signals_blocked
from transfer_gui.ui.context import Context

PRECISION_LABELS = {"auto": "Automatic", "fp32": "Full (fp32)", "bf16": "Mixed bf16", "fp16": "Mixed fp16"}
PRECISION_TIPS = {"auto": "bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU.",
                  "fp32": "32-bit floats everywhere: slowest on GPUs, most exact.",
                  "bf16": "Mixed precision with bfloat16 on CUDA: fast, no loss scaling needed.",
                  "fp16": "Mixed precision with float16 on CUDA, with loss scaling."}
METRIC_LABELS = {"val_acc": "validation accuracy", "val_loss": "validation loss"}


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
        self.devices_loaded = False
        form = QFormLayout(self)
        form.addRow("Device", self._build_device())
        self.batch, self.epochs = self._build_counts()
        form.addRow("Batch size", self.batch)
        form.addRow("Epochs", self.epochs)
        form.addRow("Precision", self._build_precision())
        self.patience, self.metric_box = self._build_stopping()
        form.addRow("Early stopping", self.patience)
        form.addRow("Watch", self.metric_box)
        out_row = self._build_out_row()
        form.addRow("Run folder", out_row)
        for field in (self.device, self.batch, self.epochs, self.precision, self.patience, self.metric_box):
            form.labelForField(field).setToolTip(field.toolTip())
        self.out_label = form.labelForField(out_row)
        self._bind()
        self.project.config_changed.connect(self._config_changed)
        self.project.state_changed.connect(self._show_runs_dir)
        self._show_runs_dir()
        self._config_changed({""})

    def _build_device(self) -> QComboBox:
        self.device = QComboBox()
        self.device.setToolTip("Where training runs (train.device). Automatic picks a CUDA GPU, then Apple's "
                               "MPS, then the CPU.")
        self.device.setMinimumContentsLength(12)
        self.device.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.device.addItem("Automatic", "auto")
        self.device.addItem("CPU", "cpu")
        return self.device

    def _build_counts(self) -> tuple[QSpinBox, QSpinBox]:
        batch = QSpinBox()
        batch.setRange(1, 4096)
        batch.setToolTip("Images per optimizer step (train.batch_size). Larger is faster on GPUs but "
                         "needs more memory; halve it if you run out of memory.")
        epochs = QSpinBox()
        epochs.setRange(1, 10000)
        epochs.setToolTip("How many times training goes through all training images (train.epochs).")
        return batch, epochs

    def _build_precision(self) -> QComboBox:
        self.precision = QComboBox()
        fill_combo(self.precision, config_mod.PRECISIONS, PRECISION_LABELS, PRECISION_TIPS)
        self.precision.setToolTip("Mixed precision (train.precision) computes in 16-bit floats on CUDA GPUs "
                                  "for speed; it has no effect on the CPU.")
        return self.precision

    def _build_stopping(self) -> tuple[QSpinBox, QComboBox]:
        patience = QSpinBox()
        patience.setRange(0, 1000)
        patience.setSpecialValueText("off")
        patience.setSuffix(" epochs")
        patience.setToolTip("Early stopping (train.early_stopping): stop when the validation metric has "
                            "not improved for this many epochs. The best epoch's model is kept.")
        metric = QComboBox()
        fill_combo(metric, config_mod.EARLY_STOP_METRICS, METRIC_LABELS)
        metric.setToolTip("What early stopping and “best epoch” watch (train.early_stopping_metric).")
        return patience, metric

    def _build_out_row(self) -> QHBoxLayout:
        self.out_dir = QLineEdit()
        self.out_dir.setPlaceholderText("automatic: a new folder per run")
        self.out_btn = QPushButton("Choose…")
        self.out_btn.setToolTip("Choose the run folder.")
        self.out_btn.clicked.connect(self._choose_out)
        row = QHBoxLayout()
        row.addWidget(self.out_dir, 1)
        row.addWidget(self.out_btn)
        return row

    def _bind(self) -> None:
        p = self.project
        self.device_binding = bind(self.device, p, "train.device", add_missing=True)
        bind(self.batch, p, "train.batch_size")
        bind(self.epochs, p, "train.epochs")
        bind(self.precision, p, "train.precision")
        bind(self.patience, p, "train.early_stopping")
        bind(self.metric_box, p, "train.early_stopping_metric")
        bind(self.out_dir, p, "output.dir", from_widget=str.strip)

    def load_devices(self) -> None:
        if not self.devices_loaded:
            self.devices_loaded = True
            self.ctx.tasks.start("devices", devices_job, heavy=True, on_done=self._devices_found)

    def _devices_found(self, devices: list[tuple[str, str]]) -> None:
        with signals_blocked(self.device):
            self.device.clear()
            for label, value in devices:
                self.device.addItem(label, value)
        self.device_binding.refresh()

    def _out_tip(self) -> str:
        return ("The run folder (output.dir): checkpoints, metrics and predictions go here. Empty = a new "
                f"time-stamped folder for every run in this project's runs folder, {self.project.runs_dir()}.")

    def _choose_out(self) -> None:
        root = self.project.runs_dir()
        path = dialogs.choose_folder(self, "Choose the run folder", str(root if root.is_dir() else root.parent))
        if path:
            self.project.set("output.dir", path)

    def _show_runs_dir(self) -> None:
        self.out_dir.setToolTip(self._out_tip())
        self.out_label.setToolTip(self._out_tip())

    def set_running(self, running: bool) -> None:
        for w in (self.device, self.batch, self.epochs, self.precision, self.patience, self.out_dir, self.out_btn):
            w.setEnabled(not running)
        self.metric_box.setEnabled(not running and self.project.cfg.train.early_stopping > 0)

    def _config_changed(self, _keys: set) -> None:
        """What follows the values (the bound controls show the values themselves)."""
        self.metric_box.setEnabled(self.project.cfg.train.early_stopping > 0 and self.batch.isEnabled())
