from pathlib import Path

import pytest

from transfer_gui import config as C
from transfer_gui.config import ConfigError, RunConfig


def test_round_trip_through_toml(tmp_path: Path):
    cfg = RunConfig().replace(**{"data.folders": ["/a", "/b"], "layers.lr": {"stem": 1e-5, "head": 1e-3},
                                 "layers.unfreeze_at": {"layer4": 2}, "train.epochs": 7,
                                 "data.rename_classes": {"cat": "feline"}, "schedule.warmup_epochs": 0.5})
    path = tmp_path / "run.toml"
    C.save(cfg, path)
    again = C.load(path)
    assert again == cfg
    assert again.data.folders == ("/a", "/b")
    assert again.layers.lr["stem"] == 1e-5


@pytest.mark.parametrize("text, field", [
    ("[train]\nbatch_size = 0\n", "train.batch_size"),
    ("[train]\nbatch_size = 'big'\n", "train.batch_size"),
    ("[layers]\nhead_lr = -0.1\n", "layers.head_lr"),
    ("[layers.lr]\nstem = -1.0\n", "layers.lr.stem"),
    ("[optim]\nname = 'adam'\n", "optim.name"),
    ("[schedule]\nname = 'linear'\n", "schedule.name"),
    ("[data]\nval_fraction = 1.5\n", "data.val_fraction"),
    ("[data.augment]\nhflip = 'yes'\n", "data.augment.hflip"),
    ("[train]\ndevice = 'tpu'\n", "train.device"),
])
def test_bad_values_name_the_field(text, field):
    with pytest.raises(ConfigError) as info:
        C.loads(text, "p.toml")
    assert field in str(info.value)
    assert "p.toml" in str(info.value)


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"layers\.frezen: unknown key \(did you mean 'frozen'\?\)"):
        C.loads("[layers]\nfrezen = ['stem']\n")
    with pytest.raises(ConfigError, match="traning"):
        C.loads("[traning]\nepochs = 3\n")


def test_invalid_toml_names_the_file():
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        C.loads("[train\nepochs=", "broken.toml")


def test_overrides_parse_toml_values():
    cfg = C.apply_overrides(RunConfig(), ["train.epochs=3", "layers.head_lr=3e-4", "model.name=resnet18",
                                          "layers.frozen=['stem','layer1']", "data.augment.enabled=false"])
    assert cfg.train.epochs == 3 and cfg.layers.head_lr == 3e-4 and cfg.model.name == "resnet18"
    assert cfg.layers.frozen == ("stem", "layer1") and cfg.data.augment.enabled is False
    with pytest.raises(ConfigError, match="train.epochs"):
        C.apply_overrides(RunConfig(), ["train.epochs=-1"])
    with pytest.raises(ConfigError, match="nosuch"):
        C.apply_overrides(RunConfig(), ["nosuch.key=1"])


def test_check_paths_names_missing_folder(tmp_path: Path):
    cfg = RunConfig().replace(**{"data.folders": [str(tmp_path), str(tmp_path / "missing")]})
    with pytest.raises(ConfigError, match=r"data\.folders\[1\]: folder does not exist"):
        C.check_paths(cfg)
    with pytest.raises(ConfigError, match="data.folders"):
        C.check_paths(RunConfig())
    cfg = RunConfig().replace(**{"data.folders": [str(tmp_path)], "model.weights": str(tmp_path / "w.pth")})
    with pytest.raises(ConfigError, match="model.weights"):
        C.check_paths(cfg)


@pytest.mark.parametrize("text, field", [
    ("[layers]\nhead_lr = inf\n", "layers.head_lr"),
    ("[optim]\nweight_decay = nan\n", "optim.weight_decay"),
    ("[layers.lr]\nstem = inf\n", "layers.lr.stem"),
    ("[train]\nseed = 100000000000000000\n", "train.seed"),
])
def test_non_finite_numbers_and_huge_seeds_are_refused(text, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        C.loads(text)


def test_two_mistakes_are_named_at_once():
    # one of the wrong type (said first: the file is read before its values are checked) and two
    # out of range, in different sections
    text = "[train]\nbatch_size = 'big'\nepochs = 0\n\n[optim]\nname = 'adam'\n"
    with pytest.raises(ConfigError) as info:
        C.loads(text, "hand.toml")
    exc = info.value
    assert [f for f, _ in exc.problems] == ["train.batch_size", "optim.name", "train.epochs"]
    assert exc.field == "train.batch_size"
    message = str(exc)
    assert message.startswith("hand.toml: 3 problems: (1) train.batch_size: expected a whole number")
    assert "(2) optim.name: must be one of adamw, sgd, got 'adam'; (3) train.epochs: must be >= 1, got 0" in message


def test_an_unknown_key_does_not_hide_the_other_mistakes():
    with pytest.raises(ConfigError) as info:
        C.loads("[layers]\nfrezen = ['stem']\nhead_lr = -1.0\n[data.augment]\nrotation = 400.0\n")
    assert [f for f, _ in info.value.problems] == ["layers.frezen", "data.augment.rotation", "layers.head_lr"]


def test_a_non_finite_value_is_one_problem_not_two():
    with pytest.raises(ConfigError) as info:
        C.loads("[layers]\nhead_lr = nan\n")
    assert info.value.problems == [("layers.head_lr", "must be a finite number, got nan")]
    assert str(info.value) == "<config>: layers.head_lr: must be a finite number, got nan"
