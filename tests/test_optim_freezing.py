import pytest
import torch
import torchvision

from transfer_gui.config import OptimConfig
from transfer_gui.engine.freezing import (GroupError, apply_freeze, frozen_at_epoch, resolve_frozen, set_train_mode,
                                          trainable_count)
from transfer_gui.engine.optim import group_lrs, make_optimizer, param_groups
from transfer_gui.engine.surgery import replace_head, split_groups


@pytest.fixture
def resnet():
    model = torchvision.models.resnet18(weights=None)
    return model, split_groups(model, replace_head(model, 3))


def test_discriminative_rates(resnet):
    _, groups = resnet
    lrs = group_lrs(groups, 1e-3, 0.1, {"stem": 7e-7})
    assert lrs["head"] == 1e-3
    assert lrs["layer4"] == pytest.approx(1e-4)
    assert lrs["layer1"] == pytest.approx(1e-7)
    assert lrs["stem"] == 7e-7


def test_no_weight_decay_on_norm_and_bias(resnet):
    model, groups = resnet
    pgs = param_groups(model, groups, group_lrs(groups, 1e-3), weight_decay=0.05)
    for pg in pgs:
        for name in pg["param_names"]:
            is_norm_or_bias = name.endswith(".bias") or ".bn" in name or name.startswith("bn") or "downsample.1" in name
            assert (pg["weight_decay"] == 0.0) == is_norm_or_bias, name
    counted = sum(p.numel() for pg in pgs for p in pg["params"])
    assert counted == sum(p.numel() for p in model.parameters())


def test_resolve_frozen_and_train_from(resnet):
    model, groups = resnet
    assert resolve_frozen(groups, train_from="layer3") == {"stem", "layer1", "layer2"}
    assert resolve_frozen(groups, ["head"], "layer4") == {"stem", "layer1", "layer2", "layer3", "head"}
    with pytest.raises(GroupError, match="layer5.*Did you mean"):
        resolve_frozen(groups, ["layer5"])
    apply_freeze(model, groups, {"stem", "layer1"})
    trainable, total = trainable_count(model)
    assert total - trainable == groups[0].num_params + groups[1].num_params


def test_frozen_batchnorm_stays_in_eval(resnet):
    model, groups = resnet
    frozen = {"stem", "layer1"}
    set_train_mode(model, groups, frozen)
    assert not model.bn1.training and not model.layer1[0].bn1.training
    assert model.layer2[0].bn1.training and model.fc.training
    set_train_mode(model, groups, frozen, train_bn=True)
    assert model.bn1.training and not model.layer1[0].conv1.training


def test_gradual_unfreezing_schedule():
    assert frozen_at_epoch({"a", "b", "c"}, {"b": 2, "c": 1}, 0) == {"a", "b", "c"}
    assert frozen_at_epoch({"a", "b", "c"}, {"b": 2, "c": 1}, 1) == {"a", "b"}
    assert frozen_at_epoch({"a", "b", "c"}, {"b": 2, "c": 1}, 5) == {"a"}


def test_sgd_and_adamw(resnet):
    model, groups = resnet
    lrs = group_lrs(groups, 1e-2, 0.5)
    sgd = make_optimizer(model, groups, lrs, OptimConfig(name="sgd", momentum=0.9, nesterov=True))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"]
    adamw = make_optimizer(model, groups, lrs, OptimConfig(name="adamw"))
    assert isinstance(adamw, torch.optim.AdamW)
    assert {pg["group_name"] for pg in adamw.param_groups} == {g.name for g in groups}


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_the_optimizer_runs_fused_on_a_cpu_and_steps_as_the_plain_loop(resnet, name):
    import copy

    from transfer_gui.engine.optim import can_fuse

    model, groups = resnet
    twin = copy.deepcopy(model)
    lrs = group_lrs(groups, 1e-3, 0.5)
    cfg = OptimConfig(name=name)
    fused = make_optimizer(model, groups, lrs, cfg)
    assert fused.defaults["fused"] is True
    plain_cls = torch.optim.AdamW if name == "adamw" else torch.optim.SGD
    extra = {} if name == "adamw" else {"momentum": cfg.momentum}
    plain = plain_cls(param_groups(twin, split_groups(twin, "fc"), lrs, cfg.weight_decay), lr=1e-3, **extra)
    assert not plain.defaults.get("fused")
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        for a, b in zip(model.parameters(), twin.parameters()):
            a.grad = torch.randn(a.shape, generator=gen)
            b.grad = a.grad.clone()
        fused.step()
        plain.step()
    assert max(float((a - b).abs().max()) for a, b in zip(model.parameters(), twin.parameters())) < 1e-6
    assert not can_fuse([torch.zeros(2, dtype=torch.float64)])
    assert not can_fuse([torch.zeros(2), torch.zeros(2, device="meta")])
