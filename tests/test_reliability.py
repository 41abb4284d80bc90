"""Faults from outside: kill -9, full disks, unwritable folders, bad files in the data,
hostile config files. Nothing is lost and every failure says what to do."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import make_class_folders, tiny_config
from transfer_gui import config as C
from transfer_gui import atomic
from transfer_gui.engine.loop import Trainer
from transfer_gui.engine.checkpoint import load_checkpoint
from transfer_gui.engine.rundir import read_metrics


def _assert_run_folder_whole(run: Path) -> int:
    """Every file in the run folder parses; returns the number of complete epochs."""
    C.load(run / "config.toml")
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
    for line in lines:
        json.loads(line)
    for name in ("last.pt", "best.pt"):
        if (run / "checkpoints" / name).exists():
            load_checkpoint(run / "checkpoints" / name)
    for name in ("skipped.json", "val_predictions.json", "summary.json"):
        if (run / name).exists():
            json.loads((run / name).read_text())
    return len(lines)


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume(tmp_path):
    data = make_class_folders(tmp_path / "data", per_class=16, size=48)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "transfer_gui", "train", "--data", str(data), "--out", str(run), "--model",
           "resnet18", "--weights", "none", "--train-from", "stem", "--epochs", "6", "--batch-size", "4",
           "--image-size", "64", "--quiet", "--set", "train.feature_cache='off'"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and len(read_metrics(run / "metrics.jsonl")) < 2:
        time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
    time.sleep(0.4)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _assert_run_folder_whole(run)
    assert 2 <= done < 6
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    # the checkpoint is written before the metrics line of its epoch: at most one line behind
    assert ck["epoch"] in (done, done + 1)

    resumed = subprocess.run([sys.executable, "-m", "transfer_gui", "train", "--resume", str(run)],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = read_metrics(run / "metrics.jsonl")
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert _assert_run_folder_whole(run) == 6
    assert not list(run.rglob("*.part"))


@pytest.mark.slow
def test_kill_9_during_export_keeps_the_previous_file(tmp_path):
    data = make_class_folders(tmp_path / "data")
    run = tmp_path / "run"
    assert Trainer().fit(tiny_config(data, run, **{"model.name": "efficientnet_lite0", "model.weights": "pretrained",
                                                  "data.image_size": 64})).status == "completed"
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous export")
    killed_mid_write = False
    for delay in (0.3, 0.8, 1.5, 2.5):
        proc = subprocess.Popen([sys.executable, "-m", "transfer_gui", "export", str(run), "--format", "onnx",
                                 "--out", str(target)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_mid_write = True
            assert target.read_bytes() == b"previous export"
        else:
            break
    assert killed_mid_write
    ok = subprocess.run([sys.executable, "-m", "transfer_gui", "export", str(run), "--format", "onnx", "--out",
                         str(target)], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert target.read_bytes() != b"previous export"
    assert not list(tmp_path.glob(".model.onnx.*.part"))  # the killed export's temporaries are gone


def test_disk_full_on_checkpoint_keeps_the_previous_one(image_folders, tmp_path, monkeypatch):
    real_replace = os.replace
    saves = {"n": 0}

    def full_disk(src, dst):
        if str(dst).endswith("last.pt"):
            saves["n"] += 1
            if saves["n"] >= 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", full_disk)
    run = tmp_path / "run"
    result = Trainer().fit(tiny_config(image_folders, run, **{"train.epochs": 4}))
    assert result.status == "failed"
    assert "No space left on device" in result.message and "intact" in result.message
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert not list(run.rglob("*.part"))


def test_unwritable_output_folder_is_a_clear_refusal(image_folders, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = Trainer().fit(tiny_config(image_folders, blocker / "run"))
    assert result.status == "failed" and result.bad_input
    assert "cannot write the run folder" in result.message and "output.dir" in result.message


def test_bad_files_in_the_data_are_skipped_and_reported(tmp_path):
    data = make_class_folders(tmp_path / "data", per_class=8)
    (data / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)  # truncated JPEG
    (data / "green" / "notes.jpg").write_text("this is text, not an image")
    (data / "blue" / "empty.png").write_bytes(b"")
    run = tmp_path / "run"
    result = Trainer().fit(tiny_config(data, run))
    assert result.status == "completed", result.message
    skipped = {Path(s["path"]).name: s["reason"] for s in json.loads((run / "skipped.json").read_text())}
    assert set(skipped) == {"broken.jpg", "notes.jpg", "empty.png"}
    assert all(reason for reason in skipped.values())


# ----------------------------------------------------------------------------- config fuzzing

_keys = st.sampled_from(["data", "model", "layers", "optim", "schedule", "train", "output", "version", "folders",
                         "epochs", "batch_size", "head_lr", "lr", "name", "frozen", "augment", "enabled", "bogus"])
_leaf = st.one_of(st.none().map(lambda _: "x"), st.booleans(), st.integers(-10**6, 10**6),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                  st.lists(st.text(max_size=5), max_size=3))
_tables = st.recursive(_leaf, lambda inner: st.dictionaries(_keys, inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _tables, max_size=5))
@example({"version": 0})  # once found by chance: from_dict accepted it and loads refused it
@example({"version": 1.0})
@example({"version": True})
def test_fuzz_config_tables_give_config_or_config_error(data):
    try:
        cfg = C.from_dict(data)
    except C.ConfigError as exc:
        assert str(exc)
    else:
        assert C.loads(C.dumps(cfg)) == cfg


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_config_text_never_crashes(text):
    try:
        C.loads(text, "fuzz.toml")
    except C.ConfigError as exc:
        assert "fuzz.toml" in str(exc) or str(exc)
