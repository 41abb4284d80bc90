"""A data folder renamed while a run trains (issue #24): the run stops after the epoch in
progress with a message naming the folder, keeps that epoch's checkpoint, and the command line
says it too. The folder is renamed from the run's own event callback, at a known epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import make_class_folders, tiny_config
from transfer_gui import cli
from transfer_gui.engine import folderwatch
from transfer_gui.engine.events import EpochEnd
from transfer_gui.engine.loop import Trainer


def _renamer(folder: Path, after_epoch: int):
    """An event callback that renames ``folder`` when epoch ``after_epoch`` (from 1) has ended."""

    def on_event(e) -> None:
        if isinstance(e, EpochEnd) and e.epoch + 1 == after_epoch and folder.exists():
            folder.rename(folder.with_name(folder.name + "-renamed"))

    return on_event


@pytest.mark.parametrize("augment", [False, True])  # images from memory, and from disk every epoch
def test_a_renamed_data_folder_stops_the_run_with_its_name_and_keeps_the_checkpoint(tmp_path, augment):
    data = make_class_folders(tmp_path / "data", per_class=6)
    cfg = tiny_config(data, tmp_path / "run", **{"train.epochs": 5, "data.augment.enabled": augment,
                                                 "data.decode_cache_mb": 1 if augment else 256})
    result = Trainer().fit(cfg, _renamer(data, after_epoch=1))
    assert result.status == "failed" and len(result.history) == 2  # the epoch in progress ends, then it stops
    assert f"The data folder {data} is gone since the run started" in result.message
    assert "stopped after epoch 2 of 5" in result.message and "--resume" in result.message
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and len(last["history"]) == 2


def test_an_undisturbed_run_is_not_stopped(tmp_path):
    data = make_class_folders(tmp_path / "data", per_class=6)
    result = Trainer().fit(tiny_config(data, tmp_path / "run", **{"train.epochs": 2}))
    assert result.status == "completed" and len(result.history) == 2


def test_the_command_line_says_which_folder_went(tmp_path, monkeypatch, capsys):
    data = make_class_folders(tmp_path / "data", per_class=6)
    original = folderwatch.DataFolders.after_epoch

    def rename_then_check(self, run):  # the folder goes while the first epoch runs
        if run.state.epoch == 1 and data.exists():
            data.rename(tmp_path / "moved")
        original(self, run)

    monkeypatch.setattr(folderwatch.DataFolders, "after_epoch", rename_then_check)
    code = cli.main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "3",
                     "--model", "resnet18", "--weights", "none", "--image-size", "32", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and f"The data folder {data} is gone" in err and "stopped after epoch 1 of 3" in err
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
