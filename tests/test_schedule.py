import math

import pytest

from transfer_gui.engine.schedule import Schedule, curve, lr_factor


def test_warmup_starts_at_zero_and_rises_linearly():
    s = Schedule("constant", total_steps=100, warmup_steps=10)
    assert lr_factor(0, s) == 0.0
    assert lr_factor(5, s) == pytest.approx(0.5)
    assert lr_factor(9, s) == pytest.approx(0.9)
    assert lr_factor(10, s) == 1.0
    assert lr_factor(99, s) == 1.0


def test_cosine_after_warmup_reaches_floor():
    s = Schedule("cosine", total_steps=110, warmup_steps=10, min_factor=0.1)
    assert lr_factor(10, s) == pytest.approx(1.0)
    assert lr_factor(60, s) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(110, s) == pytest.approx(0.1)


def test_step_schedule_multiplies_by_gamma():
    s = Schedule("step", total_steps=100, warmup_steps=0, step_size=30, gamma=0.5)
    assert [lr_factor(k, s) for k in (0, 29, 30, 59, 60, 90)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]


def test_onecycle_warms_up_over_30_percent_by_default():
    s = Schedule("onecycle", total_steps=100)
    assert lr_factor(0, s) == 0.0
    assert lr_factor(15, s) == pytest.approx(0.5)
    assert lr_factor(30, s) == pytest.approx(1.0)
    assert lr_factor(100, s) == pytest.approx(0.0, abs=1e-12)


def test_curve_samples_whole_run():
    s = Schedule("cosine", total_steps=1000, warmup_steps=100)
    steps, lrs = curve(s, 1e-3, points=50)
    assert steps[0] == 0 and steps[-1] == 999
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(1e-3, rel=1e-2)
    assert all(math.isfinite(v) for v in lrs)


def test_step_decays_count_from_the_start_not_after_warmup():
    s = Schedule("step", total_steps=90, warmup_steps=10, step_size=30, gamma=0.1)
    assert lr_factor(29, s) == 1.0
    assert lr_factor(30, s) == pytest.approx(0.1)
    assert lr_factor(60, s) == pytest.approx(0.01)
