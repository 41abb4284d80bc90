"""benchmarks/bench_audit.py: the truth it plants (label flips, near-duplicate copies) and how it
scores the audit's answers, checked by hand on tiny folders; no model is loaded here."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_class_folders

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_audit as bench  # noqa: E402

CLASSES = ["red", "green", "blue"]


def _classes_of(folder: Path) -> dict[str, str]:
    return {f.name: f.parent.name for f in bench.files_of(folder)}


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
def test_flip_labels_moves_the_share_asked_to_another_class(tmp_path, fraction):
    src = make_class_folders(tmp_path / "src", per_class=20, size=8, classes=CLASSES)
    # file names must be unique over all classes for the truth to be unambiguous
    bench._move_renamed(src, tmp_path / "clean", "t")
    before = _classes_of(tmp_path / "clean")
    flipped = bench.flip_labels(tmp_path / "clean", tmp_path / "noisy", fraction, CLASSES, seed=3)
    after = _classes_of(tmp_path / "noisy")
    assert len(after) == len(before) == 60
    moved = {name for name in after if after[name] != before[name]}
    assert len(flipped) == len(moved) == round(fraction * 60)
    for path, (true, given) in flipped.items():
        name = Path(path).name
        assert Path(path).exists() and Path(path).parent.name == given == after[name]
        assert true == before[name] != given
    assert _classes_of(tmp_path / "clean") == before  # the clean copy is left alone


def test_flip_labels_is_seeded(tmp_path):
    src = make_class_folders(tmp_path / "src", per_class=10, size=8, classes=CLASSES)
    bench._move_renamed(src, tmp_path / "clean", "t")
    a = bench.flip_labels(tmp_path / "clean", tmp_path / "a", 0.3, CLASSES, seed=5)
    b = bench.flip_labels(tmp_path / "clean", tmp_path / "b", 0.3, CLASSES, seed=5)
    assert sorted((Path(p).name, v) for p, v in a.items()) == sorted((Path(p).name, v) for p, v in b.items())


def test_flip_between_moves_only_the_mapped_classes_to_their_partner(tmp_path):
    src = make_class_folders(tmp_path / "src", per_class=10, size=8, classes=CLASSES)
    bench._move_renamed(src, tmp_path / "clean", "t")
    before = _classes_of(tmp_path / "clean")
    mapping = {"red": "green", "green": "red"}  # both ways: a file moved into green is not chosen again
    flipped = bench.flip_between(tmp_path / "clean", tmp_path / "noisy", 0.3, mapping, seed=4)
    after = _classes_of(tmp_path / "noisy")
    moved = {name: (before[name], after[name]) for name in after if after[name] != before[name]}
    assert sorted(moved.values()) == [("green", "red")] * 3 + [("red", "green")] * 3
    assert {Path(p).name: v for p, v in flipped.items()} == moved
    assert all(after[n] == "blue" for n in before if before[n] == "blue")
    again = bench.flip_between(tmp_path / "clean", tmp_path / "again", 0.3, mapping, seed=4)
    assert sorted(Path(p).name for p in again) == sorted(moved)


def test_near_copy_is_a_shifted_smaller_jpeg_of_the_same_picture(tmp_path):
    rng = np.random.default_rng(0)
    img = np.zeros((28, 28), np.uint8)
    img[6:22, 8:20] = rng.integers(120, 255, (16, 12))
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(np.roll(img, 9, axis=1)).save(tmp_path / "other.png")
    bench.near_copy(tmp_path / "a.png", tmp_path / "a.jpg")
    with Image.open(tmp_path / "a.jpg") as im:
        assert im.format == "JPEG" and im.size == (202, 202)  # 90 % of 224
    same = bench.pixel_corr(str(tmp_path / "a.png"), str(tmp_path / "a.jpg"))
    other = bench.pixel_corr(str(tmp_path / "a.png"), str(tmp_path / "other.png"))
    assert same > 0.9 > other


def test_near_dups_put_leaks_across_sets_and_the_rest_beside_the_original(tmp_path):
    make_class_folders(tmp_path / "t", per_class=6, size=8, classes=CLASSES)
    make_class_folders(tmp_path / "v", per_class=3, size=8, classes=CLASSES, seed=1)
    base = bench.Base(tmp_path, tmp_path / "t", tmp_path / "v", tmp_path / "h", CLASSES)
    data = bench.make_near_dups(base, tmp_path / "dups", n=8, n_leak=5, seed=0)
    assert len(data.pairs) == 8 and sorted(data.pairs.values()).count("leak") == 5
    assert len(bench.files_of(data.train)) + len(bench.files_of(data.val)) == 27 + 8
    for pair, kind in data.pairs.items():
        orig, copy = sorted(pair, key=lambda p: p.endswith(".jpg"))
        assert copy.endswith(".jpg") and Path(copy).parent.name == Path(orig).parent.name
        across = Path(copy).parent.parent != Path(orig).parent.parent
        assert across == (kind == "leak")


def test_at_n_counts_hits_among_the_first_n():
    ranked = ["a", "x", "b", "y", "c"]
    assert bench.at_n(ranked, {"a", "b", "z"}, 3) == {"n": 3, "taken": 3, "hits": 2, "precision": 2 / 3,
                                                      "recall": 2 / 3}
    short = bench.at_n(["a"], {"a", "b"}, 2)  # fewer flagged than N: precision of what was flagged
    assert (short["precision"], short["recall"]) == (1.0, 0.5)


@dataclass
class _Pair:
    a: str
    b: str
    similarity: float
    kind: str


@dataclass
class _Result:
    duplicates: list


def test_score_dups_by_hand(tmp_path):
    paths = {}
    for name, value in (("p", 10), ("q", 200), ("r", 60), ("s", 120), ("u", 250)):
        arr = np.full((28, 28), value, np.uint8)
        arr[value % 20:value % 20 + 5, 3:9] = 255 - value
        Image.fromarray(arr).save(tmp_path / f"{name}.png")
        paths[name] = str((tmp_path / f"{name}.png").resolve())
    planted = {frozenset((paths["p"], paths["q"])): "leak", frozenset((paths["r"], paths["s"])): "near",
               frozenset((paths["q"], paths["u"])): "leak"}
    found = _Result([_Pair(paths["q"], paths["p"], 0.97, "leak"),  # order of a and b does not matter
                     _Pair(paths["r"], paths["s"], 0.995, "duplicate"),  # a same-set copy reported as the same image
                     _Pair(paths["q"], paths["u"], 0.93, "near"),  # a leak reported as the wrong kind
                     _Pair(paths["p"], paths["s"], 0.91, "near")])  # not planted
    s = bench.score_dups(found, planted)
    assert (s["leak"]["found"], s["leak"]["reported"], s["leak"]["planted"]) == (1, 1, 2)
    assert (s["near"]["found"], s["near"]["reported"], s["near"]["planted"]) == (1, 3, 1)
    assert (s["all"]["found"], s["all"]["reported"], s["all"]["planted"]) == (2, 4, 3)
    assert s["all"]["precision"] == pytest.approx(0.5) and s["all"]["recall"] == pytest.approx(2 / 3)
    others = s["all"]["other_pairs"]
    assert [(o["kind"], o["similarity"]) for o in others] == [("near", 0.93), ("near", 0.91)]
    assert all(o["pixel_corr"] < 0.95 for o in others) and s["all"]["source_duplicates"] == 0


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").exists(), reason="needs Debian's dataset-fashion-mnist")
def test_quick_near_duplicate_part_end_to_end(tmp_path, capsys):
    """The script itself on 60 images at 32 px: its JSON and table count what it planted, and the
    audit finds at least half of the planted leaks (copies the network sees as the same image)."""
    out = tmp_path / "r.json"
    assert bench.main(["--quick", "--parts", "dups", "--train-per-class", "4", "--val-per-class", "2",
                       "--heldout-per-class", "1", "--size", "32", "--dups", "4", "--dup-leaks", "2",
                       "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    d = doc["dups"]
    assert (d["leak"]["planted"], d["near"]["planted"], d["all"]["planted"]) == (2, 2, 4)
    assert (d["train_images"] + d["val_images"]) == 40 + 20 + 4
    assert d["leak"]["found"] >= 1 and 0 <= d["all"]["precision"] <= 1
    assert doc["machine"]["capability"] and doc["preset"]["size"] == 32
    printed = capsys.readouterr().out
    assert "### Near-duplicates and leaks" in printed and "| leak + near, source twins' pairs counted as false | 4 |" in printed
    tw = d["source_twins"]
    assert tw["pool"] == 60 and 0 <= tw["removed"] <= 60 and tw["copy_likeness"]["min"] <= tw["threshold"]
    assert d["twin_free"]["planted"] == 4 and d["twin_free"]["reported"] <= d["all"]["reported"]
    assert "| leak + near, without the source twins | 4 |" in printed


def test_source_twins_names_both_images_of_a_pixel_twin_pair_and_nothing_else(tmp_path):
    rng = np.random.default_rng(7)
    files = []
    for name in ("a", "b", "c", "d"):
        arr = rng.integers(0, 255, (28, 28)).astype(np.uint8)
        if name == "b":  # a's twin: the same picture, a little noise
            arr = np.clip(np.asarray(Image.open(files[0]), np.int16) + rng.integers(-6, 7, (28, 28)), 0, 255)
        Image.fromarray(arr.astype(np.uint8)).save(tmp_path / f"{name}.png")
        files.append(tmp_path / f"{name}.png")
    twins = bench.source_twins(files, 0.97)
    a, b = (str(f.resolve()) for f in files[:2])
    assert set(twins) == {a, b} and twins[a][0] == b and twins[b][0] == a and twins[a][1] > 0.97
    assert bench.source_twins(files, 0.9999) == {}


def test_copy_likeness_is_high_for_a_picture_and_leaves_no_file(tmp_path):
    arr = np.zeros((28, 28), np.uint8)
    arr[5:23, 9:19] = 200
    Image.fromarray(arr).save(tmp_path / "a.png")
    like = bench.copy_likeness([tmp_path / "a.png"], tmp_path / "work")
    assert like.shape == (1,) and 0.9 < like[0] <= 1.0 and not (tmp_path / "work").exists()


def test_near_dups_make_no_copy_of_an_avoided_image(tmp_path):
    make_class_folders(tmp_path / "t", per_class=3, size=8, classes=CLASSES)
    make_class_folders(tmp_path / "v", per_class=1, size=8, classes=CLASSES, seed=1)
    base = bench.Base(tmp_path, tmp_path / "t", tmp_path / "v", tmp_path / "h", CLASSES)
    avoid = {str(f.resolve()) for f in bench.files_of(base.train)[:6]}
    data = bench.make_near_dups(base, tmp_path / "dups", n=6, n_leak=2, seed=0, avoid=avoid)
    originals = {Path(p).relative_to((tmp_path / "dups").resolve()).parts for pair in data.pairs for p in pair
                 if not p.endswith(".jpg")}
    avoided = {("train", *Path(p).relative_to(base.train.resolve()).parts) for p in avoid}
    assert len(originals) == 6 and not originals & avoided  # the 6 copies come from the other 6 images


def test_score_dups_without_the_source_twins_leaves_their_pairs_out(tmp_path):
    paths = {}
    for name, value in (("p", 10), ("q", 200), ("t1", 60), ("t2", 120)):
        arr = np.full((28, 28), value, np.uint8)
        arr[value % 20:value % 20 + 5, 3:9] = 255 - value
        Image.fromarray(arr).save(tmp_path / f"{name}.png")
        paths[name] = str((tmp_path / f"{name}.png").resolve())
    planted = {frozenset((paths["p"], paths["q"])): "leak"}
    found = _Result([_Pair(paths["p"], paths["q"], 0.97, "leak"),
                     _Pair(paths["t1"], paths["t2"], 0.94, "near"),  # two source twins: not planted
                     _Pair(paths["p"], paths["t1"], 0.92, "leak")])  # a twin and another image
    s = bench.score_dups(found, planted, {paths["t1"], paths["t2"]})
    assert (s["all"]["found"], s["all"]["reported"]) == (1, 3) and s["all"]["precision"] == pytest.approx(1 / 3)
    free = s["twin_free"]
    assert (free["found"], free["reported"], free["ignored_pairs"]) == (1, 1, 2) and free["precision"] == 1.0
    assert [o["source_twin"] for o in s["all"]["other_pairs"]] == [True, True]
    lines = bench.table_dups({**s, "kinds_reported": {"leak": 2, "near": 1}})
    assert any(ln.startswith("| leak + near, without the source twins | 1 | 1 | 1 | 1.00 |") for ln in lines)


def test_not_flipped_names_the_false_alarms_among_the_first_n():
    ranked = ["/d/Shirt/t1.png", "/d/Coat/t2.png", "/d/Bag/t3.png", "/d/Shirt/t4.png"]
    assert bench.not_flipped(ranked, {"/d/Coat/t2.png"}, 3) == ["Shirt/t1.png", "Bag/t3.png"]
