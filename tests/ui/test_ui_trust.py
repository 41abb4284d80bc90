"""The Results step answers "can I trust this model?" on a real run with 25 classes and a test
set: the Validation/Test switch, the confusion heat map with clickable cells, the threshold
explorer's figures and the stored threshold, the reliability diagram, the report, and
Classify a folder. Every figure shown is checked against a count made here from the run's files."""

from __future__ import annotations

import colorsys
import csv
import json
import re

import numpy as np
import pytest
from PIL import Image

from transfer_gui.ui import dialogs

from .helpers import wait_for

N_CLASSES = 25


@pytest.fixture(scope="module")
def many_class_run(tmp_path_factory):
    """25 colour classes (names that share long prefixes) with validation and test shares."""
    from transfer_gui.config import RunConfig
    from transfer_gui.engine.loop import Trainer

    root = tmp_path_factory.mktemp("trust")
    rng = np.random.default_rng(0)
    for i in range(N_CLASSES):
        folder = root / "data" / f"eastern_{'bluebird' if i % 2 else 'bobolink'}_{i:02d}"
        folder.mkdir(parents=True)
        rgb = np.array(colorsys.hsv_to_rgb(i / N_CLASSES, 0.8, 0.9)) * 255
        for k in range(10):
            pixels = np.clip(rgb + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(folder / f"{k:02d}.png")
    cfg = RunConfig().replace(**{"data.folders": [str(root / "data")], "data.image_size": 32,
                                 "data.augment.enabled": False, "data.val_fraction": 0.3, "data.test_fraction": 0.2,
                                 "train.epochs": 2, "train.batch_size": 32, "layers.head_lr": 3e-3,
                                 "output.dir": str(root / "run")})
    result = Trainer().fit(cfg)
    assert result.status == "completed", result.message
    return root / "run", root


def _open(qtbot, w, run_dir):
    w.results.open_run(str(run_dir))
    wait_for(qtbot, lambda: w.project.record is not None, 60)
    return w.results


def _hand_probs(run_dir, which):
    logits = np.load(run_dir / f"{which}_logits.npy").astype(np.float64)
    t = json.loads((run_dir / "calibration.json").read_text())["temperature"]
    z = logits / t
    p = np.exp(z - z.max(1, keepdims=True))
    items = json.loads((run_dir / f"{which}_predictions.json").read_text())["items"]
    return p / p.sum(1, keepdims=True), np.array([it["true"] for it in items])


def test_switching_to_the_test_set_shows_its_own_figures(qtbot, window, many_class_run):
    run_dir, _ = many_class_run
    page = _open(qtbot, window, run_dir)
    assert [page.set_choice.itemText(i) for i in range(page.set_choice.count())] == ["Validation", "Test"]
    assert page.set_choice.isEnabled()
    for index, which in enumerate(("val", "test")):
        page.set_choice.setCurrentIndex(index)
        page.set_choice.activated.emit(index)
        probs, labels = _hand_probs(run_dir, which)
        acc = float(np.mean(probs.argmax(1) == labels))
        assert page.view.which == which and page.view.n == len(labels)
        assert f"top-1 accuracy <b>{acc:.1%}</b>" in page.quality.headline.text()
        top5 = float(np.mean([y in np.argsort(-row)[:5] for row, y in zip(probs, labels)]))
        assert f"top-5 <b>{top5:.1%}</b>" in page.quality.headline.text()
    assert page.quality.headline.text().startswith("<b>Test</b>")


def test_many_classes_get_a_heat_map_whose_cells_open_their_images(qtbot, window, many_class_run):
    run_dir, _ = many_class_run
    page = _open(qtbot, window, run_dir)
    confusion = page.quality.confusion
    assert confusion.currentWidget() is confusion.heatmap
    matrix = confusion.heatmap.matrix
    probs, labels = _hand_probs(run_dir, "val")
    assert matrix.shape == (N_CLASSES, N_CLASSES) and matrix.sum() == len(labels)
    assert np.array_equal(np.diag(matrix), [np.sum((labels == k) & (probs.argmax(1) == k)) for k in range(N_CLASSES)])
    ticks = confusion.heatmap.plot.getPlotItem().getAxis("left")._tickLevels[0]
    assert len({text for _pos, text in ticks}) == N_CLASSES  # the names stay apart
    pairs = page.quality.pairs
    if pairs.item(0).data(256):  # a mistake exists: its pair opens the gallery on those images
        true, pred = pairs.item(0).data(256)
        expected = int(np.sum((labels == true) & (probs.argmax(1) == pred)))
        assert f": {expected} image(s)" in pairs.item(0).text()
        pairs.itemClicked.emit(pairs.item(0))
        assert page.tabs.currentWidget() is page.mistakes
        wait_for(qtbot, lambda: page.mistakes.list.count() == expected)
    # clicking a cell of the map chooses that pair
    with qtbot.waitSignal(confusion.cell_chosen, timeout=5000) as blocker:
        confusion.heatmap.cell_chosen.emit(3, 3)
    assert blocker.args == [3, 3]


def test_threshold_explorer_and_stored_threshold(qtbot, window, many_class_run):
    from transfer_gui.engine.predict import Predictor

    run_dir, _ = many_class_run
    page = _open(qtbot, window, run_dir)
    explorer = page.confidence.explorer
    probs, labels = _hand_probs(run_dir, "val")
    explorer.slider.setValue(20)
    answered = probs.max(1) >= 0.20
    accuracy = float(np.mean(probs.argmax(1)[answered] == labels[answered])) if answered.any() else 0.0
    assert f"answers <b>{int(answered.sum())}</b> of {len(labels)}" in explorer.value_label.text()
    assert f"right on <b>{accuracy:.1%}</b>" in explorer.value_label.text()
    explorer.store_btn.click()
    wait_for(qtbot, lambda: "stored" in page.action_note.text(), 60)
    assert json.loads((run_dir / "calibration.json").read_text())["threshold"] == pytest.approx(0.20)
    assert Predictor.load(run_dir).threshold == pytest.approx(0.20)
    wait_for(qtbot, lambda: "Stored with the model: 20%" in explorer.stored_label.text(), 60)
    reliability = page.confidence.reliability
    assert "ECE" in reliability.label.text() and reliability.after.getData()[0] is not None


def test_save_report_and_classify_a_folder(qtbot, window, many_class_run, ui_env, monkeypatch):
    run_dir, root = many_class_run
    page = _open(qtbot, window, run_dir)
    out = ui_env["tmp"] / "report"
    monkeypatch.setattr(dialogs, "choose_folder", lambda *a: str(out))
    page.report_btn.click()
    wait_for(qtbot, lambda: (out / "report.html").is_file(), 120)
    html = (out / "report.html").read_text(encoding="utf-8")
    # self-contained: nothing fetched (an SVG's xmlns names a namespace, it is not loaded)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html) and "<script" not in html
    assert "url(http" not in html and "@import" not in html
    assert "eastern_bluebird_01" in html and (out / "metrics.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    mistakes = metrics["n"] - round(metrics["accuracy"] * metrics["n"])
    assert html.count('alt="heat map of ') == min(mistakes, 48)  # every mistake shown has its Grad-CAM overlay
    # classify a folder: one row per image, the same classes as predict, saved as CSV
    folder = root / "data" / "eastern_bobolink_00"
    monkeypatch.setattr(dialogs, "choose_folder", lambda *a: str(folder))
    page.classify_btn.click()
    dialog = page.classify_dialog
    wait_for(qtbot, lambda: dialog.result is not None, 120)
    assert dialog.table.rowCount() == 10
    saved = ui_env["tmp"] / "classified.csv"
    monkeypatch.setattr(dialogs, "save_file", lambda *a: str(saved))
    dialog.save_btn.click()
    rows = list(csv.DictReader(saved.open(encoding="utf-8")))
    assert len(rows) == 10 and {r["path"] for r in rows} == {str(p) for p in sorted(folder.glob("*.png"))}
    assert all(abs(sum(float(r[c]) for c in dialog.result["classes"]) - 1.0) < 1e-3 for r in rows)
    dialog.close()


def test_saving_a_report_shows_its_progress_and_can_be_cancelled(qtbot, window, many_class_run, ui_env, monkeypatch):
    import threading

    from transfer_gui.engine import evaluate, explain, report
    from transfer_gui.ui.pages import results_page

    run_dir, _ = many_class_run
    total = report.gallery_size(evaluate.evaluation_from_run(run_dir, "val"))
    assert total >= 3  # enough heat maps to stop between two of them
    page = _open(qtbot, window, run_dir)
    gate, drawn, ended = threading.Event(), [], threading.Event()

    def maker(_run):
        def draw(path):
            drawn.append(path)
            if len(drawn) >= 2:
                gate.wait(60)  # the second heat map waits for the test
            return None
        return draw

    original = results_page.report_job

    def job(task, *args, **kwargs):
        try:
            return original(task, *args, **kwargs)
        finally:
            ended.set()

    monkeypatch.setattr(explain, "overlay_maker", maker)
    monkeypatch.setattr(results_page, "report_job", job)
    out = ui_env["tmp"] / "cancelled-report"
    monkeypatch.setattr(dialogs, "choose_folder", lambda *a: str(out))
    page.report_btn.click()
    wait_for(qtbot, lambda: f"heat map 1 of {total} mistakes" in page.action_note.text(), 120)
    assert page.report_cancel.isVisible()
    page.report_cancel.click()
    gate.set()
    wait_for(qtbot, ended.is_set, 60)
    assert len(drawn) == 2  # stopped before the third heat map
    assert not (out / "report.html").exists() and not (out / "metrics.json").exists()
    assert "cancelled" in page.action_note.text() and not page.report_cancel.isVisible()
