"""`transfer-gui models --groups MODEL`: the layer-group names a config and the options take,
read from the model itself (they were found only in an error message)."""

from __future__ import annotations

import json
import subprocess
import sys

import torchvision

from transfer_gui.engine.surgery import split_groups


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "transfer_gui", *args], capture_output=True, text=True, timeout=300)


def test_groups_are_the_engines_names_in_order_with_their_sizes():
    out = _cli("models", "--groups", "resnet18", "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    model = torchvision.models.resnet18()
    expected = split_groups(model, "fc")
    assert [g["name"] for g in listed] == [g.name for g in expected]
    assert [g["params"] for g in listed[:-1]] == [g.num_params for g in expected[:-1]]  # the head depends on the classes
    text = _cli("models", "--groups", "resnet18")
    assert text.returncode == 0
    lines = text.stdout.splitlines()[1:]
    assert [ln.split()[0] for ln in lines] == [g.name for g in expected]
    assert "8,393,728 params" in text.stdout  # layer4 of ResNet-18


def test_an_unknown_model_is_refused_with_a_suggestion():
    out = _cli("models", "--groups", "resnet5O")
    assert out.returncode == 2
    assert "resnet50" in out.stderr and out.stdout == ""
