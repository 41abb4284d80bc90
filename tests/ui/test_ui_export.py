"""The Export step's int8 row, size and latency columns, and keep / discard of the int8 file,
driving the real widgets on a run made by the engine."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QLabel

from tests.conftest import trained_run
from transfer_gui.ui import dialogs

from .helpers import close_window, new_window, wait_for


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
    assert reports["onnx-rgb"].kit == str(kit) and reports["safetensors"].kit is None
    rows = [page.table.item(r, 0).text() for r in range(page.table.rowCount())]
    assert rows == ["safetensors", "onnx-rgb", "onnx-rgb deploy kit"]
    assert page.table.item(2, 1).data(Qt.ItemDataRole.UserRole) == str(kit)
    assert f"Deploy kit: {kit}" in page.message.text()


def test_nothing_to_export_is_said_once(window):
    window.go_to("Export")
    said = [lb.text() for lb in window.findChildren(QLabel)
            if lb.isVisibleTo(window) and "othing to export" in lb.text()]
    assert len(said) == 1 and "Open Run Folder" in said[0], said  # the step's message, not the page's too
    assert not window.export.source.isVisibleTo(window)


def test_a_second_window_shows_the_first_ones_export_choices(qtbot, ui_env, tmp_path):
    ini = str(tmp_path / "export-settings.ini")
    first = new_window(qtbot, QSettings(ini, QSettings.Format.IniFormat), background=False)
    assert first.export.selected_formats() == ["checkpoint", "onnx"] and not first.export.kit_check.isChecked()
    first.export.set_formats(["safetensors", "onnx-rgb"])
    first.export.kit_check.setChecked(True)
    first.export.folder.setText(str(tmp_path / "exports"))
    close_window(first)  # the window saves its settings when it closes
    second = new_window(qtbot, QSettings(ini, QSettings.Format.IniFormat), background=False)
    try:
        page = second.export
        assert page.selected_formats() == ["safetensors", "onnx-rgb"]
        assert page.kit_check.isChecked() and page.kit_wanted()
        assert page.folder.text() == str(tmp_path / "exports")
        assert page.target_folder() == str(tmp_path / "exports")
    finally:
        close_window(second)


def test_no_format_ticked_is_remembered_too_and_unknown_names_are_left_out(qtbot, ui_env, tmp_path):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    settings.setValue("export/formats", "")
    w = new_window(qtbot, settings, background=False)
    try:
        assert w.export.selected_formats() == [] and not w.export.export_btn.isEnabled()
        settings.setValue("export/formats", "torchscript,coreml")  # coreml: from a newer version, say
        w.export.restore_settings(settings)
        assert w.export.selected_formats() == ["torchscript"]
    finally:
        close_window(w)


def _fake_int8_export(monkeypatch, written: list):
    """export_model for onnx-int8 without quantizing: writes a small file where it is told and
    reports a comparison, so the page's keep / discard logic runs in a fraction of a second."""
    from transfer_gui.engine import export
    from transfer_gui.engine.quantize import QuantReport

    def fake(source, fmt, out, **kwargs):
        assert fmt == "onnx-int8"
        Path(out).write_bytes(b"int8 model")
        written.append(Path(out))
        q = QuantReport(images=10, agreement=0.9, fp32_accuracy=0.8, int8_accuracy=0.8, fp32_bytes=30, int8_bytes=10,
                        fp32_ms=2.0, int8_ms=1.0, threads=1, calibration_images=10)
        return export.ExportReport(str(out), fmt, 10, None, 0.9, 10, "int8 (fake)", quantization=q)

    monkeypatch.setattr(export, "export_model", fake)


def _undecided_int8(qtbot, w, run: Path, folder: Path, monkeypatch) -> tuple[Path, Path]:
    written: list[Path] = []
    _fake_int8_export(monkeypatch, written)
    page = _export(qtbot, w, run, folder, ["onnx-int8"])
    pending, final = written[0], folder / "tiny.int8.onnx"
    assert pending.is_file() and pending.name.endswith(".pending") and page.review.isVisibleTo(page)
    return pending, final


def test_an_undecided_int8_file_is_discarded_when_the_window_closes(qtbot, ui_env, tiny_run, tmp_path, monkeypatch,
                                                                     caplog):
    caplog.set_level(logging.INFO, logger="transfer_gui")
    w = new_window(qtbot, ui_env["settings"], background=False)
    try:
        pending, final = _undecided_int8(qtbot, w, tiny_run, tmp_path / "out", monkeypatch)
    finally:
        close_window(w)
    assert not pending.exists() and not final.exists()
    assert list((tmp_path / "out").iterdir()) == []
    lines = [r.getMessage() for r in caplog.records if str(pending) in r.getMessage()]
    assert len(lines) == 1 and "window closed" in lines[0], lines


@pytest.mark.parametrize("trigger", ["new project", "export again"])
def test_an_undecided_int8_file_is_discarded_when_the_project_changes_or_a_new_export_starts(
        trigger, qtbot, window, tiny_run, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="transfer_gui")
    page = window.export
    pending, final = _undecided_int8(qtbot, window, tiny_run, tmp_path / "out", monkeypatch)
    if trigger == "new project":
        window.new_project()
        assert window.project.record is None
        assert not pending.exists() and not page.review.isVisibleTo(page) and "not kept" in page.message.text()
    else:
        page.reports = []
        qtbot.mouseClick(page.export_btn, Qt.MouseButton.LeftButton)
        wait_for(qtbot, lambda: bool(page.reports), 60)
        assert pending.is_file() and page.review.isVisibleTo(page)  # the new export's own file, undecided
    assert not final.exists()
    why = {"new project": "run was closed", "export again": "new export started"}[trigger]
    assert any(str(pending) in r.getMessage() and why in r.getMessage() for r in caplog.records)


def test_a_cancelled_int8_export_leaves_no_file(tiny_run, tmp_path, monkeypatch):
    from transfer_gui.ui.pages.export_page import export_job

    class Task:  # the user presses Cancel while the int8 file is being written
        cancelled = False

        def report(self, *_args, **_kwargs):
            pass

    task, written = Task(), []
    _fake_int8_export(monkeypatch, written)
    from transfer_gui.engine import export

    fake = export.export_model
    monkeypatch.setattr(export, "export_model", lambda *a, **k: (fake(*a, **k), setattr(task, "cancelled", True))[0])
    out = export_job(task, str(tiny_run), ["onnx-int8"], str(tmp_path / "out"), [], "tiny")
    assert [(status, fmt) for status, fmt, _msg in out] == [("cancelled", "onnx-int8")]
    assert written and not written[0].exists() and list((tmp_path / "out").iterdir()) == []


# ----------------------------------------------------------------------------- progress per format (issue #24.2)


def _slow_exports(monkeypatch, gate):
    """export_model that reports its stages and, for onnx, waits at "checking" until ``gate`` is
    set, so a test sees the export mid-way; files are small stand-ins written where told."""
    from transfer_gui.engine import export, measure

    def fake(source, fmt, out, progress=None, cancelled=None, **_kwargs):
        out = Path(out) if Path(out).suffix else Path(out) / f"run{export.SUFFIXES[fmt]}"
        for stage, f in (("loading checkpoint", 0.0), ("writing", 0.2), ("checking the written file", 0.7)):
            if cancelled is not None and cancelled():
                raise export.ExportCancelled(stage)
            progress(stage, f)
            while fmt == "onnx" and f == 0.7 and not gate.wait(0.02):
                if cancelled is not None and cancelled():
                    raise export.ExportCancelled(stage)
        out.write_bytes(b"model")
        return export.ExportReport(str(out), fmt, 5, 1e-6, 1.0, 6, f"{fmt} (fake)", parity_source="validation")

    monkeypatch.setattr(export, "export_model", fake)
    monkeypatch.setattr(measure, "latency", lambda path, **_k: measure.Latency(1.5, 50, 1, "pytorch"))


def _start(qtbot, w, run: Path, folder: Path, formats: list[str]):
    w.results.open_run(str(run))
    wait_for(qtbot, lambda: w.project.record is not None, 30)
    w.go_to("Export")
    page = w.export
    page.set_formats(formats)
    page.folder.setText(str(folder))
    page.name.setText("tiny")
    qtbot.mouseClick(page.export_btn, Qt.MouseButton.LeftButton)
    return page


def test_each_row_appears_as_soon_as_its_file_is_written(qtbot, window, tiny_run, tmp_path, monkeypatch):
    import threading

    gate = threading.Event()
    _slow_exports(monkeypatch, gate)
    page = _start(qtbot, window, tiny_run, tmp_path / "out", ["checkpoint", "onnx", "onnx-rgb"])
    try:
        qtbot.waitUntil(lambda: page.row_bar("onnx") is not None, timeout=30000)
        # the first file is on disk and in the table while the second is still being checked
        assert (tmp_path / "out" / "tiny.pt").is_file() and not page.reports
        assert page.table.item(0, 1).text() == "tiny.pt" and page.table.item(0, 4).text() == "1.5 ms"
        assert page.table.item(2, 1).text() == "waiting"
        bar = page.row_bar("onnx")
        qtbot.waitUntil(lambda: "left" in bar.text() or "estimating" in bar.text(), timeout=10000)
        assert page.table.item(1, 1).text() == "checking the written file" and bar.value() >= 500
        assert "onnx (2 of 3)" in page.progress.text() and page.cancel_btn.isVisible()
    finally:
        gate.set()
    qtbot.waitUntil(lambda: bool(page.reports), timeout=30000)
    assert [page.table.item(r, 1).text() for r in range(3)] == ["tiny.pt", "tiny.onnx", "tiny.rgb.onnx"]
    assert page.row_bar("onnx") is None and not page.progress.isVisible()
    assert "(6 images)" in page.table.item(2, 3).text()


def test_cancel_stops_the_format_in_progress_and_keeps_what_was_written(qtbot, window, tiny_run, tmp_path,
                                                                      monkeypatch):
    import threading

    _slow_exports(monkeypatch, threading.Event())  # onnx never gets past its check on its own
    page = _start(qtbot, window, tiny_run, tmp_path / "out", ["checkpoint", "onnx", "onnx-rgb"])
    qtbot.waitUntil(lambda: page.row_bar("onnx") is not None, timeout=30000)
    qtbot.mouseClick(page.cancel_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(page.reports), timeout=30000)
    assert [(s, f) for s, f, _r in page.reports] == [("ok", "checkpoint"), ("cancelled", "onnx"),
                                                      ("cancelled", "onnx-rgb")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny.pt"]
    assert page.table.item(1, 1).text().startswith("Cancelled") and "1 cancelled" not in page.message.text()
    assert "2 cancelled" in page.message.text() and page.export_btn.isEnabled()


def test_the_int8_buttons_are_in_view_when_they_appear(qtbot, window, tiny_run, tmp_path, monkeypatch):
    from PySide6.QtCore import QPoint, QRect

    window.resize(760, 500)  # smaller than the page: it scrolls
    written: list[Path] = []
    _fake_int8_export(monkeypatch, written)
    page = _start(qtbot, window, tiny_run, tmp_path / "out", ["onnx-int8"])
    qtbot.waitUntil(lambda: bool(page.reports), timeout=60000)
    scroller = window.scrollers["Export"]
    view = scroller.viewport()

    def in_view(button) -> bool:
        return QRect(QPoint(0, 0), view.size()).contains(QRect(button.mapTo(view, QPoint(0, 0)), button.size()))

    qtbot.waitUntil(lambda: in_view(page.keep_btn) and in_view(page.discard_btn), timeout=10000)


@pytest.mark.parametrize("scale_text", ["estimating time left…", "100 % · about 59 min left"])
def test_progress_bars_are_tall_and_wide_enough_for_their_text(window, scale_text):
    from transfer_gui.ui.pages.export_page import _bar

    for bar in (window.export.progress, _bar("tip")):
        bar.setFormat(scale_text)
        metrics = bar.fontMetrics()
        assert bar.minimumHeight() >= metrics.height() + 4
        if "59 min" in scale_text:
            assert bar.minimumWidth() >= metrics.horizontalAdvance(scale_text)
