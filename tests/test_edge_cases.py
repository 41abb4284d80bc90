"""Edge cases a user reaches by accident: empty validation sets, odd folders, reused run
folders, checkpoints from other classes, sizes a model cannot take."""

import json
from pathlib import Path

import pytest
import torch

from conftest import make_class_folders, tiny_config
from transfer_gui.engine import events as ev
from transfer_gui.atomic import remove_stale_parts
from transfer_gui.engine.control import RunControl
from transfer_gui.engine.loop import Trainer
from transfer_gui.engine.lrfind import suggest
from transfer_gui.engine.checkpoint import load_checkpoint
from transfer_gui.engine.rundir import load_run


@pytest.mark.parametrize("cache", ["auto", "off"])
def test_no_validation_split(image_folders, tmp_path, cache):
    result = Trainer().fit(tiny_config(image_folders, tmp_path / "run", **{"data.val_fraction": 0.0,
                                                                           "train.feature_cache": cache}))
    assert result.status == "completed", result.message
    assert "no validation images" in result.message


def test_validation_folder_with_one_class(tmp_path):
    train = make_class_folders(tmp_path / "train", per_class=6, classes=("red", "green"))
    val = make_class_folders(tmp_path / "val", per_class=3, classes=("red",), seed=3)
    result = Trainer().fit(tiny_config(train, tmp_path / "run", **{"data.val_folders": [str(val)]}))
    assert result.status == "completed", result.message
    record = load_run(tmp_path / "run")
    assert len(record.predictions) == 3 and {p["true"] for p in record.predictions} == {1}  # "red"
    per_class = result.history[-1]["per_class_acc"]
    assert per_class[0] is None or per_class[0] != per_class[0]  # no "green" images: NaN, not 0 %


def test_feature_cache_is_keyed_by_the_backbone_weights(image_folders, tmp_path):
    """Two random backbones (different seeds) must not share cached features."""
    from transfer_gui.engine.features import clear
    from transfer_gui.engine.prepare import prepare
    from transfer_gui.engine.surgery import backbone_and_head

    clear()
    outs = []
    for seed in (0, 1):
        cfg = tiny_config(image_folders, tmp_path / f"r{seed}", **{"train.seed": seed})
        p = prepare(cfg, lambda e: None, RunControl())
        feats = next(iter(p.val_loader))[0]
        backbone, _ = backbone_and_head(p.model, p.built.head_path)
        outs.append(feats)
    assert not torch.allclose(outs[0], outs[1])


def test_checkpoint_with_classes_in_another_order_keeps_its_head(image_folders, tmp_path):
    first = tmp_path / "first"
    assert Trainer().fit(tiny_config(image_folders, first, **{"train.epochs": 3, "layers.head_lr": 3e-2})).status \
        == "completed"
    ck = load_checkpoint(first / "checkpoints" / "last.pt")
    events = []
    renamed = {"blue": "zblue", "red": "ared"}  # same classes, new names, new order: ared, green, zblue
    cfg = tiny_config(image_folders, tmp_path / "second", **{"model.weights": str(first / "checkpoints" / "last.pt"),
                                                             "data.rename_classes": renamed})
    Trainer().fit(cfg, events.append)
    warn = " ".join(e.message for e in events if isinstance(e, ev.Warning))
    assert "head was replaced" in warn  # other names: a fresh head

    from transfer_gui.engine.catalog import build_model
    from transfer_gui.engine.prepare import _fit_head_to_classes

    built = build_model("resnet18", str(first / "checkpoints" / "last.pt"))
    assert built.classes == ["blue", "green", "red"]
    msg = _fit_head_to_classes(built, ["red", "blue", "green"])
    assert "reordered" in msg
    w = ck["state_dict"]["fc.weight"]
    assert torch.equal(built.model.fc.weight, w[[2, 0, 1]])


def test_a_reused_run_folder_shows_only_the_new_run(image_folders, tmp_path):
    run = tmp_path / "run"
    assert Trainer().fit(tiny_config(image_folders, run)).status == "completed"
    control = RunControl()
    other = make_class_folders(tmp_path / "other", per_class=5, classes=("w", "x", "y", "z"))
    Trainer().fit(tiny_config(other, run), lambda e: isinstance(e, ev.RunStarted) and control.stop(), control)
    assert not (run / "checkpoints" / "last.pt").exists() and not (run / "metrics.jsonl").exists()
    assert json.loads((run / "summary.json").read_text())["classes"] == ["w", "x", "y", "z"]


def test_a_folder_of_other_files_is_not_used_as_run_folder(image_folders, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.docx").write_text("precious")
    result = Trainer().fit(tiny_config(image_folders, home))
    assert result.status == "failed" and "already holds other files" in result.message
    assert (home / "thesis.docx").read_text() == "precious"


def test_stale_part_cleanup_touches_only_our_files(tmp_path):
    (tmp_path / ".movie.mkv.part").write_text("a download of another program")
    (tmp_path / ".last.pt.abc123.part").write_text("half a checkpoint")
    removed = remove_stale_parts(tmp_path, ("last.pt", "best.pt"))
    assert [p.name for p in removed] == [".last.pt.abc123.part"]
    assert (tmp_path / ".movie.mkv.part").exists()


def test_patience_survives_a_resume(image_folders, tmp_path):
    base = {"train.epochs": 8, "train.early_stopping": 2, "layers.head_lr": 1e-12, "schedule.name": "constant"}
    plain = Trainer().fit(tiny_config(image_folders, tmp_path / "plain", **base))
    control = RunControl()
    cfg = tiny_config(image_folders, tmp_path / "res", **base)
    Trainer().fit(cfg, lambda e: isinstance(e, ev.EpochEnd) and e.epoch == 1 and control.stop(), control)
    resumed = Trainer().fit(cfg, resume=True)
    assert plain.status == resumed.status == "early_stopped"
    assert len(plain.history) == len(resumed.history) == 3


def test_an_input_size_the_model_cannot_take(image_folders, tmp_path):
    cfg = tiny_config(image_folders, tmp_path / "run", **{"model.name": "vit_b_16", "data.image_size": 64})
    result = Trainer().fit(cfg)
    assert result.status == "failed" and result.bad_input
    assert "data.image_size" in result.message and "64 px" in result.message


def test_everything_frozen_in_the_first_epoch_is_refused(image_folders, tmp_path):
    cfg = tiny_config(image_folders, tmp_path / "run", **{"layers.train_from": "",
                      "layers.frozen": ["stem", "layer1", "layer2", "layer3", "layer4", "head"],
                      "layers.unfreeze_at": {"head": 1}})
    result = Trainer().fit(cfg)
    assert result.status == "failed" and "nothing would train" in result.message


def test_no_decodable_training_image(tmp_path):
    data = tmp_path / "data"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
        for i in range(3):
            (data / name / f"{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 30)
    result = Trainer().fit(tiny_config(data, tmp_path / "run"))
    assert result.status == "failed" and "none of the training images could be decoded" in result.message


@pytest.mark.parametrize("n", [3, 5, 6, 9, 12])
def test_lr_suggestion_for_short_sweeps(n):
    lrs = [10 ** (-6 + k / 2) for k in range(n)]
    losses = [2.0 - 0.1 * k for k in range(n)]
    assert lrs[0] <= suggest(lrs, losses) <= lrs[-1]


def test_weighted_sampler_also_on_cached_features(tmp_path):
    root = tmp_path / "data"
    make_class_folders(root, per_class=30, classes=("red",))
    make_class_folders(root, per_class=6, classes=("green", "blue"), seed=1)
    from transfer_gui.engine.prepare import prepare

    cfg = tiny_config(root, tmp_path / "run", **{"data.weighted_sampler": True, "data.val_fraction": 0.0,
                                                 "train.batch_size": 42})
    p = prepare(cfg, lambda e: None, RunControl())
    assert p.use_features
    counts = torch.zeros(3)
    for epoch in range(30):
        p.train_loader.sampler.set_epoch(epoch)
        for _x, y, _i in p.train_loader:
            counts += torch.bincount(y, minlength=3)
    share = counts / counts.sum()
    assert torch.all((share - 1 / 3).abs() < 0.05), share
