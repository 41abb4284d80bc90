""""Export as job...": write the project's config with a torchrun launcher and a SLURM batch
script for the nodes and GPUs the user chooses, to run the same training on a GPU server or
a cluster."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from transfer_gui.ui import dialogs


class JobDialog(QDialog):
    def __init__(self, cfg, parent: QWidget | None = None, folder: str = ""):
        super().__init__(parent)
        self.cfg = cfg
        self.written: dict[str, Path] = {}
        self.setWindowTitle("Export as job")
        intro = QLabel("Write this project as a job for a GPU server or a SLURM cluster: the config file, a "
                       "<code>torchrun</code> launcher and a batch script. Copy the folder to the cluster, "
                       "submit it, then bring its <code>run</code> folder back and open it with "
                       "File &gt; Open Run Folder to inspect the result.")
        intro.setWordWrap(True)
        self.nodes = QSpinBox(minimum=1, maximum=512, value=1)
        self.nodes.setToolTip("How many machines the job spans; torchrun connects them.")
        self.gpus = QSpinBox(minimum=1, maximum=16, value=1)
        self.gpus.setToolTip("GPUs per machine: one training process per GPU. The batch size in the project is "
                             "the global batch, shared among all of them.")
        self.name = QLineEdit("transfer_gui")
        self.name.setToolTip("The job's name in the cluster's queue.")
        self.partition = QLineEdit()
        self.partition.setPlaceholderText("cluster default")
        self.partition.setToolTip("SLURM partition (queue) to submit to; empty for the cluster's default.")
        self.time = QLineEdit("04:00:00")
        self.time.setToolTip("Time limit of the job, HH:MM:SS.")
        self.folder = QLineEdit(folder)
        self.folder.setToolTip("Where to write the job folder.")
        browse = QPushButton("Choose…")
        browse.setToolTip("Choose the folder to write the job into.")
        browse.clicked.connect(self._choose)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Nodes", self.nodes)
        form.addRow("GPUs per node", self.gpus)
        form.addRow("Job name", self.name)
        form.addRow("Partition", self.partition)
        form.addRow("Time limit", self.time)
        form.addRow("Folder", row)
        self.preview = QLabel()
        self.preview.setWordWrap(True)
        self.preview.setToolTip("The command the job runs.")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.write)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(form)
        lay.addWidget(self.preview)
        lay.addWidget(self.buttons)
        for w in (self.nodes, self.gpus):
            w.valueChanged.connect(self._update)
        self.folder.textChanged.connect(self._update)
        self._update()

    def spec(self):
        from transfer_gui.engine.jobs import JobSpec

        return JobSpec(nodes=self.nodes.value(), gpus_per_node=self.gpus.value(),
                       job_name=self.name.text().strip() or "transfer_gui", time_limit=self.time.text().strip(),
                       partition=self.partition.text().strip())

    def _update(self) -> None:
        from transfer_gui.engine.jobs import torchrun_command

        self.preview.setText(f"<code>{torchrun_command(self.spec(), 'config.toml')}</code>")
        self.buttons.button(QDialogButtonBox.StandardButton.Save).setEnabled(bool(self.folder.text().strip()))

    def _choose(self) -> None:
        path = dialogs.choose_folder(self, "Folder for the job", self.folder.text())
        if path:
            self.folder.setText(path)

    def write(self) -> None:
        from transfer_gui.engine.jobs import write_job

        try:
            self.written = write_job(self.cfg, self.folder.text().strip(), self.spec())
        except (OSError, ValueError) as exc:
            dialogs.show_error(self, "Export as job", f"Could not write the job: {exc}")
            return
        self.accept()
