import hashlib
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from transfer_gui.engine import catalog
from transfer_gui.engine.catalog import DownloadCancelled, ModelError, build_model, download, list_models
from transfer_gui.engine.preprocess import eval_transform


def _top1(built, image) -> int:
    model = built.model.eval()
    x = eval_transform(built.preprocessing)(Image.fromarray(image)).unsqueeze(0)
    with torch.no_grad():
        return int(model(x).argmax(1))


def test_offline_model_really_has_imagenet_weights():
    skimage_data = pytest.importorskip("skimage.data")
    built = build_model("efficientnet_lite0", "pretrained")
    assert 281 <= _top1(built, skimage_data.chelsea()) <= 285  # tabby/tiger/Persian/Siamese/Egyptian cat
    assert _top1(built, skimage_data.coffee()) == 967  # espresso
    assert built.preprocessing.mean == (0.5, 0.5, 0.5)


def test_catalog_lists_offline_torchvision_and_timm():
    specs = {s.name: s for s in list_models()}
    assert specs["efficientnet_lite0"].weights_status == "installed"
    r18 = specs["resnet18"]
    assert r18.params == 11_689_512 and r18.input_size == 224 and r18.top1 == pytest.approx(69.758)
    assert r18.download_mb > 40 and r18.weights_status in ("download", "cached")
    assert any(s.source == "timm" for s in specs.values())
    assert len([s for s in specs.values() if s.source == "torchvision"]) >= 60


def test_unknown_model_suggests_names():
    with pytest.raises(ModelError, match="Did you mean resnet18"):
        build_model("resnet81", "none")


def _weights_file(tmp_path: Path) -> tuple[Path, str]:
    model = torchvision.models.resnet18(weights=None)
    raw = tmp_path / "raw.pth"
    torch.save(model.state_dict(), raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    named = tmp_path / f"resnet18-{digest[:8]}.pth"
    raw.rename(named)
    return named, digest


def test_download_from_file_url_with_progress_and_hash(tmp_path: Path):
    src, digest = _weights_file(tmp_path)
    seen = []
    dest = download(src.as_uri(), tmp_path / "cache" / src.name, digest[:8], progress=lambda d, t: seen.append(d))
    assert dest.read_bytes() == src.read_bytes()
    assert seen[-1] == src.stat().st_size and len(seen) > 3
    assert catalog.hash_prefix_from_url("https://x/resnet18-f37072fd.pth") == "f37072fd"


def test_download_with_bad_hash_leaves_nothing(tmp_path: Path):
    src, _ = _weights_file(tmp_path)
    dest = tmp_path / "cache" / "w.pth"
    with pytest.raises(ModelError, match="corrupt"):
        download(src.as_uri(), dest, "00000000")
    assert not dest.exists() and list((tmp_path / "cache").iterdir()) == []


def test_download_can_be_cancelled(tmp_path: Path):
    src, _ = _weights_file(tmp_path)
    dest = tmp_path / "cache" / "w.pth"
    calls = []
    with pytest.raises(DownloadCancelled):
        download(src.as_uri(), dest, cancel=lambda: (calls.append(1), len(calls) > 3)[1])
    assert not dest.exists() and list((tmp_path / "cache").iterdir()) == []


def test_no_network_gives_advice(tmp_path: Path):
    with pytest.raises(ModelError, match="offline model 'efficientnet_lite0'"):
        download((tmp_path / "nothing.pth").as_uri(), tmp_path / "x.pth")


def test_torchvision_pretrained_through_the_cache(tmp_path: Path, monkeypatch):
    """The real pretrained path: weights fetched by URL into torch's cache, hash checked, loaded."""
    src, digest = _weights_file(tmp_path)
    spec = catalog.get_spec("resnet18")
    fake = catalog.ModelSpec(**{**spec.__dict__, "url": src.as_uri()})
    monkeypatch.setattr(catalog, "get_spec", lambda name: fake)
    built = build_model("resnet18", "pretrained", num_classes=3)
    cached = catalog.hub_checkpoint_dir() / src.name
    assert cached.is_file()
    ref = torch.load(src, weights_only=True)
    assert torch.equal(built.model.layer1[0].conv1.weight, ref["layer1.0.conv1.weight"])
    assert built.model.fc.out_features == 3


def test_user_weights_pth_and_safetensors(tmp_path: Path):
    from safetensors.torch import save_file

    ref = torchvision.models.resnet18(weights=None)
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / "w.pth")
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "w.safetensors"))
    for f in ("w.pth", "w.safetensors"):
        built = build_model("resnet18", str(tmp_path / f), num_classes=2)
        assert torch.equal(built.model.conv1.weight, ref.conv1.weight)
        assert built.model.fc.out_features == 2


def test_mismatched_weights_list_the_keys(tmp_path: Path):
    other = torchvision.models.resnet34(weights=None)
    torch.save(other.state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ModelError) as info:
        build_model("resnet18", str(tmp_path / "r34.pth"))
    msg = str(info.value)
    assert "do not fit" in msg and "unexpected" in msg and "layer1.2.conv1.weight" in msg
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), tmp_path / "mb.pth")
    with pytest.raises(ModelError, match="missing .*conv1.weight"):
        build_model("resnet18", str(tmp_path / "mb.pth"))


def test_pickle_with_code_is_refused(tmp_path: Path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ModelError, match="evil.pth"):
        build_model("resnet18", str(tmp_path / "evil.pth"))
    assert not marker.exists()


def test_corrupt_safetensors_header(tmp_path: Path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 8 + b"{not json")
    with pytest.raises(ModelError, match="bad.safetensors"):
        build_model("resnet18", str(bad))


def test_weights_status_follows_the_cache():
    spec = next(s for s in list_models() if s.name == "alexnet")
    assert spec.weights_status == "download"
    dest = catalog.hub_checkpoint_dir() / Path(spec.url).name
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(b"x")
    try:
        assert next(s for s in list_models() if s.name == "alexnet").weights_status == "cached"
    finally:
        dest.unlink()
