"""What the window says a run will do is what the engine then does, on the same project: the
split counts on the Data step, the frozen groups and each group's rate on the Layers step, and
which layers are computed once (its speed note)."""

from __future__ import annotations

import re

import pytest
from PySide6.QtCore import Qt

from transfer_gui.engine import events as ev

from .helpers import make_class_folders, wait_for

FROZEN, NAME, LR = 0, 1, 3  # columns of the Layers step's table


def _window_figures(w):
    """Read the figures off the widgets, as a person would."""
    text = re.sub(r"<[^>]+>", "", w.data.totals.text())
    train, val = (int(x.replace(",", "")) for x in re.search(r"([\d,]+) for training, ([\d,]+) for valid", text)
                  .groups())
    held = re.search(r"([\d,]+) for test", text)
    test = int(held.group(1).replace(",", "")) if held else 0
    table = w.layers.table
    names = [table.item(r, NAME).text().split("  ")[0] for r in range(table.rowCount())]
    frozen = {n for r, n in enumerate(names) if table.item(r, FROZEN).checkState() == Qt.CheckState.Checked}
    rates = {n: table.cellWidget(r, LR).value() for r, n in enumerate(names) if n not in frozen}
    return (train, val, test), names, frozen, rates, w.layers.totals.text()


@pytest.mark.parametrize("layers", [
    {"layers.train_from": "layer3", "layers.lr_decay": 0.5, "layers.lr": {"layer4": 3e-3}},  # frozen prefix
    {"layers.train_from": "head", "data.test_fraction": 0.25},  # head only: the features once; a test share
    {"layers.train_from": "head", "decisions": True},  # files left out and relabelled (data.exclude_files, data.relabel)
])
def test_window_figures_are_what_the_engine_does(qtbot, window, ui_env, layers):
    w, p = window, window.project
    make_class_folders(ui_env["tmp"] / "data", {"red": 11, "green": 7, "blue": 5})
    layers = dict(layers)
    if layers.pop("decisions", False):
        red = sorted(str(f) for f in (ui_env["tmp"] / "data" / "red").glob("*.png"))
        layers.update({"data.exclude_files": red[:2], "data.relabel": {red[2]: "blue", red[3]: "green"}})
    w.data.add_folders([str(ui_env["tmp"] / "data")])
    p.update({"model.name": "resnet18", "model.weights": "none", "data.image_size": 32, "data.val_fraction": 0.3,
              "train.batch_size": 4, "train.epochs": 1, "schedule.name": "constant", "schedule.warmup_steps": 0,
              "layers.head_lr": 1e-2, "output.dir": str(ui_env["tmp"] / "run"), **layers})
    wait_for(qtbot, lambda: p.scan is not None and w.layers._info() is not None, 120)
    w.go_to("Layers")
    sizes, names, frozen, rates, note = _window_figures(w)

    seen: list = []
    w.training.start()
    w.training.run.event.connect(seen.append)
    wait_for(qtbot, lambda: not w.training.is_running(), 180)
    assert w.training.last_finished.status == "completed", w.training.last_finished.message
    started = next(e for e in seen if isinstance(e, ev.RunStarted))
    first_batch = next(e for e in seen if isinstance(e, ev.BatchEnd))
    notes = " ".join(e.message for e in seen if isinstance(e, ev.PhaseChanged))

    assert sizes == (started.train_size, started.val_size, started.test_size)
    assert sizes[2] == (6 if p.cfg.data.test_fraction else 0)  # 3 + 2 + 1 of 11, 7 and 5 images
    assert names == started.groups
    assert frozen == set(started.groups) - set(started.trainable_groups)
    used = {g: first_batch.lrs[g] for g in started.trainable_groups}
    assert rates == pytest.approx(used, rel=1e-6)  # a constant schedule runs at the base rates
    if started.feature_cache:
        assert "features are computed once" in note
    else:
        prefix = sorted(frozen, key=names.index)
        assert f"({', '.join(prefix)}) are computed once" in note
        assert f"Computing the frozen layers ({', '.join(prefix)}) once" in notes
