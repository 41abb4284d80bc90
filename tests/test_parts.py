"""The parts of a run, each alone (best-epoch tracking with early stopping, the checkpoint
writer, resume), the hooks the loop calls them through, and the one training step that the
trainer and the LR finder share."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from conftest import tiny_config
from transfer_gui.config import ConfigError, TrainConfig
from transfer_gui.engine import events as ev
from transfer_gui.engine.catalog import ModelError
from transfer_gui.engine.checkpoint import load_checkpoint
from transfer_gui.engine.checkpointing import CheckpointWriter, Resume, read_resume
from transfer_gui.engine.control import RunControl
from transfer_gui.engine.loop import Trainer
from transfer_gui.engine.parts import EpochOutcome, Part, Run, RunState, call
from transfer_gui.engine.preprocess import Preprocessing
from transfer_gui.engine.ranks import SINGLE
from transfer_gui.engine.rundir import RunFolderError
from transfer_gui.engine.step import TrainStep
from transfer_gui.engine.tracking import BestEpoch, finished_message


def _run(parts=(), model=None, opt=None, run_dir=Path("/nowhere"), epochs=5, **train):
    model = model or nn.Linear(4, 3)
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    cfg = SimpleNamespace(train=TrainConfig(epochs=epochs, **train))
    built = SimpleNamespace(arch="tiny", preprocessing=Preprocessing(8, 8, (0.5,) * 3, (0.5,) * 3, "bilinear"),
                            head_path="")
    prepared = SimpleNamespace(model=model, built=built, split=SimpleNamespace(classes=["a", "b", "c"]))
    return Run(cfg, run_dir, prepared, opt, RunState(), lambda e: None, SINGLE, None, None, "[train]\n",
               parts=list(parts))


def _epoch(run, index, acc, loss=1.0, n=10):
    preds = [{"path": f"/v/{index}.png", "true": 0, "pred": 0, "confidence": 0.9, "top": [[0, 0.9]]}]
    record = {"epoch": index + 1, "val_acc": acc, "val_loss": loss}
    run.state.history.append(record)
    run.state.epoch = index + 1
    run.epoch = EpochOutcome(index, record, {"acc": acc, "loss": loss, "n": n, "preds": preds})
    call(run, "after_epoch")
    return run.epoch.is_best


# ----------------------------------------------------------------------------- tracking


def test_best_epoch_and_patience_by_accuracy():
    run = _run([BestEpoch(TrainConfig(epochs=6, early_stopping=2))])
    call(run, "before_fit")
    assert run.state.best_score == -math.inf and run.state.patience_left == 2
    assert [_epoch(run, i, acc) for i, acc in enumerate([0.5, 0.7, 0.7])] == [True, True, False]
    assert (run.state.best_epoch, run.state.best_val_acc, run.state.best_score, run.state.patience_left) == (2, 0.7, 0.7, 1)
    assert run.stop is None
    assert not _epoch(run, 3, 0.6)
    assert run.stop == ("early_stopped", "Stopped early after epoch 4: val_acc did not improve for 2 epochs.")
    assert run.state.best_predictions[0]["path"] == "/v/1.png"


def test_best_epoch_by_loss_and_no_stop_at_the_last_epoch():
    run = _run([BestEpoch(TrainConfig(epochs=3, early_stopping=1, early_stopping_metric="val_loss"))])
    call(run, "before_fit")
    assert run.state.best_score == math.inf
    assert _epoch(run, 0, acc=0.1, loss=2.0) and _epoch(run, 1, acc=0.0, loss=1.5)
    assert not _epoch(run, 2, acc=0.9, loss=1.6)
    assert run.stop is None  # patience is used up, but the run has no epoch left anyway
    assert run.state.best_epoch == 2  # 1-based: the second epoch


def test_without_validation_every_epoch_is_the_best():
    run = _run([BestEpoch(TrainConfig(epochs=4, early_stopping=1))])
    call(run, "before_fit")
    assert all(_epoch(run, i, math.nan, math.nan, n=0) for i in range(3))
    assert run.state.best_score == -math.inf and run.state.best_epoch == 3 and run.stop is None
    assert finished_message(4, run.state) == "Finished 4 epochs (no validation images, so no accuracy was measured)."
    run.state.best_val_acc, run.state.best_epoch = 0.875, 2
    assert finished_message(4, run.state) == "Finished 4 epochs; best validation accuracy 87.5% at epoch 2."


# ----------------------------------------------------------------------------- writer and resume


def _train_once(run):
    model, opt = run.prepared.model, run.optimizer
    loss = model(torch.ones(2, 4)).sum()
    loss.backward()
    opt.step()


def test_checkpoint_writer_alone(tmp_path):
    tracker, writer = BestEpoch(TrainConfig(epochs=5)), CheckpointWriter(tmp_path)
    run = _run([tracker, writer], run_dir=tmp_path)
    call(run, "before_fit")
    _train_once(run)
    run.state.step = 3
    _epoch(run, 0, 0.5)
    _epoch(run, 1, 0.4)  # not the best: best.pt stays at epoch 1
    best, last = load_checkpoint(tmp_path / "checkpoints" / "best.pt"), load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert best["metrics"]["epoch"] == 1 and "optimizer" not in best
    assert {"optimizer", "epoch", "step", "best_score", "best_epoch", "best_val_acc", "history",
            "patience_left"} <= set(last)
    assert (last["epoch"], last["step"], last["best_epoch"], last["best_val_acc"]) == (2, 3, 1, 0.5)
    assert [json.loads(x)["epoch"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    preds = json.loads((tmp_path / "val_predictions.json").read_text())
    assert preds["classes"] == ["a", "b", "c"] and preds["items"][0]["path"] == "/v/0.png"  # the best epoch's
    assert last["arch"] == "tiny" and last["config"] == "[train]\n"


def test_only_rank_0_writes(tmp_path):
    run = _run([BestEpoch(TrainConfig()), CheckpointWriter(tmp_path, main=False)], run_dir=tmp_path)
    call(run, "before_fit")
    _epoch(run, 0, 0.5)
    assert list(tmp_path.iterdir()) == []


def test_resume_alone(tmp_path):
    first = _run([BestEpoch(TrainConfig(epochs=5, early_stopping=3)), CheckpointWriter(tmp_path)], run_dir=tmp_path)
    call(first, "before_fit")
    _train_once(first)
    first.state.step = 7
    _epoch(first, 0, 0.5)
    _epoch(first, 1, 0.3)
    torch.manual_seed(1)
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    second = _run([BestEpoch(TrainConfig(epochs=5, early_stopping=3)), Resume(read_resume(tmp_path), tmp_path)],
                  model=model, opt=opt, run_dir=tmp_path)
    call(second, "before_fit")
    st = second.state
    assert (st.epoch, st.step, st.best_epoch, st.best_val_acc, st.best_score, st.patience_left) == (2, 7, 1, 0.5, 0.5, 2)
    assert [h["epoch"] for h in st.history] == [1, 2]
    assert torch.equal(model.weight, first.prepared.model.weight)
    assert opt.state_dict()["state"].keys() == first.optimizer.state_dict()["state"].keys()
    old_style = {k: v for k, v in read_resume(tmp_path).items() if k != "epoch_base"}
    old_style["best_epoch"] = 0  # a last.pt written before epochs were counted from 1
    third = _run([BestEpoch(TrainConfig(epochs=5)), Resume(old_style, tmp_path)], model=model, opt=opt, run_dir=tmp_path)
    call(third, "before_fit")
    assert third.state.best_epoch == 1


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    with pytest.raises(RunFolderError, match="nothing to resume"):
        read_resume(tmp_path)
    first = _run([BestEpoch(TrainConfig()), CheckpointWriter(tmp_path)], run_dir=tmp_path)
    call(first, "before_fit")
    _epoch(first, 0, 0.5)
    other = nn.Sequential(nn.Linear(4, 3))
    blob = read_resume(tmp_path)
    blob["state_dict"] = {f"0.{k}": v for k, v in blob["state_dict"].items()}
    bigger = torch.optim.SGD([{"params": [other[0].weight]}, {"params": [other[0].bias]}], lr=0.1)
    with pytest.raises(ConfigError, match="the layers that train differ"):
        call(_run([Resume(blob, tmp_path)], model=other, opt=bigger), "before_fit")
    newer = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    newer["version"] = 99
    torch.save(newer, tmp_path / "checkpoints" / "last.pt")
    with pytest.raises(ModelError, match="checkpoint version 99"):  # the one reader checks the version
        read_resume(tmp_path)


# ----------------------------------------------------------------------------- hooks


class _Recorder(Part):
    def __init__(self, log, stop_after=None):
        self.log, self.stop_after = log, stop_after

    def before_fit(self, run):
        self.log.append(("before_fit", run.state.epoch))

    def before_epoch(self, run):
        self.log.append(("before_epoch", sorted(run.frozen_now)))

    def after_epoch(self, run):
        self.log.append(("after_epoch", run.epoch.index, run.epoch.is_best))
        if self.stop_after is not None and run.epoch.index == self.stop_after:
            run.stop = ("completed", "a part ended the run")

    def after_fit(self, run):
        self.log.append(("after_fit", len(run.state.history)))


def test_a_new_part_needs_no_change_to_the_loop(image_folders, tmp_path):
    log = []

    class WithRecorder(Trainer):
        def parts(self, cfg, run_dir, resume_blob):
            return [*super().parts(cfg, run_dir, resume_blob), _Recorder(log, stop_after=1)]

    events = []
    result = WithRecorder().fit(tiny_config(image_folders, tmp_path / "run", **{"train.epochs": 4}), events.append)
    assert (result.status, result.message) == ("completed", "a part ended the run") and len(result.history) == 2
    assert log[0] == ("before_fit", 0) and log[-1] == ("after_fit", 2)
    assert [e[0] for e in log[1:-1]] == ["before_epoch", "after_epoch"] * 2
    assert log[2][2] is True  # tracking ran before this part: the first epoch is the best
    assert [type(e).__name__ for e in events].count("EpochEnd") == 2


# ----------------------------------------------------------------------------- the shared step


@pytest.mark.parametrize("changes", [{"optim.label_smoothing": 0.3}, {"optim.label_smoothing": 0.1, "train.grad_clip": 1e-3}])
def test_lr_finder_first_loss_is_the_training_step_loss(image_folders, tmp_path, changes):
    from transfer_gui.engine.lrfind import sweep
    from transfer_gui.engine.prepare import prepare

    cfg = tiny_config(image_folders, tmp_path / "run", **{"train.feature_cache": "off", "layers.train_from": "layer4",
                                                          **changes})
    events = []
    Trainer().fit(cfg.replace(**{"train.epochs": 1}), events.append)
    first = next(e for e in events if isinstance(e, ev.BatchEnd))
    p = prepare(cfg, lambda e: None, RunControl())
    x, y, _ = next(iter(p.train_loader))
    with torch.no_grad():
        plain = float(nn.functional.cross_entropy(p.module.eval()(x), y))
    res = sweep(p, steps=3)
    assert res.losses[0] == pytest.approx(first.loss, rel=1e-5)
    assert res.losses[0] != pytest.approx(plain, rel=1e-3)  # label smoothing is in it


def test_lr_finder_clips_like_training(image_folders, tmp_path, monkeypatch):
    from transfer_gui.engine import lrfind
    from transfer_gui.engine.prepare import prepare

    cfg = tiny_config(image_folders, tmp_path / "run", **{"train.feature_cache": "off", "layers.train_from": "layer4",
                                                          "train.grad_clip": 0.5})
    p = prepare(cfg, lambda e: None, RunControl())
    seen = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, norm: seen.append((len(params), norm))
                        or real(params, norm))
    lrfind.sweep(p, steps=4)
    trainable = sum(1 for q in p.module.parameters() if q.requires_grad)
    assert seen == [(trainable, 0.5)] * 4


def test_step_leaves_out_images_that_failed_to_decode():
    model = nn.Linear(4, 3)
    step = TrainStep(torch.optim.SGD(model.parameters(), lr=0.1), torch.device("cpu"), None)
    assert step.batch(torch.ones(2, 4), torch.tensor([-1, -1])) is None
    b = step.batch(torch.arange(12.0).view(3, 4), torch.tensor([2, -1, 0]))
    assert b.y.tolist() == [2, 0] and b.x.shape == (2, 4) and b.weight is None and b.n_valid == 2
    step.clip(model)
    seen = []
    out = step(model, b, guard=seen.append)
    assert seen and torch.equal(seen[0], out.global_loss) and out.logits.shape == (2, 3)


def test_after_backward_sees_the_gradients_before_the_optimizer_steps():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    step = TrainStep(opt, torch.device("cpu"), None, grad_clip=1e-3)
    step.clip(model)
    seen = []

    class Watch(Part):
        def after_backward(self, run, out):
            run.step.unscaled()  # nothing to unscale without a GradScaler: a no-op
            seen.append((model.weight.detach().clone(), model.weight.grad.norm().item(), float(out.global_loss)))

    run = _run([Watch()], model=model, opt=opt)
    run.step = step
    before = model.weight.detach().clone()
    batch = step.batch(torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
    out = step(model, batch, after_backward=lambda o: call(run, "after_backward", o))
    assert len(seen) == 1
    weights, grad, loss = seen[0]
    assert torch.equal(weights, before) and not torch.equal(model.weight, before)  # before the step, then stepped
    assert grad > 1e-3  # the raw gradient, before clipping to 1e-3
    assert loss == pytest.approx(float(out.global_loss))
