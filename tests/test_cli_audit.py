"""transfer-gui audit: refusals before torch, and the audit.json it writes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
