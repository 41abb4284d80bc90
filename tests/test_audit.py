"""The data audit: confident learning by hand, the out-of-fold property, duplicates and leaks
on generated images, outliers, imbalance, cancel (engine/audit.py, confident.py, duplicates.py)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from transfer_gui.engine import audit as audit_mod
from transfer_gui.engine import confident
from transfer_gui.engine import duplicates as dup
from transfer_gui.engine.linear import fit_adamw, fit_logistic
from transfer_gui.errors import Cancelled

# ----------------------------------------------------------------------------- confident learning by hand


def test_confident_learning_by_hand():
    # 3 classes; rows 0-2 labelled 0, 3-5 labelled 1, 6-8 labelled 2. Row 2 looks like class 1,
    # row 8 is ambiguous (below every threshold), row 5 leans to 2 but not above t_2.
    probs = np.array([
        [0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.85, 0.05],
        [0.1, 0.8, 0.1], [0.05, 0.9, 0.05], [0.1, 0.45, 0.45],
        [0.1, 0.1, 0.8], [0.05, 0.05, 0.9], [0.34, 0.33, 0.33]])
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    t = confident.thresholds(probs, labels)
    # t_0 = (0.9 + 0.8 + 0.1) / 3 = 0.6; t_1 = (0.8 + 0.9 + 0.45) / 3 = 0.7167; t_2 = (0.8 + 0.9 + 0.33) / 3 = 0.6767
    assert t == pytest.approx([0.6, 0.716667, 0.676667], abs=1e-5)
    joint = confident.confident_joint(probs, labels, t)
    # row 2 -> class 1 (0.85 >= t_1); rows 5 and 8 reach no threshold
    expected = np.array([[2, 1, 0], [0, 2, 0], [0, 0, 2]])
    assert (joint == expected).all()
    # class 0's row calibrated to its 3 images: [2, 1, 0] -> 1 issue; classes 1 and 2: none
    assert confident.issue_counts(joint, np.bincount(labels)).tolist() == [1, 0, 0]
    issues, _ = confident.find_issues(probs, labels)
    assert [(i.index, i.given, i.suggested) for i in issues] == [(2, 0, 1)]  # class 0's lowest p_0
    assert issues[0].score == pytest.approx(1 - 0.1)  # 1 - self-confidence


def test_ranked_by_self_confidence_and_scores_in_unit_interval():
    probs = np.array([[0.1, 0.9], [0.4, 0.6], [0.95, 0.05], [0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.1, 0.9]])
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    issues, t = confident.find_issues(probs, labels)
    # t_1 = 0.8: only row 0 (0.9) of class 0 is confidently class 1; calibrated to class 0's 4 images,
    # [2, 1] -> [2.67, 1.33]: one issue, the lowest p_0 (row 0); row 1 (0.6 < t_1) is not counted
    assert [i.index for i in issues] == [0]
    probs[1] = [0.15, 0.85]
    issues, _ = confident.find_issues(probs, labels)
    assert [i.index for i in issues] == [0, 1]  # self-confidence 0.1 before 0.15
    assert all(0 < i.score <= 1 for i in issues)


def test_the_count_comes_from_the_joint_and_only_beaten_labels_are_suggested():
    # class 0: six images, t_0 = 3.79 / 6 = 0.632. Row 0 is confidently class 1, rows 4 and 5 class 0,
    # rows 1-3 (0.6) reach no threshold: the joint's row [2, 1] calibrated to 6 images is [4, 2], so two
    # issues are counted. The two lowest p_0 are row 0 and row 1 (first of the tie), but no other class
    # beats row 1's given label: it is not suggested as moved.
    probs = np.array([[0.05, 0.95], [0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [0.95, 0.05], [0.99, 0.01],
                      [0.2, 0.8], [0.1, 0.9], [0.15, 0.85]])
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1])
    joint = confident.confident_joint(probs, labels)
    assert joint.tolist() == [[2, 1], [0, 2]]
    assert confident.issue_counts(joint, np.bincount(labels)).tolist() == [2, 0]
    assert [(i.index, i.suggested) for i in confident.find_issues(probs, labels)[0]] == [(0, 1)]
    probs[1] = [0.45, 0.55]  # now class 1 beats it (though not confidently; t_0 = 0.607): the second issue
    assert [i.index for i in confident.find_issues(probs, labels)[0]] == [0, 1]


def test_folds_are_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [10, 25, 4])
    for seed in (0, 7):
        f = confident.stratified_folds(labels, 5, seed)
        for c in (0, 1):
            assert np.bincount(f[labels == c], minlength=5).tolist() in ([2] * 5, [5] * 5)
        assert sorted(np.bincount(f[labels == 2], minlength=5)) == [0, 1, 1, 1, 1]
    assert (confident.stratified_folds(labels, 5, 1) != confident.stratified_folds(labels, 5, 2)).any()


# ----------------------------------------------------------------------------- out of fold


def _clusters(n_per: int, k: int, d: int, seed: int, spread: float = 1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, d))
    y = np.repeat(np.arange(k), n_per)
    return (centres[y] + rng.normal(0, spread, (len(y), d))).astype(np.float32), y


def test_no_row_is_predicted_by_a_head_that_saw_it(monkeypatch):
    x, y = _clusters(12, 3, 8, 0)
    seen = []
    real = confident.fit_head

    def spy(xt, yt, k, **kw):
        seen.append({tuple(np.round(r, 5)) for r in xt.numpy()})
        return real(xt, yt, k, **kw)

    monkeypatch.setattr(confident, "fit_head", spy)
    folds = confident.stratified_folds(y, 4, 3)
    confident.out_of_fold(torch.from_numpy(x), y, 3, folds=4, seed=3)
    assert len(seen) == 4
    for f in range(4):
        held = {tuple(np.round(r, 5)) for r in x[folds == f]}
        assert not (held & seen[f]) and len(seen[f]) == int((folds != f).sum())


def test_adamw_head_is_seeded_and_learns():
    x, y = _clusters(15, 3, 8, 4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    a, b = fit_adamw(xt, yt, 3, seed=1), fit_adamw(xt, yt, 3, seed=1)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, fit_adamw(xt, yt, 3, seed=2).weight)
    assert a.accuracy(xt, yt) == 1.0
    # 45 rows are 2 batches an epoch: 10 epochs alone are 20 small steps; min_steps makes it 1,000
    short = fit_adamw(xt, yt, 3, seed=1, min_steps=0).probs(xt)[torch.arange(45), yt].mean()
    assert float(a.probs(xt)[torch.arange(45), yt].mean()) > float(short) + 0.1


def test_a_memorised_wrong_label_is_found_only_out_of_fold():
    # 60 points in 200 dimensions: a linear head can fit every label, the wrong one too.
    x, y = _clusters(20, 3, 200, 1, spread=2.0)
    given = y.copy()
    given[[5, 30]] = [1, 2]
    head = fit_logistic(torch.from_numpy(x), torch.from_numpy(given), 3)  # fitted to convergence: memorises
    in_sample = head.probs(torch.from_numpy(x)).numpy()
    assert not {5, 30} & {i.index for i in confident.find_issues(in_sample, given)[0]}  # memorised: vouched for
    oof = confident.out_of_fold(torch.from_numpy(x), given, 3, folds=5, seed=0)
    found = confident.find_issues(oof, given)[0]
    assert {i.index for i in found[:2]} == {5, 30}
    assert {(i.given, i.suggested) for i in found[:2]} == {(1, 0), (2, 1)}


def test_audit_features_label_issues_words_and_order():
    x, y = _clusters(30, 3, 16, 2)
    given = y.copy()
    given[[3, 40]] = [2, 0]
    paths = [f"img{i}.png" for i in range(len(y))]
    sets = ["train"] * 70 + ["val"] * 20
    res = audit_mod.audit_features(x, given, sets, paths, ["cat", "dog", "owl"])
    assert {i.path for i in res.label_issues[:2]} == {"img3.png", "img40.png"}
    top = {i.path: i for i in res.label_issues}
    assert top["img3.png"].given == "owl" and top["img3.png"].suggested == "cat"
    assert "predicted cat with" in top["img3.png"].reason and "cat's own images average" in top["img3.png"].reason
    assert [i.score for i in res.label_issues] == sorted((i.score for i in res.label_issues), reverse=True)
    assert res.class_counts == {"cat": 30, "dog": 29, "owl": 11}  # training images only (60-69 owl), given labels
    assert res.neighbours("img3.png", "cat", 3) and all(int(p[3:-4]) < 30 for p in res.neighbours("img3.png", "cat"))


def test_imbalance_advice():
    assert audit_mod.imbalance_of({"a": 30, "b": 10}) is None  # exactly 3x is not more than 3x
    got = audit_mod.imbalance_of({"a": 31, "b": 10, "c": 20})
    assert got["largest"] == "a" and got["smallest"] == "b" and got["ratio"] == pytest.approx(3.1)
    assert 'train.class_weights = "balanced"' in got["advice"] and "data.weighted_sampler = true" in got["advice"]


def test_cancel_stops_with_cancelled():
    x, y = _clusters(30, 3, 16, 2)
    events = []

    def cancel():
        return any(type(e).__name__ == "Progress" for e in events)

    with pytest.raises(Cancelled):
        audit_mod.audit_features(x, y, ["train"] * len(y), [str(i) for i in range(len(y))], on_event=events.append,
                                 cancel=cancel)
    assert sum(type(e).__name__ == "Progress" for e in events) == 1  # stopped at the next check


# ----------------------------------------------------------------------------- hashes and search


def test_phash_and_blocked_search():
    rng = np.random.default_rng(0)
    a = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((128, 128))
    assert dup.phash_image(a) == dup.phash_image(a.copy())
    assert int(dup.hamming(np.array([0b1011], np.uint64), np.array([0b0110], np.uint64))[0]) == 3
    x = dup.normalise(rng.normal(0, 1, (50, 6)))
    sims, idx = dup.knn_blocked(x, 4, block=7)
    full = x @ x.T
    np.fill_diagonal(full, -np.inf)
    assert (idx == np.argsort(-full, 1)[:, :4]).all()
    assert sims == pytest.approx(np.sort(full, 1)[:, ::-1][:, :4], abs=1e-5)
    if dup.faiss_available():
        fs, fi = dup.knn_faiss(x, 4)
        assert (fi == idx).all()


# ----------------------------------------------------------------------------- a real audit of generated images


def _scene(rng, base, size=96) -> Image.Image:
    im = Image.new("RGB", (size, size), base)
    d = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = (int(v) for v in rng.integers(0, size - 20, 2))
        w, h = (int(v) for v in rng.integers(12, size // 2, 2))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x0 + w, y0 + h], fill=colour)
    arr = np.asarray(im).astype(np.float32) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _jpeg70(im: Image.Image) -> Image.Image:
    b = io.BytesIO()
    im.save(b, "JPEG", quality=70)
    return Image.open(io.BytesIO(b.getvalue())).convert("RGB")


def _resized90(im: Image.Image) -> Image.Image:
    return im.resize((int(im.width * 0.9), int(im.height * 0.9)), Image.Resampling.LANCZOS)


def _shifted2(im: Image.Image) -> Image.Image:
    a = np.asarray(im)
    out = np.concatenate([np.repeat(a[:, :1], 2, 1), a[:, :-2]], 1)
    return Image.fromarray(np.concatenate([np.repeat(out[:1], 2, 0), out[:-2]], 0))


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    rng = np.random.default_rng(3)
    colours = {"red": (200, 60, 60), "green": (60, 180, 60), "blue": (60, 60, 200)}
    train, val = root / "train", root / "val"
    for name, c in colours.items():
        (train / name).mkdir(parents=True)
        (val / name).mkdir(parents=True)
        for i in range(10):
            _scene(rng, c).save(train / name / f"{i}.png")
        for i in range(4):
            _scene(rng, c).save(val / name / f"v{i}.png")
    _jpeg70(Image.open(train / "red" / "0.png")).save(val / "red" / "leak_jpeg.png")
    _resized90(Image.open(train / "green" / "1.png")).save(val / "green" / "leak_small.png")
    _shifted2(Image.open(train / "blue" / "2.png").convert("RGB")).save(train / "blue" / "near_shift.png")
    shutil.copy(train / "red" / "3.png", train / "red" / "copy.png")
    shutil.copy(train / "green" / "4.png", train / "blue" / "cross.png")  # one of them is mislabelled
    Image.new("RGB", (96, 96), (255, 255, 255)).save(train / "green" / "blank.png")
    from transfer_gui.config import RunConfig

    cfg = RunConfig().replace(**{"data.folders": [str(train)], "data.val_folders": [str(val)],
                                 "data.image_size": 64, "train.device": "cpu"})
    events = []
    return audit_mod.audit(cfg, on_event=events.append), train, val, events


def test_duplicates_and_leaks_found_and_nothing_else(audited):
    res, train, val, _ = audited
    got = {(frozenset((Path(p.a).relative_to(train.parent).as_posix(), Path(p.b).relative_to(train.parent).as_posix())),
            p.kind) for p in res.duplicates}
    expected = {(frozenset(("train/red/0.png", "val/red/leak_jpeg.png")), "leak"),
                (frozenset(("train/green/1.png", "val/green/leak_small.png")), "leak"),
                (frozenset(("train/blue/2.png", "train/blue/near_shift.png")), "near"),
                (frozenset(("train/red/3.png", "train/red/copy.png")), "duplicate"),
                (frozenset(("train/green/4.png", "train/blue/cross.png")), "duplicate")}
    assert got == expected  # every planted pair, and no two distinct scenes
    cross = next(p for p in res.duplicates if p.a.endswith("cross.png") or p.b.endswith("cross.png"))
    assert cross.similarity == 1.0 and "mislabelled" in cross.reason and "same file content" in cross.reason
    leak = next(p for p in res.duplicates if p.kind == "leak")
    assert "training" in leak.reason and "validation" in leak.reason


def test_blank_image_is_the_top_outlier(audited):
    res, *_ = audited
    assert res.outliers and res.outliers[0].path.endswith("blank.png")
    assert 0.5 <= res.outliers[0].score < 1 and "far from every class" in res.outliers[0].reason


def test_audit_document_and_events(audited):
    res, train, _val, events = audited
    doc = res.to_dict()
    assert {"label_issues", "duplicates", "outliers", "class_counts"} <= set(doc)
    assert doc["class_counts"] == {"blue": 12, "green": 11, "red": 11}  # 10 each + the planted files
    assert all({"path", "given", "suggested", "score"} <= set(x) for x in doc["label_issues"])
    assert all({"a", "b", "similarity", "kind"} <= set(x) for x in doc["duplicates"])
    assert all(p["a"].startswith(str(train.parent)) for p in doc["duplicates"])  # paths as the scan reports them
    phases = [e.message for e in events if type(e).__name__ == "PhaseChanged"]
    assert any("Out-of-fold" in m for m in phases) and phases[-1].startswith("Audit done")
    blank = next(p for p in res._paths if p.endswith("blank.png"))
    near = res.neighbours(blank, "red", 2)
    assert len(near) == 2 and all("/red/" in p for p in near)
