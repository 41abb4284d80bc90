"""The Data step: drops of parents and class folders, renaming and dropping classes, warnings
with the skipped files, validation choices, augmentation preview, and a scan that never
blocks the window."""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QTimer, Qt

from transfer_gui.ui import dialogs
from transfer_gui.ui.pages import data_page
from transfer_gui.ui.pages.data_page import SKIPPED_ROLE
from transfer_gui.ui.steps import readiness

from .helpers import drop_paths, make_class_folders, wait_for


def _warnings(w) -> list[str]:
    return [w.data.warnings.item(i).text() for i in range(w.data.warnings.count())]


def test_parent_folder_and_mix_with_rename_exclude_and_warnings(qtbot, window, ui_env):
    w, p, tmp = window, window.project, ui_env["tmp"]
    parent = tmp / "set"
    make_class_folders(parent, {"red": 30, "green": 4})
    (parent / "red" / "broken.png").write_bytes(b"")  # an empty file is skipped with a reason
    extra = make_class_folders(tmp / "more", {"blue": 25})[0]
    assert drop_paths(w, [parent, extra]) == (True, True)  # a parent and a class folder
    wait_for(qtbot, lambda: p.scan is not None)
    assert p.class_counts() == {"blue": 25, "green": 4, "red": 30}
    text = "\n".join(_warnings(w))
    assert "'green' has only 4 images" in text and "1 file skipped" in text
    # the imbalance (30 vs 4) is said once, by the balance box with its fix, not again in the list
    assert "imbalanced" not in text and "imbalanced" in w.data.balance.warning.text()
    assert not w.data.balance.warning.isHidden() and not w.data.balance.fix_btn.isHidden()
    skipped_row = next(i for i in range(w.data.warnings.count()) if w.data.warnings.item(i).data(SKIPPED_ROLE))
    w.data.warnings.itemClicked.emit(w.data.warnings.item(skipped_row))
    dlg = w.data.skipped_dialog
    assert dlg.isVisible() and dlg.table.rowCount() == 1
    assert dlg.table.item(0, 0).text().endswith("broken.png") and "empty" in dlg.table.item(0, 1).text()
    dlg.close()

    # rename by editing the name cell; merge two classes under one name
    names = [r.original for r in w.data.table.rows]
    row = names.index("blue")
    w.data.table.item(row, 1).setText("navy")
    assert p.cfg.data.rename_classes == {"blue": "navy"}
    assert "navy" in p.class_counts()
    w.data.table.item(names.index("green"), 1).setText("red")  # merge green into red
    assert p.class_counts() == {"navy": 25, "red": 34}
    # drop a class with its tick box
    w.data.table.item(names.index("green"), 0).setCheckState(Qt.CheckState.Unchecked)
    assert p.cfg.data.exclude_classes == ("green",)
    assert p.class_counts() == {"navy": 25, "red": 30}
    assert "2 classes, 55 images" in w.data.totals.text().replace("<b>", "").replace("</b>", "")
    w.data.table.item(names.index("red"), 0).setCheckState(Qt.CheckState.Unchecked)
    assert "at least two classes" in readiness(p, "Data")
    # dropping an image file (not a folder) on the window adds no data
    assert drop_paths(w, [parent / "red" / "000.png"])[1]
    assert len(p.cfg.data.folders) == 2


def test_validation_split_or_folder(qtbot, window, ui_env, monkeypatch):
    w, p, tmp = window, window.project, ui_env["tmp"]
    w.data.add_folders([str(f) for f in make_class_folders(tmp / "tr", {"red": 10, "blue": 10})])
    wait_for(qtbot, lambda: p.scan is not None)
    w.data.validation.val_pct.setValue(30)
    assert p.cfg.data.val_fraction == 0.3 and p.split_counts() == (14, 6)
    val = tmp / "val"
    make_class_folders(val, {"red": 3, "blue": 3})
    monkeypatch.setattr(dialogs, "choose_folder", lambda *a: str(val))
    w.data.validation.folder_radio.setChecked(True)
    w.data.validation.val_browse.click()
    assert p.cfg.data.val_folders == (str(val),)
    wait_for(qtbot, lambda: "6 validation images" in w.data.validation.val_info.text())
    w.data.validation.split_radio.setChecked(True)
    assert p.cfg.data.val_folders == ()


def test_augmentation_preview_shows_real_training_views(qtbot, window):
    w = window
    w.data.load_sample()
    wait_for(qtbot, lambda: w.project.scan is not None)
    wait_for(qtbot, lambda: len(w.data.preview.images) == 8, 60)
    assert "off" in w.data.preview.note.text()
    assert not w.data.augment.aug_hflip.isEnabled()
    w.data.augment.aug_on.setChecked(True)
    assert w.project.cfg.data.augment.enabled and w.data.augment.aug_hflip.isEnabled()
    w.data.augment.aug_rot.setValue(30)
    assert w.project.cfg.data.augment.rotation == 30
    wait_for(qtbot, lambda: "Random training views" in w.data.preview.note.text(), 60)
    img = w.data.preview.images[0]
    assert img.width() == img.height() == 224
    assert w.data.preview.labels[0].pixmap() is not None


def test_scan_shows_progress_keeps_window_responsive_and_cancels(qtbot, window, monkeypatch, ui_env):
    w = window
    release = threading.Event()

    def slow_scan(task, folders):
        for n in range(1, 10_000):
            task.report((n, f"Scanning: {n} images found"))
            if task.cancelled or release.is_set():
                break
            time.sleep(0.005)
        from transfer_gui.engine.scan import ScanCancelled

        raise ScanCancelled("scan cancelled")

    monkeypatch.setattr(data_page, "scan_job", slow_scan)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    w.data.add_folders([str(ui_env["tmp"])])
    wait_for(qtbot, lambda: "images found" in w.data.scan_label.text())
    assert w.data.scan_box.isVisible() and w.project.scanning
    wait_for(qtbot, lambda: len(ticks) >= 5)  # the event loop keeps running while the scan does
    assert w.project.scanning and not release.is_set()
    assert "Scanning" in readiness(w.project, "Data")
    w.data.scan_cancel.click()
    release.set()
    timer.stop()
    assert not w.project.scanning and "cancelled" in w.project.scan_error
    assert not w.data.scan_box.isVisible()


def _plain(text: str) -> str:
    return text.replace("<b>", "").replace("</b>", "")


def test_a_text_file_named_jpg_is_listed_as_skipped_before_training(qtbot, window, ui_env):
    """Issue #24: the scan reads each file's first bytes, so the Data step counts a text file
    named .jpg out of its class and lists it with the reason, beside the empty file."""
    w, p = window, window.project
    parent = ui_env["tmp"] / "set"
    make_class_folders(parent, {"red": 12, "green": 12})
    (parent / "red" / "notes.jpg").write_text("a text file, not a photo")
    (parent / "green" / "empty.png").write_bytes(b"")
    w.data.add_folders([str(parent)])
    wait_for(qtbot, lambda: p.scan is not None and not p.scanning)
    assert p.class_counts() == {"green": 12, "red": 12}
    assert [w.data.table.item(r, 2).text() for r in range(2)] == ["12", "12"]
    assert "24 images" in _plain(w.data.totals.text())
    line = next(i for i in range(w.data.warnings.count()) if w.data.warnings.item(i).data(SKIPPED_ROLE))
    assert "2 files skipped" in w.data.warnings.item(line).text()
    w.data.warnings.itemClicked.emit(w.data.warnings.item(line))
    dlg = w.data.skipped_dialog
    shown = {dlg.table.item(r, 0).text().rsplit("/", 1)[-1]: dlg.table.item(r, 1).text()
             for r in range(dlg.table.rowCount())}
    assert shown == {"notes.jpg": "not an image (unrecognised format)", "empty.png": "empty file (0 bytes)"}
    dlg.close()


def test_class_rows_follow_excluded_and_relabelled_files(qtbot, window, ui_env):
    """Issue #24: after excluding a file its class row said 60 while the total said 299; each row
    now counts what the run takes from it, so the rows add up to the totals line."""
    w, p = window, window.project
    parent = ui_env["tmp"] / "set"
    make_class_folders(parent, {"red": 10, "green": 8, "blue": 6})
    w.data.add_folders([str(parent)])
    wait_for(qtbot, lambda: p.scan is not None and not p.scanning)

    def shown() -> dict[str, str]:
        return {w.data.table.item(r, 1).text(): w.data.table.item(r, 2).text() for r in range(w.data.table.rowCount())}

    assert shown() == {"blue": "6", "green": "8", "red": "10"}
    p.update({"data.exclude_files": [str(parent / "red" / "003.png")],
              "data.relabel": {str(parent / "green" / "001.png"): "blue"}})
    wait_for(qtbot, lambda: shown() == {"blue": "7", "green": "7", "red": "9"})
    assert "3 classes, 23 images" in _plain(w.data.totals.text())
    red = next(r for r in range(3) if w.data.table.item(r, 1).text() == "red")
    assert "10 images in the folder; 9 after your decisions" in w.data.table.item(red, 2).toolTip()
    w.data.table.item(red, 0).setCheckState(Qt.CheckState.Unchecked)  # a left-out class keeps its own count
    wait_for(qtbot, lambda: "2 classes, 14 images" in _plain(w.data.totals.text()))
    assert shown()["red"] == "9"
