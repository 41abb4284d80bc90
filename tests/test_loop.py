"""The trainer on tiny generated folders: what it writes, what it trains, and how it stops."""

import json
import threading
from pathlib import Path

import pytest
import torch
import torchvision

from conftest import tiny_config
from transfer_gui.engine import events as ev
from transfer_gui.engine.control import RunControl
from transfer_gui.engine.loop import Trainer
from transfer_gui.engine.checkpoint import load_checkpoint
from transfer_gui.engine.rundir import load_run


@pytest.fixture
def weights_file(tmp_path: Path) -> Path:
    torch.manual_seed(123)
    path = tmp_path / "init.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def run(cfg, **kw):
    events = []
    result = Trainer().fit(cfg, events.append, **kw)
    return result, events


def sd(run_dir: Path, name="last.pt"):
    return load_checkpoint(run_dir / "checkpoints" / name)["state_dict"]


def test_run_folder_contents(image_folders, tmp_path):
    out = tmp_path / "run"
    result, events = run(tiny_config(image_folders, out, **{"train.epochs": 3}))
    assert result.status == "completed", result.message
    for name in ("config.toml", "metrics.jsonl", "checkpoints/best.pt", "checkpoints/last.pt", "skipped.json",
                 "val_predictions.json", "summary.json"):
        assert (out / name).is_file(), name
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    record = load_run(out)
    assert record.classes == ["blue", "green", "red"]
    assert len(record.predictions) == 6  # 20 % of 30 images, stratified
    assert sum(map(sum, record.confusion())) == 6
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("RunStarted") < kinds.index("BatchEnd") < kinds.index("EpochEnd") < kinds.index("Finished")
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert started.feature_cache and started.trainable_groups == ["head"]
    assert not any(name.endswith(".part") for name in map(str, out.rglob("*")))


def test_warmup_and_group_rates_in_the_optimizer(image_folders, tmp_path, weights_file):
    cfg = tiny_config(image_folders, tmp_path / "run", **{
        "model.weights": str(weights_file), "layers.train_from": "layer4", "layers.head_lr": 1e-2,
        "layers.lr_decay": 0.1, "schedule.name": "constant", "schedule.warmup_steps": 4, "train.epochs": 2})
    result, events = run(cfg)
    assert result.status == "completed", result.message
    batches = [e for e in events if isinstance(e, ev.BatchEnd)]
    assert len(batches) == 6  # 24 training images / 8 per batch x 2 epochs
    for e in batches:
        factor = min(1.0, (e.step - 1) / 4)  # the rate used by optimizer step `e.step`
        assert e.lrs["head"] == pytest.approx(1e-2 * factor, abs=1e-12)
        assert e.lrs["layer4"] == pytest.approx(1e-3 * factor, abs=1e-12)
    assert batches[0].lrs["head"] == 0.0


def test_frozen_groups_bit_identical_and_bn_stats_kept(image_folders, tmp_path, weights_file):
    cfg = tiny_config(image_folders, tmp_path / "run", **{
        "model.weights": str(weights_file), "layers.train_from": "layer3", "layers.head_lr": 1e-2})
    result, _ = run(cfg)
    assert result.status == "completed", result.message
    before, after = torch.load(weights_file, weights_only=True), sd(tmp_path / "run")
    for key in before:
        if key.startswith(("conv1", "bn1", "layer1", "layer2")):
            assert torch.equal(before[key], after[key]), key  # weights and BN running stats
    assert not torch.equal(before["layer3.0.conv1.weight"], after["layer3.0.conv1.weight"])
    assert not torch.equal(before["layer3.0.bn1.running_mean"], after["layer3.0.bn1.running_mean"])

    cfg = cfg.replace(**{"output.dir": str(tmp_path / "bn"), "layers.train_bn": True})
    assert run(cfg)[0].status == "completed"
    after_bn = sd(tmp_path / "bn")
    assert torch.equal(before["layer1.0.conv1.weight"], after_bn["layer1.0.conv1.weight"])
    assert not torch.equal(before["layer1.0.bn1.running_mean"], after_bn["layer1.0.bn1.running_mean"])


def test_gradual_unfreezing(image_folders, tmp_path, weights_file):
    before = torch.load(weights_file, weights_only=True)
    for epochs, changed in ((1, False), (2, True)):
        out = tmp_path / f"e{epochs}"
        cfg = tiny_config(image_folders, out, **{"model.weights": str(weights_file), "train.epochs": epochs,
                                                 "layers.unfreeze_at": {"layer4": 1}, "layers.head_lr": 1e-2})
        result, events = run(cfg)
        assert result.status == "completed", result.message
        assert not next(e for e in events if isinstance(e, ev.RunStarted)).feature_cache
        after = sd(out)
        assert torch.equal(before["layer3.1.conv2.weight"], after["layer3.1.conv2.weight"])
        assert (not torch.equal(before["layer4.1.conv2.weight"], after["layer4.1.conv2.weight"])) == changed


def test_feature_cache_matches_the_full_loop(image_folders, tmp_path, weights_file):
    from transfer_gui.engine.features import clear
    from transfer_gui.engine.prepare import prepare
    from transfer_gui.engine.surgery import backbone_and_head

    # the two paths are the same computation in fp32 (bf16 autocast, "auto" on a bf16 CPU, would
    # round the backbone's activations on one side only)
    cfg = tiny_config(image_folders, tmp_path / "a", **{"model.weights": str(weights_file), "train.epochs": 2,
                                                        "layers.head_lr": 1e-2, "train.precision": "fp32"})
    clear()
    p = prepare(cfg, lambda e: None, RunControl())
    assert p.use_features
    feats, labels, _ = next(iter(p.val_loader))
    model = p.model.eval()
    from transfer_gui.engine.data import ImageDataset
    from transfer_gui.engine.preprocess import eval_from_resized

    ds = ImageDataset(p.split.val, eval_from_resized(p.built.preprocessing), p.built.preprocessing)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        full = model(x)
        cached = p.module(feats)
    assert torch.allclose(full, cached, atol=1e-5)

    cached_run, _ = run(cfg)
    plain_run, ev_plain = run(cfg.replace(**{"output.dir": str(tmp_path / "b"), "train.feature_cache": "off"}))
    assert not next(e for e in ev_plain if isinstance(e, ev.RunStarted)).feature_cache
    a, b = sd(tmp_path / "a"), sd(tmp_path / "b")
    assert torch.allclose(a["fc.weight"], b["fc.weight"], atol=1e-5)
    assert cached_run.history[-1]["val_acc"] == plain_run.history[-1]["val_acc"]


def test_stop_returns_within_one_batch_and_keeps_checkpoint(image_folders, tmp_path):
    control = RunControl()
    seen = []

    def on_event(e):
        seen.append(e)
        if isinstance(e, ev.BatchEnd) and e.epoch == 1 and e.batch == 1:
            control.stop()

    cfg = tiny_config(image_folders, tmp_path / "run", **{"train.epochs": 5, "train.feature_cache": "off"})
    result = Trainer().fit(cfg, on_event, control)
    assert result.status == "stopped"
    after_stop = seen[[i for i, e in enumerate(seen) if isinstance(e, ev.BatchEnd)][-1] + 1:]
    assert not any(isinstance(e, (ev.BatchEnd, ev.EpochEnd)) for e in after_stop)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 1
    assert "last checkpoint is kept" in result.message


def test_pause_resume_equals_uninterrupted(image_folders, tmp_path):
    base = tiny_config(image_folders, tmp_path / "plain", **{"train.feature_cache": "off", "train.epochs": 2})
    run(base)
    control = RunControl()
    resumed = threading.Event()

    def on_event(e):
        if isinstance(e, ev.BatchEnd) and e.step == 2 and not resumed.is_set():
            control.pause()
            threading.Timer(0.3, lambda: (resumed.set(), control.resume())).start()

    result = Trainer().fit(base.replace(**{"output.dir": str(tmp_path / "paused")}), on_event, control)
    assert result.status == "completed" and resumed.is_set()
    a, b = sd(tmp_path / "plain"), sd(tmp_path / "paused")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_stop_continues_to_the_same_weights(image_folders, tmp_path):
    cfg = tiny_config(image_folders, tmp_path / "plain", **{"train.feature_cache": "off", "train.epochs": 3})
    run(cfg)
    control = RunControl()
    stopped = cfg.replace(**{"output.dir": str(tmp_path / "resumed")})
    Trainer().fit(stopped, lambda e: isinstance(e, ev.EpochEnd) and control.stop(), control)
    assert len((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()) == 1
    result, events = run(stopped, resume=True)
    assert result.status == "completed" and len(result.history) == 3
    assert next(e for e in events if isinstance(e, ev.RunStarted)).start_epoch == 1
    a, b = sd(tmp_path / "plain"), sd(tmp_path / "resumed")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


class _Faulty(Trainer):
    def __init__(self, fault, at_step=3):
        self.fault, self.at_step, self.calls = fault, at_step, 0

    def _forward(self, module, x):
        self.calls += 1
        out = module(x)
        if self.calls >= self.at_step:
            if self.fault == "nan":
                return out * float("nan")
            raise self.fault
        return out


@pytest.mark.parametrize("fault, expect", [
    ("nan", "Lower the learning rate"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "Try a batch size of 4"),
    (RuntimeError("something broke"), "RuntimeError: something broke"),
])
def test_faults_end_the_run_with_advice_and_keep_the_checkpoint(image_folders, tmp_path, fault, expect):
    events = []
    cfg = tiny_config(image_folders, tmp_path / "run", **{"train.epochs": 3})
    result = _Faulty(fault, at_step=5).fit(cfg, events.append)
    assert result.status == "failed"
    assert expect in result.message
    finished = events[-1]
    assert isinstance(finished, ev.Finished) and finished.message == result.message
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()  # epoch 1 finished before the fault


def test_early_stopping(image_folders, tmp_path):
    cfg = tiny_config(image_folders, tmp_path / "run", **{"train.epochs": 6, "train.early_stopping": 1,
                                                          "layers.head_lr": 1e-12, "schedule.name": "constant"})
    result, _ = run(cfg)
    assert result.status == "early_stopped" and len(result.history) == 2


def test_bad_group_name_is_a_clear_failure(image_folders, tmp_path):
    result, _ = run(tiny_config(image_folders, tmp_path / "run", **{"layers.frozen": ["layer9"]}))
    assert result.status == "failed" and result.bad_input and "layer9" in result.message


@pytest.mark.parametrize("model_name, train_from", [("resnet18", "layer4"), ("efficientnet_lite0", "blocks.6")])
def test_frozen_prefix_computed_once_trains_like_the_full_loop(image_folders, tmp_path, model_name, train_from):
    cfg = tiny_config(image_folders, tmp_path / "a", **{"model.name": model_name, "layers.train_from": train_from,
                                                        "layers.head_lr": 1e-2, "train.epochs": 2,
                                                        "train.precision": "fp32"})  # the same computation in fp32
    cached, ev_cached = run(cfg)
    plain, _ = run(cfg.replace(**{"output.dir": str(tmp_path / "b"), "train.feature_cache": "off"}))
    notes = " ".join(e.message for e in ev_cached if isinstance(e, ev.PhaseChanged))
    assert "frozen layers computed once" in notes and train_from in notes
    a, b = sd(tmp_path / "a"), sd(tmp_path / "b")
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=2e-4), key
    assert [h["val_acc"] for h in cached.history] == [h["val_acc"] for h in plain.history]


def test_activation_cache_respects_its_memory_budget(image_folders, tmp_path):
    cfg = tiny_config(image_folders, tmp_path / "a", **{"layers.train_from": "layer3", "train.cache_memory_mb": 0})
    result, events = run(cfg)
    assert result.status == "completed"
    notes = " ".join(e.message for e in events if isinstance(e, ev.PhaseChanged))
    assert "budget train.cache_memory_mb" in notes


def test_gradient_clipping_bounds_the_update(image_folders, tmp_path, weights_file):
    """With SGD and no momentum, one step moves the weights by lr * clipped gradient."""
    base = {"model.weights": str(weights_file), "layers.train_from": "layer4", "optim.name": "sgd",
            "optim.momentum": 0.0, "optim.weight_decay": 0.0, "schedule.name": "constant", "train.epochs": 1,
            "layers.head_lr": 1.0, "train.batch_size": 24, "data.val_fraction": 0.2, "train.feature_cache": "off"}
    before = torch.load(weights_file, weights_only=True)
    norms = {}
    for clip in (0.0, 1e-3):
        out = tmp_path / f"clip{clip}"
        result, _ = run(tiny_config(image_folders, out, **{**base, "train.grad_clip": clip}))
        assert result.status == "completed", result.message
        after = sd(out)
        keys = [k for k in after if k.startswith(("layer4", "fc")) and "running" not in k and "num_batches" not in k]
        norms[clip] = torch.sqrt(sum(((after[k] - before.get(k, after[k] * 0)) ** 2).sum()
                                     for k in keys if k in before and not k.startswith("fc")))
    assert norms[1e-3] <= 1e-3 * 1.01  # one step of lr 1 with the gradient norm clipped to 1e-3
    assert norms[0.0] > 10 * norms[1e-3]


def test_timm_architecture_by_name(image_folders, tmp_path):
    result, events = run(tiny_config(image_folders, tmp_path / "run", **{"model.name": "timm:resnet18",
                                                                         "layers.train_from": "layer4"}))
    assert result.status == "completed", result.message
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert started.groups[-1] == "head" and "layer4" in started.groups
