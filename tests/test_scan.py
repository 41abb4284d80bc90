"""scan_sources, DatasetIndex and stratified_split on folder trees made in tmp_path."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from transfer_gui.engine import scan as scan_mod
from transfer_gui.engine.imageio import open_image
from transfer_gui.engine.scan import (LOOSE_IMAGE, DatasetIndex, Sample, ScanCancelled, ScanError,
                                      Skipped, scan_sources, stratified_split)
from transfer_gui.paths import sample_data_dir


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (2, 2), (200, 100, 50)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png_bytes()


def put(root: Path, *names: str, data: bytes = PNG) -> list[Path]:
    """Write files (creating folders) and return their paths."""
    paths = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


def reasons(index: DatasetIndex) -> dict[str, str]:
    return {s.path: s.reason for s in index.skipped}


def by_class(index: DatasetIndex) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {c: set() for c in index.classes}
    for s in index.samples:
        out[index.classes[s.label]].add(os.path.basename(s.path))
    return out


# ----------------------------------------------------------------------------- folder rules


def test_parent_folder_classes_sorted_and_labelled(tmp_path):
    put(tmp_path, "dogs/d1.png", "dogs/d2.JPG", "cats/c1.png", "cats/c2.jpeg", "cats/c3.webp")
    index = scan_sources([tmp_path])
    assert index.classes == ["cats", "dogs"]
    assert index.counts() == {"cats": 3, "dogs": 2}
    assert all(index.classes[s.label] == Path(s.path).parent.name for s in index.samples)
    assert [s.path for s in index.samples] == sorted(s.path for s in index.samples)
    assert index.sources == [str(tmp_path)]
    assert index.skipped == [] and index.seconds >= 0


def test_nested_subfolders_belong_to_their_class(tmp_path):
    put(tmp_path, "cats/a.png", "cats/2019/summer/b.png", "cats/2020/c.png", "dogs/x/y/z/d.png")
    index = scan_sources(str(tmp_path))
    assert by_class(index) == {"cats": {"a.png", "b.png", "c.png"}, "dogs": {"d.png"}}


def test_junk_is_ignored_silently(tmp_path):
    put(tmp_path, "cats/a.png", "dogs/b.png", "cats/.hidden.png", "cats/.DS_Store",
        "cats/Thumbs.db", "cats/notes.txt", "dogs/readme.md", "__MACOSX/cats/._a.png",
        "cats/.thumbnails/t.png", ".git/objects/x.png")
    index = scan_sources([tmp_path])
    assert by_class(index) == {"cats": {"a.png"}, "dogs": {"b.png"}}
    assert index.skipped == []


def test_empty_and_broken_files(tmp_path):
    put(tmp_path, "cats/a.png", "dogs/b.png")
    put(tmp_path, "cats/zero.png", data=b"")
    put(tmp_path, "dogs/text.jpg", data=b"not an image at all")
    expected = {str(tmp_path / "cats/zero.png"): "empty file (0 bytes)",
                str(tmp_path / "dogs/text.jpg"): "not an image (unrecognised format)"}
    for probe in (False, True):  # the first bytes already tell a text file from an image
        index = scan_sources([tmp_path], probe=probe)
        assert reasons(index) == expected
        assert by_class(index) == {"cats": {"a.png"}, "dogs": {"b.png"}}
        assert index.counts() == {"cats": 1, "dogs": 1}
        assert any("2 files skipped" in m and "not an image" in m for m in index.warnings(min_per_class=1))


def _saved(fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (5, 4), (10, 200, 30)).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,kw", [("JPEG", {}), ("PNG", {}), ("GIF", {}), ("BMP", {}), ("TIFF", {}),
                                    ("TIFF", {"compression": "tiff_lzw"}), ("WEBP", {}), ("PPM", {}), ("TGA", {})])
def test_the_quick_check_accepts_every_format_pillow_reads_whatever_the_name(tmp_path, fmt, kw):
    """The first bytes of the common formats are known; any other start gets Pillow's header
    parse, so a PPM or TGA saved as .png (a rare but readable file) is still an image."""
    from transfer_gui.engine.imageio import quick_check

    put(tmp_path, "a/x.png", "b/y.png")
    wrong_name = put(tmp_path, "a/file.png", data=_saved(fmt, **kw))[0]
    assert quick_check(wrong_name) is None
    index = scan_sources([tmp_path])
    assert not index.skipped and index.counts() == {"a": 2, "b": 1}
    assert open_image(wrong_name).size == (5, 4)


def test_the_quick_check_names_what_is_wrong(tmp_path):
    from transfer_gui.engine.imageio import quick_check

    html, half, folder = put(tmp_path, "page.jpg", "half.png", data=b"<html><body>404</body></html>")[0], \
        put(tmp_path, "half.png", data=PNG[:5])[0], tmp_path / "dir.jpg"
    folder.mkdir()
    assert quick_check(html) == "not an image (unrecognised format)"
    assert quick_check(half) == "not an image (unrecognised format)"  # too short to be a PNG
    assert quick_check(tmp_path / "gone.png") == "file not found"
    assert quick_check(folder) == "is a folder, not a file"


def test_loose_image_in_parent_is_skipped(tmp_path):
    put(tmp_path, "cats/a.png", "dogs/b.png", "preview.png")
    index = scan_sources([tmp_path])
    assert index.classes == ["cats", "dogs"]
    assert reasons(index) == {str(tmp_path / "preview.png"): LOOSE_IMAGE}


def test_empty_class_folder_is_not_a_class(tmp_path):
    put(tmp_path, "cats/a.png", "dogs/b.png", "birds/notes.txt")
    (tmp_path / "fish").mkdir()
    index = scan_sources([tmp_path])
    assert index.classes == ["cats", "dogs"]
    assert reasons(index) == {str(tmp_path / "birds"): "empty class folder",
                              str(tmp_path / "fish"): "empty class folder"}


def test_class_entry_that_is_a_file_is_ignored(tmp_path):
    put(tmp_path, "cats/a.png", "dogs/b.png")
    (tmp_path / "birds").write_text("I am a file called birds")
    index = scan_sources([tmp_path])
    assert index.classes == ["cats", "dogs"] and index.skipped == []


def test_class_folders_given_directly_and_merging(tmp_path):
    put(tmp_path, "a/cats/1.png", "a/dogs/2.png", "b/cats/3.png", "b/owls/4.png",
        "loose/horse/5.png", "loose/horse/6.png", "zebra/7.png", "zebra/sub/8.png")
    index = scan_sources([tmp_path / "a", tmp_path / "b", tmp_path / "zebra"])
    assert by_class(index) == {"cats": {"1.png", "3.png"}, "dogs": {"2.png"},
                               "owls": {"4.png"}, "zebra": {"7.png", "8.png"}}
    direct = scan_sources([tmp_path / "loose/horse", tmp_path / "zebra"])
    assert direct.counts() == {"horse": 2, "zebra": 2}


def test_rename_merges_and_exclude_drops(tmp_path):
    put(tmp_path, "cat/1.png", "kitten/2.png", "dog/3.png", "bird/4.png")
    index = scan_sources([tmp_path], exclude_classes=["bird"],
                         rename_classes={"cat": "feline", "kitten": "feline"})
    assert index.counts() == {"dog": 1, "feline": 2}
    with pytest.raises(ScanError, match="empty name"):
        scan_sources([tmp_path], rename_classes={"cat": " "})
    with pytest.raises(ScanError, match="at least two classes"):
        scan_sources([tmp_path], exclude_classes=["cat", "kitten", "bird"])


def test_unicode_emoji_and_spaces(tmp_path):
    put(tmp_path, "chats 🐱/un chat é.png", "Hunde ü/😀 dog.jpg")
    index = scan_sources([tmp_path])
    assert index.classes == ["Hunde ü", "chats 🐱"]
    assert by_class(index) == {"Hunde ü": {"😀 dog.jpg"}, "chats 🐱": {"un chat é.png"}}
    assert all(open_image(s.path).size == (2, 2) for s in index.samples)


# ----------------------------------------------------------------------------- errors


def test_missing_folder(tmp_path):
    with pytest.raises(ScanError, match="does not exist") as info:
        scan_sources([tmp_path / "nowhere"])
    assert str(tmp_path / "nowhere") in str(info.value)


def test_file_given_as_folder(tmp_path):
    (f,) = put(tmp_path, "one.png")
    with pytest.raises(ScanError, match="is a file, not a folder"):
        scan_sources([f])


def test_no_images(tmp_path):
    put(tmp_path, "cats/readme.txt")
    with pytest.raises(ScanError, match="No images found") as info:
        scan_sources([tmp_path])
    assert str(tmp_path) in str(info.value)


def test_only_one_class(tmp_path):
    put(tmp_path, "cats/a.png", "cats/b.png")
    for given in (tmp_path, tmp_path / "cats"):
        with pytest.raises(ScanError, match="at least two classes") as info:
            scan_sources([given])
        assert "'cats'" in str(info.value) and "own sub-folder" in str(info.value)
    assert issubclass(ScanError, ValueError)


# ----------------------------------------------------------------------------- links, permissions


def run_with_deadline(fn, seconds: float = 20.0):
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "scan did not finish: symlink loop?"
    return result["value"]


def test_symlink_loops_terminate_and_do_not_duplicate(tmp_path):
    root = tmp_path / "data"
    put(root, "cats/a.png", "cats/deep/b.png", "dogs/c.png")
    os.symlink(root / "cats", root / "cats/deep/loop")  # cats/deep/loop -> cats
    os.symlink(root, root / "dogs/up")  # dogs/up -> the parent itself
    index = run_with_deadline(lambda: scan_sources([root]))
    assert by_class(index) == {"cats": {"a.png", "b.png"}, "dogs": {"c.png"}}
    assert len(index.samples) == 3


def test_symlinked_class_folder_and_broken_link(tmp_path):
    put(tmp_path, "elsewhere/birds/x.png", "data/cats/a.png")
    os.symlink(tmp_path / "elsewhere/birds", tmp_path / "data/birds")
    os.symlink(tmp_path / "gone.png", tmp_path / "data/cats/dangling.png")
    index = scan_sources([tmp_path / "data"])
    assert index.counts() == {"birds": 1, "cats": 1}
    assert reasons(index) == {str(tmp_path / "data/cats/dangling.png"): "broken symbolic link"}


def test_permission_denied_real(tmp_path):
    put(tmp_path, "cats/a.png", "dogs/b.png", "dogs/locked/c.png")
    locked = tmp_path / "dogs/locked"
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reading "
                        "(test_permission_denied_simulated covers this)")
        index = scan_sources([tmp_path])
        assert reasons(index) == {str(locked): "permission denied"}
    finally:
        locked.chmod(0o755)


def test_permission_denied_simulated(tmp_path, monkeypatch):
    put(tmp_path, "cats/a.png", "cats/b.png", "dogs/c.png", "dogs/locked/d.png")
    secret_file, secret_dir = str(tmp_path / "cats/b.png"), str(tmp_path / "dogs/locked")
    real_open, real_scandir = os.open, os.scandir

    def os_open(path, flags, *a, **kw):  # what reading a file the user may not read does
        if os.fspath(path) == secret_file:
            raise PermissionError(13, "Permission denied", secret_file)
        return real_open(path, flags, *a, **kw)

    def scandir(path="."):
        if os.fspath(path) == secret_dir:
            raise PermissionError(13, "Permission denied", secret_dir)
        return real_scandir(path)

    monkeypatch.setattr(scan_mod.os, "open", os_open)
    monkeypatch.setattr(scan_mod.os, "scandir", scandir)
    index = scan_sources([tmp_path])
    assert by_class(index) == {"cats": {"a.png"}, "dogs": {"c.png"}}
    assert reasons(index) == {secret_file: "permission denied", secret_dir: "permission denied"}


# ----------------------------------------------------------------------------- speed, progress


def test_ten_thousand_files_fast_with_throttled_progress(tmp_path):
    for c in range(4):
        folder = tmp_path / f"class_{c}"
        folder.mkdir()
        for i in range(2500):
            (folder / f"img_{i:05d}.png").write_bytes(PNG)
    calls: list[tuple[float, int]] = []
    start, cpu_start = time.perf_counter(), time.process_time()
    index = scan_sources([tmp_path], progress=lambda n, msg: calls.append((time.perf_counter(), n)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"\nscanned 10,000 files in {elapsed:.3f} s, {cpu:.3f} s of CPU (index says {index.seconds:.3f} s)")
    assert len(index.samples) == 10_000
    assert index.counts() == {f"class_{c}": 2500 for c in range(4)}
    # a bound on this process's CPU time, not the wall clock, which other jobs on the machine stretch:
    # it catches a scan gone quadratic, not a busy machine
    assert cpu < 3.0
    assert calls and calls[-1][1] == 10_000
    assert len(calls) <= 2 + 20 * elapsed * 1.5  # throttled to ~20 a second
    assert [n for _, n in calls] == sorted(n for _, n in calls)


def test_cancel_raises(tmp_path):
    for c in ("a", "b"):
        put(tmp_path, *[f"{c}/{i}.png" for i in range(600)])
    polls = []

    def cancel() -> bool:
        polls.append(1)
        return len(polls) >= 3

    with pytest.raises(ScanCancelled):
        scan_sources([tmp_path], cancel=cancel)
    assert len(polls) == 3


# ----------------------------------------------------------------------------- the index


def make_index(counts: dict[str, int]) -> DatasetIndex:
    classes = sorted(counts)
    samples = [Sample(f"/d/{c}/{i}.png", label) for label, c in enumerate(classes)
               for i in range(counts[c])]
    return DatasetIndex(classes, samples, [Skipped("/d/x.png", "empty file (0 bytes)")],
                        ["/d"], 0.25)


def test_counts_warnings_subset():
    index = make_index({"cats": 60, "dogs": 8, "owls": 30})
    assert index.counts() == {"cats": 60, "dogs": 8, "owls": 30}
    messages = index.warnings(min_per_class=10)
    assert any("'dogs' has only 8 images" in m for m in messages)
    assert any("imbalanced" in m and "'cats' has 60 images" in m and "the 8 of 'dogs'" in m for m in messages)
    assert any(m.startswith("1 file skipped (1 empty file (0 bytes))") for m in messages)
    assert make_index({"a": 20, "b": 30}).warnings()[:-1] == []  # only the skipped note
    sub = index.subset([0, 60, 61])
    assert sub.classes == index.classes and sub.counts() == {"cats": 1, "dogs": 2, "owls": 0}


def test_json_round_trip():
    index = make_index({"cats": 3, "dogs": 2})
    again = DatasetIndex.from_json(json.loads(json.dumps(index.to_json())))
    assert again == index
    with pytest.raises(ValueError, match="malformed"):
        DatasetIndex.from_json({"classes": ["a"], "samples": [["/x.png", 5]]})
    with pytest.raises(ValueError, match="malformed"):
        DatasetIndex.from_json({"samples": []})


def test_stratified_split_properties():
    index = make_index({"big": 100, "pair": 2, "single": 1, "mid": 15})
    train, val = stratified_split(index, 0.2, seed=7)
    assert sorted(train + val) == list(range(len(index.samples)))
    assert not set(train) & set(val) and train == sorted(train) and val == sorted(val)
    val_counts = index.subset(val).counts()
    assert val_counts == {"big": 20, "mid": 3, "pair": 1, "single": 0}
    assert (train, val) == stratified_split(index, 0.2, seed=7)  # deterministic
    assert val != stratified_split(index, 0.2, seed=8)[1]
    assert stratified_split(index, 0.0, seed=7) == (list(range(len(index.samples))), [])
    with pytest.raises(ValueError):
        stratified_split(index, 1.0, seed=7)


def test_split_of_a_class_does_not_depend_on_other_classes():
    small = make_index({"cats": 40, "dogs": 40})
    large = make_index({"ants": 25, "cats": 40, "dogs": 40})

    def val_paths(index):
        return {index.samples[i].path for i in stratified_split(index, 0.25, seed=1)[1]}

    assert {p for p in val_paths(large) if "/ants/" not in p} == val_paths(small)


# ----------------------------------------------------------------------------- bundled data


def test_bundled_sample_data_scans_and_decodes():
    folder = sample_data_dir()
    index = scan_sources([folder], probe=True)
    assert index.counts() == {"Bag": 60, "Sneaker": 60, "T-shirt_top": 60, "Trouser": 60}
    assert index.skipped == [] and index.warnings() == []
    assert all(open_image(s.path).size == (28, 28) for s in index.samples[::20])
    credits = (folder / "CREDITS.txt").read_text(encoding="utf-8")
    assert "Zalando" in credits and "MIT" in credits and "Permission is hereby granted" in credits
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert total < 1_000_000


def test_write_fashion_mnist_folders(tmp_path):
    tool = pytest.importorskip("tools.make_sample_data")
    if not (tool.DEFAULT_SOURCE / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    a = tool.write_fashion_mnist_folders(tmp_path / "a", ["Sneaker", 9], 5, seed=3, size=64)
    b = tool.write_fashion_mnist_folders(tmp_path / "b", ["Sneaker", 9], 5, seed=3, size=64)
    assert sorted(a) == ["Ankle_boot", "Sneaker"] and all(len(v) == 5 for v in a.values())
    assert [p.read_bytes() for p in a["Sneaker"]] == [p.read_bytes() for p in b["Sneaker"]]
    assert Image.open(a["Ankle_boot"][0]).size == (64, 64)
    assert scan_sources([tmp_path / "a"]).counts() == {"Ankle_boot": 5, "Sneaker": 5}
    with pytest.raises(ValueError, match="unknown class"):
        tool.write_fashion_mnist_folders(tmp_path / "c", ["Hat"], 1, seed=0)
