"""Per-layer-group drift from the pretrained weights and gradient norms (engine/drift.py): the
numbers themselves, what a real tiny run records and emits, and the three warnings, each
provoked by a real run that earns it, and absent from a sane run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_class_folders, tiny_config
from transfer_gui.config import LayersConfig
from transfer_gui.engine import drift as drift_mod
from transfer_gui.engine import events as ev
from transfer_gui.engine import wording
from transfer_gui.engine.drift import GroupDrift, drift, grad_norm, optimizer_groups
from transfer_gui.engine.loop import Trainer
from transfer_gui.engine.parts import EpochOutcome, Part, Run, RunState, call
from transfer_gui.engine.ranks import SINGLE

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_class_folders(tmp_path_factory.mktemp("drift") / "data", per_class=10, size=32)


def _fit(data: Path, out: Path, trainer: Trainer | None = None, **changes):
    events: list = []
    result = (trainer or Trainer()).fit(tiny_config(data, out, **changes), events.append)
    assert result.status == "completed", result.message
    return result, events


def _ours(events) -> list[str]:
    """The warnings this part emits (others, e.g. about the data, are not ours)."""
    keys = ("the training loss rose", "moved more than", "almost no gradient")
    return [e.message for e in events if isinstance(e, ev.Warning) and any(k in e.message for k in keys)]


def _stats(events) -> list[ev.GroupStats]:
    return [e for e in events if isinstance(e, ev.GroupStats)]


# ----------------------------------------------------------------------------- the numbers


def test_drift_and_gradient_norm_are_the_relative_l2_distance_and_the_l2_norm():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=7).astype(np.float32)
    params = [nn.Parameter(torch.from_numpy(a.copy())), nn.Parameter(torch.from_numpy(b.copy()))]
    start = [p.detach().clone() for p in params]
    start_norm = math.sqrt(float((a ** 2).sum() + (b ** 2).sum()))
    assert drift(params, start, start_norm) == 0.0
    with torch.no_grad():
        params[0] += 0.1
        params[1] *= 1.5
    moved = math.sqrt(20 * 0.01 + float(((0.5 * b) ** 2).sum()))
    assert drift(params, start, start_norm) == pytest.approx(moved / start_norm, rel=1e-5)
    assert grad_norm(params) is None  # no gradients yet: frozen, or not stepped
    params[0].grad = torch.full((4, 5), 2.0)
    params[1].grad = torch.full((7,), -1.0)
    assert grad_norm(params) == pytest.approx(math.sqrt(20 * 4 + 7), rel=1e-6)


def test_the_optimizer_groups_are_read_by_their_layer_group_name():
    a, b, c = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)
    opt = torch.optim.SGD([{"params": [a.weight], "group_name": "stem"}, {"params": [a.bias], "group_name": "stem"},
                           {"params": list(b.parameters()), "group_name": "body"},
                           {"params": list(c.parameters()), "group_name": "head"}], lr=0.1)
    groups = optimizer_groups(opt)
    assert list(groups) == ["stem", "body", "head"]
    assert [len(v) for v in groups.values()] == [2, 2, 2] and groups["stem"][0] is a.weight


# ----------------------------------------------------------------------------- a real run


def test_a_sane_run_records_and_emits_the_groups_and_warns_of_nothing(data, tmp_path):
    result, events = _fit(data, tmp_path / "run", **{"layers.train_from": "layer3", "layers.lr_decay": 0.5,
                                                     "schedule.warmup_epochs": 1.0})
    assert _ours(events) == []
    stats = _stats(events)
    assert stats and stats[0].step == 1 and stats[0].epoch == 0
    assert set(stats[0].drift) == {"layer3", "layer4"}  # the head has no pretrained weights
    assert set(stats[0].grad_norm) == {"layer3", "layer4", "head"} and set(stats[0].norm_growth) == {"head"}
    assert all(v == 0.0 for v in stats[0].drift.values())  # measured before the first update
    assert all(v > 0 for v in stats[-1].drift.values()) and all(v > 0 for v in stats[-1].grad_norm.values())
    assert {s.epoch for s in stats} == {0, 1}  # at least once an epoch
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [set(rec["groups"]) for rec in lines] == [{"layer3", "layer4", "head"}] * 2
    last = lines[-1]["groups"]
    assert last["head"]["drift"] is None and last["head"]["norm_growth"] > 0
    assert last["layer4"]["drift"] >= lines[0]["groups"]["layer4"]["drift"] > 0
    assert all(row["grad_norm"] > 0 for row in last.values())
    assert result.history[-1]["groups"] == last


def test_with_cached_features_only_the_head_has_stats(data, tmp_path):
    _, events = _fit(data, tmp_path / "run")  # train_from head, no augmentation: features computed once
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert started.feature_cache
    stats = _stats(events)
    assert stats and all(s.drift == {} and set(s.grad_norm) == {"head"} for s in stats)
    rec = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(rec["groups"]) == {"head"} and rec["groups"]["head"]["drift"] is None


def test_a_huge_head_rate_without_warmup_warns_of_a_loss_spike(data, tmp_path):
    _, events = _fit(data, tmp_path / "run", **{"layers.head_lr": 2.0, "train.epochs": 1})
    ours = _ours(events)
    assert len(ours) == 1 and "the training loss rose" in ours[0]
    assert "schedule.warmup_epochs" in ours[0] and "layers.head_lr (now 2;" in ours[0]


def test_a_low_rate_group_that_moves_far_is_named(data, tmp_path):
    # layer4 trains at a tenth of the head's rate, yet AdamW at 1e-2 rewrites its weights
    _, events = _fit(data, tmp_path / "run", **{"layers.train_from": "layer4", "layers.head_lr": 0.1,
                                                "layers.lr_decay": 0.1, "schedule.warmup_epochs": 1.0})
    ours = [m for m in _ours(events) if "moved more than" in m]
    assert len(ours) == 1 and "layer4" in ours[0] and "layers.lr" in ours[0] and "layers.train_from" in ours[0]
    flagged = [s.flags for s in _stats(events) if s.flags]
    assert flagged and flagged[-1].get("layer4") == "drift"


class _DeadStem(Trainer):
    """A stem whose BatchNorm has scale 0 and a negative shift: after its ReLU its output is 0
    for every image, nothing flows back into it, and every group after it sees the same
    constant input, which its BatchNorm maps to its shift: the whole backbone gets exactly zero
    gradient, only the head learns (the bias)."""

    def parts(self, cfg, run_dir, resume_blob):
        parts = super().parts(cfg, run_dir, resume_blob)

        class Kill(Part):
            def before_fit(self, run):
                bn = run.prepared.model.bn1
                with torch.no_grad():
                    bn.weight.zero_()
                    bn.bias.fill_(-1.0)

        return [Kill(), *parts]


def test_a_group_without_gradient_is_named_with_the_setting_to_freeze_it(data, tmp_path):
    _, events = _fit(data, tmp_path / "run", trainer=_DeadStem(),
                     **{"layers.train_from": "stem", "train.epochs": 4, "schedule.warmup_epochs": 1.0})
    ours = [m for m in _ours(events) if "almost no gradient" in m]
    assert len(ours) == 1 and "layer groups stem (0.0e+00), layer1 (0.0e+00)" in ours[0]
    assert "layer4 (0.0e+00)" in ours[0] and "set layers.train_from to head" in ours[0]
    flags = next(s.flags for s in _stats(events) if s.flags)
    assert flags == {g: "no_gradient" for g in ("stem", "layer1", "layer2", "layer3", "layer4")}


# ----------------------------------------------------------------------------- ranks, wording


def _tiny_run(parts, main=True):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 3))
    opt = torch.optim.SGD([{"params": list(model[0].parameters()), "group_name": "body"},
                           {"params": list(model[1].parameters()), "group_name": "head"}], lr=0.1)
    cfg = SimpleNamespace(layers=LayersConfig(), train=SimpleNamespace(epochs=2))
    prepared = SimpleNamespace(use_features=False, frozen=set(), lrs={"body": 0.1, "head": 0.1}, model=model,
                               groups=[SimpleNamespace(name="body"), SimpleNamespace(name="head")])
    events: list = []
    run = Run(cfg, Path("/nowhere"), prepared, opt, RunState(), events.append, SINGLE, None, None, "",
              parts=parts)
    return run, model, events


def test_only_rank_0_measures_records_and_emits():
    for main in (True, False):
        run, model, events = _tiny_run([GroupDrift(main=main, every=1)])
        call(run, "before_fit")
        call(run, "before_epoch")
        model(torch.ones(2, 4)).sum().backward()
        call(run, "after_backward", SimpleNamespace(global_loss=torch.tensor([1.0])))
        run.epoch = EpochOutcome(0, {"epoch": 1}, {})
        call(run, "after_epoch")
        assert ("groups" in run.epoch.record) == main
        assert any(isinstance(e, ev.GroupStats) for e in events) == main


def test_the_cadence_keeps_measuring_under_its_budget(monkeypatch):
    part = GroupDrift()
    part.t_step, part.t_measure = 0.1, 0.01  # a measurement costs a tenth of a step
    part._adapt()
    assert part.every == 5  # 0.01 / (0.02 * 0.1)
    part.t_measure = 0.05
    part._adapt()
    assert part.every == 25 and part.t_measure / (part.every * part.t_step) <= drift_mod.BUDGET
    part.t_measure = 0.0001
    part._adapt()
    assert part.every == drift_mod.MIN_EVERY


def test_the_warnings_name_the_settings_and_group_stats_are_not_a_log_line():
    spike = wording.loss_spike_warning(1.1, 5.5, 3, 5, 0.0, 0.5)
    assert "5.0x" in spike and "schedule.warmup_epochs is 0; try 1" in spike and "try 0.05" in spike
    moved = wording.drift_warning({"layer3": 0.4}, {"layer3": 1e-4, "head": 1e-3}, 1e-3, 0.15)
    assert "layer3 (40% at rate 0.0001)" in moved and "15%" in moved and "it trains" in moved
    dead = wording.no_gradient_warning(["stem", "layer1"], {"stem": 0.0, "layer1": 1e-9}, ("head", 2.0), "layer2")
    assert "layer groups stem (0.0e+00), layer1" in dead and "set layers.train_from to layer2" in dead
    assert wording.describe(ev.GroupStats(0, 1, {"a": 0.1}, {"a": 1.0})) is None
