"""engine/report.py: one self-contained page, every user text escaped, each section when it applies."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer_gui.engine import metrics, report
from transfer_gui.engine.evaluate import Evaluation

EVIL = '<script>alert("x")</script>&'


def _evaluation(tmp_path: Path, classes: list[str], n: int = 40, temperature: float = 1.0, history=None,
                config=None, calibration=None, images: bool = True) -> Evaluation:
    rng = np.random.default_rng(3)
    c = len(classes)
    labels = np.arange(n) % c
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), labels] += 2.0  # mostly right, some mistakes
    probs = metrics.softmax(logits, temperature)
    paths = []
    for i in range(n):
        path = tmp_path / f"img_{i}.png"
        if images:
            Image.new("RGB", (30, 20), (i * 5 % 255, 90, 160)).save(path)
        paths.append(str(path))
    return Evaluation(list(classes), paths, labels, probs, logits, temperature, metrics.report(probs, labels, classes),
                      source=str(tmp_path / "model.onnx"), data_dir=str(tmp_path), history=history or [],
                      config=config, calibration=calibration or {})


def _no_network(page: str) -> None:
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:|//)', page, re.I)
    assert "url(" not in page and "@import" not in page and "<link" not in page.lower()


def test_class_names_and_paths_are_escaped(tmp_path):
    ev = _evaluation(tmp_path, ["cat", EVIL, "dog"])
    ev.skipped = [{"path": "/x/<b>bad</b>.png", "reason": 'truncated "data"'}]
    page = report.build_html(ev)
    assert EVIL not in page and "<b>bad</b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    assert "&lt;b&gt;bad&lt;/b&gt;.png" in page
    _no_network(page)


def test_sections_of_a_known_run(tmp_path):
    from transfer_gui.config import RunConfig

    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "train_acc": 0.5 + e / 10, "val_acc": 0.4 + e / 10,
                "lrs": {"head": 1e-3 / e, "layer4": 1e-4 / e}} for e in (1, 2, 3)]
    cfg = RunConfig().replace(**{"model.name": "resnet18", "train.epochs": 3})
    calibration = {"temperature": 1.7, "threshold": 0.0, "ece_before": 0.21, "ece_after": 0.04,
                   "fitted_on": "validation", "n": 40}
    ev = _evaluation(tmp_path, ["a", "b", "c"], temperature=1.7, history=history, config=cfg, calibration=calibration)
    page = report.build_html(ev)
    for heading in ("Run settings", "Training", "Per class", "Confusion matrix", "Calibration", "Mistakes"):
        assert f"<h2>{heading}</h2>" in page, heading
    assert "model.name" in page and "resnet18" in page
    assert page.count("<polyline") == 2 + 2 + 2  # loss and accuracy (train, validation), two lr groups
    assert "temperature 1: ECE" in page and "temperature 1.70: ECE" in page  # before and after, from the logits
    assert "ECE 0.210 before" in page and "0.040 after" in page
    assert "macro average" in page and "weighted average" in page
    _no_network(page)


def test_a_folder_evaluation_has_no_run_sections(tmp_path):
    page = report.build_html(_evaluation(tmp_path, ["a", "b"]))
    assert "<h2>Run settings</h2>" not in page and "<h2>Training</h2>" not in page
    assert page.count("ECE") >= 1 and "temperature 1: ECE" not in page  # one reliability series at T = 1


def test_confusion_as_a_table_up_to_20_classes_and_an_image_beyond(tmp_path):
    small = report.build_html(_evaluation(tmp_path, [f"k{i}" for i in range(20)], n=60))
    assert '<table class=confusion>' in small and 'alt="confusion heat map"' not in small
    big_ev = _evaluation(tmp_path, [f"k{i}" for i in range(21)], n=63)
    big = report.build_html(big_ev)
    assert '<table class=confusion>' not in big
    uri = re.search(r'alt="confusion heat map" src="data:image/png;base64,([^"]+)"', big).group(1)
    import io

    heat = Image.open(io.BytesIO(base64.b64decode(uri)))
    cell = heat.width // 21
    assert heat.width == heat.height == 21 * cell
    confusion = np.asarray(big_ev.metrics["confusion"])
    t = int(np.argmax(np.diag(confusion)))
    assert heat.getpixel((t * cell + cell // 2, t * cell + cell // 2))[2] > 150  # diagonal: blue
    assert "top-5" in big  # more than 5 classes


def test_mistakes_gallery_most_confident_first_with_heat_maps(tmp_path):
    ev = _evaluation(tmp_path, ["a", "b", "c"], n=60)
    asked: list[str] = []

    def heatmap_for(path):
        asked.append(path)
        return Image.new("RGB", (30, 20), (255, 0, 0))

    page = report.build_html(ev, heatmap_for=heatmap_for)
    wrong = np.flatnonzero(ev.preds != ev.labels)
    assert 0 < wrong.size <= report.GALLERY_MAX
    expected = [ev.paths[i] for i in wrong[np.argsort(-ev.confidences[wrong], kind="stable")]]
    assert asked == expected  # only the mistakes, the most confident first
    assert page.count('src="data:image/jpeg;base64,') == 2 * wrong.size
    assert f"{wrong.size} of {wrong.size} mistakes" in page
    assert "Heat maps (" not in page  # a maker that does not say its method is not named
    heatmap_for.method = "Score-CAM"
    assert "Heat maps (Score-CAM) of the predicted class" in report.build_html(ev, heatmap_for=heatmap_for)


def test_unreadable_mistake_image_still_listed(tmp_path):
    ev = _evaluation(tmp_path, ["a", "b"], images=False)
    page = report.build_html(ev)
    assert "can no longer be read" in page


def test_line_chart_leaves_out_non_finite_points():
    svg = report.line_chart("loss", [("val", [1, 2, 3], [1.0, float("nan"), 0.5])])
    points = re.search(r'points="([^"]+)"', svg).group(1).split()
    assert len(points) == 2
    assert report.line_chart("loss", [("val", [1], [float("nan")])]) == ""


def test_report_imports_no_torch():
    code = ("import sys, transfer_gui.engine.report, transfer_gui.engine.evaluate; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.parametrize("value, text", [(0.1234, "12.3%"), (None, "–"), (float("nan"), "–")])
def test_percent_format(value, text):
    assert report._pct(value) == text
