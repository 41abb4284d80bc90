"""The right-hand side of the Data step: where validation and test images come from, and the
augmentation switches with a preview of what training will see."""

from __future__ import annotations

import os
from typing import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QLineEdit, QPushButton, QRadioButton, QSpinBox, QVBoxLayout)

from transfer_gui.engine.formats import is_image_name
from transfer_gui.state import dataset_view
from transfer_gui.ui import dialogs
from transfer_gui.ui.binding import bind
from transfer_gui.ui.context import Context
from transfer_gui.ui.theme import status_colors
from transfer_gui.ui.widgets.aug_preview import AugmentPreview



def val_scan_job(task, folders: list[str]) -> str:
    """Job: a one-line description of the validation folders (one class alone is allowed)."""
    from transfer_gui.engine.scan import ScanError, scan_sources

    try:
        idx = scan_sources(folders, cancel=lambda: task.cancelled)
        return f"{len(idx.samples):,} validation images in {len(idx.classes)} classes."
    except ScanError as exc:
        if "Only one class" not in str(exc):
            raise
        n = sum(1 for f in folders for _r, _d, files in os.walk(f) for x in files
                if is_image_name(x))
        return f"{n:,} validation images of one class."


class ValidationBox(QGroupBox):
    def __init__(self, ctx: Context):
        super().__init__("Validation images")
        self.ctx, self.project = ctx, ctx.project
        self.setToolTip("Images held back to measure accuracy honestly; they are never trained on.")
        self.split_radio = QRadioButton("Hold back a share of each class")
        self.split_radio.setToolTip("Split each class: this share of its images is used for validation "
                                    "(data.val_fraction).")
        self.folder_radio = QRadioButton("Use a separate folder")
        self.folder_radio.setToolTip("Validate on a folder of its own, with the same class sub-folders "
                                     "(data.val_folders).")
        group = QButtonGroup(self)
        group.addButton(self.split_radio)
        group.addButton(self.folder_radio)
        self.val_pct = QSpinBox()
        self.val_pct.setRange(0, 90)
        self.val_pct.setSuffix(" %")
        self.val_pct.setToolTip("Share of every class kept for validation (0 = no validation).")
        self.val_folder = QLineEdit()
        self.val_folder.setReadOnly(True)
        self.val_folder.setPlaceholderText("no folder chosen")
        self.val_folder.setToolTip("The validation folder.")
        self.val_browse = QPushButton("Choose…")
        self.val_browse.setToolTip("Choose the validation folder.")
        self.val_info = QLabel()
        self.val_info.setWordWrap(True)
        self.split_radio.toggled.connect(self._mode_changed)
        self.val_browse.clicked.connect(self._choose_folder)
        self._layout()
        # the split radio stands for "no validation folders"; choosing the folder radio changes
        # nothing until a folder is chosen
        bind({"split": self.split_radio, "folder": self.folder_radio}, self.project, "data.val_folders",
             to_widget=lambda folders: "folder" if folders else "split",
             from_widget=lambda mode: [] if mode == "split" else None)
        bind(self.val_pct, self.project, "data.val_fraction", to_widget=lambda f: round(f * 100),
             from_widget=lambda v: v / 100.0)
        self.project.config_changed.connect(self._config_changed)
        self.project.scan_changed.connect(self.show_info)
        self._config_changed({""})

    def _layout(self) -> None:
        row1 = QHBoxLayout()
        row1.addWidget(self.split_radio)
        row1.addWidget(self.val_pct)
        row1.addStretch(1)
        row2 = QHBoxLayout()
        row2.addWidget(self.folder_radio)
        row2.addWidget(self.val_folder, 1)
        row2.addWidget(self.val_browse)
        lay = QVBoxLayout(self)
        lay.addLayout(row1)
        lay.addLayout(row2)
        lay.addWidget(self.val_info)

    def _mode_changed(self, split: bool) -> None:
        self.val_pct.setEnabled(split)
        self.val_browse.setEnabled(not split)

    def _choose_folder(self) -> None:
        path = dialogs.choose_folder(self, "Choose the validation folder", self.ctx.last_dir("data"))
        if path:
            self.project.set("data.val_folders", [os.path.abspath(path)])

    def _config_changed(self, keys: set) -> None:
        d = self.project.cfg.data
        self._mode_changed(self.split_radio.isChecked())  # the radios follow data.val_folders
        self.val_folder.setText(d.val_folders[0] if d.val_folders else "")
        if "" in keys or "data.val_folders" in keys:
            self._scan()
        self.show_info()

    def _scan(self) -> None:
        folders = list(self.project.cfg.data.val_folders)
        if not folders:
            self.ctx.tasks.cancel("val-scan")
            self.project.set_val_scan(None, "")
            return
        self.ctx.tasks.start("val-scan", val_scan_job, folders, on_done=lambda text: self.project.set_val_scan(text),
                             on_error=lambda e: self.project.set_val_scan(None, str(e)))

    def show_info(self) -> None:
        p, d = self.project, self.project.cfg.data
        if d.val_folders:
            err = p.val_scan_error
            text = p.val_scan if isinstance(p.val_scan, str) else ""
            self.val_info.setText(f"<span style='color:{status_colors()['error']}'>{err}</span>" if err else text)
        else:
            self.val_info.setText("No validation: accuracy cannot be measured." if d.val_fraction == 0 else "")


def test_scan_job(task, folders: list[str], exclude: list[str], rename: dict[str, str]) -> tuple[int, list[str]]:
    """Job: (images, class names) of the test folders, renamed and excluded as the run will
    (one class alone is allowed)."""
    from transfer_gui.engine.scan import scan_sources

    idx = scan_sources(folders, exclude, rename, cancel=lambda: task.cancelled, min_classes=1)
    return len(idx.samples), list(idx.classes)


class TestBox(QGroupBox):
    """Where the test set comes from: none, a held-out share of every class (data.test_fraction)
    or a folder of its own (data.test_folders). Evaluated once, after training, with the chosen
    checkpoint; it never takes part in choosing the best epoch."""

    __test__ = False  # not a pytest class

    def __init__(self, ctx: Context):
        super().__init__("Test images")
        self.ctx, self.project = ctx, ctx.project
        self.setToolTip("Images kept apart from training and validation, evaluated once after training with the "
                        "checkpoint the run chose: an honest final figure, since validation picked that checkpoint.")
        self._build()
        self._layout()
        bind({"share": self.share_radio, "folder": self.folder_radio}, self.project, "data.test_folders",
             to_widget=lambda folders: "folder" if folders else "share",
             from_widget=lambda mode: [] if mode == "share" else None)
        bind(self.test_pct, self.project, "data.test_fraction", to_widget=lambda f: round(f * 100),
             from_widget=lambda v: v / 100.0)
        self.scanned: tuple[int, list[str]] | None = None  # the test folders' images and classes
        self.scan_error = ""
        self.project.config_changed.connect(self._config_changed)
        self.project.scan_changed.connect(self.show_info)
        self._config_changed({""})

    def _build(self) -> None:
        self.share_radio = QRadioButton("Hold back a share of each class")
        self.share_radio.setToolTip("Take this share of every class's images as the test set, before the "
                                    "validation split (data.test_fraction; seeded by train.seed).")
        self.folder_radio = QRadioButton("Use a separate folder")
        self.folder_radio.setToolTip("Test on a folder of its own with class sub-folders named like the "
                                     "training classes (data.test_folders).")
        group = QButtonGroup(self)
        group.addButton(self.share_radio)
        group.addButton(self.folder_radio)
        self.test_pct = QSpinBox()
        self.test_pct.setRange(0, 90)
        self.test_pct.setSuffix(" %")
        self.test_pct.setToolTip("Share of every class held out for the test set (0 = no test set). Validation "
                                 "takes its share of what is left.")
        self.test_folder = QLineEdit()
        self.test_folder.setReadOnly(True)
        self.test_folder.setPlaceholderText("no folder chosen")
        self.test_folder.setToolTip("The test folder.")
        self.test_browse = QPushButton("Choose…")
        self.test_browse.setToolTip("Choose the test folder.")
        self.test_info = QLabel()
        self.test_info.setWordWrap(True)
        self.share_radio.toggled.connect(self._mode_changed)
        self.test_browse.clicked.connect(self._choose_folder)

    def _layout(self) -> None:
        row1 = QHBoxLayout()
        row1.addWidget(self.share_radio)
        row1.addWidget(self.test_pct)
        row1.addStretch(1)
        row2 = QHBoxLayout()
        row2.addWidget(self.folder_radio)
        row2.addWidget(self.test_folder, 1)
        row2.addWidget(self.test_browse)
        lay = QVBoxLayout(self)
        lay.addLayout(row1)
        lay.addLayout(row2)
        lay.addWidget(self.test_info)

    def _mode_changed(self, share: bool) -> None:
        self.test_pct.setEnabled(share)
        self.test_browse.setEnabled(not share)

    def _choose_folder(self) -> None:
        path = dialogs.choose_folder(self, "Choose the test folder", self.ctx.last_dir("data"))
        if path:  # a folder replaces the held-out share (both at once is refused)
            self.project.update({"data.test_fraction": 0.0, "data.test_folders": [os.path.abspath(path)]})

    def _config_changed(self, keys: set) -> None:
        d = self.project.cfg.data
        self._mode_changed(self.share_radio.isChecked())
        self.test_folder.setText(d.test_folders[0] if d.test_folders else "")
        if keys & {"", "data.test_folders", "data.rename_classes", "data.exclude_classes"}:
            self._scan()
        self.show_info()

    def _scan(self) -> None:
        d = self.project.cfg.data
        self.scanned, self.scan_error = None, ""
        if not d.test_folders:
            self.ctx.tasks.cancel("test-scan")
            return
        self.ctx.tasks.start("test-scan", test_scan_job, list(d.test_folders), list(d.exclude_classes),
                             dict(d.rename_classes), on_done=self._scanned,
                             on_error=lambda e: self._scanned(None, str(e)))

    def _scanned(self, result: tuple[int, list[str]] | None, error: str = "") -> None:
        self.scanned, self.scan_error = result, error
        self.show_info()

    def info_text(self) -> tuple[str, bool]:
        """(what the test set will be, whether it is a problem)."""
        p, d = self.project, self.project.cfg.data
        if d.test_folders:
            if self.scan_error:
                return self.scan_error, True
            if self.scanned is None:
                return "", False
            n, classes = self.scanned
            unknown = sorted(set(classes) - set(p.class_counts())) if p.class_counts() else []
            if unknown:
                return (f"Test classes the training data lacks: {', '.join(unknown)}. Rename or remove those "
                        f"folders, or exclude them (training will refuse them)."), True
            return f"{n:,} test images in {len(classes)} classes, evaluated once after training.", False
        test = dataset_view.split_sizes(p.class_counts(), d)[2] if p.class_counts() else 0
        if d.test_fraction == 0:
            return "No test set: the final figure is the validation accuracy, which chose the checkpoint.", False
        return f"{test:,} test images held out, evaluated once after training; never trained on.", False

    def show_info(self) -> None:
        text, bad = self.info_text()
        self.test_info.setText(f"<span style='color:{status_colors()['error']}'>{text}</span>" if bad else text)


class AugmentBox(QGroupBox):
    def __init__(self, ctx: Context, example_path: Callable[[], str | None]):
        super().__init__("Augmentation")
        self.ctx, self.project = ctx, ctx.project
        self.example_path = example_path
        self.setToolTip("Random changes to training images so the model sees more variety. Off by default: "
                        "without it the frozen backbone's features are computed once, which makes training fast.")
        lay = QVBoxLayout(self)
        lay.addLayout(self._build_switches())
        lay.addWidget(self._build_preview())
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.reroll)
        lay.addLayout(row)
        lay.addStretch(1)
        for w, key in ((self.aug_on, "enabled"), (self.aug_crop, "random_resized_crop"),
                       (self.aug_hflip, "hflip"), (self.aug_vflip, "vflip"), (self.aug_rot, "rotation")):
            bind(w, self.project, f"data.augment.{key}")
        bind(self.aug_jitter, self.project, "data.augment.color_jitter", from_widget=lambda v: round(float(v), 2))
        self.project.config_changed.connect(self._config_changed)
        self._config_changed({""})

    def _build_switches(self) -> QFormLayout:
        self.aug_on = QCheckBox("Augment training images")
        self.aug_on.setToolTip("Turn random augmentation on or off (data.augment.enabled).")
        self.aug_crop = QCheckBox("Random crop and zoom")
        self.aug_crop.setToolTip("Crop a random 50–100 % of the image and resize it (data.augment.random_resized_crop).")
        self.aug_hflip = QCheckBox("Mirror left–right")
        self.aug_hflip.setToolTip("Flip half of the images horizontally (data.augment.hflip).")
        self.aug_vflip = QCheckBox("Flip upside down")
        self.aug_vflip.setToolTip("Flip half of the images vertically; only for images without an up "
                                  "(data.augment.vflip).")
        self.aug_rot = QDoubleSpinBox()
        self.aug_rot.setRange(0, 180)
        self.aug_rot.setDecimals(0)
        self.aug_rot.setSuffix("°")
        self.aug_rot.setToolTip("Rotate by a random angle up to this many degrees either way (data.augment.rotation).")
        self.aug_jitter = QDoubleSpinBox()
        self.aug_jitter.setRange(0, 1)
        self.aug_jitter.setSingleStep(0.1)
        self.aug_jitter.setToolTip("Random brightness, contrast and colour changes, 0 = none, 1 = strong "
                                   "(data.augment.color_jitter).")
        form = QFormLayout()
        form.addRow(self.aug_on)
        checks = QHBoxLayout()
        for w in (self.aug_crop, self.aug_hflip, self.aug_vflip):
            checks.addWidget(w)
        checks.addStretch(1)
        form.addRow(checks)
        nums = QHBoxLayout()
        for label, w in (("Rotation", self.aug_rot), ("Colour jitter", self.aug_jitter)):
            lab = QLabel(label)
            lab.setToolTip(w.toolTip())
            nums.addWidget(lab)
            nums.addWidget(w)
            nums.addSpacing(12)
        nums.addStretch(1)
        form.addRow(nums)
        return form

    def _build_preview(self) -> AugmentPreview:
        self.preview = AugmentPreview(self.ctx.tasks)
        self.reroll = QPushButton("New samples")
        self.reroll.setToolTip("Draw new random augmentations of the image.")
        self.timer = QTimer(self, singleShot=True, interval=150)
        self.timer.timeout.connect(self.request_preview)
        self.reroll.clicked.connect(self.request_preview)
        return self.preview

    def _config_changed(self, keys: set) -> None:
        enabled = self.project.cfg.data.augment.enabled
        for w in (self.aug_crop, self.aug_hflip, self.aug_vflip, self.aug_rot, self.aug_jitter):
            w.setEnabled(enabled)
        if "" in keys or any(k.startswith(("data.augment", "data.image_size", "model.")) for k in keys):
            self.timer.start()

    def request_preview(self) -> None:
        cfg = self.project.cfg
        self.preview.request(self.example_path(), cfg.data.augment, cfg.data.image_size or 224)


class BalanceBox(QGroupBox):
    """Class balance: the engine's imbalance warning (engine/rules.py imbalance, on the counts the
    run trains on) with its one-click fix, the two fixes as switches (class weights in the loss,
    the balanced sampler), and what the file decisions leave out or move."""

    def __init__(self, ctx: Context):
        super().__init__("Class balance")
        self.ctx, self.project = ctx, ctx.project
        self.setToolTip("When some classes have many more images than others, the model favours them. Weighting "
                        "the classes in the loss or drawing them evenly gives the small classes their share.")
        self._build()
        bind(self.weights_check, self.project, "train.class_weights", to_widget=lambda v: v == "balanced",
             from_widget=lambda on: "balanced" if on else "none")
        bind(self.sampler_check, self.project, "data.weighted_sampler")
        self.fix_btn.clicked.connect(self.fix)
        self.project.config_changed.connect(self._config_changed)
        self.project.scan_changed.connect(self.show_info)
        self.show_info()

    def _build(self) -> None:
        self.weights_check = QCheckBox("Class weights: balanced")
        self.weights_check.setToolTip("Weight each class in the loss by the inverse of its share of the training "
                                      "images, normalised to mean 1 (train.class_weights = \"balanced\").")
        self.sampler_check = QCheckBox("Balanced sampler")
        self.sampler_check.setToolTip("Draw training images so that every class comes up equally often "
                                      "(data.weighted_sampler).")
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.fix_btn = QPushButton("Weight the classes")
        self.fix_btn.setToolTip("Turn on class weights in the loss (train.class_weights = \"balanced\"); compare the "
                                "per-class recall of the next run with this one's on the Results step.")
        self.decisions = QLabel()
        self.decisions.setWordWrap(True)
        checks = QHBoxLayout()
        checks.addWidget(self.weights_check)
        checks.addWidget(self.sampler_check)
        checks.addStretch(1)
        fix = QHBoxLayout()
        fix.addWidget(self.warning, 1)
        fix.addWidget(self.fix_btn)
        lay = QVBoxLayout(self)
        lay.addLayout(checks)
        lay.addLayout(fix)
        lay.addWidget(self.decisions)

    def fix(self) -> None:
        """The one-click fix: class weights in the loss."""
        self.project.set("train.class_weights", "balanced")

    def _config_changed(self, keys: set) -> None:
        if keys & {"", "train.class_weights", "data.weighted_sampler", "data.exclude_files", "data.relabel",
                   "data.rename_classes", "data.exclude_classes"}:
            self.show_info()

    def info(self) -> dict | None:
        """The imbalance of the classes the run trains on, or None."""
        counts = self.project.class_counts()
        return dataset_view.imbalance(counts) if counts else None

    def show_info(self) -> None:
        found = self.info()
        d, t = self.project.cfg.data, self.project.cfg.train
        fixed = t.class_weights == "balanced" or d.weighted_sampler
        if found is None:
            self.warning.setText("")
        elif fixed:
            self.warning.setText(f"'{found['largest']}' has {found['ratio']:.1f}x the images of "
                                 f"'{found['smallest']}'; the run balances the classes.")
        else:
            self.warning.setText(f"<span style='color:{status_colors()['warn']}'>⚠ {found['advice']}</span>")
        self.warning.setVisible(found is not None)
        self.fix_btn.setVisible(found is not None and not fixed)
        self.decisions.setText(dataset_view.decisions_summary(self.project.scan, d))
        self.decisions.setVisible(bool(self.decisions.text()))
