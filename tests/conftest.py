"""Shared fixtures: tiny generated image folders that a network can actually learn."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PIL import Image

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}


def make_class_folders(root: Path, per_class: int = 10, size: int = 40, classes=("red", "green", "blue"),
                       seed: int = 0) -> Path:
    """root/<class>/<i>.png: noisy images whose dominant colour is the class."""
    rng = np.random.default_rng(seed)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array(COLOURS.get(name, rng.integers(0, 255, 3)), dtype=np.float32)
        for i in range(per_class):
            noise = rng.normal(0, 30, (size, size, 3))
            img = np.clip(base + noise, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def image_folders(tmp_path: Path) -> Path:
    return make_class_folders(tmp_path / "data")


@pytest.fixture
def one_torch_thread():
    """torch on one intra-op thread, deterministic algorithms on; both restored after. A training
    run's weights depend on the thread count (the sums are split differently), and a short run from
    scratch carries such differences into a different model: one seed on 1 and 2 threads gave
    heat-map hit rates of 94 and 100 %. On one thread a run is the same whatever the machine's
    core count or load, and cheapest on a busy machine (10 s of CPU against 78-97 s on 2 threads
    at load 8-9, the idle thread spinning)."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated_torch_home(tmp_path_factory, monkeypatch):
    """Weights downloads in tests go to a private cache, never the user's."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch_home"))


@pytest.fixture(autouse=True)
def _isolated_user_cache(tmp_path, monkeypatch):
    """The user's cache folder (exported frozen graphs, model-name lists) is private to each test:
    what one test left there never decides another's outcome."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user_cache"))


def tiny_config(data_dir: Path, out_dir: Path, **changes):
    from transfer_gui.config import RunConfig

    base = {"data.folders": [str(data_dir)], "output.dir": str(out_dir), "data.image_size": 32,
            "data.augment.enabled": False, "train.epochs": 2, "train.batch_size": 8, "layers.train_from": "head",
            "model.name": "resnet18", "model.weights": "none"}
    base.update(changes)
    return RunConfig().replace(**base)


def trained_run(root: Path, data_name: str = "data", per_class: int = 10, **changes) -> Path:
    """A finished tiny run in ``root/run``, trained on ``make_class_folders(root / data_name)``:
    what the evaluation, export and int8 tests build their module fixtures on."""
    from transfer_gui.engine.loop import Trainer

    data = make_class_folders(root / data_name, per_class=per_class)
    result = Trainer().fit(tiny_config(data, root / "run", **changes))
    assert result.status == "completed", result.message
    return root / "run"
