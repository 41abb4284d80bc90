"""The window's model without Qt: the project (config, file, learned state), its signals, what
the Data step shows and a run's history. None of it may load Qt."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from transfer_gui import config as config_mod
from transfer_gui.state import dataset_view
from transfer_gui.state.project import GroupInfo, Project, default_config, freeze_changes, frozen_set
from transfer_gui.state.signals import Signal


class Recorder:
    """Every emission of a project's signals, in order: (signal name, args)."""

    NAMES = ("config_changed", "state_changed", "scan_changed", "groups_changed", "run_changed", "runs_changed",
             "training_changed", "config_error")

    def __init__(self, project: Project):
        self.calls: list[tuple[str, tuple]] = []
        for name in self.NAMES:
            getattr(project, name).connect(lambda *args, n=name: self.calls.append((n, args)))

    def names(self) -> list[str]:
        return [n for n, _a in self.calls]

    def clear(self) -> None:
        self.calls.clear()


# ----------------------------------------------------------------------------- the signal


def test_signal_calls_slots_in_order_and_disconnects():
    sig, seen = Signal(), []
    first = sig.connect(lambda x: seen.append(("a", x)))
    sig.connect(lambda x: seen.append(("b", x)))
    sig.emit(1)
    sig.disconnect(first)
    sig.emit(2)
    assert seen == [("a", 1), ("b", 1), ("b", 2)]
    with pytest.raises(ValueError):
        sig.disconnect(first)
    sig.disconnect()
    sig.emit(3)
    assert seen[-1] == ("b", 2) and len(sig) == 0
    with pytest.raises(TypeError):
        sig.connect("not callable")


def test_signal_bound_methods_and_disconnect_during_emit():
    sig, seen = Signal(), []

    class Receiver:
        def __init__(self, name):
            self.name = name

        def on(self, value):
            seen.append((self.name, value))
            if self.name == "a" and b.on in sig._slots:
                sig.disconnect(b.on)  # b is not called in this emission any more

    a, b = Receiver("a"), Receiver("b")
    sig.connect(a.on)
    sig.connect(b.on)
    sig.emit(1)
    sig.emit(2)
    assert seen == [("a", 1), ("a", 2)]


def test_a_failing_slot_is_reported_and_the_others_still_run(monkeypatch):
    sig, seen, reported = Signal(), [], []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: reported.append(exc[1]))
    sig.connect(lambda: 1 / 0)
    sig.connect(lambda: seen.append("second"))
    sig.emit()
    assert seen == ["second"]
    assert len(reported) == 1 and isinstance(reported[0], ZeroDivisionError)


# ----------------------------------------------------------------------------- the project


def test_update_applies_marks_dirty_and_names_the_keys():
    p = Project()
    rec = Recorder(p)
    assert p.cfg == default_config() and not p.dirty and p.title == "Untitled"
    assert p.update({"train.epochs": 3, "optim.name": "sgd"}) is True
    assert p.cfg.train.epochs == 3 and p.cfg.optim.name == "sgd" and p.dirty
    assert rec.calls == [("state_changed", ()), ("config_changed", ({"train.epochs", "optim.name"},))]
    rec.clear()
    assert p.set("train.epochs", 4) is True
    assert rec.calls == [("config_changed", ({"train.epochs"},))]  # already dirty: no state change
    rec.clear()
    assert p.set("train.epochs", 4) is True  # no change, nothing to tell
    assert rec.calls == []


def test_a_refused_value_keeps_the_config_and_says_why():
    p = Project()
    rec = Recorder(p)
    before = p.cfg
    assert p.set("train.batch_size", "many") is False
    assert p.cfg == before and not p.dirty
    assert rec.names() == ["config_error", "config_changed"]  # widgets show the kept value again
    assert "train.batch_size" in rec.calls[0][1][0]
    assert rec.calls[1][1][0] == {"train.batch_size"}
    assert p.set("no.such", 1) is False


def test_save_open_and_new(tmp_path):
    p = Project()
    rec = Recorder(p)
    p.update({"train.epochs": 7, "data.val_fraction": 0.3})
    with pytest.raises(config_mod.ConfigError):
        p.save()  # no file name yet
    target = p.save(tmp_path / "a.toml")
    assert target == tmp_path / "a.toml" and target.is_file()
    assert p.path == target.absolute() and not p.dirty and p.title == "a.toml"
    assert p.runs_dir() == tmp_path / "a-runs"

    other = Project()
    rec2 = Recorder(other)
    other.open(target)
    assert other.cfg == p.cfg and other.path == target.absolute() and not other.dirty
    assert {"state_changed", "config_changed", "run_changed", "runs_changed"} <= set(rec2.names())
    assert ("config_changed", ({""},)) in rec2.calls

    rec.clear()
    p.set_run(tmp_path / "run", object())
    assert p.has_trained
    p.new()
    assert p.cfg == default_config() and p.path is None and p.record is None and p.run_dir is None
    assert not p.has_trained and p.runs == [] and ("config_changed", ({""},)) in rec.calls

    (tmp_path / "bad.toml").write_text("[train]\nepochs = 'x'\n")
    with pytest.raises(config_mod.ConfigError, match="train.epochs"):
        other.open(tmp_path / "bad.toml")
    assert other.cfg == p.cfg.replace(**{"train.epochs": 7, "data.val_fraction": 0.3})  # kept


def _make_run(folder: Path, model: str = "resnet18", epochs: int = 2) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(f'[model]\nname = "{model}"\n')
    rows = [json.dumps({"epoch": i, "val_acc": 0.5 + 0.1 * i}) for i in range(epochs)]
    (folder / "metrics.jsonl").write_text("\n".join(rows) + "\n")
    (folder / "summary.json").write_text(json.dumps({"status": "completed"}))
    return folder


def test_runs_of_a_project_and_opened_ones(tmp_path):
    p = Project()
    rec = Recorder(p)
    p.save(tmp_path / "proj.toml")
    _make_run(tmp_path / "proj-runs" / "20260101-000000")
    elsewhere = _make_run(tmp_path / "cluster" / "run7", model="efficientnet_lite0", epochs=3)
    p.opened_runs.append(elsewhere)
    found = p.find_runs()
    assert {r.run_dir.name for r in found} == {"20260101-000000", "run7"}
    rec.clear()
    p.set_runs(found)
    assert p.runs == found and rec.names() == ["runs_changed"]
    p.set_run(elsewhere, None)
    assert p.run_dir == elsewhere and not p.has_trained and rec.names()[-1] == "run_changed"


def test_saving_an_untitled_project_keeps_its_runs_listed(tmp_path):
    p = Project()
    run = _make_run(tmp_path / "untitled-run")
    from transfer_gui.engine import runs as runs_mod

    p.set_runs([runs_mod.run_info(run)])
    p.save(tmp_path / "now.toml")
    assert p.opened_runs == [run]
    assert [r.run_dir for r in p.find_runs()] == [run]


def test_learned_state_and_training_flags():
    p = Project()
    rec = Recorder(p)
    p.set_scanning(True)
    assert p.scanning and rec.names() == ["scan_changed"]
    p.set_scan(None, "no images")
    assert not p.scanning and p.scan_error == "no images"
    p.set_val_scan("12 validation images", "")
    assert p.val_scan == "12 validation images"
    info = GroupInfo("m", ["stem", "layer1", "head"], [10, 20, 30], 15.0)
    p.set_groups(info)
    assert p.groups is info
    rec.clear()
    p.set_model_problem("")
    assert rec.calls == []  # unchanged: nothing to tell
    p.set_model_problem("needs a download")
    assert p.model_problem == "needs a download" and rec.names() == ["groups_changed"]
    rec.clear()
    p.set_paused(True)
    assert not p.paused  # not training
    p.set_training(True)
    p.set_paused(True)
    assert p.training and p.paused
    p.set_training(False)
    assert not p.paused
    assert rec.calls == [("training_changed", (False,)), ("training_changed", (True,)),
                         ("training_changed", (True,)), ("training_changed", (False,))]


def test_counts_from_a_scan(image_folders):
    from transfer_gui.engine.scan import scan_sources

    p = Project()
    p.update({"data.folders": [str(image_folders)], "data.val_fraction": 0.2, "train.batch_size": 4})
    p.set_scan(scan_sources([str(image_folders)]))
    assert p.class_counts() == {"blue": 10, "green": 10, "red": 10}
    assert p.split_counts() == (24, 6) and p.steps_per_epoch() == 6
    p.update({"data.rename_classes": {"blue": "green"}, "data.exclude_classes": ["red"]})
    assert p.class_counts() == {"green": 20} and p.num_classes() == 1
    rows = dataset_view.class_rows(p.scan, p.cfg.data)
    assert [(r.original, r.name, r.excluded) for r in rows] == [("blue", "green", False), ("green", "green", False),
                                                                ("red", "red", True)]


def test_frozen_groups_round_trip():
    names = ["stem", "layer1", "layer2", "head"]
    L = default_config().layers
    assert frozen_set(names, L) == {"stem", "layer1", "layer2"}  # train from the head
    assert freeze_changes(names, {"stem", "layer1"}) == {"layers.train_from": "layer2", "layers.frozen": []}
    assert freeze_changes(names, set()) == {"layers.train_from": "", "layers.frozen": []}
    assert freeze_changes(names, {"layer1"}) == {"layers.train_from": "", "layers.frozen": ["layer1"]}
    cfg = default_config().replace(**freeze_changes(names, {"layer1", "head"}))
    assert frozen_set(names, cfg.layers) == {"layer1", "head"}
    assert GroupInfo("m", names, [1, 2, 3, 8], 2.0).counts(5) == [1, 2, 3, 10]


# ----------------------------------------------------------------------------- no Qt at all

NO_QT_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    import transfer_gui.state
    from transfer_gui.engine import events as ev
    from transfer_gui.engine.scan import scan_sources
    from transfer_gui.state import dataset_view
    from transfer_gui.state.project import Project
    from transfer_gui.state.run_monitor import RunMonitor, fmt_duration

    data, tmp = Path(sys.argv[1]), Path(sys.argv[2])
    p = Project()
    changed, errors = [], []
    p.config_changed.connect(changed.append)
    p.config_error.connect(errors.append)
    assert p.update({"data.folders": [str(data)], "train.epochs": 2})
    assert not p.set("train.epochs", -1) and errors and p.cfg.train.epochs == 2
    p.set_scan(scan_sources([str(data)]))
    assert p.num_classes() == 3 and sum(p.split_counts()) == 30
    assert dataset_view.effective_index(p.scan, p.cfg.data).classes == ["blue", "green", "red"]
    saved = p.save(tmp / "p.toml")
    q = Project()
    q.open(saved)
    assert q.cfg == p.cfg and not q.dirty
    q.set_runs(q.find_runs())
    q.set_run(None, None)
    q.set_training(True)
    q.set_training(False)
    m = RunMonitor()
    m.ingest(ev.PhaseChanged("train"))
    assert m.phase == "train" and fmt_duration(75) == "1:15"
    assert changed[0] == {"data.folders", "train.epochs"}
    bad = sorted(n for n in sys.modules if n.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph"))
    print("qt modules:", bad)
    sys.exit(1 if bad else 0)
""")


def test_the_state_package_never_loads_qt(image_folders, tmp_path):
    proc = subprocess.run([sys.executable, "-c", NO_QT_SCRIPT, str(image_folders), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "qt modules: []" in proc.stdout
