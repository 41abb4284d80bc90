"""The training step chosen by measuring it (engine/stepchoice.py): the fastest candidate that
trains correctly, remembered per machine and model, checked again, skipped for short runs."""

from __future__ import annotations

import torch
from torch import nn

from tests.conftest import tiny_config
from transfer_gui.engine import stepchoice as sc

CPU = torch.device("cpu")
FOUR = sc.candidates(CPU, cpu_bf16=True)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 3))


def _batch(n: int = 4, size: int = 16):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 3, (n,), generator=g)


def _fake_rates(monkeypatch, table: dict[str, float], calls: list | None = None):
    def rate(self, cand, steps, warmup):
        if calls is not None:
            calls.append((cand.label, steps))
        return table[cand.label]

    monkeypatch.setattr(sc._Bench, "rate", rate)


def test_candidates_per_device():
    assert [c.label for c in sc.candidates(CPU, cpu_bf16=False)] == ["fp32", "fp32 channels_last"]
    assert [c.label for c in FOUR] == ["fp32", "fp32 channels_last", "bf16", "bf16 channels_last"]
    cuda = [c.label for c in sc.candidates(torch.device("cuda"), False, cuda_bf16=True)]
    assert {"bf16", "fp16 channels_last"} <= set(cuda)
    assert sc.candidates(torch.device("mps"), True) == []


def test_the_fastest_correct_candidate_is_kept(monkeypatch):
    _fake_rates(monkeypatch, {"fp32": 10.0, "fp32 channels_last": 30.0, "bf16": 20.0, "bf16 channels_last": 25.0})
    x, y = _batch()
    choice = sc.choose(_net(), FOUR, x, y, remember=False)
    assert choice.candidate.label == "fp32 channels_last"
    assert choice.rates == {"fp32": 10.0, "fp32 channels_last": 30.0, "bf16": 20.0, "bf16 channels_last": 25.0}
    assert "fp32 channels_last, measured" in choice.note()


def test_a_candidate_whose_gradient_differs_is_left_out_however_fast(monkeypatch):
    _fake_rates(monkeypatch, {"fp32": 10.0, "fp32 channels_last": 12.0, "bf16": 50.0, "bf16 channels_last": 60.0})
    monkeypatch.setitem(sc.GRAD_COSINE_MIN, "bf16", 1.5)  # no gradient can reach it
    x, y = _batch()
    choice = sc.choose(_net(), FOUR, x, y, remember=False)
    assert choice.candidate.label == "fp32 channels_last"
    assert set(choice.rejected) == {"bf16", "bf16 channels_last"}
    assert "bf16 left out: gradient's cosine" in choice.note()


class _InfUnderAutocast(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3 * 16 * 16, 3)

    def forward(self, x):
        out = self.lin(x.flatten(1))
        return out * float("inf") if torch.is_autocast_enabled("cpu") else out


def test_a_candidate_with_a_non_finite_loss_is_left_out():
    x, y = _batch()
    choice = sc.choose(_InfUnderAutocast(), FOUR, x, y, remember=False)
    assert choice.candidate.precision == "fp32"
    assert "non-finite loss" in choice.rejected["bf16"] and "non-finite loss" in choice.rejected["bf16 channels_last"]


def test_measuring_leaves_the_model_as_it_was():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = _batch()
    choice = sc.choose(net, FOUR, x, y, remember=False)  # real steps, no fakes
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net[0].weight.is_contiguous()
    assert set(choice.rates) | set(choice.rejected) == {c.label for c in FOUR}
    assert all(r > 0 for r in choice.rates.values())
    assert choice.candidate.label in choice.rates


def test_a_remembered_choice_is_checked_and_kept_while_it_holds(monkeypatch):
    calls = []
    table = {"fp32": 10.0, "fp32 channels_last": 12.0, "bf16": 40.0, "bf16 channels_last": 30.0}
    _fake_rates(monkeypatch, table, calls)
    x, y = _batch()
    first = sc.choose(_net(), FOUR, x, y)
    assert first.candidate.label == "bf16" and not first.recalled
    calls.clear()
    for label in table:  # the machine is three times busier: every step slows alike
        table[label] /= 3
    again = sc.choose(_net(), FOUR, x, y)
    assert again.recalled and again.candidate.label == "bf16"
    assert calls == [("bf16", sc.RECHECK_STEPS), ("fp32", sc.RECHECK_STEPS)]  # a cheap check, nothing else
    assert "chosen in an earlier run" in again.note()


def test_a_remembered_choice_that_no_longer_holds_is_measured_again(monkeypatch):
    table = {"fp32": 10.0, "fp32 channels_last": 12.0, "bf16": 40.0, "bf16 channels_last": 30.0}
    _fake_rates(monkeypatch, table)
    x, y = _batch()
    sc.choose(_net(), FOUR, x, y)
    table["bf16"] = 40.0 * sc.RECHECK_FLOOR * 0.5  # bf16 lost its lead over fp32 (another machine, a new torch)
    again = sc.choose(_net(), FOUR, x, y)
    assert not again.recalled and again.candidate.label == "bf16 channels_last"


def test_stopping_the_run_stops_the_measuring():
    import pytest

    asked = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 3  # stop partway through

    x, y = _batch()
    with pytest.raises(sc.StepChoiceCancelled):
        sc.choose(_net(), FOUR, x, y, remember=False, cancel=cancel)
    assert len(asked) == 4
    assert not sc.cache_path().exists()


def test_the_key_follows_what_trains_and_the_input():
    net = _net()
    k = sc.choice_key(net, CPU, 4, 16)
    assert sc.choice_key(net, CPU, 8, 16) != k and sc.choice_key(net, CPU, 4, 32) != k
    net[0].weight.requires_grad_(False)
    frozen_key = sc.choice_key(net, CPU, 4, 16)
    assert frozen_key != k
    with torch.no_grad():
        net[5].weight.add_(1.0)  # the values do not matter, only the architecture
    assert sc.choice_key(net, CPU, 4, 16) == frozen_key


def test_short_runs_are_not_measured():
    cost = 4 * (sc.ROUNDS * (sc.MEASURE_STEPS + sc.WARMUP_STEPS) + 1)
    assert not sc.worth_measuring(sc.EARN_FACTOR * cost - 1, 4)
    assert sc.worth_measuring(sc.EARN_FACTOR * cost, 4)
    assert not sc.worth_measuring(10_000, 1)  # nothing to choose between


def test_a_run_measures_its_step_and_says_so(monkeypatch, image_folders, tmp_path):
    from transfer_gui.engine.control import RunControl
    from transfer_gui.engine.prepare import prepare

    monkeypatch.setattr(sc, "EARN_FACTOR", 0)  # a tiny run measures as a long one would
    cfg = tiny_config(image_folders, tmp_path / "run", **{"layers.train_from": "stem", "train.feature_cache": "off"})
    events = []
    p = prepare(cfg, events.append, RunControl())
    line = next(n for n in p.notes if n.startswith("training step:"))
    assert "measured" in line and "images/s" in line
    assert p.precision in ("fp32", "bf16")
    label = p.precision + (" channels_last" if p.channels_last else "")
    assert line.startswith(f"training step: {label},")
    assert any(getattr(e, "message", "").startswith("Measuring the training step") for e in events)
    assert sc.cache_path().is_file()


def test_explicit_settings_and_short_runs_keep_the_flag_rule(monkeypatch, image_folders, tmp_path):
    from transfer_gui.engine.control import RunControl
    from transfer_gui.engine.prepare import prepare

    monkeypatch.setattr(sc, "choose", lambda *a, **k: (_ for _ in ()).throw(AssertionError("measured")))
    full = {"layers.train_from": "stem", "train.feature_cache": "off"}
    p = prepare(tiny_config(image_folders, tmp_path / "a", **full), lambda e: None, RunControl())
    assert any("not measured (a run of" in n for n in p.notes)
    monkeypatch.setattr(sc, "EARN_FACTOR", 0)
    p = prepare(tiny_config(image_folders, tmp_path / "b", **full, **{"train.precision": "fp32"}), lambda e: None,
                RunControl())
    assert p.precision == "fp32" and not any(n.startswith("training step:") for n in p.notes)
    p = prepare(tiny_config(image_folders, tmp_path / "c"), lambda e: None, RunControl())  # head only: features
    assert not any(n.startswith("training step:") for n in p.notes)


def test_the_flag_rules_step_is_kept_unless_another_is_clearly_faster(monkeypatch):
    rates = {"fp32": 10.0, "fp32 channels_last": 11.0, "bf16": 12.0, "bf16 channels_last": 11.5}
    assert sc.pick(rates, "bf16 channels_last") == "bf16 channels_last"  # 12 is within the margin of 11.5
    assert sc.pick(rates, "fp32") == "bf16"  # 12 > 1.1 x 10
    assert sc.pick(rates, None) == "bf16"
    assert sc.pick({"fp32": 10.0}, "bf16") == "fp32"  # the preferred one was left out
    _fake_rates(monkeypatch, rates)
    x, y = _batch()
    choice = sc.choose(_net(), FOUR, x, y, remember=False, prefer=sc.Candidate("bf16", True))
    assert choice.candidate.label == "bf16 channels_last"


def test_a_steps_rate_is_its_fastest_step(monkeypatch):
    ticks = iter([0.0, 1.0, 1.0, 3.0, 3.0, 3.5, 3.5, 5.5])  # warmup 1 s, then steps of 2, 0.5 and 2 s
    bench = sc._Bench(_net(), *_batch(n=4), clock=lambda: next(ticks))
    assert bench.rate(sc.Candidate("fp32", False), steps=3, warmup=1) == 4 / 0.5


def test_dropout_does_not_make_a_correct_step_look_wrong():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Dropout(0.5), nn.Linear(16, 3))
    x, y = _batch(n=8)
    choice = sc.choose(net, FOUR, x, y, remember=False)
    assert "fp32 channels_last" not in choice.rejected, choice.rejected  # other masks would turn it away


def test_the_cache_table_keeps_the_newest_entries_and_survives_a_bad_file(tmp_path):
    from transfer_gui.atomic import read_json_table, remember_in_json_table

    path = tmp_path / "choices.json"
    path.write_text("not json")
    assert read_json_table(path) == {}
    for i in range(5):
        remember_in_json_table(path, f"k{i}", i, keep=3)
    remember_in_json_table(path, "k2", 22, keep=3)  # set again: now the newest
    assert list(read_json_table(path).items()) == [("k3", 3), ("k4", 4), ("k2", 22)]
