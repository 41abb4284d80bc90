"""On a CUDA GPU: device choice, mixed precision, recovery from a real out-of-memory error and
export parity. Skipped where there is no CUDA device (the development machines have none)."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_auto_device_and_precision_on_cuda():
    from transfer_gui.engine import prepare as prep

    device = prep.resolve_device("auto")
    assert device.type == "cuda"
    dtype, label = prep.resolve_precision("auto", device)
    assert (dtype, label) == ((torch.bfloat16, "bf16") if torch.cuda.is_bf16_supported() else (torch.float16, "fp16"))
    assert prep.frozen_pass_autocast(device, dtype) == dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mixed_precision_step_keeps_fp32_weights(dtype):
    from transfer_gui.engine.step import TrainStep

    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 3)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = TrainStep(opt, device, dtype, channels_last=True)
    step.clip(model)
    before = [q.detach().clone() for q in model.parameters()]
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 3, (8,))
    out = step(model, step.batch(x, y))
    assert out.logits.dtype == dtype and math.isfinite(float(out.loss))
    assert all(q.dtype == torch.float32 for q in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert step.scaler.is_enabled() == (dtype == torch.float16)


@pytest.mark.slow
def test_out_of_memory_is_reported_and_the_device_recovers(image_folders, tmp_path):
    from transfer_gui.engine.loop import Trainer

    free, _total = torch.cuda.mem_get_info()
    # a batch whose activations cannot fit: ResNet-18 at 1024 px needs ~0.6 GB per image in training
    batch = int(free / 0.3e9) + 8
    cfg = tiny_config(image_folders, tmp_path / "big", **{"train.device": "cuda", "data.image_size": 1024,
                                                          "train.batch_size": batch, "layers.train_from": "",
                                                          "layers.frozen": [], "train.epochs": 1,
                                                          "data.decode_cache_mb": 0})
    result = Trainer().fit(cfg)
    assert result.status == "failed" and "Out of memory" in result.message
    assert f"Try a batch size of {batch // 2}" in result.message
    torch.cuda.empty_cache()
    ok = Trainer().fit(tiny_config(image_folders, tmp_path / "small", **{"train.device": "cuda"}))
    assert ok.status == "completed"


def test_export_parity_on_cuda(image_folders, tmp_path):
    from transfer_gui.engine.export import export_model
    from transfer_gui.engine.loop import Trainer
    from transfer_gui.engine.predict import Predictor

    result = Trainer().fit(tiny_config(image_folders, tmp_path / "runs", **{"train.device": "cuda",
                                                                           "train.epochs": 1}))
    assert result.status == "completed"
    paths = sorted(p for p in image_folders.rglob("*.png"))[:6]
    ref = Predictor.load(result.run_dir).logits(paths)
    for fmt in ("onnx", "torchscript"):
        report = export_model(result.run_dir, fmt, tmp_path / f"model.{fmt}")
        assert report.parity_max_abs_diff is not None and report.parity_max_abs_diff <= 1e-3
        got = Predictor.load(report.path).logits(paths)
        assert got.shape == ref.shape
        assert abs(got - ref).max() <= 1e-3 * max(1.0, abs(ref).max()), fmt
