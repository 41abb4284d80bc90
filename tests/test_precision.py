"""Mixed precision and memory format on CPUs (engine/prepare.py): bf16 autocast only where the
CPU has bf16 in hardware; weights, optimizer state and checkpoints stay fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_config
from transfer_gui.engine import fastpath
from transfer_gui.engine import prepare as prep

CPU = torch.device("cpu")


def _fake_cpu(monkeypatch, capability: str, flags: set[str]) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(prep, "cpu_flags", lambda: set(flags))


def test_bf16_check_needs_the_instructions_and_avx512_kernels():
    assert prep.cpu_has_bf16("AVX512", {"avx512f", "avx512_bf16"})
    assert prep.cpu_has_bf16("AVX512", {"amx_bf16", "amx_tile"})
    assert not prep.cpu_has_bf16("AVX512", {"avx512f", "avx512bw"})  # AVX-512 without BF16: emulated
    assert not prep.cpu_has_bf16("AVX2", {"avx2", "fma"})
    assert not prep.cpu_has_bf16("AVX2", {"avx2", "avx512_bf16"})  # torch built without AVX-512 kernels
    assert not prep.cpu_has_bf16("DEFAULT", set())


def test_auto_is_bf16_on_a_bf16_cpu(monkeypatch):
    _fake_cpu(monkeypatch, "AVX512", {"avx512f", "avx512_bf16"})
    assert prep.resolve_precision("auto", CPU) == (torch.bfloat16, "bf16")
    assert prep.resolve_precision("bf16", CPU) == (torch.bfloat16, "bf16")
    assert prep.resolve_precision("fp32", CPU) == (None, "fp32")
    assert prep.resolve_precision("fp16", CPU) == (None, "fp32")
    assert prep.frozen_pass_autocast(CPU, torch.bfloat16) is None  # the frozen pass stays exact


def test_avx2_only_cpu_never_gets_bf16(monkeypatch):
    _fake_cpu(monkeypatch, "AVX2", {"avx2", "fma", "f16c"})
    for asked in ("auto", "bf16", "fp16", "fp32"):
        assert prep.resolve_precision(asked, CPU) == (None, "fp32"), asked


def test_channels_last_for_conv_nets_on_avx512(monkeypatch, tmp_path):
    cfg = tiny_config(tmp_path, tmp_path)
    conv, mlp = nn.Sequential(nn.Conv2d(3, 4, 3)), nn.Sequential(nn.Linear(3, 4))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert prep.use_channels_last(cfg, CPU, conv) and not prep.use_channels_last(cfg, CPU, mlp)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not prep.use_channels_last(cfg, CPU, conv)
    assert prep.use_channels_last(cfg.replace(**{"train.channels_last": True}), CPU, conv)


@pytest.mark.slow
def test_bf16_run_keeps_fp32_weights(monkeypatch, image_folders, tmp_path):
    import math

    from transfer_gui.engine.checkpoint import load_checkpoint
    from transfer_gui.engine.loop import Trainer

    _fake_cpu(monkeypatch, "AVX512", {"avx512_bf16"})
    events = []
    cfg = tiny_config(image_folders, tmp_path / "runs", **{"layers.train_from": "layer4", "train.epochs": 1})
    result = Trainer().fit(cfg, on_event=events.append)
    assert result.status == "completed"
    started = next(e for e in events if type(e).__name__ == "RunStarted")
    assert started.precision == "bf16"
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    ck = load_checkpoint(next((tmp_path / "runs").rglob("last.pt")))
    assert {t.dtype for t in ck["state_dict"].values() if t.is_floating_point()} == {torch.float32}


def test_predictor_switches_to_the_fast_path_after_enough_images(monkeypatch):
    from transfer_gui.engine.predict import _torch_forward

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    chosen = []

    def fake_fast_forward(module, x, **_):
        chosen.append(len(x))
        return fastpath._channels_last(module, x), fastpath.CHANNELS_LAST, ""

    monkeypatch.setattr(fastpath, "fast_forward", fake_fast_forward)
    run = _torch_forward(net)
    batches = [torch.randn(16, 3, 12, 12) for _ in range(fastpath.MIN_IMAGES // 32 + 2)] + [torch.randn(3, 3, 12, 12)]
    for i, x in enumerate(batches):
        out = run(x)
        with torch.no_grad():
            np.testing.assert_allclose(out, net(x).numpy(), atol=1e-5)
        if i < fastpath.MIN_IMAGES // 32:
            assert chosen == [], "small jobs run in torch"
    assert chosen == [16]  # chosen once, then used for every batch size
