"""The Export step's int8 row, size and latency columns, and keep / discard of the int8 file,
driving the real widgets on a run made by the engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from tests.conftest import trained_run
from transfer_gui.ui import dialogs

from .helpers import wait_for


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory.mktemp("export-ui"), **{"train.epochs": 1, "layers.head_lr": 0.01})


def _export(qtbot, w, run: Path, folder: Path, formats: list[str]):
    w.results.open_run(str(run))
    wait_for(qtbot, lambda: w.project.record is not None, 30)
    page = w.export
    page.set_formats(formats)
    page.folder.setText(str(folder))
    page.name.setText("tiny")
    assert page.export_btn.isEnabled()
    qtbot.mouseClick(page.export_btn, Qt.MouseButton.LeftButton)
    wait_for(qtbot, lambda: bool(page.reports), 180)
    assert all(status == "ok" for status, _f, _r in page.reports), page.reports
    return page


@pytest.mark.slow
def test_int8_row_shows_the_comparison_and_is_kept_only_on_keep(qtbot, window, tiny_run, tmp_path):
    page = _export(qtbot, window, tiny_run, tmp_path / "out", ["onnx", "onnx-int8"])
    headers = [page.table.horizontalHeaderItem(c).text() for c in range(page.table.columnCount())]
    assert headers == ["Format", "File", "Size", "Parity check", "Latency"]
    rows = {page.table.item(r, 0).text(): r for r in range(page.table.rowCount())}
    reports = {fmt: rep for _s, fmt, rep in page.reports}
    for fmt, r in rows.items():
        assert page.table.item(r, 4).text() == f"{reports[fmt].latency.median_ms:.1f} ms"
    q = reports["onnx-int8"].quantization
    check = page.table.item(rows["onnx-int8"], 3).text()
    assert f"agrees {q.agreement:.0%}" in check and f"{q.int8_accuracy:.1%} vs {q.fp32_accuracy:.1%}" in check
    final = tmp_path / "out" / "tiny.int8.onnx"
    pending = Path(reports["onnx-int8"].path)
    assert pending.is_file() and not final.exists() and "not kept yet" in page.table.item(rows["onnx-int8"], 1).text()
    assert page.review.isVisibleTo(page) and f"{q.agreement:.1%}" in page.review_text.text()
    qtbot.mouseClick(page.keep_btn, Qt.MouseButton.LeftButton)
    assert final.is_file() and not pending.exists() and not page.review.isVisibleTo(page)
    assert page.table.item(rows["onnx-int8"], 1).text() == final.name and str(final) in page.message.text()


@pytest.mark.slow
def test_discarding_the_int8_file_leaves_the_previous_one(qtbot, window, tiny_run, tmp_path, monkeypatch):
    final = tmp_path / "out" / "tiny.int8.onnx"
    final.parent.mkdir()
    final.write_bytes(b"the file from before")
    asked = []
    monkeypatch.setattr(dialogs, "ask_yes_no", lambda parent, title, text: asked.append(text) or True)
    page = _export(qtbot, window, tiny_run, tmp_path / "out", ["onnx-int8"])
    assert str(final) in asked[0]  # keeping would replace it: the user was told before the export
    assert final.read_bytes() == b"the file from before"
    qtbot.mouseClick(page.discard_btn, Qt.MouseButton.LeftButton)
    assert final.read_bytes() == b"the file from before" and not page.review.isVisibleTo(page)
    assert [p.name for p in final.parent.iterdir()] == [final.name]
    assert page.table.item(0, 1).text() == "discarded"


def test_deploy_kit_box_follows_the_onnx_formats(window):
    page = window.export
    page.set_formats(["safetensors"])
    assert not page.kit_check.isEnabled()
    page.kit_check.setChecked(True)
    assert not page.kit_wanted()  # a ticked box under no ONNX format writes nothing
    for fmt in ("onnx", "onnx-rgb"):
        page.set_formats(["safetensors", fmt])
        assert page.kit_check.isEnabled() and page.kit_wanted()
    assert "predict.py" in page.kit_check.toolTip() and "onnxruntime" in page.kit_check.toolTip()


def onnx_classes(path: Path) -> str:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}["classes"]


@pytest.mark.slow
def test_export_with_the_box_ticked_writes_a_deploy_kit(qtbot, window, tiny_run, tmp_path):
    import json

    window.export.kit_check.setChecked(True)
    page = _export(qtbot, window, tiny_run, tmp_path / "out", ["safetensors", "onnx-rgb"])
    kit = tmp_path / "out" / "tiny.rgb-kit"
    classes = list(window.project.record.classes)
    assert sorted(classes) == ["blue", "green", "red"]  # the run's class folders
    assert (kit / "labels.txt").read_text().splitlines() == classes
    assert classes == json.loads(onnx_classes(kit / "model.onnx"))
    assert (kit / "predict.py").is_file() and (kit / "model.onnx").is_file()
    assert not (tmp_path / "out" / "tiny-kit").exists()  # safetensors gets no kit
    reports = {fmt: rep for _s, fmt, rep in page.reports}
    assert reports["onnx-rgb"].kit == str(kit) and not hasattr(reports["safetensors"], "kit")
    rows = [page.table.item(r, 0).text() for r in range(page.table.rowCount())]
    assert rows == ["safetensors", "onnx-rgb", "onnx-rgb deploy kit"]
    assert page.table.item(2, 1).data(Qt.ItemDataRole.UserRole) == str(kit)
    assert f"Deploy kit: {kit}" in page.message.text()
