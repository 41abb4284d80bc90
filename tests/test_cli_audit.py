"""transfer-gui audit: refusals before torch, and the audit.json it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import make_class_folders
from transfer_gui import cli


def _refusal(argv: list[str], cwd) -> tuple[int, str, bool]:
    """(exit code, stderr, torch imported?) of the command in a fresh interpreter."""
    code = ("import sys; from transfer_gui import cli\n"
            "try:\n    rc = cli.main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('torch' in sys.modules); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=cwd, timeout=120)
    return p.returncode, p.stderr, p.stdout.strip() == "True"


@pytest.mark.parametrize("argv, words", [
    (["audit", "--data", "nowhere", "--out", "out"], "folder does not exist: nowhere"),
    (["audit", "--data", "data", "--out", "afile.txt"], "is a file"),
    (["audit", "--data", "data", "--out", "out", "--folds", "1"], "--folds must be at least 2"),
    (["audit", "--data", "data", "--out", "out", "--model", "no_such_model_xyz"], "no_such_model_xyz"),
    (["audit", "--data", "data"], "--out"),
])
def test_bad_input_exits_2_with_one_line_before_torch(tmp_path, argv, words):
    make_class_folders(tmp_path / "data", per_class=2, size=8)
    (tmp_path / "afile.txt").write_text("x")
    rc, err, torch_loaded = _refusal(argv, tmp_path)
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1
    assert err.startswith("transfer-gui: error:") and not torch_loaded


def test_audit_writes_the_document(tmp_path, monkeypatch, capsys):
    make_class_folders(tmp_path / "data", per_class=8, size=24)
    (tmp_path / "data" / "red" / "dup.png").write_bytes((tmp_path / "data" / "red" / "000.png").read_bytes())
    monkeypatch.chdir(tmp_path)
    assert cli.main(["audit", "--data", "data", "--image-size", "32", "--out", "report", "--quiet"]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((tmp_path / "report" / "audit.json").read_text())
    assert {"label_issues", "duplicates", "outliers", "class_counts"} <= set(doc)
    from transfer_gui.config import RunConfig
    from transfer_gui.engine.data import build_split

    split = build_split(RunConfig().replace(**{"data.folders": ["data"]}).data, 0)
    assert doc["class_counts"] == dict(zip(split.classes, split.class_counts("train")))  # training images only
    pair = next(p for p in doc["duplicates"] if p["similarity"] == 1.0)
    assert {pair["a"], pair["b"]} == {"data/red/000.png", "data/red/dup.png"}  # as given on the command line
    assert pair["kind"] in ("duplicate", "leak") and set(pair) >= {"a", "b", "similarity", "kind"}
    assert "label issues" in printed and "wrote report/audit.json" in printed
    assert cli.main(["audit", "--data", "data", "--image-size", "32", "--out", "report", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["duplicates"] == doc["duplicates"]


def test_audit_finds_validation_images_copied_into_training_resized_and_re_encoded(tmp_path, capsys):
    """Issue #23's case: validation images copied into their class's training folder at 90 %
    and JPEG quality 70 are reported as leaks, and no other leak is."""
    from tests.test_duplicates_robust import item

    for k in range(12):
        split = "val" if k % 3 == 0 else "train"
        folder = tmp_path / split / ("wide" if k % 2 else "narrow")
        folder.mkdir(parents=True, exist_ok=True)
        item(k, 28).save(folder / f"{k:02d}.png")
    planted = set()
    for f in sorted((tmp_path / "val").glob("*/*.png")):
        copy = tmp_path / "train" / f.parent.name / f"copy_{f.stem}.jpg"
        Image.open(f).convert("RGB").resize((25, 25), Image.Resampling.BICUBIC).save(copy, quality=70)
        planted.add(frozenset((f"val/{f.parent.name}/{f.name}", f"train/{f.parent.name}/{copy.name}")))
    assert cli.main(["audit", "--data", str(tmp_path / "train"), "--val-data", str(tmp_path / "val"),
                     "--image-size", "32", "--folds", "2", "--out", str(tmp_path / "report"), "--quiet"]) == 0
    doc = json.loads((tmp_path / "report" / "audit.json").read_text())
    leaks = {frozenset(str(Path(p).relative_to(tmp_path)) for p in (d["a"], d["b"]))
             for d in doc["duplicates"] if d["kind"] == "leak"}
    assert len(planted) == 4 and leaks == planted
    capsys.readouterr()
