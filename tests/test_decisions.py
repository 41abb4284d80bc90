"""File decisions (data.exclude_files, data.relabel) and class weights (train.class_weights):
the config keys, the rule the engine and the window share, the split, the loss, the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_class_folders, tiny_config
from transfer_gui import config as config_mod
from transfer_gui.config import ConfigError, RunConfig
from transfer_gui.engine import rules
from transfer_gui.engine.data import build_split
from transfer_gui.engine.events import PhaseChanged, Warning
from transfer_gui.engine.ranks import Dist
from transfer_gui.engine.rundir import RUN_FILES, load_run
from transfer_gui.engine.scan import scan_sources
from transfer_gui.engine.step import TrainStep
from transfer_gui.state import dataset_view


def _data(cfg: RunConfig, **changes):
    return cfg.replace(**changes).data


# ----------------------------------------------------------------------------- config


def test_the_keys_round_trip_through_toml_and_name_their_field(tmp_path):
    cfg = RunConfig().replace(**{"data.exclude_files": ["/x/a.png"], "data.relabel": {"/x/b.png": "cat"},
                                 "train.class_weights": "balanced"})
    config_mod.save(cfg, tmp_path / "p.toml")
    assert config_mod.load(tmp_path / "p.toml") == cfg
    assert RunConfig().data.exclude_files == () and RunConfig().data.relabel == {}
    assert RunConfig().train.class_weights == "none"
    bad = [({"train.class_weights": "inverse"}, "train.class_weights"),
           ({"data.exclude_files": [" "]}, "data.exclude_files[0]"),
           ({"data.relabel": {"/x/b.png": ""}}, "data.relabel./x/b.png"),
           ({"data.exclude_files": ["/x/b.png"], "data.relabel": {"/x/b.png": "cat"}}, "data.relabel./x/b.png")]
    for changes, field in bad:
        with pytest.raises(ConfigError) as err:
            RunConfig().replace(**changes)
        assert err.value.field == field


# ----------------------------------------------------------------------------- the rule


def test_apply_decisions_excludes_relabels_and_follows_renames(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = [str(tmp_path / "d" / n) for n in ("a.png", "b.png", "c.png", "d.png")]
    names = ["cat", "cat", "dog", "dog"]
    data = _data(RunConfig(), **{"data.exclude_files": ["d/a.png"],  # relative: from the working directory
                                 "data.relabel": {paths[1]: "puppy", str(tmp_path / "d/./c.png"): "mouse",
                                                  str(tmp_path / "gone.png"): "cat"},
                                 "data.rename_classes": {"puppy": "dog"}})
    d = rules.apply_decisions(paths, names, data, {"cat", "dog"})
    assert d.excluded == [paths[0]]
    assert d.relabelled == {paths[1]: {"from": "cat", "to": "dog"}}  # "puppy" is renamed to dog
    assert d.unknown == {paths[2]: "mouse"}
    assert d.kept == [(1, "dog"), (2, "dog"), (3, "dog")]  # an unknown class keeps the file where it was
    assert rules.missing_decisions(data, d.matched) == [str(tmp_path / "gone.png")]
    assert "1 file named in data.exclude_files or data.relabel is not in the image folders" in \
        rules.missing_warning(["gone.png"])


def test_imbalance_warns_above_three_times_and_names_the_fix():
    assert rules.imbalance({"a": 30, "b": 10}) is None  # exactly 3x: no warning
    assert rules.imbalance({"a": 31, "b": 10, "empty": 0})["ratio"] == pytest.approx(3.1)
    found = rules.imbalance({"a": 5, "b": 40, "c": 12})
    assert (found["largest"], found["smallest"], found["ratio"]) == ("b", "a", 8.0)
    assert "train.class_weights" in found["advice"] and "data.weighted_sampler" in found["advice"]
    assert rules.imbalance({"a": 10}) is None


def test_balanced_weights_are_inverse_frequency_with_mean_one():
    w = rules.balanced_weights([40, 8, 0, 10])
    assert np.mean([w[0], w[1], w[3]]) == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(5.0) and w[3] / w[0] == pytest.approx(4.0)
    assert w[2] == 1.0  # no training images: never a target
    assert rules.class_weights_for([3, 1], RunConfig().train) is None
    assert rules.class_weights_for([3, 1], RunConfig().replace(**{"train.class_weights": "balanced"}).train) == \
        pytest.approx([0.5, 1.5])


# ----------------------------------------------------------------------------- the split


def _png(path: Path, colour=(128, 128, 128)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12, 3), colour, np.uint8)).save(path)


def _paths(samples) -> set[str]:
    return {s.path for s in samples}


def test_decisions_apply_to_every_set_and_a_missing_file_is_a_warning(tmp_path):
    root = make_class_folders(tmp_path / "train", per_class=10, size=12)
    val = make_class_folders(tmp_path / "val", per_class=3, size=12, classes=("red", "green"))
    test = make_class_folders(tmp_path / "test", per_class=2, size=12, classes=("blue",))
    excluded = [root / "red/000.png", val / "green/001.png", test / "blue/000.png"]
    relabel = {str(root / "red/001.png"): "blue", str(val / "red/002.png"): "blue", str(test / "blue/001.png"): "red",
               str(tmp_path / "nowhere.png"): "red"}
    cfg = tiny_config(root, tmp_path / "run", **{"data.val_folders": [str(val)], "data.test_folders": [str(test)],
                                                 "data.exclude_files": [str(p) for p in excluded],
                                                 "data.relabel": relabel})
    split = build_split(cfg.data, 0)
    every = _paths(split.train) | _paths(split.val) | _paths(split.test)
    assert not every & {str(p) for p in excluded}
    label = {str(s.path): split.classes[s.label] for s in [*split.train, *split.val, *split.test]}
    assert [label[p] for p in list(relabel)[:3]] == ["blue", "blue", "red"]
    assert split.class_counts("train") == [11, 10, 8]  # blue, green, red
    assert split.decisions["excluded"] == sorted(str(p) for p in excluded)
    assert split.decisions["relabelled"][str(test / "blue/001.png")] == {"from": "blue", "to": "red"}
    assert split.decisions["missing"] == [str(tmp_path / "nowhere.png")]
    assert any("nowhere.png" in w and "ignored" in w for w in split.warnings)


def test_a_relabel_to_a_class_that_does_not_train_is_refused_with_the_field(tmp_path):
    root = make_class_folders(tmp_path / "train", per_class=4, size=12)
    cfg = tiny_config(root, tmp_path / "run", **{"data.relabel": {str(root / "red/000.png"): "purple"}})
    with pytest.raises(ConfigError) as err:
        build_split(cfg.data, 0)
    assert err.value.field == "data.relabel" and "purple" in str(err.value) and "blue, green, red" in str(err.value)
    # an excluded class is no longer a training class either
    cfg = cfg.replace(**{"data.relabel": {str(root / "red/000.png"): "blue"}, "data.exclude_classes": ["blue"]})
    with pytest.raises(ConfigError, match="'blue'"):
        build_split(cfg.data, 0)


@pytest.mark.parametrize("changes", [
    {"data.val_fraction": 0.3},
    {"data.val_fraction": 0.25, "data.test_fraction": 0.2},
    {"data.val_fraction": 0.2, "data.rename_classes": {"green": "red"}},
    {"data.val_fraction": 0.5, "data.exclude_classes": ["green"]},
])
def test_the_window_counts_what_the_engine_splits(tmp_path, changes):
    """The Data step's counts and split (from the raw scan) are the engine's, decisions applied."""
    root = make_class_folders(tmp_path / "data", per_class=9, size=12)
    files = sorted(root.glob("*/*.png"))
    decisions = {"data.exclude_files": [str(files[i]) for i in (0, 1, 10, 20)],
                 "data.relabel": {str(files[i]): "blue" for i in (2, 3, 4, 11)} | {str(files[21]): "red"}}
    cfg = tiny_config(root, tmp_path / "run", **decisions, **changes)
    split = build_split(cfg.data, 0)
    raw = scan_sources([str(root)])
    counts = dataset_view.effective_counts(raw, cfg.data)
    assert list(counts) == split.classes
    engine = [a + b for a, b in zip(split.class_counts("train"), split.class_counts("val"))]
    test = split.class_counts("test")
    assert [n - t for n, t in zip(counts.values(), test)] == engine
    assert dataset_view.split_sizes(counts, cfg.data) == (len(split.train), len(split.val), len(split.test))
    assert dataset_view.effective_index(raw, cfg.data).counts() == counts
    assert "left out" in dataset_view.decisions_summary(raw, cfg.data)
    assert dataset_view.effective_counts(raw, cfg.data) == counts  # the cached keys give the same


# ----------------------------------------------------------------------------- the loss


def _step(weights=None, smoothing=0.0, world=1):
    model = torch.nn.Linear(4, 3)
    return TrainStep(torch.optim.SGD(model.parameters(), lr=0.1), torch.device("cpu"), None,
                     label_smoothing=smoothing, class_weights=weights, dist=Dist(world=world))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_class_weights_in_the_loss_with_smoothing_and_under_torchrun(smoothing):
    gen = torch.Generator().manual_seed(0)
    logits, y = torch.randn(6, 3, generator=gen), torch.tensor([0, 0, 0, 1, 2, 2])
    weights = [0.5, 2.0, 0.5]
    step = _step(weights, smoothing)
    want = torch.nn.functional.cross_entropy(logits, y, weight=torch.tensor(weights), label_smoothing=smoothing)
    assert float(step.loss(logits, step.batch(torch.zeros(6, 4), y))) == pytest.approx(float(want))
    plain = torch.nn.functional.cross_entropy(logits, y, label_smoothing=smoothing)
    assert float(_step(None, smoothing).loss(logits, _step().batch(torch.zeros(6, 4), y))) == pytest.approx(float(plain))
    assert abs(float(want) - float(plain)) > 1e-3  # the weights change the loss
    # torchrun: an image that failed to decode weighs 0, and the rest is the weighted mean of the others
    ddp = _step(weights, smoothing, world=2)
    b = ddp.batch(torch.zeros(6, 4), torch.tensor([0, 0, -1, 1, 2, 2]))
    assert b.weight is not None and b.n_valid == 5
    keep = torch.tensor([0, 1, 3, 4, 5])
    want = torch.nn.functional.cross_entropy(logits[keep], y[keep], weight=torch.tensor(weights),
                                             label_smoothing=smoothing)
    assert float(ddp.loss(logits, b)) == pytest.approx(float(want))
    assert step.criterion.weight is None  # validation loss stays unweighted


# ----------------------------------------------------------------------------- a run


def test_a_run_records_its_decisions_and_weights_and_a_resume_keeps_them(tmp_path):
    from transfer_gui.engine.loop import Trainer

    root = make_class_folders(tmp_path / "data", per_class=12, size=16)
    for i in range(12, 36):
        _png(root / "red" / f"{i:03d}.png", (220, 40, 40))
    moved = str(root / "green/000.png")
    cfg = tiny_config(root, tmp_path / "run", **{"data.exclude_files": [str(root / "red/000.png"), "no/such.png"],
                                                 "data.relabel": {moved: "blue"}, "train.class_weights": "balanced",
                                                 "train.epochs": 1})
    events: list = []
    result = Trainer().fit(cfg, events.append)
    assert result.status == "completed", result.message
    doc = json.loads((tmp_path / "run" / "data_decisions.json").read_text())
    assert doc == {"excluded": [str(root / "red/000.png")], "relabelled": {moved: {"from": "green", "to": "blue"}},
                   "missing": ["no/such.png"]}
    assert "data_decisions.json" in RUN_FILES
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    train = dict(zip(summary["classes"], build_split(cfg.data, 0).class_counts("train")))
    assert train["red"] > 2 * train["blue"]
    assert summary["class_weights"]["blue"] / summary["class_weights"]["red"] == pytest.approx(train["red"] / train["blue"])
    assert np.mean(list(summary["class_weights"].values())) == pytest.approx(1.0)
    assert any(isinstance(e, PhaseChanged) and "class weights in the loss" in e.message for e in events)
    assert any(isinstance(e, Warning) and "no/such.png" in e.message for e in events)
    record = load_run(tmp_path / "run")
    assert record.decisions == doc and record.config.data.relabel == {moved: "blue"}

    resumed = config_mod.load(tmp_path / "run" / "config.toml").replace(**{"train.epochs": 2})
    assert Trainer().fit(resumed, resume=True).status == "completed"
    assert json.loads((tmp_path / "run" / "data_decisions.json").read_text()) == doc


def _grey_classes(root: Path, counts: dict[str, int], seed: int) -> None:
    """Two classes that overlap: each image one grey level drawn around its class's mean, plus a little noise."""
    rng = np.random.default_rng(seed)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            level = rng.normal({"big": 140.0, "small": 110.0}[name], 20.0)
            img = np.clip(level + rng.normal(0, 8, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i:03d}.png")


def _recall(run_dir: Path) -> dict[str, float]:
    doc = json.loads((run_dir / "val_predictions.json").read_text())
    out = {}
    for c, name in enumerate(doc["classes"]):
        rows = [r for r in doc["items"] if r["true"] == c]
        out[name] = sum(r["pred"] == c for r in rows) / len(rows)
    return out


def test_balanced_weights_raise_the_minority_class_recall(tmp_path):
    """40 training images against 8 of two overlapping classes, validated on 30 of each: without
    weights the model leans to the large class. Measured over seeds 0, 1, 2 (scratch script), the
    small class's recall went 0.43 -> 0.77, 0.07 -> 0.73, 0.53 -> 0.80 (big: 0.97 -> 0.83, 1.0 -> 0.7,
    0.97 -> 0.9); the test asks for half the smallest gain. Seed 3 gains less (0.43 -> 0.60), so the
    data's seed stays fixed; the figures are the same on 1 and 2 threads (the head trains on cached
    features), so the outcome does not move with the machine's cores or load."""
    from transfer_gui.engine.loop import Trainer

    _grey_classes(tmp_path / "train", {"big": 40, "small": 8}, seed=0)
    _grey_classes(tmp_path / "val", {"big": 30, "small": 30}, seed=100)
    recall = {}
    for weights in ("none", "balanced"):
        cfg = tiny_config(tmp_path / "train", tmp_path / weights, **{
            "data.val_folders": [str(tmp_path / "val")], "train.class_weights": weights, "train.epochs": 10,
            "layers.head_lr": 0.01, "schedule.name": "constant"})
        assert Trainer().fit(cfg).status == "completed"
        recall[weights] = _recall(tmp_path / weights)
    assert recall["balanced"]["small"] >= recall["none"]["small"] + 0.13, recall


def test_a_relabel_after_cached_features_trains_on_the_new_label(tmp_path):
    """The feature cache is keyed by the files, not their classes: the second run in the same
    process reuses the features of the first and must train the relabelled image in its new class."""
    from transfer_gui.engine.control import RunControl
    from transfer_gui.engine.features import clear
    from transfer_gui.engine.prepare import prepare

    clear()
    data = tmp_path / "data"
    make_class_folders(data, per_class=6, size=32)
    cfg = tiny_config(data, tmp_path / "run", **{"data.val_fraction": 0.0, "data.image_size": 32})
    moved = str(sorted((data / "red").glob("*.png"))[0].resolve())

    def labels_of(c) -> dict[str, int]:
        p = prepare(c, lambda e: None, RunControl())
        try:
            assert p.use_features, "this test is about the cached-features path"
            ds = p.train_loader.dataset
            names = p.split.classes
            return {p.split.train[int(i)].path: names[int(y)] for _x, y, i in ds}
        finally:
            p.close()

    before = labels_of(cfg)
    assert before[moved] == "red"
    after = labels_of(cfg.replace(**{"data.relabel": {moved: "blue"}}))
    assert after[moved] == "blue"
    assert sum(v == "blue" for v in after.values()) == sum(v == "blue" for v in before.values()) + 1


def test_cached_features_take_the_labels_of_the_current_split():
    """A cache hit keeps its features but never its stored labels (only the -1 of a failed decode)."""
    from transfer_gui.engine.features import FeatureSet
    from transfer_gui.engine.loaders import _with_labels_of
    from transfer_gui.engine.scan import Sample

    stale = FeatureSet(torch.zeros(3, 4), torch.tensor([0, 1, -1]), 0.0)
    fresh = _with_labels_of(stale, [Sample("a", 2), Sample("b", 1), Sample("c", 0)])
    assert fresh.labels.tolist() == [2, 1, -1] and fresh.features is stale.features
