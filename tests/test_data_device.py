"""Data loading choices and device selection."""

from collections import Counter

import pytest
import torch

from conftest import make_class_folders, tiny_config
from transfer_gui.config import DataConfig
from transfer_gui.engine import prepare as prep
from transfer_gui.engine.data import ImageDataset, build_split, make_loader
from transfer_gui.engine.preprocess import Preprocessing, eval_from_resized


def test_weighted_sampler_balances_classes(tmp_path):
    root = tmp_path / "data"
    make_class_folders(root, per_class=40, classes=("red",))
    make_class_folders(root, per_class=5, classes=("green", "blue"), seed=1)
    split = build_split(DataConfig(folders=(str(root),), val_fraction=0.0), seed=0)
    assert split.class_counts() == [5, 5, 40]  # blue, green, red
    assert any("imbalance" in w.lower() or "few" in w.lower() for w in split.warnings)
    pre = Preprocessing(16, 16)
    ds = ImageDataset(split.train, eval_from_resized(pre), pre)
    counts = Counter()
    for seed in range(40):
        for _x, y, _i in make_loader(ds, 50, True, seed=seed, weighted=True):
            counts.update(y.tolist())
    total = sum(counts.values())
    assert all(abs(counts[c] / total - 1 / 3) < 0.05 for c in range(3)), counts
    plain = Counter(y for _x, ys, _i in make_loader(ds, 50, True, seed=0) for y in ys.tolist())
    assert plain[2] == 40


def test_separate_validation_folder(tmp_path):
    train = make_class_folders(tmp_path / "train", per_class=6)
    val = make_class_folders(tmp_path / "val", per_class=3, classes=("red", "green", "purple"), seed=2)
    split = build_split(DataConfig(folders=(str(train),), val_folders=(str(val),)), seed=0)
    assert len(split.train) == 18 and len(split.val) == 6
    assert any("purple" in w for w in split.warnings)


def test_device_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert prep.resolve_device("auto").type in ("cpu", "mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert prep.resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert prep.resolve_precision("auto", torch.device("cuda")) == (torch.bfloat16, "bf16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert prep.resolve_precision("auto", torch.device("cuda")) == (torch.float16, "fp16")
    monkeypatch.setattr(prep, "cpu_has_bf16", lambda: False)  # an AVX2-only CPU; see tests/test_precision.py
    assert prep.resolve_precision("bf16", torch.device("cpu")) == (None, "fp32")


def test_asking_for_missing_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device"):
        prep.resolve_device("cuda")


def test_same_seed_same_weights_on_cpu(image_folders, tmp_path):
    from transfer_gui.engine.loop import Trainer
    from transfer_gui.engine.checkpoint import load_checkpoint

    sds = []
    for name in ("a", "b"):
        cfg = tiny_config(image_folders, tmp_path / name, **{"layers.train_from": "layer4", "train.seed": 7,
                                                             "data.augment.enabled": True})
        assert Trainer().fit(cfg).status == "completed"
        sds.append(load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")["state_dict"])
    assert all(torch.equal(sds[0][k], sds[1][k]) for k in sds[0])
