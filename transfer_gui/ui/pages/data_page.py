"""Step 1, Data: image folders (drop, add, sample data), the class table, warnings,
validation split and augmentation with a live preview. Scanning runs on a worker thread."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QProgressBar,
                               QPushButton, QVBoxLayout, QWidget)

from transfer_gui.state import dataset_view
from transfer_gui.ui import applog, dialogs
from transfer_gui.ui.context import Context
from transfer_gui.ui.theme import drop_zone_css, status_colors
from transfer_gui.ui.widgets.class_table import THUMB, ClassTable
from transfer_gui.ui.widgets.check_data import CheckDataButton
from transfer_gui.ui.widgets.data_options import AugmentBox, BalanceBox, TestBox, ValidationBox
from transfer_gui.ui.widgets.skipped_dialog import SkippedDialog
from transfer_gui.ui.widgets.thumbnails import read_many

SKIPPED_ROLE = Qt.ItemDataRole.UserRole + 10


def sample_data_dir() -> Path:
    from transfer_gui.paths import sample_data_dir as find

    return find()


def scan_job(task, folders: list[str]):
    from transfer_gui.engine.scan import scan_sources

    return scan_sources(folders, (), {}, progress=lambda n, msg: task.report((n, msg)),
                        cancel=lambda: task.cancelled)


class DataPage(QWidget):
    def __init__(self, ctx: Context):
        super().__init__()
        self.ctx = ctx
        self.project = ctx.project
        self._build()
        self.project.config_changed.connect(self._config_changed)
        self.project.scan_changed.connect(self._show_scan)
        self._config_changed({""})

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        left = QVBoxLayout()
        left.addLayout(self._build_buttons())
        left.addWidget(self._build_drop_hint())
        left.addWidget(self._build_folders())
        left.addWidget(self._build_scan_box())
        self._build_classes()
        left.addWidget(self.table, 1)
        left.addWidget(self.totals)
        left.addWidget(self.warnings)

        self.validation = ValidationBox(self.ctx)
        self.augment = AugmentBox(self.ctx, self._example_path)
        self.preview = self.augment.preview
        right = QVBoxLayout()
        right.addWidget(self.validation)
        self.test_set = TestBox(self.ctx)
        right.addWidget(self.test_set)
        self.balance = BalanceBox(self.ctx)
        right.addWidget(self.balance)
        right.addWidget(self.augment, 1)

        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(left, 3)
        lay.addLayout(right, 2)

    def _build_buttons(self) -> QHBoxLayout:
        self.add_btn = QPushButton("&Add folder…")
        self.add_btn.setToolTip("Add a folder of images: a parent with one sub-folder per class, or one "
                                "class folder. You can also drop folders anywhere on the window.")
        self.add_btn.clicked.connect(self.add_folder_dialog)
        self.sample_btn = QPushButton("Load &sample data")
        self.sample_btn.setToolTip("Use the bundled sample: 240 Fashion-MNIST images in four classes "
                                   "(T-shirt, trouser, sneaker, bag). Replaces the current folders.")
        self.sample_btn.clicked.connect(self.load_sample)
        self.remove_btn = QPushButton("Re&move folder")
        self.remove_btn.setToolTip("Stop using the selected folder.")
        self.remove_btn.clicked.connect(self._remove_selected)
        self.check_btn = CheckDataButton(self.ctx, self)  # the Check data view (widgets/check_data.py)
        buttons = QHBoxLayout()
        for b in (self.add_btn, self.sample_btn, self.remove_btn, self.check_btn):
            buttons.addWidget(b)
        buttons.addStretch(1)
        return buttons

    def _build_drop_hint(self) -> QLabel:
        self.drop_hint = QLabel("Drop image folders here — a folder with one sub-folder per class, several "
                                "class folders, or a mix — or click “Add folder…”.")
        self.drop_hint.setWordWrap(True)
        self.drop_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.drop_hint.setMinimumHeight(70)
        self.drop_hint.setStyleSheet(drop_zone_css("padding: 12px;"))
        return self.drop_hint

    def _build_folders(self) -> QListWidget:
        self.folders = QListWidget()
        self.folders.setToolTip("The folders images are read from (data.folders). Drop more folders on the "
                                "window to add them.")
        self.folders.setMaximumHeight(76)
        self.folders.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        return self.folders

    def _build_scan_box(self) -> QWidget:
        self.scan_bar = QProgressBar()
        self.scan_bar.setRange(0, 0)
        self.scan_bar.setToolTip("Scanning the folders; the window stays usable.")
        self.scan_label = QLabel()
        self.scan_cancel = QPushButton("Cancel")
        self.scan_cancel.setToolTip("Stop scanning the folders.")
        self.scan_cancel.clicked.connect(self._cancel_scan)
        scan_row = QHBoxLayout()
        scan_row.addWidget(self.scan_bar, 1)
        scan_row.addWidget(self.scan_label, 2)
        scan_row.addWidget(self.scan_cancel)
        self.scan_box = QWidget()
        self.scan_box.setLayout(scan_row)
        self.scan_box.setVisible(False)
        return self.scan_box

    def _build_classes(self) -> None:
        """The class table, the totals under it and the list of warnings."""
        self.table = ClassTable()
        self.table.renamed.connect(self._rename)
        self.table.use_changed.connect(self._use)
        self.table.currentCellChanged.connect(lambda *_: self.augment.timer.start())
        self.totals = QLabel()
        self.totals.setToolTip("What training will use, after renames and left-out classes.")
        self.warnings = QListWidget()
        self.warnings.setToolTip("Things worth fixing before training. Click a skipped-files line to see "
                                 "which files and why.")
        self.warnings.setMaximumHeight(96)
        self.warnings.setWordWrap(True)
        self.warnings.itemClicked.connect(self._warning_clicked)
        self.warnings.itemActivated.connect(self._warning_clicked)

    # ------------------------------------------------------------------ actions
    def add_folders(self, paths: list[str]) -> None:
        current = list(self.project.cfg.data.folders)
        for p in paths:
            p = os.path.abspath(p)
            if p not in current:
                current.append(p)
        self.project.set("data.folders", current)
        self.ctx.remember_dir("data", paths[-1])

    def add_folder_dialog(self) -> None:
        path = dialogs.choose_folder(self, "Add a folder of images", self.ctx.last_dir("data"))
        if path:
            self.add_folders([path])

    def load_sample(self) -> None:
        folder = sample_data_dir()
        if not folder.is_dir():
            self.ctx.status(f"The sample data is missing from this installation ({folder}).")
            return
        self.project.update({"data.folders": [str(folder)], "data.val_folders": [],
                             "data.exclude_classes": [], "data.rename_classes": {}})

    def _remove_selected(self) -> None:
        row = self.folders.currentRow()
        folders = list(self.project.cfg.data.folders)
        if 0 <= row < len(folders):
            del folders[row]
            self.project.set("data.folders", folders)

    def _rename(self, original: str, new: str) -> None:
        renames = dict(self.project.cfg.data.rename_classes)
        if new == original:
            renames.pop(original, None)
        else:
            renames[original] = new
        self.project.set("data.rename_classes", renames)

    def _use(self, original: str, used: bool) -> None:
        excluded = [c for c in self.project.cfg.data.exclude_classes if c != original]
        renamed = self.project.cfg.data.rename_classes.get(original)
        if renamed:
            excluded = [c for c in excluded if c != renamed]
        if not used:
            excluded.append(original)
        self.project.set("data.exclude_classes", excluded)

    # ------------------------------------------------------------------ scanning
    def _start_scan(self) -> None:
        folders = list(self.project.cfg.data.folders)
        if not folders:
            self.ctx.tasks.cancel("scan")
            self.project.set_scan(None, "")
            return
        self.project.set_scanning(True)
        self.scan_label.setText("Scanning…")
        self.ctx.tasks.start("scan", scan_job, folders, on_done=self._scan_done, on_error=self._scan_failed,
                             on_progress=lambda v: self.scan_label.setText(v[1]))

    def _scan_done(self, index) -> None:
        applog.info(f"scan: {len(index.samples)} images in {len(index.classes)} classes")
        self.project.set_scan(index)
        self.ctx.status(f"Found {len(index.samples):,} images in {len(index.classes)} class folders "
                        f"({index.seconds:.1f} s).")
        self._load_thumbnails()

    def _scan_failed(self, exc: BaseException) -> None:
        from transfer_gui.engine.scan import ScanCancelled

        msg = "Scan cancelled; add or re-add a folder to scan again." if isinstance(exc, ScanCancelled) else str(exc)
        self.project.set_scan(None, msg)

    def _cancel_scan(self) -> None:
        self.ctx.tasks.cancel("scan")
        self.project.set_scan(None, "Scan cancelled; add or re-add a folder to scan again.")

    def _load_thumbnails(self) -> None:
        rows = dataset_view.class_rows(self.project.scan, self.project.cfg.data)
        groups = {r.original: r.examples for r in rows}
        self.ctx.tasks.start("thumbnails", read_many, groups, THUMB, on_done=self.table.set_thumbnails)

    # ------------------------------------------------------------------ showing
    def _config_changed(self, keys: set) -> None:
        d = self.project.cfg.data
        self.folders.clear()  # a list to show, not a control bound to the config
        for f in d.folders:
            item = QListWidgetItem(f)
            item.setToolTip(f)
            self.folders.addItem(item)
        has = bool(d.folders)
        self.folders.setVisible(has)
        self.drop_hint.setVisible(not has)
        self.remove_btn.setEnabled(has)
        everything = "" in keys
        if everything or "data.folders" in keys:
            self._start_scan()
        if everything or keys & {"data.rename_classes", "data.exclude_classes", "data.val_fraction",
                                 "data.val_folders", "data.test_fraction", "data.test_folders",
                                 "data.exclude_files", "data.relabel"}:
            self._show_scan()

    def _show_scan(self) -> None:
        p = self.project
        self.scan_box.setVisible(p.scanning)
        self.add_btn.setEnabled(True)
        if p.scanning:
            return
        rows = dataset_view.class_rows(p.scan, p.cfg.data)
        same_classes = [r.original for r in rows] == [r.original for r in self.table.rows]
        self.table.set_rows(rows)  # keeps the thumbnail cells of rows that stay
        if rows and not same_classes:
            self._load_thumbnails()
        self._show_totals()
        self._show_warnings()
        self.augment.timer.start()

    def _show_totals(self) -> None:
        p = self.project
        d = p.cfg.data
        counts = p.class_counts()
        if not counts:
            self.totals.setText("")
        else:  # the engine's split rule, test set included (engine/rules.py split_sizes)
            self.totals.setText(dataset_view.split_text(counts, d))

    def _show_warnings(self) -> None:
        self.warnings.clear()
        p = self.project
        colors = status_colors()
        if p.scan_error:
            item = QListWidgetItem(p.scan_error)
            item.setForeground(QBrush(QColor(colors["error"])))
            self.warnings.addItem(item)
        if p.scan is None:
            self.warnings.setVisible(self.warnings.count() > 0)
            return
        if p.num_classes() >= 1:
            messages = [*dataset_view.effective_index(p.scan, p.cfg.data).warnings(with_imbalance=False),
                        *dataset_view.decision_warnings(p.scan, p.cfg.data)]
        else:
            messages = ["Every class is left out: tick at least two classes."]
        for msg in messages:
            skipped = "skipped" in msg and p.scan.skipped
            item = QListWidgetItem(("⚠ " + msg) + ("  Click to see which files and why." if skipped else ""))
            item.setForeground(QBrush(QColor(colors["warn"])))
            if skipped:
                item.setData(SKIPPED_ROLE, True)
                item.setToolTip("Click to list the skipped files and the reason for each.")
                f = item.font()
                f.setUnderline(True)
                item.setFont(f)
            self.warnings.addItem(item)
        if not messages:
            ok = QListWidgetItem("✓ No problems found.")
            ok.setForeground(QBrush(QColor(colors["ok"])))
            self.warnings.addItem(ok)
        self.warnings.setVisible(True)

    def on_theme_changed(self) -> None:
        self.drop_hint.setStyleSheet(drop_zone_css("padding: 12px;"))
        self._show_scan()  # message colours follow the palette

    def _warning_clicked(self, item: QListWidgetItem) -> None:
        if item.data(SKIPPED_ROLE) and self.project.scan is not None:
            self.skipped_dialog = SkippedDialog(self.project.scan.skipped, self)
            self.skipped_dialog.show()

    def _example_path(self) -> str | None:
        """An image of the selected class (or the first used class) for the augmentation preview."""
        row = self.table.selected_row()
        if row is None and self.table.rows:
            row = next((r for r in self.table.rows if not r.excluded and r.examples), None)
        return row.examples[0] if row is not None and row.examples else None
