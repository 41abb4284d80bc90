"""Heat maps in the window: the Try it toggle and class picker over the shown image, and the
Mistakes gallery's heat-map thumbnails and its filter to one confusion cell, on a run folder
with a real checkpoint, the heat maps computed on the widgets' task runner."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from transfer_gui.ui.tasks import TaskRunner
from transfer_gui.ui.widgets.mistakes import MistakesGallery
from transfer_gui.ui.widgets.try_it import TryIt

from .helpers import wait_for

CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder with a checkpoint (a small untrained network: the heat maps are its own) and
    four images."""
    import torch

    from transfer_gui.engine.catalog import build_model
    from transfer_gui.engine.checkpoint import save_checkpoint

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("heat")
    built = build_model("resnet18", "none", num_classes=3)
    save_checkpoint(root / "run" / "checkpoints" / "best.pt", model=built.model, arch="resnet18", classes=CLASSES,
                    preprocessing=built.preprocessing.at_size(64), head_path=built.head_path, metrics={},
                    config_text="")
    rng = np.random.default_rng(0)
    images = []
    for i in range(4):
        path = root / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
        images.append(str(path))
    return str(root / "run"), images


@pytest.fixture
def tasks(qapp):
    runner = TaskRunner()
    yield runner
    runner.shutdown()


def _pixels(label) -> np.ndarray:
    image = label.pixmap().toImage()
    return np.array([[image.pixel(x, y) for x in range(0, image.width(), 4)] for y in range(0, image.height(), 4)])


def test_try_it_heat_map_toggle_and_class_picker(qtbot, ui_env, tasks, run_folder):
    run_dir, images = run_folder
    w = TryIt(tasks)
    qtbot.addWidget(w)
    w.show()
    assert not w.heat.isEnabled()  # nothing to explain yet
    w.set_source(run_dir)
    w.classify(images[0])
    wait_for(qtbot, lambda: len(w.results) == 3, 60)
    assert w.heat.isEnabled() and [w.heat_class.itemText(i) for i in range(w.heat_class.count())] == \
        ["Predicted class", *CLASSES]
    plain = _pixels(w.image)
    qtbot.mouseClick(w.heat, Qt.MouseButton.LeftButton)
    wait_for(qtbot, lambda: w.heat_state == "shown", 60)
    assert w.heat_info["class_name"] == w.results[0][0]  # the predicted class by default
    assert w.heat_info["layer"] == "layer4" and w.heat_info["method"] == "Grad-CAM"  # a ResNet: no gates
    assert "Grad-CAM on layer4" in w.status.text()
    assert not np.array_equal(_pixels(w.image), plain)  # the overlay is over the image now
    other = next(i for i in range(1, 4) if w.heat_class.itemText(i) != w.results[0][0])
    w.heat_class.setCurrentIndex(other)
    wait_for(qtbot, lambda: w.heat_info.get("class_index") == other - 1, 60)
    assert w.heat_info["class_name"] == CLASSES[other - 1] and "Heat map for" in w.status.text()
    qtbot.mouseClick(w.heat, Qt.MouseButton.LeftButton)
    assert w.heat_state == "off" and np.array_equal(_pixels(w.image), plain)
    w.heat.setChecked(True)
    w.classify(images[1])  # a new image while the toggle is on gets its own heat map
    wait_for(qtbot, lambda: w.heat_state == "shown" and w.path == images[1], 60)


def _predictions(images: list[str]) -> list[dict]:
    pairs = [(0, 1, 0.9), (0, 1, 0.6), (2, 0, 0.8), (1, 1, 0.95)]  # two cat→dog, one fox→cat, one right
    return [{"path": p, "true": t, "pred": q, "confidence": c} for p, (t, q, c) in zip(images, pairs)]


def test_mistakes_gallery_pair_filter(qtbot, ui_env, tasks, run_folder):
    _run_dir, images = run_folder
    g = MistakesGallery(tasks)
    qtbot.addWidget(g)
    g.set_predictions(CLASSES, _predictions(images))
    assert g.list.count() == 3 and not g.all_btn.isVisibleTo(g)
    g.set_pair(0, 1)
    assert g.paths() == ["img0.png", "img1.png"] and "true cat → predicted dog" in g.count.text()
    assert g.all_btn.isVisibleTo(g)
    g.set_pair(1, 1)  # a diagonal cell: the right answers of that class
    assert g.paths() == ["img3.png"]
    g.set_pair(None, 0)
    assert g.paths() == ["img2.png"]
    qtbot.mouseClick(g.all_btn, Qt.MouseButton.LeftButton)
    assert g.pair == (None, None) and g.list.count() == 3


def test_mistakes_gallery_heat_map_thumbnails(qtbot, ui_env, tasks, run_folder):
    run_dir, images = run_folder
    g = MistakesGallery(tasks)
    qtbot.addWidget(g)
    g.show()
    g.set_predictions(CLASSES, _predictions(images))
    assert not g.heat.isEnabled()  # no model to explain with yet
    g.set_source(run_dir)
    assert g.heat.isEnabled() and g.heat_shown() == 0
    qtbot.mouseClick(g.heat, Qt.MouseButton.LeftButton)
    wait_for(qtbot, lambda: g.heat_shown() == 3, 120)
    assert set(g.heat_thumbs) == {(images[0], 1), (images[1], 1), (images[2], 0)}  # for the predicted class
    g.heat_for.setCurrentIndex(1)  # for the true class
    wait_for(qtbot, lambda: g.heat_shown() == 3, 120)
    assert {(images[0], 0), (images[1], 0), (images[2], 2)} <= set(g.heat_thumbs)
    qtbot.mouseClick(g.heat, Qt.MouseButton.LeftButton)
    assert g.heat_shown() == 0 and not tasks.running("mistake-heat")
