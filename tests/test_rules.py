"""The rulebook (engine/rules.py) against what the engine then does: the split, the frozen
groups, the rates in the optimizer and the cache a run uses, for real models."""

import subprocess
import sys
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_class_folders, tiny_config
from transfer_gui.config import DataConfig, LayersConfig
from transfer_gui.engine.control import RunControl
from transfer_gui.engine.rules import (GroupError, group_rates, lr_sweep_ok, plan_cache, plan_cache_for,
                                       resolve_frozen, split_counts, split_sizes)
from transfer_gui.engine.scan import DatasetIndex, Sample, stratified_split

RESNET = ["stem", "layer1", "layer2", "layer3", "layer4", "head"]


def test_rules_need_no_torch():
    code = ("import sys, transfer_gui.engine.rules; "
            "sys.exit(1 if [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'PySide6')] else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ----------------------------------------------------------------------------- split


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(1, 40), min_size=1, max_size=8),
       fraction=st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.25, 0.333, 0.5, 0.75, 0.95]),
       seed=st.integers(0, 2**31 - 1))
def test_split_counts_equal_the_stratified_split(counts, fraction, seed):
    classes = [f"c{i}" for i in range(len(counts))]
    samples = [Sample(f"/{c}/{k}.png", i) for i, (c, n) in enumerate(zip(classes, counts)) for k in range(n)]
    train, val = stratified_split(DatasetIndex(classes, samples), fraction, seed)
    assert split_counts(dict(zip(classes, counts)), DataConfig(val_fraction=fraction)) == (len(train), len(val))


def test_split_counts_with_validation_folders():
    assert split_counts({"a": 5, "b": 7}, DataConfig(val_folders=("/v",))) == (12, -1)


def test_split_counts_equal_what_prepare_splits(tmp_path):
    from transfer_gui.engine.prepare import prepare

    root = tmp_path / "data"
    make_class_folders(root, per_class=7, classes=("red",))
    make_class_folders(root, per_class=3, classes=("green",), seed=1)
    make_class_folders(root, per_class=12, classes=("blue",), seed=2)
    cfg = tiny_config(root, tmp_path / "run", **{"data.val_fraction": 0.3})
    p = prepare(cfg, lambda e: None, RunControl())
    assert split_counts({"red": 7, "green": 3, "blue": 12}, cfg.data) == (len(p.split.train), len(p.split.val))
    held = cfg.replace(**{"data.test_fraction": 0.25})
    q = prepare(held, lambda e: None, RunControl())
    assert split_sizes({"red": 7, "green": 3, "blue": 12}, held.data) == (len(q.split.train), len(q.split.val),
                                                                         len(q.split.test))
    assert len(q.split.test) == 2 + 1 + 3 and q.test_loader is not None and len(q.test_loader.dataset) == 6
    assert p.test_loader is None and p.split.test == []


def test_split_sizes_with_test_folders_and_shares():
    assert split_sizes({"a": 5, "b": 7}, DataConfig(test_folders=("/t",))) == (10, 2, -1)
    assert split_sizes({"a": 5, "b": 7}, DataConfig(test_fraction=0.2, val_folders=("/v",))) == (10, -1, 2)
    assert split_sizes({"a": 1, "b": 2}, DataConfig(test_fraction=0.5, val_fraction=0.5)) == (2, 0, 1)


# ----------------------------------------------------------------------------- frozen groups


def test_resolve_frozen_strict_and_lenient():
    layers = LayersConfig(frozen=("head", "layer9"), train_from="layer3")
    with pytest.raises(GroupError, match="layers.frozen: unknown layer group 'layer9'"):
        resolve_frozen(RESNET, layers)
    assert resolve_frozen(RESNET, layers, strict=False) == {"stem", "layer1", "layer2", "head"}
    with pytest.raises(GroupError, match="layers.train_from: unknown layer group 'layer7'.*Did you mean"):
        resolve_frozen(RESNET, LayersConfig(train_from="layer7"))
    assert resolve_frozen(RESNET, LayersConfig(train_from="layer7"), strict=False) == set()
    assert resolve_frozen(RESNET, LayersConfig(train_from="")) == set()


def test_group_rates():
    layers = LayersConfig(head_lr=1e-2, lr_decay=0.5, lr={"stem": 3e-6}, train_from="layer2",
                          unfreeze_at={"layer1": 2})
    rates = group_rates(RESNET, layers)
    assert rates["head"] == 1e-2 and rates["layer4"] == pytest.approx(5e-3) and rates["layer1"] == pytest.approx(6.25e-4)
    assert rates["stem"] == 3e-6
    assert set(group_rates(RESNET, layers, exclude_frozen=True)) == {"layer1", "layer2", "layer3", "layer4", "head"}


def test_lr_sweep_bounds():
    assert lr_sweep_ok(2, 1e-7, 1.0)
    assert not lr_sweep_ok(1, 1e-7, 1.0) and not lr_sweep_ok(10, 0.0, 1.0) and not lr_sweep_ok(10, 1.0, 1.0)


# ----------------------------------------------------------------------------- cache plan


def _plan(frozen, **kw):
    return plan_cache(RESNET, frozen, **kw)


def test_plan_features_when_only_the_head_trains():
    plan = _plan(set(RESNET[:-1]))
    assert plan.kind == "features" and plan.computed_once == tuple(RESNET[:-1]) and "head" in plan.reason
    thaws = _plan(set(RESNET[:-1]), unfreeze_at={"layer4"})  # layer4 thaws later: the prefix changes too
    assert thaws.kind == "none" and "gradual unfreezing" in thaws.reason
    assert _plan(set(RESNET[:-1]), augment_random=True).kind == "none"


@pytest.mark.parametrize("frozen, kw, reason", [
    ({"stem"}, {"feature_cache": "off"}, "train.feature_cache is off"),
    (set(), {}, "no feature cache: no frozen layers at the input side"),
    ({"layer2", "layer3"}, {}, "no feature cache: no frozen layers at the input side"),
    ({"stem", "layer1"}, {"augment_random": True}, "no activation cache: random augmentation is on"),
    ({"stem", "layer1"}, {"train_bn": True}, "frozen layers change during the run (train_bn or gradual unfreezing)"),
    ({"stem", "layer1"}, {"unfreeze_at": {"layer1"}}, "frozen layers change during the run"),
    ({"stem", "layer1"}, {"dummy_ok": False, "start_module": "layer2"},
     "no activation cache: this architecture cannot start at layer2"),
    ({"stem", "layer1"}, {"activation_bytes": 3 * 2**30, "budget_mb": 1024, "start_module": "layer2"},
     "no activation cache: 3,072 MB needed at layer2, budget train.cache_memory_mb = 1,024 MB"),
])
def test_plan_none_says_why(frozen, kw, reason):
    plan = _plan(frozen, **kw)
    assert plan.kind == "none" and reason in plan.reason
    assert plan.silent == (kw.get("feature_cache") == "off")


def test_plan_prefix_provisional_then_measured():
    first = _plan({"stem", "layer1", "layer2"})
    assert (first.kind, first.computed_once, first.start_group, first.provisional) == \
        ("prefix", ("stem", "layer1", "layer2"), "layer3", True)
    assert "train.cache_memory_mb = 1,024 MB" in first.reason and "from layer3 on" in first.reason
    final = _plan({"stem", "layer1", "layer2"}, activation_bytes=200 * 2**20, dummy_ok=True)
    assert final.kind == "prefix" and not final.provisional and "200 MB of" in final.reason


def test_plan_for_a_config_reads_its_settings():
    cfg = tiny_config("/d", "/o", **{"layers.train_from": "layer4", "data.augment.enabled": True})
    assert plan_cache_for(RESNET, cfg).reason == "no activation cache: random augmentation is on"
    cfg = tiny_config("/d", "/o", **{"layers.frozen": ["layer9"], "layers.train_from": "head"})
    assert plan_cache_for(RESNET, cfg).kind == "features"  # unknown names left out


# ----------------------------------------------------------------------------- rules vs prepare


@pytest.mark.parametrize("model, changes, kind", [
    ("resnet18", {}, "features"),
    ("resnet18", {"layers.train_from": "layer4", "layers.lr_decay": 0.3, "layers.lr": {"stem": 1e-6}}, "prefix"),
    ("resnet18", {"layers.train_from": "layer3", "train.cache_memory_mb": 0}, "none"),
    ("resnet18", {"layers.train_from": "", "layers.frozen": ["layer2"], "layers.head_lr": 3e-3}, "none"),
    ("resnet18", {"layers.train_from": "layer4", "layers.unfreeze_at": {"layer3": 1}}, "none"),
    ("efficientnet_lite0", {"layers.train_from": "blocks.6", "layers.lr_decay": 0.5}, "prefix"),
    ("efficientnet_lite0", {"train.feature_cache": "off"}, "none"),
])
def test_rules_hold_against_prepare_and_the_optimizer(image_folders, tmp_path, model, changes, kind):
    from transfer_gui.engine.optim import make_optimizer
    from transfer_gui.engine.prepare import prepare

    cfg = tiny_config(image_folders, tmp_path / "run", **{"model.name": model, **changes})
    p = prepare(cfg, lambda e: None, RunControl())
    try:
        names = [g.name for g in p.groups]
        assert p.frozen == resolve_frozen(names, cfg.layers)
        assert p.lrs == group_rates(names, cfg.layers)
        opt = make_optimizer(p.model, p.train_groups, p.lrs, cfg.optim)
        in_opt = {pg["group_name"]: pg["base_lr"] for pg in opt.param_groups}
        assert in_opt == {n: lr for n, lr in group_rates(names, cfg.layers).items() if n in in_opt}
        assert p.plan.kind == kind
        planned = plan_cache_for(names, cfg)
        assert planned.kind == kind or (planned.kind == "prefix" and planned.provisional and kind == "none")
        if kind == "prefix":
            assert p.plan.computed_once == planned.computed_once and not p.plan.provisional
        counts = {c: sum(1 for s in p.split.train + p.split.val if s.label == i) for i, c in enumerate(p.split.classes)}
        assert split_counts(counts, cfg.data) == (len(p.split.train), len(p.split.val))
    finally:
        p.close()


def test_prepare_does_not_change_the_split_it_builds_on(tmp_path, monkeypatch):
    """Images that fail to decode go into a new split: the scanned one is left as it was."""
    from transfer_gui.engine import data as data_mod
    from transfer_gui.engine.prepare import prepare

    data = make_class_folders(tmp_path / "data", per_class=6)
    (data / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    seen = []
    real = data_mod.build_split
    monkeypatch.setattr(data_mod, "build_split", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    for cache in ("off", "auto"):
        cfg = tiny_config(data, tmp_path / cache, **{"train.feature_cache": cache, "data.val_fraction": 0.0})
        p = prepare(cfg, lambda e: None, RunControl())
        scanned = seen[-1]
        assert len(scanned.train) == 19 and scanned.skipped == []
        assert len(p.split.skipped) == 1 and p.split.skipped[0].path.endswith("broken.jpg")
        assert len(p.split.train) == (18 if cache == "off" else 19)  # decoded once: dropped; features: masked
        p.close()


def test_layers_page_can_plan_from_names_alone():
    """What the window needs: names and a config in, a plan with its sentence out."""
    cfg = SimpleNamespace(train=SimpleNamespace(feature_cache="auto", cache_memory_mb=512),
                          data=SimpleNamespace(augment=SimpleNamespace(enabled=False)),
                          layers=LayersConfig(train_from="layer2"))
    plan = plan_cache_for(RESNET, cfg)
    assert plan.kind == "prefix" and plan.computed_once == ("stem", "layer1") and plan.reason
