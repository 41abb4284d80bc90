"""Heat maps (engine/explain.py): the target layer each architecture family gets, the token-grid
and channels-last reshapes, the way back through the resize and centre crop, the overlay, the
files the command line writes, and the quadrant test: an object pasted into one quadrant of an
empty canvas, and the heat map's peak inside it in at least 80 % of the cases (the offline model
with its ImageNet weights, on real photos)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from transfer_gui.engine import explain as ex
from transfer_gui.engine.preprocess import Preprocessing, eval_transform

HIT_RATE = 0.8


# ----------------------------------------------------------------------------- layouts and layers


@pytest.mark.parametrize("shape,expected", [
    ((1, 512, 7, 7), ("nchw", 0, (7, 7))),
    ((1, 7, 7, 768), ("nhwc", 0, (7, 7))),
    ((1, 197, 768), ("tokens", 1, (14, 14))),  # class token + 14 x 14 patches
    ((1, 198, 768), ("tokens", 2, (14, 14))),  # class and distillation tokens
    ((1, 12, 197, 197), None),  # attention weights: not a grid of this input
    ((1, 1000), None),
    ((1, 512, 1, 1), None),  # after global pooling
    ((64, 16, 32), None),  # Swin's windows: a batch of 64, not one image
])
def test_output_layout_knows_grids_from_other_tensors(shape, expected):
    assert ex.output_layout(shape, 224, width=768 if len(shape) == 3 else None) == expected


def test_token_and_channels_last_grids_become_channel_maps():
    tokens = torch.arange(1 * 5 * 3, dtype=torch.float32).reshape(1, 5, 3)  # 1 prefix + 2 x 2 patches
    maps = ex.to_nchw(tokens, ex.Target("t", "tokens", 1, (2, 2)))
    assert maps.shape == (1, 3, 2, 2)
    assert torch.equal(maps[0, :, 1, 0], tokens[0, 1 + 2])  # patch (row 1, column 0) is token 3
    nhwc = torch.randn(1, 4, 4, 6)
    assert torch.equal(ex.to_nchw(nhwc, ex.Target("s", "nhwc", 0, (4, 4)))[0, :, 2, 3], nhwc[0, 2, 3])


def _with_random_head(model: nn.Module, head: nn.Linear) -> nn.Module:
    nn.init.normal_(head.weight, std=0.1)  # torchvision's ViT starts its head at zero: no gradient at all
    return model.eval()


def _tiny_models() -> dict[str, tuple[nn.Module, int]]:
    import timm
    import torchvision
    from timm.models.convnext import ConvNeXt
    from torchvision.models.swin_transformer import SwinTransformer
    from torchvision.models.vision_transformer import VisionTransformer

    tv_vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32)
    return {
        "resnet18": (torchvision.models.resnet18(num_classes=3), 64),
        "mobilenet_v3_small": (torchvision.models.mobilenet_v3_small(num_classes=3), 64),
        "mobilenetv3_timm": (timm.create_model("mobilenetv3_small_050", num_classes=3).eval(), 64),
        "convnext": (ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), num_classes=3), 64),
        "vit_torchvision": (_with_random_head(tv_vit, tv_vit.heads.head), 32),
        "vit_timm": (timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=16,
                                       num_heads=2, num_classes=3), 32),
        "swin_timm": (timm.create_model("swin_tiny_patch4_window7_224", img_size=32, patch_size=4, window_size=4,
                                        embed_dim=8, depths=(1, 1), num_heads=(1, 2), num_classes=3), 32),
        "swin_torchvision": (SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 2],
                                             window_size=[4, 4], num_classes=3), 32),
    }


EXPECTED_LAYERS = {
    "resnet18": ("layer4", "nchw", 0, (2, 2)),  # the last convolutional stage
    "mobilenet_v3_small": ("features", "nchw", 0, (2, 2)),
    "mobilenetv3_timm": ("blocks", "nchw", 0, (2, 2)),  # before the global pool, not the 1 x 1 conv_head after it
    "convnext": ("norm_pre", "nchw", 0, (2, 2)),  # the stages' output, before the head's pooling
    "vit_torchvision": ("encoder.layers.encoder_layer_1.ln_1", "tokens", 1, (4, 4)),  # the last block's norm
    "vit_timm": ("blocks.1.norm1", "tokens", 1, (4, 4)),
    "swin_timm": ("norm", "nhwc", 0, (4, 4)),  # the final norm, channels last
    "swin_torchvision": ("permute", "nchw", 0, (4, 4)),
}


def test_target_layer_per_family():
    for family, (model, size) in _tiny_models().items():
        t = ex.find_target_layer(model, size)
        assert (t.name, t.layout, t.prefix, t.grid) == EXPECTED_LAYERS[family], family
        assert ex.find_target_layer(model, size) is t  # found once per model and size


def test_offline_model_target_layer_is_its_last_feature_map():
    from transfer_gui.engine.catalog import build_architecture

    model = build_architecture("efficientnet_lite0", num_classes=4).model.eval()
    t = ex.find_target_layer(model, 224)
    assert (t.name, t.layout, t.grid) == ("bn2", "nchw", (7, 7))


def test_gated_nets_get_score_cam_on_the_map_before_their_first_gate():
    import timm
    import torchvision

    gated = {"timm mobilenetv3": (timm.create_model("mobilenetv3_small_050", num_classes=3), ("bn1", (32, 32))),
             "torchvision mobilenet_v3": (torchvision.models.mobilenet_v3_small(num_classes=3),
                                          ("features.0", (32, 32))),
             "timm efficientnet_b0": (timm.create_model("efficientnet_b0", num_classes=3), ("bn1", (32, 32))),
             "timm regnety": (timm.create_model("regnety_002", num_classes=3), ("stem", (32, 32)))}
    for family, (model, (layer, grid)) in gated.items():
        assert ex.choose_method(model) == "scorecam", family
        t = ex.find_ungated_layer(model.eval(), 64)
        assert (t.name, t.layout, t.grid) == (layer, "nchw", grid), family
        assert ex.choose_method(model, "gradcam") == "gradcam"  # a caller may force either
    plain = timm.create_model("tf_efficientnet_lite0", num_classes=3).eval()
    assert ex.choose_method(plain) == "gradcam" and ex.find_ungated_layer(plain, 64) is None
    with pytest.raises(ex.ExplainError, match="'occlusion' is not one of gradcam, scorecam"):
        ex.choose_method(plain, "occlusion")


class _ColourMeans(nn.Module):
    """Class k is the mean of colour channel k over 4 x 4 cells: the map of class k is where
    colour k is."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.AvgPool2d(4), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return 40 * self.pool(self.features(x)).flatten(1)


def test_score_cam_finds_each_class_where_its_colour_is():
    model = _ColourMeans().eval()
    x = torch.zeros(1, 3, 32, 32)
    x[0, 0, 2:12, 3:13] = 1.0  # red, top left
    x[0, 2, 20:30, 18:28] = 1.0  # blue, bottom right
    target = ex.find_target_layer(model, 32)
    assert target.grid == (8, 8)
    for k, (rows, cols) in ((0, (slice(0, 3), slice(0, 4))), (2, (slice(5, 8), slice(4, 7)))):
        cam, logits, got = ex.score_cam(model, target, x, k)
        assert got == k and cam.shape == (8, 8) and cam.max() == pytest.approx(1.0)
        assert np.unravel_index(np.argmax(cam), cam.shape) in {(r, c) for r in range(8)[rows] for c in range(8)[cols]}
        other = cam.copy()
        other[rows, cols] = 0
        assert other.max() < 0.5  # the other colour's square is cooler
    src = ex.Explainable(model, ["r", "g", "b"], Preprocessing(input_size=32, resize_size=32))
    image = Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    result = ex.explain(src, image, class_index=2, method="scorecam")
    assert result.method == "scorecam" and result.target_layer == target.name
    assert result.heatmap[25, 23] == result.heatmap.max() > result.heatmap[7, 8]  # on blue, not on red
    blank = ex.explain(src, Image.new("RGB", (32, 32)), method="scorecam")  # every channel flat
    assert blank.heatmap.shape == (32, 32) and not blank.heatmap.any()


# ----------------------------------------------------------------------------- back to the image


def test_heat_map_goes_back_through_resize_and_centre_crop():
    """A pattern drawn on the original image, taken through the eval transform's own resize and
    crop and mapped back, lands where it was; what the crop cut is 0."""
    from torchvision.transforms import v2

    pre = Preprocessing(input_size=56, resize_size=64)
    w, h = 120, 80  # resized to 96 x 64, then cropped to x 20..76 and y 4..60 of that
    yy, xx = np.mgrid[0:h, 0:w]
    pattern = np.exp(-((xx - 70) ** 2 + (yy - 30) ** 2) / (2 * 8.0 ** 2)).astype(np.float32)
    geometry = v2.Compose([v2.Resize(pre.resize_size, antialias=True), v2.CenterCrop(pre.input_size)])
    on_input = geometry(torch.from_numpy(pattern)[None])[0].numpy()
    assert on_input.shape == (56, 56)
    back = ex.to_image_pixels(on_input / on_input.max(), w, h, pre)
    assert back.shape == (h, w) and back.dtype == np.float32
    inside_x = slice(25, 95)  # pixel centres whose resized position falls in the crop
    inside_y = slice(5, 75)
    assert np.all(back[:, :25] == 0) and np.all(back[:, 95:] == 0)
    assert np.all(back[:5] == 0) and np.all(back[75:] == 0)
    assert np.unravel_index(np.argmax(back), back.shape) == pytest.approx((30, 70), abs=1)
    assert np.abs(back[inside_y, inside_x] - pattern[inside_y, inside_x]).mean() < 0.02


def test_resized_size_matches_torchvision():
    from torchvision.transforms import v2

    for w, h in ((120, 80), (80, 120), (333, 100), (64, 64), (101, 257)):
        out = v2.Resize(72, antialias=True)(torch.zeros(1, h, w))
        assert ex.resized_size(w, h, 72) == (out.shape[2], out.shape[1])


# ----------------------------------------------------------------------------- explain, overlay, files


class _Blobs(nn.Module):
    """A model whose class k fires on channel k of a tiny conv net: enough to explain."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def _image(w=70, h=50, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_explain_gives_a_map_of_the_image_size_for_any_class():
    torch.manual_seed(0)
    model = _Blobs().eval()
    pre = Preprocessing(input_size=32, resize_size=36)
    src = ex.Explainable(model, ["a", "b", "c"], pre, temperature=2.0)
    image = _image()
    result = ex.explain(src, image)
    with torch.no_grad():
        logits = model(eval_transform(pre)(image)[None])[0].numpy()
    assert result.class_index == result.predicted_index == int(np.argmax(logits))
    z = logits / 2.0
    assert result.probability == pytest.approx(float(np.exp(z - z.max())[result.class_index] / np.exp(z - z.max()).sum()),
                                               rel=1e-5)
    assert result.heatmap.shape == (50, 70) and result.heatmap.dtype == np.float32
    assert result.heatmap.min() >= 0 and result.heatmap.max() <= 1
    other = ex.explain(src, image, class_index=(result.class_index + 1) % 3)
    assert other.class_index == (result.class_index + 1) % 3 and other.class_name == "abc"[other.class_index]
    assert not np.allclose(other.heatmap, result.heatmap)
    with pytest.raises(ex.ExplainError, match="out of range"):
        ex.explain(src, image, class_index=3)


def test_overlay_colours_hot_parts_and_keeps_cold_ones():
    image = Image.new("RGB", (40, 30), (128, 128, 128))
    heat = np.zeros((30, 40), dtype=np.float32)
    heat[:, 20:] = 1.0
    out = np.asarray(ex.overlay(image, heat)).astype(int)
    assert out.shape == (30, 40, 3)
    cold, hot = out[15, 5], out[15, 35]
    assert np.abs(cold - 128).max() < 0.25 * 128  # mostly the image
    assert hot[0] > hot[2] + 60  # red where the map is 1
    with pytest.raises(ValueError, match="heat map is"):
        ex.overlay(image, heat[:, :10])


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory):
    from transfer_gui.engine.catalog import build_model
    from transfer_gui.engine.checkpoint import save_checkpoint

    torch.manual_seed(0)
    built = build_model("resnet18", "none", num_classes=3)
    path = tmp_path_factory.mktemp("explain") / "run" / "checkpoints" / "best.pt"
    save_checkpoint(path, model=built.model, arch="resnet18", classes=["cat", "dog", "fox"],
                    preprocessing=built.preprocessing.at_size(64), head_path=built.head_path, metrics={},
                    config_text="", calibration={"temperature": 1.5, "threshold": 0.0})
    return path


def test_explain_file_writes_overlay_and_heat_map(checkpoint_file, tmp_path):
    src = tmp_path / "photo.png"
    _image(90, 60).save(src)
    info = ex.explain_file(checkpoint_file.parent.parent, src, tmp_path / "out" / "overlay.png",
                           npy=tmp_path / "heat.npy", class_name="dog")
    assert info["class"] == "dog" and info["class_index"] == 1 and info["target_layer"] == "layer4"
    assert info["method"] == "gradcam"  # a ResNet: no squeeze-excite gates
    with Image.open(tmp_path / "out" / "overlay.png") as im:
        assert im.size == (90, 60) and im.mode == "RGB"
    heat = np.load(tmp_path / "heat.npy")
    assert heat.shape == (60, 90) and heat.dtype == np.float32 and 0 <= heat.min() and heat.max() <= 1
    json.dumps(info)  # what the command line prints with --json
    with pytest.raises(ex.ExplainError, match="not one of the model's classes: cat, dog, fox"):
        ex.explain_file(checkpoint_file, src, tmp_path / "x.png", class_name="cow")
    assert not (tmp_path / "x.png").exists()


def test_safetensors_export_gives_the_checkpoints_heat_map(checkpoint_file, tmp_path):
    from safetensors.torch import save_file

    from transfer_gui.engine.checkpoint import export_metadata, flat_metadata, load_checkpoint

    ck = load_checkpoint(checkpoint_file)
    st = tmp_path / "model.safetensors"
    save_file(dict(ck["state_dict"]), str(st), metadata=flat_metadata(export_metadata(ck)))
    image = _image(64, 64, seed=2)
    a, b = ex.explain(ex.load_explainable(checkpoint_file), image), ex.explain(ex.load_explainable(st), image)
    assert ex.load_explainable(st).temperature == 1.5
    assert a.class_index == b.class_index and a.probability == pytest.approx(b.probability, rel=1e-5)
    assert np.allclose(a.heatmap, b.heatmap, atol=1e-5)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated; such files still exist
def test_torchscript_and_onnx_files_are_refused_with_what_to_use(tmp_path):
    scripted = torch.jit.trace(_Blobs().eval(), torch.zeros(1, 3, 32, 32))
    ts = tmp_path / "model.torchscript.pt"
    scripted.save(str(ts))
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    for path, kind in ((ts, "TorchScript"), (onnx, "ONNX")):
        with pytest.raises(ex.ExplainError, match=f"is a {kind} export: heat maps need the run folder, "
                                                  r"\.pt or \.safetensors file"):
            ex.load_explainable(path)


def test_unreadable_image_is_a_user_error(checkpoint_file, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a picture")
    with pytest.raises(ex.ExplainError, match="broken.jpg"):
        ex.explain_file(checkpoint_file, bad, tmp_path / "o.png")


# ----------------------------------------------------------------------------- the command line


def test_cli_explain_writes_the_overlay_and_the_map(checkpoint_file, tmp_path, capsys):
    from transfer_gui import cli

    src = tmp_path / "photo.png"
    _image(50, 40, seed=3).save(src)
    code = cli.main(["explain", str(checkpoint_file.parent.parent), str(src), "--out", str(tmp_path / "o.png"),
                     "--npy", str(tmp_path / "h.npy"), "--class", "fox", "--json"])
    assert code == 0
    info = json.loads(capsys.readouterr().out)
    assert info["class"] == "fox" and info["overlay"] == str(tmp_path / "o.png")
    assert np.load(tmp_path / "h.npy").shape == (40, 50)
    with Image.open(tmp_path / "o.png") as im:
        assert im.size == (50, 40)
    assert cli.main(["explain", str(checkpoint_file.parent.parent), str(src), "--out", str(tmp_path / "p.png")]) == 0
    said = capsys.readouterr().out
    assert "heat map for" in said and f"Grad-CAM on {info['target_layer']}" in said  # the text output names the method


REFUSE = """
import json, sys
from transfer_gui import cli
try:
    code = cli.main(json.loads(sys.argv[1]))
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "torch": "torch" in sys.modules}))
"""


@pytest.mark.parametrize("args, message", [
    (["{tmp}/none", "{img}", "--out", "{tmp}/o.png"], "model file not found: {tmp}/none"),
    (["{tmp}/m.onnx", "{img}", "--out", "{tmp}/o.png"], "heat maps need the run folder, .pt or .safetensors file"),
    (["{tmp}/m.pt", "{tmp}/no.png", "--out", "{tmp}/o.png"], "image file not found: {tmp}/no.png"),
    (["{tmp}/m.pt", "{img}", "--out", "{tmp}"], "--out: {tmp} is a folder"),
    (["{tmp}/m.pt", "{img}", "--out", "{tmp}/o.png", "--npy", "{tmp}"], "--npy: {tmp} is a folder"),
])
def test_cli_explain_refuses_before_torch_loads(tmp_path, args, message):
    import subprocess
    import sys

    (tmp_path / "m.onnx").write_bytes(b"x")
    (tmp_path / "m.pt").write_bytes(b"x")
    (tmp_path / "img.png").write_bytes(b"x")
    fill = {"tmp": str(tmp_path), "img": str(tmp_path / "img.png")}
    argv = ["explain", *(a.format(**fill) for a in args)]
    proc = subprocess.run([sys.executable, "-c", REFUSE, json.dumps(argv)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"code": 2, "torch": False}, proc.stderr
    assert message.format(**fill) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- the quadrant test


def _peak(heat: np.ndarray) -> tuple[float, float]:
    """Where the heat map peaks: the centre of the pixels within 2 % of its maximum (a map
    upsampled from a coarse grid is flat at its top; its first pixel would be an edge)."""
    ys, xs = np.nonzero(heat >= 0.98 * heat.max())
    return float(ys.mean()), float(xs.mean())


def _hit_rate(explainable, scenes) -> float:
    hits = 0
    for image, (y0, x0, h, w) in scenes:
        py, px = _peak(ex.explain(explainable, image).heatmap)
        hits += y0 <= py < y0 + h and x0 <= px < x0 + w
    return hits / len(scenes)


PHOTOS = {  # objects in scikit-image's bundled photos: (rows, columns) of the crop
    "cat": ("chelsea", slice(20, 280), slice(100, 380)),
    "cup": ("coffee", slice(20, 380), slice(60, 460)),
    "astronaut": ("astronaut", slice(0, 260), slice(140, 360)),
    "rocket": ("rocket", slice(40, 420), slice(200, 440)),
}


@pytest.mark.slow
def test_quadrant_offline_model_on_photos(one_torch_thread):
    """EfficientNet-Lite0 with its ImageNet weights: a photo's object pasted into each quadrant
    of a blank 448-pixel canvas (inside the centre crop); the peak is on it. No training, so only
    rounding differs between machines; on one thread not even that."""
    skdata = pytest.importorskip("skimage.data")
    from transfer_gui.engine.catalog import build_model

    built = build_model("efficientnet_lite0", "pretrained")
    model = ex.Explainable(built.model.eval(), [str(i) for i in range(1000)], built.preprocessing)
    scenes = []
    for name, (photo, rows, cols) in PHOTOS.items():
        obj = Image.fromarray(getattr(skdata, photo)()[rows, cols])
        obj.thumbnail((170, 170))
        for q in range(4):
            canvas = Image.new("RGB", (448, 448), (235, 235, 235))
            y0 = 30 + (q // 2) * 224 + (170 - obj.height) // 2
            x0 = 30 + (q % 2) * 224 + (170 - obj.width) // 2
            canvas.paste(obj, (x0, y0))
            scenes.append((canvas, (y0, x0, obj.height, obj.width)))
    rate = _hit_rate(model, scenes)
    print(f"efficientnet_lite0 (pretrained): peak inside the object in {rate:.0%} of {len(scenes)}")
    assert rate >= HIT_RATE

