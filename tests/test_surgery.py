import pytest
import torch
import torchvision

from transfer_gui.engine.surgery import backbone_and_head, find_head, replace_head, split_groups

FAMILIES = {
    "resnet18": "fc", "vgg11": "classifier.6", "alexnet": "classifier.6", "efficientnet_b0": "classifier.1",
    "mobilenet_v3_small": "classifier.3", "mobilenet_v2": "classifier.1", "vit_b_16": "heads.head",
    "swin_t": "head", "convnext_tiny": "classifier.2", "regnet_y_400mf": "fc", "densenet121": "classifier",
    "shufflenet_v2_x0_5": "fc", "squeezenet1_1": "classifier.1", "mnasnet0_5": "classifier.1",
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_head_replaced_and_groups_cover_every_parameter(name):
    model = torchvision.models.get_model(name, weights=None)
    head = replace_head(model, 5)
    assert head == FAMILIES[name]
    model.eval()
    size = 224 if name in ("vit_b_16",) else 64
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size))
    assert out.shape == (1, 5)
    groups = split_groups(model, head)
    names = [p for g in groups for p in g.params]
    assert len(names) == len(set(names)), "a parameter is in two groups"
    assert set(names) == {n for n, _ in model.named_parameters()}
    assert groups[-1].name == "head" and groups[-1].num_params == sum(
        p.numel() for p in model.get_submodule(head).parameters())
    assert len({g.name for g in groups}) == len(groups)
    assert len(groups) >= 3


def test_resnet18_groups_are_the_textbook_stages():
    model = torchvision.models.resnet18(weights=None)
    groups = split_groups(model, replace_head(model, 3))
    assert [g.name for g in groups] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert groups[0].modules == ("conv1", "bn1")


def test_timm_offline_model_groups():
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    head = replace_head(model, 4)
    assert head == "classifier" and model.classifier.out_features == 4
    names = [g.name for g in split_groups(model, head)]
    assert names[0] == "stem" and names[-1] == "head" and "conv_head" in names and "blocks.6" in names


def test_backbone_then_head_equals_model():
    model = torchvision.models.efficientnet_b0(weights=None).eval()
    head = replace_head(model, 3)
    backbone, head_mod = backbone_and_head(model, head)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(head_mod(backbone(x)), model(x), atol=1e-6)
    assert isinstance(model.classifier[1], torch.nn.Linear), "the original model was changed"


def test_find_head_prefers_timm_config():
    import timm

    model = timm.create_model("resnet18", pretrained=False)
    assert find_head(model) == "fc"
