"""TensorBoard event files in the run folder (engine/tboard.py): what a real run writes, per-group
learning rates included; output.tensorboard's three values; tensorboard absent."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest
import torch

from conftest import make_class_folders, tiny_config
from transfer_gui.config import ConfigError, RunConfig
from transfer_gui.engine import events as ev
from transfer_gui.engine import runs as runs_mod
from transfer_gui.engine import tboard
from transfer_gui.engine.checkpoint import load_checkpoint
from transfer_gui.engine.loop import Trainer
from transfer_gui.engine.parts import EpochOutcome, RunState
from transfer_gui.errors import UserError


def _scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb")
    data = make_class_folders(root / "data", per_class=12)
    cfg = tiny_config(data, root / "run", **{"layers.train_from": "layer4", "layers.lr_decay": 0.5,
                                             "data.test_fraction": 0.2, "train.epochs": 2})
    events: list = []
    result = Trainer().fit(cfg, events.append)
    assert result.status == "completed", result.message
    return result, events


@pytest.mark.slow
def test_a_run_writes_its_batches_epochs_group_rates_and_test_for_tensorboard(trained):
    result, events = trained
    run = result.run_dir
    assert list(run.glob(tboard.EVENTS_GLOB))
    tags = _scalars(run)
    steps = [e.step for e in events if isinstance(e, ev.BatchEnd)]
    assert [s for s, _ in tags["batch/loss"]] == steps
    assert [v for _, v in tags["batch/loss"]] == pytest.approx([e.loss for e in events if isinstance(e, ev.BatchEnd)],
                                                                 rel=1e-5)
    head = [v for _, v in tags["batch/lr/head"]]
    layer4 = [v for _, v in tags["batch/lr/layer4"]]
    assert len(head) == len(steps) and layer4 == pytest.approx([0.5 * v for v in head], rel=1e-5)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert tags["epoch/val_acc"] == [(r["epoch"], pytest.approx(r["val_acc"], rel=1e-6)) for r in lines]
    assert [s for s, _ in tags["epoch/train_loss"]] == [1, 2]
    assert [v for _, v in tags["drift/layer4"]] == pytest.approx([r["groups"]["layer4"]["drift"] for r in lines],
                                                                  rel=1e-5)
    summary = json.loads((run / "summary.json").read_text())
    best = load_checkpoint(run / "checkpoints" / "best.pt")["metrics"]["epoch"]  # the record's own number
    assert tags["test/acc"] == [(best, pytest.approx(summary["test_acc"], rel=1e-6))]
    assert runs_mod.run_info(run).best_epoch == best  # the runs table reads the same epoch


@pytest.mark.slow
def test_tensorboard_shows_the_run_under_the_runs_folder(trained):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    result, _ = trained
    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(result.run_dir.parent))
    mux.Reload()
    assert result.run_dir.name in mux.Runs()
    assert "epoch/val_loss" in mux.Runs()[result.run_dir.name]["scalars"]


def _fake_run(tmp_path, epoch: int = 0):
    w = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD([{"params": [w.weight], "group_name": "body", "lr": 0.01},
                           {"params": [w.bias], "group_name": "head", "lr": 0.1}], lr=0.1)
    emitted: list = []
    run = SimpleNamespace(run_dir=tmp_path, emit=emitted.append, state=RunState(epoch=epoch, step=3),
                          config_text="[train]\nepochs = 2\n", optimizer=opt, parts=(), epoch=None,
                          cfg=RunConfig())
    return run, emitted


def _one_epoch(part, run) -> None:
    part.before_fit(run)
    part.after_backward(run, SimpleNamespace(global_loss=torch.tensor([0.75])))
    run.epoch = EpochOutcome(0, {"epoch": 1, "val_acc": 0.5, "val_loss": float("nan"), "lrs": {"head": 0.1}}, {})
    part.after_epoch(run)
    part.after_fit(run)


def test_the_part_writes_steps_from_1_and_leaves_out_what_is_not_a_number(tmp_path):
    run, emitted = _fake_run(tmp_path)
    _one_epoch(tboard.TensorBoard("auto"), run)
    tags = _scalars(tmp_path)
    assert tags["batch/loss"] == [(4, 0.75)] and tags["batch/lr/body"] == [(4, pytest.approx(0.01))]
    assert tags["epoch/val_acc"] == [(1, 0.5)] and "epoch/val_loss" not in tags and tags["lr/head"][0][0] == 1
    assert emitted == []


def test_a_new_run_removes_an_earlier_runs_event_files_and_a_resume_keeps_them(tmp_path):
    stale = tmp_path / "events.out.tfevents.1.old"
    stale.write_bytes(b"")
    resumed, _ = _fake_run(tmp_path, epoch=1)
    _one_epoch(tboard.TensorBoard("auto"), resumed)
    assert stale.exists() and len(list(tmp_path.glob(tboard.EVENTS_GLOB))) == 2
    fresh, _ = _fake_run(tmp_path)
    _one_epoch(tboard.TensorBoard("auto"), fresh)
    assert not stale.exists() and len(list(tmp_path.glob(tboard.EVENTS_GLOB))) == 1


def test_off_and_other_ranks_write_nothing(tmp_path):
    for part in (tboard.TensorBoard("off"), tboard.TensorBoard("on", main=False)):
        run, emitted = _fake_run(tmp_path)
        _one_epoch(part, run)
        assert not list(tmp_path.iterdir()) and emitted == []


@pytest.fixture
def no_tensorboard(monkeypatch):
    """As if the optional tensorboard package were not installed."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    assert tboard.writer_class() is None


def test_without_tensorboard_auto_says_so_once_and_writes_nothing(tmp_path, no_tensorboard):
    run, emitted = _fake_run(tmp_path)
    _one_epoch(tboard.TensorBoard("auto"), run)
    assert not list(tmp_path.iterdir())
    assert emitted == [ev.PhaseChanged("prepare", tboard.NOT_INSTALLED)]


def test_without_tensorboard_on_refuses_naming_the_field(tmp_path, no_tensorboard):
    run, _ = _fake_run(tmp_path)
    with pytest.raises(UserError, match="output.tensorboard"):
        tboard.TensorBoard("on").before_fit(run)


@pytest.mark.slow
def test_without_tensorboard_a_real_run_trains_and_logs_one_line(tmp_path, no_tensorboard):
    cfg = tiny_config(make_class_folders(tmp_path / "data", per_class=6), tmp_path / "run", **{"train.epochs": 1})
    events: list = []
    result = Trainer().fit(cfg, events.append)
    assert result.status == "completed", result.message
    assert [e for e in events if isinstance(e, ev.PhaseChanged) and "TensorBoard" in e.message] == \
        [ev.PhaseChanged("prepare", tboard.NOT_INSTALLED)]
    assert not list(result.run_dir.glob(tboard.EVENTS_GLOB))


def test_the_config_switch_is_validated():
    assert RunConfig().output.tensorboard == "auto"
    assert RunConfig().replace(**{"output.tensorboard": "off"}).output.tensorboard == "off"
    with pytest.raises(ConfigError) as info:
        RunConfig().replace(**{"output.tensorboard": "yes"})
    assert info.value.field == "output.tensorboard" and "auto, on, off" in str(info.value)
