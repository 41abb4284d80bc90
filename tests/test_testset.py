"""The test set of a run (data.test_folders, data.test_fraction): its split, its evaluation once
after training with the chosen checkpoint, and the per-image logits files beside the predictions."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import make_class_folders, tiny_config
from transfer_gui import cli
from transfer_gui.config import ConfigError, DataConfig, RunConfig, check_paths
from transfer_gui.engine import events as ev
from transfer_gui.engine import rules
from transfer_gui.engine.checkpoint import load_checkpoint
from transfer_gui.engine.control import RunControl
from transfer_gui.engine.data import build_split
from transfer_gui.engine.loop import Trainer
from transfer_gui.engine.predict import Predictor
from transfer_gui.engine.rundir import load_run
from transfer_gui.engine.wording import describe


def _fit(cfg, **kw):
    events: list = []
    return Trainer().fit(cfg, events.append, **kw), events


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _paths(samples) -> set[str]:
    return {s.path for s in samples}


def _mislabelled_copy(src: Path, dst: Path) -> Path:
    """The same images with every class folder renamed to the next class: all labels wrong."""
    names = sorted(p.name for p in src.iterdir())
    for name, wrong in zip(names, names[1:] + names[:1]):
        shutil.copytree(src / name, dst / wrong)
    return dst


# ----------------------------------------------------------------------------- config


def test_config_fields_and_their_errors(tmp_path):
    assert DataConfig().test_fraction == 0.0 and DataConfig().test_folders == ()
    base = RunConfig()
    cfg = base.replace(**{"data.test_fraction": 0.25})
    assert cfg.data.test_fraction == 0.25
    with pytest.raises(ConfigError) as info:
        base.replace(**{"data.test_fraction": 0.2, "data.test_folders": [str(tmp_path)]})
    assert info.value.field == "data.test_fraction" and "data.test_folders" in str(info.value)
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError) as info:
            base.replace(**{"data.test_fraction": bad})
        assert info.value.field == "data.test_fraction"
    make_class_folders(tmp_path / "d", per_class=2)
    missing = base.replace(**{"data.folders": [str(tmp_path / "d")], "data.test_folders": [str(tmp_path / "nope")]})
    with pytest.raises(ConfigError) as info:
        check_paths(missing)
    assert info.value.field == "data.test_folders[0]"


# ----------------------------------------------------------------------------- split


@pytest.mark.parametrize("counts", [(1, 2, 3), (10, 7, 25), (4, 4, 4), (2, 40, 9)])
@pytest.mark.parametrize("fractions", [(0.2, 0.2), (0.0, 0.3), (0.5, 0.25), (0.1, 0.0)])
def test_split_sizes_equal_the_split(tmp_path, counts, fractions):
    val_fraction, test_fraction = fractions
    classes = ("red", "green", "blue")
    root = tmp_path / "d"
    for name, n in zip(classes, counts):
        make_class_folders(root, per_class=n, size=8, classes=(name,))
    data = DataConfig(folders=(str(root),), val_fraction=val_fraction, test_fraction=test_fraction)
    split = build_split(data, seed=5)
    sizes = rules.split_sizes(dict(zip(classes, counts)), data)
    assert sizes == (len(split.train), len(split.val), len(split.test))
    assert rules.split_counts(dict(zip(classes, counts)), data) == sizes[:2]
    assert not (_paths(split.train) & _paths(split.test)) and not (_paths(split.val) & _paths(split.test))
    assert len(_paths(split.train) | _paths(split.val) | _paths(split.test)) == sum(counts)
    for label, name in enumerate(split.classes):  # stratified, and never the last image of a class
        n = counts[classes.index(name)]
        assert split.class_counts("test")[label] == rules.test_count(n, test_fraction)
        assert split.class_counts("train")[label] >= 1


def test_the_test_share_is_seeded_and_leaves_the_validation_split_alone(tmp_path):
    root = make_class_folders(tmp_path / "d", per_class=20, size=8)
    plain = DataConfig(folders=(str(root),), val_fraction=0.25)
    held = DataConfig(folders=(str(root),), val_fraction=0.25, test_fraction=0.2)
    a, b, c = build_split(held, seed=1), build_split(held, seed=1), build_split(held, seed=2)
    assert _paths(a.test) == _paths(b.test) and _paths(a.val) == _paths(b.val)
    assert _paths(a.test) != _paths(c.test)
    assert build_split(plain, seed=1).val == build_split(DataConfig(folders=(str(root),), val_fraction=0.25,
                                                                    test_fraction=0.0), seed=1).val
    assert len(a.test) == 12 and len(a.val) == 12 and len(a.train) == 36  # 4 + 4 + 12 of each 20


def test_test_folders_match_classes_by_name_and_never_train(tmp_path):
    root = make_class_folders(tmp_path / "d", per_class=6, size=8)
    test_root = make_class_folders(tmp_path / "t", per_class=3, size=8, classes=("blue", "red"), seed=4)
    split = build_split(DataConfig(folders=(str(root),), test_folders=(str(test_root),)), seed=0)
    assert len(split.test) == 6 and {split.classes[s.label] for s in split.test} == {"blue", "red"}
    assert all(Path(s.path).parent.name == split.classes[s.label] for s in split.test)
    assert rules.split_sizes({"blue": 6, "green": 6, "red": 6}, DataConfig(test_folders=("x",))) == (
        len(split.train), len(split.val), -1)
    make_class_folders(test_root, per_class=1, size=8, classes=("purple",))
    with pytest.raises(ConfigError) as info:
        build_split(DataConfig(folders=(str(root),), test_folders=(str(test_root),)), seed=0)
    assert info.value.field == "data.test_folders" and "purple" in str(info.value)
    inside = DataConfig(folders=(str(root),), test_folders=(str(root / "red"),))  # a test folder inside the data
    split = build_split(inside, seed=0)
    assert len(split.test) == 6 and not (_paths(split.train) | _paths(split.val)) & _paths(split.test)
    assert any("left out of training" in w for w in split.warnings)


# ----------------------------------------------------------------------------- logits files


@pytest.mark.parametrize("cache", ["auto", "off"])
def test_val_logits_match_the_best_epochs_predictions(image_folders, tmp_path, cache):
    out = tmp_path / "run"
    result, _ = _fit(tiny_config(image_folders, out, **{"train.feature_cache": cache, "train.epochs": 2}))
    assert result.status == "completed", result.message
    rec = load_run(out)
    logits = rec.logits("val")
    assert logits is not None and logits.dtype == np.float32 and logits.shape == (len(rec.predictions), 3)
    probs = _softmax(logits.astype(np.float64))
    assert [int(i) for i in probs.argmax(1)] == [p["pred"] for p in rec.predictions]
    assert np.allclose(probs.max(1), [p["confidence"] for p in rec.predictions], atol=1e-4)
    assert rec.logits("test") is None and rec.test_predictions == []
    assert "test_acc" not in rec.summary


def test_an_old_run_folder_reads_with_empty_defaults(image_folders, tmp_path):
    out = tmp_path / "run"
    result, _ = _fit(tiny_config(image_folders, out, **{"train.epochs": 1}))
    assert result.status == "completed", result.message
    for name in ("val_logits.npy", "calibration.json"):
        (out / name).unlink(missing_ok=True)
    rec = load_run(out)
    assert rec.predictions and rec.logits("val") is None and rec.logits("test") is None
    assert rec.test_predictions == [] and rec.calibration == {}
    with pytest.raises(ValueError):
        rec.logits("train")


# ----------------------------------------------------------------------------- the test part


@pytest.mark.parametrize("changes", [{}, {"train.feature_cache": "off"}, {"layers.train_from": "layer4"}],
                         ids=["features", "images", "frozen-prefix"])
def test_test_set_evaluated_once_with_the_best_checkpoint(tmp_path, changes):
    """Validation is mislabelled so that epoch 1 stays the best while later epochs train on: the
    test result must be best.pt's, not the last epoch's, through the very model of validation."""
    data = make_class_folders(tmp_path / "d", per_class=8)
    val = _mislabelled_copy(make_class_folders(tmp_path / "v0", per_class=3, seed=1), tmp_path / "v")
    test = make_class_folders(tmp_path / "t", per_class=4, seed=2)
    out = tmp_path / "run"
    cfg = tiny_config(data, out, **{"data.val_folders": [str(val)], "data.test_folders": [str(test)],
                                    "train.epochs": 3, "layers.head_lr": 0.05, **changes})
    result, events = _fit(cfg)
    assert result.status == "completed", result.message
    assert result.best_epoch < len(result.history)  # 1-based: best.pt is not the last epoch's weights
    rec = load_run(out)
    assert rec.summary["test_n"] == 12 and rec.summary["test_epoch"] == result.best_epoch == rec.summary["best_epoch"]
    assert rec.summary["test_checkpoint"] == "checkpoints/best.pt"
    logits = rec.logits("test")
    assert logits is not None and logits.shape == (12, 3) and len(rec.test_predictions) == 12
    paths = [p["path"] for p in rec.test_predictions]
    expected = Predictor.load(out / "checkpoints" / "best.pt").logits(paths)
    assert np.allclose(logits, expected, atol=1e-3)
    assert not np.allclose(logits, Predictor.load(out / "checkpoints" / "last.pt").logits(paths), atol=1e-3)
    acc = np.mean([p["true"] == p["pred"] for p in rec.test_predictions])
    assert rec.summary["test_acc"] == pytest.approx(acc)
    assert [int(i) for i in logits.argmax(1)] == [p["pred"] for p in rec.test_predictions]
    lines = [describe(e) for e in events if isinstance(e, ev.PhaseChanged) and e.phase == "test"]
    assert len(lines) == 1 and lines[0][1] == "ok" and f"{acc:.1%}" in lines[0][0]
    finished = next(e for e in events if isinstance(e, ev.Finished))
    assert finished.summary["test_acc"] == rec.summary["test_acc"]
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert started.test_size == 12 and "12 test images" in describe(started)[0]


def test_a_mislabelled_test_set_changes_nothing_of_training(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=8)
    wrong = _mislabelled_copy(make_class_folders(tmp_path / "t0", per_class=4, seed=2), tmp_path / "t")
    base = {"train.epochs": 3, "train.early_stopping": 1, "layers.head_lr": 0.05, "train.feature_cache": "off"}
    plain, _ = _fit(tiny_config(data, tmp_path / "a", **base))
    tested, _ = _fit(tiny_config(data, tmp_path / "b", **base, **{"data.test_folders": [str(wrong)]}))
    assert plain.status == tested.status and tested.status in ("completed", "early_stopped")
    assert tested.best_epoch == plain.best_epoch
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    assert [[h[k] for k in keys] for h in tested.history] == [[h[k] for k in keys] for h in plain.history]
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["test_n"] == 12 and summary["test_acc"] < 0.5  # every label is wrong
    assert "test_acc" not in json.loads((tmp_path / "a" / "summary.json").read_text())


def _stop_after_first_epoch(control: RunControl):
    events: list = []

    def on_event(e):
        events.append(e)
        if isinstance(e, ev.EpochEnd):
            control.stop()
    return events, on_event


def test_a_stopped_run_is_tested_with_a_note_and_a_resume_keeps_the_test_set(image_folders, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(image_folders, out, **{"data.test_fraction": 0.2, "train.epochs": 3,
                                             "train.feature_cache": "off"})
    control = RunControl()
    events, on_event = _stop_after_first_epoch(control)
    first = Trainer().fit(cfg, on_event, control)
    assert first.status == "stopped" and len(first.history) == 1
    line = next(e.message for e in events if isinstance(e, ev.PhaseChanged) and e.phase == "test")
    assert "stopped" in line
    split = build_split(cfg.data, cfg.train.seed)
    held = _paths(split.test)
    assert {p["path"] for p in load_run(out).test_predictions} == held and len(held) == 6
    assert sorted(load_checkpoint(out / "checkpoints" / "last.pt")["test_paths"]) == sorted(held)

    changed, _ = _fit(cfg.replace(**{"data.test_fraction": 0.4}), resume=True)
    assert changed.status == "failed" and "data.test_fraction" in changed.message

    resumed, events = _fit(cfg, resume=True)
    assert resumed.status == "completed", resumed.message
    assert not any("stopped" in e.message for e in events if isinstance(e, ev.PhaseChanged) and e.phase == "test")
    rec = load_run(out)
    assert {p["path"] for p in rec.test_predictions} == held and not held & _paths(split.train)
    assert rec.summary["test_n"] == 6


def test_a_run_stopped_before_its_first_epoch_tests_nothing(image_folders, tmp_path):
    control = RunControl()
    events: list = []

    def on_event(e):
        events.append(e)
        if isinstance(e, ev.BatchEnd):
            control.stop()
    result = Trainer().fit(tiny_config(image_folders, tmp_path / "run", **{"data.test_fraction": 0.2}), on_event, control)
    assert result.status == "stopped" and not result.history
    assert not (tmp_path / "run" / "test_predictions.json").exists()
    assert any(isinstance(e, ev.Warning) and "test set was not evaluated" in e.message for e in events)


def test_the_command_line_prints_the_test_accuracy(image_folders, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--data", str(image_folders), "--out", str(out), "--model", "resnet18",
                     "--weights", "none", "--epochs", "1", "--batch-size", "8", "--image-size", "32",
                     "--no-augment", "--set", "data.test_fraction=0.2"])
    assert code == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_n"] == 6 and f"Test accuracy {summary['test_acc']:.1%} on 6 test images" in text


@pytest.mark.slow
def test_two_gloo_processes_test_what_one_tests(tmp_path):
    """Under torchrun every rank evaluates its share of the test set and rank 0 writes all of it."""
    import os
    import subprocess
    import sys

    from transfer_gui import config as C

    data = make_class_folders(tmp_path / "data", per_class=10)  # 3 test, 1 validation, 6 training images each
    outs = {}
    for nproc in (1, 2):
        out = outs[nproc] = tmp_path / f"run{nproc}"
        path = tmp_path / f"cfg{nproc}.toml"
        C.save(tiny_config(data, out, **{"data.test_fraction": 0.3, "train.epochs": 1}), path)
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                               f"--nproc_per_node={nproc}", "-m", "transfer_gui", "train", str(path), "--quiet"],
                              capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    one, two = load_run(outs[1]), load_run(outs[2])
    assert len(two.test_predictions) == two.summary["test_n"] == 9  # no image twice or lost
    assert [p["path"] for p in one.test_predictions] == [p["path"] for p in two.test_predictions]
    assert [p["pred"] for p in one.test_predictions] == [p["pred"] for p in two.test_predictions]
    assert np.allclose(one.logits("test"), two.logits("test"), atol=1e-4)
    assert one.summary["test_acc"] == two.summary["test_acc"]
