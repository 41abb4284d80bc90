"""The Results and Export steps on a run folder opened from disk (as if trained elsewhere):
confusion matrix, per-class metrics, mistakes sorted by confidence, skipped files, “Try it”,
and exports that fail with a message and leave nothing behind."""

from __future__ import annotations

import pytest

from transfer_gui.ui import dialogs
from transfer_gui.ui.steps import readiness

from .helpers import drop_paths, make_class_folders, wait_for


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A real run made by the engine alone, with a hard class pair so there are mistakes."""
    from transfer_gui.config import RunConfig
    from transfer_gui.engine.loop import Trainer

    root = tmp_path_factory.mktemp("cluster")
    folders = make_class_folders(root / "data", {"red": 16, "grey": 16, "blue": 16}, seed=3)
    (folders[0] / "zz_empty.png").write_bytes(b"")
    cfg = RunConfig().replace(**{"data.folders": [str(root / "data")], "data.image_size": 64,
                                 "data.augment.enabled": False, "layers.train_from": "head",
                                 "layers.head_lr": 1e-4, "train.epochs": 1, "train.batch_size": 16,
                                 "data.val_fraction": 0.5, "output.dir": str(root / "run")})
    result = Trainer().fit(cfg)
    assert result.status == "completed", result.message
    return root / "run", folders


def test_open_run_folder_shows_matrix_metrics_mistakes(qtbot, window, finished_run, monkeypatch):
    w, p = window, window.project
    run_dir, folders = finished_run
    assert readiness(p, "Results")
    monkeypatch.setattr(dialogs, "choose_folder", lambda *a: str(run_dir))
    w.act_open_run.trigger()
    wait_for(qtbot, lambda: p.record is not None, 30)
    assert w.current_step() == "Results" and readiness(p, "Results") == ""
    rec = p.record
    n = len(rec.classes)
    table = w.results.quality.confusion.table
    matrix = [[int(table.item(i, j).text()) for j in range(n)] for i in range(n)]
    assert matrix == rec.confusion() and sum(map(sum, matrix)) == len(rec.predictions) == 24
    recall = [matrix[i][i] / sum(matrix[i]) for i in range(n)]  # counted here, not by the app's metrics
    per_class = w.results.quality.per_class
    assert per_class.rowCount() == n
    shown = {per_class.item(r, 0).text(): per_class.item(r, 2).text() for r in range(n)}
    assert shown[rec.classes[0]] == f"{recall[0]:.1%}"
    averages = w.results.quality.averages
    assert averages.item(0, 0).text() == "macro average" and averages.item(0, 2).text() == f"{sum(recall) / n:.1%}"
    assert "1 skipped" in w.results.skipped_btn.text()
    # mistakes: one tile per wrong prediction, most confident first, then the other way round
    wrong = [q for q in rec.predictions if q["true"] != q["pred"]]
    gallery = w.results.mistakes
    assert gallery.list.count() == len(wrong)
    if len(wrong) >= 2:
        conf = gallery.confidences()
        assert conf == sorted(conf, reverse=True)
        gallery.sort.setCurrentIndex(1)
        assert gallery.confidences() == sorted(conf)
        assert "→" in gallery.list.item(0).text() and "sure" in gallery.list.item(0).text()
    else:
        assert gallery.count.text()
    # try it, by dropping an image on the Try-it panel
    w.results.tabs.setCurrentWidget(w.results.try_it)
    assert drop_paths(w.results.try_it, [folders[2] / "000.png"]) == (True, True)
    wait_for(qtbot, lambda: len(w.results.try_it.results) == 3, 60)
    probs = [pr for _c, pr in w.results.try_it.results]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-3
    assert w.results.try_it.bars[0].format().endswith("%")


def test_export_failure_is_reported_and_leaves_nothing(qtbot, window, finished_run, ui_env):
    w, tmp = window, ui_env["tmp"]
    run_dir, _ = finished_run
    w.results.open_run(str(run_dir))
    wait_for(qtbot, lambda: w.project.record is not None, 30)
    w.go_to("Export")
    assert "best epoch" in w.export.source.text()
    blocker = tmp / "not_a_folder"
    blocker.write_text("a file where the export folder should be")
    w.export.set_formats(["safetensors"])
    w.export.folder.setText(str(blocker / "sub"))
    w.export.export()
    wait_for(qtbot, lambda: not w.tasks.running("export"), 60)
    assert "Export failed" in w.export.message.text() or any(s == "error" for s, _f, _r in w.export.reports)
    assert not (blocker / "sub").exists()
    # and a good one: safetensors and TorchScript
    out = tmp / "out"
    w.export.set_formats(["safetensors", "torchscript"])
    w.export.folder.setText(str(out))
    w.export.export_btn.click()
    wait_for(qtbot, lambda: bool(w.export.reports) and not w.tasks.running("export"), 120)
    assert [s for s, _f, _r in w.export.reports] == ["ok", "ok"], w.export.reports
    assert sorted(p.name for p in out.iterdir()) == ["run.safetensors", "run.torchscript.pt"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    assert "Wrote 2 file(s)" in w.export.message.text()
    from transfer_gui.engine.predict import Predictor

    model = Predictor.load(out / "run.safetensors")
    assert sorted(model.classes) == ["blue", "grey", "red"]
