"""Step 2, Model: the catalog as a searchable table, weight downloads with progress and
Cancel, importing a weights file, and the input image size."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QButtonGroup, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QProgressBar,
                               QPushButton, QRadioButton, QSpinBox, QVBoxLayout, QWidget)

from transfer_gui.ui import dialogs
from transfer_gui.ui.binding import bind
from transfer_gui.ui.context import Context
from transfer_gui.ui.theme import status_colors
from transfer_gui.ui.widgets.catalog_table import OFFLINE_MODEL, STATUS_TEXT, CatalogTable, fmt_params

WEIGHTS_FILTER = "Weights files (*.pth *.pt *.safetensors *.bin *.ckpt);;All files (*)"


def catalog_job(task):
    from transfer_gui.engine import catalog

    return catalog.list_models()


def download_job(task, name: str) -> str:
    from transfer_gui.engine import catalog

    return str(catalog.fetch_torchvision_weights(name, progress=lambda d, t: task.report((d, t)),
                                                 cancel=lambda: task.cancelled))


def inspect_weights_job(task, model: str, path: str) -> tuple[str, str]:
    """(architecture the file belongs to, note). Builds the model with the file to prove it fits."""
    from transfer_gui.engine import catalog

    arch = model
    if path.endswith(".safetensors"):
        try:
            from safetensors import safe_open

            with safe_open(path, framework="pt") as fh:
                meta = fh.metadata() or {}
            arch = meta.get("arch", arch) if meta.get("format") == "transfer_gui.model" else arch
        except Exception:  # noqa: BLE001 - the build below gives the real error
            pass
    else:
        blob = catalog.load_state_dict_file(path)
        if blob.get("format") == catalog.CHECKPOINT_FORMAT:
            arch = str(blob.get("arch", arch))
    built = catalog.build_model(arch, path)
    return arch, built.source_note


class ModelPage(QWidget):
    def __init__(self, ctx: Context):
        super().__init__()
        self.ctx = ctx
        self.project = ctx.project
        self.weights_errors: dict[str, str] = {}  # weights file -> why it does not fit
        self._build()
        self._bind()
        self.project.config_changed.connect(self._config_changed)
        self._catalog_requested = False
        self._config_changed({""})

    def load_catalog(self) -> None:
        if self._catalog_requested:
            return
        self._catalog_requested = True
        self.ctx.tasks.start("catalog", catalog_job, heavy=True, on_done=self._catalog_loaded,
                             on_error=lambda e: self.catalog.note.setText(f"Cannot list models: {e}"))

    def on_shown(self) -> None:
        self.load_catalog()

    def _build(self) -> None:
        self.catalog = CatalogTable()
        self.catalog.chosen.connect(self._model_chosen)
        # the table's parts, for callers that drive the page
        self.search, self.table, self.proxy = self.catalog.search, self.catalog.table, self.catalog.proxy
        self.offline_only = self.catalog.offline_only

        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.catalog, 5)
        lay.addWidget(self._build_side(), 2)

    def _build_side(self) -> QWidget:
        box = QGroupBox("Chosen model")
        self.chosen = QLabel()
        self.chosen.setWordWrap(True)
        self.chosen.setTextFormat(Qt.TextFormat.RichText)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay = QVBoxLayout(box)
        lay.addWidget(self.chosen)
        lay.addSpacing(6)
        lay.addLayout(self._build_weights())
        lay.addLayout(self._build_download())
        lay.addWidget(self.message)
        lay.addLayout(self._build_size())
        lay.addStretch(1)
        return box

    def _build_weights(self) -> QVBoxLayout:
        """Where the weights come from (model.weights), and the import and download buttons."""
        self.w_pre = QRadioButton("Pretrained weights (ImageNet)")
        self.w_pre.setToolTip("Start from weights learned on ImageNet: the point of transfer learning "
                              "(model.weights = \"pretrained\").")
        self.w_none = QRadioButton("No weights (random start)")
        self.w_none.setToolTip("Train from random weights; needs far more images and time "
                               "(model.weights = \"none\").")
        self.w_file = QRadioButton("Weights from a file")
        self.w_file.setToolTip("Start from a weights file: a .pth/.safetensors state dict or a previous "
                               "export or checkpoint of this app (model.weights = path).")
        group = QButtonGroup(self)
        for b in (self.w_pre, self.w_none, self.w_file):
            group.addButton(b)
        self.w_file.toggled.connect(lambda on: on and self.project.cfg.model.weights in ("pretrained", "none")
                                    and self.import_weights_dialog())
        self.file_label = QLabel()
        self.file_label.setWordWrap(True)
        self.import_btn = QPushButton("Import weights file…")
        self.import_btn.setToolTip("Choose a .pth, .pt or .safetensors file, or a previous export or "
                                   "checkpoint, to start from.")
        self.import_btn.clicked.connect(self.import_weights_dialog)
        self.download_btn = QPushButton("Download weights")
        self.download_btn.setToolTip("Download the pretrained weights of the chosen model into the torch "
                                     "cache (needs a network).")
        self.download_btn.clicked.connect(self.start_download)
        lay = QVBoxLayout()
        for w in (self.w_pre, self.w_none, self.w_file):
            lay.addWidget(w)
        row = QHBoxLayout()
        row.addWidget(self.import_btn)
        row.addWidget(self.download_btn)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addWidget(self.file_label)
        return lay

    def _build_download(self) -> QHBoxLayout:
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop the download; nothing partial is left behind.")
        self.cancel_btn.clicked.connect(self.cancel_download)
        self.progress = QProgressBar()
        self.progress.setToolTip("Download progress.")
        self.progress.setVisible(False)
        self.cancel_btn.setVisible(False)
        prog = QHBoxLayout()
        prog.addWidget(self.progress, 1)
        prog.addWidget(self.cancel_btn)
        return prog

    def _build_size(self) -> QFormLayout:
        self.size_spin = QSpinBox()
        self.size_spin.setRange(0, 1024)
        self.size_spin.setSingleStep(32)
        self.size_spin.setSpecialValueText("model default")
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip("Side of the square image fed to the network (data.image_size). Smaller is "
                                  "much faster (e.g. 96 or 128 for small, simple images); 0 = the model's own size.")
        form = QFormLayout()
        form.addRow("Image size", self.size_spin)
        return form

    def _bind(self) -> None:
        # a file path is any other value: the file radio, whose own handler asks for the file
        self.weights_binding = bind({"pretrained": self.w_pre, "none": self.w_none}, self.project, "model.weights",
                                    other=self.w_file)
        bind(self.size_spin, self.project, "data.image_size", from_widget=lambda v: 0 if v < 16 else int(v))

    # ------------------------------------------------------------------ catalog
    @property
    def specs(self) -> dict:
        return self.catalog.specs

    def _catalog_loaded(self, specs: list) -> None:
        self.catalog.load(specs)
        self._config_changed({""})

    def _model_chosen(self, name: str) -> None:
        if name != self.project.cfg.model.name:
            changes = {"model.name": name}
            if self.project.cfg.model.weights not in ("pretrained", "none"):
                changes["model.weights"] = "pretrained"  # a file belongs to the model it was made for
            self.message.clear()
            self.project.update(changes)

    # ------------------------------------------------------------------ weights
    def import_weights_dialog(self) -> bool:
        path = dialogs.open_file(self, "Import weights", self.ctx.last_dir("weights"), WEIGHTS_FILTER)
        if not path:
            self.weights_binding.refresh()  # put the radio buttons back
            return False
        self.ctx.remember_dir("weights", path)
        self.import_weights(path)
        return True

    def import_weights(self, path: str) -> None:
        self.project.set("model.weights", str(Path(path).resolve()))
        self._show_message("Checking the weights file…", "muted")
        self.ctx.tasks.start("check-weights", inspect_weights_job, self.project.cfg.model.name, str(path), heavy=True,
                             on_done=self._weights_checked, on_error=self._weights_failed)

    def _weights_checked(self, result: tuple[str, str]) -> None:
        arch, _note = result
        self.weights_errors.pop(self.project.cfg.model.weights, None)
        if arch != self.project.cfg.model.name:
            weights = self.project.cfg.model.weights
            self.project.update({"model.name": arch, "model.weights": weights})
            self._show_message(f"This file was trained from {arch}; that model is now chosen.", "ok")
        else:
            self._show_message("The weights file fits this model.", "ok")
        self.project.set_model_problem("")

    def _weights_failed(self, exc: BaseException) -> None:
        self._show_message(str(exc), "error")
        self.weights_errors[self.project.cfg.model.weights] = f"The weights file cannot be used: {exc}"
        self.project.set_model_problem(self.weights_errors[self.project.cfg.model.weights])

    def start_download(self) -> None:
        name = self.project.cfg.model.name
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.cancel_btn.setVisible(True)
        self.download_btn.setEnabled(False)
        self._show_message(f"Downloading the weights of {name}…", "muted")
        self.ctx.tasks.start("download", download_job, name, on_progress=self._download_progress,
                             on_done=lambda path: self._download_done(name, path), on_error=self._download_failed)

    def _download_progress(self, value: tuple[int, int]) -> None:
        done, total = value
        if total > 0:
            self.progress.setRange(0, max(1, total // 1024))
            self.progress.setValue(done // 1024)
            self.progress.setFormat(f"{done / 2**20:.1f} of {total / 2**20:.1f} MB (%p%)")
        else:
            self.progress.setFormat(f"{done / 2**20:.1f} MB")

    def _download_finished(self) -> None:
        self.progress.setVisible(False)
        self.cancel_btn.setVisible(False)
        self.download_btn.setEnabled(True)

    def _download_done(self, name: str, path: str) -> None:
        self._download_finished()
        self.catalog.mark_downloaded(name)
        self._show_message(f"Downloaded to {path}.", "ok")
        self._config_changed({"model.name"})

    def _download_failed(self, exc: BaseException) -> None:
        self._download_finished()
        self._show_message(f"Download failed: {exc}", "error")

    def cancel_download(self) -> None:
        self.ctx.tasks.cancel("download")
        self._download_finished()
        self._show_message("Download cancelled; nothing was saved.", "muted")

    # ------------------------------------------------------------------ showing
    def _show_message(self, text: str, kind: str) -> None:
        self.message.setText(f"<span style='color:{status_colors()[kind]}'>{text}</span>")

    def _problem(self, spec) -> str:
        m = self.project.cfg.model
        if m.weights in self.weights_errors:
            return self.weights_errors[m.weights]
        if spec is None or m.weights != "pretrained":
            return ""
        if spec.source == "torchvision" and self.catalog.status_key(spec) == "download":
            return (f"The pretrained weights of {spec.name} ({spec.download_mb:.0f} MB) are not on this computer: "
                    f"click Download weights, choose the offline model {OFFLINE_MODEL}, or import a weights file.")
        return ""

    def _config_changed(self, keys: set) -> None:
        if not ("" in keys or any(k.startswith(("model.", "data.image_size")) for k in keys)):
            return
        m = self.project.cfg.model
        spec = self.specs.get(m.name)
        self.catalog.show_current(m.name)
        if spec is not None:
            self.size_spin.setSpecialValueText(f"model default ({spec.input_size} px)")
            top1 = "" if math.isnan(spec.top1) else f", ImageNet top-1 {spec.top1:.1f} %"
            self.chosen.setText(f"<b>{spec.name}</b><br>{fmt_params(spec.params)} parameters, {spec.input_size} px "
                                f"input{top1}.<br>Weights: {self.catalog.status_text(spec)}."
                                + (f"<br>{spec.description}" if spec.description else ""))
        else:
            self.chosen.setText(f"<b>{m.name}</b>")
        needs_download = bool(spec is not None and spec.source == "torchvision"
                              and self.catalog.status_text(spec) == STATUS_TEXT["download"])
        self.download_btn.setVisible(needs_download)
        self.file_label.setText(f"File: {m.weights}" if m.weights not in ("pretrained", "none") else "")
        if not self.ctx.tasks.running("check-weights"):
            self.project.set_model_problem(self._problem(spec))
