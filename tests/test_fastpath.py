"""The fastest exact runtime for frozen passes (engine/fastpath.py) and its use by the caches."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from transfer_gui.engine import boundary as bmod
from transfer_gui.engine import fastpath
from transfer_gui.engine import features as feat_mod


@pytest.fixture(autouse=True)
def _fresh():
    fastpath.clear()
    yield
    fastpath.clear()


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5)).eval()


def test_chosen_runtime_equals_torch_and_says_its_speed():
    net, x = _net(), torch.randn(8, 3, 24, 24)
    forward, runtime, note = fastpath.fast_forward(net, x)
    assert runtime in (fastpath.ORT, fastpath.OPENVINO, fastpath.CHANNELS_LAST, fastpath.TORCH)
    assert note.startswith(f"{runtime}: ") and "images/s" in note and "plain torch" in note
    other = torch.randn(3, 3, 24, 24)  # another batch size: the export's batch axis is dynamic
    with torch.no_grad():
        assert torch.allclose(forward(other), net(other), atol=1e-4)
        assert torch.allclose(forward(x), net(x), atol=1e-4)


def test_failed_export_falls_back_with_the_reason(monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("Unsupported: aten::made_up_op")

    monkeypatch.setattr(fastpath, "_export_onnx", broken)
    forward, runtime, note = fastpath.fast_forward(_net(), torch.randn(4, 3, 16, 16), runtimes=(fastpath.ORT,))
    assert runtime == fastpath.TORCH
    assert "ONNX Runtime failed (RuntimeError: Unsupported: aten::made_up_op)" in note


def test_a_fast_runtime_with_wrong_outputs_is_never_chosen(monkeypatch):
    def wrong(module, _example, _key=None):
        return lambda x: torch.zeros(len(x), 5)  # instant, and off by the logits

    monkeypatch.setitem(fastpath.BUILDERS, "wrong", wrong)
    net, x = _net(), torch.randn(4, 3, 16, 16)
    forward, runtime, note = fastpath.fast_forward(net, x, runtimes=("wrong",))
    assert runtime == fastpath.TORCH and "wrong differs from torch by" in note
    with torch.no_grad():
        assert torch.equal(forward(x), net(x))


def test_a_runtime_off_by_more_than_the_tolerance_is_left_out(monkeypatch):
    def off(module, _example, _key=None):
        return lambda x: module(x).detach() + 3 * fastpath.TOLERANCE * module(x).detach().abs().max().clamp(min=1)

    monkeypatch.setitem(fastpath.BUILDERS, "off", off)
    _f, runtime, note = fastpath.fast_forward(_net(), torch.randn(4, 3, 16, 16), runtimes=("off",))
    assert runtime == fastpath.TORCH and "off differs" in note


def test_measured_once_per_fingerprint_and_batch_shape(monkeypatch):
    calls = []

    def counting(module, example, key=None):
        calls.append(tuple(example.shape))
        return fastpath._channels_last(module, example)

    monkeypatch.setitem(fastpath.BUILDERS, "counting", counting)
    net = _net()
    for _ in range(3):
        fastpath.fast_forward(net, torch.randn(4, 3, 16, 16), runtimes=("counting",))
    fastpath.fast_forward(net, torch.randn(2, 3, 16, 16), runtimes=("counting",))
    fastpath.fast_forward(_net(seed=1), torch.randn(4, 3, 16, 16), runtimes=("counting",))  # other weights
    assert calls == [(4, 3, 16, 16), (2, 3, 16, 16), (4, 3, 16, 16)]


def test_small_passes_run_in_plain_torch(monkeypatch):
    monkeypatch.setitem(fastpath.BUILDERS, fastpath.ORT, lambda *_: pytest.fail("no export for a small pass"))
    _f, runtime, note = fastpath.fast_forward(_net(), torch.randn(4, 3, 16, 16), images=fastpath.MIN_IMAGES - 1)
    assert runtime == fastpath.TORCH and "plain torch" in note


@pytest.mark.parametrize("name,boundary", [("resnet18", "layer4"), ("resnet18", "layer2.1"),
                                           ("efficientnet_lite0", "blocks.5")])
def test_prefix_module_gives_the_boundary_input(name, boundary):
    from transfer_gui.engine.catalog import build_model

    model = build_model(name, "none", num_classes=3).model.eval()
    x = torch.randn(2, 3, 64, 64)
    prefix = fastpath.prefix_module(model, boundary)
    assert prefix is not None
    with torch.no_grad():
        assert torch.equal(prefix(x), bmod.capture(model, boundary, x))
    assert model(x).shape == (2, 3)  # the model itself is untouched


def test_prefix_module_of_an_untraceable_model_is_none():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1)

        def forward(self, x):
            y = self.a(x)
            return self.b(y) if y.sum() > 0 else self.b(-y)  # data-dependent: fx cannot trace it

    assert fastpath.prefix_module(Branchy(), "b") is None


def _loader(n: int, size: int = 16) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 5,
                                    torch.arange(n)), batch_size=8)


def test_feature_pass_equals_torch_and_names_its_runtime(monkeypatch):
    monkeypatch.setattr(fastpath, "MIN_IMAGES", 0)
    net = _net()
    backbone = net[:-1]
    loader = _loader(20)
    fs = feat_mod.compute(backbone, loader, torch.device("cpu"), torch.bfloat16)  # exact on a CPU: no bf16
    with torch.no_grad():
        ref = torch.cat([backbone(x) for x, _, _ in loader])
    assert fs.features.shape == ref.shape and fs.features.dtype == torch.float32
    assert fastpath.max_difference(fs.features, ref) <= fastpath.TOLERANCE
    assert torch.equal(fs.labels, torch.arange(20) % 5)
    assert fs.note.startswith("via ") and "images/s over 20 images" in fs.note


def test_prefix_pass_equals_capture(monkeypatch):
    from transfer_gui.engine.catalog import build_model

    monkeypatch.setattr(fastpath, "MIN_IMAGES", 0)
    model = build_model("resnet18", "none", num_classes=5).model.eval()
    loader = _loader(10, size=32)
    fs = feat_mod.prefix_activations(model, "layer3", loader, torch.device("cpu"))
    ref = torch.cat([bmod.capture(model, "layer3", x) for x, _, _ in loader])
    assert fs.features.shape == ref.shape
    assert fastpath.max_difference(fs.features, ref) <= fastpath.TOLERANCE
    assert "images/s over 10 images" in fs.note


def test_prefix_is_traced_before_the_first_image_is_read(monkeypatch):
    """torch.fx patches nn.Module.__call__ process-wide while it traces; data.Prefetched's threads
    decode (and run transforms, which are modules) from the first item on, so a trace after that
    dropped images at random. The order is the contract: trace, then read."""
    from torch.utils.data import Dataset

    from transfer_gui.engine.catalog import build_model

    order: list[str] = []
    real = fastpath.prefix_module

    def traced(model, boundary):
        order.append("trace")
        return real(model, boundary)

    class Recorded(Dataset):
        def __init__(self, inner) -> None:
            self.inner = inner

        def __len__(self) -> int:
            return len(self.inner)

        def __getitem__(self, i):
            order.append("read")
            return self.inner[i]

    monkeypatch.setattr(fastpath, "prefix_module", traced)
    model = build_model("resnet18", "none", num_classes=5).model.eval()
    data = _loader(6, size=32).dataset
    fs = feat_mod.prefix_activations(model, "layer3", DataLoader(Recorded(data), batch_size=4), torch.device("cpu"))
    assert fs.features.shape[0] == 6
    assert order[0] == "trace" and order.count("trace") == 1 and order.count("read") == 6


# ----------------------------------------------------------------------------- kept between runs


def _count_exports(monkeypatch) -> list[tuple[int, ...]]:
    shapes = []
    real = fastpath._export_onnx

    def counting(module, example, path):
        shapes.append(tuple(example.shape))
        real(module, example, path)

    monkeypatch.setattr(fastpath, "_export_onnx", counting)
    return shapes


def test_the_export_traces_one_image_and_serves_every_batch_size(monkeypatch):
    shapes = _count_exports(monkeypatch)
    net, x = _net(), torch.randn(8, 3, 24, 24)
    forward, runtime, _note = fastpath.fast_forward(net, x, runtimes=(fastpath.ORT,))
    assert shapes == [(1, 3, 24, 24)]
    other = torch.randn(5, 3, 24, 24)
    with torch.no_grad():
        assert torch.allclose(fastpath.BUILDERS[fastpath.ORT](net, x)(other), net(other), atol=1e-4)


def _priced(fn, seconds: float):
    fn.seconds = seconds  # what the faked clock says a call of ``fn`` takes
    return fn


def _runtimes_faster_than_torch(monkeypatch) -> None:
    """A faked clock on which plain torch takes 1 s a batch and every other runtime 0.1 s: on a
    net this small the real clock may favour either (on a loaded machine torch won, and the
    test meant to follow ONNX Runtime's graph through the cache folder followed none)."""
    real = fastpath.torch_forward
    monkeypatch.setattr(fastpath, "torch_forward", lambda module: _priced(real(module), 1.0))
    monkeypatch.setattr(fastpath, "_timed", lambda fn, x: (fn(x), getattr(fn, "seconds", 0.1)))


def test_a_later_process_reuses_the_export_and_the_choice(monkeypatch):
    _runtimes_faster_than_torch(monkeypatch)
    net, x = _net(), torch.randn(8, 3, 24, 24)
    shapes = _count_exports(monkeypatch)
    _f, first, note = fastpath.fast_forward(net, x, runtimes=(fastpath.ORT,))
    assert first == fastpath.ORT and len(shapes) == 1 and "chosen in an earlier run" not in note
    assert len(list(fastpath.cache_dir().glob("*.onnx"))) == 1
    fastpath.clear()  # what a new process starts with: nothing in memory
    forward, again, note = fastpath.fast_forward(net, x, runtimes=(fastpath.ORT,))
    assert again == fastpath.ORT and len(shapes) == 1  # no second export
    assert "chosen in an earlier run and checked again on 8 images" in note
    with torch.no_grad():
        assert torch.allclose(forward(x), net(x), atol=1e-4)
    fastpath.clear()
    _f, _rt, _note = fastpath.fast_forward(_net(seed=1), x, runtimes=(fastpath.ORT,))  # other weights
    assert len(shapes) == 2


def test_a_kept_choice_that_no_longer_holds_is_measured_again(monkeypatch):
    net, x = _net(), torch.randn(4, 3, 16, 16)
    monkeypatch.setitem(fastpath.BUILDERS, "flaky", fastpath._channels_last)
    _f, runtime, _note = fastpath.fast_forward(net, x, runtimes=("flaky",))
    kept = fastpath._read_choices()
    assert [v["runtime"] for v in kept.values()] == [runtime]
    (key,) = kept
    kept[key]["runtime"] = "flaky"  # as if it had been the faster one on an earlier day
    (fastpath.cache_dir() / "choices.json").write_text(json.dumps(kept))
    fastpath.clear()
    _f, runtime, note = fastpath.fast_forward(net, x, runtimes=("flaky",))
    assert runtime == "flaky" and "chosen in an earlier run" in note
    fastpath.clear()
    monkeypatch.setitem(fastpath.BUILDERS, "flaky", lambda m, e, k=None: (lambda t: torch.zeros(len(t), 5)))
    forward, runtime, note = fastpath.fast_forward(net, x, runtimes=("flaky",))
    assert runtime == fastpath.TORCH and "flaky differs from torch" in note
    with torch.no_grad():
        assert torch.equal(forward(x), net(x))
    assert fastpath._read_choices()[key]["runtime"] == fastpath.TORCH  # what was measured again is kept


def test_a_failed_export_leaves_no_file_and_old_graphs_are_pruned(monkeypatch):
    real_export = fastpath._export_onnx

    def broken(_m, _e, path):
        with open(path, "wb") as fh:
            fh.write(b"half an onnx file")
        raise RuntimeError("killed half way")

    monkeypatch.setattr(fastpath, "_export_onnx", broken)
    with pytest.raises(RuntimeError):
        fastpath.exported_graph(_net(), torch.randn(2, 3, 16, 16))
    assert not list(fastpath.cache_dir().glob("*.onnx"))
    monkeypatch.setattr(fastpath, "_export_onnx", real_export)
    monkeypatch.setattr(fastpath, "DISK_KEEP", 2)
    x = torch.randn(2, 3, 16, 16)
    paths = [fastpath.exported_graph(_net(seed=s), x) for s in range(3)]
    assert [p.exists() for p in paths] == [False, True, True]
    monkeypatch.setattr(fastpath, "DISK_BUDGET", paths[2].stat().st_size + 1)  # room for one graph only
    newest = fastpath.exported_graph(_net(seed=3), x)
    assert [p.exists() for p in (*paths, newest)] == [False, False, False, True]


@pytest.mark.parametrize("fast_s,measured", [(0.1, False), (0.6, True)])
def test_channels_last_is_not_measured_when_a_runtime_is_far_ahead(monkeypatch, fast_s, measured):
    """Plain torch takes 1 s a batch on the faked clock: a runtime at 0.1 s (10x) leaves channels_last
    unmeasured (it is torch's kernels in another layout, never 2x); one at 0.6 s (1.7x) does not."""
    monkeypatch.setattr(fastpath, "_timed", lambda fn, x: (fn(x), getattr(fn, "seconds", 1.0)))
    built = []

    def fast(module, _example, _key=None):
        return _priced(lambda x: module(x).detach(), fast_s)

    def layout(module, example, key=None):
        built.append(True)
        return _priced(fastpath._channels_last(module, example, key), 0.05)

    monkeypatch.setitem(fastpath.BUILDERS, "fast", fast)
    monkeypatch.setitem(fastpath.BUILDERS, fastpath.CHANNELS_LAST, layout)
    net, x = _net(), torch.randn(4, 3, 16, 16)
    choice = fastpath.choose(net, x, ("fast", fastpath.CHANNELS_LAST),
                             reference=_priced(fastpath.torch_forward(net), 1.0))
    assert bool(built) is measured
    if measured:
        assert choice.runtime == fastpath.CHANNELS_LAST and "torch channels_last 80" in choice.note
    else:
        assert choice.runtime == "fast"
        assert "torch channels_last not measured (fast is already 10.0x plain torch)" in choice.note
