"""transfer-gui audit says its summary once: one line, in one wording, whose figures are
audit.json's (the engine's own closing line, worded differently, is left out)."""

from __future__ import annotations

import json
import re

from tests.conftest import make_class_folders
from transfer_gui import cli

SUMMARY = re.compile(r"^Audit done in \d+\.\d s \((\d+) training images\): label issues (\d+), leaks (\d+), "
                     r"duplicates (\d+), near duplicates (\d+), outliers (\d+)$")


def test_one_summary_line_with_the_documents_figures(tmp_path, monkeypatch, capsys):
    make_class_folders(tmp_path / "data", per_class=8, size=24)
    (tmp_path / "data" / "red" / "dup.png").write_bytes((tmp_path / "data" / "red" / "000.png").read_bytes())
    monkeypatch.chdir(tmp_path)
    assert cli.main(["audit", "--data", "data", "--image-size", "32", "--out", "report"]) == 0
    captured = capsys.readouterr()
    lines = [ln.strip() for text in (captured.out, captured.err) for ln in re.split(r"[\r\n]", text)]
    said = [ln for ln in lines if "label issue" in ln or ln.startswith(cli.AUDIT_DONE)]
    assert len(said) == 1, said  # not also the engine's "Audit done: ... duplicate pairs ..." on stderr
    m = SUMMARY.match(said[0])
    assert m, said[0]
    doc = json.loads((tmp_path / "report" / "audit.json").read_text())
    kinds = [p["kind"] for p in doc["duplicates"]]
    assert [int(g) for g in m.groups()] == [sum(doc["class_counts"].values()), len(doc["label_issues"]),
                                            kinds.count("leak"), kinds.count("duplicate"), kinds.count("near"),
                                            len(doc["outliers"])]
    assert kinds, "the copied file should be found"


def test_the_summary_counts_each_kind_of_pair():
    doc = {"label_issues": [{"score": 0.9, "path": "a.png", "given": "x", "suggested": "y"}],
           "duplicates": [{"kind": k, "a": "p", "b": "q", "similarity": 1.0} for k in ("leak", "near", "near")],
           "outliers": [], "class_counts": {"x": 3, "y": 4}, "seconds": 2.04, "imbalance": None}
    assert cli._audit_summary(doc)[0] == ("Audit done in 2.0 s (7 training images): label issues 1, leaks 1, "
                                          "duplicates 0, near duplicates 2, outliers 0")
