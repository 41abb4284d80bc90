"""Controls bound to config keys: shown from the project, written to it by the user, a refused
value shown back, and no write-back when the project changes them."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox, QLabel, QLineEdit, QRadioButton,
                               QSpinBox, QWidget)

from transfer_gui import config as config_mod
from transfer_gui.state.project import Project
from transfer_gui.ui.binding import bind, config_value, fill_combo, names_key, signals_blocked
from transfer_gui.ui.widgets.sci_spin import SciSpinBox


@pytest.fixture
def project(qapp):
    p = Project()
    p.sets = []  # every project.set, to catch write-backs
    original = p.set

    def counting_set(key, value):
        p.sets.append((key, value))
        return original(key, value)

    p.set = counting_set
    return p


def test_spin_box_shows_the_config_and_writes_user_changes(project):
    spin = QSpinBox()
    spin.setRange(0, 1000)
    bind(spin, project, "train.epochs")
    assert spin.value() == project.cfg.train.epochs == 10
    project.update({"train.epochs": 25})
    assert spin.value() == 25
    assert project.sets == []  # showing a value never writes it back
    spin.setValue(40)  # as the user would
    assert project.cfg.train.epochs == 40 and project.sets == [("train.epochs", 40)]
    assert isinstance(project.cfg.train.epochs, int)
    project.new()  # everything changed ({""})
    assert spin.value() == 10 and len(project.sets) == 1


def test_a_refused_value_is_shown_back(project):
    spin = QSpinBox()
    spin.setRange(0, 1000)  # wider than the config allows (epochs >= 1)
    bind(spin, project, "train.epochs")
    errors = []
    project.config_error.connect(errors.append)
    spin.setValue(0)
    assert project.cfg.train.epochs == 10 and spin.value() == 10
    assert len(errors) == 1 and "train.epochs" in errors[0]
    assert project.sets == [("train.epochs", 0)]  # one try, no loop


def test_only_the_named_key_or_everything_refreshes(project):
    spin = QSpinBox()
    spin.setRange(1, 1000)
    bind(spin, project, "train.batch_size")
    with signals_blocked(spin):
        spin.setValue(7)  # out of step with the config on purpose
    project.set("train.epochs", 3)
    assert spin.value() == 7  # not its key
    project.update({"train.batch_size": 16})
    assert spin.value() == 16
    box = QCheckBox()
    bind(box, project, "data.augment.hflip")
    project.set("data.augment", {"enabled": True, "hflip": False})  # a section above the key
    assert not box.isChecked()
    assert names_key({""}, "a.b") and names_key({"a"}, "a.b") and names_key({"a.b.c"}, "a.b")
    assert not names_key({"a.bc"}, "a.b") and not names_key({"train.epochs"}, "train.batch_size")


def test_double_and_scientific_spin_boxes_with_converters(project):
    decay = QDoubleSpinBox()
    decay.setRange(0.01, 1.0)
    bind(decay, project, "layers.lr_decay", from_widget=lambda v: round(float(v), 4))
    decay.setValue(0.5)
    assert project.cfg.layers.lr_decay == 0.5
    lr = SciSpinBox(1e-7, 10.0)
    bind(lr, project, "layers.head_lr")
    project.set("layers.head_lr", 3e-4)
    assert lr.value() == pytest.approx(3e-4) and lr.text() == "3e-4"
    lr.setValue(2e-3)
    assert project.cfg.layers.head_lr == pytest.approx(2e-3)
    pct = QSpinBox()
    pct.setRange(0, 90)
    bind(pct, project, "data.val_fraction", to_widget=lambda f: round(f * 100), from_widget=lambda v: v / 100.0)
    assert pct.value() == 20
    pct.setValue(30)
    assert project.cfg.data.val_fraction == 0.3
    size = QSpinBox()
    size.setRange(0, 1024)
    bind(size, project, "data.image_size", from_widget=lambda v: None if v < 16 else int(v))
    size.setValue(8)  # the converter declines: no change
    assert project.cfg.data.image_size == 0 and ("data.image_size", 8) not in project.sets


def test_combo_box_by_item_data_with_labels(project):
    combo = QComboBox()
    fill_combo(combo, config_mod.EARLY_STOP_METRICS, {"val_acc": "validation accuracy"}, {"val_loss": "tip"})
    assert [combo.itemText(i) for i in range(combo.count())] == ["validation accuracy", "val_loss"]
    assert combo.itemData(1, 3) == "tip"
    bind(combo, project, "train.early_stopping_metric")
    assert combo.currentData() == "val_acc"
    combo.setCurrentIndex(1)
    assert project.cfg.train.early_stopping_metric == "val_loss"
    project.set("train.early_stopping_metric", "val_acc")
    assert combo.currentIndex() == 0

    device = QComboBox()
    device.addItem("Automatic", "auto")
    binding = bind(device, project, "train.device", add_missing=True)
    project.set("train.device", "cuda:1")
    assert device.currentData() == "cuda:1" and device.currentText() == "cuda:1"
    with signals_blocked(device):
        device.clear()  # a cleared combo box writes nothing
        device.addItem("CPU", "cpu")
    binding.refresh()
    assert device.currentData() == "cuda:1" and project.cfg.train.device == "cuda:1"


def test_check_box_and_line_edit(project):
    box = QCheckBox()
    bind(box, project, "data.augment.enabled")
    assert not box.isChecked()
    box.setChecked(True)
    assert project.cfg.data.augment.enabled
    project.set("data.augment.enabled", False)
    assert not box.isChecked()

    line = QLineEdit()
    bind(line, project, "output.dir", from_widget=str.strip)
    line.setText("  /tmp/run  ")
    assert project.cfg.output.dir == ""  # written when editing finishes, not per key
    line.editingFinished.emit()
    assert project.cfg.output.dir == "/tmp/run"
    project.set("output.dir", "/elsewhere")
    assert line.text() == "/elsewhere"


def test_radio_group_with_a_button_for_every_other_value(project):
    parent = QWidget()
    pre, none, file_ = QRadioButton("pre", parent), QRadioButton("none", parent), QRadioButton("file", parent)
    group = QButtonGroup(parent)
    for b in (pre, none, file_):
        group.addButton(b)
    chosen = []
    file_.toggled.connect(lambda on: on and chosen.append("file"))
    binding = bind({"pretrained": pre, "none": none}, project, "model.weights", other=file_)
    assert pre.isChecked()
    none.setChecked(True)
    assert project.cfg.model.weights == "none"
    project.set("model.weights", "/w/model.pth")
    assert file_.isChecked() and chosen == []  # shown, not chosen: its handler did not run
    file_.setChecked(True)
    pre.setChecked(True)
    assert project.cfg.model.weights == "pretrained"
    file_.setChecked(True)  # the user picks "a file": the binding writes nothing
    assert chosen == ["file"] and project.cfg.model.weights == "pretrained"
    binding.refresh()  # e.g. the file dialog was cancelled
    assert pre.isChecked()


def test_signals_blocked_restores_each_state():
    a, b = QSpinBox(), QSpinBox()
    b.blockSignals(True)
    with signals_blocked(a, b):
        assert a.signalsBlocked() and b.signalsBlocked()
        with signals_blocked(a):
            pass
        assert a.signalsBlocked()
    assert not a.signalsBlocked() and b.signalsBlocked()


def test_unsupported_controls_and_values(project):
    with pytest.raises(TypeError):
        bind(QLabel(), project, "train.epochs")
    with pytest.raises(TypeError):
        bind({"x": QCheckBox()}, project, "model.weights")
    assert config_value(project.cfg, "schedule.name") == "cosine"
    project.set("layers.lr", {"head": 0.1})
    assert config_value(project.cfg, "layers.lr.head") == 0.1
