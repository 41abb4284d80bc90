"""The sample `predict` output in the docs has the shape of what the README's predict command
prints: the image as given, then the top three classes with their probabilities. The numbers are
the docs' to keep true (they came from the README's commands on a fresh clone); the shape is held
here against the real command on the same sample image, with a tiny model trained for the test."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import tiny_config
from transfer_gui import cli

ROOT = Path(__file__).resolve().parents[1]
ENTRY = re.compile(r"^(\S+) (\d{1,3}\.\d)%$")


def _readme_predict_image() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.search(r"^transfer-gui predict sample\.onnx (\S+)$", readme, re.M).group(1)


def _docs_sample(image: str) -> str:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    samples = re.findall(rf"`({re.escape(image)}: [^`]+)`", text)
    assert len(samples) == 1, f"docs/cli.md should show the predict line for {image} once, found {samples}"
    return samples[0]


def _shape(line: str, classes: set[str]) -> tuple[str, int]:
    """(the path, the number of classes shown), checking each is 'Class NN.N%', highest first."""
    path, sep, rest = line.partition(": ")
    assert sep, line
    entries = [ENTRY.match(e) for e in rest.split(", ")]
    assert all(entries), line
    assert {m.group(1) for m in entries} <= classes, line
    probs = [float(m.group(2)) for m in entries]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 100.05, line
    return path, len(entries)


def test_the_docs_predict_sample_has_the_shape_of_the_real_output(tmp_path, monkeypatch, capsys):
    image = _readme_predict_image()
    assert (ROOT / image).is_file()
    data = ROOT / "resources" / "sample_data"
    classes = {d.name for d in data.iterdir() if d.is_dir()}
    from transfer_gui.engine.loop import Trainer

    result = Trainer().fit(tiny_config(data, tmp_path / "run", **{"train.epochs": 1, "data.image_size": 32}))
    assert result.status == "completed", result.message
    monkeypatch.chdir(ROOT)  # the README's commands run in the clone's root
    assert cli.main(["predict", str(tmp_path / "run"), image]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1, printed
    assert _shape(_docs_sample(image), classes) == _shape(printed[0], classes) == (image, 3)
