"""The depth probe (engine/probe.py): one accuracy per group boundary, a linear probe that finds
the class signal where there is one, the suggestion rule, the in-process cache, cancel."""

from __future__ import annotations

import json
import math

import pytest
import torch

from transfer_gui.engine import events as ev
from transfer_gui.engine import probe as P
from transfer_gui.engine.control import RunControl
from transfer_gui.errors import Cancelled

from conftest import make_class_folders, tiny_config


@pytest.fixture(scope="module")
def colour_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    data = make_class_folders(root / "data", per_class=12, size=32)
    return tiny_config(data, root / "out", **{"data.val_fraction": 0.34, "train.batch_size": 4})


@pytest.fixture(scope="module")
def probed(colour_config):
    """One probe of the colour folders, computed from scratch, with its events."""
    P._MEMORY.clear()
    seen: list = []
    return P.probe(colour_config, on_event=seen.append), seen


def _depth(name: str, acc: float) -> P.Depth:
    return P.Depth(name, "x", name, 4, acc, acc)


def test_one_accuracy_per_boundary_and_a_suggested_group(probed):
    r, seen = probed
    assert r.groups == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert [d.train_from for d in r.depths] == r.groups[1:]
    assert [d.after for d in r.depths] == r.groups[:-1]
    assert all(0.0 <= d.val_accuracy <= 1.0 and 0.0 <= d.train_accuracy <= 1.0 for d in r.depths)
    assert [d.dim for d in r.depths] == [64, 64, 128, 256, 512]  # resnet18's widths entering each group
    assert r.suggestion in r.groups[1:] and r.reason
    assert r.train_size + r.val_size == 36 and r.classes == ["blue", "green", "red"]
    assert math.isclose(r.chance, 1 / 3, abs_tol=0.1)
    fits = [e for e in seen if isinstance(e, ev.Progress) and e.phase == "probe"]
    assert [e.done for e in fits] == [1, 2, 3, 4, 5] and all(e.total == 5 for e in fits)
    d = r.to_dict()
    assert d["suggested_train_from"] == r.suggestion and len(d["depths"]) == 5


def test_colour_classes_are_found_at_the_first_boundary(probed):
    """Mean-pooled early activations are (close to) linear in the mean colour, which is the class."""
    r, _ = probed
    assert r.depths[0].val_accuracy >= 0.9 > r.chance + 0.4


def test_a_feature_carrying_the_labels_beats_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(300) % 3
    noise = torch.randn(300, 20, generator=g)
    signal = noise.clone()
    signal[:, 0] += 4.0 * y  # one direction separates the classes
    tr, va = slice(0, 200), slice(200, 300)
    _, acc_signal = P.fit_linear(signal[tr], y[tr], signal[va], y[va], 3)
    _, acc_noise = P.fit_linear(noise[tr], y[tr], noise[va], y[va], 3)
    assert acc_signal > 0.9 and acc_noise < 0.6


def test_pool_gives_one_vector_per_image():
    assert P.pool(torch.ones(2, 5, 3, 4)).shape == (2, 5)
    tokens = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.equal(P.pool(tokens), tokens.mean(1))
    assert P.pool(torch.ones(2, 7)).shape == (2, 7)


def test_pool_averages_a_channels_last_map_over_its_positions():
    nhwc = torch.randn(2, 8, 8, 16)  # Swin's stage output for a 32-pixel image: an 8 x 8 grid of 16 channels
    assert torch.allclose(P.pool(nhwc, input_size=32), nhwc.mean(dim=(1, 2)))
    nchw = torch.randn(2, 16, 8, 8)
    assert torch.allclose(P.pool(nchw, input_size=32), nchw.mean(dim=(2, 3)))


def test_swin_stage_inputs_pool_to_their_channels():
    import timm

    torch.manual_seed(0)
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=32, patch_size=4,
                              window_size=4, embed_dim=16, depths=(1, 1), num_heads=(1, 2), num_classes=3).eval()
    x = torch.randn(3, 3, 32, 32)
    seen = {}
    hook = model.layers[1].register_forward_pre_hook(lambda _m, args: seen.setdefault("in", args[0].detach()))
    feats, labels = P.collect(model, ["layers.1"], [(x, torch.tensor([0, 1, 2]), None)], torch.device("cpu"))
    hook.remove()
    assert seen["in"].shape == (3, 8, 8, 16)  # channels last: an 8 x 8 grid of 16 channels
    assert feats[0].shape == (3, 16)
    assert torch.allclose(feats[0], seen["in"].mean(dim=(1, 2)), atol=1e-5)
    assert labels.tolist() == [0, 1, 2]


def test_suggest_rule():
    rising = [_depth("a", 0.5), _depth("b", 0.7), _depth("head", 0.9)]
    name, reason = P.suggest(rising, 0.05)
    assert name == "head" and "head only" in reason
    peaked = [_depth("a", 0.5), _depth("b", 0.9), _depth("c", 0.7), _depth("head", 0.6)]
    name, reason = P.suggest(peaked, 0.05)
    assert name == "b" and "input of b" in reason
    # the shallowest boundary within the tolerance of the best wins: train from there on
    assert P.suggest([_depth("a", 0.7), _depth("b", 0.86), _depth("c", 0.9), _depth("head", 0.88)], 0.05)[0] == "b"
    assert P.suggest([_depth("a", 0.7), _depth("b", 0.84), _depth("c", 0.9), _depth("head", 0.88)], 0.05)[0] == "c"
    assert P.suggest([_depth("a", 0.7), _depth("b", 0.84), _depth("c", 0.9), _depth("head", 0.88)], 0.20)[0] == "a"
    assert P.suggest([])[0] == "head"


def test_second_probe_reuses_the_activations(probed, colour_config):
    first, _ = probed
    second = P.probe(colour_config)
    assert not first.reused and second.reused
    assert second.accuracy() == first.accuracy()


def test_a_stopped_run_control_stops_before_the_fits(colour_config):
    control = RunControl()
    seen: list = []

    def on_event(e):
        seen.append(e)
        if isinstance(e, ev.PhaseChanged) and e.phase == "probe":
            control.stop()

    with pytest.raises(Cancelled):
        P.probe(colour_config, on_event=on_event, control=control)
    assert not any(isinstance(e, ev.Progress) and e.phase == "probe" for e in seen)


def test_no_validation_images_is_the_users_to_fix(tmp_path):
    from transfer_gui.config import ConfigError

    data = make_class_folders(tmp_path / "data", per_class=4, size=32)
    cfg = tiny_config(data, tmp_path / "out", **{"data.val_fraction": 0.0})
    with pytest.raises(ConfigError, match="data.val_fraction"):
        P.probe(cfg)


def test_cancel_stops_the_forward_pass_promptly(colour_config):
    P._MEMORY.clear()
    seen: list = []
    flag = {"on": False}

    def on_event(e):
        seen.append(e)
        if isinstance(e, ev.Progress) and e.phase == "probe_features":
            flag["on"] = True

    with pytest.raises(Cancelled):
        P.probe(colour_config, on_event=on_event, cancel=lambda: flag["on"])
    batches = [e for e in seen if isinstance(e, ev.Progress) and e.phase == "probe_features"]
    assert len(batches) == 1 and batches[0].total == 36  # stopped before the second of nine batches
    assert not any(isinstance(e, ev.Progress) and e.phase == "probe" for e in seen)
    assert not P._MEMORY  # nothing half-computed is kept


def test_cli_json_names_the_suggested_group(tmp_path, capsys):
    from transfer_gui import cli

    data = make_class_folders(tmp_path / "data", per_class=8, size=32)
    code = cli.main(["probe", "--data", str(data), "--model", "resnet18", "--weights", "none", "--image-size", "32",
                     "--batch-size", "4", "--set", "data.val_fraction=0.34", "--tolerance", "5", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["groups"] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert out["suggested_train_from"] in out["groups"][1:] and out["tolerance"] == 0.05
    assert [d["train_from"] for d in out["depths"]] == out["groups"][1:]
    assert all(0.0 <= d["val_accuracy"] <= 1.0 for d in out["depths"])


def test_cli_refuses_bad_arguments_before_loading_torch(tmp_path):
    import subprocess
    import sys

    code = ("import sys\nfrom transfer_gui import cli\n"
            "try:\n    cli.main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print('torch' in sys.modules, e.code)\n")
    for args in (["--data", str(tmp_path / "missing")], ["--data", str(tmp_path), "--tolerance", "-1"]):
        out = subprocess.run([sys.executable, "-c", code, "probe", *args], capture_output=True, text=True, timeout=60)
        assert out.stdout.split() == ["False", "2"], (out.stdout, out.stderr)
        assert out.stderr.startswith("transfer-gui: error:") and len(out.stderr.strip().splitlines()) == 1
